//! Single-flight: identical sampling work requested at once within a process (the same
//! `prs_sample(...)` referenced twice in a query, a view joined with itself) is computed once.
//!
//! Calls with the same fingerprint share one [`Flight`]. Each prompt runs as a shared future;
//! a second consumer of the same prompt awaits the first one's result. Finished results are
//! kept only while at least two execution nodes of the call have open streams, so a call used once
//! keeps nothing and memory stays bounded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};

use futures::future::{BoxFuture, FutureExt, Shared};

use crate::schema::PromptResult;

/// A prompt's result, or its error (shared by every consumer).
pub type Outcome = Result<Arc<PromptResult>, Arc<datafusion::error::DataFusionError>>;

type Running = Shared<BoxFuture<'static, Outcome>>;

#[derive(Default)]
pub struct Flight {
    execs: AtomicUsize,
    entries: Mutex<HashMap<String, Running>>,
}

impl std::fmt::Debug for Flight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flight")
            .field("execs", &self.execs.load(Ordering::Relaxed))
            .finish()
    }
}

static FLIGHTS: LazyLock<Mutex<HashMap<String, Weak<Flight>>>> = LazyLock::new(Default::default);

/// The flight of a call fingerprint, shared by every live call with that fingerprint.
pub fn flight_for(fingerprint: &str) -> Arc<Flight> {
    let Ok(mut map) = FLIGHTS.lock() else {
        return Arc::new(Flight::default());
    };
    map.retain(|_, w| w.strong_count() > 0);
    if let Some(f) = map.get(fingerprint).and_then(Weak::upgrade) {
        return f;
    }
    let f = Arc::new(Flight::default());
    map.insert(fingerprint.to_string(), Arc::downgrade(&f));
    f
}

/// Held (shared by its partition streams) by each execution node of the call while it runs.
#[derive(Debug)]
pub struct ExecGuard(Arc<Flight>);

impl Drop for ExecGuard {
    fn drop(&mut self) {
        self.0.execs.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Flight {
    pub fn register_exec(self: &Arc<Self>) -> ExecGuard {
        self.execs.fetch_add(1, Ordering::SeqCst);
        ExecGuard(self.clone())
    }

    /// Run `work` for `key` unless it is already running (or kept): then share its result.
    pub async fn run(
        &self,
        key: String,
        work: impl FnOnce() -> BoxFuture<'static, Outcome>,
    ) -> Outcome {
        let shared = {
            let Ok(mut entries) = self.entries.lock() else {
                return work().await;
            };
            match entries.get(&key) {
                Some(running) => running.clone(),
                None => {
                    let running = work().shared();
                    entries.insert(key.clone(), running.clone());
                    running
                }
            }
        };
        // Removes the entry when this consumer is done, or dropped midway (e.g. the query failed
        // or hit its LIMIT), unless a finished result is worth keeping for a second node.
        let mut guard = Release {
            flight: self,
            key,
            keep: false,
        };
        let out = shared.await;
        guard.keep = out.is_ok() && self.execs.load(Ordering::SeqCst) >= 2;
        out
    }
}

struct Release<'a> {
    flight: &'a Flight,
    key: String,
    keep: bool,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        if !self.keep {
            if let Ok(mut entries) = self.flight.entries.lock() {
                entries.remove(&self.key);
            }
        }
    }
}
