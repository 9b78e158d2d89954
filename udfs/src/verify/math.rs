//! A final answer read as maths: typesetting taken out ([`normalize`]), then parsed by the
//! grammar in `udfs/src/verify/math.pest` into a [`Parsed`] answer of [`Node`]s, which
//! `udfs/src/verify/exact.rs` evaluates exactly.

use std::sync::LazyLock;

use num_bigint::BigInt;
use num_rational::BigRational;
use pest::iterators::Pair;
use pest::Parser;
use regex::Regex;

use super::error::VerifyError;

/// The longest answer a math check reads (a final answer, not a derivation).
pub const MAX_ANSWER_CHARS: usize = 4096;
/// The deepest nesting of brackets it reads.
const MAX_DEPTH: usize = 64;

#[derive(pest_derive::Parser)]
#[grammar = "verify/math.pest"]
struct MathGrammar;

/// An expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Num(BigRational),
    /// A variable (`x`): any value, the same on both sides of a comparison.
    Var(String),
    /// A named constant (`\pi`): equal only to itself.
    Symbol(String),
    Infinity,
    Neg(Box<Node>),
    Add(Box<Node>, Box<Node>),
    Sub(Box<Node>, Box<Node>),
    Mul(Box<Node>, Box<Node>),
    Div(Box<Node>, Box<Node>),
    Pow(Box<Node>, Box<Node>),
    Sqrt(Box<Node>),
}

/// An answer: one expression, or a collection of them.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Expr(Node),
    /// An interval, tuple or set, with its brackets as written (`\{` for a set).
    Collection {
        open: String,
        close: String,
        items: Vec<Node>,
    },
}

static TYPESETTING: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(concat!(
        r"\\(?:text|textbf|textit|mbox)\s*\{[^{}]*\}|\\(?:left|right|big|Big|bigl|bigr)\b",
        r"|\\displaystyle|\\[,;:! ]|\\q?quad\b|\^\s*\{?\s*\\circ\s*\}?|°|\$|~",
    ))
    .ok()
});
static UNWRAP: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"\\(?:mathrm|mathbf|mathit|operatorname)\s*\{([^{}]*)\}").ok());
static THOUSANDS: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(^|[^\d.,])(\d{1,3}(?:,\d{3})+)(?:$|[^\d,])").ok());

/// The answer without what only typesets it: `$`, `\left`, spacing, `\text{...}` (units),
/// degree signs, a trailing period, the left side of a final `=` (`x = 5`), and thousands
/// commas (outside collections, where commas separate items).
pub fn normalize(answer: &str) -> String {
    let mut s = answer.to_string();
    if let Some(re) = UNWRAP.as_ref() {
        s = re.replace_all(&s, "$1").into_owned();
    }
    if let Some(re) = TYPESETTING.as_ref() {
        s = re.replace_all(&s, " ").into_owned();
    }
    let mut s = s.trim().trim_end_matches('.').trim().to_string();
    if let Some(at) = top_level(&s, '=') {
        s = s[at + 1..].trim().to_string();
    }
    if looks_like_collection(&s) {
        return s;
    }
    if let Some(re) = THOUSANDS.as_ref() {
        // the pattern consumes a character on each side: repeat until nothing changes
        loop {
            let next = re
                .replace_all(&s, |c: &regex::Captures| {
                    let whole = &c[0];
                    whole.replacen(&c[2], &c[2].replace(',', ""), 1)
                })
                .into_owned();
            if next == s {
                break;
            }
            s = next;
        }
    }
    s
}

/// The byte position of the last `c` outside brackets.
fn top_level(s: &str, c: char) -> Option<usize> {
    let mut depth = 0i32;
    let mut found = None;
    for (i, ch) in s.char_indices() {
        match ch {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ if ch == c && depth == 0 => found = Some(i),
            _ => {}
        }
    }
    found
}

fn looks_like_collection(s: &str) -> bool {
    let inner = s
        .strip_prefix("\\{")
        .or_else(|| s.strip_prefix(['(', '[']))
        .and_then(|r| r.strip_suffix("\\}").or_else(|| r.strip_suffix([')', ']'])));
    inner.is_some_and(|i| top_level(i, ',').is_some())
}

/// Parse a normalized answer. `Ok(None)`: it does not read as maths (text, say).
pub fn parse(normalized: &str) -> Result<Option<Parsed>, VerifyError> {
    let chars = normalized.chars().count();
    if chars > MAX_ANSWER_CHARS {
        return Err(VerifyError::TooLong {
            chars,
            max: MAX_ANSWER_CHARS,
        });
    }
    if depth(normalized) > MAX_DEPTH {
        return Err(VerifyError::TooDeep(MAX_DEPTH));
    }
    let Ok(mut pairs) = MathGrammar::parse(Rule::answer, normalized) else {
        return Ok(None);
    };
    let Some(answer) = pairs.next() else {
        return Ok(None);
    };
    let Some(inner) = answer.into_inner().next() else {
        return Ok(None);
    };
    Ok(match inner.as_rule() {
        Rule::collection => collection(inner),
        Rule::expr => expr(inner).map(Parsed::Expr),
        _ => None,
    })
}

fn depth(s: &str) -> usize {
    let (mut depth, mut most) = (0usize, 0usize);
    for c in s.chars() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                most = most.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    most
}

fn collection(pair: Pair<Rule>) -> Option<Parsed> {
    let (mut open, mut close, mut items) = (String::new(), String::new(), Vec::new());
    for p in pair.into_inner() {
        match p.as_rule() {
            Rule::open => open = p.as_str().to_string(),
            Rule::close => close = p.as_str().to_string(),
            _ => items.push(expr(p)?),
        }
    }
    Some(Parsed::Collection { open, close, items })
}

/// `sign? product (addop product)*`
fn expr(pair: Pair<Rule>) -> Option<Node> {
    let mut inner = pair.into_inner().peekable();
    let negate = inner
        .next_if(|p| p.as_rule() == Rule::sign)
        .is_some_and(|p| p.as_str() == "-");
    let first = product(inner.next()?)?;
    let mut acc = if negate {
        Node::Neg(Box::new(first))
    } else {
        first
    };
    while let (Some(op), Some(rhs)) = (inner.next(), inner.next()) {
        let rhs = Box::new(product(rhs)?);
        acc = match op.as_str() {
            "-" => Node::Sub(Box::new(acc), rhs),
            _ => Node::Add(Box::new(acc), rhs),
        };
    }
    Some(acc)
}

/// `power ((mulop)? power)*`, left to right.
fn product(pair: Pair<Rule>) -> Option<Node> {
    let mut inner = pair.into_inner();
    let mut acc = power(inner.next()?)?;
    let mut op = "*";
    for p in inner {
        if p.as_rule() == Rule::mulop {
            op = if matches!(p.as_str(), "/" | "\\div") {
                "/"
            } else {
                "*"
            };
            continue;
        }
        let rhs = Box::new(power(p)?);
        acc = match op {
            "/" => Node::Div(Box::new(acc), rhs),
            _ => Node::Mul(Box::new(acc), rhs),
        };
        op = "*";
    }
    Some(acc)
}

fn power(pair: Pair<Rule>) -> Option<Node> {
    let mut inner = pair.into_inner();
    let base = unary(inner.next()?)?;
    match inner.next() {
        None => Some(base),
        Some(exp) => Some(Node::Pow(Box::new(base), Box::new(exponent(exp)?))),
    }
}

fn exponent(pair: Pair<Rule>) -> Option<Node> {
    let mut inner = pair.into_inner().peekable();
    let negate = inner.next_if(|p| p.as_rule() == Rule::neg).is_some();
    let p = inner.next()?;
    let node = match p.as_rule() {
        Rule::expr => expr(p)?,
        _ => atom(p)?,
    };
    Some(if negate {
        Node::Neg(Box::new(node))
    } else {
        node
    })
}

/// `neg unary | atom percent?`
fn unary(pair: Pair<Rule>) -> Option<Node> {
    let mut inner = pair.into_inner();
    let first = inner.next()?;
    if first.as_rule() == Rule::neg {
        return Some(Node::Neg(Box::new(unary(inner.next()?)?)));
    }
    let node = atom(first)?;
    Some(match inner.next() {
        Some(_percent) => Node::Div(Box::new(node), Box::new(Node::Num(int(100)))),
        None => node,
    })
}

fn atom(pair: Pair<Rule>) -> Option<Node> {
    let p = match pair.as_rule() {
        Rule::atom => pair.into_inner().next()?,
        _ => pair,
    };
    Some(match p.as_rule() {
        Rule::number | Rule::digit => Node::Num(decimal(p.as_str())?),
        Rule::frac => {
            let mut args = p.into_inner();
            let (n, d) = (frac_arg(args.next()?)?, frac_arg(args.next()?)?);
            Node::Div(Box::new(n), Box::new(d))
        }
        Rule::sqrt => {
            let arg = p.into_inner().next()?;
            Node::Sqrt(Box::new(sub_expr(arg)?))
        }
        Rule::infinity => Node::Infinity,
        Rule::symbol => Node::Symbol(p.as_str().trim_start_matches('\\').replace('π', "pi")),
        Rule::variable => Node::Var(p.as_str().to_string()),
        Rule::paren | Rule::group => expr(p.into_inner().next()?)?,
        _ => return None,
    })
}

fn frac_arg(pair: Pair<Rule>) -> Option<Node> {
    sub_expr(pair.into_inner().next()?)
}

fn sub_expr(p: Pair<Rule>) -> Option<Node> {
    match p.as_rule() {
        Rule::expr => expr(p),
        _ => atom(p),
    }
}

fn int(n: i64) -> BigRational {
    BigRational::from_integer(BigInt::from(n))
}

/// `12.50` as the exact 25/2.
fn decimal(text: &str) -> Option<BigRational> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits: BigInt = format!("{whole}{frac}").parse().ok()?;
    let scale = BigInt::from(10).pow(u32::try_from(frac.len()).ok()?);
    Some(BigRational::new(digits, scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &str) -> Option<Parsed> {
        parse(&normalize(s)).unwrap()
    }

    #[test]
    fn typesetting_goes_and_the_answer_stays() {
        assert_eq!(normalize(r"$\left( 1, 2 \right]$"), "( 1, 2  ]");
        assert_eq!(normalize(r"x = 1,158"), "1158");
        assert_eq!(normalize(r"12\text{ cm}."), "12");
        assert_eq!(normalize(r"90^\circ"), "90");
        assert_eq!(normalize(r"\mathrm{12}"), "12");
        assert_eq!(normalize("1,234,567 and 1,5"), "1234567 and 1,5");
        assert_eq!(normalize("(1,234)"), "(1,234)");
    }

    #[test]
    fn expressions_parse_with_implicit_products_and_latex() {
        let e = |s: &str| match parsed(s) {
            Some(Parsed::Expr(n)) => n,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(e("579"), Node::Num(int(579)));
        assert!(matches!(e(r"\dfrac{1158}{2}"), Node::Div(..)));
        assert!(matches!(e(r"\frac12"), Node::Div(..)));
        assert!(matches!(e("2x"), Node::Mul(..)));
        assert!(matches!(e("2 - 3"), Node::Sub(..)));
        assert!(matches!(e("-x^{2}"), Node::Neg(..)));
        assert!(matches!(e(r"2\pi"), Node::Mul(..)));
        assert!(matches!(e(r"\sqrt{2}"), Node::Sqrt(..)));
        assert!(matches!(e(r"50\%"), Node::Div(..)));
        assert!(matches!(
            parsed(r"\{1, 2\}"),
            Some(Parsed::Collection { .. })
        ));
        assert!(matches!(
            parsed("[0, \\infty)"),
            Some(Parsed::Collection { .. })
        ));
        assert_eq!(parsed("blue"), None);
        assert_eq!(parsed("{{1}"), None);
    }

    #[test]
    fn long_and_deep_answers_are_refused_at_once() {
        let long = "1+".repeat(3000) + "1";
        assert!(matches!(
            parse(&long),
            Err(VerifyError::TooLong { chars: 6001, .. })
        ));
        let deep = "(".repeat(100) + "1" + &")".repeat(100);
        assert!(matches!(parse(&deep), Err(VerifyError::TooDeep(_))));
    }
}
