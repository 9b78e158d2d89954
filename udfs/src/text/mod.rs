//! The text that goes to and comes from the models.
//!
//! * [`prompts`]: input rows into prompts (text, id, preference);
//! * [`templates`]: the prompt templates, filled in one pass;
//! * [`reward_input`]: what the reward server is sent per response;
//! * [`chat_template`]: a reward model's own chat template, rendered here;
//! * [`answer`]: the answer in a response (`prs.answer_pattern`).

pub(crate) mod answer;
pub(crate) mod chat_template;
pub(crate) mod prompts;
pub(crate) mod reward_input;
pub(crate) mod templates;
