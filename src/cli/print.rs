//! Printing to stdout: the writer that tolerates a closed pipe, result tables with long cells
//! cut, and EXPLAIN plans as plain text. Text meant for a terminal (tables, plans, messages)
//! shows control characters escaped ([`terminal_text`]): a cell holding an escape sequence must
//! not retitle, clear or otherwise drive the user's terminal. Files written by COPY keep the
//! data as it is.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::arrow::util::pretty::pretty_format_batches;

/// Write to stdout. A reader that went away (`prs settings | head`) is not an error; any other
/// failure to write is reported once on stderr.
pub fn out(text: &str) {
    static REPORTED: AtomicBool = AtomicBool::new(false);
    if let Err(e) = std::io::stdout().lock().write_all(text.as_bytes()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe && !REPORTED.swap(true, Ordering::Relaxed) {
            eprintln!("Error: cannot write results to stdout: {e}");
        }
    }
}

/// `text` with its control characters shown escaped, for a terminal: C0 controls other than
/// newline and tab, DEL (`\x1b`, `\x7f`) and C1 controls (`\u{9b}`). Everything else,
/// including all other Unicode, is left as it is.
pub fn terminal_text(text: &str) -> Cow<'_, str> {
    let is_control = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.chars().any(is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if !is_control(c) => out.push(c),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

/// Print a statement's result: nothing for a statement without columns, an EXPLAIN's plans as
/// text (never cut: they are meant to be read whole), anything else as a table with cells cut
/// to `max_width` characters and a row count.
pub fn print_result(
    batches: &[RecordBatch],
    columns: usize,
    explain: bool,
    max_width: usize,
) -> Result<(), ArrowError> {
    if columns == 0 {
        return Ok(());
    }
    if let Some(text) = explain.then(|| explain_text(batches)).flatten() {
        out(&terminal_text(&text));
        return Ok(());
    }
    let shown = shorten(batches, max_width)?;
    let table = pretty_format_batches(&shown)?;
    out(&format!("{table}\n"));
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    out(&format!("{rows} row(s)\n"));
    Ok(())
}

/// EXPLAIN output as plain text: each plan under its type, whole lines, no table around them
/// (`None` if the result is not the usual two text columns).
fn explain_text(batches: &[RecordBatch]) -> Option<String> {
    let mut text = String::new();
    for b in batches {
        let col = |i: usize| {
            b.columns()
                .get(i)
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
        };
        let (kind, plan) = (col(0)?, col(1)?);
        for row in 0..b.num_rows() {
            text.push_str(&format!(
                "## {}\n{}\n",
                kind.value(row),
                plan.value(row).trim_end()
            ));
        }
    }
    Some(text)
}

/// Render every cell as text on one line, cut to `max_width` characters.
fn shorten(batches: &[RecordBatch], max_width: usize) -> Result<Vec<RecordBatch>, ArrowError> {
    batches
        .iter()
        .map(|b| {
            let fields: Vec<Field> = b
                .schema()
                .fields()
                .iter()
                .map(|f| Field::new(f.name(), DataType::Utf8, true))
                .collect();
            let cols = b
                .columns()
                .iter()
                .map(|c| shorten_column(c.as_ref(), max_width))
                .collect::<Result<Vec<_>, _>>()?;
            RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
        })
        .collect()
}

/// One column as one-line text cells of at most `max_width` characters (0: no limit), their
/// control characters escaped.
fn shorten_column(column: &dyn Array, max_width: usize) -> Result<ArrayRef, ArrowError> {
    let opts = FormatOptions::default().with_null("NULL");
    let fmt = ArrayFormatter::try_new(column, &opts)?;
    let values: Vec<String> = (0..column.len())
        .map(|i| {
            let one_line = fmt.value(i).to_string().replace('\n', "\\n");
            cut(terminal_text(&one_line).into_owned(), max_width)
        })
        .collect();
    Ok(Arc::new(StringArray::from(values)))
}

/// `s` cut to `max_width` characters, the last one `…` (0: no limit).
fn cut(s: String, max_width: usize) -> String {
    if max_width > 0 && s.chars().count() > max_width {
        let mut cut: String = s.chars().take(max_width.saturating_sub(1)).collect();
        cut.push('…');
        cut
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_not_sent() {
        let hostile = "Hi\u{1b}]0;evil\u{7}\u{1b}[2J\r\u{7f}\u{9b}x\u{0}";
        assert_eq!(
            terminal_text(hostile),
            "Hi\\x1b]0;evil\\x07\\x1b[2J\\x0d\\x7f\\u{9b}x\\x00"
        );
        // newline, tab and printable Unicode (C1's neighbours included) pass
        let fine = "a\tb\nç ü 日本 \u{a0}\u{7e}";
        assert!(matches!(terminal_text(fine), Cow::Borrowed(t) if t == fine));
    }

    #[test]
    fn table_cells_escape_controls_and_keep_one_line() {
        let column = StringArray::from(vec![Some("a\u{1b}[2J\nb"), None]);
        let cells = shorten_column(&column, 0).unwrap();
        let cells = cells.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(cells.value(0), "a\\x1b[2J\\nb");
        assert_eq!(cells.value(1), "NULL");
        // cut after escaping: what is shown is what counts
        let cut = shorten_column(&StringArray::from(vec!["\u{1b}\u{1b}"]), 6).unwrap();
        let cut = cut.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(cut.value(0), "\\x1b\\…");
    }
}
