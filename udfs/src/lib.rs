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
//! The public API is what a host needs, re-exported here: [`register`] (or
//! [`session_context`]), the functions ([`SampleFunction`], [`ScoreFunction`], [`reward_udf`]),
//! the settings ([`PrsConfig`], the [`config`] module), the output ([`output_schema`],
//! [`COLUMNS`]), errors ([`PrsError`]), counters ([`JobStats`]), plan codecs (feature `proto`),
//! and the few building blocks the `prs` CLI, the benchmark and the tests use. Everything else
//! is `pub(crate)`.
//!
//! The source, by concern (each folder's `mod.rs` lists its files):
//!
//! * `sql/`: the SQL surface: the table functions, a call and its wire form, input tables,
//!   the providers, the `reward()` UDFs and plan codecs;
//! * `run/`: running a call: its runtime, the execution node and per-prompt pipeline, the
//!   prompt window, work shared within a process, counters and the dry-run cost model;
//! * `sampler/`: the algorithms (random best-of-N, PRS), with duplicates resampled and
//!   truncated candidates passed over;
//! * [`client`]: policy and reward HTTP clients (replicas, retries, batching);
//! * `text/`: prompts from input rows, templates, what the reward server is sent (template
//!   text, a conversation as `messages`, or the model's own chat template), the answer in a
//!   response;
//! * `durability/`: checkpoint and journal for resume, [`atomic`] fsynced file writes;
//! * [`config`]: the `prs.*` settings; `schema.rs`: the output rows; `error.rs`: typed errors;
//!   `redact.rs`: URLs shown without credentials.

pub mod client;
pub mod config;
pub(crate) mod durability;
mod error;
mod redact;
pub(crate) mod run;
pub(crate) mod sampler;
mod schema;
pub(crate) mod sql;
pub(crate) mod text;
pub(crate) mod verify;

use std::sync::Arc;

use datafusion::prelude::{SessionConfig, SessionContext};

// The host API: what a DataFusion host needs to run the functions and read their results.
pub use client::bind_keys_to_own_endpoints;
pub use config::{session_config, PrsConfig};
pub use error::{EndpointKind, PrsError};
pub use run::{DataChecks, JobStats, StatsSnapshot};
pub use sampler::Method;
pub use schema::{output_schema, COLUMNS};
pub use sql::{
    reward_input_udf, reward_udf, verify_udf, SampleFunction, ScoreFunction, SCORE_FUNCTION_NAME,
};
#[cfg(feature = "proto")]
pub use sql::{PrsLogicalCodec, PrsPhysicalCodec};
pub use text::refuse_template_files;

// Building blocks for hosts' own tooling (the `prs` CLI, the benchmark, the tests): the
// provider, call and node a plan holds, templates and reward inputs, seeds, literal
// arguments, atomic file writes.
pub use durability::atomic;
pub use run::SampleExec;
pub use sampler::derive_seed;
pub use sql::{literal_string, SampleCall, SampleTable};
pub use text::{RewardItem, RewardMode, TemplateTexts, Templates};

/// Register `random_sample`, `prs_sample`, `prs_score`, `reward` and `reward_input` on `ctx`.
///
/// Settings come from the context's `prs` config extension when it has one (see
/// [`session_config`]), otherwise from defaults and `PRS_*` environment variables.
pub fn register(ctx: &SessionContext) {
    ctx.register_udtf(
        Method::Random.function_name(),
        Arc::new(SampleFunction::new(Method::Random)),
    );
    ctx.register_udtf(
        Method::Prs.function_name(),
        Arc::new(SampleFunction::new(Method::Prs)),
    );
    ctx.register_udtf(SCORE_FUNCTION_NAME, Arc::new(ScoreFunction::new()));
    ctx.register_udf(reward_udf());
    ctx.register_udf(reward_input_udf());
    ctx.register_udf(verify_udf());
}

/// Like [`register`], for a client whose plans run on other machines (a Ballista cluster):
/// the sampling functions refuse sources that only exist in this session, and `prs_score`
/// (which has no wire form) says to use `reward()` there.
pub fn register_distributed(ctx: &SessionContext) {
    register(ctx);
    ctx.register_udtf(SCORE_FUNCTION_NAME, Arc::new(ScoreFunction::distributed()));
    for method in [Method::Random, Method::Prs] {
        ctx.register_udtf(
            method.function_name(),
            Arc::new(SampleFunction::distributed(method)),
        );
    }
}

/// A context with the given settings and every prs function registered, as hosts want it:
/// `information_schema` on, a [`JobStats`] installed to count into, and URL tables
/// (`FROM 'file.parquet'`, as in datafusion-cli).
pub fn session_context(cfg: PrsConfig) -> SessionContext {
    let mut config = SessionConfig::new()
        .with_information_schema(true)
        .with_option_extension(cfg);
    JobStats::install(&mut config);
    let ctx = SessionContext::new_with_config(config).enable_url_table();
    register(&ctx);
    ctx
}
