//! Compiles `expectations.toml`: checks each expectation's references (tenant, reason code,
//! purpose, date) at load, so a stale or mistyped expectation is a config error with its line,
//! not a confusing failure later.

use super::ctx::{Ctx, day, valid_label};
use crate::config::error::Source;
use crate::config::raw::{ExpectationsFile, ExpectedDecision};
use crate::policy::Denial;
use crate::policy::expect::{Expectation, Expected};

pub(super) fn compile_expectations(
    ctx: &mut Ctx,
    src: &Source,
    file: &ExpectationsFile,
    tenant_ids: &crate::policy::TenantIds,
) -> Vec<Expectation> {
    let mut out = Vec::new();
    for (i, entry) in file.expect.iter().enumerate() {
        let e = entry.get_ref();
        let key = format!("expect[{i}]");
        let tenant = tenant_ids.get(e.tenant.get_ref().as_str()).copied();
        if tenant.is_none() {
            ctx.err(
                src,
                Some(e.tenant.span()),
                format!("{key}.tenant"),
                format!("unknown tenant {:?}", e.tenant.get_ref()),
            );
        }
        if let Some(p) = &e.purpose {
            if !valid_label(p.get_ref()) {
                ctx.err(
                    src,
                    Some(p.span()),
                    format!("{key}.purpose"),
                    "must be lowercase letters, digits and '-', as x-customs-purpose",
                );
            }
        }
        let at = match &e.at {
            None => Some(None),
            Some(d) => day(ctx, src, format!("{key}.at"), d).map(Some),
        };
        let expected = match (*e.decision.get_ref(), &e.reason) {
            (ExpectedDecision::Allow, None) => Some(Expected::Allow),
            (ExpectedDecision::Allow, Some(r)) => {
                ctx.err(src, Some(r.span()), format!("{key}.reason"), "only applies when decision = \"deny\"");
                None
            }
            (ExpectedDecision::Deny, None) => {
                // A bare "deny" would also pass on a refusal for the wrong reason, e.g. a
                // mistyped model name (model_not_found).
                ctx.err(
                    src,
                    Some(e.decision.span()),
                    format!("{key}.reason"),
                    "is required when decision = \"deny\": name the reason code expected",
                );
                None
            }
            (ExpectedDecision::Deny, Some(r)) => match Denial::ALL.iter().find(|d| d.code() == r.get_ref()) {
                Some(&d) => Some(Expected::Deny(d)),
                None => {
                    let codes: Vec<&str> = Denial::ALL.iter().map(|d| d.code()).collect();
                    ctx.err(
                        src,
                        Some(r.span()),
                        format!("{key}.reason"),
                        format!("unknown reason code {:?}; one of {}", r.get_ref(), codes.join(", ")),
                    );
                    None
                }
            },
        };
        if let (Some(tenant), Some(at), Some(expected)) = (tenant, at, expected) {
            let (line, _) = src.position(&entry.span());
            out.push(Expectation {
                file: src.name.as_str().into(),
                line,
                name: e.name.as_deref().map(Into::into),
                tenant,
                model: e.model.get_ref().as_str().into(),
                purpose: e.purpose.as_ref().map(|p| p.get_ref().as_str().into()),
                at,
                expected,
            });
        }
    }
    out
}
