//! `customs explain`: runs [`Policy::decide`], the very function the server calls, for one
//! tenant, model and purpose, and says which rule in which file decided; or for a stream of such
//! questions, one JSON line each (`--batch`).

use std::fmt;
use std::io::{self, BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::auth::{self, AuthError};
use crate::error::GatewayError;
use crate::policy::{Day, PURPOSE_FORMAT, Policy, Rule, Verdict, valid_purpose};
use crate::reason::Reason;

#[derive(Debug, Serialize)]
pub struct Explanation {
    pub tenant: String,
    pub legal_name: String,
    pub country: String,
    pub jurisdiction: String,
    /// When the jurisdiction's rules are dated: the version in force on `date` (its block, with
    /// the days it is in force), or the rule saying none is. `None` for an undated jurisdiction.
    pub jurisdiction_version: Option<RuleRef>,
    /// A second jurisdiction the tenant answers to, and why: `d5-macau (headquarters of its
    /// ultimate parent example-cn-parent, CN)`. A request must pass both.
    pub also: Option<String>,
    pub model: String,
    /// The catalog id the name resolved to, when it is known.
    pub resolved_model: Option<String>,
    pub training_flops: Option<f64>,
    pub compute_basis: Option<&'static str>,
    pub purpose: Option<String>,
    pub date: String,
    pub decision: &'static str,
    /// The reason code for a denial; `None` when allowed.
    pub reason: Option<&'static str>,
    pub status: u16,
    pub rule: Option<RuleRef>,
    /// Set when the server would refuse the request itself (400) before deciding it: why.
    pub invalid_request: Option<&'static str>,
    /// Endpoints that may serve the request, in the order they are tried.
    pub endpoints: Vec<EndpointRef>,
    /// What did not decide today but would on other days: a suspended rule, a lapsing record.
    pub notes: Vec<String>,
    pub policy_version: String,
}

#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct RuleRef {
    pub file: String,
    pub line: usize,
    pub key: String,
    pub detail: String,
}

impl From<&Rule> for RuleRef {
    fn from(r: &Rule) -> Self {
        Self { file: r.file.to_string(), line: r.line, key: r.key.to_string(), detail: r.detail.to_string() }
    }
}

#[derive(Debug, Serialize)]
pub struct EndpointRef {
    pub url: String,
    pub residency: String,
}

/// A tenant's API key, given to ask about whoever holds it. It is only hashed and looked up:
/// `Debug` hides it and no error or answer carries it, so it cannot leak into output or logs.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct ApiKey(Box<str>);

/// Whom a question is about.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    Tenant(&'a str),
    /// The tenant this key authenticates as.
    Key(&'a ApiKey),
}

// Errors reach stdout in --batch and stderr otherwise, so no variant holds a key or text derived
// from one.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("unknown tenant {0:?}")]
    UnknownTenant(String),
    #[error("no tenant has this key")]
    UnknownKey,
    #[error("the key is malformed: the server refuses a key that is empty or holds anything but printable ASCII")]
    MalformedKey,
    #[error("no key on standard input")]
    NoKeyInput,
    #[error("cannot read the key from standard input: {0}")]
    ReadKey(io::Error),
    #[error("not a question: {0}")]
    NotAQuestion(serde_json::Error),
    #[error("the question names no \"tenant\" and no \"key\"")]
    NoSubject,
    #[error("the question names both a \"tenant\" and a \"key\"; give one")]
    TwoSubjects,
    #[error("{0:?} is not a date (YYYY-MM-DD)")]
    BadDate(String),
}

pub fn explain(
    policy: &Policy,
    tenant_id: &str,
    model: &str,
    purpose: Option<&str>,
    at: Day,
) -> Result<Explanation, ExplainError> {
    let t_idx = policy.tenant_by_id(tenant_id).ok_or_else(|| ExplainError::UnknownTenant(tenant_id.to_owned()))?;
    let tenant = policy.tenant(t_idx).ok_or_else(|| ExplainError::UnknownTenant(tenant_id.to_owned()))?;
    let invalid_request = purpose.filter(|p| !valid_purpose(p.as_bytes())).map(|_| PURPOSE_FORMAT);
    let d = policy.decide(t_idx, model, purpose, at);
    let resolved = d.model.and_then(|m| policy.model(m));
    let dated = policy.jurisdiction(tenant).is_some_and(|j| j.is_dated());
    let version = policy.period(tenant, at).filter(|_| dated).and_then(|p| policy.rule(p.rule()));
    let version = version.as_deref();
    let (decision, reason, status, endpoints) = match (invalid_request, d.verdict) {
        (Some(_), _) => ("deny", Some(Reason::InvalidRequest.as_str()), 400, &[][..]),
        (None, Verdict::Allow { endpoints }) => ("allow", None, 200, endpoints),
        (None, Verdict::Deny(denial)) => {
            ("deny", Some(denial.code()), GatewayError::Policy(denial).status().as_u16(), &[][..])
        }
    };
    let ownership = policy.ownership();
    let also = tenant.also.as_ref().map(|a| {
        let j = policy.jurisdictions().get(a.jurisdiction as usize).map_or("?", |j| &*j.id);
        match a.parent.and_then(|p| ownership.entity(p)) {
            Some(p) => format!("{j} (headquarters of its ultimate parent {}, {})", p.id, p.headquarters),
            None => format!("{j} (its country {})", tenant.country),
        }
    });
    let mut notes = Vec::new();
    // An owned tenant served only because the Affiliates rule is not in force that day.
    if policy.party(t_idx).affiliated.is_some() && !ownership.applies(at) {
        let why = ownership.suspension(at).and_then(|r| policy.rule(r)).map_or_else(
            || "the Affiliates rule is not in force on this day".to_owned(),
            |r| format!("{}:{}: {}", r.file, r.line, r.detail),
        );
        notes.push(format!("owned by listed parties: refused denied_party on days the rule is in force; {why}"));
    }
    // A verification due within 30 days, or in its grace period.
    if let Some(k) = tenant.kyc.as_ref().filter(|k| at.0.saturating_add(30) >= k.reverify_by.0 && at < k.refused_from) {
        let (due, from) = (k.reverify_by, k.refused_from);
        notes.push(format!("customer verification due by {due}; refused kyc_expired from {from}"));
    }
    Ok(Explanation {
        tenant: tenant.id.to_string(),
        legal_name: tenant.legal_name.to_string(),
        country: tenant.country.to_string(),
        jurisdiction: policy.jurisdiction(tenant).map(|j| j.id.to_string()).unwrap_or_default(),
        jurisdiction_version: version.map(RuleRef::from),
        also,
        model: model.to_owned(),
        resolved_model: resolved.map(|m| m.id.to_string()),
        training_flops: resolved.map(|m| m.training_flops),
        compute_basis: resolved.map(|m| m.compute_basis.as_str()),
        purpose: purpose.map(str::to_owned),
        date: at.to_string(),
        decision,
        reason,
        status,
        rule: d.rule.filter(|_| invalid_request.is_none()).and_then(|r| policy.rule(r)).map(|r| RuleRef::from(&*r)),
        invalid_request,
        endpoints: endpoints
            .iter()
            .filter_map(|&e| policy.endpoint(e))
            .map(|e| EndpointRef { url: e.url.to_string(), residency: e.residency.to_string() })
            .collect(),
        notes,
        policy_version: policy.version().to_owned(),
    })
}

/// [`explain`] for a tenant named by id or by key.
pub fn explain_subject(
    policy: &Policy,
    subject: Subject<'_>,
    model: &str,
    purpose: Option<&str>,
    at: Day,
) -> Result<Explanation, ExplainError> {
    let tenant_id = match subject {
        Subject::Tenant(id) => id,
        Subject::Key(key) => tenant_of_key(policy, key)?,
    };
    explain(policy, tenant_id, model, purpose, at)
}

/// Resolved by the server's own function, so a key explain accepts is one a request could use
/// (a tenant that also requires a client certificate is answered as if it presented one).
fn tenant_of_key<'p>(policy: &'p Policy, key: &ApiKey) -> Result<&'p str, ExplainError> {
    let t = auth::key_tenant(policy.keys(), key.0.as_bytes()).map_err(|e| match e {
        AuthError::Malformed => ExplainError::MalformedKey,
        _ => ExplainError::UnknownKey,
    })?;
    policy.tenant(t).map(|t| &*t.id).ok_or(ExplainError::UnknownKey)
}

/// Reads a key as `--key -` takes it: the first line of `input`, without its line ending, so
/// that the key need not be in shell history or the process list.
pub fn read_key(mut input: impl BufRead) -> Result<ApiKey, ExplainError> {
    let mut line = String::new();
    if input.read_line(&mut line).map_err(ExplainError::ReadKey)? == 0 {
        return Err(ExplainError::NoKeyInput);
    }
    let key = line.strip_suffix('\n').map_or(&*line, |l| l.strip_suffix('\r').unwrap_or(l));
    Ok(ApiKey(key.into()))
}

/// One line of `--batch` input. Unknown fields are refused: a misspelt `purpose` or `at` would
/// otherwise be answered, wrongly, as a question without one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Question {
    tenant: Option<String>,
    key: Option<ApiKey>,
    model: String,
    purpose: Option<String>,
    at: Option<String>,
}

/// Answers one `--batch` line; `default_day` is the day of a question without `at`.
pub fn answer(policy: &Policy, line: &[u8], default_day: Day) -> Result<Explanation, ExplainError> {
    let q: Question = serde_json::from_slice(line).map_err(ExplainError::NotAQuestion)?;
    let subject = match (&q.tenant, &q.key) {
        (Some(id), None) => Subject::Tenant(id),
        (None, Some(key)) => Subject::Key(key),
        (None, None) => return Err(ExplainError::NoSubject),
        (Some(_), Some(_)) => return Err(ExplainError::TwoSubjects),
    };
    let day = match q.at.as_deref() {
        None => default_day,
        Some(at) => Day::parse(at).ok_or_else(|| ExplainError::BadDate(at.to_owned()))?,
    };
    explain_subject(policy, subject, &q.model, q.purpose.as_deref(), day)
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct BatchSummary {
    /// Questions answered, errors included.
    pub answered: usize,
    /// Of those, the ones answered with `{"error": ...}`.
    pub errors: usize,
}

/// `--batch`: one JSON line on `output` per non-empty line of `input`, in order, the answer
/// `--json` prints or `{"error": "..."}`. A bad line is answered, never fatal; only failing to
/// read or write stops the batch. Lines are read as bytes so that one not in UTF-8 is an
/// answered error rather than an I/O failure.
pub fn batch(
    policy: &Policy,
    mut input: impl BufRead,
    output: impl Write,
    default_day: Day,
) -> io::Result<BatchSummary> {
    #[derive(Serialize)]
    struct ErrorLine {
        error: String,
    }
    let mut output = io::BufWriter::new(output);
    let mut summary = BatchSummary::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        // Without its line ending, so that an error's position reads "line 1".
        let question = line.trim_ascii_end();
        if question.trim_ascii_start().is_empty() {
            continue;
        }
        match answer(policy, question, default_day) {
            Ok(e) => serde_json::to_writer(&mut output, &e)?,
            Err(e) => {
                summary.errors += 1;
                serde_json::to_writer(&mut output, &ErrorLine { error: e.to_string() })?;
            }
        }
        output.write_all(b"\n")?;
        summary.answered += 1;
    }
    output.flush()?;
    Ok(summary)
}

// === impl ApiKey ===

impl ApiKey {
    pub fn new(key: impl Into<Box<str>>) -> Self {
        Self(key.into())
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

// === impl Explanation ===

impl Explanation {
    pub fn render_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let verdict = match self.reason {
            None => "ALLOW".to_owned(),
            Some(code) => format!("DENY {code} (HTTP {})", self.status),
        };
        let _ = writeln!(s, "{verdict}");
        let _ = writeln!(
            s,
            "  tenant:       {} ({}, {}), jurisdiction {}",
            self.tenant, self.legal_name, self.country, self.jurisdiction
        );
        if let Some(a) = &self.also {
            let _ = writeln!(s, "  also:         jurisdiction {a}; a request must pass both");
        }
        // Said once: when no version is in force, that gap is also what decided.
        if let Some(v) = self.jurisdiction_version.as_ref().filter(|v| self.rule.as_ref() != Some(*v)) {
            let _ = writeln!(s, "  version:      {}:{}: {}\n                {}", v.file, v.line, v.key, v.detail);
        }
        match (&self.resolved_model, self.training_flops) {
            (Some(id), Some(f)) => {
                let basis = self.compute_basis.unwrap_or("-");
                let _ = writeln!(s, "  model:        {} -> {id}, trained with {f:e} FLOPs ({basis})", self.model);
            }
            _ => {
                let _ = writeln!(s, "  model:        {} (not in the catalog)", self.model);
            }
        }
        if let Some(p) = &self.purpose {
            let _ = writeln!(s, "  purpose:      {p}");
        }
        let _ = writeln!(s, "  date:         {}", self.date);
        match (self.invalid_request, &self.rule) {
            (Some(why), _) => {
                let _ = writeln!(
                    s,
                    "  decided by:   the server refuses the request before any policy\n                {why}"
                );
            }
            (None, Some(r)) => {
                let _ = writeln!(s, "  decided by:   {}:{}: {}\n                {}", r.file, r.line, r.key, r.detail);
            }
            (None, None) => {
                let _ = writeln!(s, "  decided by:   default deny (no rule names this model)");
            }
        }
        for e in &self.endpoints {
            let _ = writeln!(s, "  endpoint:     {} ({})", e.url, e.residency);
        }
        for n in &self.notes {
            let _ = writeln!(s, "  note:         {n}");
        }
        let _ = writeln!(s, "  policy:       {}", self.policy_version);
        s
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn example() -> Policy {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        crate::config::load(&dir, &|_| Some("test".into())).unwrap().policy
    }

    fn day(s: &str) -> Day {
        Day::parse(s).unwrap()
    }

    #[test]
    fn explain_key_resolves_to_its_tenant_and_never_shows() {
        let p = example();
        let at = day("2026-11-28");
        let key = ApiKey::new("sk-demo-cn");
        let by_key = explain_subject(&p, Subject::Key(&key), "gpt-4o", None, at).unwrap();
        let by_id = explain(&p, "demo-cn", "gpt-4o", None, at).unwrap();
        assert_eq!(serde_json::to_string(&by_key).unwrap(), serde_json::to_string(&by_id).unwrap());
        assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
        for (key, want) in [("sk-demo-nobody", "no tenant has this key"), ("sk-demo-cn ", "the key is malformed")] {
            let err = explain_subject(&p, Subject::Key(&ApiKey::new(key)), "gpt-4o", None, at).unwrap_err();
            let text = format!("{err} {err:?}");
            assert!(text.starts_with(want), "{text}");
            assert!(!text.contains("sk-demo"), "{text}");
        }
    }

    #[test]
    fn explain_read_key_takes_the_first_line_without_its_ending() {
        let cases: &[(&str, &str)] = &[
            ("sk-demo-us\n", "sk-demo-us"),
            ("sk-demo-us\r\n", "sk-demo-us"),
            ("sk-demo-us", "sk-demo-us"),
            ("sk-demo-us\nsk-demo-cn\n", "sk-demo-us"),
            // Other whitespace is kept, and refused as the server would refuse it.
            (" sk-demo-us \n", " sk-demo-us "),
        ];
        for (input, want) in cases {
            assert_eq!(&*read_key(input.as_bytes()).unwrap().0, *want, "{input:?}");
        }
        assert!(matches!(read_key(&b""[..]), Err(ExplainError::NoKeyInput)));
    }

    #[test]
    fn explain_batch_answers_every_line_in_order() {
        let p = example();
        let input = concat!(
            "{\"tenant\":\"demo-de\",\"model\":\"llama-3.1-8b-instruct\"}\n",
            "\n",
            "{\"key\":\"sk-demo-de\",\"model\":\"llama-3.1-8b-instruct\",\"at\":\"2027-01-01\"}\n",
            "not json\n",
            "{\"tenant\":\"demo-xx\",\"model\":\"gpt-4o\"}\n",
            "{\"key\":\"sk-nobody\",\"model\":\"gpt-4o\"}\n",
            "{\"tenant\":\"demo-us\",\"key\":\"sk-demo-us\",\"model\":\"gpt-4o\"}\n",
            "{\"model\":\"gpt-4o\"}\n",
            "{\"tenant\":\"demo-us\"}\n",
            "{\"tenant\":\"demo-us\",\"model\":\"gpt-4o\",\"purpse\":\"x\"}\n",
            "{\"tenant\":\"demo-us\",\"model\":\"gpt-4o\",\"at\":\"2027-13-01\"}\n",
        );
        // Not UTF-8, a blank line, and a last line without its newline.
        let tail = "\n   \r\n{\"tenant\":\"demo-us\",\"model\":\"gpt-4o\",\"purpose\":\"translation\"}";
        let input = [input.as_bytes(), b"\"\xff\"", tail.as_bytes()].concat();
        let mut out = Vec::new();
        let summary = batch(&p, &input[..], &mut out, day("2026-11-28")).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(!out.contains("sk-"), "{out}");
        let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let got: Vec<String> = lines
            .iter()
            .map(|l| match (&l["error"], &l["tenant"]) {
                (serde_json::Value::String(e), _) => format!("error: {e}"),
                (_, t) => format!("{t} {} {} {}", l["date"], l["decision"], l["reason"]),
            })
            .collect();
        let want = [
            r#""demo-de" "2026-11-28" "allow" null"#,
            r#""demo-de" "2027-01-01" "deny" "end_use_declaration_required""#,
            "error: not a question: expected ident at line 1 column 2",
            r#"error: unknown tenant "demo-xx""#,
            "error: no tenant has this key",
            r#"error: the question names both a "tenant" and a "key"; give one"#,
            r#"error: the question names no "tenant" and no "key""#,
            "error: not a question: missing field `model` at line 1 column 20",
            "error: not a question: unknown field `purpse`, expected one of `tenant`, `key`, `model`, `purpose`, `at` at line 1 column 45",
            r#"error: "2027-13-01" is not a date (YYYY-MM-DD)"#,
            "error: not a question: invalid unicode code point at line 1 column 2",
            r#""demo-us" "2026-11-28" "deny" "purpose_not_declared""#,
        ];
        assert_eq!(got, want);
        assert_eq!(summary, BatchSummary { answered: 12, errors: 9 });
    }
}
