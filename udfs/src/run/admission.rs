//! Which prompts start when: the prompt window of a partition.
//!
//! A prompt takes a place in the window while its first layer is generated and scored; its
//! later layers (PRS's feedback and revisions) go on outside it, so a new prompt starts as soon
//! as an earlier one has its first layer done rather than when it has finished. At the server,
//! the revisions then wait behind at most a window's worth of first layers, and a small job's
//! last prompts start early instead of after a long drain.
//!
//! The window holds `prompt_concurrency × w0 / n` prompts (`w0`: the first layer's width): as
//! many as `prompt_concurrency` for random sampling (one layer), half as many for PRS's two
//! halves. Prompts past their first layer are bounded apart (memory), at
//! [`IN_PROGRESS_PER_PLACE`] × `prompt_concurrency`. On the project's benchmark (200 prompts,
//! PRS n = 8, a 64-slot engine) this took the makespan from 1.155× to 1.125× its lower bound,
//! and 1,000 prompts from 1.101× to 1.098× (docs/benchmarks.md, "Small jobs").
//!
//! With `prs.grow_window` (the default) the window grows while the policy servers report no
//! waiting requests ([`grow`]): a job whose window does not fill the server starts more
//! prompts, and a server with a queue keeps the window as it is.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::prompt_scope::PromptScope;
use crate::sampler::Policy;

/// How often a growing window asks the policy servers for their load.
const LOAD_EVERY: Duration = Duration::from_millis(100);

/// Prompts worked on at once, in all layers, per place of `prompt_concurrency`.
pub const IN_PROGRESS_PER_PLACE: usize = 4;

/// A partition's prompt window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Prompts in their first layer at once.
    pub first_layer: usize,
    /// Prompts worked on at once in all.
    pub in_progress: usize,
    /// Whether the first layer's places grow while the policy servers have no queue
    /// (`prs.grow_window`), up to `in_progress`.
    pub grows: bool,
}

impl Window {
    /// The window for `prompt_concurrency` and a tree whose first layer has `first_width` of
    /// the `n` samples.
    pub fn new(prompt_concurrency: usize, first_width: usize, n: usize) -> Window {
        // the settings' bounds keep this far from overflow; saturate for hosts that fill the
        // config's fields directly
        let places = prompt_concurrency.clamp(1, Semaphore::MAX_PERMITS);
        let first_layer = places
            .saturating_mul(first_width.max(1))
            .div_ceil(n.max(1))
            .clamp(1, places);
        Window {
            first_layer,
            in_progress: places.saturating_mul(IN_PROGRESS_PER_PLACE),
            grows: false,
        }
    }

    /// The same window, growing or not ([`grow`]).
    pub fn growing(self, grows: bool) -> Window {
        Window { grows, ..self }
    }

    /// At most `prompts` at once in all (a `LIMIT` that a few prompts fill).
    pub fn at_most(self, prompts: usize) -> Window {
        let prompts = prompts.max(1);
        Window {
            first_layer: self.first_layer.min(prompts),
            in_progress: self.in_progress.min(prompts),
            ..self
        }
    }

    /// The places of the first layer, for [`enter`].
    pub fn places(&self) -> Arc<Semaphore> {
        Arc::new(Semaphore::new(self.first_layer))
    }
}

/// Grow `window`'s first-layer `places` while the policy servers report nothing waiting:
/// every [`LOAD_EVERY`], a quarter of the first layer's places more (at least one), up to
/// `window.in_progress`. A server with a queue gets no more prompts than the window sends; a
/// server with idle slots gets new prompts' first layers, which are what a small job's tail
/// waits for. The task ends when the places are dropped (the partition is done), when the
/// window is as large as it gets, or when the servers serve no load gauges.
pub fn grow(places: &Arc<Semaphore>, window: Window, policy: Arc<dyn Policy>) {
    if !window.grows || window.first_layer >= window.in_progress {
        return;
    }
    let places = Arc::downgrade(places);
    let step = (window.first_layer / 4).max(1);
    tokio::spawn(async move {
        let mut size = window.first_layer;
        let mut tick = tokio::time::interval(LOAD_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        while size < window.in_progress {
            tick.tick().await;
            let Some(load) = policy.server_load().await else {
                return;
            };
            let Some(places) = places.upgrade() else {
                return;
            };
            if load.waiting < 1.0 {
                let more = step.min(window.in_progress - size);
                places.add_permits(more);
                size += more;
            }
        }
    });
}

/// Run the `work` of the prompt with checkpoint key `key` in its scope, once it has a place
/// among `places`; the place is freed when the work calls
/// [`super::prompt_scope::first_layer_done`], or when it ends.
pub async fn enter<F: Future>(places: Arc<Semaphore>, key: String, work: F) -> F::Output {
    // the semaphore is never closed: no place only if it were, and then the work runs anyway
    let place = places.acquire_owned().await.ok();
    PromptScope::new(&key, place).run(work).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ServerLoad;
    use crate::run::prompt_scope::first_layer_done;

    #[test]
    fn the_first_layer_gets_its_share_of_the_places() {
        // random sampling: one layer, every place
        assert_eq!(Window::new(128, 16, 16).first_layer, 128);
        // PRS: the first half of the samples, half the places
        assert_eq!(Window::new(128, 4, 8).first_layer, 64);
        assert_eq!(Window::new(128, 4, 8).in_progress, 512);
        // never none
        assert_eq!(Window::new(1, 4, 8).first_layer, 1);
        assert_eq!(Window::new(0, 0, 0).first_layer, 1);
        // never an overflow, whatever a host writes into the config
        let huge = Window::new(1 << 62, 1 << 40, 1 << 41);
        assert!(huge.first_layer >= 1 && huge.in_progress >= huge.first_layer);
        let _ = huge.places();
        // a LIMIT that two prompts fill
        let limited = Window::new(128, 4, 8).at_most(2);
        assert_eq!((limited.first_layer, limited.in_progress), (2, 2));
    }

    /// A policy whose servers report the loads in `loads`, one per question, then none.
    struct Loads(std::sync::Mutex<std::collections::VecDeque<Option<ServerLoad>>>);

    #[async_trait::async_trait]
    impl Policy for Loads {
        async fn complete(
            &self,
            _: &str,
            _: usize,
            _: i64,
            _: u32,
        ) -> crate::error::Result<(Vec<crate::client::Choice>, crate::client::Usage)> {
            unreachable!("the window never asks for samples")
        }
        async fn model(&self) -> crate::error::Result<String> {
            Ok("m".into())
        }
        async fn server_load(&self) -> Option<ServerLoad> {
            self.0.lock().unwrap().pop_front().flatten()
        }
    }

    fn loads(waiting: &[Option<f64>]) -> Arc<dyn Policy> {
        let loads = waiting
            .iter()
            .map(|w| {
                w.map(|waiting| ServerLoad {
                    running: 8.0,
                    waiting,
                })
            })
            .collect();
        Arc::new(Loads(std::sync::Mutex::new(loads)))
    }

    /// Wait until the growing task has ended (it held the only other handle on `policy`).
    async fn ended(policy: &Arc<dyn Policy>) {
        for _ in 0..100 {
            if Arc::strong_count(policy) == 1 {
                return;
            }
            tokio::time::sleep(LOAD_EVERY / 2).await;
        }
        panic!("the window's task is still running");
    }

    #[tokio::test]
    async fn the_window_grows_while_the_server_has_no_queue() {
        let window = Window::new(8, 4, 8).growing(true);
        assert_eq!((window.first_layer, window.in_progress), (4, 32));
        let places = window.places();
        // no queue twice (one place more each time), a queue, no queue, then no gauges: the
        // task asks no more, so the last answer is never used
        let policy = loads(&[Some(0.0), Some(0.0), Some(3.0), Some(0.0), None, Some(0.0)]);
        grow(&places, window, policy.clone());
        ended(&policy).await;
        assert_eq!(places.available_permits(), 4 + 3);
    }

    #[tokio::test]
    async fn a_fixed_window_never_grows_and_growth_stops_at_its_bound() {
        let fixed = Window::new(8, 4, 8);
        let places = fixed.places();
        let policy = loads(&[Some(0.0); 4]);
        grow(&places, fixed, policy.clone());
        ended(&policy).await;
        assert_eq!(places.available_permits(), 4);
        // a LIMIT of 6 prompts: 4 places, growing to 6 at most, then the task ends
        let limited = Window::new(8, 4, 8).growing(true).at_most(6);
        let places = limited.places();
        let policy = loads(&[Some(0.0); 8]);
        grow(&places, limited, policy.clone());
        ended(&policy).await;
        assert_eq!(places.available_permits(), 6);
        // the window's places dropped (its partition is done): the task ends
        let window = Window::new(8, 4, 8).growing(true);
        let places = window.places();
        let policy = loads(&[Some(0.0); 1000]);
        grow(&places, window, policy.clone());
        drop(places);
        ended(&policy).await;
    }

    #[tokio::test]
    async fn a_place_is_freed_when_the_first_layer_is_done() {
        let places = Arc::new(Semaphore::new(1));
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let first = tokio::spawn(enter(places.clone(), "P".into(), async move {
            first_layer_done();
            // later layers: still running, but no longer holding the place
            let _ = done_rx.await;
        }));
        let second = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            enter(places.clone(), "P".into(), async { 2 }),
        )
        .await;
        assert_eq!(
            second.ok(),
            Some(2),
            "the second prompt waited for the first to end"
        );
        let _ = done_tx.send(());
        let _ = first.await;
        assert_eq!(places.available_permits(), 1);
    }

    #[tokio::test]
    async fn a_place_is_held_until_the_first_layer_is_done() {
        let places = Arc::new(Semaphore::new(1));
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let first = tokio::spawn(enter(places.clone(), "P".into(), async move {
            let _ = done_rx.await;
        }));
        tokio::task::yield_now().await;
        let second = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            enter(places.clone(), "P".into(), async { 2 }),
        )
        .await;
        assert!(
            second.is_err(),
            "a second prompt started in a window of one"
        );
        let _ = done_tx.send(());
        let _ = first.await;
    }
}
