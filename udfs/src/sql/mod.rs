//! The SQL surface: what a query names and what DataFusion plans with. Table functions and
//! UDFs turn SQL arguments into calls, and calls into providers.
//!
//! * [`table_function`]: `random_sample` / `prs_sample`, SQL arguments and options into a call;
//! * [`call`]: what a call asks for, and its wire form for other nodes;
//! * [`source`]: the input a call names (a Parquet path or a registered table);
//! * [`table_provider`]: the provider a call returns;
//! * [`score_table`]: the `prs_score` table function, its provider and execution node;
//! * [`reward_udf`]: the `reward()` and `reward_input()` scalar UDFs;
//! * [`verify_udf`]: the `verify()` scalar UDF, answers checked against references;
//! * `codec`: plan codecs for distributed engines (feature `proto`).
//!
//! The files are private to this folder; other wings and the crate root use its face below.

mod call;
#[cfg(feature = "proto")]
mod codec;
mod reward_udf;
mod score_table;
mod source;
mod table_function;
mod table_provider;
mod verify_udf;

// The face. Public (re-exported by the crate root): the functions, the call, the provider and
// the plan codecs.
pub use call::SampleCall;
#[cfg(feature = "proto")]
pub use codec::{PrsLogicalCodec, PrsPhysicalCodec};
pub use reward_udf::{reward_input_udf, reward_udf};
pub use score_table::{ScoreFunction, NAME as SCORE_FUNCTION_NAME};
pub use table_function::{literal_string, SampleFunction};
pub use table_provider::SampleTable;
pub use verify_udf::verify_udf;
// For the other wings: the input columns a call reads (`run`, `text`).
pub(crate) use source::InputColumns;
