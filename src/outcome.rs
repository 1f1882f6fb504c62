//! A request's record and its one end. An [`Exchange`] gathers what the gateway learns about a
//! request as its phases complete (tenant, model, rule, endpoint, what it reserved against its
//! limits). [`Exchange::decide`] writes the decision record ahead of the answer or the forward;
//! [`Exchange::finish`] closes the request exactly once, whatever way it ends: in-flight down,
//! the request counted and its duration observed, limits settled with the usage the upstream
//! reported, and, for a forwarded request, its outcome record. A refusal or the gateway's own
//! answer finishes when its response is made; a forwarded response when its body ends, fails or
//! is dropped ([`OnEnd`]); a request whose client left before the response head, when the
//! exchange is dropped with it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{Either, Full};

use crate::audit::{Charged, DecisionRecord, Durable, Outcome, OutcomeRecord, RuleRef, Slot, Unrecorded};
use crate::ids::{EndpointIdx, ModelIdx, TenantIdx};
use crate::limits::{Place, Ticket};
use crate::owners::{Owner, Owners};
use crate::proxy::metered::{BodyEnd, Metered, OnEnd};
use crate::reason::Reason;
use crate::request_id::RequestIdBuf;
use crate::snapshot::Snapshot;
use crate::telemetry::{TokenKind, UpstreamErrorKind};
use crate::usage::Usage;

/// Response bodies: a canned body from the gateway, or the upstream's, streamed through and
/// finishing its exchange when it ends.
pub type Body = Either<Full<Bytes>, Metered<Exchange>>;

/// One request, from its arrival to its end.
pub struct Exchange {
    snapshot: Arc<Snapshot>,
    started: Instant,
    time: SystemTime,
    request_id: RequestIdBuf,
    /// The request's place in the audit trail; `None` when the trail refused it one.
    slot: Option<Slot>,
    pub tenant: Option<TenantIdx>,
    pub model: Option<ModelIdx>,
    pub rule: Option<RuleRef>,
    /// The name the client sent, kept only when it did not resolve.
    pub requested_model: Option<Box<str>>,
    /// Kept only when the client stated one.
    pub purpose: Option<Box<str>>,
    /// What the request asks for: its index in [`crate::route::OPERATION_LABELS`].
    pub operation: usize,
    /// A Responses API create: who to bind the id of the response it returns to.
    bind: Option<(Arc<Owners>, Arc<Owner>)>,
    charge: Option<Charge>,
    /// Given up when the exchange is dropped, once the response has ended.
    place: Option<Place>,
    upstream: Option<Upstream>,
    /// The reason and status of the response head, once there is one.
    answer: Option<(Reason, u16)>,
    /// Set once the decision record is handed over; `Forwarding` means an outcome record is due.
    decided: Decided,
    finished: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decided {
    No,
    /// Answered by the gateway itself, for this reason: the decision record says it all.
    Answered(Reason),
    /// Allowed to go upstream: its outcome record, referring to the decision's `seq` when it is
    /// known, is written when it ends.
    Forwarding(Option<u64>),
}

/// What was reserved against the tenant's limits before forwarding.
struct Charge {
    ticket: Ticket,
    /// Charged when the upstream reports no usage: the most the request could have used.
    worst_case: u64,
    /// Charged tokens at all: a request about a stored response (which reports the usage of
    /// the request that created it, charged then) counts as a request only.
    tokens: bool,
}

/// The upstream that answered.
struct Upstream {
    endpoint: EndpointIdx,
    started: Instant,
    /// From sending the request to the response head: the upstream's time, not the gateway's.
    first_byte: Duration,
    /// An error response did no inference, so without reported usage it is charged nothing
    /// rather than the estimate.
    succeeded: bool,
}

impl Exchange {
    /// Starts a request: it is in flight until [`Self::finish`].
    pub fn begin(
        snapshot: Arc<Snapshot>,
        (started, time): (Instant, SystemTime),
        request_id: RequestIdBuf,
        slot: Option<Slot>,
    ) -> Self {
        snapshot.metrics.in_flight.inc();
        Self {
            snapshot,
            started,
            time,
            request_id,
            slot,
            tenant: None,
            model: None,
            rule: None,
            requested_model: None,
            purpose: None,
            operation: crate::route::NO_OPERATION,
            bind: None,
            charge: None,
            place: None,
            upstream: None,
            answer: None,
            decided: Decided::No,
            finished: false,
        }
    }

    /// Whether the audit trail gave this request a place (or is off); without one it must be
    /// refused.
    pub fn recordable(&self) -> bool {
        self.slot.is_some()
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn time(&self) -> SystemTime {
        self.time
    }

    /// Reserved against the tenant's limits: settled when the request ends, to the usage the
    /// upstream reported or else `worst_case`.
    pub fn charge(&mut self, ticket: Ticket, worst_case: u64) {
        self.charge = Some(Charge { ticket, worst_case, tokens: true });
    }

    /// Reserved as a request, charged no tokens whatever the response reports.
    /// Keeps the request's place among its tenant's requests in progress until it ends.
    pub fn hold(&mut self, place: Place) {
        self.place = Some(place);
    }

    pub fn charge_request(&mut self, ticket: Ticket) {
        self.charge = Some(Charge { ticket, worst_case: 0, tokens: false });
    }

    /// The response's id, once read, is to be bound to `owner`.
    pub fn bind_to(&mut self, owners: Arc<Owners>, owner: Owner) {
        self.bind = Some((owners, Arc::new(owner)));
    }

    /// The upstream answered with a response head.
    pub fn forwarded(&mut self, endpoint: EndpointIdx, started: Instant, first_byte: Duration, succeeded: bool) {
        self.upstream = Some(Upstream { endpoint, started, first_byte, succeeded });
    }

    pub fn endpoint(&self) -> Option<EndpointIdx> {
        self.upstream.as_ref().map(|u| u.endpoint)
    }

    /// The response head is ready: what it says, and the gateway's own share of the time to it
    /// (the upstream's time to first byte taken out). Returns the time to the head.
    pub fn respond(&mut self, reason: Reason, status: u16) -> Duration {
        self.answer = Some((reason, status));
        let elapsed = self.started.elapsed();
        let upstream = self.upstream.as_ref().map_or(Duration::ZERO, |u| u.first_byte);
        self.snapshot.metrics.overhead.observe(elapsed.saturating_sub(upstream).as_secs_f64());
        elapsed
    }

    /// Writes the decision to forward ahead of the forward, and waits until it is durable: no
    /// upstream sees a request before its decision is on record.
    pub async fn decide_forward(&mut self) -> Result<(), Unrecorded> {
        let seq = self.decide(Reason::Allowed, None).wait().await?;
        self.decided = Decided::Forwarding(seq);
        Ok(())
    }

    /// Writes the decision behind the gateway's own answer and waits until it is durable. The
    /// answer serves no model, so it goes out even when the disk refused the record (held back
    /// and written once the disk takes it).
    pub async fn decide_answer(&mut self, reason: Reason, status: u16) {
        let _ = self.decide(reason, Some(status)).wait().await;
    }

    /// Hands the decision record over: with `status` the gateway's own answer, without it the
    /// forward.
    fn decide(&mut self, reason: Reason, status: Option<u16>) -> Durable {
        self.decided = if status.is_some() { Decided::Answered(reason) } else { Decided::Forwarding(None) };
        let latency = self.started.elapsed();
        let Some(slot) = self.slot.as_mut() else { return Durable::none() };
        slot.decide(status.is_none(), || DecisionRecord {
            time: self.time,
            request_id: self.request_id,
            snapshot: self.snapshot.clone(),
            tenant: self.tenant,
            model: self.model,
            requested_model: self.requested_model.take(),
            purpose: self.purpose.take(),
            operation: crate::route::operation_label(self.operation),
            reason,
            status,
            rule: self.rule,
            latency,
        })
    }

    /// Whether the decision record is still to be written.
    pub fn undecided(&self) -> bool {
        self.decided == Decided::No
    }

    /// Ends the request; only the first call does anything.
    pub fn finish(&mut self, end: BodyEnd, usage: Option<Usage>) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        // Without a response head, the reason is the one decided: a gateway answer whose client
        // left while its record was written, or a forward (allowed).
        let reason = match (self.answer, self.decided) {
            (Some((reason, _)), _) | (None, Decided::Answered(reason)) => reason,
            (None, _) => Reason::Allowed,
        };
        // A request about a stored response reads back the usage of the one that created it,
        // which was charged and recorded then.
        let usage = usage.filter(|_| self.charge.as_ref().is_none_or(|c| c.tokens));
        let m = &self.snapshot.metrics;
        let now = Instant::now();
        // What the request is charged, and whether the upstream's usage says so (metered) or
        // the worst case does.
        let mut charged = None;
        let flops = self.charge.take().and_then(|charge| {
            let used = match usage {
                // A refused or failed request served nothing: its reservations go back.
                _ if reason != Reason::Allowed => 0,
                None if !charge.tokens => 0,
                Some(u) => {
                    m.tokens(self.tenant, self.model, TokenKind::Prompt, u.prompt_tokens);
                    m.tokens(self.tenant, self.model, TokenKind::Completion, u.completion_tokens);
                    charged = Some(Charged { tokens: u.prompt_tokens + u.completion_tokens, metered: true });
                    u.prompt_tokens + u.completion_tokens
                }
                None if self.upstream.as_ref().is_none_or(|u| u.succeeded) => {
                    m.tokens(self.tenant, self.model, TokenKind::Unmetered, charge.worst_case);
                    charged = Some(Charged { tokens: charge.worst_case, metered: false });
                    charge.worst_case
                }
                None => 0,
            };
            let flops = charge.ticket.settle(used, now);
            (reason == Reason::Allowed).then_some(flops).flatten()
        });
        if let Some(flops) = flops {
            m.flops(self.tenant, flops);
        }
        if let Some(u) = &self.upstream
            && let Some(e) = m.endpoint(u.endpoint)
        {
            e.duration.observe(now.saturating_duration_since(u.started).as_secs_f64());
            match end {
                BodyEnd::UpstreamFailed => e.error(UpstreamErrorKind::Stream),
                BodyEnd::IdleTimeout => e.error(UpstreamErrorKind::StreamIdleTimeout),
                BodyEnd::MaxDuration => e.error(UpstreamErrorKind::StreamMaxDuration),
                BodyEnd::Complete | BodyEnd::ClientGone => {}
            }
        }
        let latency = now.saturating_duration_since(self.started);
        m.duration(reason).observe(latency.as_secs_f64());
        m.in_flight.dec();
        m.request(self.tenant, self.model, reason);
        m.operation(self.operation, reason);
        let Decided::Forwarding(decision_seq) = self.decided else { return };
        let Some(slot) = self.slot.take() else { return };
        let outcome = match (reason, end) {
            (Reason::UpstreamTimeout, _) => Outcome::UpstreamTimeout,
            (Reason::UpstreamUnavailable | Reason::UpstreamError, _) | (_, BodyEnd::UpstreamFailed) => {
                Outcome::UpstreamError
            }
            (Reason::AuditUnavailable | Reason::UpstreamOverloaded, _) => Outcome::NotForwarded,
            (Reason::InternalError, _) => Outcome::GatewayFailed,
            (_, BodyEnd::ClientGone) if slot.cutting() => Outcome::ShutdownCut,
            (_, BodyEnd::ClientGone) => Outcome::ClientDisconnected,
            (_, BodyEnd::IdleTimeout) => Outcome::StreamIdleTimeout,
            (_, BodyEnd::MaxDuration) => Outcome::StreamMaxDuration,
            (_, BodyEnd::Complete) => Outcome::Completed,
        };
        slot.outcome(|| OutcomeRecord {
            time: self.time + latency,
            request_id: self.request_id,
            decision_seq,
            snapshot: self.snapshot.clone(),
            tenant: self.tenant,
            model: self.model,
            outcome,
            status: self.answer.map(|(_, status)| status),
            endpoint: self.endpoint(),
            usage,
            charged,
            flops,
            latency,
        });
    }
}

impl OnEnd for Exchange {
    fn on_end(&mut self, end: BodyEnd, usage: Option<Usage>) {
        self.finish(end, usage);
    }

    fn reads_id(&self) -> bool {
        self.bind.is_some()
    }

    fn on_response_id(&mut self, id: &str) {
        if let Some((owners, owner)) = self.bind.take() {
            owners.bind(id, owner);
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if self.decided == Decided::No {
            // The client left before anything was decided: there is no decision to record.
            self.finished = true;
            self.snapshot.metrics.in_flight.dec();
            return;
        }
        // The client left while an admitted request was with the upstream.
        self.finish(BodyEnd::ClientGone, None);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::LimitSettings;
    use crate::telemetry::Metrics;

    fn snapshot() -> (Arc<Metrics>, Arc<Snapshot>) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let policy = crate::config::load(&dir, &|_| Some("test".into())).unwrap().policy;
        let metrics = Arc::new(Metrics::new().unwrap());
        let snapshot = Arc::new(Snapshot::new(policy, &LimitSettings::default(), &metrics, Default::default()));
        (metrics, snapshot)
    }

    /// A refusal whose client leaves while its decision record is being written is still counted
    /// as the refusal it was, not as allowed.
    #[test]
    fn a_request_dropped_after_its_decision_counts_under_that_decision() {
        let (metrics, snapshot) = snapshot();
        let tenant = snapshot.policy.tenant_by_id("demo-us");
        let mut exchange =
            Exchange::begin(snapshot.clone(), (Instant::now(), SystemTime::now()), RequestIdBuf::new(b"r"), None);
        exchange.tenant = tenant;
        let _unwaited = exchange.decide(Reason::ModelNotFound, Some(404));
        assert_eq!(metrics.in_flight.get(), 1);
        drop(exchange);
        assert_eq!(metrics.in_flight.get(), 0);
        let count = |reason: Reason| {
            metrics.requests.with_label_values(&["demo-us", "us", reason.decision().as_str(), reason.as_str()]).get()
        };
        assert_eq!((count(Reason::ModelNotFound), count(Reason::Allowed)), (1, 0));
    }
}
