//! `prs sql` on a terminal: the interactive shell driven through a real pseudo-terminal
//! (util-linux `script` gives the child one): a statement over two lines, Ctrl-C cancelling a
//! statement hung on a silent server without leaving the shell, Ctrl-C at the prompt dropping
//! the lines typed, `\q`, and the history file.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::cli::workdir;

/// A shell on a pseudo-terminal: what it printed so far, and its keyboard.
struct Terminal {
    child: Child,
    keys: ChildStdin,
    screen: Arc<Mutex<String>>,
}

impl Terminal {
    fn start(dir: &std::path::Path, env: &[(&str, String)]) -> Terminal {
        // `script` runs the command with $SHELL (or /bin/sh) -c; `exec` makes prs the terminal's
        // foreground process whatever that shell is: a shell left waiting in between (dash does)
        // is killed by the Ctrl-C meant for prs.
        let command = format!("exec '{}' sql --quiet", env!("CARGO_BIN_EXE_prs"));
        let mut cmd = Command::new("script");
        cmd.args(["-qefc", &command, "/dev/null"])
            .current_dir(dir)
            .env("HOME", dir)
            .env("TERM", "xterm")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start script (util-linux)");
        let keys = child.stdin.take().unwrap();
        let mut out = child.stdout.take().unwrap();
        let screen = Arc::new(Mutex::new(String::new()));
        let sink = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Terminal {
            child,
            keys,
            screen,
        }
    }

    fn type_keys(&mut self, keys: &str) {
        self.keys.write_all(keys.as_bytes()).unwrap();
        self.keys.flush().unwrap();
    }

    /// Wait until the screen shows `text` `times` times in all.
    fn wait_for(&self, text: &str, times: usize) {
        let started = Instant::now();
        loop {
            let screen = self.screen.lock().unwrap().clone();
            if screen.matches(text).count() >= times {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no {text:?} ({times}x) on the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn the_shell_runs_cancels_and_remembers() {
    if Command::new("script").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "no `script` (util-linux)");
        eprintln!("skipped: no `script` (util-linux) for a pseudo-terminal");
        return;
    }
    let dir = workdir();
    // a server that takes connections and never answers
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let mut t = Terminal::start(
        dir.path(),
        &[
            ("PRS_POLICY_URL", format!("{url}/v1")),
            ("PRS_REWARD_URL", url.clone()),
            ("PRS_POLICY_MODEL", "m".into()),
        ],
    );
    t.wait_for("prs> ", 1);
    // one statement over two lines
    t.type_keys("SELECT 1 +\n");
    t.wait_for("  -> ", 1);
    t.type_keys("1 AS two;\n");
    t.wait_for("| 2 ", 1);
    // a statement hung on the silent server, cancelled; the shell stays
    t.wait_for("prs> ", 2);
    t.type_keys("SELECT count(*) FROM random_sample('data/prompts.parquet', 4);\n");
    std::thread::sleep(Duration::from_millis(1500));
    t.type_keys("\x03");
    t.wait_for("cancelled: the statement stopped", 1);
    // Ctrl-C at the prompt drops the lines typed so far
    t.wait_for("prs> ", 3);
    t.type_keys("SELECT 'never\n");
    t.wait_for("  -> ", 2);
    t.type_keys("\x03");
    t.wait_for("prs> ", 4);
    t.type_keys("SELECT 3 AS three;\n");
    t.wait_for("| 3 ", 1);
    t.type_keys("\\q\n");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = t.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "\\q did not quit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let screen = t.screen.lock().unwrap().clone();
    assert!(!screen.contains("Error"), "{screen}");
    let history = std::fs::read_to_string(dir.path().join(".prs_history")).unwrap();
    assert!(
        history.contains("SELECT 1 +\\n1 AS two;") && history.contains("SELECT 3 AS three;"),
        "{history}"
    );
}

/// In the shell, a result or an error holding escape sequences is shown escaped: it cannot
/// retitle or clear the terminal the user types in.
#[test]
fn the_shell_shows_escape_sequences_escaped() {
    if Command::new("script").arg("--version").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "no `script` (util-linux)");
        eprintln!("skipped: no `script` (util-linux) for a pseudo-terminal");
        return;
    }
    let dir = workdir();
    let mut t = Terminal::start(dir.path(), &[]);
    t.wait_for("prs> ", 1);
    t.type_keys("SELECT 'a' || chr(27) || ']0;evil' || chr(7) || chr(27) || '[2J' AS x;\n");
    t.wait_for(r"a\x1b]0;evil\x07\x1b[2J", 1);
    // an error quoting the text
    t.wait_for("prs> ", 2);
    t.type_keys("SELECT * FROM random_sample('c' || chr(27) || '[2J', 1);\n");
    t.wait_for(r"input c\x1b[2J: no table of that name", 1);
    t.type_keys("\\q\n");
    let started = Instant::now();
    while t.child.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "\\q did not quit"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let screen = t.screen.lock().unwrap().clone();
    // nothing typed holds these: only prs could have sent them
    for raw in ["\x1b]0;evil", "a\x1b[2J", "c\x1b[2J"] {
        assert!(
            !screen.contains(raw),
            "{raw:?} reached the terminal:\n{screen}"
        );
    }
}
