//! Checks run off the async runtime's worker threads (on a thread of their own, with a stack
//! deep enough for the deepest answer a check reads), each under the
//! check's time limit twice over: the check counts its own steps against the clock
//! ([`super::exact::Budget`]), and the caller stops waiting for it a little after the limit,
//! so that no answer can hold up a query, whatever it makes a check do.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::check::{Check, Verdict};
use super::error::VerifyError;

/// The checking thread's stack: answers nest up to a few thousand operations deep.
const STACK_BYTES: usize = 64 << 20;

/// How long past the limit the caller still waits for a check that keeps its own time.
const GRACE: Duration = Duration::from_millis(250);

/// The verdict on each `(response, reference)`, in order.
pub async fn verdicts(
    check: Arc<Check>,
    items: Vec<(Option<String>, Option<String>)>,
) -> Vec<Verdict> {
    let total = items.len();
    let limit = check.timeout;
    let (tx, mut rx) = mpsc::unbounded_channel::<Option<Verdict>>();
    let checking = move || {
        // a first message: the checks have started
        if tx.send(None).is_err() {
            return;
        }
        for (response, reference) in items {
            let verdict = check.verdict(response.as_deref(), reference.as_deref());
            if tx.send(Some(verdict)).is_err() {
                return; // the caller stopped waiting
            }
        }
    };
    let started = std::thread::Builder::new()
        .name("prs-verify".into())
        .stack_size(STACK_BYTES)
        .spawn(checking);
    if let Err(e) = started {
        let why = VerifyError::NoThread(e.to_string());
        return (0..total).map(|_| Err(why.clone())).collect();
    }
    let mut out = Vec::with_capacity(total);
    if rx.recv().await.is_some() {
        while out.len() < total {
            match tokio::time::timeout(limit + GRACE, rx.recv()).await {
                Ok(Some(Some(verdict))) => out.push(verdict),
                _ => break,
            }
        }
    }
    // what did not come back in time (or at all) ran out of time
    out.resize_with(total, || Err(VerifyError::TimedOut(limit)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Verifier;

    #[tokio::test]
    async fn verdicts_come_back_in_order_and_in_time() {
        let check = Arc::new(Check {
            verifier: Verifier::Math,
            answer_pattern: None,
            // no time at all: a check of more than a few hundred steps runs out
            timeout: Duration::ZERO,
        });
        let item = |r: &str, reference: &str| (Some(r.to_string()), Some(reference.to_string()));
        let long = format!("${}1$", "1+".repeat(1000));
        let started = std::time::Instant::now();
        let out = verdicts(
            check,
            vec![
                item("579", "579"),
                item(&long, "1001"),
                item("2", "3"),
                (None, None),
            ],
        )
        .await;
        assert_eq!(out[0], Ok(Some(true)));
        assert_eq!(out[1], Err(VerifyError::TimedOut(Duration::ZERO)));
        assert_eq!(out[2], Ok(Some(false)));
        assert_eq!(out[3], Ok(None));
        assert_eq!(out.len(), 4);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
