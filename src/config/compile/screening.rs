//! The screening step of compiling: every tenant's legal name and aliases, and every entity's of
//! `ownership.toml`, against the restricted-party list. A score at or above the threshold blocks
//! the tenant (`denied_party`), or makes the entity a listed party, unless `screening.toml`
//! records a reviewer's clearance for exactly that tenant or entity and list entry.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use sha2::{Digest, Sha256};

use super::ctx::{Ctx, day};
use crate::config::error::{ConfigError, Source};
use crate::config::raw::ScreeningFile;
use crate::policy::{
    Day, EntityIdx, Finding, FindingStatus, Memo, Party, Policy, RuleId, Screening, SegmentScreening, Subject, Tenant,
    TenantIds, TenantIdx, TenantSegment, Tenants,
};
use crate::screening::ListEntry;
use crate::screening::{Hit, Screener, parse_csl_csv};

/// The entities of `ownership.toml` to screen: each one's names, and ids for clearances.
pub(super) struct Entities<'a> {
    pub names: &'a [Vec<String>],
    pub ids: &'a HashMap<Box<str>, EntityIdx>,
}

/// The findings, and per entity the rule that lists it (a hit without a clearance) with the list
/// and entry, as explanations name them. `previous` is the last load's policy: what it screened
/// against the same list and threshold is not screened again.
pub(super) fn screen(
    ctx: &mut Ctx,
    (src, file): (&Source, &ScreeningFile),
    list: Option<&Source>,
    (tenants, tenant_ids, parties): (&Tenants, &TenantIds, &mut HashMap<TenantIdx, Party>),
    entities: Entities<'_>,
    previous: Option<&Policy>,
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
    let against = Sha256::new().chain_update(&list.text).chain_update(review.to_le_bytes()).finalize().into();
    let (hits, screener) = screen_all(&entries, against, tenants, entities.names, review, previous);
    let mut findings = Vec::new();
    for (subject, hits) in hits {
        for hit in hits {
            let Some(entry) = entries.get(hit.entry) else { continue };
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
                        parties.entry(t).or_default().denied_party.get_or_insert(rule);
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
        entries: entries.len(),
        threshold,
        review_threshold: review,
        findings: findings.into(),
        against,
        screener,
    };
    (screening, listed)
}

/// Every tenant's and entity's hits at or above `review`, for those that have any, in subject
/// order, and the screener if it was needed. A tenant segment screened before against the same
/// list gives its hits as they are; a segment not yet screened is screened, and remembers it. Its
/// tenants whose names its file's last version had (`previous`) take their result from there; the
/// others are split over every core, each part screened with its own batch (which remembers
/// look-ups of words its names share). The list is compiled for matching only if some names need
/// it, and a reload against the same list takes the last load's.
fn screen_all(
    entries: &[ListEntry],
    against: [u8; 32],
    tenants: &Tenants,
    entities: &[Vec<String>],
    review: f64,
    previous: Option<&Policy>,
) -> (Hits, Option<Arc<Screener>>) {
    let previous = previous.filter(|p| p.screening.against == against);
    let built = OnceLock::new();
    if let Some(s) = previous.and_then(|p| p.screening.screener.clone()) {
        let _ = built.set(s);
    }
    let screener = || built.get_or_init(|| Arc::new(Screener::new(entries.to_vec())));
    let old: HashMap<&str, &SegmentScreening> = previous
        .map(|p| {
            let screened = p.tenants.segments().iter().filter_map(|s| Some((&*s.relative, s.screened.get()?)));
            screened.filter(|(_, s)| s.against == against).collect()
        })
        .unwrap_or_default();
    // Segments screened before against this list give their hits; the others are screened
    // together, so each core's batch sees all of its share.
    let current = |s: &TenantSegment| s.screened.get().filter(|s| s.against == against).is_some();
    let todo: Vec<&TenantSegment> = tenants.segments().iter().map(|s| &**s).filter(|s| !current(s)).collect();
    let known: Vec<Option<&Memo>> = todo.iter().map(|s| old.get(&*s.relative).map(|o| &o.memo)).collect();
    // In the order of `todo`: the segments not current, in file order.
    let mut fresh = screen_segments(&todo, &known, &screener, review).into_iter();
    let mut hits = Vec::new();
    let mut start = 0;
    for segment in tenants.segments() {
        let own;
        let mut screened = segment.screened.get().filter(|s| s.against == against);
        if screened.is_none()
            && let Some(new) = fresh.next()
        {
            screened = match segment.screened.set(SegmentScreening { against, ..new }) {
                Ok(()) => segment.screened.get(),
                // Screened against another list by a load before: that stays with the segment.
                Err(new) => {
                    own = new;
                    Some(&own)
                }
            };
        }
        hits.extend(screened.into_iter().flat_map(|s| tenant_hits(start, s)));
        start += segment.tenants.len();
    }
    let mut batch = None;
    for (e, names) in entities.iter().enumerate() {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let found = batch.get_or_insert_with(|| screener().batch()).screen(&names, review);
        if !found.is_empty() {
            hits.push((Subject::Entity(e as EntityIdx), found));
        }
    }
    (hits, built.into_inner())
}

/// Hits by subject, for the subjects that have any.
type Hits = Vec<(Subject, Vec<Hit>)>;

fn tenant_hits(start: usize, s: &SegmentScreening) -> impl Iterator<Item = (Subject, Vec<Hit>)> + '_ {
    s.hits.iter().map(move |(k, h)| (Subject::Tenant((start + *k as usize) as TenantIdx), h.clone()))
}

/// Screens the segments' tenants, split over every core; `known` is, per segment, what its file's
/// last version found for name sets it had.
fn screen_segments<'s>(
    segments: &[&TenantSegment],
    known: &[Option<&Memo>],
    screener: &(dyn Fn() -> &'s Arc<Screener> + Sync),
    review: f64,
) -> Vec<SegmentScreening> {
    let items: Vec<(usize, &Tenant)> =
        segments.iter().enumerate().flat_map(|(i, s)| s.tenants.iter().map(move |t| (i, t))).collect();
    let workers = std::thread::available_parallelism().map_or(1, usize::from).max(1);
    let per_worker = items.len().div_ceil(workers).max(1);
    let lookup = |(i, t): (usize, &Tenant), screen: &mut dyn FnMut(&[&str]) -> Vec<Hit>| {
        let names = names(t);
        let digest = names_digest(&names);
        let memo = known.get(i).copied().flatten();
        let seen =
            memo.and_then(|m| if m.clean.contains(&digest) { Some(Vec::new()) } else { m.hits.get(&digest).cloned() });
        (digest, seen.unwrap_or_else(|| screen(&names)))
    };
    let parts: Vec<Vec<(u128, Vec<Hit>)>> = std::thread::scope(|scope| {
        let parts: Vec<_> = items
            .chunks(per_worker)
            .map(|chunk| {
                scope.spawn(move || {
                    let mut batch = None;
                    let mut screen = |n: &[&str]| batch.get_or_insert_with(|| screener().batch()).screen(n, review);
                    chunk.iter().map(|&item| lookup(item, &mut screen)).collect::<Vec<_>>()
                })
            })
            .collect();
        // A part that panicked must not pass as a part with no hits: the load fails instead.
        parts.into_iter().map(|p| p.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    });
    let mut memos: Vec<Memo> = segments.iter().map(|_| Memo::default()).collect();
    let mut hits: Vec<Vec<(u32, Vec<Hit>)>> = segments.iter().map(|_| Vec::new()).collect();
    let mut local = vec![0u32; segments.len()];
    for ((i, _), (digest, found)) in items.iter().zip(parts.into_iter().flatten()) {
        let (Some(memo), Some(hits), Some(k)) = (memos.get_mut(*i), hits.get_mut(*i), local.get_mut(*i)) else {
            continue;
        };
        if found.is_empty() {
            memo.clean.insert(digest);
        } else {
            memo.hits.insert(digest, found.clone());
            hits.push((*k, found));
        }
        *k += 1;
    }
    let out = memos.into_iter().zip(hits);
    out.map(|(memo, hits)| SegmentScreening { against: [0; 32], hits: hits.into(), memo }).collect()
}

/// A digest of a tenant's names, in order: two tenants share one only if they have the same names.
fn names_digest(names: &[&str]) -> u128 {
    let mut h = Sha256::new();
    for n in names {
        h.update((n.len() as u64).to_le_bytes());
        h.update(n.as_bytes());
    }
    let d = h.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&d[..16]);
    u128::from_le_bytes(first)
}

/// A tenant's names to screen: its legal name and aliases.
fn names(t: &Tenant) -> Vec<&str> {
    std::iter::once(&*t.legal_name).chain(t.aliases.iter().map(|a| &**a)).collect()
}
