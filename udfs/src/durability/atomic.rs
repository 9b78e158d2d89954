//! Atomic, durable file operations: what is renamed into place has reached the disk first, and
//! the rename itself is made durable by an fsync of the directory. Used by the checkpoint and
//! by hosts that publish outputs all or nothing (the `prs` CLI's `COPY` targets and summaries).

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

/// Write `bytes` to a temporary file next to `path`, fsync it, rename it over `path`, fsync
/// the directory. Readers see the old content or the new, never a part.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = parent(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{:x}",
        std::process::id(),
        rand_suffix()
    ));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// fsync a file, or every file and directory below a directory (the directory included).
pub fn sync_tree(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        for entry in fs::read_dir(path)? {
            sync_tree(&entry?.path())?;
        }
    }
    File::open(path)?.sync_all()
}

/// Rename `from` to `to` (same file system) and fsync the directory that now holds `to`.
pub fn rename(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::rename(from, to)?;
    sync_dir(parent(to))
}

/// fsync a directory, so that the names created or renamed in it are durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `create_dir_all`, and the fsync of each parent that gained a directory: a new directory's
/// name lives in its parent, so without that fsync a crash can lose the directory (and every
/// file already made durable inside it) even though the files themselves were fsynced.
pub fn create_dir_all_durable(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    if let Some(up) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all_durable(up)?;
    }
    match fs::create_dir(path) {
        Ok(()) => sync_dir(parent(path)),
        // created by someone else meanwhile; their fsync may not have happened yet
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => {
            sync_dir(parent(path))
        }
        Err(e) => Err(e),
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A suffix that differs between calls, for temporary names.
pub fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_replaces_whole_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("prs-durable-{}", rand_suffix()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("summary.json");
        write(&path, b"old").unwrap();
        write(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        let names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("summary.json")]);
        sync_tree(&dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    // Only the creation can be checked here: whether the names survive a power loss (what the
    // fsyncs of the parents are for) cannot be observed from a test.
    #[test]
    fn create_dir_all_durable_creates_missing_ancestors_and_accepts_existing_ones() {
        let root = std::env::temp_dir().join(format!("prs-durable-dirs-{}", rand_suffix()));
        let deep = root.join("a").join("b").join("c");
        create_dir_all_durable(&deep).unwrap();
        assert!(deep.is_dir());
        // again, and a sibling under an existing ancestor
        create_dir_all_durable(&deep).unwrap();
        create_dir_all_durable(&root.join("a").join("d")).unwrap();
        assert!(root.join("a").join("d").is_dir());
        // a file in the way is an error, not a success
        fs::write(root.join("f"), b"x").unwrap();
        assert!(create_dir_all_durable(&root.join("f").join("g")).is_err());
        fs::remove_dir_all(&root).unwrap();
    }
}
