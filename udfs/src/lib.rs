//! # datafusion-prs
//!
//! Sampling for LLM alignment data as DataFusion SQL:
//!
//! * `random_sample(source, n [, options])`: best-of-N random sampling;
//! * `prs_sample(source, n [, options])`: PRS, preference-guided reflective sampling (a tree of
//!   samples where each layer revises the best-so-far using the policy's own feedback);
//! * `reward(prompt, response [, preference])`: score any rows through the reward endpoint;
//! * `prs_score(source [, options])`: a table's rows with their `reward`, for hosts without
//!   async scalar UDFs (DataFusion's Python package);
//! * `reward_input(prompt, response [, preference])`: what `reward` would send, unsent.
//!
//! Register everything on a context with [`register`], or start from [`session_context`];
//! settings live in [`PrsConfig`] (`prs.*`).
//!
//! Module map, in the order a query uses them:
//!
//! * [`table_function`]: SQL arguments and options into a [`call::SampleCall`];
//! * [`call`]: what a call asks for, and its wire form for other nodes;
//! * [`runtime`]: a planned call's clients, in-flight limits, sampler, checkpoint and budget;
//! * [`table_provider`]: the provider a call returns;
//! * [`exec`]: its execution node and output stream; `pipeline` (private) runs each prompt
//!   through checkpoint, preflight, budget, sampler and store; [`prompts`] reads input rows;
//! * [`sampler`]: the algorithms (random best-of-N, PRS), with duplicates resampled and
//!   truncated candidates passed over; [`answer`]: the answer in a response
//!   (`prs.answer_pattern`);
//! * [`client`]: policy and reward HTTP clients (replicas, retries, batching);
//!   [`reward_input`]: what the reward server is sent per response (template text, a
//!   conversation as `messages`, or text in the model's own [`chat_template`]);
//! * [`schema`]: the output rows; [`templates`]: prompt templates; [`source`]: input tables;
//! * [`config`]: the `prs.*` settings; [`error`]: typed errors; [`stats`]: job and prompt
//!   counters; [`cost`]: the dry-run cost model;
//! * [`checkpoint`]: durable per-prompt resume; [`journal`]: each answer recorded as it
//!   arrives, so a re-run repeats only what was in flight; [`single_flight`]: identical work shared
//!   within a process; [`durable`]: fsync-then-rename file operations;
//! * [`reward_udf`]: the `reward()` and `reward_input()` scalar UDFs; [`score_table`]: the
//!   `prs_score` table function, its provider and execution node;
//! * `codec`: plan codecs for distributed engines (feature `proto`).

pub mod admission;
pub mod answer;
pub mod call;
pub mod chat_template;
pub mod checkpoint;
pub mod client;
#[cfg(feature = "proto")]
pub mod codec;
pub mod config;
pub mod cost;
pub mod durable;
pub mod error;
pub mod exec;
pub mod journal;
mod pipeline;
pub mod prompts;
pub mod redact;
pub mod reward_input;
pub mod reward_udf;
pub mod runtime;
pub mod sampler;
pub mod schema;
pub mod score_table;
pub mod single_flight;
pub mod source;
pub mod stats;
pub mod table_function;
pub mod table_provider;
pub mod templates;

use std::sync::Arc;

use datafusion::prelude::{SessionConfig, SessionContext};

pub use config::{session_config, PrsConfig};
pub use error::PrsError;
pub use sampler::Method;

/// Register `random_sample`, `prs_sample`, `prs_score`, `reward` and `reward_input` on `ctx`.
///
/// Settings come from the context's `prs` config extension when it has one (see
/// [`session_config`]), otherwise from defaults and `PRS_*` environment variables.
pub fn register(ctx: &SessionContext) {
    ctx.register_udtf(
        Method::Random.function_name(),
        Arc::new(table_function::SampleFunction::new(Method::Random)),
    );
    ctx.register_udtf(
        Method::Prs.function_name(),
        Arc::new(table_function::SampleFunction::new(Method::Prs)),
    );
    ctx.register_udtf(
        score_table::NAME,
        Arc::new(score_table::ScoreFunction::new()),
    );
    ctx.register_udf(reward_udf::reward_udf());
    ctx.register_udf(reward_udf::reward_input_udf());
}

/// Like [`register`], for a client whose plans run on other machines (a Ballista cluster):
/// the sampling functions refuse sources that only exist in this session, and `prs_score`
/// (which has no wire form) says to use `reward()` there.
pub fn register_distributed(ctx: &SessionContext) {
    register(ctx);
    ctx.register_udtf(
        score_table::NAME,
        Arc::new(score_table::ScoreFunction::distributed()),
    );
    for method in [Method::Random, Method::Prs] {
        ctx.register_udtf(
            method.function_name(),
            Arc::new(table_function::SampleFunction::distributed(method)),
        );
    }
}

/// A context with the given settings and every prs function registered, as hosts want it:
/// `information_schema` on, a [`stats::JobStats`] installed to count into, and URL tables
/// (`FROM 'file.parquet'`, as in datafusion-cli).
pub fn session_context(cfg: PrsConfig) -> SessionContext {
    let mut config = SessionConfig::new()
        .with_information_schema(true)
        .with_option_extension(cfg);
    stats::JobStats::install(&mut config);
    let ctx = SessionContext::new_with_config(config).enable_url_table();
    register(&ctx);
    ctx
}
