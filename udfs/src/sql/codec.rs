//! Plan codecs (feature `proto`): serialise the sampling calls' table provider
//! ([`SampleTable`]) and execution node ([`SampleExec`]) so that a distributed engine such as
//! Ballista can ship them between its client, scheduler and executors.
//!
//! Only the call travels: method, source, n, every `prs.*` setting and the template texts
//! ([`CallWire`]), plus the input columns and projection for the node. Each process
//! builds its own HTTP clients from that, with API keys read from its own environment, so no
//! secret is ever part of a plan.
//!
//! These codecs handle prs' own nodes only. A host with codecs of its own (Ballista's for its
//! shuffle nodes and file formats) tries them in turn: [`PrsLogicalCodec::is_prs`] /
//! [`PrsPhysicalCodec::is_prs`] tell whose bytes a buffer holds.

use std::str::FromStr;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::TableProvider;
use datafusion::common::{not_impl_err, TableReference};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::call::{CallWire, SampleCall};
use super::source::{self, InputColumns};
use super::table_provider::SampleTable;
use crate::error::PrsError;
use crate::run::{CallRuntime, JobStats, SampleExec};

const TABLE_TAG: &[u8] = b"prs-sample-table/1\n";
const EXEC_TAG: &[u8] = b"prs-sample-exec/1\n";

fn bad(what: impl Into<String>) -> DataFusionError {
    PrsError::BadPlan(what.into()).into()
}

fn read_tagged<T: DeserializeOwned>(buf: &[u8], tag: &[u8]) -> Result<T> {
    let body = buf
        .strip_prefix(tag)
        .ok_or_else(|| bad("the bytes are not a prs node of this version"))?;
    serde_json::from_slice(body).map_err(|e| bad(format!("invalid node: {e}")))
}

fn write_tagged<T: Serialize>(buf: &mut Vec<u8>, tag: &[u8], v: &T) -> Result<()> {
    buf.extend_from_slice(tag);
    serde_json::to_writer(buf, v).map_err(|e| bad(format!("cannot encode: {e}")))
}

/// A planning session on this process, for resolving a call's source (its schema only).
fn session_from_task(ctx: &TaskContext) -> SessionState {
    SessionStateBuilder::new()
        .with_config(ctx.session_config().clone())
        .with_runtime_env(ctx.runtime_env())
        .with_default_features()
        .build()
}

/// Logical codec for [`SampleTable`], the provider `random_sample(...)` / `prs_sample(...)`
/// return. Decoding resolves the source again on the decoding process (the scheduler): a
/// Parquet path, directory or glob it can read; session tables of the client do not exist there.
#[derive(Debug, Default, Clone)]
pub struct PrsLogicalCodec;

impl PrsLogicalCodec {
    /// Whether `buf` holds a table this codec wrote.
    pub fn is_prs(buf: &[u8]) -> bool {
        buf.starts_with(TABLE_TAG)
    }

    /// Whether `node` is a provider this codec writes.
    pub fn handles(node: &Arc<dyn TableProvider>) -> bool {
        node.is::<SampleTable>()
    }
}

impl LogicalExtensionCodec for PrsLogicalCodec {
    fn try_decode(
        &self,
        _buf: &[u8],
        _inputs: &[LogicalPlan],
        _ctx: &TaskContext,
    ) -> Result<Extension> {
        not_impl_err!("prs has no logical extension nodes")
    }

    fn try_encode(&self, _node: &Extension, _buf: &mut Vec<u8>) -> Result<()> {
        not_impl_err!("prs has no logical extension nodes")
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        _table_ref: &TableReference,
        _schema: datafusion::arrow::datatypes::SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        let call = SampleCall::from_wire(read_tagged(buf, TABLE_TAG)?)?;
        let session = session_from_task(ctx);
        // decoded where a distributed engine plans: its tasks each count their own budget
        Ok(Arc::new(
            SampleTable::new(&session, call)?.with_budget_split_across_tasks(),
        ))
    }

    fn try_encode_table_provider(
        &self,
        _table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let Some(table) = node.downcast_ref::<SampleTable>() else {
            return not_impl_err!("PrsLogicalCodec only encodes prs sampling tables");
        };
        let mut call = table.call().clone();
        if !source::looks_like_path(&call.source) {
            return Err(PrsError::Input {
                source_name: call.source.clone(),
                reason: source::NOT_PORTABLE.into(),
            }
            .into());
        }
        // relative paths mean the client's working directory
        call.source = source::absolute(&call.source);
        call.cfg.checkpoint_dir = source::absolute(&call.cfg.checkpoint_dir);
        write_tagged(buf, TABLE_TAG, &call.to_wire())
    }
}

/// Physical codec for [`SampleExec`]. Its input (the Parquet scan) is encoded by the host as
/// the node's child; decoding rebuilds the clients on the decoding process (an executor).
#[derive(Debug, Default, Clone)]
pub struct PrsPhysicalCodec;

impl PrsPhysicalCodec {
    /// Whether `buf` holds a node this codec wrote.
    pub fn is_prs(buf: &[u8]) -> bool {
        buf.starts_with(EXEC_TAG)
    }
}

/// A [`SampleExec`] as it travels: its call, the input columns it reads, and what the query
/// asks of its output.
#[derive(Debug, Serialize, Deserialize)]
struct ExecWire {
    call: CallWire,
    columns: ColumnsWire,
    projection: Option<Vec<usize>>,
    limit: Option<usize>,
}

/// [`InputColumns`] with the id type as text.
#[derive(Debug, Serialize, Deserialize)]
struct ColumnsWire {
    prompt: String,
    id: Option<String>,
    preference: Option<String>,
    #[serde(default)]
    reference: Option<String>,
    id_type: String,
}

impl ColumnsWire {
    fn of(c: &InputColumns) -> Self {
        ColumnsWire {
            prompt: c.prompt.clone(),
            id: c.id.clone(),
            preference: c.preference.clone(),
            reference: c.reference.clone(),
            id_type: c.id_type.to_string(),
        }
    }

    fn columns(self) -> Result<InputColumns> {
        let id_type = DataType::from_str(&self.id_type)
            .map_err(|e| bad(format!("input columns: id_type {:?}: {e}", self.id_type)))?;
        Ok(InputColumns {
            prompt: self.prompt,
            id: self.id,
            preference: self.preference,
            reference: self.reference,
            id_type,
        })
    }
}

impl PhysicalExtensionCodec for PrsPhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let wire: ExecWire = read_tagged(buf, EXEC_TAG)?;
        let [input] = inputs else {
            return Err(bad(format!(
                "SampleExec takes one input, got {}",
                inputs.len()
            )));
        };
        let call = SampleCall::from_wire(wire.call)?;
        let columns = wire.columns.columns()?;
        let runtime = CallRuntime::build(call, columns, JobStats::of(ctx.session_config()))?;
        let schema = runtime.schema.clone();
        Ok(Arc::new(
            SampleExec::try_new(input.clone(), Arc::new(runtime), schema, wire.projection)?
                .with_limit(wire.limit),
        ))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let Some(exec) = node.downcast_ref::<SampleExec>() else {
            return not_impl_err!("PrsPhysicalCodec only encodes SampleExec");
        };
        let runtime = exec.runtime();
        let wire = ExecWire {
            call: runtime.call.to_wire(),
            columns: ColumnsWire::of(&runtime.columns),
            projection: exec.projection().map(<[usize]>::to_vec),
            limit: exec.limit(),
        };
        write_tagged(buf, EXEC_TAG, &wire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PrsConfig;
    use datafusion::common::tree_node::TreeNode;
    use datafusion::datasource::source_as_provider;
    use datafusion::logical_expr::LogicalPlan;
    use datafusion::physical_plan::displayable;
    use datafusion::prelude::{SessionConfig, SessionContext};
    use datafusion_proto::bytes::{
        logical_plan_from_bytes_with_extension_codec, logical_plan_to_bytes_with_extension_codec,
        physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
    };

    const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/prompts.parquet");

    fn context() -> SessionContext {
        let mut cfg = PrsConfig::default();
        for (k, v) in [
            ("policy_url", "http://127.0.0.1:9/v1"),
            ("reward_url", "http://127.0.0.1:9"),
            ("temperature", "0.3"),
            ("widths", "2/1/1"),
        ] {
            cfg.set_checked(k, v, "test").unwrap();
        }
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_option_extension(cfg));
        crate::register(&ctx);
        ctx
    }

    fn sample_table(plan: &LogicalPlan) -> SampleCall {
        let mut found = None;
        plan.apply(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                let provider = source_as_provider(&scan.source)?;
                if let Some(t) = provider.downcast_ref::<SampleTable>() {
                    found = Some(t.call().clone());
                }
            }
            Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
        })
        .unwrap();
        found.expect("a sampling table scan in the plan")
    }

    /// Plan `sql` on `ctx`, then send the logical plan through the codec and back.
    async fn round_trip(ctx: &SessionContext, sql: &str) -> (LogicalPlan, LogicalPlan) {
        let plan = ctx.sql(sql).await.unwrap().into_optimized_plan().unwrap();
        let bytes = logical_plan_to_bytes_with_extension_codec(&plan, &PrsLogicalCodec).unwrap();
        let back =
            logical_plan_from_bytes_with_extension_codec(&bytes, &ctx.task_ctx(), &PrsLogicalCodec)
                .unwrap();
        (plan, back)
    }

    fn sample_exec(plan: &Arc<dyn ExecutionPlan>) -> Option<&SampleExec> {
        if let Some(e) = plan.downcast_ref::<SampleExec>() {
            return Some(e);
        }
        plan.children().into_iter().find_map(sample_exec)
    }

    #[tokio::test]
    async fn sampling_calls_survive_the_logical_and_physical_round_trip() {
        let ctx = context();
        let sql =
            format!("SELECT prompt_id, response FROM prs_sample('{DATA}', 4, 'seed=7') LIMIT 3");
        let (plan, back) = round_trip(&ctx, &sql).await;
        let (sent, got) = (sample_table(&plan), sample_table(&back));
        assert_eq!(got.to_wire(), sent.to_wire());
        assert_eq!(got.n, 4);
        assert_eq!(got.cfg.seed, 7, "per-call options travel");
        assert_eq!(got.cfg.temperature, 0.3, "session settings travel");
        assert_eq!(got.widths().unwrap(), vec![2, 1, 1]);

        let physical = ctx.state().create_physical_plan(&back).await.unwrap();
        let bytes =
            physical_plan_to_bytes_with_extension_codec(physical.clone(), &PrsPhysicalCodec)
                .unwrap();
        let rebuilt = physical_plan_from_bytes_with_extension_codec(
            &bytes,
            &ctx.task_ctx(),
            &PrsPhysicalCodec,
        )
        .unwrap();
        assert_eq!(
            displayable(physical.as_ref()).indent(true).to_string(),
            displayable(rebuilt.as_ref()).indent(true).to_string()
        );
        let (a, b) = (
            sample_exec(&physical).unwrap().runtime(),
            sample_exec(&rebuilt).unwrap().runtime(),
        );
        // the LIMIT pushed into the scan travels too
        assert_eq!(sample_exec(&rebuilt).unwrap().limit(), Some(3));
        // same call => same checkpoint keys on every node
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.columns, b.columns);
    }

    #[tokio::test]
    async fn a_session_table_cannot_travel() {
        let ctx = context();
        ctx.sql("CREATE TABLE t (prompt VARCHAR) AS VALUES ('hi')")
            .await
            .unwrap();
        let plan = ctx
            .sql("SELECT * FROM random_sample('t', 2)")
            .await
            .unwrap()
            .into_optimized_plan()
            .unwrap();
        let err = logical_plan_to_bytes_with_extension_codec(&plan, &PrsLogicalCodec)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("input t:") && err.contains("every executor can read"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn relative_paths_travel_as_the_clients_absolute_paths() {
        let ctx = context();
        let sql = format!("SELECT * FROM random_sample('{DATA}', 2, 'checkpoint_dir=ck/run1')");
        let (_, back) = round_trip(&ctx, &sql).await;
        let expected = std::env::current_dir().unwrap().join("ck/run1");
        assert_eq!(
            sample_table(&back).cfg.checkpoint_dir,
            expected.display().to_string()
        );
    }

    #[test]
    fn foreign_or_damaged_bytes_are_refused_clearly() {
        let ctx = SessionContext::new();
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::empty());
        let table = TableReference::bare("x");
        for buf in [
            &b"not prs"[..],
            b"prs-sample-table/1\n{\"method\":\"best\"}",
        ] {
            let err = PrsLogicalCodec
                .try_decode_table_provider(buf, &table, schema.clone(), &ctx.task_ctx())
                .unwrap_err()
                .to_string();
            assert!(err.contains("same prs version"), "{err}");
        }
    }
}
