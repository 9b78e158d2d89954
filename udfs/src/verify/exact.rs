//! Exact evaluation of answers, and when two answers are the same.
//!
//! Numbers are rationals of big integers (`num-rational`), so `\frac{1158}{2}` is exactly 579
//! and `0.1 + 0.2` exactly `0.3`. Expressions with variables are compared at several rational
//! points: two rational expressions that differ agree at a random point with vanishing
//! probability (the Schwartz–Zippel lemma), so `x+1` = `1+x` and `2(x+1)` = `2x+2`, and no
//! symbolic algebra is needed. A named constant (`\pi`) and the square root of a number that
//! is not a square are values of their own, the same on both sides.
//!
//! Every step counts against a [`Budget`], and no number may grow past [`MAX_BITS`], so an
//! answer such as `10^{10^{10^{10}}}` is refused at once rather than computed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use num_bigint::BigInt;
use num_rational::BigRational;
use num_traits::{Signed, ToPrimitive, Zero};

use super::error::VerifyError;
use super::math::{Node, Parsed};

/// The most bits of a number's numerator and denominator together.
pub const MAX_BITS: u64 = 1 << 16;
/// Points at which expressions with variables are compared.
const POINTS: u32 = 4;

/// Time left for a check, counted in steps and checked against the clock now and then.
#[derive(Debug)]
pub struct Budget {
    deadline: Instant,
    limit: Duration,
    steps: u32,
}

impl Budget {
    pub fn new(limit: Duration) -> Self {
        Budget {
            deadline: Instant::now() + limit,
            limit,
            steps: 0,
        }
    }

    /// One step; an error once the time is up.
    pub fn step(&mut self) -> Result<(), VerifyError> {
        self.steps = self.steps.wrapping_add(1);
        if self.steps.is_multiple_of(256) && Instant::now() > self.deadline {
            return Err(VerifyError::TimedOut(self.limit));
        }
        Ok(())
    }
}

/// A value.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Num(BigRational),
    /// Infinity; `true` for minus infinity.
    Inf(bool),
}

/// Why an expression has no value at a point.
enum Miss {
    /// Undefined there (a division by zero): the point is skipped.
    Undefined,
    /// Not exactly computable (a fractional power): the answers are compared as text.
    NotExact,
    Fail(VerifyError),
}

impl From<VerifyError> for Miss {
    fn from(e: VerifyError) -> Self {
        Miss::Fail(e)
    }
}

/// The values of variables, constants and irrational roots at one point.
struct Point {
    index: u32,
    roots: HashMap<BigRational, BigRational>,
}

impl Point {
    /// A value for `name` at this point: a rational far from small integers, so that
    /// coincidences are unlikely.
    fn value(&self, name: &str) -> BigRational {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(self.index);
        for b in name.bytes().chain(self.index.to_le_bytes()) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let numer = i64::try_from(h % 1_000_003).unwrap_or(7) + 1_009;
        let denom = i64::try_from((h >> 24) % 997).unwrap_or(3) + 101;
        BigRational::new(BigInt::from(numer), BigInt::from(denom))
    }

    fn root(&mut self, of: BigRational) -> BigRational {
        let v = self.value(&format!("sqrt({of})"));
        self.roots.entry(of).or_insert(v).clone()
    }
}

fn bits(r: &BigRational) -> u64 {
    r.numer().bits() + r.denom().bits()
}

fn checked(r: BigRational) -> Result<Val, Miss> {
    if bits(&r) > MAX_BITS {
        return Err(VerifyError::TooLarge(MAX_BITS).into());
    }
    Ok(Val::Num(r))
}

/// The value of `node` at a point. Recursive, so its frame is kept small: the work of each
/// operation is in functions of its own (answers nest a few thousand operations deep).
fn eval(node: &Node, at: &mut Point, budget: &mut Budget) -> Result<Val, Miss> {
    budget.step()?;
    match node {
        Node::Num(r) => Ok(Val::Num(r.clone())),
        Node::Var(name) => Ok(Val::Num(at.value(name))),
        Node::Symbol(name) => Ok(Val::Num(at.value(&format!("\\{name}")))),
        Node::Infinity => Ok(Val::Inf(false)),
        Node::Neg(a) => Ok(negate(eval(a, at, budget)?)),
        Node::Sqrt(a) => root(eval(a, at, budget)?, at),
        Node::Add(a, b) | Node::Sub(a, b) | Node::Mul(a, b) | Node::Div(a, b) | Node::Pow(a, b) => {
            let x = eval(a, at, budget)?;
            let y = eval(b, at, budget)?;
            binary(node, x, y)
        }
    }
}

fn negate(v: Val) -> Val {
    match v {
        Val::Num(r) => Val::Num(-r),
        Val::Inf(neg) => Val::Inf(!neg),
    }
}

fn finite(v: Val) -> Result<BigRational, Miss> {
    match v {
        Val::Num(r) => Ok(r),
        Val::Inf(_) => Err(Miss::NotExact),
    }
}

#[inline(never)]
fn binary(op: &Node, x: Val, y: Val) -> Result<Val, Miss> {
    let (x, y) = (finite(x)?, finite(y)?);
    match op {
        Node::Add(..) => checked(x + y),
        Node::Sub(..) => checked(x - y),
        Node::Mul(..) => checked(x * y),
        Node::Div(..) if y.is_zero() => Err(Miss::Undefined),
        Node::Div(..) => checked(x / y),
        _ => power(x, y),
    }
}

#[inline(never)]
fn root(v: Val, at: &mut Point) -> Result<Val, Miss> {
    let r = finite(v)?;
    if r.is_negative() {
        return Err(Miss::Undefined);
    }
    let (n, d) = (r.numer().sqrt(), r.denom().sqrt());
    if &n * &n == *r.numer() && &d * &d == *r.denom() {
        return Ok(Val::Num(BigRational::new(n, d)));
    }
    Ok(Val::Num(at.root(r)))
}

/// `base ^ exp` for an integer `exp`, within [`MAX_BITS`].
fn power(base: BigRational, exp: BigRational) -> Result<Val, Miss> {
    if !exp.is_integer() {
        return Err(Miss::NotExact);
    }
    let too_large = || Miss::Fail(VerifyError::TooLarge(MAX_BITS));
    let e = exp.to_integer().abs().to_u64().ok_or_else(too_large)?;
    if bits(&base).saturating_mul(e) > MAX_BITS.saturating_mul(2) && !base.abs().is_one_like() {
        return Err(too_large());
    }
    if base.is_zero() && exp.is_negative() {
        return Err(Miss::Undefined);
    }
    let e32 = u32::try_from(e).map_err(|_| too_large())?;
    let raised = BigRational::new(base.numer().pow(e32), base.denom().pow(e32));
    checked(if exp.is_negative() {
        raised.recip()
    } else {
        raised
    })
}

/// Whether a value is 0, 1 or -1 (whose powers stay small).
trait OneLike {
    fn is_one_like(&self) -> bool;
}

impl OneLike for BigRational {
    fn is_one_like(&self) -> bool {
        self.is_zero()
            || (self.denom() == &BigInt::from(1) && self.numer().abs() == BigInt::from(1))
    }
}

/// The exact value of an expression without variables, constants or roots; `Ok(None)` when
/// it has them, or has no finite value.
pub fn number(node: &Node, budget: &mut Budget) -> Result<Option<BigRational>, VerifyError> {
    if has_unknowns(node) {
        return Ok(None);
    }
    let mut at = Point {
        index: 0,
        roots: HashMap::new(),
    };
    match eval(node, &mut at, budget) {
        Ok(Val::Num(r)) => Ok(Some(r)),
        Err(Miss::Fail(e)) => Err(e),
        _ => Ok(None),
    }
}

fn has_unknowns(node: &Node) -> bool {
    match node {
        Node::Var(_) | Node::Symbol(_) | Node::Sqrt(_) => true,
        Node::Num(_) | Node::Infinity => false,
        Node::Neg(a) => has_unknowns(a),
        Node::Add(a, b) | Node::Sub(a, b) | Node::Mul(a, b) | Node::Div(a, b) | Node::Pow(a, b) => {
            has_unknowns(a) || has_unknowns(b)
        }
    }
}

/// Whether two answers are the same. `Ok(None)`: they cannot be compared exactly (a
/// fractional power), and the caller compares them as text.
pub fn equivalent(
    a: &Parsed,
    b: &Parsed,
    budget: &mut Budget,
) -> Result<Option<bool>, VerifyError> {
    match (a, b) {
        (Parsed::Expr(x), Parsed::Expr(y)) => same_expr(x, y, budget),
        (
            Parsed::Collection {
                open: o1,
                close: c1,
                items: i1,
            },
            Parsed::Collection {
                open: o2,
                close: c2,
                items: i2,
            },
        ) => {
            let set = |o: &str| o == "\\{";
            if set(o1) != set(o2) || i1.len() != i2.len() {
                return Ok(Some(false));
            }
            if set(o1) {
                return same_sets(i1, i2, budget);
            }
            if (o1, c1) != (o2, c2) {
                return Ok(Some(false));
            }
            for (x, y) in i1.iter().zip(i2) {
                match same_expr(x, y, budget)? {
                    Some(true) => {}
                    other => return Ok(other),
                }
            }
            Ok(Some(true))
        }
        _ => Ok(Some(false)),
    }
}

/// Sets: each item of one matches a different item of the other.
fn same_sets(a: &[Node], b: &[Node], budget: &mut Budget) -> Result<Option<bool>, VerifyError> {
    let mut taken = vec![false; b.len()];
    for x in a {
        let mut found = false;
        for (j, y) in b.iter().enumerate() {
            if !taken[j] && same_expr(x, y, budget)? == Some(true) {
                taken[j] = true;
                found = true;
                break;
            }
        }
        if !found {
            return Ok(Some(false));
        }
    }
    Ok(Some(true))
}

fn same_expr(a: &Node, b: &Node, budget: &mut Budget) -> Result<Option<bool>, VerifyError> {
    let mut agreed = 0;
    for index in 0..POINTS {
        let mut at = Point {
            index,
            roots: HashMap::new(),
        };
        match (eval(a, &mut at, budget), eval(b, &mut at, budget)) {
            (Err(Miss::Fail(e)), _) | (_, Err(Miss::Fail(e))) => return Err(e),
            (Err(Miss::NotExact), _) | (_, Err(Miss::NotExact)) => return Ok(None),
            (Ok(x), Ok(y)) if x != y => return Ok(Some(false)),
            (Ok(_), Ok(_)) => agreed += 1,
            _ => {} // undefined at this point
        }
    }
    Ok(Some(agreed > 0))
}

#[cfg(test)]
mod tests {
    use super::super::math::{normalize, parse};
    use super::*;

    fn same(a: &str, b: &str) -> Result<Option<bool>, VerifyError> {
        let p = |s: &str| parse(&normalize(s)).map(|p| p.unwrap_or_else(|| panic!("{s}")));
        let mut budget = Budget::new(Duration::from_secs(5));
        equivalent(&p(a)?, &p(b)?, &mut budget)
    }

    #[test]
    fn equal_answers_in_many_forms() {
        for (a, b) in [
            ("579", "579.0"),
            ("579", r"\frac{1158}{2}"),
            ("579", "1,158/2"),
            ("0.5", "50%"),
            (r"\frac{1}{2}", r"\dfrac{1}{2}"),
            ("0.1+0.2", "0.3"),
            ("-3", "- 3"),
            ("x+1", "1+x"),
            ("2(x+1)", "2x+2"),
            ("x^{2}-1", "(x-1)(x+1)"),
            (r"\left(1, 2\right]", "(1,2]"),
            (r"\{1, 2, 3\}", r"\{3,1,2\}"),
            (r"[0, \infty)", r"[0,\infty)"),
            (r"2\pi", r"\pi \cdot 2"),
            (r"\sqrt{4}", "2"),
            (r"2\sqrt{3}", r"\sqrt{3} \times 2"),
            ("2^{-1}", "0.5"),
            ("x = 5", "5"),
        ] {
            assert_eq!(same(a, b).unwrap(), Some(true), "{a} = {b}");
        }
    }

    #[test]
    fn different_answers() {
        for (a, b) in [
            ("579", "578"),
            ("0.333", r"\frac{1}{3}"),
            ("x+1", "x+2"),
            ("(1,2]", "(1,2)"),
            (r"\{1,2\}", r"\{1,2,3\}"),
            (r"\{1,1\}", r"\{1,2\}"),
            ("3.14", r"\pi"),
            (r"\infty", r"-\infty"),
            ("1/0", "1/0"),
        ] {
            assert_eq!(same(a, b).unwrap(), Some(false), "{a} != {b}");
        }
        // a fractional power is not computed: the caller compares text
        assert_eq!(same("4^{1/2}", "2").unwrap(), None);
    }

    #[test]
    fn huge_numbers_are_refused_at_once() {
        let started = Instant::now();
        for huge in [r"10^{10^{10^{10}}}", "2^{100000}", "(10^{5000})^{5000}"] {
            assert!(
                matches!(same(huge, "1"), Err(VerifyError::TooLarge(_))),
                "{huge}"
            );
        }
        // powers of one stay small
        assert_eq!(same("1^{1000000}", "1").unwrap(), Some(true));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn the_budget_runs_out() {
        let mut budget = Budget::new(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(2));
        // as deep as an answer gets, on a test thread's stack
        let long = parse(&("1+".repeat(2000) + "1")).unwrap().unwrap();
        assert!(matches!(
            equivalent(&long, &long, &mut budget),
            Err(VerifyError::TimedOut(_))
        ));
    }
}
