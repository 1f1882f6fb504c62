//! `customs explain`: runs [`Policy::decide`], the very function the server calls, for one
//! tenant, model and purpose, and says which rule in which file decided.

use serde::Serialize;

use crate::error::GatewayError;
use crate::policy::{Day, PURPOSE_FORMAT, Policy, Rule, Verdict, valid_purpose};
use crate::reason::Reason;

#[derive(Debug, Serialize)]
pub struct Explanation {
    pub tenant: String,
    pub legal_name: String,
    pub country: String,
    pub jurisdiction: String,
    /// When the jurisdiction's rules are dated: the version in force on `date` (its block, with
    /// the days it is in force), or the rule saying none is. `None` for an undated jurisdiction.
    pub jurisdiction_version: Option<RuleRef>,
    pub model: String,
    /// The catalog id the name resolved to, when it is known.
    pub resolved_model: Option<String>,
    pub training_flops: Option<f64>,
    pub compute_basis: Option<&'static str>,
    pub purpose: Option<String>,
    pub date: String,
    pub decision: &'static str,
    /// The reason code for a denial; `None` when allowed.
    pub reason: Option<&'static str>,
    pub status: u16,
    pub rule: Option<RuleRef>,
    /// Set when the server would refuse the request itself (400) before deciding it: why.
    pub invalid_request: Option<&'static str>,
    /// Endpoints that may serve the request, in the order they are tried.
    pub endpoints: Vec<EndpointRef>,
    pub policy_version: String,
}

#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct RuleRef {
    pub file: String,
    pub line: usize,
    pub key: String,
    pub detail: String,
}

impl From<&Rule> for RuleRef {
    fn from(r: &Rule) -> Self {
        Self { file: r.file.to_string(), line: r.line, key: r.key.to_string(), detail: r.detail.to_string() }
    }
}

#[derive(Debug, Serialize)]
pub struct EndpointRef {
    pub url: String,
    pub residency: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error("unknown tenant {0:?}")]
    UnknownTenant(String),
}

pub fn explain(
    policy: &Policy,
    tenant_id: &str,
    model: &str,
    purpose: Option<&str>,
    at: Day,
) -> Result<Explanation, ExplainError> {
    let t_idx = policy.tenant_by_id(tenant_id).ok_or_else(|| ExplainError::UnknownTenant(tenant_id.to_owned()))?;
    let tenant = policy.tenant(t_idx).ok_or_else(|| ExplainError::UnknownTenant(tenant_id.to_owned()))?;
    let invalid_request = purpose.filter(|p| !valid_purpose(p.as_bytes())).map(|_| PURPOSE_FORMAT);
    let d = policy.decide(t_idx, model, purpose, at);
    let resolved = d.model.and_then(|m| policy.model(m));
    let dated = policy.jurisdiction(tenant).is_some_and(|j| j.is_dated());
    let version = policy.period(tenant, at).filter(|_| dated).and_then(|p| policy.rule(p.rule()));
    let version = version.as_deref();
    let (decision, reason, status, endpoints) = match (invalid_request, d.verdict) {
        (Some(_), _) => ("deny", Some(Reason::InvalidRequest.as_str()), 400, &[][..]),
        (None, Verdict::Allow { endpoints }) => ("allow", None, 200, endpoints),
        (None, Verdict::Deny(denial)) => {
            ("deny", Some(denial.code()), GatewayError::Policy(denial).status().as_u16(), &[][..])
        }
    };
    Ok(Explanation {
        tenant: tenant.id.to_string(),
        legal_name: tenant.legal_name.to_string(),
        country: tenant.country.to_string(),
        jurisdiction: policy.jurisdiction(tenant).map(|j| j.id.to_string()).unwrap_or_default(),
        jurisdiction_version: version.map(RuleRef::from),
        model: model.to_owned(),
        resolved_model: resolved.map(|m| m.id.to_string()),
        training_flops: resolved.map(|m| m.training_flops),
        compute_basis: resolved.map(|m| m.compute_basis.as_str()),
        purpose: purpose.map(str::to_owned),
        date: at.to_string(),
        decision,
        reason,
        status,
        rule: d.rule.filter(|_| invalid_request.is_none()).and_then(|r| policy.rule(r)).map(|r| RuleRef::from(&*r)),
        invalid_request,
        endpoints: endpoints
            .iter()
            .filter_map(|&e| policy.endpoint(e))
            .map(|e| EndpointRef { url: e.url.to_string(), residency: e.residency.to_string() })
            .collect(),
        policy_version: policy.version().to_owned(),
    })
}

impl Explanation {
    pub fn render_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let verdict = match self.reason {
            None => "ALLOW".to_owned(),
            Some(code) => format!("DENY {code} (HTTP {})", self.status),
        };
        let _ = writeln!(s, "{verdict}");
        let _ = writeln!(
            s,
            "  tenant:       {} ({}, {}), jurisdiction {}",
            self.tenant, self.legal_name, self.country, self.jurisdiction
        );
        // Said once: when no version is in force, that gap is also what decided.
        if let Some(v) = self.jurisdiction_version.as_ref().filter(|v| self.rule.as_ref() != Some(*v)) {
            let _ = writeln!(s, "  version:      {}:{}: {}\n                {}", v.file, v.line, v.key, v.detail);
        }
        match (&self.resolved_model, self.training_flops) {
            (Some(id), Some(f)) => {
                let basis = self.compute_basis.unwrap_or("-");
                let _ = writeln!(s, "  model:        {} -> {id}, trained with {f:e} FLOPs ({basis})", self.model);
            }
            _ => {
                let _ = writeln!(s, "  model:        {} (not in the catalog)", self.model);
            }
        }
        if let Some(p) = &self.purpose {
            let _ = writeln!(s, "  purpose:      {p}");
        }
        let _ = writeln!(s, "  date:         {}", self.date);
        match (self.invalid_request, &self.rule) {
            (Some(why), _) => {
                let _ = writeln!(
                    s,
                    "  decided by:   the server refuses the request before any policy\n                {why}"
                );
            }
            (None, Some(r)) => {
                let _ = writeln!(s, "  decided by:   {}:{}: {}\n                {}", r.file, r.line, r.key, r.detail);
            }
            (None, None) => {
                let _ = writeln!(s, "  decided by:   default deny (no rule names this model)");
            }
        }
        for e in &self.endpoints {
            let _ = writeln!(s, "  endpoint:     {} ({})", e.url, e.residency);
        }
        let _ = writeln!(s, "  policy:       {}", self.policy_version);
        s
    }
}
