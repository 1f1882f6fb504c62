//! The screening step of compiling: every tenant's legal name and aliases against the
//! restricted-party list. A score at or above the threshold blocks the tenant (`denied_party`)
//! unless `screening.toml` records a reviewer's clearance for exactly that tenant and list entry.

use std::collections::HashMap;

use super::error::{ConfigError, Source};
use super::raw::{ScreeningFile, TenantsFile};
use crate::policy::{Day, Finding, FindingStatus, Rule, RuleId, Screening, Tenant};
use crate::screening::{ListEntry, Screener, ScreeningError, parse_csl_csv};

/// The list as read from the folder, if there is one.
pub(super) struct ListSource {
    pub source: Source,
}

pub(super) fn screen(
    errors: &mut Vec<ConfigError>,
    rules: &mut Vec<Rule>,
    settings: (&Source, &ScreeningFile),
    list: Option<&ListSource>,
    raw_tenants: &TenantsFile,
    tenants: &mut [Tenant],
) -> Screening {
    let (src, file) = settings;
    let s = &file.screening;
    let (threshold, review) = (*s.threshold.get_ref(), *s.review_threshold.get_ref());
    if !(0.0..=100.0).contains(&threshold) {
        errors.push(src.error(Some(&s.threshold.span()), "screening.threshold", "must be between 0 and 100"));
    }
    if !(0.0..=threshold).contains(&review) {
        errors.push(src.error(
            Some(&s.review_threshold.span()),
            "screening.review_threshold",
            "must be between 0 and screening.threshold",
        ));
    }
    let ids: HashMap<&str, usize> = tenants.iter().enumerate().map(|(i, t)| (&*t.id, i)).collect();
    let mut clearances: HashMap<(usize, &str), (&str, Day, &str)> = HashMap::new();
    for (i, c) in file.clearances.iter().enumerate() {
        let key = format!("clearances[{i}]");
        let Some(&t) = ids.get(c.tenant.get_ref().as_str()) else {
            errors.push(src.error(
                Some(&c.tenant.span()),
                format!("{key}.tenant"),
                format!("unknown tenant {:?}", c.tenant.get_ref()),
            ));
            continue;
        };
        let date = c.date.get_ref();
        let day = match (date.date, date.time) {
            (Some(d), None) => Day::from_ymd(i64::from(d.year), u32::from(d.month), u32::from(d.day)),
            _ => None,
        };
        let Some(day) = day else {
            errors.push(src.error(Some(&c.date.span()), format!("{key}.date"), "must be a date such as 2026-11-20"));
            continue;
        };
        if c.reviewer.trim().is_empty() || c.note.trim().is_empty() {
            errors.push(src.error(
                Some(&c.entry.span()),
                key.clone(),
                "a clearance names its reviewer and says why (note)",
            ));
        }
        if clearances.insert((t, c.entry.get_ref().as_str()), (&c.reviewer, day, &c.note)).is_some() {
            errors.push(src.error(
                Some(&c.entry.span()),
                format!("{key}.entry"),
                "this tenant and entry are cleared twice",
            ));
        }
    }

    let Some(list) = list else {
        if !file.clearances.is_empty() {
            errors.push(src.error(
                Some(&s.list.span()),
                "screening.list",
                format!("clearances are recorded but the list {:?} is not in the config folder", s.list.get_ref()),
            ));
        }
        return Screening { threshold, review_threshold: review, ..Screening::default() };
    };
    let entries = match parse_csl_csv(&list.source.text) {
        Ok(e) => e,
        Err(e) => {
            errors.push(list_error(&list.source, &e));
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
            } else if let Some((reviewer, date, note)) = clearances.get(&(t, entry.id.as_str())) {
                FindingStatus::Cleared { reviewer: (*reviewer).into(), date: *date, note: (*note).into() }
            } else {
                let rule = block(rules, &list.source, entry, &hit.query, &hit.matched, hit.score, threshold);
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
        list: Some(list.source.name.as_str().into()),
        entries: screener.entries().len(),
        threshold,
        review_threshold: review,
        findings: findings.into(),
    }
}

fn block(
    rules: &mut Vec<Rule>,
    list: &Source,
    entry: &ListEntry,
    query: &str,
    matched: &str,
    score: f64,
    threshold: f64,
) -> RuleId {
    rules.push(Rule {
        file: list.name.as_str().into(),
        line: entry.line,
        key: format!("{} ({})", entry.id, entry.source).into(),
        detail: format!(
            "{query:?} matches the listed {matched:?} with score {score:.0} (threshold {threshold:.0}); no clearance on file"
        )
        .into(),
    });
    (rules.len() - 1) as RuleId
}

fn list_error(src: &Source, e: &ScreeningError) -> ConfigError {
    ConfigError {
        file: src.name.clone(),
        position: Some((e.line(), e.column().unwrap_or(1))),
        key: String::new(),
        message: e.to_string(),
    }
}
