//! Running sampling SQL on an Apache DataFusion Ballista cluster (feature `cluster`).
//!
//! * `prs scheduler` and `prs executor` are Ballista's scheduler and executor with prs' plan
//!   codecs, settings and functions installed;
//! * `prs sql --cluster df://host:port` plans on the client and submits the plan: the
//!   scheduler rebuilds each sampling call from its codec bytes (method, source, n, `prs.*`
//!   settings, templates), splits the prompt table's partitions into tasks, and each executor
//!   calls the policy and reward endpoints itself, with API keys from its own environment.

use std::net::SocketAddr;
use std::sync::Arc;

use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::execution_plans::DistributedQueryExec;
use ballista_core::extension::{SessionConfigExt, SessionStateExt};
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::{
    GetJobMetricsParams, GetJobMetricsResult, OperatorMetricsSet,
};
use ballista_core::serde::{BallistaLogicalExtensionCodec, BallistaPhysicalExtensionCodec};
use ballista_core::utils::{create_grpc_client_endpoint, GrpcClientConfig};
use ballista_core::JobId;
use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::{SchedulerConfig, TaskDistributionPolicy};
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::TableReference;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{Extension, LogicalPlan};
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{ComposedPhysicalExtensionCodec, PhysicalExtensionCodec};
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use datafusion_prs::PrsConfig;
use datafusion_prs::{JobStats, StatsSnapshot};
use datafusion_prs::{PrsLogicalCodec, PrsPhysicalCodec};

/// What went wrong starting, reaching or reading a cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// An address flag that does not parse.
    #[error("{flag} {value:?}: expected {expected}")]
    Address {
        flag: &'static str,
        value: String,
        expected: &'static str,
    },
    /// A step of starting a scheduler or executor, or of talking to the scheduler, failed.
    #[error("{step}: {source}")]
    Step {
        step: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A session setting the cluster client needs was refused.
    #[error(transparent)]
    Setting(#[from] DataFusionError),
    /// A query could not reach the scheduler.
    #[error(
        "cannot reach the Ballista scheduler at {url}: is `prs scheduler` running there, and \
         is the port open? ({detail})"
    )]
    Unreachable { url: String, detail: String },
    /// A query reads a table that lives only in the client's session.
    #[error(
        "a table that exists only in this session (CREATE TABLE ... AS, VALUES, a registered \
         batch) cannot be sent to the cluster: write it where every executor can read it \
         (COPY ... TO 'dir/' STORED AS PARQUET) and read it back with CREATE EXTERNAL TABLE \
         ... STORED AS PARQUET LOCATION 'dir/' (see queries/cluster_quickstart.sql)"
    )]
    LocalTable,
}

impl ClusterError {
    fn step(
        step: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        ClusterError::Step {
            step: step.into(),
            source: source.into(),
        }
    }
}

/// Logical codec of every process: prs' sampling tables, Ballista's for everything else (its
/// own nodes and the file formats of Parquet / CSV / JSON scans).
#[derive(Debug, Default)]
pub struct ClusterLogicalCodec {
    ballista: BallistaLogicalExtensionCodec,
    prs: PrsLogicalCodec,
}

impl LogicalExtensionCodec for ClusterLogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> DfResult<Extension> {
        self.ballista.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> DfResult<()> {
        self.ballista.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> DfResult<Arc<dyn TableProvider>> {
        if PrsLogicalCodec::is_prs(buf) {
            self.prs
                .try_decode_table_provider(buf, table_ref, schema, ctx)
        } else {
            self.ballista
                .try_decode_table_provider(buf, table_ref, schema, ctx)
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> DfResult<()> {
        if PrsLogicalCodec::handles(&node) {
            self.prs.try_encode_table_provider(table_ref, node, buf)
        } else {
            self.ballista
                .try_encode_table_provider(table_ref, node, buf)
        }
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> DfResult<Arc<dyn FileFormatFactory>> {
        self.ballista.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> DfResult<()> {
        self.ballista.try_encode_file_format(buf, node)
    }
}

pub fn logical_codec() -> Arc<dyn LogicalExtensionCodec> {
    Arc::new(ClusterLogicalCodec::default())
}

/// Physical codec of every process: Ballista's (shuffle nodes), then prs' (`SampleExec`).
pub fn physical_codec() -> Arc<dyn PhysicalExtensionCodec> {
    Arc::new(ComposedPhysicalExtensionCodec::new(vec![
        Arc::new(BallistaPhysicalExtensionCodec::default()),
        Arc::new(PrsPhysicalCodec),
    ]))
}

/// The session configuration the scheduler and executors start each query from: Ballista's,
/// plus the `prs` settings (defaults here; the client's values arrive with every query).
pub fn server_config() -> SessionConfig {
    SessionConfig::new_with_ballista()
        .with_option_extension(PrsConfig::default())
        .with_ballista_logical_extension_codec(logical_codec())
        .with_ballista_physical_extension_codec(physical_codec())
}

/// Ballista's session for a query on the scheduler, with prs' functions registered.
fn server_session(config: SessionConfig) -> DfResult<SessionState> {
    let ctx =
        SessionContext::new_with_state(ballista_core::utils::default_session_builder(config)?);
    datafusion_prs::register(&ctx);
    Ok(ctx.state())
}

/// `host:port`, or a port alone meaning 127.0.0.1:port.
fn parse_bind(value: &str) -> Result<SocketAddr, String> {
    match value.parse::<u16>() {
        Ok(port) => Ok(SocketAddr::from(([127, 0, 0, 1], port))),
        Err(_) => value
            .parse()
            .map_err(|e| format!("{e}: expected host:port (like 0.0.0.0:50050) or a port")),
    }
}

/// `prs scheduler` settings.
#[derive(Debug, Clone, clap::Args)]
pub struct SchedulerArgs {
    /// Address to listen on (executors and clients connect here): host:port, or a port alone
    /// for loopback; e.g. 0.0.0.0:50050 to serve other hosts (on a private network: there is no
    /// authentication)
    #[arg(long, default_value = "127.0.0.1:50050", value_parser = parse_bind)]
    pub bind: SocketAddr,
    /// Host name executors and clients use to reach this scheduler
    #[arg(long, default_value = "localhost")]
    pub external_host: String,
    /// Seconds without a heartbeat after which an executor counts as dead and its tasks are
    /// run again elsewhere
    #[arg(long, default_value_t = 60)]
    pub executor_timeout_secs: u64,
}

/// A running scheduler.
pub struct Scheduler {
    pub addr: SocketAddr,
    pub task: tokio::task::JoinHandle<()>,
}

/// Start a scheduler on `args.bind` (port 0 picks a free port).
pub async fn start_scheduler(args: &SchedulerArgs) -> Result<Scheduler, ClusterError> {
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .map_err(|e| ClusterError::step(format!("cannot listen on {}", args.bind), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| ClusterError::step("cannot read the listening address", e))?;
    let timeout = args.executor_timeout_secs.max(2);
    let config = Arc::new(SchedulerConfig {
        bind_host: addr.ip().to_string(),
        bind_port: addr.port(),
        external_host: args.external_host.clone(),
        scheduling_policy: TaskSchedulingPolicy::PushStaged,
        // one task per input partition, spread over the executors
        task_distribution: TaskDistributionPolicy::RoundRobin,
        executor_timeout_seconds: timeout,
        expire_dead_executor_interval_seconds: (timeout / 3).clamp(1, 15),
        override_logical_codec: Some(logical_codec()),
        override_physical_codec: Some(physical_codec()),
        override_config_producer: Some(Arc::new(server_config)),
        override_session_builder: Some(Arc::new(server_session)),
        ..Default::default()
    });
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| ClusterError::step("cannot set up the scheduler", e))?;
    let server = create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, config)
        .await
        .map_err(|e| ClusterError::step("cannot start the scheduler", e))?;
    let task = tokio::spawn(async move {
        if let Err(e) = start_grpc_service_with_listener(listener, server).await {
            tracing::error!("scheduler stopped: {e}");
        }
    });
    Ok(Scheduler { addr, task })
}

/// `prs executor` settings.
#[derive(Debug, Clone, clap::Args)]
pub struct ExecutorArgs {
    /// Scheduler to register with, host:port
    #[arg(long, default_value = "localhost:50050")]
    pub scheduler: String,
    /// Address to listen on; loopback unless given, e.g. 0.0.0.0 to serve other hosts (on a
    /// private network: there is no authentication)
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_host: String,
    /// Host name the scheduler, other executors and clients use to reach this executor
    #[arg(long, default_value = "localhost")]
    pub external_host: String,
    /// Arrow Flight port (results and shuffle data are fetched from here)
    #[arg(long, default_value_t = 50051)]
    pub flight_port: u16,
    /// gRPC port (the scheduler hands out tasks here)
    #[arg(long, default_value_t = 50052)]
    pub grpc_port: u16,
    /// Tasks run at once (0 = the number of CPU cores); each task samples one partition of the
    /// prompt table with its own prs.prompt_concurrency
    #[arg(long, default_value_t = 0)]
    pub concurrent_tasks: usize,
    /// Directory for shuffle files (default: a directory under the system temp dir)
    #[arg(long)]
    pub work_dir: Option<std::path::PathBuf>,
    /// Seconds between heartbeats to the scheduler
    #[arg(long, default_value_t = 10)]
    pub heartbeat_secs: u64,
}

/// Run an executor until it is stopped (Ctrl-C, SIGTERM, or the scheduler).
pub async fn run_executor(args: &ExecutorArgs) -> Result<(), ClusterError> {
    // this process runs plans others wrote: its API keys go only to its own endpoints
    datafusion_prs::bind_keys_to_own_endpoints()
        .map_err(|e| ClusterError::step("cannot read this executor's endpoints", e))?;
    // ... and reads no file a query's settings name
    datafusion_prs::refuse_template_files();
    let (host, port) = args
        .scheduler
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| ClusterError::Address {
            flag: "--scheduler",
            value: args.scheduler.clone(),
            expected: "host:port",
        })?;
    let work_dir = match &args.work_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("prs-executor-{}", args.flight_port)),
    };
    std::fs::create_dir_all(&work_dir).map_err(|e| {
        ClusterError::step(
            format!("cannot create --work-dir {}", work_dir.display()),
            e,
        )
    })?;
    let registry = BallistaFunctionRegistry::from(
        &server_session(server_config())
            .map_err(|e| ClusterError::step("cannot set up the executor's functions", e))?,
    );
    let config = ExecutorProcessConfig {
        bind_host: args.bind_host.clone(),
        external_host: Some(args.external_host.clone()),
        port: args.flight_port,
        grpc_port: args.grpc_port,
        scheduler_host: host,
        scheduler_port: port,
        scheduler_connect_timeout_seconds: 30,
        vcores: args.concurrent_tasks,
        task_scheduling_policy: TaskSchedulingPolicy::PushStaged,
        work_dir: Some(work_dir.display().to_string()),
        executor_heartbeat_interval_seconds: args.heartbeat_secs.max(1),
        override_config_producer: Some(Arc::new(server_config)),
        override_logical_codec: Some(logical_codec()),
        override_physical_codec: Some(physical_codec()),
        override_function_registry: Some(Arc::new(registry)),
        ..Default::default()
    };
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| ClusterError::step("executor stopped", e))
}

/// A client context that plans locally and runs every query on the cluster at `url`
/// (`df://host:port`), with the given settings and prs' functions.
pub fn client_context(url: &str, cfg: PrsConfig) -> Result<SessionContext, ClusterError> {
    let rest = url
        .strip_prefix("df://")
        .ok_or_else(|| ClusterError::Address {
            flag: "--cluster",
            value: url.to_string(),
            expected: "df://host:port",
        })?;
    let rest = rest.trim_end_matches('/');
    let scheduler_url = if rest.contains(':') {
        format!("http://{rest}")
    } else {
        format!("http://{rest}:50050")
    };
    let mut config = SessionConfig::new_with_ballista()
        .with_information_schema(true)
        .with_option_extension(cfg)
        .with_ballista_logical_extension_codec(logical_codec())
        .with_ballista_physical_extension_codec(physical_codec());
    // one task per partition of the prompt table, so every executor gets a share
    config
        .options_mut()
        .set("ballista.scheduler.max_partitions_per_task", "1")?;
    JobStats::install(&mut config);
    let plans = Arc::new(ClusterPlans::default());
    let config = config
        .with_extension(Arc::new(SchedulerUrl(scheduler_url.clone())))
        .with_extension(plans.clone());
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .build();
    let local = SessionContext::new_with_state(state);
    datafusion_prs::register_distributed(&local);
    let state = local
        .state()
        .upgrade_for_ballista(scheduler_url)
        .map_err(|e| ClusterError::step(format!("--cluster {url}"), e))?;
    let planner = Arc::new(RecordingPlanner {
        inner: state.query_planner().clone(),
        plans,
    });
    let state = SessionStateBuilder::new_from_existing(state)
        .with_query_planner(planner)
        .build();
    let ctx = SessionContext::new_with_state(state).enable_url_table();
    // the upgrade replaced the scalar functions with Ballista's list: add ours again
    datafusion_prs::register_distributed(&ctx);
    Ok(ctx)
}

/// The scheduler a cluster client session sends its queries to (`http://host:port`).
#[derive(Debug, Clone)]
pub struct SchedulerUrl(pub String);

/// The physical plans a cluster client session created since they were last taken, so that
/// the CLI finds every job a statement ran, including the ones DataFusion plans and runs
/// inside a statement (`CREATE TABLE ... AS` runs its input that way).
#[derive(Debug, Default)]
pub struct ClusterPlans(std::sync::Mutex<Vec<Arc<dyn ExecutionPlan>>>);

/// Plans kept at most: a host that never takes them keeps only the latest.
const PLANS_KEPT: usize = 64;

impl ClusterPlans {
    fn take(&self) -> Vec<Arc<dyn ExecutionPlan>> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Ballista's query planner, remembering each plan it makes in [`ClusterPlans`].
#[derive(Debug)]
struct RecordingPlanner {
    inner: Arc<dyn QueryPlanner + Send + Sync>,
    plans: Arc<ClusterPlans>,
}

#[async_trait::async_trait]
impl QueryPlanner for RecordingPlanner {
    async fn create_physical_plan(
        &self,
        plan: &LogicalPlan,
        session: &dyn Session,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let physical = self.inner.create_physical_plan(plan, session).await?;
        let mut plans = self.plans.0.lock().unwrap_or_else(|e| e.into_inner());
        if plans.len() >= PLANS_KEPT {
            plans.remove(0);
        }
        plans.push(physical.clone());
        Ok(physical)
    }
}

/// After a statement ran on the cluster: ask the scheduler for the metrics of each job it ran
/// and add the sampling counters of every `SampleExec` task that succeeded to the session's
/// [`JobStats`], so the CLI's job summary (and `prs.max_failed_share`) count the executors'
/// work. Returns how many jobs were counted. Reward requests and failures by kind are not among
/// the metrics the executors report; reward texts and failed candidates are.
pub async fn absorb_job_counters(ctx: &SessionContext) -> Result<usize, ClusterError> {
    let state = ctx.state();
    let config = state.config();
    let (Some(url), Some(plans)) = (
        config.get_extension::<SchedulerUrl>(),
        config.get_extension::<ClusterPlans>(),
    ) else {
        return Ok(0);
    };
    let jobs: Vec<JobId> = plans.take().iter().filter_map(cluster_job_id).collect();
    if jobs.is_empty() {
        return Ok(0);
    }
    // the session's gRPC settings: timeouts, metadata (auth), message size
    let ballista = config.ballista_config();
    let channel =
        create_grpc_client_endpoint(url.0.clone(), Some(&GrpcClientConfig::from(&ballista)))
            .map_err(|e| ClusterError::step(format!("scheduler address {}", url.0), e))?
            .connect()
            .await
            .map_err(|e| {
                ClusterError::step(format!("cannot reach the scheduler at {}", url.0), e)
            })?;
    let max_message = ballista.grpc_client_max_message_size();
    let mut client = SchedulerGrpcClient::with_interceptor(
        channel,
        config.ballista_grpc_interceptor().as_ref().clone(),
    )
    .max_encoding_message_size(max_message)
    .max_decoding_message_size(max_message);
    let stats = JobStats::of(config);
    for job in &jobs {
        let metrics = client
            .get_job_metrics(GetJobMetricsParams {
                job_id: job.to_string(),
            })
            .await
            .map_err(|e| {
                let step = format!(
                    "job {job}: the scheduler at {} did not give its metrics",
                    url.0
                );
                ClusterError::step(step, e)
            })?
            .into_inner();
        stats.absorb(&sampling_counters(&metrics)?);
    }
    Ok(jobs.len())
}

/// The job id of the cluster query in `plan` (the plan itself, or below an EXPLAIN ANALYZE).
fn cluster_job_id(plan: &Arc<dyn ExecutionPlan>) -> Option<JobId> {
    if let Some(query) = plan.downcast_ref::<DistributedQueryExec<LogicalPlanNode>>() {
        return query.job_id();
    }
    plan.children().into_iter().find_map(cluster_job_id)
}

/// The `SampleExec` counters of a job's successful stages, summed.
fn sampling_counters(job: &GetJobMetricsResult) -> Result<StatsSnapshot, ClusterError> {
    let mut s = StatsSnapshot::default();
    let operators = job.stages.iter().flat_map(|stage| &stage.operators);
    for op in operators.filter(|op| op.operator_type == "SampleExec") {
        let set: MetricsSet = OperatorMetricsSet {
            metrics: op.metrics.clone(),
        }
        .try_into()
        .map_err(|e| ClusterError::step("unreadable metrics from the scheduler", e))?;
        let set = set.aggregate_by_name();
        let count = |name: &str| set.sum_by_name(name).map_or(0, |v| v.as_usize() as u64);
        s.prompts += count("prompts");
        s.prompts_from_checkpoint += count("prompts_from_checkpoint");
        s.candidates += count("candidates");
        s.failed_candidates += count("failed_candidates");
        s.retries += count("retries");
        s.policy_requests += count("policy_requests");
        s.reward_texts += count("reward_texts");
        s.prompt_tokens += count("prompt_tokens");
        s.completion_tokens += count("completion_tokens");
        s.checks.extra_samples += count("extra_samples");
        s.checks.duplicates_kept += count("duplicates_kept");
        s.checks.all_truncated_prompts += count("all_truncated_prompts");
    }
    Ok(s)
}

/// What a failed cluster query's error means when it is about reaching the scheduler or about
/// a table that cannot travel (`None`: the error says it well enough).
///
/// Ballista reports both only as text inside the error it returns, so this reads the text.
pub fn explain_error(url: &str, error: &str) -> Option<ClusterError> {
    if error.contains("tcp connect error") || error.contains("transport error") {
        Some(ClusterError::Unreachable {
            url: url.to_string(),
            detail: error.to_string(),
        })
    } else if error.contains("failed to serialize logical plan")
        && error.contains("LogicalExtensionCodec is not provided")
    {
        Some(ClusterError::LocalTable)
    } else {
        None
    }
}
