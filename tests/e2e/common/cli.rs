//! Running the `prs` binary as a user does, in a scratch directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `prs ARGS` in `dir`, with none of the endpoint settings or keys of the test's own
/// environment (other tests in this binary set `PRS_POLICY_API_KEY`) and `env` added.
pub fn prs_command(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prs"));
    cmd.current_dir(dir).args(args);
    for k in [
        "PRS_POLICY_URL",
        "PRS_REWARD_URL",
        "PRS_MAX_N",
        "PRS_POLICY_MODEL",
        "PRS_POLICY_API_KEY",
        "PRS_REWARD_API_KEY",
        "PRS_POLICY_API_KEY_URLS",
        "PRS_REWARD_API_KEY_URLS",
    ] {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Run `prs ARGS` in `dir` to the end.
pub fn prs(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    prs_command(dir, args, env).output().expect("run prs")
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A scratch directory holding a copy of data/ (queries write to out/ relative to it).
pub fn workdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::copy(
        root().join("data/prompts.parquet"),
        dir.path().join("data/prompts.parquet"),
    )
    .unwrap();
    dir
}

/// stdout and stderr of a run, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
