//! What every per-file compiler shares: the [`Ctx`] that collects errors and rules, the checks on
//! names, patterns, dates and limits that more than one file uses, and the compiled model entries
//! the later files are checked against.

use std::ops::Range;

use globset::{Glob, GlobMatcher};
use toml::Spanned;
use toml::value::Datetime;

use crate::config::error::{ConfigError, Source};
use crate::config::raw::RawLimits;
use crate::policy::{Day, EndpointIdx, Model, Rule, RuleId, Window};

/// Collects errors and rules while compiling.
pub(super) struct Ctx<'e> {
    errors: Vec<ConfigError>,
    rules: Vec<Rule>,
    env: &'e dyn Fn(&str) -> Option<String>,
}

impl<'e> Ctx<'e> {
    pub(super) fn new(env: &'e dyn Fn(&str) -> Option<String>) -> Self {
        Self { errors: Vec::new(), rules: Vec::new(), env }
    }

    /// The rules collected, or every error found: a config with any error compiles to nothing.
    pub(super) fn finish(self) -> Result<Vec<Rule>, Vec<ConfigError>> {
        if self.errors.is_empty() { Ok(self.rules) } else { Err(self.errors) }
    }

    /// An environment variable, through the lookup the caller supplied.
    pub(super) fn env(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    pub(super) fn err(
        &mut self,
        src: &Source,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        msg: impl Into<String>,
    ) {
        self.errors.push(src.error(span.as_ref(), key, msg));
    }

    pub(super) fn push(&mut self, e: ConfigError) {
        self.errors.push(e);
    }

    pub(super) fn rule(&mut self, src: &Source, span: Range<usize>, key: String, detail: String) -> RuleId {
        let (line, _) = src.position(&span);
        self.rule_at(&src.name, line, key, detail)
    }

    /// A rule at a known line of a file that is not TOML (the screening list).
    pub(super) fn rule_at(&mut self, file: &str, line: usize, key: String, detail: String) -> RuleId {
        self.rules.push(Rule { file: file.into(), line, key: key.into(), detail: detail.into() });
        (self.rules.len() - 1) as RuleId
    }
}

pub(super) fn entry(list: &str, i: usize, id: &str) -> String {
    Entry(list, i, id).to_string()
}

/// An entry's key, `list[i] (id)`, written out only when a message or rule needs it: a provider's
/// million tenants would otherwise each cost a string.
#[derive(Clone, Copy)]
pub(super) struct Entry<'a>(pub &'a str, pub usize, pub &'a str);

impl std::fmt::Display for Entry<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}[{}] ({})", self.0, self.1, self.2)
    }
}

/// Names that are compared byte for byte: printable ASCII without spaces, so look-alike Unicode,
/// whitespace and control characters can never be part of a model, alias, tenant or group id.
pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && s.bytes().all(|b| b.is_ascii_graphic())
}

pub(super) fn valid_label(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

pub(super) fn valid_country(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase())
}

pub(super) fn glob(ctx: &mut Ctx, src: &Source, key: &str, p: &Spanned<String>) -> Option<GlobMatcher> {
    let pat = p.get_ref();
    if !valid_name(pat) {
        ctx.err(src, Some(p.span()), key, format!("pattern {pat:?} must be printable ASCII without spaces"));
        return None;
    }
    match Glob::new(pat) {
        Ok(g) => Some(g.compile_matcher()),
        Err(e) => {
            ctx.err(src, Some(p.span()), key, format!("invalid pattern {pat:?}: {}", e.kind()));
            None
        }
    }
}

/// Compiles a list of model patterns, each of which must match at least one of `names` (a
/// pattern that matches nothing is almost always a typo, and a mistyped deny fails open).
/// `None` if any pattern is invalid.
pub(super) fn model_patterns<'n, I: Iterator<Item = &'n str>>(
    ctx: &mut Ctx,
    src: &Source,
    key: &str,
    list: &[Spanned<String>],
    names: impl Fn() -> I,
    what: &str,
) -> Option<Vec<(GlobMatcher, RuleId)>> {
    let globs = globs(ctx, src, key, list, names, what)?;
    let field = key.rsplit('.').next().unwrap_or(key);
    let rules = list
        .iter()
        .enumerate()
        .map(|(i, p)| ctx.rule(src, p.span(), format!("{key}[{i}]"), format!("{field} contains {:?}", p.get_ref())));
    Some(globs.into_iter().zip(rules.collect::<Vec<_>>()).collect())
}

/// [`model_patterns`] without a rule per pattern: for a list whose rule is the list itself.
pub(super) fn globs<'n, I: Iterator<Item = &'n str>>(
    ctx: &mut Ctx,
    src: &Source,
    key: &str,
    list: &[Spanned<String>],
    names: impl Fn() -> I,
    what: &str,
) -> Option<Vec<GlobMatcher>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (i, p) in list.iter().enumerate() {
        let k = || format!("{key}[{i}]");
        let Some(g) = glob(ctx, src, &k(), p) else {
            ok = false;
            continue;
        };
        if !names().any(|n| g.is_match(n)) {
            ctx.err(src, Some(p.span()), k(), format!("pattern {:?} matches no {what}", p.get_ref()));
            ok = false;
        }
        out.push(g);
    }
    ok.then_some(out)
}

/// A TOML local date (`2027-01-01`) as a [`Day`]; a time or an offset is an error, since every
/// date in the policy is a whole UTC day.
pub(super) fn day(ctx: &mut Ctx, src: &Source, key: String, d: &Spanned<Datetime>) -> Option<Day> {
    let v = d.get_ref();
    let day = match (v.date, v.time, v.offset) {
        (Some(date), None, None) => Day::from_ymd(i64::from(date.year), u32::from(date.month), u32::from(date.day)),
        _ => None,
    };
    if day.is_none() {
        ctx.err(src, Some(d.span()), key, "must be a date such as 2027-01-01 (no time of day)");
    }
    day
}

/// Two optional inclusive dates as a [`Window`]; an end before the start is an error. `None` if
/// either date is invalid.
pub(super) fn day_window(
    ctx: &mut Ctx,
    src: &Source,
    key: &str,
    (from_name, from): (&str, Option<&Spanned<Datetime>>),
    (until_name, until): (&str, Option<&Spanned<Datetime>>),
) -> Option<Window> {
    let first = from.map(|d| day(ctx, src, format!("{key}.{from_name}"), d));
    let last = until.map(|d| day(ctx, src, format!("{key}.{until_name}"), d));
    let window = Window { from: first.unwrap_or(Some(Day::MIN))?, until: last.unwrap_or(Some(Day::MAX))? };
    if window.until < window.from {
        ctx.err(
            src,
            until.map(Spanned::span),
            format!("{key}.{until_name}"),
            format!("{} is before {from_name} {}", window.until, window.from),
        );
        return None;
    }
    Some(window)
}

/// A model with the indices of its endpoints.
pub(super) type ModelEntry = (Model, Vec<EndpointIdx>);

pub(super) fn check_limits(ctx: &mut Ctx, src: &Source, key: &str, l: &Spanned<RawLimits>) {
    let v = l.get_ref();
    if let Some(f) = v.daily_inference_flops {
        if !(f.is_finite() && f > 0.0) {
            ctx.err(src, Some(l.span()), format!("{key}.daily_inference_flops"), "must be a finite number > 0");
        }
    }
    if v.request_burst.is_some() && v.requests_per_minute.is_none() {
        ctx.err(src, Some(l.span()), format!("{key}.request_burst"), "only applies with requests_per_minute");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pattern table in the README's config reference, row by row: every pattern in a row
    /// matches every name in its "matches" column and none in its "does not match" column.
    #[test]
    fn glob_dialect_is_the_documented_one() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let table = readme.split("**Patterns**").nth(1).expect("README has the Patterns table");
        let rows: Vec<&str> =
            table.lines().skip_while(|l| !l.starts_with('|')).take_while(|l| l.starts_with('|')).skip(2).collect();
        assert!(rows.len() >= 7, "{rows:?}");
        // The backticked items of a cell; the README escapes nothing inside backticks.
        let items = |cell: &str| -> Vec<String> { cell.split('`').skip(1).step_by(2).map(str::to_owned).collect() };
        let src = Source::new("t.toml".into(), String::new());
        let mut ctx = Ctx::new(&|_| None);
        let mut checked = 0;
        for row in rows {
            let cells: Vec<&str> = row.split(" | ").collect();
            let (patterns, yes, no) = (items(cells[0]), items(cells[2]), items(cells.get(3).copied().unwrap_or("")));
            assert!(!patterns.is_empty() && !yes.is_empty(), "{row}");
            for pattern in &patterns {
                let g = glob(&mut ctx, &src, "k", &Spanned::new(0..0, pattern.clone())).unwrap();
                for s in &yes {
                    assert!(g.is_match(s), "{pattern} should match {s}");
                }
                for s in &no {
                    assert!(!g.is_match(s), "{pattern} should not match {s}");
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 9, "every pattern in the table");
    }
}
