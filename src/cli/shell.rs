//! `prs sql` on a terminal without SQL: an interactive shell, as datafusion-cli, duckdb and
//! psql open one. Statements may span lines and end with `;`; the history is kept in
//! `~/.prs_history`; Ctrl-C cancels the running statement (dropping it stops its requests)
//! without leaving the shell, or clears the lines typed so far; `\q`, `quit` or Ctrl-D leave.

use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;

use super::error::CliError;
use super::exec::run_script;
use super::print::terminal_text;

/// Read, run and print statements until the user leaves.
pub async fn run(
    ctx: &SessionContext,
    max_width: usize,
    stage_copies: bool,
) -> Result<(), CliError> {
    let mut editor = DefaultEditor::new().map_err(|e| CliError::Shell(e.to_string()))?;
    let history = std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".prs_history"));
    if let Some(path) = &history {
        // no history yet is fine
        let _ = editor.load_history(path);
    }
    eprintln!(
        "prs {}: SQL with random_sample(), prs_sample() and prs_report(); end statements with `;`. \
         Ctrl-C cancels a running statement, \\q or Ctrl-D quits.",
        env!("CARGO_PKG_VERSION")
    );
    let mut interrupts = Interrupts::listen()?;
    let mut lines = String::new();
    loop {
        let prompt = if lines.is_empty() { "prs> " } else { "  -> " };
        // the line editor blocks: off the async workers
        match tokio::task::block_in_place(|| editor.readline(prompt)) {
            Ok(line) if lines.is_empty() && is_quit(&line) => break,
            Ok(line) => {
                lines.push_str(&line);
                lines.push('\n');
                if !ends_statement(&lines) {
                    continue;
                }
                let _ = editor.add_history_entry(lines.trim_end());
                let script = std::mem::take(&mut lines);
                tokio::select! {
                    result = run_script(ctx, &script, max_width, stage_copies) => {
                        if let Err(e) = result {
                            eprintln!("Error: {}", terminal_text(&e.to_string()));
                        }
                    }
                    _ = interrupts.next() => {
                        eprintln!("cancelled: the statement stopped, and so did its requests");
                    }
                }
            }
            // Ctrl-C at the prompt: forget the lines typed so far
            Err(ReadlineError::Interrupted) => lines.clear(),
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(CliError::Shell(e.to_string())),
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    Ok(())
}

/// Ctrl-C while a statement runs. The shell listens from its start, so no Ctrl-C kills it,
/// not even one pressed between reading a statement and running it (at the prompt the line
/// editor reads Ctrl-C as a key).
struct Interrupts {
    #[cfg(unix)]
    signals: tokio::signal::unix::Signal,
}

impl Interrupts {
    fn listen() -> Result<Interrupts, CliError> {
        Ok(Interrupts {
            #[cfg(unix)]
            signals: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .map_err(|e| CliError::Shell(format!("cannot listen for Ctrl-C: {e}")))?,
        })
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        self.signals.recv().await;
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `\q`, `quit` or `exit` (with or without `;`).
fn is_quit(line: &str) -> bool {
    matches!(
        line.trim().trim_end_matches(';').trim(),
        "\\q" | "quit" | "exit"
    )
}

/// Whether `text` ends a statement: its last token that is not whitespace or a comment is `;`
/// (a `;` inside a string or a comment does not count; an unclosed string reads on).
pub fn ends_statement(text: &str) -> bool {
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, text).tokenize() else {
        return false;
    };
    tokens
        .iter()
        .rev()
        .find(|t| !matches!(t, Token::Whitespace(_)))
        .is_some_and(|t| *t == Token::SemiColon)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_end_at_a_semicolon_outside_strings_and_comments() {
        assert!(ends_statement("SELECT 1;"));
        assert!(ends_statement("SELECT 1\nFROM t;  -- done\n"));
        assert!(!ends_statement("SELECT 1"));
        assert!(!ends_statement("SELECT 'a;\n"));
        assert!(!ends_statement("SELECT 1 -- not yet;\n"));
        assert!(ends_statement("SELECT 'a;b';"));
        assert!(!ends_statement(""));
    }

    #[test]
    fn quitting() {
        assert!(is_quit(" \\q ") && is_quit("quit;") && is_quit("exit"));
        assert!(!is_quit("SELECT 1"));
    }
}
