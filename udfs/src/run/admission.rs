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

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Semaphore;

use super::prompt_scope::PromptScope;

/// Prompts worked on at once, in all layers, per place of `prompt_concurrency`.
pub const IN_PROGRESS_PER_PLACE: usize = 4;

/// A partition's prompt window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Prompts in their first layer at once.
    pub first_layer: usize,
    /// Prompts worked on at once in all.
    pub in_progress: usize,
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
        }
    }

    /// At most `prompts` at once in all (a `LIMIT` that a few prompts fill).
    pub fn at_most(self, prompts: usize) -> Window {
        let prompts = prompts.max(1);
        Window {
            first_layer: self.first_layer.min(prompts),
            in_progress: self.in_progress.min(prompts),
        }
    }

    /// The places of the first layer, for [`enter`].
    pub fn places(&self) -> Arc<Semaphore> {
        Arc::new(Semaphore::new(self.first_layer))
    }
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
