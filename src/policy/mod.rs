//! The compiled policy: an immutable snapshot of tenants, models, jurisdictions and endpoints with
//! every pattern and threshold already resolved into per-(jurisdiction, model) verdicts, and the one
//! function, [`Policy::decide`], that the server and `customs explain` both call.
//!
//! Evaluation order (default deny; the first rule that refuses decides). "Today" is the day
//! decided for; every dated rule is read as of that day:
//! 1. tenant suspended (`status`, or a suspension window covering today)
//! 2. tenant matches a restricted-party list entry (`denied_party`), unless cleared; or, while the
//!    Affiliates rule is in force, listed parties own it together at or above its threshold
//!    then its know-your-customer record is past re-verification and grace (`kyc_expired`)
//! 3. the version of the tenant's jurisdiction in force today is embargoed
//! 4. model name unknown (exact match on id or alias; no case folding or trimming)
//! 5. no version of the jurisdiction in force today; else its `deny_models` (beats any allow),
//!    then `allow_models` (no match = deny)
//! 6. tenant `allow_models` (may only narrow)
//! 7. jurisdiction `max_training_flops`
//! 8. end-use declaration (required, in force yet, expired, purpose declared)
//! 9. endpoint residency

mod date;
pub mod expect;
mod ownership;
mod screening;
mod table;
mod tenants;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use http::HeaderValue;
use serde::Deserialize;

pub use crate::ids::{EndpointIdx, ModelIdx, RuleId, TenantIdx};
pub use crate::reason::Denial;
use crate::route::Operation;
pub use date::{Day, DayClock, Window};
pub use ownership::{Chain, Entity, EntityIdx, Holding, Ownership, percent};
pub use screening::{Finding, FindingStatus, Screening, Subject};
pub(crate) use screening::{Memo, SegmentScreening};
pub(crate) use table::{Cell, EndpointRun, Row, TableBuilder, VerdictTable};
pub(crate) use tenants::Parties;
pub use tenants::{Party, TenantSegment, Tenants};

use crate::auth::KeyIndex;
use crate::endpoint::Endpoint;
use crate::limits::LimitSpec;

/// One immutable policy version, built by `config::load`. A reload builds a new one; the request
/// path reaches it through the [`crate::snapshot::Snapshot`] that carries it.
pub struct Policy {
    pub(crate) version: Box<str>,
    pub(crate) version_header: HeaderValue,
    pub(crate) models: Box<[Model]>,
    pub(crate) model_names: HashMap<Box<str>, ModelIdx>,
    pub(crate) jurisdictions: Box<[Jurisdiction]>,
    pub(crate) tenants: Tenants,
    pub(crate) tenant_ids: TenantIds,
    pub(crate) keys: KeyIndex,
    /// What each jurisdiction version's rules say about each model.
    pub(crate) verdicts: VerdictTable,
    pub(crate) endpoints: Box<[Endpoint]>,
    pub(crate) rules: Box<[Rule]>,
    /// What screening and ownership found against tenants.
    pub(crate) parties: Parties,
    /// A digest of the files every tenant is compiled against: a reload reuses the segments of
    /// unchanged tenant files only while it is the same.
    pub(crate) tenant_inputs: [u8; 32],
    pub(crate) screening: Screening,
    pub(crate) ownership: Ownership,
    /// Per tenant: refused while this replica cannot confirm the cluster's kill switch
    /// (`[cluster] fail_closed` names its jurisdiction).
    pub(crate) cluster_fail_closed: Box<[bool]>,
}

pub struct Model {
    pub id: Box<str>,
    pub aliases: Box<[Box<str>]>,
    pub training_flops: f64,
    pub compute_basis: ComputeBasis,
    pub parameters: Option<f64>,
    /// The most tokens one completion can have: what a response without reported usage is
    /// charged when the request set no `max_tokens`.
    pub max_output_tokens: Option<u64>,
    pub developer: Option<Box<str>>,
    /// The operations it serves, one bit per [`Operation::index`]; unset in models.toml: all that
    /// its endpoints' kinds serve.
    pub(crate) operations: u8,
}

impl Model {
    /// Whether a request for `op` may be sent to this model at all.
    pub fn serves(&self, op: Operation) -> bool {
        self.operations & (1 << op.index()) != 0
    }
}

/// Where a training-compute figure comes from, so an auditor can weigh it. `models.toml` spells it
/// as here, so config deserializes it directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComputeBasis {
    DeveloperReported,
    EpochEstimate,
    #[serde(rename = "derived-6nd")]
    Derived6nd,
    /// No public figure; the value is a policy assumption and says so.
    Assumed,
    /// A made-up model, shipped so the deny path can be seen.
    Fictional,
}

impl ComputeBasis {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DeveloperReported => "developer-reported",
            Self::EpochEstimate => "epoch-estimate",
            Self::Derived6nd => "derived-6nd",
            Self::Assumed => "assumed",
            Self::Fictional => "fictional",
        }
    }
}

/// Which of a tenant's countries puts it in a jurisdiction. `jurisdictions.toml` spells it as
/// here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AppliesBy {
    /// The tenant's own `country`.
    #[default]
    Country,
    /// The headquarters of the tenant's ultimate parent (`ownership.toml`).
    Headquarters,
    /// Either: a tenant whose own country is elsewhere still answers to this jurisdiction when
    /// its ultimate parent is headquartered here, and to its own country's as well.
    CountryOrHeadquarters,
}

impl AppliesBy {
    pub fn by_country(self) -> bool {
        matches!(self, Self::Country | Self::CountryOrHeadquarters)
    }

    pub fn by_headquarters(self) -> bool {
        matches!(self, Self::Headquarters | Self::CountryOrHeadquarters)
    }
}

/// What tenants bind to: one id, and the versions of its rules over time. A tenant's binding never
/// changes with the date; which version's rules apply does.
pub struct Jurisdiction {
    pub id: Box<str>,
    pub applies_by: AppliesBy,
    /// Every day from [`Day::MIN`] to [`Day::MAX`], in order and without overlap: the versions,
    /// and the gaps between them in which none is in force. Almost always one period long.
    pub(crate) periods: Box<[Period]>,
}

/// A run of days in a jurisdiction's timeline.
pub struct Period {
    pub window: Window,
    pub(crate) in_force: InForce,
}

pub(crate) enum InForce {
    Version(JurisdictionVersion),
    /// No version covers these days, so nothing is allowed (default deny). The rule names the
    /// dates that bound the gap.
    Nothing(RuleId),
}

/// One `[[jurisdictions]]` block: its row of verdicts and the rules that are the same for every
/// model.
pub(crate) struct JurisdictionVersion {
    pub(crate) row: Row,
    /// The block itself, with the days it is in force.
    pub(crate) rule: RuleId,
    pub(crate) embargoed: Option<RuleId>,
    pub(crate) threshold_rule: RuleId,
    pub(crate) declaration_rule: RuleId,
    pub(crate) residency_rule: RuleId,
}

/// Tenants by id. The ids are shared with the tenants, so a reload that keeps a million tenants
/// copies none.
pub(crate) type TenantIds = HashMap<Arc<str>, TenantIdx, foldhash::fast::RandomState>;

pub struct Tenant {
    pub id: Arc<str>,
    pub legal_name: Box<str>,
    /// Other names it trades under, screened with its legal name.
    pub aliases: Box<[Box<str>]>,
    pub country: Box<str>,
    pub jurisdiction: u32,
    /// `status = "suspended"`: from now on, until the status changes. The line of its `status`.
    pub suspended: Option<Line>,
    /// A scheduled suspension, `[tenants.suspension]`.
    pub suspension: Option<Suspension>,
    /// Its entity in `ownership.toml`, when it names one.
    pub entity: Option<EntityIdx>,
    pub declaration: Option<Declaration>,
    /// A second jurisdiction the tenant answers to, by its ultimate parent's headquarters
    /// (`applies_by`): a request is served only when both allow it.
    pub also: Option<Also>,
    /// Its know-your-customer record, when one is on file.
    pub kyc: Option<Kyc>,
    pub allowlist: Option<ModelSet>,
    pub limits: LimitSpec,
    /// Where its entry is in its file: the entry's index and its line.
    pub(crate) entry: u32,
    pub(crate) entry_line: u32,
}

pub struct Suspension {
    pub window: Window,
    pub reason: Box<str>,
    pub(crate) line: Line,
}

pub struct Declaration {
    pub id: Box<str>,
    /// First day on which the declaration counts; [`Day::MIN`] when it names none.
    pub effective_from: Day,
    /// Last day on which the declaration is valid.
    pub expires: Day,
    pub purposes: Box<[Box<str>]>,
    pub(crate) line: Line,
    /// The line of `effective_from`, cited when a request comes before it.
    pub(crate) pending_line: Option<Line>,
}

/// The second jurisdiction of a tenant, and why it applies.
pub struct Also {
    pub jurisdiction: u32,
    /// The ultimate parent whose headquarters put the tenant there, or `None` when the tenant's
    /// own country did (its bound jurisdiction then applying by its parent).
    pub parent: Option<EntityIdx>,
}

/// Who verified a tenant, when and on what evidence; refused once `refused_from` comes.
pub struct Kyc {
    pub verified_by: Box<str>,
    pub verified_on: Day,
    /// References (registry numbers, document ids), never the documents.
    pub evidence: Box<[Box<str>]>,
    pub reverify_by: Day,
    pub grace_days: u32,
    /// The first day after `reverify_by` and its grace.
    pub refused_from: Day,
    pub(crate) line: Line,
}

/// A tenant's own allowlist of models as a bitset, with its line.
pub struct ModelSet {
    pub(crate) bits: Box<[u64]>,
    pub(crate) line: Line,
}

/// A line of a tenant file.
pub type Line = u32;

/// The rules a tenant's own entry makes. They are not compiled into the policy's rules: each is
/// spelled out from the tenant when asked for ([`Policy::rule`]), so that a tenant's rules never
/// depend on the tenants before it, and a provider's million tenants cost no rule each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum TenantRule {
    Status,
    Suspension,
    AllowModels,
    EndUse,
    EndUsePending,
    Kyc,
    /// No end-use declaration on file.
    NoDeclaration,
}

impl TenantRule {
    /// Rule ids per tenant; the tenants' ids follow the compiled rules.
    const PER_TENANT: u32 = 8;
    const ALL: [Self; 7] = [
        Self::Status,
        Self::Suspension,
        Self::AllowModels,
        Self::EndUse,
        Self::EndUsePending,
        Self::Kyc,
        Self::NoDeclaration,
    ];
}

/// The most tenants a policy holds: each has [`TenantRule::PER_TENANT`] rule ids of a `u32`.
pub const MAX_TENANTS: usize = 1 << 28;

// === impl Jurisdiction ===

impl Jurisdiction {
    /// The version (or gap) in force on `day`.
    pub fn period(&self, day: Day) -> Option<&Period> {
        self.periods.iter().find(|p| p.window.contains(day))
    }

    /// Its timeline: every version and every gap between them, in date order.
    pub fn periods(&self) -> &[Period] {
        &self.periods
    }

    /// Whether its rules change with the date: a version is staged, ends, or starts later.
    pub fn is_dated(&self) -> bool {
        self.periods.len() > 1
    }
}

// === impl Period ===

impl Period {
    /// The version's block (with the days it is in force), or the rule that names the gap.
    pub fn rule(&self) -> RuleId {
        match &self.in_force {
            InForce::Version(v) => v.rule,
            InForce::Nothing(rule) => *rule,
        }
    }

    /// Whether a version is in force, rather than none.
    pub fn has_version(&self) -> bool {
        matches!(self.in_force, InForce::Version(_))
    }
}

// === impl ModelSet ===

impl ModelSet {
    pub fn contains(&self, m: ModelIdx) -> bool {
        let m = m as usize;
        self.bits.get(m / 64).is_some_and(|w| w & (1 << (m % 64)) != 0)
    }
}

/// What the server says of an `x-customs-purpose` it refuses (400) before any policy applies.
pub const PURPOSE_FORMAT: &str = "x-customs-purpose must be one purpose id (lowercase letters, digits and '-').";

/// Whether a stated purpose is well formed: the server refuses anything else with 400, and
/// `customs explain` says so rather than decide it.
pub fn valid_purpose(p: &[u8]) -> bool {
    !p.is_empty() && p.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// Where a decision came from: a file, a line and the key that decided, for `explain` and audits.
#[derive(Clone)]
pub struct Rule {
    pub file: Box<str>,
    pub line: usize,
    pub key: Box<str>,
    pub detail: Box<str>,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {} ({})", self.file, self.line, self.key, self.detail)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict<'p> {
    Allow { endpoints: &'p [EndpointIdx] },
    Deny(Denial),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'p> {
    /// The resolved model, once the name was known.
    pub model: Option<ModelIdx>,
    pub verdict: Verdict<'p>,
    /// The rule that decided; `None` only for an unknown model, which no rule names.
    pub rule: Option<RuleId>,
}

// === impl Policy ===

impl Policy {
    /// Set by `config::load` once every tenant file has been read, since the version covers them.
    pub(crate) fn set_version(&mut self, version: String) {
        self.version_header = HeaderValue::try_from(version.as_str()).unwrap_or(HeaderValue::from_static("unknown"));
        self.version = version.into();
    }

    /// Decide one request. Pure: the same inputs always give the same answer.
    pub fn decide(&self, tenant: TenantIdx, model_name: &str, purpose: Option<&str>, today: Day) -> Decision<'_> {
        let first = self.decide_in(tenant, None, model_name, purpose, today);
        // A refusal stands; only an allow is asked again, of a tenant with a second jurisdiction.
        let Verdict::Allow { endpoints: a } = first.verdict else { return first };
        let Some(also) = self.tenants.get(tenant).and_then(|t| t.also.as_ref()) else { return first };
        // Most restrictive: the second jurisdiction must allow it too, and the request goes only
        // where both allow.
        let second = self.decide_in(tenant, Some(also.jurisdiction), model_name, purpose, today);
        match second.verdict {
            Verdict::Deny(_) => second,
            Verdict::Allow { endpoints: b } if b.iter().all(|e| a.contains(e)) => second,
            Verdict::Allow { endpoints: b } if a.iter().all(|e| b.contains(e)) => first,
            Verdict::Allow { .. } => {
                // Neither list holds the other: refused rather than routed by a list built per
                // request (residencies that nest avoid it; `customs check` cannot see it coming).
                let rule =
                    self.jurisdictions.get(also.jurisdiction as usize).and_then(|j| j.period(today)).and_then(|p| {
                        match &p.in_force {
                            InForce::Version(v) => Some(v.residency_rule),
                            InForce::Nothing(_) => None,
                        }
                    });
                Decision { model: second.model, verdict: Verdict::Deny(Denial::NoResidentEndpoint), rule }
            }
        }
    }

    /// [`Self::decide`] in one of the tenant's jurisdictions: its bound one (`None`) or another.
    #[inline]
    fn decide_in(
        &self,
        tenant: TenantIdx,
        jurisdiction: Option<u32>,
        model_name: &str,
        purpose: Option<&str>,
        today: Day,
    ) -> Decision<'_> {
        let deny = |model, reason, rule| Decision { model, verdict: Verdict::Deny(reason), rule };
        let (t, version) = match self.tenant_steps(tenant, jurisdiction, today) {
            Ok(passed) => passed,
            Err((reason, rule)) => return deny(None, reason, rule),
        };
        let Some(&m) = self.model_names.get(model_name) else {
            return deny(None, Denial::ModelNotFound, None);
        };
        let model = Some(m);
        let region = match version {
            Ok(v) => v,
            // No version is in force today, so no allow_models list is either: the model is
            // refused as any model no allow pattern matches is (`model_not_allowed`, default
            // deny). Not `jurisdiction_embargoed`: an embargo is a legal fact that compliance
            // reports count, a gap is a state of the config. Nor a new code, which clients,
            // dashboards and alerts would have to learn. The rule names the gap's dates, so
            // `explain` says why.
            Err(rule) => return deny(model, Denial::ModelNotAllowed, rule),
        };
        let Some(v) = self.verdicts.get(region.row, m) else {
            return deny(model, Denial::ModelNotAllowed, None);
        };
        if v.denied_by_pattern() {
            return deny(model, Denial::ModelNotAllowed, Some(v.pattern_rule()));
        }
        if let Some(set) = &t.allowlist {
            if !set.contains(m) {
                return deny(model, Denial::ModelNotAllowed, Some(self.tenant_rule(tenant, TenantRule::AllowModels)));
            }
        }
        if v.over_threshold() {
            return deny(model, Denial::ComputeThresholdExceeded, Some(region.threshold_rule));
        }
        // Before its effective_from a declaration does not count: the tenant is refused as if it
        // had none on file, and the refusal names the day the declaration starts.
        let (declaration, absent_rule) = match &t.declaration {
            Some(d) if today < d.effective_from => (None, Some(self.tenant_rule(tenant, TenantRule::EndUsePending))),
            d => (d.as_ref(), None),
        };
        if v.needs_declaration() {
            match declaration {
                None => {
                    let rule = absent_rule.unwrap_or(region.declaration_rule);
                    return deny(model, Denial::EndUseDeclarationRequired, Some(rule));
                }
                Some(d) if today > d.expires => {
                    return deny(
                        model,
                        Denial::EndUseDeclarationExpired,
                        Some(self.tenant_rule(tenant, TenantRule::EndUse)),
                    );
                }
                Some(_) => {}
            }
        }
        if let Some(p) = purpose {
            match declaration {
                Some(d) if today > d.expires => {
                    return deny(
                        model,
                        Denial::EndUseDeclarationExpired,
                        Some(self.tenant_rule(tenant, TenantRule::EndUse)),
                    );
                }
                Some(d) if d.purposes.iter().any(|dp| &**dp == p) => {}
                Some(_) => {
                    return deny(model, Denial::PurposeNotDeclared, Some(self.tenant_rule(tenant, TenantRule::EndUse)));
                }
                None => {
                    let rule = absent_rule.unwrap_or(self.tenant_rule(tenant, TenantRule::NoDeclaration));
                    return deny(model, Denial::PurposeNotDeclared, Some(rule));
                }
            }
        }
        let endpoints = self.verdicts.endpoints(v);
        if endpoints.is_empty() {
            return deny(model, Denial::NoResidentEndpoint, Some(region.residency_rule));
        }
        Decision { model, verdict: Verdict::Allow { endpoints }, rule: Some(v.pattern_rule()) }
    }

    /// The refusal [`Self::decide`] gives `tenant` today whatever the model: suspended, a
    /// restricted party, verification lapsed, or an embargoed jurisdiction (steps 2 to 4). The gateway asks before
    /// reading a request's body, so a refused tenant cannot make it hold one.
    pub fn tenant_refusal(&self, tenant: TenantIdx, today: Day) -> Option<(Denial, Option<RuleId>)> {
        let (t, _) = match self.tenant_steps(tenant, None, today) {
            Ok(passed) => passed,
            Err(refused) => return Some(refused),
        };
        let also = t.also.as_ref()?;
        self.tenant_steps(tenant, Some(also.jurisdiction), today).err()
    }

    /// Steps 2 to 4: the tenant, and the version of its jurisdiction in force today (or the rule
    /// that says none is), once they passed.
    #[expect(clippy::type_complexity, reason = "one private step of decide, named by its parts")]
    #[inline]
    fn tenant_steps(
        &self,
        tenant: TenantIdx,
        jurisdiction: Option<u32>,
        today: Day,
    ) -> Result<(&Tenant, Result<&JurisdictionVersion, Option<RuleId>>), (Denial, Option<RuleId>)> {
        let Some(t) = self.tenants.get(tenant) else {
            return Err((Denial::TenantSuspended, None));
        };
        if t.suspended.is_some() {
            return Err((Denial::TenantSuspended, Some(self.tenant_rule(tenant, TenantRule::Status))));
        }
        if let Some(s) = &t.suspension {
            if s.window.contains(today) {
                return Err((Denial::TenantSuspended, Some(self.tenant_rule(tenant, TenantRule::Suspension))));
            }
        }
        let party = self.parties.get(tenant);
        if let Some(rule) = party.denied_party {
            return Err((Denial::DeniedParty, Some(rule)));
        }
        if let Some(rule) = party.affiliated.filter(|_| self.ownership.applies(today)) {
            return Err((Denial::DeniedParty, Some(rule)));
        }
        if t.kyc.as_ref().is_some_and(|k| today >= k.refused_from) {
            return Err((Denial::KycExpired, Some(self.tenant_rule(tenant, TenantRule::Kyc))));
        }
        let j = jurisdiction.unwrap_or(t.jurisdiction);
        let version = match self.jurisdictions.get(j as usize).and_then(|j| j.period(today)) {
            Some(Period { in_force: InForce::Version(v), .. }) => Ok(v),
            Some(Period { in_force: InForce::Nothing(rule), .. }) => Err(Some(*rule)),
            None => Err(None),
        };
        if let Ok(JurisdictionVersion { embargoed: Some(rule), .. }) = version {
            return Err((Denial::JurisdictionEmbargoed, Some(*rule)));
        }
        Ok((t, version))
    }

    /// The models a tenant may use today without naming a purpose, in catalog order.
    pub fn allowed_models(&self, tenant: TenantIdx, today: Day) -> impl Iterator<Item = &Model> {
        self.models
            .iter()
            .filter(move |m| matches!(self.decide(tenant, &m.id, None, today).verdict, Verdict::Allow { .. }))
    }

    /// The version of the tenant's jurisdiction in force on `day` (or the gap in which none is).
    pub fn period(&self, t: &Tenant, day: Day) -> Option<&Period> {
        self.jurisdiction(t).and_then(|j| j.period(day))
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn version_header(&self) -> &HeaderValue {
        &self.version_header
    }

    pub fn tenant_by_id(&self, id: &str) -> Option<TenantIdx> {
        self.tenant_ids.get(id).copied()
    }

    /// Whether the tenant is refused while this replica's view of the cluster is stale.
    pub fn cluster_fail_closed(&self, t: TenantIdx) -> bool {
        self.cluster_fail_closed.get(t as usize).copied().unwrap_or(true)
    }

    #[inline]
    pub fn tenant(&self, t: TenantIdx) -> Option<&Tenant> {
        self.tenants.get(t)
    }

    pub fn tenants(&self) -> &Tenants {
        &self.tenants
    }

    /// What screening and ownership found against a tenant.
    pub fn party(&self, t: TenantIdx) -> Party {
        self.parties.get(t)
    }

    pub fn model(&self, m: ModelIdx) -> Option<&Model> {
        self.models.get(m as usize)
    }

    pub fn models(&self) -> &[Model] {
        &self.models
    }

    pub fn jurisdiction(&self, t: &Tenant) -> Option<&Jurisdiction> {
        self.jurisdictions.get(t.jurisdiction as usize)
    }

    pub fn jurisdictions(&self) -> &[Jurisdiction] {
        &self.jurisdictions
    }

    pub fn endpoint(&self, e: EndpointIdx) -> Option<&Endpoint> {
        self.endpoints.get(e as usize)
    }

    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// A rule by id. Ids past the compiled rules are the tenants' own ([`TenantRule`]), spelled
    /// out from the tenant's entry when asked for.
    pub fn rule(&self, r: RuleId) -> Option<Cow<'_, Rule>> {
        if let Some(rule) = self.rules.get(r as usize) {
            return Some(Cow::Borrowed(rule));
        }
        let past = r.checked_sub(u32::try_from(self.rules.len()).ok()?)?;
        let (segment, tenant) = self.tenants.locate(past / TenantRule::PER_TENANT)?;
        let kind = *TenantRule::ALL.get((past % TenantRule::PER_TENANT) as usize)?;
        let key = |field: &str| format!("tenants[{}] ({}).{field}", tenant.entry, tenant.id).into();
        let (line, key, detail): (Line, Box<str>, String) = match kind {
            TenantRule::Status => (tenant.suspended?, key("status"), "status = \"suspended\"".into()),
            TenantRule::Suspension => {
                let s = tenant.suspension.as_ref()?;
                (s.line, key("suspension"), format!("suspended {}: {}", s.window, s.reason))
            }
            TenantRule::AllowModels => (
                tenant.allowlist.as_ref()?.line,
                key("allow_models"),
                "the tenant's own allowlist does not include the model".into(),
            ),
            TenantRule::EndUse => {
                let d = tenant.declaration.as_ref()?;
                let valid = Window { from: d.effective_from, until: d.expires };
                let purposes: Vec<&str> = d.purposes.iter().map(|p| &**p).collect();
                (d.line, key("end_use"), format!("declaration {} valid {valid}, purposes {purposes:?}", d.id))
            }
            TenantRule::EndUsePending => {
                let d = tenant.declaration.as_ref()?;
                let detail =
                    format!("declaration {} does not count before {}: as if none were on file", d.id, d.effective_from);
                (d.pending_line?, key("end_use.effective_from"), detail)
            }
            TenantRule::Kyc => {
                let k = tenant.kyc.as_ref()?;
                let grace = if k.grace_days > 0 { format!(" and {} days' grace", k.grace_days) } else { String::new() };
                let detail = format!(
                    "verified by {} on {}; re-verification due by {}{grace}: from {} the tenant is refused",
                    k.verified_by, k.verified_on, k.reverify_by, k.refused_from
                );
                (k.line, key("kyc"), detail)
            }
            TenantRule::NoDeclaration => {
                (tenant.entry_line, key("end_use"), "no end-use declaration on file: no purpose is declared".into())
            }
        };
        Some(Cow::Owned(Rule { file: segment.name.clone(), line: line as usize, key, detail: detail.into() }))
    }

    /// The id of one of a tenant's own rules.
    fn tenant_rule(&self, t: TenantIdx, kind: TenantRule) -> RuleId {
        // Within range: a policy holds at most MAX_TENANTS tenants, and its compiled rules are
        // few next to them.
        (self.rules.len() as RuleId).wrapping_add(t.wrapping_mul(TenantRule::PER_TENANT)).wrapping_add(kind as u32)
    }

    pub fn screening(&self) -> &Screening {
        &self.screening
    }

    pub fn ownership(&self) -> &Ownership {
        &self.ownership
    }

    pub fn keys(&self) -> &KeyIndex {
        &self.keys
    }
}
