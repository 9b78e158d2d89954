//! The text that goes to and comes from the models.
//!
//! * [`prompts`]: input rows into prompts (text, id, preference);
//! * [`templates`]: the prompt templates, filled in one pass;
//! * [`reward_input`]: what the reward server is sent per response;
//! * [`chat_template`]: a reward model's own chat template, rendered here;
//! * [`answer`]: the answer in a response (`prs.answer_pattern`).
//!
//! The files are private to this folder; other wings and the crate root use its face below.

mod answer;
mod chat_template;
mod prompts;
mod reward_input;
mod templates;

// The face. Public (re-exported by the crate root): templates and reward inputs.
pub use chat_template::refuse_template_files;
pub use reward_input::{RewardItem, RewardMode};
pub use templates::{TemplateTexts, Templates};
// For the other wings: the answer pattern (`sampler`, `run`, `sql`), prompts from rows
// (`run`), the policy's prompt template (`client`) and the reward text format (`run`).
pub(crate) use answer::AnswerPattern;
pub(crate) use prompts::prompts_of;
pub(crate) use templates::{RewardFormat, Template};
