//! The text that goes to and comes from the models.
//!
//! * [`prompts`]: input rows into prompts (text, id, preference);
//! * [`templates`]: the prompt templates, filled in one pass;
//! * [`reward_input`]: what the reward server is sent per response;
//! * [`chat_template`]: a reward model's own chat template, rendered here;
//! * [`answer`]: the answer in a response (`prs.answer_pattern`).

pub mod answer;
pub mod chat_template;
pub mod prompts;
pub mod reward_input;
pub mod templates;
