//! The SQL surface: what a query names and what DataFusion plans with. Table functions and
//! UDFs turn SQL arguments into calls, and calls into providers.
//!
//! * [`table_function`]: `random_sample` / `prs_sample`, SQL arguments and options into a call;
//! * [`call`]: what a call asks for, and its wire form for other nodes;
//! * [`source`]: the input a call names (a Parquet path or a registered table);
//! * [`table_provider`]: the provider a call returns;
//! * [`score_table`]: the `prs_score` table function, its provider and execution node;
//! * [`reward_udf`]: the `reward()` and `reward_input()` scalar UDFs;
//! * `codec`: plan codecs for distributed engines (feature `proto`).

pub(crate) mod call;
#[cfg(feature = "proto")]
pub(crate) mod codec;
pub(crate) mod reward_udf;
pub(crate) mod score_table;
pub(crate) mod source;
pub(crate) mod table_function;
pub(crate) mod table_provider;
