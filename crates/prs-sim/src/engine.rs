//! A model of a continuous-batching inference engine (vLLM and the like), for benchmarks.
//!
//! Each engine step costs `step_ms + per_seq_ms × running sequences`, plus prefill time for the
//! prompts admitted in that step (`prefill_ms_per_1k_tokens`). At most `max_seqs` sequences run
//! at once; the rest wait in a queue. Every running sequence emits one token per step and leaves
//! when it reaches its length. Lengths come from a seeded long-tailed (Pareto) distribution. The
//! reward model is one accelerator that scores one request at a time (as OpenRLHF's reward
//! server and a Hugging Face pipeline do), each costing `reward_batch_ms + reward_text_ms ×
//! texts`; with `reward_merge_requests`, it batches as vLLM does: the requests that arrived while
//! a forward pass ran are scored together in the next one (up to `max_seqs` texts), so a request
//! of 32 texts and 32 requests of one text that arrive together cost the same.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

/// Parameters of the engine model; `prs sim` takes each as a flag.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct EngineConfig {
    /// Fixed cost of one engine step, milliseconds
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 10.0))]
    pub step_ms: f64,
    /// Added cost per running sequence per step, milliseconds
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 0.05))]
    pub per_seq_ms: f64,
    /// Prefill cost per 1,000 prompt tokens admitted in a step, milliseconds
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 2.0))]
    pub prefill_ms_per_1k_tokens: f64,
    /// Most sequences running at once
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 256))]
    pub max_seqs: usize,
    /// Which waiting sequences run first: in arrival order, or by each request's `priority`
    /// (lower first, then arrival), as vLLM's `--scheduling-policy`
    #[cfg_attr(feature = "clap", arg(long, value_enum, default_value_t = SchedulingPolicy::Fcfs))]
    pub scheduling_policy: SchedulingPolicy,
    /// Shortest response, tokens (the Pareto scale)
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 40))]
    pub min_tokens: usize,
    /// Pareto shape of response lengths (smaller = longer tail; mean = min × shape / (shape − 1))
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 2.5))]
    pub length_shape: f64,
    /// Fixed cost of one reward batch, milliseconds
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 5.0))]
    pub reward_batch_ms: f64,
    /// Added cost per text in a reward batch, milliseconds
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 0.2))]
    pub reward_text_ms: f64,
    /// Reward model: score the requests waiting together in one forward pass, as vLLM does
    /// (default: one request at a time)
    #[cfg_attr(feature = "clap", arg(long))]
    pub reward_merge_requests: bool,
    /// Answer every request with one choice whatever its `n`, as transformers serve,
    /// llama.cpp and Ollama do
    #[cfg_attr(feature = "clap", arg(long))]
    pub ignore_n: bool,
    /// Prefill only the part of a prompt not seen before, as vLLM's automatic prefix caching
    /// does: prompts are cached in blocks of 16 words, a block counts when it and every block
    /// before it match a cached prompt (the cache is unbounded and a prompt counts as cached
    /// from its first arrival)
    #[cfg_attr(feature = "clap", arg(long))]
    pub prefix_cache: bool,
}

impl EngineConfig {
    /// Tokens per second when `max_seqs` sequences run (prefill aside): the peak rate.
    pub fn peak_tokens_per_sec(&self) -> f64 {
        self.max_seqs as f64 / ((self.step_ms + self.per_seq_ms * self.max_seqs as f64) / 1000.0)
    }

    /// Modelled time of one step running `running` sequences, `prefill_tokens` of them new.
    pub fn step_cost_ms(&self, running: usize, prefill_tokens: usize) -> f64 {
        self.step_ms
            + self.per_seq_ms * running as f64
            + self.prefill_ms_per_1k_tokens * prefill_tokens as f64 / 1000.0
    }

    /// Makespan, in modelled milliseconds, of running `seqs` (tokens, prompt tokens) with all of
    /// them queued at time 0 in this order: the same work with a client that never lets the
    /// queue run dry and no waiting between stages. What remains above the lower bound is
    /// prefill and the drain of the last, longest sequences, which no client that does not know
    /// response lengths in advance can avoid.
    pub fn all_queued_makespan_ms(&self, seqs: &[(usize, usize)]) -> f64 {
        let mut next = seqs.iter();
        let mut running: Vec<usize> = Vec::with_capacity(self.max_seqs);
        let mut ms = 0.0;
        loop {
            let mut prefill = 0;
            while running.len() < self.max_seqs.max(1) {
                let Some(&(tokens, prompt_tokens)) = next.next() else {
                    break;
                };
                prefill += prompt_tokens;
                running.push(tokens.max(1));
            }
            if running.is_empty() {
                return ms;
            }
            ms += self.step_cost_ms(running.len(), prefill);
            running.retain_mut(|left| {
                *left -= 1;
                *left > 0
            });
        }
    }

    /// A response length for a uniform draw `u` in (0, 1].
    pub fn length(&self, u: f64) -> usize {
        let u = u.clamp(1e-9, 1.0);
        let len = self.min_tokens as f64 / u.powf(1.0 / self.length_shape.max(1.01));
        len.round().max(1.0) as usize
    }
}

/// What the engine has done since it started: the makespan of a job against it splits into
/// the lower bound (`tokens` at the peak rate), `prefill_ms`, `underfull_ms` (the fixed step cost
/// not shared by a full batch: `step_ms × (1 − running / max_seqs)` summed over steps, i.e. slots
/// the client left empty) and time with no step at all (idle: nothing to run).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct EngineStats {
    pub steps: u64,
    /// Tokens generated (one per running sequence per step).
    pub tokens: u64,
    /// Modelled time of all steps, milliseconds.
    pub busy_ms: f64,
    /// Of `busy_ms`, prefill of newly admitted prompts.
    pub prefill_ms: f64,
    /// Of `busy_ms`, the step cost lost to running fewer than `max_seqs` sequences.
    pub underfull_ms: f64,
    /// Sequences admitted to a slot so far (the index of the next one in the replay log).
    pub sequences: u64,
    /// Longest queue seen after a step's admissions (sequences still waiting for a slot).
    pub max_queue: usize,
    /// Sequences running in the last step.
    pub running: usize,
    /// Sequences waiting for a slot after the last step's admissions.
    pub waiting: usize,
}

/// vLLM's `--scheduling-policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum SchedulingPolicy {
    Fcfs,
    Priority,
}

struct Job {
    tokens: usize,
    prompt_tokens: usize,
    /// Lower runs first (priority scheduling); 0 otherwise.
    priority: i64,
    done: oneshot::Sender<()>,
}

/// A waiting job in the engine's queue: ordered by priority, then arrival.
struct Waiting(u64, Job);

impl Waiting {
    fn key(&self) -> (std::cmp::Reverse<i64>, std::cmp::Reverse<u64>) {
        (
            std::cmp::Reverse(self.1.priority),
            std::cmp::Reverse(self.0),
        )
    }
}
impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Waiting {}
impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

/// A running engine: submit sequences, await their completion.
pub struct Engine {
    cfg: EngineConfig,
    jobs: mpsc::UnboundedSender<Job>,
    /// Requests to score: (texts, done).
    reward_gpu: mpsc::UnboundedSender<(usize, oneshot::Sender<()>)>,
    stats: Arc<std::sync::Mutex<EngineStats>>,
    log: Arc<std::sync::Mutex<Vec<(usize, usize)>>>,
    /// Blocks of prompts prefilled so far (with `prefix_cache`), by the hash of the block and
    /// every block before it.
    cached: std::sync::Mutex<std::collections::HashSet<u64>>,
}

/// Words per block of the prefix cache (vLLM's default block is 16 tokens).
const PREFIX_BLOCK: usize = 16;

/// Most sequences the engine remembers for [`Engine::all_queued_since`] (16 bytes each).
const LOG_CAP: usize = 4_000_000;

impl Engine {
    /// Start the engine loop on the current runtime.
    pub fn start(cfg: EngineConfig) -> Engine {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(std::sync::Mutex::new(EngineStats::default()));
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        tokio::spawn(run(cfg, rx, stats.clone(), log.clone()));
        let (reward_gpu, scoring) = mpsc::unbounded_channel();
        tokio::spawn(score_loop(cfg, scoring));
        Engine {
            cfg,
            jobs: tx,
            reward_gpu,
            stats,
            log,
            cached: Default::default(),
        }
    }

    /// Prompt tokens (words) a request for `prompt` must prefill: all of them, or with the
    /// prefix cache only those after the longest run of cached blocks from its start; the
    /// prompt's blocks are cached from then on.
    pub fn prefill_tokens(&self, prompt: &str) -> usize {
        let words: Vec<&str> = prompt.split_whitespace().collect();
        if !self.cfg.prefix_cache {
            return words.len();
        }
        let Ok(mut cached) = self.cached.lock() else {
            return words.len();
        };
        let mut chain = 0xcbf2_9ce4_8422_2325u64;
        let mut hit = 0;
        let mut missed = false;
        for block in words.chunks(PREFIX_BLOCK) {
            // a partial last block is cached too (vLLM caches full blocks only; at 16 words
            // the difference is a few tokens a prompt)
            chain = block.iter().fold(chain.rotate_left(5), |h, w| {
                w.bytes()
                    .chain([b' '])
                    .fold(h, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
            });
            if !cached.insert(chain) && !missed {
                hit += block.len();
            } else {
                missed = true;
            }
        }
        words.len() - hit
    }

    /// [`EngineConfig::all_queued_makespan_ms`] of the sequences admitted since the
    /// `from`-th (`EngineStats::sequences` before a run); `None` once the log is full.
    pub fn all_queued_since(&self, from: usize) -> Option<f64> {
        let seqs: Vec<(usize, usize)> = {
            // copied out: the engine's loop takes this lock every step
            let log = self.log.lock().ok()?;
            if log.len() >= LOG_CAP {
                return None;
            }
            log.get(from..).unwrap_or(&[]).to_vec()
        };
        Some(self.cfg.all_queued_makespan_ms(&seqs))
    }

    /// What the engine has done so far.
    pub fn stats(&self) -> EngineStats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Generate one sequence of `tokens` tokens; resolves when the engine has produced them.
    /// `priority` orders the queue under priority scheduling (lower first).
    pub async fn generate(&self, tokens: usize, prompt_tokens: usize, priority: i64) {
        let (done, wait) = oneshot::channel();
        let job = Job {
            tokens: tokens.max(1),
            prompt_tokens,
            priority: match self.cfg.scheduling_policy {
                SchedulingPolicy::Priority => priority,
                SchedulingPolicy::Fcfs => 0,
            },
            done,
        };
        if self.jobs.send(job).is_ok() {
            let _ = wait.await;
        }
    }

    /// Score a request of `texts` texts on the (single) reward accelerator.
    pub async fn score(&self, texts: usize) {
        let (done, wait) = oneshot::channel();
        if self.reward_gpu.send((texts, done)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// The reward accelerator: one forward pass at a time, over one request or (merging) the
/// requests waiting.
async fn score_loop(
    cfg: EngineConfig,
    mut rx: mpsc::UnboundedReceiver<(usize, oneshot::Sender<()>)>,
) {
    let mut next = None;
    loop {
        let first = match next.take() {
            Some(f) => f,
            None => match rx.recv().await {
                Some(f) => f,
                None => return,
            },
        };
        let mut texts = first.0;
        let mut pass = vec![first];
        while cfg.reward_merge_requests && texts < cfg.max_seqs.max(1) {
            match rx.try_recv() {
                Ok(more) if texts + more.0 <= cfg.max_seqs.max(1) => {
                    texts += more.0;
                    pass.push(more);
                }
                Ok(more) => {
                    next = Some(more);
                    break;
                }
                Err(_) => break,
            }
        }
        let ms = cfg.reward_batch_ms + cfg.reward_text_ms * texts as f64;
        tokio::time::sleep(Duration::from_secs_f64(ms / 1000.0)).await;
        for (_, done) in pass {
            let _ = done.send(());
        }
    }
}

async fn run(
    cfg: EngineConfig,
    mut rx: mpsc::UnboundedReceiver<Job>,
    stats: Arc<std::sync::Mutex<EngineStats>>,
    log: Arc<std::sync::Mutex<Vec<(usize, usize)>>>,
) {
    let max_seqs = cfg.max_seqs.max(1);
    let mut queue: std::collections::BinaryHeap<Waiting> = Default::default();
    let mut arrivals = 0u64;
    let mut enqueue = |queue: &mut std::collections::BinaryHeap<Waiting>, job| {
        arrivals += 1;
        queue.push(Waiting(arrivals, job));
    };
    let mut running: Vec<(usize, oneshot::Sender<()>)> = Vec::new();
    // steps are scheduled on an absolute clock so timer slack does not accumulate
    let mut clock = tokio::time::Instant::now();
    loop {
        if running.is_empty() && queue.is_empty() {
            if let Ok(mut s) = stats.lock() {
                (s.running, s.waiting) = (0, 0);
            }
            match rx.recv().await {
                Some(job) => enqueue(&mut queue, job),
                None => return,
            }
            clock = tokio::time::Instant::now();
        }
        while let Ok(job) = rx.try_recv() {
            enqueue(&mut queue, job);
        }
        let mut prefill_tokens = 0;
        let mut admitted = 0;
        {
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            while running.len() < max_seqs {
                let Some(Waiting(_, job)) = queue.pop() else {
                    break;
                };
                prefill_tokens += job.prompt_tokens;
                admitted += 1;
                if log.len() < LOG_CAP {
                    log.push((job.tokens, job.prompt_tokens));
                }
                running.push((job.tokens, job.done));
            }
        }
        let prefill_ms = cfg.prefill_ms_per_1k_tokens * prefill_tokens as f64 / 1000.0;
        let step_ms = cfg.step_cost_ms(running.len(), prefill_tokens);
        if let Ok(mut s) = stats.lock() {
            s.steps += 1;
            s.tokens += running.len() as u64;
            s.busy_ms += step_ms;
            s.prefill_ms += prefill_ms;
            s.underfull_ms += cfg.step_ms * (1.0 - running.len() as f64 / max_seqs as f64);
            s.sequences += admitted;
            s.max_queue = s.max_queue.max(queue.len());
            s.running = running.len();
            s.waiting = queue.len();
        }
        clock += Duration::from_secs_f64(step_ms / 1000.0);
        tokio::time::sleep_until(clock).await;
        let mut still = Vec::with_capacity(running.len());
        for (left, done) in running.drain(..) {
            if left <= 1 {
                let _ = done.send(());
            } else {
                still.push((left - 1, done));
            }
        }
        running = still;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An engine with the given step costs and slots; 1-token minimum length, free rewards.
    fn model(step_ms: f64, per_seq_ms: f64, prefill: f64, max_seqs: usize) -> EngineConfig {
        EngineConfig {
            step_ms,
            per_seq_ms,
            prefill_ms_per_1k_tokens: prefill,
            max_seqs,
            min_tokens: 1,
            length_shape: 2.0,
            reward_batch_ms: 0.0,
            reward_text_ms: 0.0,
            reward_merge_requests: false,
            scheduling_policy: SchedulingPolicy::Fcfs,
            ignore_n: false,
            prefix_cache: false,
        }
    }

    /// Under priority scheduling, waiting sequences run lowest priority first, then in order of
    /// arrival; first come first served ignores priorities.
    #[tokio::test(start_paused = true)]
    async fn priority_scheduling_orders_the_queue() {
        for (policy, expected) in [
            (SchedulingPolicy::Priority, vec![0, 3, 2, 1]),
            (SchedulingPolicy::Fcfs, vec![0, 1, 2, 3]),
        ] {
            let engine = std::sync::Arc::new(Engine::start(EngineConfig {
                scheduling_policy: policy,
                ..model(1.0, 0.0, 0.0, 1)
            }));
            let order = std::sync::Arc::new(std::sync::Mutex::new(vec![]));
            // one slot: job 0 runs, the others wait with priorities 0, 0, -1 (in arrival order)
            let mut jobs = vec![];
            for (i, priority) in [(0, 0), (1, 0), (2, -1), (3, -2)] {
                let (e, order) = (engine.clone(), order.clone());
                jobs.push(tokio::spawn(async move {
                    e.generate(5, 0, priority).await;
                    order.lock().unwrap().push(i);
                }));
                tokio::task::yield_now().await;
            }
            for j in jobs {
                j.await.unwrap();
            }
            assert_eq!(*order.lock().unwrap(), expected, "{policy:?}");
        }
    }

    #[tokio::test]
    async fn the_prefix_cache_prefills_only_what_it_has_not_seen() {
        let cached = Engine::start(EngineConfig {
            prefix_cache: true,
            ..model(1.0, 0.0, 1.0, 4)
        });
        let words = |from: usize, n: usize| {
            (from..from + n)
                .map(|i| format!("w{i}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let question = words(0, 40);
        assert_eq!(cached.prefill_tokens(&question), 40);
        // the same prompt again: nothing to prefill
        assert_eq!(cached.prefill_tokens(&question), 0);
        // the question followed by more: its two full blocks (32 words) are cached, the partial
        // third block differs from the cached one (it now holds other words after w39)
        let longer = format!("{question} {}", words(100, 30));
        assert_eq!(cached.prefill_tokens(&longer), 70 - 32);
        // a prompt that differs in its first word shares nothing, even with the same rest
        let other = format!("x {}", words(1, 39));
        assert_eq!(cached.prefill_tokens(&other), 40);
        // without the cache, every request prefills all of it
        let plain = Engine::start(model(1.0, 0.0, 1.0, 4));
        assert_eq!(plain.prefill_tokens(&question), 40);
        assert_eq!(plain.prefill_tokens(&question), 40);
    }

    #[test]
    fn lengths_are_long_tailed() {
        let cfg = EngineConfig {
            min_tokens: 40,
            length_shape: 2.5,
            ..model(10.0, 0.05, 0.0, 256)
        };
        assert_eq!(cfg.length(1.0), 40);
        assert!(cfg.length(0.01) > 200);
        let peak = cfg.peak_tokens_per_sec();
        assert!((peak - 256.0 / 0.0228).abs() < 1.0, "{peak}");
    }

    #[tokio::test(start_paused = true)]
    async fn batching_shares_steps() {
        let cfg = model(10.0, 0.0, 0.0, 4);
        let engine = std::sync::Arc::new(Engine::start(cfg));
        // milliseconds until `count` sequences of 10 tokens, submitted at once, are all done
        let run = |count: usize| {
            let engine = engine.clone();
            async move {
                let start = tokio::time::Instant::now();
                let futs: Vec<_> = (0..count)
                    .map(|_| {
                        let e = engine.clone();
                        tokio::spawn(async move { e.generate(10, 0, 0).await })
                    })
                    .collect();
                for f in futs {
                    f.await.unwrap();
                }
                start.elapsed().as_millis()
            }
        };
        // 4 sequences of 10 tokens run together: 10 steps, not 40
        let took = run(4).await;
        assert!((100..=110).contains(&took), "{took}");
        // a fifth waits for a free slot
        let took = run(5).await;
        assert!((200..=220).contains(&took), "{took}");
    }

    #[tokio::test(start_paused = true)]
    async fn stats_split_the_busy_time() {
        let cfg = model(10.0, 1.0, 100.0, 4);
        let engine = std::sync::Arc::new(Engine::start(cfg));
        // two sequences: 10 and 5 tokens, with 500 and 0 prompt tokens, admitted in one step
        futures::future::join(engine.generate(10, 500, 0), engine.generate(5, 0, 0)).await;
        let s = engine.stats();
        assert_eq!((s.steps, s.tokens, s.sequences), (10, 15, 2));
        // 10 steps × 10 ms, 15 sequence-steps × 1 ms, one prefill of 500 tokens = 50 ms
        assert!((s.busy_ms - 165.0).abs() < 1e-9, "{s:?}");
        assert!((s.prefill_ms - 50.0).abs() < 1e-9, "{s:?}");
        // 5 steps with 2 of 4 slots, 5 with 1 of 4: 10 × (5 × 0.5 + 5 × 0.75)
        assert!((s.underfull_ms - 62.5).abs() < 1e-9, "{s:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn all_queued_replay_matches_a_fully_fed_run() {
        let cfg = model(10.0, 1.0, 100.0, 2);
        // by hand: steps 1-3 run (4, 3): 12 ms each, +20 ms prefill in step 1; step 4 runs
        // (1, 5) with 10 ms prefill: 22; steps 5-8 run the 5-token one alone: 11 each
        let seqs = [(4, 200), (3, 0), (5, 100)];
        let expected = 3.0 * 12.0 + 20.0 + 22.0 + 4.0 * 11.0;
        assert!((cfg.all_queued_makespan_ms(&seqs) - expected).abs() < 1e-9);
        assert_eq!(cfg.all_queued_makespan_ms(&[]), 0.0);

        // the live engine, fed everything at once, takes the same modelled time
        let engine = std::sync::Arc::new(Engine::start(cfg));
        // one poll of join_all sends all three, in order, before the engine's loop runs
        futures::future::join_all(seqs.iter().map(|&(t, p)| engine.generate(t, p, 0))).await;
        let s = engine.stats();
        assert!((s.busy_ms - expected).abs() < 1e-9, "{s:?}");
        let replay = engine.all_queued_since(0).unwrap();
        assert!((replay - expected).abs() < 1e-9, "{replay}");
        assert_eq!(engine.all_queued_since(3), Some(0.0));
    }
}
