//! Single-flight: identical sampling work requested at once within a process (the same
//! `prs_sample(...)` referenced twice in a query, a view joined with itself) is computed once.
//!
//! Calls whose settings are all equal share one [`Flight`] (see `flight_key` in
//! `runtime.rs`). Each prompt runs as a shared future; a second consumer of the same prompt that
//! asks while it runs awaits the first one's result.
//!
//! Memory is bounded by construction. A finished result is kept for the other execution nodes
//! of the call only while at least two are open, until each of the others has taken it (or
//! all closed), and only within [`KEEP_BYTES`] per flight: past that, a node that asks later
//! computes the prompt again (with a `checkpoint_dir`, it reads it back instead). So a call used
//! once keeps nothing, two nodes that stream side by side (a `UNION ALL`) keep only how far one
//! is ahead of the other, and the build side of a large self-join cannot grow without bound.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use futures::future::{BoxFuture, FutureExt, Shared};

use crate::schema::PromptResult;

/// A prompt's result, or its error (shared by every consumer).
pub type Outcome = Result<Arc<PromptResult>, Arc<datafusion::error::DataFusionError>>;

/// Most bytes of finished results a flight keeps for nodes that have not taken them yet.
pub const KEEP_BYTES: usize = 256 << 20;

type Running = Shared<BoxFuture<'static, Outcome>>;

/// A prompt being computed, and how many nodes besides the producer joined it.
struct InFlight {
    running: Running,
    joined: usize,
}

/// What a node asking for a prompt does: compute it, or await the node computing it.
enum Role {
    Produce(Running),
    Join(Running),
}

/// A finished result waiting for `takers` more nodes.
struct Kept {
    result: Arc<PromptResult>,
    takers: usize,
    bytes: usize,
}

#[derive(Default)]
struct Entries {
    running: HashMap<String, InFlight>,
    kept: HashMap<String, Kept>,
    kept_bytes: usize,
}

impl Entries {
    /// Take a kept result: it goes once the last node that may want it took it.
    fn take(&mut self, key: &str) -> Option<Arc<PromptResult>> {
        let kept = self.kept.get_mut(key)?;
        let result = kept.result.clone();
        kept.takers = kept.takers.saturating_sub(1);
        if kept.takers == 0 {
            let bytes = kept.bytes;
            self.kept.remove(key);
            self.kept_bytes -= bytes;
        }
        Some(result)
    }

    /// Keep `result` for `takers` more nodes if it fits in `limit`.
    fn keep(&mut self, key: String, result: Arc<PromptResult>, takers: usize, limit: usize) {
        let bytes = approx_bytes(&result);
        if takers == 0 || self.kept_bytes.saturating_add(bytes) > limit {
            return;
        }
        self.kept_bytes += bytes;
        let kept = Kept {
            result,
            takers,
            bytes,
        };
        if let Some(old) = self.kept.insert(key, kept) {
            self.kept_bytes -= old.bytes;
        }
    }
}

pub struct Flight {
    execs: AtomicUsize,
    entries: Mutex<Entries>,
    keep_limit: usize,
}

impl Default for Flight {
    fn default() -> Self {
        Flight::with_keep_limit(KEEP_BYTES)
    }
}

impl std::fmt::Debug for Flight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flight")
            .field("execs", &self.execs.load(Ordering::Relaxed))
            .field("kept_bytes", &self.kept_bytes())
            .finish()
    }
}

static FLIGHTS: LazyLock<Mutex<HashMap<String, Weak<Flight>>>> = LazyLock::new(Default::default);

/// The flight of a call key, shared by every live call with that key.
pub fn flight_for(key: &str) -> Arc<Flight> {
    let Ok(mut map) = FLIGHTS.lock() else {
        return Arc::new(Flight::default());
    };
    map.retain(|_, w| w.strong_count() > 0);
    if let Some(f) = map.get(key).and_then(Weak::upgrade) {
        return f;
    }
    let f = Arc::new(Flight::default());
    map.insert(key.to_string(), Arc::downgrade(&f));
    f
}

/// Held (shared by its partition streams) by each execution node of the call while it runs.
#[derive(Debug)]
pub struct ExecGuard(Arc<Flight>);

impl Drop for ExecGuard {
    fn drop(&mut self) {
        let before = self.0.execs.fetch_sub(1, Ordering::SeqCst);
        // (a node that closes may leave results kept for one still open: a join's probe side
        // runs after its build side finished)
        if before <= 1 {
            if let Ok(mut entries) = self.0.entries.lock() {
                entries.kept.clear();
                entries.kept_bytes = 0;
            }
        }
    }
}

impl Flight {
    /// A flight that keeps at most `limit` bytes of finished results.
    pub fn with_keep_limit(limit: usize) -> Self {
        Flight {
            execs: AtomicUsize::new(0),
            entries: Mutex::new(Entries::default()),
            keep_limit: limit,
        }
    }

    pub fn register_exec(self: &Arc<Self>) -> ExecGuard {
        self.execs.fetch_add(1, Ordering::SeqCst);
        ExecGuard(self.clone())
    }

    /// Bytes of finished results kept for nodes that have not taken them yet.
    pub fn kept_bytes(&self) -> usize {
        self.entries.lock().map(|e| e.kept_bytes).unwrap_or(0)
    }

    /// Run `work` for `key` unless it is running (then share its result) or kept for this
    /// node (then take it).
    pub async fn run(
        &self,
        key: String,
        work: impl FnOnce() -> BoxFuture<'static, Outcome>,
    ) -> Outcome {
        let running = {
            let Ok(mut entries) = self.entries.lock() else {
                return work().await;
            };
            if let Some(result) = entries.take(&key) {
                return Ok(result);
            }
            match entries.running.get_mut(&key) {
                Some(in_flight) => {
                    in_flight.joined += 1;
                    Role::Join(in_flight.running.clone())
                }
                None => {
                    let running = work().shared();
                    let in_flight = InFlight {
                        running: running.clone(),
                        joined: 0,
                    };
                    entries.running.insert(key.clone(), in_flight);
                    Role::Produce(running)
                }
            }
        };
        let running = match running {
            Role::Produce(running) => running,
            Role::Join(running) => return running.await,
        };
        // The producer retires the entry when done, or dropped midway (the query failed or hit
        // its LIMIT); a finished result is kept for the nodes that did not join.
        let mut retire = Retire {
            flight: self,
            key,
            result: None,
        };
        let out = running.await;
        retire.result = out.as_ref().ok().cloned();
        out
    }
}

struct Retire<'a> {
    flight: &'a Flight,
    key: String,
    result: Option<Arc<PromptResult>>,
}

impl Drop for Retire<'_> {
    fn drop(&mut self) {
        let Ok(mut entries) = self.flight.entries.lock() else {
            return;
        };
        let joined = entries.running.remove(&self.key).map_or(0, |f| f.joined);
        if let Some(result) = self.result.take() {
            let others = self.flight.execs.load(Ordering::SeqCst).saturating_sub(1);
            let takers = others.saturating_sub(joined);
            let key = std::mem::take(&mut self.key);
            entries.keep(key, result, takers, self.flight.keep_limit);
        }
    }
}

/// About how much memory a result holds: its texts plus a fixed cost per candidate.
fn approx_bytes(r: &PromptResult) -> usize {
    let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    let texts = [&r.prompt, &r.preference, &r.policy_model, &r.reward_model];
    let candidates: usize = r
        .candidates
        .iter()
        .map(|c| {
            let texts = [
                &c.feedback,
                &c.response,
                &c.answer,
                &c.finish_reason,
                &c.error,
            ];
            std::mem::size_of_val(c) + texts.into_iter().map(text).sum::<usize>()
        })
        .sum();
    std::mem::size_of::<PromptResult>() + texts.into_iter().map(text).sum::<usize>() + candidates
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::{Candidate, Method};
    use datafusion::common::ScalarValue;
    use std::sync::atomic::AtomicUsize;

    fn result(i: usize) -> Arc<PromptResult> {
        Arc::new(PromptResult {
            id: ScalarValue::from(i as i64),
            prompt: Some("p".repeat(1000)),
            preference: None,
            method: Method::Random,
            policy_model: None,
            reward_model: None,
            reference: None,
            stopped: None,
            candidates: vec![Candidate::default(); 4],
        })
    }

    /// Run prompt `i` on `flight`, counting the times it was computed in `computed`.
    async fn run(flight: &Flight, i: usize, computed: &Arc<AtomicUsize>) -> Arc<PromptResult> {
        let computed = computed.clone();
        let work = move || {
            computed.fetch_add(1, Ordering::SeqCst);
            async move { Ok(result(i)) }.boxed()
        };
        flight.run(format!("k{i}"), work).await.unwrap()
    }

    #[tokio::test]
    async fn one_node_keeps_nothing() {
        let flight = Arc::new(Flight::default());
        let _a = flight.register_exec();
        let computed = Arc::new(AtomicUsize::new(0));
        for i in 0..10 {
            run(&flight, i, &computed).await;
        }
        assert_eq!(flight.kept_bytes(), 0);
        assert_eq!(computed.load(Ordering::SeqCst), 10);
    }

    #[tokio::test]
    async fn a_kept_result_goes_once_every_other_node_took_it() {
        let flight = Arc::new(Flight::default());
        let (_a, _b, _c) = (
            flight.register_exec(),
            flight.register_exec(),
            flight.register_exec(),
        );
        let computed = Arc::new(AtomicUsize::new(0));
        for i in 0..10 {
            run(&flight, i, &computed).await;
        }
        assert!(flight.kept_bytes() > 10_000, "{flight:?}");
        // the second node takes everything; it stays for the third
        for i in 0..10 {
            run(&flight, i, &computed).await;
        }
        assert!(flight.kept_bytes() > 10_000, "{flight:?}");
        for i in 0..10 {
            run(&flight, i, &computed).await;
        }
        assert_eq!(flight.kept_bytes(), 0);
        assert_eq!(computed.load(Ordering::SeqCst), 10);
    }

    #[tokio::test]
    async fn past_the_limit_results_are_computed_again_not_kept() {
        let limit = 5 * approx_bytes(&result(0));
        let flight = Arc::new(Flight::with_keep_limit(limit));
        let (_a, _b) = (flight.register_exec(), flight.register_exec());
        let computed = Arc::new(AtomicUsize::new(0));
        for i in 0..100 {
            run(&flight, i, &computed).await;
            assert!(flight.kept_bytes() <= limit);
        }
        for i in 0..100 {
            run(&flight, i, &computed).await;
        }
        // 5 kept and taken, 95 computed again; memory never past the limit
        assert_eq!(computed.load(Ordering::SeqCst), 195);
        assert!(flight.kept_bytes() <= limit);
    }

    #[tokio::test]
    async fn a_node_that_joined_in_flight_is_not_waited_for() {
        let flight = Arc::new(Flight::default());
        let (_a, _b) = (flight.register_exec(), flight.register_exec());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let work = move || {
            async move {
                let _ = rx.await;
                Ok(result(1))
            }
            .boxed()
        };
        let producer = flight.run("k".into(), work);
        let joiner = flight.run("k".into(), || -> BoxFuture<'static, Outcome> {
            unreachable!("joins the running one")
        });
        let release = async move {
            tokio::task::yield_now().await;
            let _ = tx.send(());
        };
        let (p, j, ()) = tokio::join!(producer, joiner, release);
        assert!(Arc::ptr_eq(&p.unwrap(), &j.unwrap()));
        assert_eq!(flight.kept_bytes(), 0);
    }

    #[tokio::test]
    async fn the_last_node_closing_drops_what_is_kept() {
        let flight = Arc::new(Flight::default());
        let a = flight.register_exec();
        let b = flight.register_exec();
        let computed = Arc::new(AtomicUsize::new(0));
        run(&flight, 1, &computed).await;
        assert!(flight.kept_bytes() > 0);
        // the open node may still take it
        drop(a);
        assert!(flight.kept_bytes() > 0);
        drop(b);
        assert_eq!(flight.kept_bytes(), 0);
    }
}
