//! `COPY ... TO` targets written all or nothing, replacing exactly what prs wrote before.
//!
//! The statement writes under a hidden temporary name next to the target
//! (`.NAME.prs-tmp-PID-RANDOM`); only when it succeeds is the result fsynced and moved into
//! place. A failed statement removes its temporary; a killed run's is removed by the next run
//! that writes the same target. Until then the previous output stays byte for byte.
//!
//! What a refresh replaces, by the shape of the target:
//!
//! * **One file** (`out/x.parquet`): the file, by one rename. A directory of that name is
//!   refused before the statement runs (nothing is deleted).
//! * **A directory** (`out/daily/`): the files the previous prs `COPY` wrote there, which it
//!   listed in the directory's hidden manifest ([`MANIFEST`]). They are removed, the new files
//!   are moved in and the manifest is rewritten; every other file and subdirectory (a README, a
//!   checkpoint, a file someone put there) stays byte for byte. A file of that name is refused.
//! * **PARTITIONED BY** (`out/parts/`): each partition directory the statement writes
//!   (`day=mon/`, or `day=mon/lang=en/` for two columns) replaces the one of the same name
//!   whole; the partitions it does not write stay as they were.
//!
//! A directory is changed by several renames, so a reader listing it during a refresh may see
//! part of the change. A crash cannot leave a mix: the plan of the change is written first
//! (`.prs-publish.plan` in the temporary), what is replaced is moved aside
//! (`.NAME.prs-old-PID-RANDOM`), and the new manifest, written last, is the commit. The next
//! run that writes the target finishes a committed change or puts the old output back.
//!
//! While a run writes a target it holds a lock on `.NAME.prs-lock` next to it, so a second
//! `prs` writing the same target at the same time is refused (instead of one deleting the
//! other's temporaries), and cleaning up after killed runs only ever touches the temporaries of
//! the target it writes, which no live run holds.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, ErrorKind};
use std::path::{Component, Path, PathBuf};

use datafusion::logical_expr::dml::CopyTo;
use datafusion::logical_expr::LogicalPlan;
use datafusion_prs::atomic;
use serde::{Deserialize, Serialize};

/// Marks the temporary names of a target: `.NAME.prs-tmp-…` (new output) and
/// `.NAME.prs-old-…` (what a refresh replaces, set aside until it is done).
const STAGED: &str = "prs-tmp";
const ASIDE: &str = "prs-old";
/// `.NAME.prs-lock`: held while a run writes the target.
const LOCK: &str = "prs-lock";
/// In a directory target: what the last prs `COPY` wrote there (relative paths, JSON). Not
/// named `*.json`: a directory of JSON output is read by its extension.
pub const MANIFEST: &str = ".prs-output.manifest";
/// In a temporary: the change being made to the target, for finishing or undoing it.
const PLAN: &str = ".prs-publish.plan";

/// What a `COPY` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// One file.
    File,
    /// Files in a directory.
    Files,
    /// Partition directories this many levels deep (`PARTITIONED BY` this many columns).
    Partitions(usize),
}

/// The manifest of a directory target: the entries (files, or partition directories) the
/// last `COPY` wrote, and the token of that run, which tells a finished change from one that
/// was cut short.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Manifest {
    written_by: String,
    token: String,
    entries: Vec<String>,
}

/// A change to a directory target: `replace` (in the target) is set aside, `add` (in the
/// temporary) moved in; the manifest `{token, add}` commits it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Plan {
    token: String,
    replace: Vec<String>,
    add: Vec<String>,
}

/// A COPY target being written under a temporary name.
#[derive(Debug)]
pub struct Staged {
    target: PathBuf,
    staged: PathBuf,
    aside: PathBuf,
    /// `PID-RANDOM`, shared by this run's temporaries.
    token: String,
    shape: Shape,
    /// The directories made to hold the lock (and the output), removed again if nothing is
    /// written: outermost first.
    made: Vec<PathBuf>,
    lock: Option<TargetLock>,
}

/// Rewrite a local `COPY ... TO` to write under a temporary name; other plans pass through.
/// An error names the target that cannot be written (in use by another run, of the wrong kind,
/// or with earlier temporaries that could not be cleaned up).
pub fn stage(plan: LogicalPlan) -> Result<(LogicalPlan, Option<Staged>), (PathBuf, io::Error)> {
    let LogicalPlan::Copy(copy) = plan else {
        return Ok((plan, None));
    };
    let Some(target) = local_path(&copy.output_url) else {
        return Ok((LogicalPlan::Copy(copy), None));
    };
    let shape = match (writes_one_file(&copy), copy.partition_by.len()) {
        (true, _) => Shape::File,
        (false, 0) => Shape::Files,
        (false, n) => Shape::Partitions(n),
    };
    let staged = match Staged::new(target.clone(), shape) {
        Ok(staged) => staged,
        Err(e) => return Err((target, e)),
    };
    let mut options: HashMap<String, String> = copy.options.clone();
    // decided by the target's name; the temporary name must not change it
    let single_file = shape == Shape::File;
    options.insert("single_file_output".into(), single_file.to_string());
    let mut url = staged.staged.display().to_string();
    if !single_file {
        url.push('/');
    }
    let plan = LogicalPlan::Copy(CopyTo::new(
        copy.input.clone(),
        url,
        copy.partition_by.clone(),
        copy.file_type.clone(),
        options,
    ));
    Ok((plan, Some(staged)))
}

impl Staged {
    /// Lock `target`, clean up after killed runs, and check that the target can take a
    /// `shape` output (before the statement runs, so that nothing is sampled in vain).
    fn new(target: PathBuf, shape: Shape) -> io::Result<Staged> {
        let made = make_parent(&target)?;
        let lock = match TargetLock::acquire(&target) {
            Ok(lock) => lock,
            Err(e) => {
                remove_made(&made);
                return Err(e);
            }
        };
        let token = format!("{}-{:x}", std::process::id(), atomic::rand_suffix());
        let staged = Staged {
            staged: temporary(&target, STAGED, &token),
            aside: temporary(&target, ASIDE, &token),
            target,
            token,
            shape,
            made,
            lock: Some(lock),
        };
        let checked = recover(&staged.target).and_then(|()| staged.check_target());
        match checked {
            Ok(()) => Ok(staged),
            Err(e) => {
                staged.discard();
                Err(e)
            }
        }
    }

    /// Whether the target is of the kind this statement writes (and, for a directory, its
    /// manifest can be read).
    fn check_target(&self) -> io::Result<()> {
        let Ok(meta) = fs::metadata(&self.target) else {
            return Ok(()); // nothing there yet
        };
        match (self.shape, meta.is_dir()) {
            (Shape::File, true) => Err(io::Error::new(
                ErrorKind::IsADirectory,
                format!(
                    "{} is a directory, and this COPY writes one file; to write files into \
                     the directory, end the target with '/'; to write one file, remove or \
                     rename the directory, or choose another name",
                    self.target.display()
                ),
            )),
            (Shape::Files | Shape::Partitions(_), false) => Err(io::Error::new(
                ErrorKind::NotADirectory,
                format!(
                    "{} is a file, and this COPY writes a directory; remove or rename the \
                     file, or choose another target (a target that names one file, such as \
                     out/x.parquet, writes one file)",
                    self.target.display()
                ),
            )),
            (Shape::File, false) => Ok(()),
            (_, true) => read_manifest(&self.target).map(|_| ()),
        }
    }

    /// Where the output goes.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The statement succeeded: make the output durable and put it in place. Returns the
    /// data files of a directory target that prs did not write and kept (a reader of the
    /// directory reads them too).
    pub fn publish(self) -> io::Result<Vec<PathBuf>> {
        let published = match self.shape {
            Shape::File => self.publish_file().map(|()| Vec::new()),
            Shape::Files | Shape::Partitions(_) => self.publish_dir(),
        };
        // a change cut short and not undone keeps its plan for the next run to undo it
        if published.is_err() && fs::symlink_metadata(&self.aside).is_err() {
            let _ = remove(&self.staged);
        }
        // the lock is released as `self` goes; the directories made for it stay: they hold
        // the output (or held the target before)
        published
    }

    fn publish_file(&self) -> io::Result<()> {
        atomic::sync_tree(&self.staged)?;
        // checked before the statement; checked again, the lock does not keep others out
        self.check_target()?;
        atomic::rename(&self.staged, &self.target)
    }

    fn publish_dir(&self) -> io::Result<Vec<PathBuf>> {
        if !self.staged.exists() {
            // no rows: an empty output (DataFusion writes no directory then)
            fs::create_dir_all(&self.staged)?;
        }
        let written = entries(&self.staged, self.shape)?;
        if fs::symlink_metadata(&self.target).is_err() {
            // nothing there: the new directory, manifest included, by one rename
            atomic::write(
                &self.staged.join(MANIFEST),
                &self.manifest(written).bytes()?,
            )?;
            atomic::sync_tree(&self.staged)?;
            atomic::rename(&self.staged, &self.target)?;
            return Ok(Vec::new());
        }
        self.check_target()?;
        let previous = read_manifest(&self.target)?;
        let add = self.clear_of_others(written, &previous)?;
        let replace: Vec<String> = match self.shape {
            // the previous run's files go, whether or not this one writes the same names
            Shape::Files => previous.entries.clone(),
            // the partitions this run writes replace theirs; the others stay
            _ => add.clone(),
        };
        let replace = replace
            .into_iter()
            .filter(|e| fs::symlink_metadata(self.target.join(e)).is_ok())
            .collect();
        let plan = Plan {
            token: self.token.clone(),
            replace,
            add,
        };
        self.apply(&plan)?;
        Ok(self.foreign_files(&plan.add))
    }

    /// Carry out `plan` on the target; undone (or left for the next run to undo) on failure.
    fn apply(&self, plan: &Plan) -> io::Result<()> {
        atomic::write(&self.staged.join(PLAN), &to_json(plan)?)?;
        atomic::sync_tree(&self.staged)?;
        fs::create_dir(&self.aside)?;
        atomic::sync_dir(parent(&self.target))?;
        let moved = (|| {
            for entry in &plan.replace {
                move_entry(&self.target.join(entry), &self.aside.join(entry))?;
            }
            for entry in &plan.add {
                move_entry(&self.staged.join(entry), &self.target.join(entry))?;
            }
            // the commit: from here on the new output is the target's
            let manifest = self.manifest(plan.add.clone());
            atomic::write(&self.target.join(MANIFEST), &manifest.bytes()?)
        })();
        match moved {
            Ok(()) => {
                // done: what is left is only temporaries (the next run removes them if this
                // fails)
                let _ = remove(&self.aside);
                let _ = remove(&self.staged);
                Ok(())
            }
            Err(e) => match undo(&self.target, &self.staged, &self.aside, plan) {
                Ok(()) => Err(e),
                Err(undo_failed) => Err(io::Error::new(
                    e.kind(),
                    format!(
                        "{e}; putting the previous output back failed too ({undo_failed}): the \
                         next COPY to this target puts it back before it writes"
                    ),
                )),
            },
        }
    }

    /// The entries of this run, renamed in the temporary where a file of the target that prs
    /// did not write has the same name (DataFusion's names are random; never overwrite one).
    fn clear_of_others(
        &self,
        written: Vec<String>,
        previous: &Manifest,
    ) -> io::Result<Vec<String>> {
        if self.shape != Shape::Files {
            return Ok(written);
        }
        let ours: BTreeSet<&String> = previous.entries.iter().collect();
        let mut out = Vec::with_capacity(written.len());
        for entry in written {
            let taken = |e: &str| fs::symlink_metadata(self.target.join(e)).is_ok();
            if !taken(&entry) || ours.contains(&entry) {
                out.push(entry);
                continue;
            }
            let mut renamed = format!("prs-{:x}-{entry}", atomic::rand_suffix());
            while taken(&renamed) {
                renamed = format!("prs-{:x}-{entry}", atomic::rand_suffix());
            }
            fs::rename(self.staged.join(&entry), self.staged.join(&renamed))?;
            out.push(renamed);
        }
        Ok(out)
    }

    /// Files at the top of the target, not hidden, that this run does not write, with the
    /// extension of a file it does: data that a reader of the directory reads along with it.
    fn foreign_files(&self, add: &[String]) -> Vec<PathBuf> {
        if self.shape != Shape::Files {
            return Vec::new();
        }
        let extension = |name: &str| Path::new(name).extension().map(|e| e.to_os_string());
        let ours: BTreeSet<&str> = add.iter().map(String::as_str).collect();
        let kinds: BTreeSet<_> = add.iter().filter_map(|e| extension(e)).collect();
        let Ok(listing) = fs::read_dir(&self.target) else {
            return Vec::new();
        };
        let mut out: Vec<PathBuf> = listing
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| !n.starts_with('.') && !ours.contains(n.as_str()))
            .filter(|n| extension(n).is_some_and(|x| kinds.contains(&x)))
            .map(|n| self.target.join(n))
            .collect();
        out.sort();
        out
    }

    fn manifest(&self, entries: Vec<String>) -> Manifest {
        Manifest {
            written_by: format!("prs {}", env!("CARGO_PKG_VERSION")),
            token: self.token.clone(),
            entries,
        }
    }

    /// The statement failed: the target keeps what it had.
    pub fn discard(mut self) {
        let _ = remove(&self.staged);
        // unlock (and remove the lock file) before removing the directories made for it
        drop(self.lock.take());
        remove_made(&self.made);
    }
}

impl Manifest {
    fn bytes(&self) -> io::Result<Vec<u8>> {
        to_json(self)
    }
}

fn to_json<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    serde_json::to_vec_pretty(value).map_err(io::Error::other)
}

/// The manifest of directory `target` (empty when there is none: prs has written nothing
/// there yet, or wrote it before manifests).
fn read_manifest(target: &Path) -> io::Result<Manifest> {
    let path = target.join(MANIFEST);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Manifest::default()),
        Err(e) => return Err(e),
    };
    let bad = |why: String| {
        io::Error::new(
            ErrorKind::InvalidData,
            format!(
                "{} is not a prs output manifest ({why}); it lists the files the previous \
                 COPY wrote to this directory, which the next one replaces: restore it, or \
                 delete it to keep those files and add the new ones beside them",
                path.display()
            ),
        )
    };
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    if let Some(e) = manifest.entries.iter().find(|e| relative(e).is_none()) {
        return Err(bad(format!("{e:?} is not a path inside the directory")));
    }
    Ok(manifest)
}

/// `entry` as a path inside a directory: relative, plain names only, none hidden.
fn relative(entry: &str) -> Option<PathBuf> {
    let path = PathBuf::from(entry);
    let plain = path.components().all(|c| match c {
        Component::Normal(name) => !name.to_string_lossy().starts_with('.'),
        _ => false,
    });
    (plain && path.components().next().is_some()).then_some(path)
}

/// What a directory output holds: the files at its top (`Files`), or the partition
/// directories `depth` levels down (and any file above them).
fn entries(dir: &Path, shape: Shape) -> io::Result<Vec<String>> {
    let depth = match shape {
        Shape::Partitions(depth) => depth,
        _ => 1,
    };
    let mut out = Vec::new();
    collect(dir, Path::new(""), depth, &mut out)?;
    out.sort();
    Ok(out)
}

fn collect(dir: &Path, under: &Path, depth: usize, out: &mut Vec<String>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue; // the plan; DataFusion writes no hidden files
        }
        let rel = under.join(&name);
        if depth > 1 && entry.file_type()?.is_dir() {
            collect(&entry.path(), &rel, depth - 1, out)?;
        } else {
            let text = rel.to_str().ok_or_else(|| {
                io::Error::new(
                    ErrorKind::InvalidData,
                    format!("output file name {} is not UTF-8", rel.display()),
                )
            })?;
            out.push(text.to_string());
        }
    }
    Ok(())
}

/// Rename `from` to `to`, making `to`'s directories; durable.
fn move_entry(from: &Path, to: &Path) -> io::Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir)?;
    }
    atomic::rename(from, to)?;
    atomic::sync_dir(parent(from))
}

/// Put the target back as it was before `plan`: remove what was moved in, move back what
/// was set aside, remove the temporaries.
fn undo(target: &Path, staged: &Path, aside: &Path, plan: &Plan) -> io::Result<()> {
    for entry in plan.add.iter().filter_map(|e| relative(e)) {
        // still in the temporary: not moved in (what the target has of that name is the old)
        if fs::symlink_metadata(staged.join(&entry)).is_err() {
            remove(&target.join(&entry))?;
        }
    }
    for entry in plan.replace.iter().filter_map(|e| relative(e)) {
        let old = aside.join(&entry);
        if fs::symlink_metadata(&old).is_ok() {
            move_entry(&old, &target.join(&entry))?;
        }
    }
    remove(aside)?;
    remove(staged)
}

/// The path of a `COPY` target on this machine's file system, absolute (`None` for object
/// stores and other URLs).
fn local_path(url: &str) -> Option<PathBuf> {
    let path = match url.split_once("://") {
        Some(("file", rest)) => rest,
        Some(_) => return None,
        None => url,
    };
    let path = path.trim_end_matches('/');
    if path.is_empty() {
        return None;
    }
    Some(std::path::absolute(path).unwrap_or_else(|_| PathBuf::from(path)))
}

/// Whether `copy` writes one file: the `single_file_output` option, or else DataFusion's rule
/// for the target's name (no trailing `/`, an extension: `out/x.parquet`). Decided by the name
/// alone, as DataFusion decides it for a path that does not exist yet: for a path that does,
/// it goes by what is there, and would write files into a directory named `out/x.parquet`.
/// Partitioned writes are always a directory.
fn writes_one_file(copy: &CopyTo) -> bool {
    let by_name = || {
        let url = copy.output_url.as_str();
        let last = url.rsplit('/').next().unwrap_or_default();
        !url.ends_with('/') && last.contains('.') && !last.ends_with('.')
    };
    let one = match copy.options.get("single_file_output").map(|v| v.trim()) {
        Some("true") => true,
        Some("false") => false,
        _ => by_name(),
    };
    copy.partition_by.is_empty() && one
}

/// `.NAME.KIND-TOKEN` next to `target`.
fn temporary(target: &Path, kind: &str, token: &str) -> PathBuf {
    target.with_file_name(format!(".{}.{kind}-{token}", name_of(target)))
}

fn name_of(target: &Path) -> String {
    target
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A temporary of `target`, by its name in the target's directory: its kind and token
/// (`None` for any other name, including the temporaries of other targets).
fn parse_temporary<'a>(target: &Path, file: &'a str) -> Option<(&'a str, &'a str)> {
    let rest = file.strip_prefix(&format!(".{}.", name_of(target)))?;
    let (kind, token) = rest.split_at_checked(STAGED.len())?;
    let token = token.strip_prefix('-')?;
    let (pid, random) = token.split_once('-')?;
    let digits = !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit());
    let hex = !random.is_empty() && random.bytes().all(|b| b.is_ascii_hexdigit());
    ([STAGED, ASIDE].contains(&kind) && digits && hex).then_some((kind, token))
}

/// Clean up after killed runs that wrote `target` (the caller holds its lock, so no live run
/// owns its temporaries): finish a change that was committed, undo one that was not, remove
/// every other temporary. A directory set aside whole by an older prs is put back if the
/// target is missing.
fn recover(target: &Path) -> io::Result<()> {
    let Ok(listing) = fs::read_dir(parent(target)) else {
        return Ok(()); // no directory yet: nothing to clean
    };
    let mut staged = BTreeSet::new();
    let mut aside = BTreeSet::new();
    for entry in listing {
        let file = entry?.file_name().to_string_lossy().to_string();
        match parse_temporary(target, &file) {
            Some((STAGED, token)) => staged.insert(token.to_string()),
            Some((_, token)) => aside.insert(token.to_string()),
            None => false,
        };
    }
    for token in &staged {
        let (s, a) = (
            temporary(target, STAGED, token),
            temporary(target, ASIDE, token),
        );
        match fs::read(s.join(PLAN)) {
            Ok(bytes) if fs::symlink_metadata(&a).is_ok() => finish(target, &s, &a, &bytes)?,
            // killed before it changed the target
            _ => remove(&s)?,
        }
    }
    for token in aside.difference(&staged) {
        let a = temporary(target, ASIDE, token);
        if fs::symlink_metadata(target).is_err() {
            atomic::rename(&a, target)?;
        } else {
            remove(&a)?;
        }
    }
    Ok(())
}

/// A change cut short after it began: done if the target's manifest is the change's own (it
/// was committed), undone otherwise.
fn finish(target: &Path, staged: &Path, aside: &Path, plan: &[u8]) -> io::Result<()> {
    let plan: Plan = serde_json::from_slice(plan).map_err(|e| {
        io::Error::new(
            ErrorKind::InvalidData,
            format!(
                "{} cannot be read ({e}): a refresh of {} was cut short, and what it replaced \
                 is in {}; move those files back into the target, then delete both temporaries",
                staged.join(PLAN).display(),
                target.display(),
                aside.display()
            ),
        )
    })?;
    let committed = read_manifest(target).is_ok_and(|m| m.token == plan.token);
    if committed {
        remove(aside)?;
        return remove(staged);
    }
    undo(target, staged, aside, &plan)
}

/// Make `target`'s directory if it is missing; the directories made, outermost first.
fn make_parent(target: &Path) -> io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut dir = target.parent();
    while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        missing.push(d.to_path_buf());
        dir = d.parent();
    }
    missing.reverse();
    if let Some(innermost) = missing.last() {
        fs::create_dir_all(innermost)?;
    }
    Ok(missing)
}

/// Remove the directories `made` (outermost first) if they are still empty.
fn remove_made(made: &[PathBuf]) {
    for dir in made.iter().rev() {
        if fs::remove_dir(dir).is_err() {
            return;
        }
    }
}

fn remove(path: &Path) -> io::Result<()> {
    let removed = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match removed {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// The lock on `.NAME.prs-lock`: one run at a time writes a target. The file is removed
/// when the lock is released.
#[derive(Debug)]
struct TargetLock {
    path: PathBuf,
    _file: File,
}

impl TargetLock {
    fn acquire(target: &Path) -> io::Result<TargetLock> {
        let path = target.with_file_name(format!(".{}.{LOCK}", name_of(target)));
        loop {
            let file = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(io::Error::new(
                        ErrorKind::WouldBlock,
                        format!(
                            "another prs run is writing {} now (it holds {}); wait for it to \
                             end, or write to another target",
                            target.display(),
                            path.display()
                        ),
                    ))
                }
                Err(fs::TryLockError::Error(e)) => return Err(e),
            }
            // the run that held it may have removed the file as we opened it: lock the new one
            if same_file(&file, &path) {
                return Ok(TargetLock { path, _file: file });
            }
        }
    }
}

impl Drop for TargetLock {
    fn drop(&mut self) {
        // removed while still locked: a run that opened it meanwhile finds it gone and retries
        let _ = fs::remove_file(&self.path);
    }
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, path: &Path) -> bool {
    path.exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        names
    }

    fn write(path: &Path, bytes: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap()
    }

    /// A run's output: `files` (relative path, content) written into its temporary.
    fn publish(target: &Path, shape: Shape, files: &[(&str, &str)]) -> Vec<PathBuf> {
        let staged = Staged::new(target.to_path_buf(), shape).unwrap();
        for (name, content) in files {
            write(&staged.staged.join(name), content);
        }
        staged.publish().unwrap()
    }

    #[test]
    fn local_targets_and_what_they_become() {
        assert!(local_path("s3://bucket/x.parquet").is_none());
        assert!(local_path("file:///tmp/x.parquet")
            .unwrap()
            .ends_with("x.parquet"));
        assert!(local_path("out/dir/").unwrap().is_absolute());
    }

    #[test]
    fn recover_puts_a_set_aside_directory_back_and_removes_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("daily");
        let aside = dir.path().join(".daily.prs-old-1-2");
        fs::create_dir_all(&aside).unwrap();
        fs::write(aside.join("a.parquet"), b"yesterday").unwrap();
        fs::write(dir.path().join(".daily.prs-tmp-3-4"), b"partial").unwrap();
        fs::write(dir.path().join(".other.prs-tmp-3-4"), b"not ours").unwrap();
        recover(&target).unwrap();
        assert_eq!(read(&target.join("a.parquet")), "yesterday");
        assert_eq!(names(dir.path()), vec![".other.prs-tmp-3-4", "daily"]);
    }

    /// Cleaning up after a killed run touches only the temporaries of its own target, however
    /// alike the names of the others are.
    #[test]
    fn recover_leaves_the_temporaries_of_other_targets_alone() {
        let dir = tempfile::tempdir().unwrap();
        let theirs = [
            ".daily.parquet.prs-tmp-3-4",
            ".daily.v2.prs-old-3-4",
            ".daily2.prs-tmp-3-4",
            ".daily.prs-tmp-x-4",
            ".daily.prs-tmp-3-4.bak",
            ".daily.prs-lock",
        ];
        for name in theirs {
            write(&dir.path().join(name), "not ours");
        }
        write(
            &dir.path().join(".daily.prs-tmp-77-ab/part.parquet"),
            "ours",
        );
        recover(&dir.path().join("daily")).unwrap();
        let mut want: Vec<String> = theirs.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(names(dir.path()), want);
    }

    /// While one run writes a target no other may (it would delete the first one's
    /// temporaries); a run writing another target in the same directory is not held up.
    #[test]
    fn one_run_at_a_time_writes_a_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out/daily");
        let first = Staged::new(target.clone(), Shape::Files).unwrap();
        write(&first.staged.join("a.parquet"), "first");
        let second = Staged::new(target.clone(), Shape::Files).unwrap_err();
        assert_eq!(second.kind(), ErrorKind::WouldBlock);
        let says = second.to_string();
        assert!(
            says.contains("another prs run is writing") && says.contains("out/daily"),
            "{says}"
        );
        assert!(first.staged.join("a.parquet").exists(), "untouched");
        let other = Staged::new(dir.path().join("out/weekly"), Shape::Files).unwrap();
        other.discard();
        first.publish().unwrap();
        // released, and the lock file gone
        assert_eq!(names(&dir.path().join("out")), vec!["daily"]);
        Staged::new(target, Shape::Files).unwrap().discard();
    }

    #[test]
    fn a_directory_refresh_replaces_only_what_the_last_one_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("daily");
        write(&target.join("README.md"), "mine");
        write(&target.join("checkpoint/state"), "checkpoint");
        write(&target.join("notes.parquet"), "someone's");
        let kept = publish(
            &target,
            Shape::Files,
            &[("a_0.parquet", "1"), ("a_1.parquet", "2")],
        );
        assert_eq!(
            kept,
            vec![target.join("notes.parquet")],
            "said, not deleted"
        );
        publish(&target, Shape::Files, &[("b_0.parquet", "3")]);
        assert_eq!(
            names(&target),
            vec![
                MANIFEST,
                "README.md",
                "b_0.parquet",
                "checkpoint",
                "notes.parquet"
            ]
        );
        assert_eq!(read(&target.join("README.md")), "mine");
        assert_eq!(read(&target.join("checkpoint/state")), "checkpoint");
        assert_eq!(read(&target.join("notes.parquet")), "someone's");
        assert_eq!(read_manifest(&target).unwrap().entries, vec!["b_0.parquet"]);
        // a new file named as one of someone else's is renamed, not written over theirs
        publish(&target, Shape::Files, &[("notes.parquet", "4")]);
        assert_eq!(read(&target.join("notes.parquet")), "someone's");
        let entries = read_manifest(&target).unwrap().entries;
        assert!(
            entries.len() == 1 && entries[0].ends_with("-notes.parquet"),
            "{entries:?}"
        );
        assert_eq!(read(&target.join(&entries[0])), "4");
        assert!(!target.join("b_0.parquet").exists());
        // no rows: the last run's files go, nothing else
        publish(&target, Shape::Files, &[]);
        assert_eq!(
            names(&target),
            vec![MANIFEST, "README.md", "checkpoint", "notes.parquet"]
        );
        assert_eq!(names(dir.path()), vec!["daily"], "no temporaries");
    }

    #[test]
    fn a_partition_written_replaces_its_namesake_whole_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("parts");
        let two = Shape::Partitions(2);
        publish(
            &target,
            two,
            &[
                ("day=mon/lang=en/x.parquet", "mon en"),
                ("day=mon/lang=fr/x.parquet", "mon fr"),
                ("day=tue/lang=en/x.parquet", "tue en"),
            ],
        );
        write(
            &target.join("day=mon/lang=en/extra"),
            "replaced with its partition",
        );
        publish(&target, two, &[("day=mon/lang=en/y.parquet", "new")]);
        assert_eq!(names(&target.join("day=mon/lang=en")), vec!["y.parquet"]);
        assert_eq!(read(&target.join("day=mon/lang=fr/x.parquet")), "mon fr");
        assert_eq!(read(&target.join("day=tue/lang=en/x.parquet")), "tue en");
        assert_eq!(names(dir.path()), vec!["parts"], "no temporaries");
    }

    #[test]
    fn a_target_of_the_other_kind_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("x.parquet");
        write(&target.join("part.parquet"), "a directory's file");
        let e = Staged::new(target.clone(), Shape::File).unwrap_err();
        assert!(e.to_string().contains("is a directory"), "{e}");
        assert_eq!(read(&target.join("part.parquet")), "a directory's file");
        let file = dir.path().join("flat");
        write(&file, "a file");
        for shape in [Shape::Files, Shape::Partitions(1)] {
            let e = Staged::new(file.clone(), shape).unwrap_err();
            assert!(e.to_string().contains("is a file"), "{e}");
        }
        assert_eq!(read(&file), "a file");
        assert_eq!(names(dir.path()), vec!["flat", "x.parquet"]);
    }

    /// A manifest naming paths outside the directory is refused, not followed.
    #[test]
    fn a_manifest_that_leaves_the_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("daily");
        write(&dir.path().join("precious"), "keep");
        for entry in ["../precious", "/etc/passwd", ".prs-output.manifest", ""] {
            let manifest = Manifest {
                entries: vec![entry.to_string()],
                ..Manifest::default()
            };
            write(
                &target.join(MANIFEST),
                &String::from_utf8(manifest.bytes().unwrap()).unwrap(),
            );
            let e = Staged::new(target.clone(), Shape::Files).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidData, "{entry}");
            assert!(
                e.to_string().contains("is not a prs output manifest"),
                "{e}"
            );
        }
        write(&target.join(MANIFEST), "{not json");
        assert!(Staged::new(target.clone(), Shape::Files).is_err());
        assert_eq!(read(&dir.path().join("precious")), "keep");
    }

    /// The state a refresh killed midway leaves: `moved` of the plan's steps done.
    fn cut_short(target: &Path, plan: &Plan, moved: usize, committed: bool) {
        let token = &plan.token;
        let (staged, aside) = (
            temporary(target, STAGED, token),
            temporary(target, ASIDE, token),
        );
        for e in &plan.add {
            write(&staged.join(e), "new");
        }
        atomic::write(&staged.join(PLAN), &to_json(plan).unwrap()).unwrap();
        fs::create_dir_all(&aside).unwrap();
        let steps: Vec<(PathBuf, PathBuf)> = plan
            .replace
            .iter()
            .map(|e| (target.join(e), aside.join(e)))
            .chain(plan.add.iter().map(|e| (staged.join(e), target.join(e))))
            .collect();
        for (from, to) in steps.iter().take(moved) {
            move_entry(from, to).unwrap();
        }
        if committed {
            let manifest = Manifest {
                written_by: "prs".into(),
                token: token.clone(),
                entries: plan.add.clone(),
            };
            atomic::write(&target.join(MANIFEST), &manifest.bytes().unwrap()).unwrap();
        }
    }

    /// A refresh killed at any step leaves, once the next run has cleaned up, the old output
    /// (not committed) or the new one (committed), and no temporaries.
    #[test]
    fn a_refresh_cut_short_is_undone_or_finished_by_the_next_run() {
        let plan = Plan {
            token: "41-beef".into(),
            replace: vec!["a.parquet".into(), "b.parquet".into()],
            add: vec!["b.parquet".into(), "c.parquet".into()],
        };
        for moved in 0..=4 {
            for committed in [false, true].into_iter().filter(|c| !c || moved == 4) {
                let dir = tempfile::tempdir().unwrap();
                let target = dir.path().join("daily");
                publish(
                    &target,
                    Shape::Files,
                    &[("a.parquet", "old"), ("b.parquet", "old")],
                );
                write(&target.join("README.md"), "mine");
                cut_short(&target, &plan, moved, committed);
                recover(&target).unwrap();
                let want = match committed {
                    false => vec![MANIFEST, "README.md", "a.parquet", "b.parquet"],
                    true => vec![MANIFEST, "README.md", "b.parquet", "c.parquet"],
                };
                assert_eq!(names(&target), want, "moved {moved}, committed {committed}");
                let content = if committed { "new" } else { "old" };
                assert_eq!(read(&target.join("b.parquet")), content);
                assert_eq!(read(&target.join("README.md")), "mine");
                assert_eq!(names(dir.path()), vec!["daily"], "moved {moved}");
            }
        }
    }
}
