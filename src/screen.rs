//! `customs screen`: what denied-party screening found when the config was loaded, as text for
//! the compliance officer who reviews it or as JSON for tooling.

use std::fmt::Write;

use serde::{Serialize, Serializer};
use serde_json::{Value, json};

use crate::policy::{Finding, FindingStatus, Policy, Screening, Subject};

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
