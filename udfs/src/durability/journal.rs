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
//! A torn or unreadable line (a kill mid-write) is skipped with a warning. A write that fails
//! midway (disk full) is cut back off the file, or else closed with a newline, so the next group
//! never continues a torn line.
//!
//! Entries of prompts that have their Parquet checkpoint are redundant: this process's own file
//! is deleted when the call's runtime is dropped and every prompt in it has its checkpoint (a run
//! that failed keeps it), and a file of another run that holds nothing else when a later run
//! loads the journal, but only if that run's writer is gone. A writer holds an exclusive
//! advisory lock (`flock`) on its file for as long as it may write, from before the file has its
//! `*.jsonl` name (it is created as `.{name}.jsonl.tmp`, locked, then renamed), so a file that
//! cleanup can lock has no writer and never gets one again; one it cannot lock belongs to a live
//! run (perhaps waiting minutes on a slow server) and is kept, its answers still replayed. The
//! OS drops the lock of a killed run. Where locks are not supported nothing is cleaned up but a
//! run's own file.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, OnceCell};

use super::checkpoint::hash_parts;
use crate::client::{all_scored, Choice, Scored, Usage};
use crate::error::{PrsError, Result};
use crate::sampler::{Policy, Reward};
use crate::text::RewardItem;

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
        let Some(prompt) = crate::run::prompt_key_in_scope() else {
            return Ok(()); // not a prompt's work (never happens in a sampling call)
        };
        let mut bytes = Vec::new();
        for (k, a) in answers {
            let line = Line {
                k,
                p: prompt.to_string(),
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
                prompts.insert(prompt.to_string());
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
        // the new names are durable before any answer relies on them
        super::atomic::create_dir_all_durable(&self.dir)?;
        let (file, path) = match create_locked(&self.dir) {
            // another run removed the (then empty) directory in between
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                super::atomic::create_dir_all_durable(&self.dir)?;
                create_locked(&self.dir)?
            }
            created => created?,
        };
        if let Ok(mut own) = self.own.lock() {
            *own = Some((path, HashSet::new()));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_groups(file, rx));
        Ok(tx)
    }
}

/// Create a new journal file in `dir`, locked before it has the `*.jsonl` name that cleanup
/// looks at (so no other run ever sees it unlocked while this process may write it), and make
/// the name durable. The lock lasts as long as the returned `File`.
fn create_locked(dir: &Path) -> std::io::Result<(File, PathBuf)> {
    let name = format!(
        "{}-{}.jsonl",
        std::process::id(),
        super::atomic::rand_suffix()
    );
    let (tmp, path) = (dir.join(format!(".{name}.tmp")), dir.join(&name));
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&tmp)?;
    if let Err(e) = file.try_lock() {
        // Not fatal: the answers are still journaled. Where locks are unsupported, a run that
        // loads meanwhile cannot take the lock either, and so keeps the file.
        tracing::warn!(
            "journal {}: cannot lock it ({e}); answers are journaled regardless",
            path.display()
        );
    }
    if let Err(e) = super::atomic::rename(&tmp, &path) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok((file, path))
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
/// acknowledge them. The file (and with it the lock) is closed once the journal is dropped.
async fn write_groups(file: File, mut rx: mpsc::UnboundedReceiver<(Vec<u8>, Ack)>) {
    let file = Arc::new(Mutex::new((file, Tail::default())));
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while let Ok(more) = rx.try_recv() {
            group.push(more);
        }
        let bytes: Vec<u8> = group.iter().flat_map(|(b, _)| b.iter().copied()).collect();
        let file = file.clone();
        let written = tokio::task::spawn_blocking(move || {
            let mut guard = file
                .lock()
                .map_err(|_| "journal file lock poisoned".to_string())?;
            let (f, tail) = &mut *guard;
            append_group(f, tail, &bytes).map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        for (_, ack) in group {
            let _ = ack.send(written.clone());
        }
    }
}

/// The file system side of a journal file, so that [`append_group`] can be tested with a
/// writer that fails.
trait Sink: Write {
    /// Cut the file back to `len` bytes.
    fn cut(&mut self, len: u64) -> std::io::Result<()>;
    /// Make what was written durable.
    fn sync(&mut self) -> std::io::Result<()>;
}

impl Sink for File {
    /// (`set_len` works in append mode; later appends go to the new end.)
    fn cut(&mut self, len: u64) -> std::io::Result<()> {
        self.set_len(len)
    }

    fn sync(&mut self) -> std::io::Result<()> {
        self.sync_data()
    }
}

/// Where a journal file ends: `len` bytes written, the first `whole` of them complete lines.
/// They differ only after a write that failed midway.
#[derive(Debug, Default)]
struct Tail {
    len: u64,
    whole: u64,
}

/// Append `bytes` (whole lines) and sync. A torn line left by an earlier failed write is first
/// cut off, or, where cutting fails, ended with a newline: otherwise this group's first line
/// would continue the torn one and be unreadable too.
fn append_group(out: &mut impl Sink, tail: &mut Tail, bytes: &[u8]) -> std::io::Result<()> {
    if tail.len != tail.whole {
        match out.cut(tail.whole) {
            Ok(()) => tail.len = tail.whole,
            Err(e) => {
                tracing::warn!("journal: cannot cut off a torn line ({e}); ending it instead");
                write_counted(out, b"\n", &mut tail.len)?;
            }
        }
        tail.whole = tail.len;
    }
    write_counted(out, bytes, &mut tail.len)?;
    tail.whole = tail.len;
    out.sync()
}

/// `write_all` that counts into `len` the bytes that were written, also when it fails.
fn write_counted(out: &mut impl Write, mut bytes: &[u8], len: &mut u64) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match out.write(bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                *len += n as u64;
                bytes = &bytes[n..];
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Every answer in the journal files of `dir` whose prompt has no checkpoint yet; files that
/// hold nothing else and have no writer any more are deleted.
fn load(dir: &Path, checkpoints: &Path) -> HashMap<String, Answer> {
    let mut answers = HashMap::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return answers;
    };
    let finished = |p: &str| checkpoints.join(format!("{p}.parquet")).exists();
    for path in entries.filter_map(|e| Some(e.ok()?.path())) {
        // (only final names: a `.*.tmp` file is one being created, not yet locked)
        let name = path.file_name().map(|n| n.to_string_lossy().to_string());
        if !name.is_some_and(|n| n.ends_with(".jsonl") && !n.starts_with('.')) {
            continue;
        }
        let Ok(mut file) = File::open(&path) else {
            continue;
        };
        let mut bytes = Vec::new();
        if file.read_to_end(&mut bytes).is_err() {
            continue;
        }
        let (lines, torn) = parse_lines(&bytes);
        if torn > 0 {
            tracing::warn!(
                "journal {}: skipped {torn} torn or unreadable line(s) (a run killed while \
                 writing); their requests are sent again",
                path.display()
            );
        }
        let mut live = false;
        for l in lines.into_iter().filter(|l| !finished(&l.p)) {
            live = true;
            answers.insert(l.k, l.a);
        }
        // a file we can lock has no writer, and never gets one again (see the module doc)
        if !live && file.try_lock().is_ok() {
            drop(file);
            let _ = fs::remove_file(&path);
        }
    }
    answers
}

/// The readable lines of a journal file, and how many were not (torn or garbled). Parsed per
/// line from bytes: a line cut inside a multi-byte character must not make the file unreadable.
fn parse_lines(bytes: &[u8]) -> (Vec<Line>, usize) {
    let mut torn = 0;
    let lines = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let parsed = serde_json::from_slice::<Line>(l).ok();
            torn += usize::from(parsed.is_none());
            parsed
        })
        .collect();
    (lines, torn)
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
    async fn server_load(&self) -> Option<crate::client::ServerLoad> {
        self.inner.server_load().await
    }
}

/// A reward model whose scores are journaled and replayed.
pub struct JournaledReward {
    pub inner: Arc<dyn Reward>,
    pub journal: Arc<Journal>,
    /// The reward component whose scores these are (`None`: the one reward model), so that
    /// two components' scores of the same text are told apart.
    pub component: Option<String>,
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
                match &self.component {
                    None => hash_parts(&["reward", form, &i.shown()]),
                    Some(name) => hash_parts(&["reward component", name, form, &i.shown()]),
                }
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
    use crate::run::PromptScope;

    #[test]
    fn a_torn_tail_is_skipped_and_finished_prompts_are_left_out() {
        let root = std::env::temp_dir().join(format!(
            "prs-journal-{}",
            crate::durability::atomic::rand_suffix()
        ));
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

    fn temp_root(tag: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!(
            "prs-journal-{tag}-{}",
            crate::durability::atomic::rand_suffix()
        ));
        fs::create_dir_all(&root).unwrap();
        root
    }

    fn own_path(journal: &Journal) -> PathBuf {
        journal.own.lock().unwrap().as_ref().unwrap().0.clone()
    }

    #[tokio::test]
    async fn a_live_runs_file_survives_cleanup_by_another_run() {
        let root = temp_root("live");
        // run A: every prompt so far has its checkpoint, and A has been quiet for 2 minutes
        let a = Journal::new(&root);
        PromptScope::new("P", None)
            .run(a.record(vec![("k1".into(), Answer::Score(1.0))]))
            .await
            .unwrap();
        let path = own_path(&a);
        fs::write(root.join("P.parquet"), b"").unwrap();
        let two_minutes_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(120);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(two_minutes_ago)
            .unwrap();
        // run C: live too, with an unfinished prompt; its answer is replayed despite the lock
        let c = Journal::new(&root);
        PromptScope::new("Q", None)
            .run(c.record(vec![("k2".into(), Answer::Score(2.0))]))
            .await
            .unwrap();
        // run B loads (and cleans up)
        let b = Journal::new(&root);
        assert_eq!(b.get("k2").await, Some(Answer::Score(2.0)));
        assert_eq!(b.get("k1").await, None);
        assert!(path.exists(), "cleanup deleted the file of a live run");
        // A keeps recording to the same, still linked, file
        PromptScope::new("P", None)
            .run(a.record(vec![("k3".into(), Answer::Score(3.0))]))
            .await
            .unwrap();
        let (lines, torn) = parse_lines(&fs::read(&path).unwrap());
        assert_eq!((lines.len(), torn), (2, 0));
        assert_eq!(lines[1].k, "k3");
        // A ends with every prompt finished: its file goes
        drop(a);
        assert!(!path.exists());
        drop((b, c));
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn an_unlocked_file_of_finished_prompts_is_cleaned_and_temporary_names_are_ignored() {
        let root = temp_root("clean");
        let dir = root.join("journal");
        fs::create_dir_all(&dir).unwrap();
        let line = |k: &str, p: &str| {
            let l = Line {
                k: k.into(),
                p: p.into(),
                a: Answer::Score(1.0),
            };
            serde_json::to_string(&l).unwrap() + "\n"
        };
        // no writer holds it, however recent its last write
        fs::write(dir.join("7-7.jsonl"), line("a", "done")).unwrap();
        // a file being created (not yet locked) is neither read nor deleted
        fs::write(dir.join(".8-8.jsonl.tmp"), line("b", "open")).unwrap();
        fs::write(root.join("done.parquet"), b"").unwrap();
        let answers = load(&dir, &root);
        assert!(answers.is_empty(), "{answers:?}");
        assert!(!dir.join("7-7.jsonl").exists());
        assert!(dir.join(".8-8.jsonl.tmp").exists());
        let _ = fs::remove_dir_all(&root);
    }

    /// A writer that takes `budget` more bytes, then fails once (disk full), then works again.
    struct Flaky<W> {
        inner: W,
        budget: Option<usize>,
        cut_ok: bool,
    }

    impl<W: Write> Write for Flaky<W> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            match self.budget {
                Some(0) => {
                    self.budget = None;
                    Err(std::io::Error::other("no space left on device"))
                }
                Some(k) => {
                    let n = self.inner.write(&buf[..k.min(buf.len())])?;
                    self.budget = Some(k - n);
                    Ok(n)
                }
                None => self.inner.write(buf),
            }
        }

        fn flush(&mut self) -> std::io::Result<()> {
            self.inner.flush()
        }
    }

    impl<W: Sink> Sink for Flaky<W> {
        fn cut(&mut self, len: u64) -> std::io::Result<()> {
            if self.cut_ok {
                self.inner.cut(len)
            } else {
                Err(std::io::Error::other("cannot truncate"))
            }
        }

        fn sync(&mut self) -> std::io::Result<()> {
            self.inner.sync()
        }
    }

    impl Sink for Vec<u8> {
        fn cut(&mut self, len: u64) -> std::io::Result<()> {
            self.truncate(len as usize);
            Ok(())
        }

        fn sync(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Two lines with multi-byte text, keyed `{g}a` and `{g}b`.
    fn group(g: &str) -> Vec<u8> {
        let mut bytes = Vec::new();
        for k in ["a", "b"] {
            let a = Answer::Policy {
                choices: vec![("größer — ünïcødé ✓".into(), Some("stop".into()))],
                usage: (3, 4),
            };
            let line = Line {
                k: format!("{g}{k}"),
                p: "p".into(),
                a,
            };
            serde_json::to_writer(&mut bytes, &line).unwrap();
            bytes.push(b'\n');
        }
        bytes
    }

    /// Write groups 1 and 3 successfully and group 2 failing after `k` bytes, in that order.
    fn torn_middle_group<S: Sink>(out: &mut Flaky<S>, k: usize) {
        let mut tail = Tail::default();
        append_group(out, &mut tail, &group("1")).unwrap();
        out.budget = Some(k);
        assert!(append_group(out, &mut tail, &group("2")).is_err());
        append_group(out, &mut tail, &group("3")).unwrap();
    }

    fn keys(bytes: &[u8]) -> (Vec<String>, usize) {
        let (lines, torn) = parse_lines(bytes);
        (lines.into_iter().map(|l| l.k).collect(), torn)
    }

    #[test]
    fn a_torn_write_is_cut_off_the_file_before_the_next_group() {
        for k in [1, 17, group("2").len() / 2 + 1] {
            let root = temp_root("torn");
            let path = root.join("1-1.jsonl");
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .unwrap();
            let mut out = Flaky {
                inner: file,
                budget: None,
                cut_ok: true,
            };
            torn_middle_group(&mut out, k);
            let bytes = fs::read(&path).unwrap();
            assert_eq!(
                keys(&bytes),
                (
                    vec!["1a", "1b", "3a", "3b"]
                        .into_iter()
                        .map(String::from)
                        .collect(),
                    0
                ),
                "k = {k}"
            );
            let _ = fs::remove_dir_all(&root);
        }
    }

    #[test]
    fn a_torn_write_that_cannot_be_cut_is_ended_with_a_newline() {
        for k in 0..group("2").len() {
            let mut out = Flaky {
                inner: Vec::new(),
                budget: None,
                cut_ok: false,
            };
            torn_middle_group(&mut out, k);
            let (keys, torn) = keys(&out.inner);
            assert!(torn <= 1, "k = {k}");
            let want = ["1a", "1b", "3a", "3b"];
            assert!(
                want.iter().all(|w| keys.contains(&w.to_string())),
                "k = {k}: {keys:?}"
            );
        }
    }
}
