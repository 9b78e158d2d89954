//! Where the final answer of a text is: the last `\boxed{...}`, else the last LaTeX math span
//! (`$...$`, `$$...$$`, `\(...\)`, `\[...\]`), else, for a response, the last number. A
//! reference is read the same way, except that its whole text stands in for the last number
//! (a reference is usually the bare answer: `x+1`, `0.5`).

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

/// A number as answers write it: a sign, digits with thousands commas, decimals, a fraction
/// bar, a percent sign.
static NUMBER: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?\s*(?:\\?%)?|[-+]?\.\d+")
        .ok()
});

/// The content of the last `\boxed{...}` (or `\fbox{...}`) whose braces close. One pass over
/// the text, however many markers it holds.
pub fn last_boxed(text: &str) -> Option<&str> {
    let closing = closing_braces(text);
    let mut found: Option<(usize, &str)> = None;
    for marker in ["\\boxed", "\\fbox"] {
        for (at, _) in text.rmatch_indices(marker) {
            if found.is_some_and(|(a, _)| a > at) {
                break;
            }
            let rest = text[at + marker.len()..].trim_start();
            let open = text.len() - rest.len();
            if let Some(close) = closing.get(&open) {
                found = Some((at, &text[open + 1..*close]));
                break;
            }
        }
    }
    found.map(|(_, inner)| inner.trim())
}

/// For each `{` of `text` whose brace closes (`\{` and `\}` are not braces), where it closes.
fn closing_braces(text: &str) -> HashMap<usize, usize> {
    let (mut open, mut pairs) = (Vec::new(), HashMap::new());
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '{' => open.push(i),
            '}' => {
                if let Some(o) = open.pop() {
                    pairs.insert(o, i);
                }
            }
            _ => {}
        }
    }
    pairs
}

/// The content of the last closed LaTeX math span.
pub fn last_math_span(text: &str) -> Option<&str> {
    let mut best: Option<(usize, &str)> = None;
    let mut consider = |end: usize, inner| later(&mut best, end, inner);
    for (open, close) in [("\\(", "\\)"), ("\\[", "\\]")] {
        let mut from = 0;
        while let Some(o) = text[from..].find(open).map(|o| o + from) {
            let inner_start = o + open.len();
            let Some(c) = text[inner_start..].find(close) else {
                break;
            };
            consider(inner_start + c, &text[inner_start..inner_start + c]);
            from = inner_start + c + close.len();
        }
    }
    // dollars pair up left to right; `$$` is one delimiter
    let mut open: Option<(usize, usize)> = None;
    let mut i = 0;
    let bytes = text.as_bytes();
    while i < bytes.len() {
        if bytes[i] == b'$' && (i == 0 || bytes[i - 1] != b'\\') {
            let width = if bytes.get(i + 1) == Some(&b'$') {
                2
            } else {
                1
            };
            match open {
                Some((start, w)) if w == width => {
                    consider(i, &text[start..i]);
                    open = None;
                }
                Some(_) => {}
                None => open = Some((i + width, width)),
            }
            i += width;
        } else {
            i += 1;
        }
    }
    best.map(|(_, inner)| inner.trim())
}

/// Keep the span that ends last.
fn later<'a>(best: &mut Option<(usize, &'a str)>, end: usize, inner: &'a str) {
    if best.is_none_or(|(e, _)| end > e) && !inner.trim().is_empty() {
        *best = Some((end, inner));
    }
}

/// The last number in `text`.
pub fn last_number(text: &str) -> Option<&str> {
    let re = NUMBER.as_ref()?;
    re.find_iter(text).last().map(|m| m.as_str().trim())
}

/// The final answer of a response: boxed, else a math span, else the whole response when it
/// is short and reads as maths, else the last number, else the whole response when it is
/// short (a one-word answer). `None`: no answer can be found.
pub fn final_answer(response: &str, reads_as_math: impl Fn(&str) -> bool) -> Option<&str> {
    if let Some(a) = last_boxed(response).or_else(|| last_math_span(response)) {
        return Some(a);
    }
    let whole = response.trim();
    if !whole.is_empty() && whole.len() <= 200 && reads_as_math(whole) {
        return Some(whole);
    }
    last_number(response).or((!whole.is_empty() && whole.len() <= 200).then_some(whole))
}

/// The answer a reference gives: boxed, else a math span, else its whole text.
pub fn reference_answer(reference: &str) -> Option<&str> {
    last_boxed(reference)
        .or_else(|| last_math_span(reference))
        .or(Some(reference.trim()))
        .filter(|a| !a.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxed_spans_and_numbers() {
        assert_eq!(
            last_boxed(r"so \boxed{1} or \boxed{ \frac{1}{2} }."),
            Some(r"\frac{1}{2}")
        );
        assert_eq!(
            last_boxed(r"\boxed{a{b}c} then \boxed{unclosed"),
            Some("a{b}c")
        );
        assert_eq!(last_boxed(r"\fbox{3} \boxed{4}"), Some("4"));
        assert_eq!(last_boxed("no box"), None);
        // many unclosed markers: one pass, not one per marker
        let hostile = "\\boxed{".repeat(40_000);
        let started = std::time::Instant::now();
        assert_eq!(last_boxed(&hostile), None);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(
            last_math_span(r"first $x$, then \(y+1\) and $$z$$"),
            Some("z")
        );
        assert_eq!(last_math_span(r"\[ 5 \] costs \$3"), Some("5"));
        assert_eq!(last_math_span("$ $ $"), None);
        assert_eq!(
            last_number("between 3 and 1,158/2 people."),
            Some("1,158/2")
        );
        assert_eq!(last_number("it is 50% likely"), Some("50%"));
        assert_eq!(last_number("down to -0.25"), Some("-0.25"));
        assert_eq!(last_number("none at all"), None);
    }

    #[test]
    fn the_final_answer_and_the_reference() {
        let never = |_: &str| false;
        assert_eq!(
            final_answer(r"thus \boxed{579}. Check: 1+1=2", never),
            Some("579")
        );
        assert_eq!(
            final_answer("The answer is 579, I think", never),
            Some("579")
        );
        assert_eq!(final_answer("x+1", |_| true), Some("x+1"));
        assert_eq!(final_answer("Paris", never), Some("Paris"));
        assert_eq!(final_answer(&"no number here ".repeat(20), never), None);
        assert_eq!(reference_answer(r"$\frac{1}{2}$"), Some(r"\frac{1}{2}"));
        assert_eq!(reference_answer(" x+1 "), Some("x+1"));
        assert_eq!(reference_answer("  "), None);
    }
}
