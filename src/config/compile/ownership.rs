//! Compiles `ownership.toml`: the entities, who owns each and by what percent, and the dated
//! Affiliates rule. Done in two steps around screening: [`compile_graph`] checks the graph (unknown
//! owners, shares over 100%, cycles) so that screening can read every entity's names, and
//! [`resolve`] then works out, from what screening listed, how much of each entity listed parties
//! own together, and marks the tenants whose entity reaches the threshold. Nothing of the graph is
//! walked on the request path.

use std::collections::HashMap;

use super::ctx::{Ctx, day_window, entry, valid_country, valid_name};
use crate::config::error::Source;
use crate::config::raw::{OwnershipFile, RawTenant};
use crate::policy::{
    Also, AppliesBy, Entity, EntityIdx, Holding, Jurisdiction, Ownership, Party, RuleId, Tenant, TenantIdx, Tenants,
    Window, percent,
};

/// Shares are percents written by people; sums within this of a bound count as on it.
const EPSILON: f64 = 1e-9;

/// The checked graph, before screening.
pub(super) struct Graph {
    pub ownership: Ownership,
    /// Each entity's legal name and aliases, for screening.
    pub names: Vec<Vec<String>>,
    /// False when the graph has a cycle: nothing is resolved (the config does not load anyway).
    acyclic: bool,
}

pub(super) fn compile_graph(ctx: &mut Ctx, src: &Source, file: &OwnershipFile) -> Graph {
    let mut ownership = Ownership::default();
    if let Some(r) = &file.affiliates_rule {
        let raw = r.get_ref();
        let threshold = *raw.threshold.get_ref();
        if !(threshold > 0.0 && threshold <= 100.0) {
            ctx.err(src, Some(raw.threshold.span()), "affiliates_rule.threshold", "must be above 0 and at most 100");
        }
        let window = day_window(
            ctx,
            src,
            "affiliates_rule",
            ("effective_from", raw.effective_from.as_ref()),
            ("until", raw.until.as_ref()),
        )
        .unwrap_or(Window::ALWAYS);
        let detail = format!(
            "the Affiliates rule: an entity listed parties own {} or more of together is restricted like them, \
             in force {window}",
            percent(threshold)
        );
        ownership.rule = Some(ctx.rule(src, r.span(), "affiliates_rule".into(), detail));
        let mut suspensions: Vec<(Window, RuleId)> = Vec::new();
        for (i, s) in raw.suspensions.iter().enumerate() {
            let key = format!("affiliates_rule.suspensions[{i}]");
            let sr = s.get_ref();
            let w = day_window(
                ctx,
                src,
                &key,
                ("effective_from", sr.effective_from.as_ref()),
                ("until", sr.until.as_ref()),
            );
            let reason = sr.reason.get_ref().trim();
            if reason.is_empty() {
                ctx.err(src, Some(sr.reason.span()), format!("{key}.reason"), "must say why the rule is suspended");
            }
            let Some(w) = w else { continue };
            if let Some((other, _)) = suspensions.iter().find(|(o, _)| o.overlaps(w)) {
                ctx.err(src, Some(s.span()), key.clone(), format!("overlaps the suspension {other}"));
            }
            let rule = ctx.rule(src, s.span(), key, format!("the Affiliates rule is suspended {w}: {reason}"));
            suspensions.push((w, rule));
        }
        ownership.threshold = threshold;
        ownership.window = window;
        ownership.suspensions = suspensions.into();
    }

    let mut names = Vec::new();
    let mut entities = Vec::new();
    for (i, e) in file.entities.iter().enumerate() {
        let raw = e.get_ref();
        let id = raw.id.get_ref().as_str();
        let key = entry("entities", i, id);
        if !valid_name(id) {
            ctx.err(src, Some(raw.id.span()), format!("{key}.id"), "must be printable ASCII without spaces");
        }
        let idx = entities.len() as EntityIdx;
        if ownership.entity_ids.insert(id.into(), idx).is_some() {
            ctx.err(src, Some(raw.id.span()), format!("{key}.id"), format!("entity {id:?} is defined twice"));
        }
        if raw.legal_name.trim().is_empty() {
            ctx.err(src, Some(raw.id.span()), format!("{key}.legal_name"), "must not be empty");
        }
        for (field, c) in [("incorporated", &raw.incorporated), ("headquarters", &raw.headquarters)] {
            if !valid_country(c.get_ref()) {
                let msg = format!("{:?} is not an ISO 3166-1 alpha-2 code such as \"US\"", c.get_ref());
                ctx.err(src, Some(c.span()), format!("{key}.{field}"), msg);
            }
        }
        names.push(std::iter::once(raw.legal_name.clone()).chain(raw.aliases.iter().cloned()).collect());
        entities.push(Entity {
            id: id.into(),
            legal_name: raw.legal_name.as_str().into(),
            incorporated: raw.incorporated.get_ref().as_str().into(),
            headquarters: raw.headquarters.get_ref().as_str().into(),
            owners: Box::default(),
            listed: None,
            listed_as: None,
            listed_share: 0.0,
            covered: false,
            ultimate_parent: idx,
            line: src.position(&e.span()).0,
        });
    }
    for (i, e) in file.entities.iter().enumerate() {
        let raw = e.get_ref();
        let key = entry("entities", i, raw.id.get_ref());
        let mut owners: Vec<Holding> = Vec::new();
        let mut total = 0.0;
        for (k, o) in raw.owners.iter().enumerate() {
            let ok = format!("{key}.owners[{k}]");
            let (name, pct) = (o.get_ref().entity.get_ref().as_str(), *o.get_ref().percent.get_ref());
            if !(pct > 0.0 && pct <= 100.0) {
                let span = Some(o.get_ref().percent.span());
                ctx.err(src, span, format!("{ok}.percent"), "must be above 0 and at most 100");
                continue;
            }
            let Some(&owner) = ownership.entity_ids.get(name) else {
                let msg = format!("unknown entity {name:?}; every owner is an entity of this file");
                ctx.err(src, Some(o.get_ref().entity.span()), format!("{ok}.entity"), msg);
                continue;
            };
            if owner as usize == i {
                ctx.err(src, Some(o.span()), ok, "an entity cannot own itself");
                continue;
            }
            if owners.iter().any(|h| h.owner == owner) {
                ctx.err(src, Some(o.span()), ok, format!("{name:?} is listed twice; give its whole share once"));
                continue;
            }
            total += pct;
            owners.push(Holding { owner, percent: pct });
        }
        if total > 100.0 + EPSILON {
            let msg = format!("owners hold {} together; at most 100%", percent(total));
            ctx.err(src, Some(raw.id.span()), format!("{key}.owners"), msg);
        }
        if let Some(entity) = entities.get_mut(i) {
            entity.owners = owners.into();
        }
    }
    ownership.entities = entities.into();
    let acyclic = check_cycles(ctx, src, &ownership, file);
    if acyclic {
        ultimate_parents(&mut ownership);
    }
    Graph { ownership, names, acyclic }
}

/// Reports each cycle once, at the entity it was found from, spelled out.
fn check_cycles(ctx: &mut Ctx, src: &Source, o: &Ownership, file: &OwnershipFile) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let n = o.entities.len();
    let mut mark = vec![Mark::New; n];
    let mut acyclic = true;
    for start in 0..n {
        if mark[start] != Mark::New {
            continue;
        }
        // Iterative depth-first search up the owner edges, with the path kept for the message.
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        mark[start] = Mark::Open;
        while let Some(&mut (e, ref mut next)) = path.last_mut() {
            let owners = &o.entities[e].owners;
            if let Some(h) = owners.get(*next) {
                *next += 1;
                let up = h.owner as usize;
                match mark[up] {
                    Mark::New => {
                        mark[up] = Mark::Open;
                        path.push((up, 0));
                    }
                    Mark::Open => {
                        acyclic = false;
                        let from = path.iter().position(|&(p, _)| p == up).unwrap_or(0);
                        let mut names: Vec<&str> = path[from..].iter().map(|&(p, _)| &*o.entities[p].id).collect();
                        names.push(&o.entities[up].id);
                        let raw = file.entities.get(up).map(|x| x.get_ref().id.span());
                        let key = format!("{}.owners", entry("entities", up, &o.entities[up].id));
                        let msg = format!("ownership cycle: {} (each is owned by the next)", names.join(" -> "));
                        ctx.err(src, raw, key, msg);
                    }
                    Mark::Done => {}
                }
            } else {
                mark[e] = Mark::Done;
                path.pop();
            }
        }
    }
    acyclic
}

/// The jurisdictions, which one covers each country, and the ownership graph, for
/// [`bind_tenant`].
pub(super) struct Binding<'a> {
    pub jurisdictions: &'a [Jurisdiction],
    pub coverage: &'a dyn Fn(&str) -> Option<u32>,
    pub ownership: &'a Ownership,
}

/// A tenant's `entity` (an entity of `ownership.toml`), and whether its bound jurisdiction is
/// one that applies to it: by its own country, or by its ultimate parent's headquarters where the
/// jurisdiction says so. When both apply and differ, the other becomes the tenant's `also`.
pub(super) fn bind_tenant(
    ctx: &mut Ctx,
    src: &Source,
    key: &dyn std::fmt::Display,
    t: &mut Tenant,
    r: &RawTenant,
    b: &Binding<'_>,
) {
    let ownership = b.ownership;
    let name = |j: u32| b.jurisdictions.get(j as usize).map_or("?", |j| &*j.id);
    if let Some(e) = &r.entity {
        match ownership.entity_by_id(e.get_ref()) {
            Some(idx) => t.entity = Some(idx),
            None => {
                let msg = format!("unknown entity {:?}; entities are defined in ownership.toml", e.get_ref());
                ctx.err(src, Some(e.span()), format!("{key}.entity"), msg);
            }
        }
    }
    // A bad country code, an uncovered country or an unknown jurisdiction is reported by the
    // tenants compiler already.
    let known = b.jurisdictions.iter().any(|j| *j.id == **r.jurisdiction.get_ref());
    let Some(own) = (b.coverage)(&t.country).filter(|_| known && valid_country(&t.country)) else { return };
    let parent = t.entity.and_then(|e| ownership.entity(e)).map(|e| e.ultimate_parent);
    let by_hq = parent
        .and_then(|p| ownership.entity(p).map(|x| (p, x)))
        .and_then(|(p, x)| (b.coverage)(&x.headquarters).map(|j| (j, p)));
    let applies = |j: u32, f: fn(AppliesBy) -> bool| b.jurisdictions.get(j as usize).is_some_and(|x| f(x.applies_by));
    let mut applicable: Vec<(u32, Option<EntityIdx>)> = Vec::new();
    if applies(own, AppliesBy::by_country) {
        applicable.push((own, None));
    }
    if let Some((j, p)) = by_hq.filter(|&(j, _)| applies(j, AppliesBy::by_headquarters)) {
        if !applicable.iter().any(|&(a, _)| a == j) {
            applicable.push((j, Some(p)));
        }
    }
    let why = |(j, p): (u32, Option<EntityIdx>)| match p.and_then(|p| ownership.entity(p)) {
        None => format!("{:?} (its country {})", name(j), t.country),
        Some(p) => format!("{:?} (headquarters of its ultimate parent {}, {})", name(j), p.id, p.headquarters),
    };
    let span = Some(r.jurisdiction.span());
    match applicable.iter().position(|&(j, _)| j == t.jurisdiction) {
        Some(at) => {
            t.also = applicable
                .iter()
                .enumerate()
                .find(|&(k, _)| k != at)
                .map(|(_, &(jurisdiction, parent))| Also { jurisdiction, parent });
        }
        None if applicable.len() == 1 && applicable[0].1.is_none() => {
            let msg = format!(
                "country {} belongs to jurisdiction {:?}, not {:?}",
                t.country,
                name(own),
                name(t.jurisdiction)
            );
            ctx.err(src, span, format!("{key}.jurisdiction"), msg);
        }
        None if applicable.is_empty() => {
            let msg = format!(
                "no jurisdiction applies: country {} belongs to {:?}, which applies by headquarters only, and the \
                 tenant's ultimate parent (ownership.toml) is not headquartered there",
                t.country,
                name(own)
            );
            ctx.err(src, span, format!("{key}.jurisdiction"), msg);
        }
        None => {
            let list: Vec<String> = applicable.iter().map(|&a| why(a)).collect();
            let verb = if list.len() > 1 { "do" } else { "does" };
            let msg =
                format!("{:?} does not apply to this tenant; {} {verb}", name(t.jurisdiction), list.join(" and "));
            ctx.err(src, span, format!("{key}.jurisdiction"), msg);
        }
    }
}

/// With what screening listed (one entry per entity), each entity's share owned by listed parties
/// and whether it is covered; a tenant whose own entity is listed is a denied party, one whose
/// entity is covered is `affiliated`, with the chains in its rule.
pub(super) fn resolve(
    ctx: &mut Ctx,
    src: &Source,
    mut graph: Graph,
    listed: Vec<Option<(RuleId, String)>>,
    tenants: &Tenants,
    parties: &mut HashMap<TenantIdx, Party>,
) -> Ownership {
    let o = &mut graph.ownership;
    for (e, l) in o.entities.iter_mut().zip(listed) {
        if let Some((rule, label)) = l {
            e.listed = Some(rule);
            e.listed_as = Some(label.into());
        }
    }
    if !graph.acyclic {
        return graph.ownership;
    }
    // Owners before what they own, so each share is computed from final figures.
    let order = owners_first(o);
    for e in order {
        let share: f64 = o.entities[e]
            .owners
            .iter()
            .map(|h| {
                let owner = &o.entities[h.owner as usize];
                let weight = if owner.listed.is_some() || owner.covered { 1.0 } else { owner.listed_share / 100.0 };
                h.percent * weight
            })
            .sum();
        let entity = &mut o.entities[e];
        entity.listed_share = share.min(100.0);
        entity.covered = entity.listed.is_none() && share + EPSILON >= o.threshold;
    }
    // One rule per covered entity, whichever of its tenants cites it.
    let mut affiliated: Vec<Option<RuleId>> = vec![None; o.entities.len()];
    for (i, t) in tenants.iter().enumerate() {
        let Some(e) = t.entity else { continue };
        let Some(entity) = o.entity(e) else { continue };
        if let Some(rule) = entity.listed {
            parties.entry(i as TenantIdx).or_default().denied_party.get_or_insert(rule);
        } else if entity.covered {
            let rule = *affiliated[e as usize].get_or_insert_with(|| {
                ctx.rule_at(&src.name, entity.line, entry("entities", e as usize, &entity.id), o.explain(e))
            });
            parties.entry(i as TenantIdx).or_default().affiliated = Some(rule);
        }
    }
    graph.ownership
}

/// Each entity's ultimate parent: up through owners holding more than half, to an entity no
/// single owner holds more than half of (itself when none does).
fn ultimate_parents(o: &mut Ownership) {
    for e in 0..o.entities.len() {
        let mut at = e;
        // Acyclic, so this ends within as many steps as there are entities.
        for _ in 0..o.entities.len() {
            match o.entities[at].owners.iter().find(|h| h.percent > 50.0) {
                Some(h) => at = h.owner as usize,
                None => break,
            }
        }
        o.entities[e].ultimate_parent = at as EntityIdx;
    }
}

/// A topological order of an acyclic graph, owners first.
fn owners_first(o: &Ownership) -> Vec<usize> {
    let n = o.entities.len();
    let mut done = vec![false; n];
    let mut order = Vec::with_capacity(n);
    for start in 0..n {
        let mut stack = vec![(start, false)];
        while let Some((e, expanded)) = stack.pop() {
            if done[e] {
                continue;
            }
            if expanded {
                done[e] = true;
                order.push(e);
                continue;
            }
            stack.push((e, true));
            stack.extend(o.entities[e].owners.iter().map(|h| (h.owner as usize, false)).filter(|&(x, _)| !done[x]));
        }
    }
    order
}
