//! The code's shape, checked: no function in `udfs/src`, `src` or `crates/*/src` longer than
//! [`MAX_FN_LINES`] (except the ones listed in [`LONG_ON_PURPOSE`], each with its reason, also
//! in docs/architecture.md), and no import cycle between the files of either crate.
//!
//! Run alone with `cargo test --test e2e shape::`. The checks read the sources as text, which works
//! because they are `cargo fmt`-formatted: a function ends at the first line that closes it at
//! its own indentation.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_FN_LINES: usize = 80;

/// Functions allowed over the limit: (file, function, why).
const LONG_ON_PURPOSE: &[(&str, &str, &str)] = &[];

/// Every `.rs` file under `dir`, as (module path, file path).
fn modules(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(dir).unwrap().with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(
                parts.last().map(String::as_str),
                Some("mod" | "lib" | "main")
            ) {
                parts.pop();
            }
            out.insert(parts.join("::"), path);
        }
    }
    out
}

/// The code of a file without comments and without its inline `mod tests { .. }`.
fn code(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = Vec::new();
    let mut in_tests = false;
    for line in text.lines() {
        if line.starts_with("mod tests {") {
            in_tests = true;
        }
        if in_tests {
            lines.push(String::new());
            continue;
        }
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        lines.push(code.to_string());
    }
    lines
}

/// The crate modules `module` (in `path`) refers to in code. Re-exports (`pub use`) and
/// module declarations (`mod x;`) are the module tree, not dependencies.
fn references(module: &str, path: &Path, all: &BTreeMap<String, PathBuf>) -> BTreeSet<String> {
    let me: Vec<&str> = module.split("::").filter(|s| !s.is_empty()).collect();
    let lines = code(path);
    let children: BTreeSet<String> = lines
        .iter()
        .filter_map(|l| {
            let l = l
                .trim()
                .trim_start_matches("pub ")
                .trim_start_matches("pub(crate) ");
            l.strip_prefix("mod ")
                .and_then(|rest| rest.strip_suffix(';'))
                .map(str::to_string)
        })
        .collect();
    let resolve = |segments: Vec<String>| -> Option<String> {
        (1..=segments.len())
            .rev()
            .map(|i| segments[..i].join("::"))
            .find(|m| all.contains_key(m))
            .or_else(|| all.contains_key("").then(String::new))
    };
    let mut out = BTreeSet::new();
    for line in &lines {
        let trimmed = line.trim_start();
        if trimmed.starts_with("pub use ") || trimmed.starts_with("pub(crate) use ") {
            continue;
        }
        // each run of identifier characters and `::`, e.g. `crate::run::stats::JobStats`
        let runs = line.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'));
        for run in runs.filter(|r| r.contains("::")) {
            let segs: Vec<String> = run.split("::").map(str::to_string).collect();
            let Some(first) = segs.first() else { continue };
            let target = match first.as_str() {
                "crate" => segs[1..].to_vec(),
                "super" => {
                    let mut p: Vec<String> = me[..me.len().saturating_sub(1)]
                        .iter()
                        .map(|s| s.to_string())
                        .collect();
                    p.extend(segs[1..].iter().cloned());
                    p
                }
                "self" => continue,
                child if children.contains(child) => {
                    let mut p: Vec<String> = me.iter().map(|s| s.to_string()).collect();
                    p.extend(segs.iter().cloned());
                    p
                }
                _ => continue,
            };
            if let Some(t) = resolve(target) {
                if t != module {
                    out.insert(t);
                }
            }
        }
    }
    out
}

/// Modules that reach themselves through others: each cycle once.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let mut found = BTreeSet::new();
    for start in graph.keys() {
        // depth-first from `start`, looking for a way back to it
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, path)) = stack.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if next == start {
                    let mut cycle = path.clone();
                    let min = cycle.iter().enumerate().min_by_key(|(_, m)| *m).unwrap().0;
                    cycle.rotate_left(min);
                    found.insert(cycle);
                } else if seen.insert(next.clone()) {
                    let mut p = path.clone();
                    p.push(next.clone());
                    stack.push((next.clone(), p));
                }
            }
        }
    }
    found.into_iter().collect()
}

fn crate_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.join("udfs/src"), root.join("src")];
    // the library crates under crates/ (the simulator, the report)
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        dirs.push(entry.unwrap().path().join("src"));
    }
    dirs
}

#[test]
fn no_import_cycle_between_files() {
    for dir in crate_dirs() {
        let all = modules(&dir);
        let graph: BTreeMap<String, BTreeSet<String>> = all
            .iter()
            .map(|(m, p)| (m.clone(), references(m, p, &all)))
            .collect();
        let cycles = cycles(&graph);
        assert!(
            cycles.is_empty(),
            "import cycles in {}: {cycles:?}\nthe graph: {graph:#?}",
            dir.display()
        );
    }
}

/// Every function of the crate's sources: (file, name, lines).
fn functions(dir: &Path) -> Vec<(String, String, usize)> {
    let mut out = Vec::new();
    for path in modules(dir).values() {
        let text = std::fs::read_to_string(path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some((indent, name)) = fn_start(line) else {
                continue;
            };
            // the signature ends with `{` (a body) or `;` (a declaration)
            let Some(open) = (i..lines.len()).find(|&j| {
                let l = lines[j].trim_end();
                l.ends_with('{') || l.ends_with(';') || l.ends_with('}')
            }) else {
                continue;
            };
            if !lines[open].trim_end().ends_with('{') {
                continue;
            }
            let close = format!("{indent}}}");
            let end = (open + 1..lines.len())
                .find(|&j| lines[j] == close)
                .unwrap_or(lines.len() - 1);
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let file = path.strip_prefix(root).unwrap_or(path);
            out.push((file.display().to_string(), name, end - i + 1));
        }
    }
    out
}

/// `(indentation, name)` if `line` starts a function.
fn fn_start(line: &str) -> Option<(String, String)> {
    let indent: String = line.chars().take_while(|c| *c == ' ').collect();
    let mut rest = line.trim_start();
    for prefix in [
        "pub(crate) ",
        "pub(super) ",
        "pub ",
        "const ",
        "async ",
        "unsafe ",
    ] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    let rest = rest.strip_prefix("fn ")?;
    let name: String = rest
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some((indent, name))
}

#[test]
fn no_function_is_longer_than_the_limit() {
    let mut long = Vec::new();
    for dir in crate_dirs() {
        for (file, name, lines) in functions(&dir) {
            let allowed = LONG_ON_PURPOSE
                .iter()
                .any(|(f, n, _)| file.ends_with(f) && *n == name);
            if lines > MAX_FN_LINES && !allowed {
                long.push(format!("{file}: fn {name} is {lines} lines"));
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions over {MAX_FN_LINES} lines (split them into named steps, or list them in \
         LONG_ON_PURPOSE and docs/architecture.md with the reason):\n{}",
        long.join("\n")
    );
}

#[test]
fn the_checks_see_what_they_check() {
    // the parsers find this file's own functions and the plugin's known modules and edges
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("udfs/src");
    let all = modules(&dir);
    assert!(all.contains_key("run::exec") && all.contains_key("sampler::tree"));
    let exec = references("run::exec", &all["run::exec"], &all);
    assert!(exec.contains("run::runtime"), "{exec:?}");
    let tree = references("sampler::tree", &all["sampler::tree"], &all);
    assert!(
        tree.contains("sampler") && tree.contains("error"),
        "{tree:?}"
    );
    let fns = functions(&dir);
    assert!(fns
        .iter()
        .any(|(f, n, l)| f.ends_with("exec.rs") && n == "execute" && *l > 5));
    // a cycle is found, whatever its length
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(str::to_string).collect()))
    .collect();
    assert_eq!(cycles(&g), vec![vec!["a", "b", "c"]]);
    assert_eq!(
        fn_start("    pub(crate) async fn go(x: u8) {"),
        Some(("    ".into(), "go".into()))
    );
    assert_eq!(fn_start("    let f = 3;"), None);
}
