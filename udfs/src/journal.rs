//! The answers journal: resume that loses only the requests in flight.
//!
//! With a `checkpoint_dir`, every policy answer and every reward score is appended, as it
//! arrives, to this process's file in `{checkpoint_dir}/{call fingerprint}/journal/` (JSON
//! lines; written and fsynced in groups, and the request goes on only once its answer is
//! durable). A re-run loads every journal file of the call and answers the requests it finds
//! there without sending them. Requests are deterministic under a call fingerprint (seeds are
//! derived, the best-so-far follows from the scores), so a replayed prompt asks exactly the
//! requests it asked before and the output equals an uninterrupted run's.
//!
//! A torn or unreadable line (a kill mid-write) is skipped with a warning. Entries of prompts
//! that have their Parquet checkpoint are redundant: this process's own file is deleted when the
//! call's runtime is dropped and every prompt in it has its checkpoint (a run that failed keeps
//! it), and a file of another run that holds nothing else (and was not written to in the last
//! minute) when a later run loads the journal.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, OnceCell};

use crate::checkpoint::hash_parts;
use crate::client::reward::{all_scored, Scored};
use crate::client::{Choice, Usage};
use crate::error::{PrsError, Result};
use crate::reward_input::RewardItem;
use crate::sampler::{Policy, Reward};

tokio::task_local! {
    /// The checkpoint key of the prompt whose requests run in this task.
    static PROMPT: String;
}

/// Run `work` as the work of the prompt with checkpoint key `key`.
pub async fn scope<F: std::future::Future>(key: String, work: F) -> F::Output {
    PROMPT.scope(key, work).await
}

/// A recorded answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Answer {
    /// (text, finish_reason) per choice, and the usage reported.
    Policy {
        choices: Vec<(String, Option<String>)>,
        usage: (u64, u64),
    },
    Score(f64),
}

/// One line of a journal file.
#[derive(Debug, Serialize, Deserialize)]
struct Line {
    /// The request's key.
    k: String,
    /// The prompt's checkpoint key.
    p: String,
    a: Answer,
}

type Ack = oneshot::Sender<std::result::Result<(), String>>;
/// Lines to append, each group acknowledged once durable.
type Writer = mpsc::UnboundedSender<(Vec<u8>, Ack)>;

/// The journal of one sampling call in this process.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    /// The call's checkpoint directory, where finished prompts have `{key}.parquet`.
    checkpoints: PathBuf,
    answers: OnceCell<Mutex<HashMap<String, Answer>>>,
    /// This process's file and the prompts it holds entries of.
    own: Mutex<Option<(PathBuf, HashSet<String>)>>,
    writer: OnceCell<std::result::Result<Writer, String>>,
}

impl Journal {
    pub fn new(checkpoints: &Path) -> Self {
        Journal {
            dir: checkpoints.join("journal"),
            checkpoints: checkpoints.to_path_buf(),
            answers: OnceCell::new(),
            own: Mutex::new(None),
            writer: OnceCell::new(),
        }
    }

    fn finished(&self, prompt: &str) -> bool {
        self.checkpoints.join(format!("{prompt}.parquet")).exists()
    }

    /// The recorded answer to request `key`, loading the journal on first use.
    async fn get(&self, key: &str) -> Option<Answer> {
        let answers = self
            .answers
            .get_or_init(|| async {
                let (dir, checkpoints) = (self.dir.clone(), self.checkpoints.clone());
                let loaded = tokio::task::spawn_blocking(move || load(&dir, &checkpoints))
                    .await
                    .unwrap_or_default();
                Mutex::new(loaded)
            })
            .await;
        answers.lock().ok()?.get(key).cloned()
    }

    /// Record `answers` durably (returns once they are fsynced).
    async fn record(&self, answers: Vec<(String, Answer)>) -> Result<()> {
        let Ok(prompt) = PROMPT.try_with(String::clone) else {
            return Ok(()); // not a prompt's work (never happens in a sampling call)
        };
        let mut bytes = Vec::new();
        for (k, a) in answers {
            let line = Line {
                k,
                p: prompt.clone(),
                a,
            };
            serde_json::to_writer(&mut bytes, &line).map_err(|e| self.error(e.to_string()))?;
            bytes.push(b'\n');
        }
        let writer = self
            .writer
            .get_or_init(|| async { self.open().map_err(|e| e.to_string()) })
            .await
            .as_ref()
            .map_err(|e| self.error(e.clone()))?;
        if let Ok(mut own) = self.own.lock() {
            if let Some((_, prompts)) = own.as_mut() {
                prompts.insert(prompt);
            }
        }
        let (ack, done) = oneshot::channel();
        writer
            .send((bytes, ack))
            .map_err(|_| self.error("the journal writer stopped".into()))?;
        done.await
            .map_err(|_| self.error("the journal writer stopped".into()))?
            .map_err(|e| self.error(e))
    }

    fn error(&self, reason: String) -> PrsError {
        PrsError::Input {
            source_name: format!("the answers journal in {}", self.dir.display()),
            reason: format!("{reason}; check that prs.checkpoint_dir is writable and has space"),
        }
    }

    /// Create this process's file and start its writer.
    fn open(&self) -> std::io::Result<Writer> {
        fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(format!(
            "{}-{}.jsonl",
            std::process::id(),
            crate::durable::rand_suffix()
        ));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        // the new names are durable before any answer relies on them
        crate::durable::sync_dir(&self.dir)?;
        crate::durable::sync_dir(&self.checkpoints)?;
        if let Ok(mut own) = self.own.lock() {
            *own = Some((path, HashSet::new()));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_groups(file, rx));
        Ok(tx)
    }
}

impl Drop for Journal {
    /// This process's file goes once every prompt it holds answers of has its checkpoint.
    fn drop(&mut self) {
        let own = self.own.get_mut().ok().and_then(Option::take);
        if let Some((path, prompts)) = own {
            if prompts.iter().all(|p| self.finished(p)) {
                let _ = fs::remove_file(path);
                // (only if no other run's file is left)
                let _ = fs::remove_dir(&self.dir);
            }
        }
    }
}

/// Append each group of lines that queued up while the last group was written, fsync, and
/// acknowledge them.
async fn write_groups(file: File, mut rx: mpsc::UnboundedReceiver<(Vec<u8>, Ack)>) {
    let file = Arc::new(Mutex::new(file));
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while let Ok(more) = rx.try_recv() {
            group.push(more);
        }
        let bytes: Vec<u8> = group.iter().flat_map(|(b, _)| b.iter().copied()).collect();
        let file = file.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut f = file
                .lock()
                .map_err(|_| "journal file lock poisoned".to_string())?;
            f.write_all(&bytes)
                .and_then(|()| f.sync_data())
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        for (_, ack) in group {
            let _ = ack.send(written.clone());
        }
    }
}

/// Every answer in the journal files of `dir` whose prompt has no checkpoint yet; files that
/// hold nothing else are deleted.
fn load(dir: &Path, checkpoints: &Path) -> HashMap<String, Answer> {
    let mut answers = HashMap::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return answers;
    };
    let finished = |p: &str| checkpoints.join(format!("{p}.parquet")).exists();
    for path in entries.filter_map(|e| Some(e.ok()?.path())) {
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        let mut live = 0;
        let mut torn = 0;
        for line in text.lines() {
            match serde_json::from_str::<Line>(line) {
                Ok(l) if finished(&l.p) => {}
                Ok(l) => {
                    live += 1;
                    answers.insert(l.k, l.a);
                }
                Err(_) => torn += 1,
            }
        }
        if torn > 0 {
            tracing::warn!(
                "journal {}: skipped {torn} torn or unreadable line(s) (a run killed while \
                 writing); their requests are sent again",
                path.display()
            );
        }
        // (not a file another process may have just begun)
        let idle = fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(60));
        if live == 0 && idle {
            let _ = fs::remove_file(&path);
        }
    }
    answers
}

/// A policy whose answers are journaled and replayed.
pub struct JournaledPolicy {
    pub inner: Arc<dyn Policy>,
    pub journal: Arc<Journal>,
}

#[async_trait]
impl Policy for JournaledPolicy {
    async fn complete(
        &self,
        text: &str,
        n: usize,
        seed: i64,
        depth: u32,
    ) -> Result<(Vec<Choice>, Usage)> {
        let key = hash_parts(&["policy", text, &n.to_string(), &seed.to_string()]);
        if let Some(Answer::Policy { choices, usage }) = self.journal.get(&key).await {
            let choices = choices
                .into_iter()
                .map(|(text, finish_reason)| Choice {
                    text,
                    finish_reason,
                })
                .collect();
            let usage = Usage {
                prompt_tokens: usage.0,
                completion_tokens: usage.1,
            };
            return Ok((choices, usage));
        }
        let (choices, usage) = self.inner.complete(text, n, seed, depth).await?;
        let answer = Answer::Policy {
            choices: choices
                .iter()
                .map(|c| (c.text.clone(), c.finish_reason.clone()))
                .collect(),
            usage: (usage.prompt_tokens, usage.completion_tokens),
        };
        self.journal.record(vec![(key, answer)]).await?;
        Ok((choices, usage))
    }

    async fn model(&self) -> Result<String> {
        self.inner.model().await
    }

    fn one_per_request(&self) -> bool {
        self.inner.one_per_request()
    }
}

/// A reward model whose scores are journaled and replayed.
pub struct JournaledReward {
    pub inner: Arc<dyn Reward>,
    pub journal: Arc<Journal>,
}

#[async_trait]
impl Reward for JournaledReward {
    async fn score(&self, items: &[RewardItem]) -> Result<Vec<f64>> {
        all_scored(self.score_each(items).await)
    }

    /// Journaled scores, and the others from the model (each with its own outcome); every
    /// score the model gave is journaled before it is used.
    async fn score_each(&self, items: &[RewardItem]) -> Vec<Scored> {
        let keys: Vec<String> = items
            .iter()
            .map(|i| {
                let form = if i.is_chat() { "chat" } else { "text" };
                hash_parts(&["reward", form, &i.shown()])
            })
            .collect();
        let mut scores: Vec<Option<Scored>> = Vec::with_capacity(items.len());
        let mut missing = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            match self.journal.get(key).await {
                Some(Answer::Score(s)) => scores.push(Some(Ok(s))),
                _ => {
                    scores.push(None);
                    missing.push(i);
                }
            }
        }
        if !missing.is_empty() {
            let asked: Vec<RewardItem> = missing.iter().map(|&i| items[i].clone()).collect();
            let got = self.inner.score_each(&asked).await;
            let record = missing
                .iter()
                .zip(&got)
                .filter_map(|(&i, s)| Some((keys[i].clone(), Answer::Score(*s.as_ref().ok()?))))
                .collect();
            let recorded = self.journal.record(record).await.map_err(Arc::new);
            for (&i, s) in missing.iter().zip(got) {
                scores[i] = Some(match &recorded {
                    Ok(()) => s,
                    Err(e) => Err(e.clone()),
                });
            }
        }
        scores
            .into_iter()
            .map(|s| {
                s.unwrap_or_else(|| {
                    Err(Arc::new(self.journal.error("a score went missing".into())))
                })
            })
            .collect()
    }

    fn model_label(&self) -> String {
        self.inner.model_label()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_tail_is_skipped_and_finished_prompts_are_left_out() {
        let root =
            std::env::temp_dir().join(format!("prs-journal-{}", crate::durable::rand_suffix()));
        let dir = root.join("journal");
        fs::create_dir_all(&dir).unwrap();
        let line = |k: &str, p: &str, a: Answer| {
            serde_json::to_string(&Line {
                k: k.into(),
                p: p.into(),
                a,
            })
            .unwrap()
        };
        let text = format!(
            "{}\n{}\n{}",
            line("a", "open", Answer::Score(1.5)),
            line("b", "done", Answer::Score(2.0)),
            // killed mid-write
            &line("c", "open", Answer::Score(3.0))[..12],
        );
        fs::write(dir.join("1-1.jsonl"), text).unwrap();
        fs::write(root.join("done.parquet"), b"").unwrap();
        let answers = load(&dir, &root);
        assert_eq!(answers.len(), 1);
        assert_eq!(answers.get("a"), Some(&Answer::Score(1.5)));
        // a file that still holds live answers is kept
        assert!(dir.join("1-1.jsonl").exists());
        let _ = fs::remove_dir_all(&root);
    }
}
