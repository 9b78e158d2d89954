//! The docs name what is there: every repository path that `README.md` and `docs/*.md` name
//! (in inline code, in code blocks, or as a relative link) exists, and every relative link lands
//! on a file and, with an anchor into a markdown file, on one of its headings.
//!
//! Run alone with `cargo test --test e2e docs::`.
//!
//! What counts as a repository path: a word of code with a `/` in it or ending in an extension
//! of [`EXTENSIONS`], made of letters, digits, `_`, `-`, `.` and `/` only. So URLs, absolute
//! paths, `../` paths (outside the repository), placeholders (`ck/<fingerprint>/`), globs
//! (`data/*.parquet`), settings (`widths=8/4/4`), calls (`ctx.sql(...)`) and pictures (code
//! blocks marked `text`: diagrams of module names) are not checked. Names the docs use as
//! examples of a user's files or of what a run writes are listed in [`EXAMPLES`], each with
//! its reason. Code paths are relative to the repository root; link targets are relative to the
//! document that holds them, as GitHub reads them.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// Extensions that make a word without a `/` a file name worth checking.
const EXTENSIONS: &[&str] = &[
    "rs", "md", "sql", "slt", "parquet", "toml", "py", "sh", "json", "jsonl", "jinja", "html",
    "png", "lock", "txt", "yml", "yaml",
];

/// Names the docs use as examples, never files of this repository: (name, or a prefix ending
/// in `/`; why it is not here).
const EXAMPLES: &[(&str, &str)] = &[
    ("out/", "written by the example queries and the CLI"),
    ("target/", "cargo's build outputs (binaries, Python venv)"),
    ("prompts.parquet", "a user's prompt table (ours: data/)"),
    ("file.parquet", "any Parquet file, in `FROM 'file.parquet'`"),
    ("table.parquet", "any Parquet table given to prs_score"),
    ("x.parquet", "any Parquet table given to reward()"),
    ("p.parquet", "any prompt table, in the LIMIT example"),
    ("CANDIDATES.parquet", "the argument in `prs report`'s usage"),
    ("job.sql", "a user's script, in `prs sql -f job.sql`"),
    ("summary.json", "what `--summary-json summary.json` writes"),
    ("call.json", "a file a checkpoint directory holds"),
    ("tokenizer_config.json", "a file of a Hugging Face model"),
    (
        "models/rm/tokenizer_config.json",
        "a reward model in a user's job",
    ),
    ("chat_template.jinja", "a file of a Hugging Face model"),
    ("mistralai/", "a Hugging Face model id (`vllm serve`)"),
    ("Skywork/", "a Hugging Face model id (`vllm serve`)"),
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `README.md` and every `docs/*.md`.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    docs.insert(0, root.join("README.md"));
    docs
}

/// A markdown text split into the text of its code (code blocks and inline code) and its prose.
struct Parts {
    code: Vec<String>,
    prose: String,
}

fn parts(md: &str) -> Parts {
    let (mut code, mut prose) = (Vec::new(), String::new());
    // None: prose; Some(true): a code block; Some(false): a picture (```text)
    let mut block: Option<bool> = None;
    for line in md.lines() {
        if let Some(info) = line.trim_start().strip_prefix("```") {
            block = match block {
                None => Some(info.trim() != "text"),
                Some(_) => None,
            };
        } else if let Some(is_code) = block {
            if is_code {
                code.push(line.to_string());
            }
        } else {
            prose.push_str(line);
            prose.push('\n');
        }
    }
    let (spans, prose) = inline_code(&prose);
    code.extend(spans);
    Parts { code, prose }
}

/// The inline code spans of `text` (a span may wrap lines), and the text without them.
fn inline_code(text: &str) -> (Vec<String>, String) {
    let (mut spans, mut rest, mut s) = (Vec::new(), String::new(), text);
    while let Some(open) = s.find('`') {
        rest.push_str(&s[..open]);
        let ticks = s[open..].len() - s[open..].trim_start_matches('`').len();
        let fence = &s[open..open + ticks];
        let body = &s[open + ticks..];
        match body.find(fence) {
            Some(close) => {
                spans.push(body[..close].to_string());
                s = &body[close + ticks..];
            }
            None => {
                s = body;
            }
        }
    }
    rest.push_str(s);
    (spans, rest)
}

/// The repository path a word of code names, if it names one.
fn repo_path(word: &str) -> Option<&str> {
    let w = word.trim_end_matches(['.', ':']);
    let w = w.strip_prefix("./").unwrap_or(w);
    let outside = w.starts_with('/') || w.starts_with('~') || w.starts_with("../");
    let path_chars = w
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
    let has_letter = w.chars().any(|c| c.is_ascii_alphabetic());
    if w.is_empty() || outside || !path_chars || !has_letter {
        return None;
    }
    if w.starts_with('.') && !w.contains('/') {
        return None; // an extension (`.jinja`) or a hidden name a run makes
    }
    let ext = w.rsplit_once('.').map(|(_, e)| e);
    (w.contains('/') || ext.is_some_and(|e| EXTENSIONS.contains(&e))).then_some(w)
}

/// The words of a piece of code: split on whitespace and on quotes, brackets and separators,
/// so that `open("queries/dpo_pairs.sql")` gives `queries/dpo_pairs.sql`. A word right before
/// `(` is a function (`ctx.sql(...)`), not a path.
fn words(code: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, c) in code.char_indices() {
        if c.is_whitespace() || "'\"(),;|`".contains(c) {
            if start < i && c != '(' {
                out.push(&code[start..i]);
            }
            start = i + c.len_utf8();
        }
    }
    if start < code.len() {
        out.push(&code[start..]);
    }
    out
}

fn is_example(path: &str) -> bool {
    EXAMPLES
        .iter()
        .any(|(name, _)| path == *name || (name.ends_with('/') && path.starts_with(name)))
}

/// The targets of the markdown links (and images) in prose.
fn links(prose: &str) -> Vec<&str> {
    prose
        .match_indices("](")
        .filter_map(|(i, _)| {
            let rest = &prose[i + 2..];
            let end = rest.find([')', ' ', '\n'])?;
            Some(&rest[..end])
        })
        .collect()
}

/// GitHub's anchors for the headings of a markdown text.
fn anchors(md: &str) -> Vec<String> {
    let (mut seen, mut out, mut fenced) = (BTreeMap::<String, usize>::new(), Vec::new(), false);
    for line in md.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        let title = line.trim_start_matches('#');
        if fenced || title.len() == line.len() || !title.starts_with(' ') {
            continue;
        }
        let slug: String = title
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '_' || c == '-' => Some(c),
                _ => None,
            })
            .collect();
        let n = seen.entry(slug.clone()).or_insert(0);
        out.push(match *n {
            0 => slug.clone(),
            k => format!("{slug}-{k}"),
        });
        *n += 1;
    }
    out
}

/// `path` with `.` and `..` resolved, without touching the filesystem.
fn normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// What is wrong with one link of `doc`: a missing file or a missing heading.
fn link_problem(doc: &Path, own: &str, target: &str) -> Option<String> {
    let external = ["http://", "https://", "mailto:"];
    if external.iter().any(|p| target.starts_with(p)) {
        return None;
    }
    let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
    let path = match file {
        "" => doc.to_path_buf(),
        f => normal(&doc.parent().unwrap().join(f)),
    };
    if !path.exists() {
        return Some(format!("link {target}: no such file"));
    }
    let is_md = path.extension().is_some_and(|e| e == "md");
    if anchor.is_empty() || !is_md {
        return None;
    }
    let text = match file {
        "" => own.to_string(),
        _ => std::fs::read_to_string(&path).unwrap(),
    };
    let found = anchors(&text).iter().any(|a| a == anchor);
    (!found).then(|| format!("link {target}: no heading #{anchor}"))
}

/// The repository paths that the code of a markdown text names.
fn named_paths(code: &[String]) -> Vec<&str> {
    code.iter()
        .flat_map(|c| words(c))
        .filter_map(repo_path)
        .collect()
}

/// Everything the markdown `text` of `doc` names that is not there.
fn problems(root: &Path, doc: &Path, text: &str) -> Vec<String> {
    let Parts { code, prose } = parts(text);
    let mut out = Vec::new();
    for path in named_paths(&code) {
        let line = format!("`{path}`: not in the repository");
        if !is_example(path) && !root.join(path).exists() && !out.contains(&line) {
            out.push(line);
        }
    }
    out.extend(
        links(&prose)
            .into_iter()
            .filter_map(|t| link_problem(doc, text, t)),
    );
    out
}

#[test]
fn every_path_and_link_in_the_docs_exists() {
    let root = root();
    let mut missing = Vec::new();
    for doc in documents(&root) {
        let text = std::fs::read_to_string(&doc).unwrap();
        let name = doc.strip_prefix(&root).unwrap().display().to_string();
        missing.extend(
            problems(&root, &doc, &text)
                .into_iter()
                .map(|p| format!("{name}: {p}")),
        );
    }
    assert!(
        missing.is_empty(),
        "the docs name {} thing(s) that are not there (fix the doc, or, for a name that is only \
         an example, add it to EXAMPLES in tests/e2e/docs.rs with its reason):\n{}",
        missing.len(),
        missing.join("\n")
    );
}

/// The check can fail: a made-up path, a link to a missing file and one to a missing heading
/// are reported; examples, URLs, placeholders, globs and settings are not.
#[test]
fn a_path_that_is_not_there_is_reported() {
    let root = root();
    let doc = root.join("README.md");
    let text = "Run `cargo run -- sql -f queries/no_such_job.sql` (see `udfs/src/nowhere.rs`).\n\
                Also `queries/quickstart.sql`, `out/x.parquet`, `ck/<fingerprint>/`, \
                `data/*.parquet`, `widths=8/4/4`, `http://host:8000/v1`, `/tmp/model`.\n\
                [a](docs/no_such_doc.md), [b](docs/sql.md#no-such-heading), [c](docs/sql.md#settings).\n\
                Not a path: `ctx.sql(\"SELECT 1\")`.\n\
                ```sh\nbash benches/no_such_script.sh\n```\n\
                ```text\nsql/table_function -> run/exec\n```\n";
    let found = problems(&root, &doc, text);
    let expect = [
        "`queries/no_such_job.sql`",
        "`udfs/src/nowhere.rs`",
        "docs/no_such_doc.md",
        "#no-such-heading",
        "`benches/no_such_script.sh`",
    ];
    for e in expect {
        assert!(
            found.iter().any(|f| f.contains(e)),
            "{e} not reported: {found:?}"
        );
    }
    assert_eq!(found.len(), expect.len(), "{found:?}");
}

/// The allow-list stays small and true: each name has its reason, is not a file of the
/// repository, and is still used by some doc.
#[test]
fn every_example_name_is_needed() {
    let root = root();
    let mut used = Vec::new();
    for doc in documents(&root) {
        let code = parts(&std::fs::read_to_string(&doc).unwrap()).code;
        used.extend(named_paths(&code).into_iter().map(str::to_string));
    }
    for (name, why) in EXAMPLES {
        assert!(!why.is_empty(), "{name}: give the reason");
        let prefix = name.ends_with('/');
        assert!(
            prefix || !root.join(name).exists(),
            "{name} is in the repository: not an example"
        );
        let matches = |p: &String| p == name || (prefix && p.starts_with(name));
        assert!(
            used.iter().any(matches),
            "{name}: no doc names it; drop it from EXAMPLES"
        );
    }
}
