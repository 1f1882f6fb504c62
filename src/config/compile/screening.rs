//! The screening step of compiling: every tenant's legal name and aliases against the
//! restricted-party list. A score at or above the threshold blocks the tenant (`denied_party`)
//! unless `screening.toml` records a reviewer's clearance for exactly that tenant and list entry.

use std::collections::HashMap;

use super::ctx::{Ctx, day};
use crate::config::error::{ConfigError, Source};
use crate::config::raw::{ScreeningFile, TenantsFile};
use crate::policy::{Day, Finding, FindingStatus, Screening, Tenant, TenantIdx};
use crate::screening::{Screener, parse_csl_csv};

pub(super) fn screen(
    ctx: &mut Ctx,
    (src, file): (&Source, &ScreeningFile),
    list: Option<&Source>,
    raw_tenants: &TenantsFile,
    (tenants, tenant_ids): (&mut [Tenant], &HashMap<Box<str>, TenantIdx>),
) -> Screening {
    let s = &file.screening;
    let (threshold, review) = (*s.threshold.get_ref(), *s.review_threshold.get_ref());
    if !(0.0..=100.0).contains(&threshold) {
        ctx.err(src, Some(s.threshold.span()), "screening.threshold", "must be between 0 and 100");
    }
    if !(0.0..=threshold).contains(&review) {
        ctx.err(
            src,
            Some(s.review_threshold.span()),
            "screening.review_threshold",
            "must be between 0 and screening.threshold",
        );
    }
    let mut clearances: HashMap<(TenantIdx, &str), (&str, Day, &str)> = HashMap::new();
    for (i, c) in file.clearances.iter().enumerate() {
        let key = format!("clearances[{i}]");
        let Some(&t) = tenant_ids.get(c.tenant.get_ref().as_str()) else {
            let msg = format!("unknown tenant {:?}", c.tenant.get_ref());
            ctx.err(src, Some(c.tenant.span()), format!("{key}.tenant"), msg);
            continue;
        };
        let Some(date) = day(ctx, src, format!("{key}.date"), &c.date) else { continue };
        if c.reviewer.trim().is_empty() || c.note.trim().is_empty() {
            ctx.err(src, Some(c.entry.span()), key.clone(), "a clearance names its reviewer and says why (note)");
        }
        if clearances.insert((t, c.entry.get_ref().as_str()), (&c.reviewer, date, &c.note)).is_some() {
            ctx.err(src, Some(c.entry.span()), format!("{key}.entry"), "this tenant and entry are cleared twice");
        }
    }

    let Some(list) = list else {
        if !file.clearances.is_empty() {
            let msg =
                format!("clearances are recorded but the list {:?} is not in the config folder", s.list.get_ref());
            ctx.err(src, Some(s.list.span()), "screening.list", msg);
        }
        return Screening { threshold, review_threshold: review, ..Screening::default() };
    };
    let entries = match parse_csl_csv(&list.text) {
        Ok(e) => e,
        Err(e) => {
            let position = Some((e.line(), e.column().unwrap_or(1)));
            ctx.push(ConfigError { file: list.name.clone(), position, key: String::new(), message: e.to_string() });
            return Screening::default();
        }
    };
    let screener = Screener::new(entries);
    let mut findings = Vec::new();
    for (t, (tenant, raw)) in tenants.iter_mut().zip(&raw_tenants.tenants).enumerate() {
        let mut names: Vec<&str> = vec![raw.legal_name.as_str()];
        names.extend(raw.aliases.iter().map(String::as_str));
        for hit in screener.screen(&names, review) {
            let Some(entry) = screener.entries().get(hit.entry) else { continue };
            let status = if hit.score < threshold {
                FindingStatus::Review
            } else if let Some((reviewer, date, note)) = clearances.get(&(t as TenantIdx, entry.id.as_str())) {
                FindingStatus::Cleared { reviewer: (*reviewer).into(), date: *date, note: (*note).into() }
            } else {
                let detail = format!(
                    "{:?} matches the listed {:?} with score {:.0} (threshold {threshold:.0}); no clearance on file",
                    hit.query, hit.matched, hit.score
                );
                let rule = ctx.rule_at(&list.name, entry.line, format!("{} ({})", entry.id, entry.source), detail);
                tenant.denied_party.get_or_insert(rule);
                FindingStatus::Blocked(rule)
            };
            findings.push(Finding {
                tenant: t as u32,
                query: hit.query.as_str().into(),
                entry_id: entry.id.as_str().into(),
                entry_name: entry.name.as_str().into(),
                source: entry.source.as_str().into(),
                list_line: entry.line,
                matched: hit.matched.as_str().into(),
                score: hit.score,
                status,
            });
        }
    }
    Screening {
        list: Some(list.name.as_str().into()),
        entries: screener.entries().len(),
        threshold,
        review_threshold: review,
        findings: findings.into(),
    }
}
