//! `customs screen`: what denied-party screening found when the config was loaded, as text for
//! the compliance officer who reviews it or as JSON for tooling; and with `--ownership`, each
//! tenant's ownership tree with its review record: the documented investigation Red Flag 29 of the
//! Affiliates rule asks for.

use std::fmt::Write;

use serde::{Serialize, Serializer};
use serde_json::{Value, json};

use crate::policy::{
    Day, EntityIdx, Finding, FindingStatus, Ownership, Policy, Screening, Subject, Tenant, TenantIdx, percent,
};

/// One policy's screening findings against the list it was screened with.
pub struct ScreenReport<'a> {
    policy: &'a Policy,
    list: &'a str,
    screening: &'a Screening,
}

/// The policy's findings; `None` when its config folder names no screening list.
pub fn screen(policy: &Policy) -> Option<ScreenReport<'_>> {
    let screening = policy.screening();
    let list = screening.list.as_deref()?;
    Some(ScreenReport { policy, list, screening })
}

// === impl ScreenReport ===

impl ScreenReport<'_> {
    pub fn render_text(&self) -> String {
        let s = self.screening;
        let list = self.list;
        let mut text = String::new();
        let _ = writeln!(
            text,
            "{list}: {} entries screened against {} tenants{}; blocked at {:.0}, review from {:.0}",
            s.entries,
            self.policy.tenants().len(),
            match self.policy.ownership().entities.len() {
                0 => String::new(),
                n => format!(" and {n} entities"),
            },
            s.threshold,
            s.review_threshold
        );
        for f in s.findings.iter() {
            let _ = writeln!(
                text,
                "{:<8} {:<20} {:>3.0}  {:?} ~ {:?}\n         entry {} ({}), {list}:{}",
                f.status.as_str().to_uppercase(),
                self.tenant(f),
                f.score,
                &*f.query,
                &*f.matched,
                f.entry_id,
                f.source,
                f.list_line
            );
            if let FindingStatus::Cleared { reviewer, date, note } = &f.status {
                let _ = writeln!(text, "         cleared by {reviewer} on {date}: {note}");
            }
        }
        let count = |st: &str, entity: bool| {
            s.findings
                .iter()
                .filter(|f| f.status.as_str() == st && matches!(f.subject, Subject::Entity(_)) == entity)
                .count()
        };
        let _ = writeln!(
            text,
            "{} blocked (denied_party), {} cleared, {} for review",
            count("blocked", false),
            count("cleared", false),
            count("review", false)
        );
        let entities = self.policy.ownership().entities.len();
        if entities > 0 {
            let _ = writeln!(
                text,
                "entities of ownership.toml: {} listed parties, {} cleared, {} for review, of {entities}",
                count("blocked", true),
                count("cleared", true),
                count("review", true)
            );
        }
        text
    }

    pub fn to_json(&self) -> Value {
        let s = self.screening;
        let findings: Vec<_> = s
            .findings
            .iter()
            .map(|f| {
                let mut v = json!({
                    "status": f.status.as_str(), "tenant": self.tenant(f), "name": &*f.query,
                    "matched": &*f.matched, "score": f.score, "entry": &*f.entry_id,
                    "entry_name": &*f.entry_name, "source": &*f.source, "list_line": f.list_line,
                });
                if let FindingStatus::Cleared { reviewer, date, note } = &f.status {
                    v["clearance"] = json!({ "reviewer": &**reviewer, "date": date.to_string(), "note": &**note });
                }
                v
            })
            .collect();
        json!({
            "list": self.list, "entries": s.entries, "threshold": s.threshold,
            "review_threshold": s.review_threshold, "findings": findings,
        })
    }

    /// The tenant's id, or the entity's as `entity:<id>`.
    fn tenant(&self, f: &Finding) -> String {
        match f.subject {
            Subject::Tenant(t) => self.policy.tenant(t).map_or("?", |t| &*t.id).to_owned(),
            Subject::Entity(e) => format!("entity:{}", self.policy.ownership().entity(e).map_or("?", |e| &*e.id)),
        }
    }
}

/// Through a [`Value`], whose objects keep their keys sorted: the order scripts already read.
impl Serialize for ScreenReport<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

/// Every tenant's ownership tree as of `day`: its entity and, indented below each entity, its
/// owners with their percents, what screening made of each, and the share listed parties hold;
/// then its ultimate parent and its KYC record.
pub fn ownership_text(policy: &Policy, day: Day) -> String {
    let o = policy.ownership();
    let findings = &policy.screening().findings;
    let mut text = String::new();
    let rule = if o.applies(day) { "in force" } else { "not in force" };
    let _ = writeln!(
        text,
        "ownership as of {day}: the Affiliates rule ({} and more owned by listed parties) is {rule}",
        percent(o.threshold)
    );
    for t in policy.tenants() {
        let _ = writeln!(text, "\n{} ({}, {})", t.id, t.legal_name, t.country);
        match t.entity {
            Some(e) => {
                tree(&mut text, (o, findings), e, None, 1, &mut Vec::new());
                if let Some(p) = o.entity(o.entity(e).map_or(e, |x| x.ultimate_parent)) {
                    let _ = writeln!(text, "  ultimate parent: {} (headquarters {})", p.id, p.headquarters);
                }
                if let Some(x) = o.entity(e).filter(|x| x.covered) {
                    let state =
                        if o.applies(day) { "refused denied_party" } else { "served while the rule is not in force" };
                    let _ = writeln!(text, "  {}: owned {} by listed parties: {state}", x.id, percent(x.listed_share));
                }
            }
            None => {
                let _ = writeln!(text, "  no entity on file (ownership.toml)");
            }
        }
        let _ = writeln!(text, "  {}", kyc_line(t, day));
    }
    text
}

fn tree(
    text: &mut String,
    (o, findings): (&Ownership, &[Finding]),
    e: EntityIdx,
    pct: Option<f64>,
    depth: usize,
    path: &mut Vec<EntityIdx>,
) {
    let Some(x) = o.entity(e) else { return };
    let status = match (&x.listed_as, x.covered) {
        (Some(l), _) => format!("LISTED: {l}"),
        (None, true) => format!("restricted: {} owned by listed parties", percent(x.listed_share)),
        (None, false) if x.listed_share > 0.0 => format!("{} owned by listed parties", percent(x.listed_share)),
        (None, false) => "no listed owner".to_owned(),
    };
    let held = pct.map_or(String::new(), |p| format!("{} ", percent(p)));
    let indent = "  ".repeat(depth);
    let _ = writeln!(
        text,
        "{indent}{held}{} \"{}\" (incorporated {}, headquarters {}): {status}",
        x.id, x.legal_name, x.incorporated, x.headquarters
    );
    // What a reviewer decided, or has yet to, about a name that resembles a listed one.
    for f in findings.iter().filter(|f| f.subject == Subject::Entity(e)) {
        let seen = format!("{:?} ~ {:?} (score {:.0}, entry {})", &*f.query, &*f.matched, f.score, f.entry_id);
        match &f.status {
            FindingStatus::Cleared { reviewer, date, note } => {
                let _ = writeln!(text, "{indent}  cleared: {seen}, by {reviewer} on {date}: {note}");
            }
            FindingStatus::Review => {
                let _ = writeln!(text, "{indent}  for review: {seen}");
            }
            FindingStatus::Blocked(_) => {}
        }
    }
    // The graph is acyclic (a cycle fails the load); the path guard only bounds a bad policy.
    path.push(e);
    for h in x.owners.iter() {
        if !path.contains(&h.owner) {
            tree(text, (o, findings), h.owner, Some(h.percent), depth + 1, path);
        }
    }
    path.pop();
}

fn kyc_line(t: &Tenant, day: Day) -> String {
    let Some(k) = &t.kyc else { return "KYC: no record on file".to_owned() };
    let evidence = if k.evidence.is_empty() { "none listed".to_owned() } else { k.evidence.join("; ") };
    let state = if day >= k.refused_from {
        format!("LAPSED: refused kyc_expired since {}", k.refused_from)
    } else if day > k.reverify_by {
        format!("in grace: refused from {}", k.refused_from)
    } else {
        format!("current: re-verify by {} ({} days' grace)", k.reverify_by, k.grace_days)
    };
    format!("KYC: verified by {} on {} (evidence: {evidence}); {state}", k.verified_by, k.verified_on)
}

/// [`ownership_text`] as JSON: per tenant its entity tree, ultimate parent and KYC record.
pub fn ownership_json(policy: &Policy, day: Day) -> Value {
    let o = policy.ownership();
    let entity = |e: EntityIdx| {
        o.entity(e).map(|x| {
            json!({
                "id": &*x.id, "legal_name": &*x.legal_name, "incorporated": &*x.incorporated,
                "headquarters": &*x.headquarters, "listed": x.listed_as.as_deref(), "restricted": x.covered,
                "listed_share": x.listed_share,
                "owners": x.owners.iter().map(|h| json!({
                    "entity": o.entity(h.owner).map(|p| &*p.id), "percent": h.percent,
                })).collect::<Vec<_>>(),
            })
        })
    };
    let tenants: Vec<Value> = policy
        .tenants()
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let kyc = t.kyc.as_ref().map(|k| {
                json!({
                    "verified_by": &*k.verified_by, "verified_on": k.verified_on.to_string(),
                    "evidence": k.evidence.iter().map(|e| &**e).collect::<Vec<_>>(),
                    "reverify_by": k.reverify_by.to_string(), "grace_days": k.grace_days,
                    "refused_from": k.refused_from.to_string(), "lapsed": day >= k.refused_from,
                })
            });
            let parent = t.entity.and_then(|e| o.entity(e)).map(|x| x.ultimate_parent);
            json!({
                "tenant": &*t.id, "legal_name": &*t.legal_name, "country": &*t.country,
                "entity": t.entity.and_then(|e| o.entity(e)).map(|x| &*x.id),
                "ultimate_parent": parent.and_then(|p| o.entity(p)).map(|x| &*x.id),
                "affiliated": policy.party(i as TenantIdx).affiliated.is_some(), "kyc": kyc,
            })
        })
        .collect();
    let entities: Vec<Value> = (0..o.entities.len() as EntityIdx).filter_map(entity).collect();
    json!({
        "day": day.to_string(), "threshold": o.threshold, "rule_in_force": o.applies(day),
        "tenants": tenants, "entities": entities,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::policy::{Day, Screening};

    fn finding(policy: &Policy, tenant: &str, score: f64, status: FindingStatus) -> Finding {
        Finding {
            subject: Subject::Tenant(policy.tenant_by_id(tenant).unwrap()),
            query: format!("{tenant} Ltd.").into(),
            entry_id: "E1".into(),
            entry_name: "LISTED LTD".into(),
            source: "Entity List".into(),
            list_line: 7,
            matched: "LISTED LTD".into(),
            score,
            status,
        }
    }

    /// The example policy with one finding of each kind in place of what its list found.
    fn policy() -> Policy {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let mut policy = crate::config::load(&dir, &|_| Some("test".into())).unwrap().policy;
        let cleared = FindingStatus::Cleared {
            reviewer: "j.doe".into(),
            date: Day::parse("2026-11-20").unwrap(),
            note: "Not them.".into(),
        };
        let findings = [
            finding(&policy, "demo-us", 91.0, FindingStatus::Blocked(0)),
            finding(&policy, "demo-de", 100.0, cleared),
            finding(&policy, "demo-cn", 74.6, FindingStatus::Review),
        ];
        policy.screening = Screening {
            list: Some("list.csv".into()),
            entries: 3,
            threshold: 85.0,
            review_threshold: 70.0,
            findings: findings.into(),
            ..Screening::default()
        };
        policy
    }

    #[test]
    fn screen_text_names_each_finding_its_entry_and_the_counts() {
        let policy = policy();
        let text = screen(&policy).unwrap().render_text();
        let tenants = policy.tenants().len();
        let entities = policy.ownership().entities.len();
        let want = format!(
            "list.csv: 3 entries screened against {tenants} tenants and {entities} entities; blocked at 85, review from 70\n\
             BLOCKED  demo-us               91  \"demo-us Ltd.\" ~ \"LISTED LTD\"\n\
             \x20        entry E1 (Entity List), list.csv:7\n\
             CLEARED  demo-de              100  \"demo-de Ltd.\" ~ \"LISTED LTD\"\n\
             \x20        entry E1 (Entity List), list.csv:7\n\
             \x20        cleared by j.doe on 2026-11-20: Not them.\n\
             REVIEW   demo-cn               75  \"demo-cn Ltd.\" ~ \"LISTED LTD\"\n\
             \x20        entry E1 (Entity List), list.csv:7\n\
             1 blocked (denied_party), 1 cleared, 1 for review\n\
             entities of ownership.toml: 0 listed parties, 0 cleared, 0 for review, of {entities}\n"
        );
        assert_eq!(text, want);
    }

    #[test]
    fn screen_json_carries_the_clearance_only_on_cleared_findings() {
        let policy = policy();
        let doc = serde_json::to_value(screen(&policy).unwrap()).unwrap();
        assert_eq!(doc["list"], "list.csv");
        assert_eq!(doc["review_threshold"], 70.0);
        let findings = doc["findings"].as_array().unwrap();
        let statuses: Vec<_> = findings.iter().map(|f| (f["tenant"].as_str(), f["status"].as_str())).collect();
        assert_eq!(
            statuses,
            [(Some("demo-us"), Some("blocked")), (Some("demo-de"), Some("cleared")), (Some("demo-cn"), Some("review"))]
        );
        assert_eq!(findings[1]["clearance"], json!({ "reviewer": "j.doe", "date": "2026-11-20", "note": "Not them." }));
        assert!(findings[0].get("clearance").is_none() && findings[2].get("clearance").is_none());
    }

    #[test]
    fn screen_without_a_list_has_no_report() {
        let mut policy = policy();
        policy.screening = Screening::default();
        assert!(screen(&policy).is_none());
    }
}
