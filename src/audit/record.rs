//! What goes into the trail. The request path hands over indices into its policy snapshot and
//! plain numbers; names, rules and times are turned into text on the writer thread, so recording
//! a decision costs the request no formatting.
//!
//! A decision line (field order is stable; readers must ignore fields they do not know):
//! `seq, prev, type="decision", time, request_id, tenant, tenant_country, jurisdiction, model,
//! requested_model, training_flops, purpose, decision, reason, status, rule, endpoint, residency,
//! policy_version, usage{prompt_tokens,completion_tokens,total_tokens}, flops, latency_ms, hash`.
//! Keys and prompt or completion content are never part of a record.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::policy::{EndpointIdx, ModelIdx, RuleId, TenantIdx};
use crate::proxy::metered::Usage;
use crate::reason::Reason;
use crate::snapshot::Snapshot;

/// Which rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleRef {
    /// A rule of the compiled policy (file, line, key).
    Policy(RuleId),
    /// The admin kill switch, described by the snapshot's suspension record for the tenant.
    KillSwitch,
}

/// A request id copied inline (ids are at most 128 bytes), so recording one does not allocate.
#[derive(Clone, Copy)]
pub struct RequestIdBuf {
    len: u8,
    bytes: [u8; 128],
}

impl RequestIdBuf {
    pub fn new(id: &[u8]) -> Self {
        let mut bytes = [0u8; 128];
        let len = id.len().min(128);
        bytes[..len].copy_from_slice(&id[..len]);
        Self { len: len as u8, bytes }
    }

    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).ok().filter(|s| !s.is_empty())
    }
}

/// One decided request, allow or deny.
pub struct DecisionRecord {
    pub time: SystemTime,
    pub request_id: RequestIdBuf,
    /// The snapshot the request was decided under; names and rules are read from it.
    pub snapshot: Arc<Snapshot>,
    pub tenant: Option<TenantIdx>,
    pub model: Option<ModelIdx>,
    /// The name the client sent, kept only when it did not resolve to a catalog model.
    pub requested_model: Option<Box<str>>,
    pub purpose: Option<Box<str>>,
    pub reason: Reason,
    pub status: u16,
    pub rule: Option<RuleRef>,
    pub endpoint: Option<EndpointIdx>,
    pub usage: Option<Usage>,
    pub flops: Option<f64>,
    pub latency: Duration,
}

/// What an allowed request's record holds before its response ends; the rest (tenant, model,
/// endpoint, snapshot) is the settlement's, and usage and latency come at the end.
pub struct OpenRecord {
    pub time: SystemTime,
    pub request_id: RequestIdBuf,
    pub purpose: Option<Box<str>>,
    pub rule: Option<RuleRef>,
    pub status: u16,
}

/// An operator action: reload, suspension, reinstatement.
pub struct AdminRecord {
    pub time: SystemTime,
    pub kind: &'static str,
    pub fields: serde_json::Map<String, serde_json::Value>,
}

pub enum Event {
    Decision(Box<DecisionRecord>),
    Admin(AdminRecord),
}

#[derive(Serialize)]
struct UsageLine {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

#[derive(Serialize)]
struct DecisionLine<'a> {
    seq: u64,
    prev: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    time: Stamp,
    request_id: Option<&'a str>,
    tenant: Option<&'a str>,
    tenant_country: Option<&'a str>,
    jurisdiction: Option<&'a str>,
    model: Option<&'a str>,
    requested_model: Option<&'a str>,
    training_flops: Option<f64>,
    purpose: Option<&'a str>,
    decision: &'static str,
    reason: &'static str,
    status: u16,
    rule: Option<RuleText<'a>>,
    endpoint: Option<&'a str>,
    residency: Option<&'a str>,
    policy_version: &'a str,
    usage: Option<UsageLine>,
    flops: Option<f64>,
    latency_ms: f64,
}

#[derive(Serialize)]
struct AdminLine<'a> {
    seq: u64,
    prev: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    time: Stamp,
    #[serde(flatten)]
    fields: &'a serde_json::Map<String, serde_json::Value>,
}

pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

/// A time written straight into the line, RFC 3339 UTC with microseconds.
struct Stamp(SystemTime);

impl Serialize for Stamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_micros(self.0))
    }
}

/// The deciding rule, written straight into the line.
enum RuleText<'a> {
    Policy(&'a crate::policy::Rule),
    KillSwitch(&'a crate::admin::killswitch::Suspension),
}

impl Serialize for RuleText<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Policy(r) => s.collect_str(r),
            Self::KillSwitch(k) => s.collect_str(&k.describe()),
        }
    }
}

impl Event {
    /// Appends the record's JSON object, without its hash, to `out`.
    pub fn write_body(&self, seq: u64, prev: &str, out: &mut Vec<u8>) {
        let start = out.len();
        let written = match self {
            Self::Decision(d) => serde_json::to_writer(&mut *out, &d.line(seq, prev)),
            Self::Admin(a) => serde_json::to_writer(
                &mut *out,
                &AdminLine { seq, prev, kind: a.kind, time: Stamp(a.time), fields: &a.fields },
            ),
        };
        if written.is_err() {
            // Serializing plain strings and numbers cannot fail; still, a record always chains.
            out.truncate(start);
            out.extend_from_slice(format!("{{\"seq\":{seq},\"prev\":\"{prev}\"}}").as_bytes());
        }
    }
}

impl DecisionRecord {
    fn line<'a>(&'a self, seq: u64, prev: &'a str) -> DecisionLine<'a> {
        let s = &self.snapshot;
        let policy = &s.policy;
        let tenant = self.tenant.and_then(|t| policy.tenant(t));
        let model = self.model.and_then(|m| policy.model(m));
        let endpoint = self.endpoint.and_then(|e| policy.endpoint(e));
        let rule = match self.rule {
            Some(RuleRef::Policy(r)) => policy.rule(r).map(RuleText::Policy),
            Some(RuleRef::KillSwitch) => tenant.and_then(|t| s.suspensions.get(&t.id)).map(RuleText::KillSwitch),
            None => None,
        };
        DecisionLine {
            seq,
            prev,
            kind: "decision",
            time: Stamp(self.time),
            request_id: self.request_id.as_str(),
            tenant: tenant.map(|t| &*t.id),
            tenant_country: tenant.map(|t| &*t.country),
            jurisdiction: tenant.and_then(|t| policy.jurisdiction(t)).map(|j| &*j.id),
            model: model.map(|m| &*m.id),
            requested_model: self.requested_model.as_deref(),
            training_flops: model.map(|m| m.training_flops),
            purpose: self.purpose.as_deref(),
            decision: self.reason.decision().as_str(),
            reason: self.reason.as_str(),
            status: self.status,
            rule,
            endpoint: endpoint.map(|e| &*e.url),
            residency: endpoint.map(|e| &*e.residency),
            policy_version: policy.version(),
            usage: self.usage.map(|u| UsageLine {
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
                total_tokens: u.prompt_tokens + u.completion_tokens,
            }),
            flops: self.flops,
            latency_ms: self.latency.as_secs_f64() * 1000.0,
        }
    }
}
