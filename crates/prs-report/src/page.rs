//! The report page: one HTML file with its style inline, charts as inline SVG, no script and
//! nothing fetched, so it opens anywhere, offline.

use std::fmt::Write;
use std::path::Path;

/// A page being written, section by section.
pub struct Page {
    html: String,
    charts: usize,
    /// A section is open (closed by the next one, or at the end).
    in_section: bool,
}

/// Text for HTML.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A number for a table: four significant decimals at most, "–" when there is none.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    format!("{v:.4}")
}

/// A share as a percentage.
pub fn percent(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1} %", 100.0 * v)
    } else {
        "–".into()
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;\
padding:0 1em;color:#222}h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;\
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}\
figure{margin:1em 0}figure svg{max-width:100%;height:auto}.note{color:#666}";

impl Page {
    pub fn new(source: &Path) -> Self {
        let mut html = String::new();
        let title = format!("prs report: {}", source.display());
        let _ = write!(
            html,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>{t}</title><style>{STYLE}</style></head><body>\n<h1>{t}</h1>\n",
            t = escape(&title)
        );
        Page {
            html,
            charts: 0,
            in_section: false,
        }
    }

    pub fn section(&mut self, title: &str, intro: &str) {
        self.close_section();
        self.in_section = true;
        let _ = writeln!(
            self.html,
            "<section><h2>{}</h2><p>{}</p>",
            escape(title),
            escape(intro)
        );
    }

    pub fn note(&mut self, text: &str) {
        let _ = writeln!(self.html, "<p class=\"note\">{}</p>", escape(text));
    }

    pub fn table<S: AsRef<str>>(&mut self, head: &[&str], rows: &[Vec<S>]) {
        self.html.push_str("<table><tr>");
        for h in head {
            let _ = write!(self.html, "<th>{}</th>", escape(h));
        }
        self.html.push_str("</tr>\n");
        for row in rows {
            self.html.push_str("<tr>");
            for cell in row {
                let _ = write!(self.html, "<td>{}</td>", escape(cell.as_ref()));
            }
            self.html.push_str("</tr>\n");
        }
        self.html.push_str("</table>\n");
    }

    /// A chart, or a note saying why there is none.
    pub fn chart(&mut self, svg: Result<Option<String>, String>) {
        match svg {
            Ok(Some(svg)) => {
                self.charts += 1;
                let _ = writeln!(self.html, "<figure class=\"chart\">{svg}</figure>");
            }
            Ok(None) => self.note("(no data for this chart)"),
            Err(e) => self.note(&e),
        }
    }

    fn close_section(&mut self) {
        if std::mem::take(&mut self.in_section) {
            self.html.push_str("</section>\n");
        }
    }

    /// The finished page.
    pub fn finish(mut self) -> String {
        self.close_section();
        let _ = writeln!(
            self.html,
            "<p class=\"note\">{} charts. Made by prs {}.</p></body></html>",
            self.charts,
            env!("CARGO_PKG_VERSION")
        );
        self.html
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_numbers_are_short() {
        let mut p = Page::new(Path::new("a<b>.parquet"));
        p.section("S & T", "x");
        p.table(&["k"], &[vec!["<script>"]]);
        p.chart(Ok(None));
        let html = p.finish();
        assert!(html.contains("a&lt;b&gt;.parquet") && html.contains("S &amp; T"));
        assert_eq!(
            html.matches("<section>").count(),
            html.matches("</section>").count()
        );
        assert!(!html.contains("<script>") && html.contains("no data for this chart"));
        assert_eq!(num(2.0), "2");
        assert_eq!(num(0.123456), "0.1235");
        assert_eq!(num(f64::NAN), "–");
        assert_eq!(percent(0.25), "25.0 %");
    }
}
