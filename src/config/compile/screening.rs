//! The screening step of compiling: every tenant's legal name and aliases, and every entity's of
//! `ownership.toml`, against the restricted-party list. A score at or above the threshold blocks
//! the tenant (`denied_party`), or makes the entity a listed party, unless `screening.toml`
//! records a reviewer's clearance for exactly that tenant or entity and list entry.

use std::collections::HashMap;

use super::ctx::{Ctx, day};
use crate::config::error::{ConfigError, Source};
use crate::config::raw::ScreeningFile;
use crate::policy::{Day, EntityIdx, Finding, FindingStatus, RuleId, Screening, Subject, Tenant, TenantIdx};
use crate::screening::{Hit, Screener, parse_csl_csv};

/// The entities of `ownership.toml` to screen: each one's names, and ids for clearances.
pub(super) struct Entities<'a> {
    pub names: &'a [Vec<String>],
    pub ids: &'a HashMap<Box<str>, EntityIdx>,
}

/// The findings, and per entity the rule that lists it (a hit without a clearance) with the list
/// and entry, as explanations name them.
pub(super) fn screen(
    ctx: &mut Ctx,
    (src, file): (&Source, &ScreeningFile),
    list: Option<&Source>,
    (tenants, tenant_ids): (&mut [Tenant], &HashMap<Box<str>, TenantIdx>),
    entities: Entities<'_>,
) -> (Screening, Vec<Option<(RuleId, String)>>) {
    let mut listed = vec![None; entities.names.len()];
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
    let mut clearances: HashMap<(Subject, &str), (&str, Day, &str)> = HashMap::new();
    for (i, c) in file.clearances.iter().enumerate() {
        let key = format!("clearances[{i}]");
        let subject = match (&c.tenant, &c.entity) {
            (Some(t), None) => tenant_ids
                .get(t.get_ref().as_str())
                .map(|&t| Subject::Tenant(t))
                .ok_or_else(|| (format!("{key}.tenant"), t.span(), format!("unknown tenant {:?}", t.get_ref()))),
            (None, Some(e)) => entities.ids.get(e.get_ref().as_str()).map(|&e| Subject::Entity(e)).ok_or_else(|| {
                (format!("{key}.entity"), e.span(), format!("unknown entity {:?} (ownership.toml)", e.get_ref()))
            }),
            _ => Err((key.clone(), c.entry.span(), "a clearance names one tenant or one entity".to_owned())),
        };
        let t = match subject {
            Ok(t) => t,
            Err((k, span, msg)) => {
                ctx.err(src, Some(span), k, msg);
                continue;
            }
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
        return (Screening { threshold, review_threshold: review, ..Screening::default() }, listed);
    };
    let entries = match parse_csl_csv(&list.text) {
        Ok(e) => e,
        Err(e) => {
            let position = Some((e.line(), e.column().unwrap_or(1)));
            ctx.push(ConfigError { file: list.name.clone(), position, key: String::new(), message: e.to_string() });
            return (Screening::default(), listed);
        }
    };
    let screener = Screener::new(entries);
    let mut findings = Vec::new();
    let hits = screen_all(&screener, tenants, entities.names, review);
    for (subject, hits) in hits {
        for hit in hits {
            let Some(entry) = screener.entries().get(hit.entry) else { continue };
            let status = if hit.score < threshold {
                FindingStatus::Review
            } else if let Some((reviewer, date, note)) = clearances.get(&(subject, entry.id.as_str())) {
                FindingStatus::Cleared { reviewer: (*reviewer).into(), date: *date, note: (*note).into() }
            } else {
                let detail = format!(
                    "{:?} matches the listed {:?} with score {:.0} (threshold {threshold:.0}); no clearance on file",
                    hit.query, hit.matched, hit.score
                );
                let rule = ctx.rule_at(&list.name, entry.line, format!("{} ({})", entry.id, entry.source), detail);
                match subject {
                    Subject::Tenant(t) => {
                        if let Some(tenant) = tenants.get_mut(t as usize) {
                            tenant.denied_party.get_or_insert(rule);
                        }
                    }
                    Subject::Entity(e) => {
                        if let Some(l) = listed.get_mut(e as usize) {
                            l.get_or_insert_with(|| (rule, format!("{} entry {}", entry.source, entry.id)));
                        }
                    }
                }
                FindingStatus::Blocked(rule)
            };
            findings.push(Finding {
                subject,
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
    let screening = Screening {
        list: Some(list.name.as_str().into()),
        entries: screener.entries().len(),
        threshold,
        review_threshold: review,
        findings: findings.into(),
    };
    (screening, listed)
}

/// Every tenant's and entity's hits at or above `review`, for those that have any, in subject
/// order. The subjects are split over every core, each part screened with its own batch (which
/// remembers look-ups of words its names share).
fn screen_all(
    screener: &Screener,
    tenants: &[Tenant],
    entities: &[Vec<String>],
    review: f64,
) -> Vec<(Subject, Vec<Hit>)> {
    let workers = std::thread::available_parallelism().map_or(1, usize::from).max(1);
    let per_worker = tenants.len().div_ceil(workers).max(1);
    let mut hits: Vec<(Subject, Vec<Hit>)> = std::thread::scope(|scope| {
        let parts: Vec<_> = tenants
            .chunks(per_worker)
            .enumerate()
            .map(|(part, chunk)| {
                scope.spawn(move || {
                    let mut batch = screener.batch();
                    let first = part * per_worker;
                    chunk
                        .iter()
                        .enumerate()
                        .filter_map(|(k, t)| {
                            let hits = batch.screen(&names(t), review);
                            (!hits.is_empty()).then(|| (Subject::Tenant((first + k) as TenantIdx), hits))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        // A part that panicked must not pass as a part with no hits: the load fails instead.
        parts.into_iter().flat_map(|p| p.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    let mut batch = screener.batch();
    for (e, names) in entities.iter().enumerate() {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let found = batch.screen(&names, review);
        if !found.is_empty() {
            hits.push((Subject::Entity(e as EntityIdx), found));
        }
    }
    hits
}

/// A tenant's names to screen: its legal name and aliases.
fn names(t: &Tenant) -> Vec<&str> {
    std::iter::once(&*t.legal_name).chain(t.aliases.iter().map(|a| &**a)).collect()
}
