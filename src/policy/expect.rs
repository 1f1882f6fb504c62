//! Policy expectations (`expectations.toml`): what compliance expects the policy to decide for a
//! tenant, model, purpose and day, evaluated by `customs check` with the server's own
//! [`Policy::decide`], the way `opa test` runs a Rego policy's tests.

use std::fmt;

use super::{Day, Denial, Policy, Rule, TenantIdx, Verdict};

/// One `[[expect]]` entry, its references checked when the config was loaded.
pub struct Expectation {
    /// Where it is written, for the report.
    pub file: Box<str>,
    pub line: usize,
    pub name: Option<Box<str>>,
    pub tenant: TenantIdx,
    pub model: Box<str>,
    pub purpose: Option<Box<str>>,
    /// The day to decide for; `None` means the day the check runs.
    pub at: Option<Day>,
    pub expected: Expected,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    Allow,
    Deny(Denial),
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Allow => f.write_str("allow"),
            Self::Deny(d) => write!(f, "deny {}", d.code()),
        }
    }
}

/// What the policy decided for one expectation. Its `Display` is the report line:
/// `FAIL config/expectations.toml:12 demo-cn gpt-4o (purpose translation, 2026-11-28): expected
/// deny compute_threshold_exceeded, got allow (rule config/jurisdictions.toml:42: ...)`, or
/// `PASS ...`.
pub struct Outcome<'p> {
    pub expectation: &'p Expectation,
    pub tenant: &'p str,
    /// The day decided for.
    pub day: Day,
    pub got: Expected,
    /// The rule that decided, when one did.
    pub rule: Option<std::borrow::Cow<'p, Rule>>,
}

impl Outcome<'_> {
    pub fn passed(&self) -> bool {
        self.got == self.expectation.expected
    }
}

impl fmt::Display for Outcome<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.expectation;
        write!(f, "{} {}:{}", if self.passed() { "PASS" } else { "FAIL" }, e.file, e.line)?;
        if let Some(name) = &e.name {
            write!(f, " [{name}]")?;
        }
        write!(f, " {} {} (", self.tenant, e.model)?;
        if let Some(p) = &e.purpose {
            write!(f, "purpose {p}, ")?;
        }
        write!(f, "{}): ", self.day)?;
        if self.passed() {
            write!(f, "{}", self.got)?;
        } else {
            write!(f, "expected {}, got {}", e.expected, self.got)?;
        }
        match (self.rule.as_deref(), self.got) {
            (Some(r), _) => write!(f, " (rule {}:{}: {}: {})", r.file, r.line, r.key, r.detail),
            (None, Expected::Deny(Denial::ModelNotFound)) => f.write_str(" (not in the catalog)"),
            (None, _) => Ok(()),
        }
    }
}

/// Every outcome, in file order.
pub struct Report<'p> {
    pub outcomes: Vec<Outcome<'p>>,
}

impl Report<'_> {
    pub fn failed(&self) -> usize {
        self.outcomes.iter().filter(|o| !o.passed()).count()
    }

    /// `12 expectations: 11 passed, 1 failed`.
    pub fn summary(&self) -> String {
        let n = self.outcomes.len();
        let failed = self.failed();
        let noun = if n == 1 { "expectation" } else { "expectations" };
        format!("{n} {noun}: {} passed, {failed} failed", n - failed)
    }
}

/// Decides every expectation; `today` stands in for an expectation without `at`.
pub fn evaluate<'p>(policy: &'p Policy, expectations: &'p [Expectation], today: Day) -> Report<'p> {
    let outcomes = expectations
        .iter()
        .map(|e| {
            let day = e.at.unwrap_or(today);
            let d = policy.decide(e.tenant, &e.model, e.purpose.as_deref(), day);
            Outcome {
                expectation: e,
                tenant: policy.tenant(e.tenant).map_or("?", |t| &*t.id),
                day,
                got: match d.verdict {
                    Verdict::Allow { .. } => Expected::Allow,
                    Verdict::Deny(denial) => Expected::Deny(denial),
                },
                rule: d.rule.and_then(|r| policy.rule(r)),
            }
        })
        .collect();
    Report { outcomes }
}
