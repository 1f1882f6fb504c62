//! What goes into the trail. The request path hands over indices into its snapshot's policy and
//! plain numbers; names, rules and times are turned into text by the writer task, so recording
//! a decision costs the request no formatting.
//!
//! Every request has a decision line, written before the request is answered or forwarded; a
//! forwarded one (`status` null) has an outcome line too, when it ends. Field order is stable;
//! readers must ignore fields they do not know:
//! - `seq, prev, type="decision", time, request_id, operation, tenant, tenant_country, jurisdiction, model,
//!   requested_model, training_flops, purpose, decision, reason, status, rule, policy_version,
//!   latency_ms, hash`;
//! - `seq, prev, type="outcome", time, request_id, decision_seq, tenant, tenant_country,
//!   jurisdiction, model, training_flops, outcome, status, endpoint, residency, policy_version,
//!   usage{prompt_tokens,completion_tokens,total_tokens}, flops, latency_ms, hash`.
//!
//! Keys and prompt or completion content are never part of a record.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::ids::{EndpointIdx, ModelIdx, RuleId, TenantIdx};
use crate::policy::{Model, Policy, Tenant};
use crate::reason::Reason;
use crate::request_id::RequestIdBuf;
use crate::snapshot::Snapshot;
use crate::usage::Usage;

/// Which rule decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleRef {
    /// A rule of the compiled policy (file, line, key).
    Policy(RuleId),
    /// The admin kill switch, described by the snapshot's suspension record for the tenant.
    KillSwitch,
    /// Cluster mode: the replica could not confirm the cluster's kill switch in time.
    ClusterStale,
}

/// One decided request, allow or deny, as it was decided: before any upstream saw it.
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
    /// What the request asked for: one of [`crate::route::OPERATION_LABELS`], `None` when its
    /// path routes nowhere.
    pub operation: Option<&'static str>,
    pub reason: Reason,
    /// The status the gateway answered with itself; `None` when the request is forwarded, and
    /// its outcome record says how that ended.
    pub status: Option<u16>,
    pub rule: Option<RuleRef>,
    /// From arrival to the decision.
    pub latency: Duration,
}

/// Follows, record by record, which forwarded requests have their decision on record and their
/// outcome not yet: `open` maps each such decision's `seq` to its request id.
pub fn track_outcomes(open: &mut BTreeMap<u64, Option<String>>, seq: u64, record: &serde_json::Value) {
    let field = |name: &str| record.get(name);
    let id = || field("request_id").and_then(serde_json::Value::as_str).map(str::to_owned);
    match field("type").and_then(serde_json::Value::as_str) {
        // Forwarded: its own status is null, and an outcome record is due.
        Some("decision") if field("decision") == Some(&"allow".into()) && field("status") == Some(&().into()) => {
            open.insert(seq, id());
        }
        Some("outcome") => match field("decision_seq").and_then(serde_json::Value::as_u64) {
            Some(decision) => {
                open.remove(&decision);
            }
            // The request stopped waiting before it learnt its decision's seq.
            None => {
                let id = id();
                if let Some(k) = open.iter().find(|(_, r)| **r == id).map(|(k, _)| *k) {
                    open.remove(&k);
                }
            }
        },
        _ => {}
    }
}

/// Declares [`Outcome`] from one list, so its variants, [`Outcome::ALL`] and the codes written
/// to the trail (and read back by the report) cannot drift apart.
macro_rules! outcomes {
    ($($(#[doc = $doc:literal])* $variant:ident => $code:literal,)+) => {
        /// How a forwarded request ended.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Outcome {
            $($(#[doc = $doc])* $variant,)+
        }

        impl Outcome {
            pub const ALL: [Outcome; [$(Outcome::$variant),+].len()] = [$(Outcome::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)+
                }
            }
        }
    };
}

outcomes! {
    /// The response reached its end.
    Completed => "completed",
    /// The client went away before the response ended.
    ClientDisconnected => "client_disconnected",
    /// The upstream could not be reached, refused the gateway, or failed partway through.
    UpstreamError => "upstream_error",
    /// The upstream sent no response head in time.
    UpstreamTimeout => "upstream_timeout",
    /// Cut when the shutdown grace period ran out.
    ShutdownCut => "shutdown_cut",
    /// A stream the upstream left silent past `upstream.stream_idle_timeout`.
    StreamIdleTimeout => "stream_idle_timeout",
    /// A stream still running at `upstream.stream_max_duration`.
    StreamMaxDuration => "stream_max_duration",
    /// Never forwarded: its decision could not be written (`audit_unavailable`), or every
    /// endpoint that may serve it was ejected or full (`upstream_overloaded`).
    NotForwarded => "not_forwarded",
    /// The gateway panicked while handling it (`internal_error`), before or after forwarding.
    GatewayFailed => "gateway_failed",
}

impl Outcome {
    /// The outcome a trail line names.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == code)
    }

    /// Whether any of a response reached the client, given whether its head was sent: an
    /// upstream that failed after its head served part of a response.
    pub fn served(self, head_sent: bool) -> bool {
        match self {
            Self::UpstreamTimeout | Self::NotForwarded | Self::GatewayFailed => false,
            Self::UpstreamError => head_sent,
            Self::Completed
            | Self::ClientDisconnected
            | Self::ShutdownCut
            | Self::StreamIdleTimeout
            | Self::StreamMaxDuration => true,
        }
    }
}

/// The end of a forwarded request: what was served and what it cost.
pub struct OutcomeRecord {
    pub time: SystemTime,
    pub request_id: RequestIdBuf,
    /// The `seq` of the request's decision record, when the request learnt it.
    pub decision_seq: Option<u64>,
    pub snapshot: Arc<Snapshot>,
    pub tenant: Option<TenantIdx>,
    pub model: Option<ModelIdx>,
    pub outcome: Outcome,
    /// The response status the client got, when a response head was sent.
    pub status: Option<u16>,
    pub endpoint: Option<EndpointIdx>,
    pub usage: Option<Usage>,
    /// What the tenant's limits were charged, when anything.
    pub charged: Option<Charged>,
    pub flops: Option<f64>,
    /// From arrival to the end.
    pub latency: Duration,
}

/// Tokens charged to a tenant for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charged {
    pub tokens: u64,
    /// `false` when the upstream reported no usage and the worst case was charged.
    pub metered: bool,
}

/// An operator action: reload, suspension, reinstatement.
pub struct AdminRecord {
    pub time: SystemTime,
    pub kind: &'static str,
    pub fields: serde_json::Map<String, serde_json::Value>,
}

pub enum Event {
    Decision(Box<DecisionRecord>),
    Outcome(Box<OutcomeRecord>),
    Admin(AdminRecord),
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

impl Event {
    /// Appends the record's JSON object, without its hash, to `out`.
    pub fn write_body(&self, seq: u64, prev: &str, out: &mut Vec<u8>) {
        match self {
            Self::Decision(d) => d.write_line(seq, prev, out),
            Self::Outcome(o) => o.write_line(seq, prev, out),
            Self::Admin(a) => {
                let start = out.len();
                let line = AdminLine { seq, prev, kind: a.kind, time: Stamp(a.time), fields: &a.fields };
                if serde_json::to_writer(&mut *out, &line).is_err() {
                    // Serializing plain strings and numbers cannot fail; still, a record always
                    // chains.
                    out.truncate(start);
                    out.extend_from_slice(format!("{{\"seq\":{seq},\"prev\":\"{prev}\"}}").as_bytes());
                }
            }
        }
    }
}

impl DecisionRecord {
    /// Writes the line member by member instead of through a derived `Serialize`: the keys are
    /// literals, and serde_json writes only the values. The derive's per-field machinery (every
    /// key escaped again, the time through a formatting adapter) was a large share of the cost of
    /// sealing a record (`audit/seal_decision` in BENCHMARKS.md measures it).
    fn write_line(&self, seq: u64, prev: &str, out: &mut Vec<u8>) {
        let s = &self.snapshot;
        let policy = &s.policy;
        let tenant = self.tenant.and_then(|t| policy.tenant(t));
        let model = self.model.and_then(|m| policy.model(m));
        let mut l = Line(out);
        l.head(seq, prev, b"decision", self.time);
        l.member(b",\"request_id\":", self.request_id.as_str());
        l.member(b",\"operation\":", self.operation);
        l.who(policy, tenant, model);
        l.member(b",\"requested_model\":", self.requested_model.as_deref());
        l.member(b",\"training_flops\":", model.map(|m| m.training_flops));
        l.member(b",\"purpose\":", self.purpose.as_deref());
        l.member(b",\"decision\":", self.reason.decision().as_str());
        l.member(b",\"reason\":", self.reason.as_str());
        l.member(b",\"status\":", self.status);
        match self.rule {
            Some(RuleRef::Policy(r)) => l.display(b",\"rule\":", policy.rule(r)),
            Some(RuleRef::KillSwitch) => {
                l.display(b",\"rule\":", tenant.and_then(|t| s.suspensions.get(&t.id)).map(|k| k.describe()));
            }
            Some(RuleRef::ClusterStale) => {
                l.member(
                    b",\"rule\":",
                    "gateway.toml [cluster] fail_closed: kill switch not confirmed within max_staleness",
                );
            }
            None => l.member(b",\"rule\":", ()),
        }
        l.member(b",\"policy_version\":", policy.version());
        l.member(b",\"latency_ms\":", self.latency.as_secs_f64() * 1000.0);
        l.0.push(b'}');
    }
}

impl OutcomeRecord {
    /// Self-contained like a decision line (tenant, model, policy version again), so a reader
    /// can total usage from outcome lines alone; `decision_seq` ties it to its decision.
    fn write_line(&self, seq: u64, prev: &str, out: &mut Vec<u8>) {
        let policy = &self.snapshot.policy;
        let tenant = self.tenant.and_then(|t| policy.tenant(t));
        let model = self.model.and_then(|m| policy.model(m));
        let endpoint = self.endpoint.and_then(|e| policy.endpoint(e));
        let mut l = Line(out);
        l.head(seq, prev, b"outcome", self.time);
        l.member(b",\"request_id\":", self.request_id.as_str());
        l.member(b",\"decision_seq\":", self.decision_seq);
        l.who(policy, tenant, model);
        l.member(b",\"training_flops\":", model.map(|m| m.training_flops));
        l.member(b",\"outcome\":", self.outcome.as_str());
        l.member(b",\"status\":", self.status);
        l.member(b",\"endpoint\":", endpoint.map(|e| &*e.url));
        l.member(b",\"residency\":", endpoint.map(|e| &*e.residency));
        l.member(b",\"policy_version\":", policy.version());
        l.member(
            b",\"usage\":",
            self.usage.map(|u| UsageLine {
                prompt_tokens: u.prompt_tokens,
                completion_tokens: u.completion_tokens,
                total_tokens: u.prompt_tokens.saturating_add(u.completion_tokens),
            }),
        );
        l.member(b",\"charged_tokens\":", self.charged.map(|c| c.tokens));
        l.member(b",\"metered\":", self.charged.map(|c| c.metered));
        l.member(b",\"flops\":", self.flops);
        l.member(b",\"latency_ms\":", self.latency.as_secs_f64() * 1000.0);
        l.0.push(b'}');
    }
}

#[derive(Serialize)]
struct UsageLine {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

/// A JSON object being written one member at a time.
struct Line<'a>(&'a mut Vec<u8>);

impl Line<'_> {
    /// `key` is the member's literal opening (`{"name":` or `,"name":`); `None` writes `null`,
    /// and a non-finite float `null` too, as serde_json does.
    fn member(&mut self, key: &[u8], value: impl Serialize) {
        self.0.extend_from_slice(key);
        let _ = serde_json::to_writer(&mut *self.0, &value);
    }

    /// A value formatted straight into the line as a JSON string, escaped as it is written.
    fn display(&mut self, key: &[u8], value: Option<impl std::fmt::Display>) {
        self.0.extend_from_slice(key);
        match value {
            Some(v) => {
                let _ = serde::Serializer::collect_str(&mut serde_json::Serializer::new(&mut *self.0), &v);
            }
            None => self.0.extend_from_slice(b"null"),
        }
    }

    /// `{"seq":…,"prev":…,"type":…,"time":…`.
    fn head(&mut self, seq: u64, prev: &str, kind: &[u8], time: SystemTime) {
        self.member(b"{\"seq\":", seq);
        self.member(b",\"prev\":", prev);
        self.0.extend_from_slice(b",\"type\":\"");
        self.0.extend_from_slice(kind);
        // RFC 3339 digits and punctuation never need escaping.
        self.0.extend_from_slice(b"\",\"time\":\"");
        let _ = write!(self.0, "{}\"", humantime::format_rfc3339_micros(time));
    }

    /// Who asked for what: tenant, its country and jurisdiction, model.
    fn who(&mut self, policy: &Policy, tenant: Option<&Tenant>, model: Option<&Model>) {
        self.member(b",\"tenant\":", tenant.map(|t| &*t.id));
        self.member(b",\"tenant_country\":", tenant.map(|t| &*t.country));
        self.member(b",\"jurisdiction\":", tenant.and_then(|t| policy.jurisdiction(t)).map(|j| &*j.id));
        self.member(b",\"model\":", model.map(|m| &*m.id));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::LimitSettings;
    use crate::killswitch::{Suspension, Suspensions};
    use crate::telemetry::Metrics;

    /// An object as serde_json writes each member, in the given order.
    fn expected(fields: &[(&str, String)]) -> String {
        let members: Vec<String> =
            fields.iter().map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap())).collect();
        format!("{{{}}}", members.join(","))
    }

    fn j(v: impl serde::Serialize) -> String {
        serde_json::to_string(&v).unwrap()
    }

    #[test]
    fn decision_line_is_what_serde_json_writes_field_by_field() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let policy = crate::config::load(&dir, &|_| Some("test".into())).unwrap().policy;
        let metrics = Arc::new(Metrics::new().unwrap());
        let suspension = Suspension {
            reason: "said \"no\"\tthen\\left".into(),
            by: "alice".into(),
            at: "2026-11-28T00:00:00Z".into(),
        };
        let suspensions = Arc::new(Suspensions::default().with("demo-us", suspension.clone()));
        let snapshot = Arc::new(Snapshot::new(policy, &LimitSettings::default(), &metrics, suspensions));
        let p = &snapshot.policy;
        let tenant = p.tenant_by_id("demo-us").unwrap();
        let decision = p.decide(tenant, "gpt-4o", None, crate::policy::Day::today());
        let (model, rule) = (decision.model.unwrap(), decision.rule.unwrap());
        let time = SystemTime::UNIX_EPOCH + Duration::from_micros(1_795_000_000_123_456);
        let t = p.tenant(tenant).unwrap();
        let m = p.model(model).unwrap();
        let e = p.endpoint(0).unwrap();

        let allowed = DecisionRecord {
            time,
            request_id: RequestIdBuf::new(b"req-1"),
            snapshot: snapshot.clone(),
            tenant: Some(tenant),
            model: Some(model),
            requested_model: None,
            purpose: Some("trans\"lation\u{1}".into()),
            operation: Some("chat"),
            reason: Reason::Allowed,
            status: None,
            rule: Some(RuleRef::Policy(rule)),
            latency: Duration::from_nanos(3_016_906),
        };
        let mut out = Vec::new();
        Event::Decision(Box::new(allowed)).write_body(9, GENESIS_FOR_TEST, &mut out);
        let want = expected(&[
            ("seq", j(9)),
            ("prev", j(GENESIS_FOR_TEST)),
            ("type", j("decision")),
            ("time", j("2026-11-18T11:06:40.123456Z")),
            ("request_id", j("req-1")),
            ("operation", j("chat")),
            ("tenant", j(&*t.id)),
            ("tenant_country", j(&*t.country)),
            ("jurisdiction", j(&*p.jurisdiction(t).unwrap().id)),
            ("model", j(&*m.id)),
            ("requested_model", j(())),
            ("training_flops", j(m.training_flops)),
            ("purpose", j("trans\"lation\u{1}")),
            ("decision", j("allow")),
            ("reason", j("allowed")),
            ("status", j(())),
            ("rule", j(p.rule(rule).unwrap().to_string())),
            ("policy_version", j(p.version())),
            ("latency_ms", j(0.003_016_906_f64 * 1000.0)),
        ]);
        assert_eq!(String::from_utf8(out).unwrap(), want);

        // Its outcome: what was served, by which endpoint, at what cost.
        let outcome = OutcomeRecord {
            time,
            request_id: RequestIdBuf::new(b"req-1"),
            decision_seq: Some(9),
            snapshot: snapshot.clone(),
            tenant: Some(tenant),
            model: Some(model),
            outcome: Outcome::Completed,
            status: Some(200),
            endpoint: Some(0),
            usage: Some(Usage { prompt_tokens: 17, completion_tokens: 5 }),
            charged: Some(Charged { tokens: 22, metered: true }),
            flops: Some(1.5e13),
            latency: Duration::from_nanos(3_016_906),
        };
        let mut out = Vec::new();
        Event::Outcome(Box::new(outcome)).write_body(11, GENESIS_FOR_TEST, &mut out);
        let want = expected(&[
            ("seq", j(11)),
            ("prev", j(GENESIS_FOR_TEST)),
            ("type", j("outcome")),
            ("time", j("2026-11-18T11:06:40.123456Z")),
            ("request_id", j("req-1")),
            ("decision_seq", j(9)),
            ("tenant", j(&*t.id)),
            ("tenant_country", j(&*t.country)),
            ("jurisdiction", j(&*p.jurisdiction(t).unwrap().id)),
            ("model", j(&*m.id)),
            ("training_flops", j(m.training_flops)),
            ("outcome", j("completed")),
            ("status", j(200)),
            ("endpoint", j(&*e.url)),
            ("residency", j(&*e.residency)),
            ("policy_version", j(p.version())),
            ("usage", expected(&[("prompt_tokens", j(17)), ("completion_tokens", j(5)), ("total_tokens", j(22))])),
            ("charged_tokens", j(22)),
            ("metered", j(true)),
            ("flops", j(1.5e13)),
            ("latency_ms", j(0.003_016_906_f64 * 1000.0)),
        ]);
        assert_eq!(String::from_utf8(out).unwrap(), want);

        // A refusal: unknown model kept as sent, the kill switch as the rule, no usage.
        let refused = DecisionRecord {
            time,
            request_id: RequestIdBuf::new(b""),
            snapshot: snapshot.clone(),
            tenant: Some(tenant),
            model: None,
            requested_model: Some("no\\such\nmodel".into()),
            purpose: None,
            operation: None,
            reason: Reason::TenantSuspended,
            status: Some(403),
            rule: Some(RuleRef::KillSwitch),
            latency: Duration::from_micros(12),
        };
        let mut out = Vec::new();
        Event::Decision(Box::new(refused)).write_body(10, GENESIS_FOR_TEST, &mut out);
        let want = expected(&[
            ("seq", j(10)),
            ("prev", j(GENESIS_FOR_TEST)),
            ("type", j("decision")),
            ("time", j("2026-11-18T11:06:40.123456Z")),
            ("request_id", j(())),
            ("operation", j(())),
            ("tenant", j(&*t.id)),
            ("tenant_country", j(&*t.country)),
            ("jurisdiction", j(&*p.jurisdiction(t).unwrap().id)),
            ("model", j(())),
            ("requested_model", j("no\\such\nmodel")),
            ("training_flops", j(())),
            ("purpose", j(())),
            ("decision", j("deny")),
            ("reason", j("tenant_suspended")),
            ("status", j(403)),
            ("rule", j(suspension.describe())),
            ("policy_version", j(p.version())),
            ("latency_ms", j(0.012)),
        ]);
        assert_eq!(String::from_utf8(out).unwrap(), want);
    }

    #[test]
    fn every_outcome_code_reads_back_as_itself() {
        for o in Outcome::ALL {
            assert_eq!(Outcome::parse(o.as_str()), Some(o), "{o:?}");
        }
        assert_eq!(Outcome::parse("finished"), None);
    }

    const GENESIS_FOR_TEST: &str = "00000000000000000000000000000000000000000000000000000000000000ab";
}
