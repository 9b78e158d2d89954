//! The scope of one prompt's work: what the requests made for a prompt need to know about it.
//!
//! The pipeline runs each prompt inside a [`PromptScope`]. The sampler and the clients do not
//! pass the prompt along; what they do on its behalf reaches it through this one task-local:
//!
//! * the journal names the prompt's checkpoint key on each answer it records ([`key`]);
//! * the sampler gives up the prompt's place in the window when its first layer is done
//!   ([`first_layer_done`]);
//! * the clients count requests, tokens, retries and waits into the prompt's [`PromptTally`]
//!   while its sampler runs ([`PromptScope::counting`]; the preflight check, shared by all
//!   prompts, counts for the job only).
//!
//! Outside a scope (the sampler's and clients' own tests, the `reward()` UDF) each of these
//! does nothing.

use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedSemaphorePermit;

/// The endpoint work of a prompt being sampled, as it happens (read as a
/// [`super::stats::PromptWork`] once the prompt is done).
#[derive(Debug, Default)]
pub struct PromptTally {
    pub(super) policy_requests: AtomicU64,
    pub(super) prompt_tokens: AtomicU64,
    pub(super) completion_tokens: AtomicU64,
    pub(super) retries: AtomicU64,
    pub(super) policy_wait_ns: AtomicU64,
    pub(super) reward_wait_ns: AtomicU64,
}

/// One prompt's work in progress.
#[derive(Debug, Clone)]
pub struct PromptScope {
    /// The prompt's checkpoint key.
    key: Arc<str>,
    /// Its place in the partition's window, while it holds one.
    place: Arc<Mutex<Option<OwnedSemaphorePermit>>>,
    /// Where its requests are counted, while its sampler runs.
    tally: Option<Arc<PromptTally>>,
}

tokio::task_local! {
    static CURRENT: PromptScope;
}

impl PromptScope {
    /// The scope of the prompt with checkpoint key `key`, holding `place` in the window.
    pub fn new(key: &str, place: Option<OwnedSemaphorePermit>) -> Self {
        PromptScope {
            key: key.into(),
            place: Arc::new(Mutex::new(place)),
            tally: None,
        }
    }

    /// Run `work` as this prompt's work. The place is given up when the work calls
    /// [`first_layer_done`], or when it ends.
    pub async fn run<F: Future>(self, work: F) -> F::Output {
        CURRENT.scope(self, work).await
    }

    /// Run `work` (the prompt's sampling) with its requests counted into `tally`. Outside a
    /// prompt's scope, nothing is counted.
    pub async fn counting<F: Future>(tally: Arc<PromptTally>, work: F) -> F::Output {
        match CURRENT.try_with(Clone::clone) {
            Ok(scope) => {
                let counted = PromptScope {
                    tally: Some(tally),
                    ..scope
                };
                CURRENT.scope(counted, work).await
            }
            Err(_) => work.await,
        }
    }

    /// Apply `f` to the current prompt's tally, if its requests are being counted.
    pub fn tally(f: impl FnOnce(&PromptTally)) {
        let _ = CURRENT.try_with(|s| s.tally.as_deref().map(f));
    }
}

/// The checkpoint key of the prompt whose work runs in this task, if any.
pub fn key() -> Option<Arc<str>> {
    CURRENT.try_with(|s| s.key.clone()).ok()
}

/// The prompt whose work runs in this task has its first layer done: its place goes to the
/// next prompt.
pub fn first_layer_done() {
    let _ = CURRENT.try_with(|s| {
        if let Ok(mut place) = s.place.lock() {
            place.take();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use tokio::sync::Semaphore;

    #[tokio::test]
    async fn the_scope_carries_key_place_and_tally_to_the_work() {
        let places = Arc::new(Semaphore::new(1));
        let place = places.clone().acquire_owned().await.ok();
        let tally = Arc::new(PromptTally::default());
        let seen = PromptScope::new("P", place)
            .run(async {
                let before = key();
                // not counting yet: the preflight check's requests are the job's
                PromptScope::tally(|t| {
                    t.retries.fetch_add(1, Ordering::Relaxed);
                });
                PromptScope::counting(tally.clone(), async {
                    PromptScope::tally(|t| {
                        t.policy_requests.fetch_add(1, Ordering::Relaxed);
                    });
                    // the key and the place are the same prompt's inside the counting part
                    assert_eq!(key().as_deref(), Some("P"));
                    first_layer_done();
                })
                .await;
                (before, places.available_permits())
            })
            .await;
        assert_eq!(seen, (Some("P".into()), 1), "the place was not given up");
        assert_eq!(tally.policy_requests.load(Ordering::Relaxed), 1);
        assert_eq!(tally.retries.load(Ordering::Relaxed), 0);
        // outside a scope: nothing, and no panic
        assert_eq!(key(), None);
        first_layer_done();
        PromptScope::counting(tally.clone(), async {
            PromptScope::tally(|t| {
                t.retries.fetch_add(1, Ordering::Relaxed);
            })
        })
        .await;
        assert_eq!(tally.retries.load(Ordering::Relaxed), 0);
    }
}
