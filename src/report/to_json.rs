//! The JSON form: one object, numbers as numbers, absent values as `null`.

use serde_json::{Value, json};

use super::{ABOUT_INTEGRITY, KYC_DUE_DAYS, Report};

pub(super) fn render(report: &Report) -> Value {
    let s = &report.settings;
    let t = &report.totals;
    let foreign: Vec<Value> = report
        .foreign_access
        .iter()
        .map(|r| {
            json!({
                "tenant": r.tenant,
                "tenant_country": r.tenant_country,
                "jurisdiction": r.jurisdiction,
                "model": r.model,
                "training_flops": r.training_flops,
                "requests": r.requests,
                "denied": r.denied,
                "prompt_tokens": r.prompt_tokens,
                "completion_tokens": r.completion_tokens,
                "total_tokens": r.total_tokens,
                "flops": r.flops,
                "unmetered": r.unmetered,
                "first_seen": r.first_seen,
                "last_seen": r.last_seen,
            })
        })
        .collect();
    let denials: Vec<Value> =
        report.denials.iter().map(|d| json!({ "reason": d.reason, "tenant": d.tenant, "count": d.count })).collect();
    let first_bad_line = t
        .first_bad_line
        .as_ref()
        .map(|b| json!({ "path": b.path.to_string_lossy(), "line": b.line, "error": b.error }));
    json!({
        "generated_at": s.generated_at,
        "window": {
            "since": s.since.to_string(),
            "until": s.until.map(|d| d.to_string()),
            "days": "UTC, since and until both inclusive",
        },
        "settings": {
            "home_jurisdictions": s.home_jurisdictions,
            "flops_line": s.flops_line,
        },
        "files": report.files.iter().map(|p| p.to_string_lossy()).collect::<Vec<_>>(),
        "foreign_access": foreign,
        "denials": denials,
        "totals": {
            "files": report.files.len(),
            "lines": t.lines,
            "records": t.records,
            "decisions": t.decisions,
            "allowed": t.allowed,
            "denied": t.denied,
            "errors": t.errors,
            "outside_window": t.outside_window,
            "bad_lines": t.bad_lines,
            "first_bad_line": first_bad_line,
        },
        "kyc": report.kyc.as_ref().map(|k| json!({
            "as_of": k.as_of.to_string(),
            "due_within_days": KYC_DUE_DAYS,
            "tenants": k.tenants.iter().map(|t| json!({
                "tenant": t.tenant, "state": t.state, "verified_by": t.verified_by,
                "verified_on": t.verified_on.to_string(), "reverify_by": t.reverify_by.to_string(),
                "refused_from": t.refused_from.to_string(),
            })).collect::<Vec<_>>(),
        })),
        "integrity": ABOUT_INTEGRITY,
    })
}
