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

/// The statements of a file's code: each line, except that a `use` over several lines is one
/// statement (so `use crate::{a::B, c::D};` is seen whole).
fn statements(lines: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut open: Option<String> = None;
    for line in lines {
        if let Some(mut stmt) = open.take() {
            stmt.push(' ');
            stmt.push_str(line.trim());
            if line.contains(';') {
                out.push(stmt);
            } else {
                open = Some(stmt);
            }
            continue;
        }
        if use_tree(line).is_some() && !line.contains(';') {
            open = Some(line.trim().to_string());
        } else {
            out.push(line.clone());
        }
    }
    out.extend(open);
    out
}

/// What a `use` statement imports (`a::{b, c::d}`) and whether it is a re-export (`pub use`,
/// `pub(crate) use`); `None` for any other statement.
fn use_tree(stmt: &str) -> Option<(&str, bool)> {
    let s = stmt.trim();
    let (rest, public) = match s.strip_prefix("use ") {
        Some(rest) => (rest, false),
        None => {
            let rest = s
                .strip_prefix("pub(crate) ")
                .or_else(|| s.strip_prefix("pub "))?;
            (rest.strip_prefix("use ")?, true)
        }
    };
    Some((rest.trim_end().trim_end_matches(';').trim(), public))
}

/// The paths of a use tree, each with the name it brings in: `a::{b, c::{d as e}}` is
/// `a::b` (`b`) and `a::c::d` (`e`); `a::{self}` is `a` (`a`).
fn expand(tree: &str) -> Vec<(Vec<String>, String)> {
    let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let Some(open) = tree.find('{') else {
        let (path, alias) = match tree.split_once(" as ") {
            Some((p, a)) => (p.trim(), Some(a.trim())),
            None => (tree.trim(), None),
        };
        let segs: Vec<String> = path
            .split("::")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        let name = alias.map(str::to_string).or_else(|| segs.last().cloned());
        return name.map(|n| (segs, n)).into_iter().collect();
    };
    let prefix = tree[..open].trim().trim_end_matches("::");
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    // split at the commas outside nested braces
    let (mut items, mut depth, mut from) = (Vec::new(), 0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[from..]);
    let mut out = Vec::new();
    for item in items.into_iter().map(str::trim).filter(|i| !i.is_empty()) {
        for (mut segs, name) in expand(item) {
            let mut full: Vec<String> = prefix.split("::").map(str::to_string).collect();
            if segs.first().is_some_and(|s| s == "self") {
                segs.remove(0);
            }
            let name = if name == "self" {
                full.last().cloned().unwrap_or(name)
            } else {
                name
            };
            full.extend(segs);
            out.push((full, name));
        }
    }
    out
}

/// The `mod x;` declarations of a file, whatever their visibility.
fn declared_modules(lines: &[String]) -> BTreeSet<String> {
    lines
        .iter()
        .filter_map(|l| {
            let l = l
                .trim()
                .trim_start_matches("pub ")
                .trim_start_matches("pub(crate) ")
                .trim_start_matches("pub(super) ");
            l.strip_prefix("mod ")
                .and_then(|rest| rest.strip_suffix(';'))
                .map(str::to_string)
        })
        .collect()
}

/// A path as written in `module` made absolute (from the crate root), if it is one of the
/// crate's: `crate::a::b`, `super::b` or `child::b`.
fn absolute(module: &str, children: &BTreeSet<String>, segs: &[String]) -> Option<Vec<String>> {
    let me: Vec<String> = module
        .split("::")
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let first = segs.first()?;
    match first.as_str() {
        "crate" => Some(segs[1..].to_vec()),
        "super" => {
            let ups = segs.iter().take_while(|s| *s == "super").count();
            let mut p = me[..me.len().saturating_sub(ups)].to_vec();
            p.extend(segs[ups..].iter().cloned());
            Some(p)
        }
        child if children.contains(child) => {
            let mut p = me;
            p.extend(segs.iter().cloned());
            Some(p)
        }
        _ => None,
    }
}

/// The crate's paths in a file's code, made absolute, each with whether it is in a re-export.
/// In a `use`, each path of the tree (groups expanded); elsewhere, each run of identifier
/// characters and `::` (`crate::run::JobStats::of`).
fn paths(module: &str, path: &Path) -> Vec<(Vec<String>, bool)> {
    let lines = code(path);
    let children = declared_modules(&lines);
    let mut out = Vec::new();
    for stmt in statements(&lines) {
        let (written, reexport): (Vec<Vec<String>>, bool) = match use_tree(&stmt) {
            Some((tree, public)) => (expand(tree).into_iter().map(|(p, _)| p).collect(), public),
            None => {
                let runs = stmt.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'));
                let runs = runs.filter(|r| r.contains("::"));
                (
                    runs.map(|r| r.split("::").map(str::to_string).collect())
                        .collect(),
                    false,
                )
            }
        };
        for segs in written {
            if let Some(abs) = absolute(module, &children, &segs) {
                out.push((abs, reexport));
            }
        }
    }
    out
}

/// What each module re-exports (`pub use`, `pub(crate) use`): (module, name) -> the absolute
/// path it stands for.
fn reexports(all: &BTreeMap<String, PathBuf>) -> BTreeMap<(String, String), Vec<String>> {
    let mut out = BTreeMap::new();
    for (module, path) in all {
        let lines = code(path);
        let children = declared_modules(&lines);
        for stmt in statements(&lines) {
            let Some((tree, true)) = use_tree(&stmt) else {
                continue;
            };
            for (segs, name) in expand(tree) {
                if let Some(abs) = absolute(module, &children, &segs) {
                    out.insert((module.clone(), name), abs);
                }
            }
        }
    }
    out
}

/// The module an absolute path lands in: its longest prefix that is a module, followed through
/// re-exports (`crate::run::JobStats` is `run::stats` when `run` re-exports it from there).
fn resolve(
    mut segs: Vec<String>,
    all: &BTreeMap<String, PathBuf>,
    faces: &BTreeMap<(String, String), Vec<String>>,
) -> Option<String> {
    for _ in 0..8 {
        let i = (0..=segs.len())
            .rev()
            .find(|&i| all.contains_key(&segs[..i].join("::")))?;
        let module = segs[..i].join("::");
        let through = segs
            .get(i)
            .and_then(|name| faces.get(&(module.clone(), name.clone())));
        match through {
            Some(target) if target != &segs[..=i] => {
                let mut next = target.clone();
                next.extend(segs[i + 1..].iter().cloned());
                segs = next;
            }
            _ => return Some(module),
        }
    }
    None
}

/// The crate modules `module` (in `path`) refers to in code, through re-exports to the files
/// that define what it uses. Re-exports themselves (`pub use`) and module declarations
/// (`mod x;`) are the module tree, not dependencies.
fn references(
    module: &str,
    path: &Path,
    all: &BTreeMap<String, PathBuf>,
    faces: &BTreeMap<(String, String), Vec<String>>,
) -> BTreeSet<String> {
    paths(module, path)
        .into_iter()
        .filter(|(_, reexport)| !reexport)
        .filter_map(|(segs, _)| resolve(segs, all, faces))
        .filter(|t| t != module)
        .collect()
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
        let faces = reexports(&all);
        let graph: BTreeMap<String, BTreeSet<String>> = all
            .iter()
            .map(|(m, p)| (m.clone(), references(m, p, &all, &faces)))
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

/// The plugin's wings: its folders with a `mod.rs`.
fn wings(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("mod.rs").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// A wing's files declared `pub mod` on purpose, so part of its face: (wing, file, why).
/// Every other file of a wing is private to it (`mod x;`).
const PUBLIC_WING_FILES: &[(&str, &str, &str)] = &[(
    "durability",
    "atomic",
    "the public API re-exports it as a module, `datafusion_prs::atomic`: the `prs` CLI and the \
     report crate publish their outputs with it",
)];

fn public_on_purpose(wing: &str, file: &str) -> bool {
    PUBLIC_WING_FILES
        .iter()
        .any(|(w, f, _)| *w == wing && *f == file)
}

fn shown(path: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Paths in `dir`'s files into another wing's files instead of through its face (what its
/// `mod.rs` re-exports, and its files in [`PUBLIC_WING_FILES`]): `file: path` each.
fn reaches_into_other_wings(dir: &Path) -> Vec<String> {
    let all = modules(dir);
    let wings = wings(dir);
    let faces = reexports(&all);
    let mut out = Vec::new();
    for (module, path) in &all {
        let own = module.split("::").next().unwrap_or_default();
        for (segs, _) in paths(module, path) {
            let [wing, file, ..] = segs.as_slice() else {
                continue;
            };
            let is_file = all.contains_key(&format!("{wing}::{file}"));
            let in_face =
                faces.contains_key(&(wing.clone(), file.clone())) || public_on_purpose(wing, file);
            if wings.contains(wing) && wing != own && is_file && !in_face {
                out.push(format!("{}: {}", shown(path), segs.join("::")));
            }
        }
    }
    out
}

/// File modules a wing's `mod.rs` declares with a visibility (`pub(crate) mod x;`) that
/// [`PUBLIC_WING_FILES`] does not list: `mod.rs: declaration` each.
fn visible_wing_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for wing in wings(dir) {
        let path = dir.join(&wing).join("mod.rs");
        for line in code(&path) {
            let line = line.trim();
            let Some(rest) = line.strip_prefix("pub") else {
                continue;
            };
            let rest = rest.split_once(' ').map_or("", |(_, r)| r);
            let Some(file) = rest.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')) else {
                continue;
            };
            if !public_on_purpose(&wing, file) {
                out.push(format!("{}: {line}", shown(&path)));
            }
        }
    }
    out
}

#[test]
fn no_wing_reaches_into_another_wings_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("udfs/src");
    let reaching = reaches_into_other_wings(&dir);
    assert!(
        reaching.is_empty(),
        "paths into another wing's files (use what the wing's mod.rs re-exports, its face, and \
         add to the face what is missing):\n{}",
        reaching.join("\n")
    );
    let visible = visible_wing_files(&dir);
    assert!(
        visible.is_empty(),
        "wing files visible outside their wing (declare them `mod x;` and re-export what others \
         need, or list them in PUBLIC_WING_FILES with the reason):\n{}",
        visible.join("\n")
    );
    // the files public on purpose are there, and public
    let all = modules(&dir);
    for (wing, file, _) in PUBLIC_WING_FILES {
        let declared = code(&dir.join(wing).join("mod.rs"))
            .iter()
            .any(|l| l.trim() == format!("pub mod {file};"));
        assert!(
            all.contains_key(&format!("{wing}::{file}")) && declared,
            "PUBLIC_WING_FILES lists {wing}/{file}.rs, which is not a `pub mod` of {wing}/"
        );
    }
}

/// Whether `text` names `name` as a word of its own (`prs::` but not `datafusion_prs::`).
fn names(text: &str, name: &str) -> bool {
    text.match_indices(name).any(|(i, _)| {
        !text[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// Whether a manifest line sets a `path` key (`path = "..."`, or inside `{ .. }`).
fn sets_path(line: &str) -> bool {
    let line = line.split('#').next().unwrap_or_default();
    line.match_indices("path").any(|(i, _)| {
        let before = line[..i].trim_end();
        let after = line[i + 4..].trim_start();
        (before.is_empty() || before.ends_with('{') || before.ends_with(','))
            && after.starts_with('=')
    })
}

/// Each dependency entry of a manifest: (section, name, its text), for the sections that
/// list dependencies (`[dependencies]`, `[dev-dependencies]`, `[target.'..'.dependencies]`,
/// `[dependencies.foo]`, `[workspace.dependencies]`).
fn dependency_entries(manifest: &str) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    // in a dependency section: whether it is one entry (`[dependencies.foo]`)
    let mut table: Option<bool> = None;
    let mut section = String::new();
    for line in manifest.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            let header = trimmed.trim_matches(['[', ']']);
            let parts: Vec<&str> = header.split('.').collect();
            let at = parts.iter().position(|p| p.ends_with("dependencies"));
            table = at.map(|i| i + 1 < parts.len());
            if let Some(i) = at {
                section = parts[..=i].join(".");
                if i + 1 < parts.len() {
                    out.push((section.clone(), parts[i + 1..].join("."), String::new()));
                }
            }
            continue;
        }
        let key: String = trimmed
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        let starts_entry =
            !key.is_empty() && trimmed[key.len()..].trim_start().starts_with(['=', '.']);
        if table == Some(false) && starts_entry {
            out.push((section.clone(), key, String::new()));
        }
        if table.is_some() {
            if let Some(last) = out.last_mut() {
                last.2.push_str(line);
                last.2.push('\n');
            }
        }
    }
    out
}

/// The dependencies of `manifest` that are ours: given by `path`, directly or through the
/// workspace's `[workspace.dependencies]` (in `workspace`).
fn path_dependencies(manifest: &str, workspace: &str) -> Vec<String> {
    let shared = dependency_entries(workspace);
    let mut out = Vec::new();
    for (section, name, text) in dependency_entries(manifest) {
        let inherited = text.lines().any(|l| {
            let l = l.split('#').next().unwrap_or_default().replace(' ', "");
            l.contains("workspace=true")
        });
        let through_workspace = inherited
            && shared.iter().any(|(s, n, t)| {
                s == "workspace.dependencies" && *n == name && t.lines().any(sets_path)
            });
        if text.lines().any(sets_path) || through_workspace {
            out.push(format!("[{section}] {name}"));
        }
    }
    out
}

#[test]
fn the_plugin_imports_nothing_of_ours() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    let manifest = read(&root.join("udfs/Cargo.toml"));
    let ours = path_dependencies(&manifest, &read(&root.join("Cargo.toml")));
    assert!(
        ours.is_empty(),
        "udfs/Cargo.toml depends on crates of this repository (the plugin stands alone; hosts \
         depend on it, not the other way): {ours:?}"
    );
    let mut named = Vec::new();
    for path in modules(&root.join("udfs/src")).values() {
        let text = read(path);
        for name in ["prs::", "prs_sim", "prs_report", "workspace_hack"] {
            if names(&text, name) {
                named.push(format!("{}: `{name}`", shown(path)));
            }
        }
    }
    assert!(
        named.is_empty(),
        "the plugin's sources name the host or the other crates:\n{}",
        named.join("\n")
    );
}

#[test]
fn the_checks_see_what_they_check() {
    // the parsers find this file's own functions and the plugin's known modules and edges,
    // within a wing (`super::runtime`) and through another wing's face to the file behind it
    // (`crate::sql::{InputColumns, SampleCall}` is `sql::source` and `sql::call`)
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("udfs/src");
    let all = modules(&dir);
    let faces = reexports(&all);
    assert!(all.contains_key("run::exec") && all.contains_key("sampler::tree"));
    let exec = references("run::exec", &all["run::exec"], &all, &faces);
    assert!(exec.contains("run::runtime"), "{exec:?}");
    let runtime = references("run::runtime", &all["run::runtime"], &all, &faces);
    assert!(
        runtime.contains("sql::source") && runtime.contains("sql::call"),
        "{runtime:?}"
    );
    let tree = references("sampler::tree", &all["sampler::tree"], &all, &faces);
    assert!(
        tree.contains("sampler") && tree.contains("error") && tree.contains("sampler::components"),
        "{tree:?}"
    );
    // a `use` over lines, with groups, renames and `self`
    let stmts = statements(&[
        "use crate::{".to_string(),
        "    a::{self, B as C},".to_string(),
        "    d::E,".to_string(),
        "};".to_string(),
    ]);
    let (tree, public) = use_tree(&stmts[0]).unwrap();
    assert!(!public);
    let expanded: Vec<(String, String)> = expand(tree)
        .into_iter()
        .map(|(p, n)| (p.join("::"), n))
        .collect();
    let want = [
        ("crate::a", "a"),
        ("crate::a::B", "C"),
        ("crate::d::E", "E"),
    ];
    let want: Vec<(String, String)> = want.map(|(p, n)| (p.into(), n.into())).into();
    assert_eq!(expanded, want);
    // a wing reaching into another's file is found, in a path and in a `use` group; its face
    // and its own files are not; a wing file declared `pub(crate) mod` is found
    let fake = tempfile::tempdir().unwrap();
    let write = |rel: &str, text: &str| {
        let path = fake.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("lib.rs", "mod a;\nmod b;\npub use a::Face;\n");
    write("a/mod.rs", "mod x;\npub(crate) use x::Face;\n");
    write("a/x.rs", "pub struct Face;\npub struct Hidden;\n");
    write("b/mod.rs", "pub(crate) mod y;\nmod z;\n");
    write(
        "b/y.rs",
        "use super::z::Z;\nuse crate::a::Face;\nuse crate::{\n    a::x::Hidden,\n};\n\
         fn f() {\n    let _ = crate::a::x::Face;\n}\n",
    );
    write("b/z.rs", "pub struct Z;\n");
    let reaching = reaches_into_other_wings(fake.path());
    assert_eq!(reaching.len(), 2, "{reaching:?}");
    assert!(
        reaching[0].ends_with("b/y.rs: a::x::Hidden")
            && reaching[1].ends_with("b/y.rs: a::x::Face"),
        "{reaching:?}"
    );
    let visible = visible_wing_files(fake.path());
    assert!(
        visible.len() == 1 && visible[0].ends_with("b/mod.rs: pub(crate) mod y;"),
        "{visible:?}"
    );
    // a dependency of ours is found, in each way a manifest can give it
    let workspace = "[workspace.dependencies]\nmine = { path = \"crates/mine\" }\nserde = \"1\"\n";
    let manifest = "[dependencies]\nserde.workspace = true\nmine.workspace = true\n\
         local = { version = \"1\", path = \"../local\" }\n[dev-dependencies.other]\n\
         path = \"../other\"\n[target.'cfg(unix)'.build-dependencies]\nfar = { path = \"../far\" }\n";
    assert_eq!(
        path_dependencies(manifest, workspace),
        [
            "[dependencies] mine",
            "[dependencies] local",
            "[dev-dependencies] other",
            "[target.'cfg(unix)'.build-dependencies] far"
        ]
    );
    assert!(names("use prs::cli;", "prs::") && !names("datafusion_prs::atomic", "prs::"));
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
