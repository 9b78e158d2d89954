//! `COPY ... TO` targets written all or nothing. The statement writes under a hidden temporary
//! name next to the target (`.NAME.prs-tmp-PID`); only when it succeeds is the result fsynced
//! and renamed into place. A failed statement removes its temporary; a killed run's is
//! removed by the next run that writes the same target. Until then the previous output stays
//! byte for byte.
//!
//! A file target is replaced by one rename. A directory target is swapped by two renames (the
//! old one aside, the new one in, the old one removed); a run killed between them leaves the
//! old directory aside, and the next run puts it back before it writes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use datafusion::datasource::listing::ListingTableUrl;
use datafusion::datasource::physical_plan::FileOutputMode;
use datafusion::logical_expr::dml::CopyTo;
use datafusion::logical_expr::LogicalPlan;
use datafusion_prs::durable;

/// Marks the temporary names of a target: `.NAME.prs-tmp-…` (new output) and
/// `.NAME.prs-old-…` (a directory set aside while being replaced).
const STAGED: &str = "prs-tmp";
const ASIDE: &str = "prs-old";

/// A COPY target being written under a temporary name.
#[derive(Debug)]
pub struct Staged {
    target: PathBuf,
    staged: PathBuf,
    single_file: bool,
}

/// Rewrite a local `COPY ... TO` to write under a temporary name; other plans pass through.
/// An error names the target whose earlier temporaries could not be cleaned up.
pub fn stage(
    plan: LogicalPlan,
) -> Result<(LogicalPlan, Option<Staged>), (PathBuf, std::io::Error)> {
    let LogicalPlan::Copy(copy) = plan else {
        return Ok((plan, None));
    };
    let Some(target) = local_path(&copy.output_url) else {
        return Ok((LogicalPlan::Copy(copy), None));
    };
    let single_file = writes_one_file(&copy);
    if let Err(e) = recover(&target) {
        return Err((target, e));
    }
    let staged = sibling(&target, STAGED);
    let mut options: HashMap<String, String> = copy.options.clone();
    // decided by the target's name; the temporary name must not change it
    options.insert("single_file_output".into(), single_file.to_string());
    let mut url = staged.display().to_string();
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
    let staged = Staged {
        target,
        staged,
        single_file,
    };
    Ok((plan, Some(staged)))
}

impl Staged {
    /// Where the output goes.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The statement succeeded: make the output durable and put it in place.
    pub fn publish(self) -> std::io::Result<()> {
        if !self.single_file && !self.staged.exists() {
            // no rows into a directory: an empty directory
            std::fs::create_dir_all(&self.staged)?;
        }
        durable::sync_tree(&self.staged)?;
        if self.staged.is_dir() && self.target.exists() {
            let aside = sibling(&self.target, ASIDE);
            durable::rename(&self.target, &aside)?;
            durable::rename(&self.staged, &self.target)?;
            return remove(&aside);
        }
        if self.target.is_dir() {
            // a file over a directory: the directory goes, as DataFusion would refuse
            remove(&self.target)?;
        }
        durable::rename(&self.staged, &self.target)
    }

    /// The statement failed: the target keeps what it had.
    pub fn discard(self) {
        let _ = remove(&self.staged);
    }
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

/// Whether DataFusion would write `copy` to one file: its own rule for the target's name and
/// the `single_file_output` option (partitioned writes are always a directory).
fn writes_one_file(copy: &CopyTo) -> bool {
    let mode = match copy.options.get("single_file_output").map(|v| v.trim()) {
        Some("true") => FileOutputMode::SingleFile,
        Some("false") => FileOutputMode::Directory,
        _ => FileOutputMode::Automatic,
    };
    copy.partition_by.is_empty()
        && ListingTableUrl::parse(&copy.output_url).is_ok_and(|url| mode.single_file_output(&url))
}

/// `.NAME.KIND-PID-RANDOM` next to `target`.
fn sibling(target: &Path, kind: &str) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    target.with_file_name(format!(
        ".{name}.{kind}-{}-{:x}",
        std::process::id(),
        durable::rand_suffix()
    ))
}

/// Clean up after a killed run: put a directory set aside back if the target is missing,
/// remove every other temporary of `target`.
fn recover(target: &Path) -> std::io::Result<()> {
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        return Ok(());
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(()); // no directory yet: nothing to clean
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    for entry in entries {
        let path = entry?.path();
        let file = path.file_name().map(|n| n.to_string_lossy().to_string());
        let Some(rest) = file.as_deref().and_then(|f| f.strip_prefix(&prefix)) else {
            continue;
        };
        if rest.starts_with(ASIDE) && !target.exists() {
            durable::rename(&path, target)?;
        } else if rest.starts_with(STAGED) || rest.starts_with(ASIDE) {
            remove(&path)?;
        }
    }
    Ok(())
}

fn remove(path: &Path) -> std::io::Result<()> {
    let removed = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match removed {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        std::fs::create_dir_all(&aside).unwrap();
        std::fs::write(aside.join("a.parquet"), b"yesterday").unwrap();
        std::fs::write(dir.path().join(".daily.prs-tmp-3-4"), b"partial").unwrap();
        std::fs::write(dir.path().join(".other.prs-tmp-3-4"), b"not ours").unwrap();
        recover(&target).unwrap();
        assert_eq!(
            std::fs::read(target.join("a.parquet")).unwrap(),
            b"yesterday"
        );
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        assert_eq!(names, vec![".other.prs-tmp-3-4", "daily"]);
    }
}
