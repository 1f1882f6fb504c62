//! Who owns the tenants, resolved at load: every entity of `ownership.toml` with its owners, what
//! screening found on its names, and how much of it listed parties own together. The request path
//! reads only the `affiliated` rule of a tenant's [`super::Party`] and [`Ownership::applies`]; the
//! graph is for `customs screen --ownership` and `customs explain`.

use std::collections::HashMap;

use super::{Day, RuleId, Window};

/// An index into [`Ownership::entities`].
pub type EntityIdx = u32;

#[derive(Debug)]
pub struct Ownership {
    /// Percent owned by listed parties, together, at or above which an entity is restricted.
    pub threshold: f64,
    /// The days the rule is in force, before suspensions.
    pub window: Window,
    /// Windows in which it is suspended, each with the rule that says so.
    pub suspensions: Box<[(Window, RuleId)]>,
    /// The `[affiliates_rule]` block, when the file has one.
    pub rule: Option<RuleId>,
    pub entities: Box<[Entity]>,
    pub(crate) entity_ids: HashMap<Box<str>, EntityIdx>,
}

impl Default for Ownership {
    fn default() -> Self {
        Self {
            threshold: 50.0,
            window: Window::ALWAYS,
            suspensions: Box::default(),
            rule: None,
            entities: Box::default(),
            entity_ids: HashMap::new(),
        }
    }
}

#[derive(Debug)]
pub struct Entity {
    pub id: Box<str>,
    pub legal_name: Box<str>,
    pub incorporated: Box<str>,
    pub headquarters: Box<str>,
    pub owners: Box<[Holding]>,
    /// The screening-list entry its names match, when not cleared: a listed party itself.
    pub listed: Option<RuleId>,
    /// That entry's list and id, as explanations name it.
    pub listed_as: Option<Box<str>>,
    /// Percent of it that listed parties own together, directly and through other entities.
    pub listed_share: f64,
    /// Owned by listed parties at or above the threshold (and not listed itself).
    pub covered: bool,
    /// Up through owners holding more than half; itself when no owner does.
    pub ultimate_parent: EntityIdx,
    /// The entity's line in `ownership.toml`.
    pub line: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct Holding {
    pub owner: EntityIdx,
    pub percent: f64,
}

/// One chain from a listed (or covered) owner down to an entity: the owner first, then each
/// entity it holds with the percent held, and the share of the last the chain amounts to.
#[derive(Debug, PartialEq)]
pub struct Chain {
    pub links: Vec<(EntityIdx, f64)>,
    pub owner: EntityIdx,
    pub share: f64,
}

// === impl Ownership ===

impl Ownership {
    /// Whether the rule is in force on `day`: inside its window and no suspension covers it.
    pub fn applies(&self, day: Day) -> bool {
        self.window.contains(day) && !self.suspensions.iter().any(|(w, _)| w.contains(day))
    }

    /// The suspension in force on `day`, if any.
    pub fn suspension(&self, day: Day) -> Option<RuleId> {
        self.suspensions.iter().find(|(w, _)| w.contains(day)).map(|&(_, r)| r)
    }

    pub fn entity(&self, e: EntityIdx) -> Option<&Entity> {
        self.entities.get(e as usize)
    }

    pub fn entity_by_id(&self, id: &str) -> Option<EntityIdx> {
        self.entity_ids.get(id).copied()
    }

    /// Whether an entity counts in full toward what it owns: listed, or covered itself.
    fn counts_whole(&self, e: EntityIdx) -> bool {
        self.entity(e).is_some_and(|x| x.listed.is_some() || x.covered)
    }

    /// Every chain by which listed parties own part of `e`, largest share first. A chain stops
    /// at the first listed or covered owner, which counts in full; through any other owner it
    /// continues upward and the percents multiply. Their shares add up to `e`'s listed share.
    pub fn chains(&self, e: EntityIdx) -> Vec<Chain> {
        let mut out = Vec::new();
        self.walk(e, &mut vec![], 1.0, &mut out);
        out.sort_by(|a, b| b.share.total_cmp(&a.share));
        out
    }

    fn walk(&self, e: EntityIdx, below: &mut Vec<(EntityIdx, f64)>, factor: f64, out: &mut Vec<Chain>) {
        let Some(entity) = self.entity(e) else { return };
        for h in entity.owners.iter() {
            below.push((e, h.percent));
            let share = factor * h.percent / 100.0;
            if self.counts_whole(h.owner) {
                let links = below.iter().rev().copied().collect();
                out.push(Chain { links, owner: h.owner, share: share * 100.0 });
            } else if self.entity(h.owner).is_some_and(|o| o.listed_share > 0.0) {
                self.walk(h.owner, below, share, out);
            }
            below.pop();
        }
    }

    /// A chain as one line: `owner [why] -100%-> holding -60%-> entity = 60%`.
    pub fn describe(&self, chain: &Chain) -> String {
        let name = |e: EntityIdx| self.entity(e).map_or("?", |x| &*x.id);
        let why = match self.entity(chain.owner) {
            Some(Entity { listed_as: Some(l), .. }) => format!("listed: {l}"),
            Some(o) => format!("restricted, {} owned by listed parties", percent(o.listed_share)),
            None => String::new(),
        };
        let mut s = format!("{} [{why}]", name(chain.owner));
        for &(e, pct) in &chain.links {
            s.push_str(&format!(" -{}-> {}", percent(pct), name(e)));
        }
        s.push_str(&format!(" = {}", percent(chain.share)));
        s
    }

    /// Why `e` is owned by listed parties as much as it is: its chains, then the chains of every
    /// restricted owner they stop at, and so on up to the listed parties themselves.
    pub fn explain(&self, e: EntityIdx) -> String {
        let Some(entity) = self.entity(e) else { return String::new() };
        let mut out = format!(
            "{} is {} owned by listed parties together (the Affiliates rule restricts {} and more): ",
            entity.id,
            percent(entity.listed_share),
            percent(self.threshold)
        );
        let mut queue = vec![e];
        let mut seen = vec![e];
        let mut first = true;
        while let Some(x) = queue.pop() {
            let chains = self.chains(x);
            if !first {
                let xe = self.entity(x).map_or("?", |x| &*x.id);
                let share = self.entity(x).map_or(0.0, |x| x.listed_share);
                out.push_str(&format!(". {xe} counts whole, being {} owned by listed parties: ", percent(share)));
            }
            first = false;
            let lines: Vec<String> = chains.iter().map(|c| self.describe(c)).collect();
            out.push_str(&lines.join("; "));
            for c in &chains {
                if self.entity(c.owner).is_some_and(|o| o.listed.is_none()) && !seen.contains(&c.owner) {
                    seen.push(c.owner);
                    queue.insert(0, c.owner);
                }
            }
        }
        out
    }
}

/// A percent as a compliance officer writes it: `60%`, `37.5%`, `33.33%`.
pub fn percent(p: f64) -> String {
    let rounded = (p * 100.0).round() / 100.0;
    if rounded.fract() == 0.0 { format!("{rounded:.0}%") } else { format!("{rounded}%") }
}
