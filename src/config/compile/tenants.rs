//! Compiles the tenant files (`tenants.toml`, `tenants.d/`), a batch at a time as they are parsed:
//! each tenant's binding to the jurisdiction its country belongs to (and its owners'), its key
//! digests, allowlist, end-use declaration, scheduled suspension and limits (merged with its
//! jurisdiction's). Nothing of a batch's parse is kept once it is compiled.

use std::collections::HashMap;
use std::sync::Arc;

use super::ctx::{
    Ctx, Entry, ModelEntry, check_limits, day, day_window, globs, valid_country, valid_label, valid_name,
};
use super::ownership::{Binding, bind_tenant};
use crate::auth::{self, Digest, KeyIndex};
use crate::config::error::{ConfigError, Source};
use crate::config::parse::{Batch, Batches};
use crate::config::raw::{RawKyc, RawLimits, RawTenant, TenantStatus};
use crate::limits::LimitSpec;
use crate::policy::{
    Day, Declaration, Jurisdiction, Kyc, Line, MAX_TENANTS, ModelSet, Suspension, Tenant, TenantIds, TenantSegment,
    Tenants,
};

/// Where one tenant file's tenants come from.
pub(in crate::config) enum Plan {
    /// Compiled from the batches of the `index`th file read.
    Read { index: usize, name: String, relative: String, digest: [u8; 32] },
    /// The last policy's segment: the file and what it is compiled against are unchanged.
    Reuse(Arc<TenantSegment>),
}

/// The tenants, their index by id, and the key index.
type TenantOut = (Tenants, TenantIds, KeyIndex);

pub(super) fn compile_tenants(
    ctx: &mut Ctx,
    plan: Vec<Plan>,
    batches: &mut Batches<'_>,
    inputs: &Inputs<'_>,
) -> TenantOut {
    let mut segments: Vec<Arc<TenantSegment>> = Vec::with_capacity(plan.len());
    let reused: usize = plan.iter().map(|p| if let Plan::Reuse(s) = p { s.tenants.len() } else { 0 }).sum();
    let capacity = batches.at_most + reused;
    let mut x = Indexes {
        base: 0,
        ids: TenantIds::with_capacity_and_hasher(capacity, Default::default()),
        keys: KeyIndex::with_capacity(capacity),
        certificates: HashMap::new(),
        both: Vec::new(),
    };
    let mut batches = batches.by_ref().peekable();
    for p in plan {
        let segment = match p {
            Plan::Reuse(segment) => {
                x.add_reused(ctx, &segment);
                segment
            }
            Plan::Read { index, name, relative, digest } => {
                let mut out = SegmentOut::default();
                while let Some(batch) = batches.next_if(|b: &Batch| b.file == index) {
                    let src = &batch.src;
                    for (k, t) in batch.tenants.iter().enumerate() {
                        let tenant =
                            compile_tenant(ctx, src, batch.first + k, t, (&mut x, &mut out, &segments), inputs);
                        out.tenants.push(tenant);
                    }
                }
                Arc::new(TenantSegment {
                    name: name.into(),
                    relative: relative.into(),
                    digest,
                    tenants: out.tenants.into(),
                    keys: out.keys.into(),
                    certificates: out.certificates.into(),
                    both: out.both.into(),
                    screened: std::sync::OnceLock::new(),
                })
            }
        };
        x.base = x.base.saturating_add(segment.tenants.len());
        segments.push(segment);
    }
    if x.base > MAX_TENANTS {
        let file = segments.last().map(|f| f.name.to_string()).unwrap_or_default();
        let message = format!("{} tenants; a policy holds at most {MAX_TENANTS}", x.base);
        ctx.push(ConfigError { file, position: None, key: "tenants".into(), message });
    }
    let Indexes { ids, keys, certificates, both, .. } = x;
    let index = keys.with_certificates(certificates, both);
    (Tenants::new(segments), ids, index)
}

/// What a file's tenants compile to besides themselves.
#[derive(Default)]
struct SegmentOut {
    tenants: Vec<Tenant>,
    keys: Vec<(Digest, u32)>,
    certificates: Vec<(Box<str>, u32)>,
    both: Vec<u32>,
}

/// What compiling a tenant checks against: the tenants before it, in every file.
struct Indexes {
    /// The index of the current file's first tenant.
    base: usize,
    ids: TenantIds,
    keys: KeyIndex,
    certificates: HashMap<Box<str>, u32>,
    both: Vec<u32>,
}

impl Indexes {
    /// Adds a reused segment's tenants. A clash with a tenant before it is reported at the reused
    /// tenant's entry; the caller loads the folder again without reuse to place it exactly.
    fn add_reused(&mut self, ctx: &mut Ctx, seg: &TenantSegment) {
        let at = |k: u32| (self.base + k as usize) as u32;
        let clash = |ctx: &mut Ctx, k: u32, what: &str| {
            let Some(t) = seg.tenants.get(k as usize) else { return };
            ctx.push(ConfigError {
                file: seg.name.to_string(),
                position: Some((t.entry_line as usize, 1)),
                key: format!("{}", Entry("tenants", t.entry as usize, &t.id)),
                message: format!("{what} is also listed for an earlier tenant"),
            });
        };
        for (k, t) in seg.tenants.iter().enumerate() {
            if self.ids.insert(t.id.clone(), at(k as u32)).is_some() {
                clash(ctx, k as u32, "its id");
            }
        }
        for &(digest, k) in &seg.keys {
            if self.keys.insert(digest, at(k)).is_some() {
                clash(ctx, k, "a key digest");
            }
        }
        for (name, k) in &seg.certificates {
            if self.certificates.insert(name.clone(), at(*k)).is_some() {
                clash(ctx, *k, "a certificate name");
            }
        }
        self.both.extend(seg.both.iter().map(|&k| at(k)));
    }
}

/// The id of the tenant at global index `idx`, among the finished segments and the current one.
fn tenant_id<'a>(idx: u32, earlier: &'a [Arc<TenantSegment>], current: &'a [Tenant], base: usize) -> Option<&'a str> {
    let idx = idx as usize;
    if let Some(k) = idx.checked_sub(base) {
        return current.get(k).map(|t| &*t.id);
    }
    let mut start = 0;
    for s in earlier {
        if idx < start + s.tenants.len() {
            return s.tenants.get(idx - start).map(|t| &*t.id);
        }
        start += s.tenants.len();
    }
    None
}

/// What compiling one tenant reads from the other files.
pub(super) struct Inputs<'a> {
    pub jurisdictions: &'a [Jurisdiction],
    pub regional_limits: &'a [Option<&'a RawLimits>],
    pub bind: &'a Binding<'a>,
    pub models: &'a [ModelEntry],
}

fn compile_tenant(
    ctx: &mut Ctx,
    src: &Source,
    i: usize,
    t: &RawTenant,
    (x, out, earlier): (&mut Indexes, &mut SegmentOut, &[Arc<TenantSegment>]),
    inputs: &Inputs<'_>,
) -> Tenant {
    let Inputs { jurisdictions, regional_limits, bind, models } = *inputs;
    let local = out.tenants.len() as u32;
    let idx = (x.base + out.tenants.len()) as u32;
    let other_id =
        |other: u32, out: &SegmentOut| tenant_id(other, earlier, &out.tenants, x.base).unwrap_or("?").to_owned();
    let id = t.id.get_ref().as_str();
    let key = Entry("tenants", i, id);
    if !valid_name(id) {
        ctx.err(src, Some(t.id.span()), format!("{key}.id"), "must be printable ASCII without spaces");
    }
    let shared: Arc<str> = id.into();
    if x.ids.insert(shared.clone(), idx).is_some() {
        ctx.err(src, Some(t.id.span()), format!("{key}.id"), format!("tenant {id:?} is defined twice"));
    }
    if t.legal_name.trim().is_empty() {
        ctx.err(src, Some(t.id.span()), format!("{key}.legal_name"), "must not be empty");
    }
    let jurisdiction = tenant_jurisdiction(ctx, src, &key, t, jurisdictions, bind.coverage);
    for (k, d) in t.key_sha256.iter().enumerate() {
        let kk = || format!("{key}.key_sha256[{k}]");
        match auth::parse_digest(d.get_ref()).filter(|_| d.get_ref().len() == 64) {
            None => ctx.err(
                src,
                Some(d.span()),
                kk(),
                "must be 64 hex digits (the SHA-256 of the key; see `customs keygen`)",
            ),
            Some(digest) => {
                out.keys.push((digest, local));
                if let Some(other) = x.keys.insert(digest, idx) {
                    let other = if other == idx { id.to_owned() } else { other_id(other, out) };
                    ctx.err(src, Some(d.span()), kk(), format!("this key digest is also listed for tenant {other:?}"));
                }
            }
        }
    }
    for (k, name) in t.client_certificate_names.iter().enumerate() {
        let kk = || format!("{key}.client_certificate_names[{k}]");
        let n = name.get_ref().as_str();
        if !valid_name(n) {
            ctx.err(src, Some(name.span()), kk(), "must be printable ASCII without spaces");
        } else {
            out.certificates.push((n.into(), local));
            if let Some(other) = x.certificates.insert(n.into(), idx) {
                let other = if other == idx { id.to_owned() } else { other_id(other, out) };
                ctx.err(src, Some(name.span()), kk(), format!("this name is also listed for tenant {other:?}"));
            }
        }
    }
    if t.require_key_and_certificate {
        if t.client_certificate_names.is_empty() {
            ctx.err(
                src,
                Some(t.id.span()),
                format!("{key}.require_key_and_certificate"),
                "needs client_certificate_names: no certificate could ever satisfy it",
            );
        }
        x.both.push(idx);
        out.both.push(local);
    }
    // A tenant's rules are spelled out from these lines when asked for (`Policy::rule`).
    let line = |span: &std::ops::Range<usize>| Line::try_from(src.line(span)).unwrap_or(Line::MAX);
    let suspended = (*t.status.get_ref() == TenantStatus::Suspended).then(|| line(&t.status.span()));
    let allowlist = t.allow_models.as_ref().map(|list| {
        let ids = || models.iter().map(|(m, _)| &*m.id);
        let patterns = globs(ctx, src, &format!("{key}.allow_models"), list.get_ref(), ids, "model id");
        let mut bits = vec![0u64; models.len().div_ceil(64)];
        for (m, (model, _)) in models.iter().enumerate() {
            if patterns.iter().flatten().any(|g| g.is_match(&*model.id)) {
                bits[m / 64] |= 1 << (m % 64);
            }
        }
        ModelSet { bits: bits.into(), line: line(&list.span()) }
    });
    let declaration = t.end_use.as_ref().and_then(|d| {
        let dk = format!("{key}.end_use");
        if !valid_name(d.id.get_ref()) {
            ctx.err(src, Some(d.id.span()), format!("{dk}.id"), "must be printable ASCII without spaces");
        }
        let valid =
            day_window(ctx, src, &dk, ("effective_from", d.effective_from.as_ref()), ("expires", Some(&d.expires)));
        if d.purposes.is_empty() {
            ctx.err(
                src,
                Some(d.id.span()),
                format!("{dk}.purposes"),
                "a declaration must declare at least one purpose",
            );
        }
        for (p, purpose) in d.purposes.iter().enumerate() {
            if !valid_label(purpose.get_ref()) {
                ctx.err(
                    src,
                    Some(purpose.span()),
                    format!("{dk}.purposes[{p}]"),
                    "must be lowercase letters, digits and '-'",
                );
            }
        }
        let valid = valid?;
        Some(Declaration {
            id: d.id.get_ref().as_str().into(),
            effective_from: valid.from,
            expires: valid.until,
            purposes: d.purposes.iter().map(|p| p.get_ref().as_str().into()).collect(),
            line: line(&d.id.span()),
            pending_line: d.effective_from.as_ref().map(|from| line(&from.span())),
        })
    });
    let suspension = t.suspension.as_ref().and_then(|s| {
        let sk = format!("{key}.suspension");
        let raw = s.get_ref();
        let window =
            day_window(ctx, src, &sk, ("effective_from", raw.effective_from.as_ref()), ("until", raw.until.as_ref()));
        let reason = raw.reason.get_ref().trim();
        if reason.is_empty() {
            ctx.err(src, Some(raw.reason.span()), format!("{sk}.reason"), "must say why the tenant is suspended");
        }
        Some(Suspension { window: window?, reason: reason.into(), line: line(&s.span()) })
    });
    let kyc = t.kyc.as_ref().and_then(|k| kyc(ctx, src, &key, k));
    if let Some(l) = &t.limits {
        check_limits(ctx, src, &format!("{key}.limits"), l);
    }
    let regional = regional_limits.get(jurisdiction as usize).copied().flatten();
    let limits = merge_limits(t.limits.as_ref().map(|l| l.get_ref()), regional);
    let mut tenant = Tenant {
        id: shared,
        legal_name: t.legal_name.as_str().into(),
        aliases: t.aliases.iter().map(|a| a.as_str().into()).collect(),
        country: t.country.get_ref().as_str().into(),
        jurisdiction,
        suspended,
        suspension,
        entity: None,
        declaration,
        kyc,
        also: None,
        allowlist,
        limits,
        entry: u32::try_from(i).unwrap_or(u32::MAX),
        entry_line: u32::try_from(src.line(&t.id.span())).unwrap_or(u32::MAX),
    };
    bind_tenant(ctx, src, &key, &mut tenant, t, bind);
    tenant
}

/// Longest grace after a re-verification date: past a year, the record is not a verification.
const MAX_GRACE_DAYS: u32 = 365;

fn kyc(ctx: &mut Ctx, src: &Source, key: &Entry<'_>, k: &toml::Spanned<RawKyc>) -> Option<Kyc> {
    let kk = format!("{key}.kyc");
    let raw = k.get_ref();
    let by = raw.verified_by.get_ref().trim();
    if by.is_empty() {
        ctx.err(src, Some(raw.verified_by.span()), format!("{kk}.verified_by"), "must name who verified the tenant");
    }
    for (i, e) in raw.evidence.iter().enumerate() {
        let text = e.get_ref();
        // References only: a pasted document (or a line of one) is refused.
        if text.trim().is_empty() || text.len() > 200 || text.contains('\n') {
            let msg = "must be a reference (a registry number, a document id) of at most 200 characters on one line";
            ctx.err(src, Some(e.span()), format!("{kk}.evidence[{i}]"), msg);
        }
    }
    let on = day(ctx, src, format!("{kk}.verified_on"), &raw.verified_on);
    let due = day(ctx, src, format!("{kk}.reverify_by"), &raw.reverify_by);
    let grace = raw.grace_days.as_ref().map_or(0, |g| *g.get_ref());
    if grace > MAX_GRACE_DAYS {
        let span = raw.grace_days.as_ref().map(toml::Spanned::span);
        ctx.err(src, span, format!("{kk}.grace_days"), format!("must be at most {MAX_GRACE_DAYS}"));
    }
    let (on, due) = (on?, due?);
    if due < on {
        let msg = format!("{due} is before verified_on {on}");
        ctx.err(src, Some(raw.reverify_by.span()), format!("{kk}.reverify_by"), msg);
        return None;
    }
    let refused_from = Day(due.0.saturating_add(i64::from(grace.min(MAX_GRACE_DAYS))).saturating_add(1));
    Some(Kyc {
        verified_by: by.into(),
        verified_on: on,
        evidence: raw.evidence.iter().map(|e| e.get_ref().trim().into()).collect(),
        reverify_by: due,
        grace_days: grace,
        refused_from,
        line: Line::try_from(src.line(&k.span())).unwrap_or(Line::MAX),
    })
}

/// The tenant's jurisdiction, which must be the one its country belongs to: the binding is made
/// in config, checked against the country table, and never taken from the request.
fn tenant_jurisdiction(
    ctx: &mut Ctx,
    src: &Source,
    key: &Entry<'_>,
    t: &RawTenant,
    jurisdictions: &[Jurisdiction],
    coverage: &dyn Fn(&str) -> Option<u32>,
) -> u32 {
    let country = t.country.get_ref();
    if !valid_country(country) {
        ctx.err(
            src,
            Some(t.country.span()),
            format!("{key}.country"),
            format!("{country:?} is not an ISO 3166-1 alpha-2 code"),
        );
    }
    let named = t.jurisdiction.get_ref();
    let Some(j) = jurisdictions.iter().position(|j| &*j.id == named.as_str()) else {
        ctx.err(
            src,
            Some(t.jurisdiction.span()),
            format!("{key}.jurisdiction"),
            format!("unknown jurisdiction {named:?}"),
        );
        return 0;
    };
    if coverage(country).is_none() {
        let msg = format!("country {country} is not covered by any jurisdiction");
        ctx.err(src, Some(t.country.span()), format!("{key}.country"), msg);
    }
    // Whether the country puts the tenant there is checked once its owners are known
    // (`ownership::bind_tenants`): a jurisdiction may apply by a parent's headquarters.
    j as u32
}

/// A tenant's limits: each key from the tenant, else its jurisdiction's default. The compute
/// quota is a compliance control, so a tenant can only lower its jurisdiction's.
fn merge_limits(tenant: Option<&RawLimits>, region: Option<&RawLimits>) -> LimitSpec {
    let t = tenant.cloned().unwrap_or_default();
    let r = region.cloned().unwrap_or_default();
    let (requests_per_minute, request_burst) = match t.requests_per_minute {
        Some(rpm) => (Some(rpm), t.request_burst),
        None => (r.requests_per_minute, r.request_burst),
    };
    LimitSpec {
        requests_per_minute,
        request_burst,
        tokens_per_minute: t.tokens_per_minute.or(r.tokens_per_minute),
        max_concurrent: t.max_concurrent.or(r.max_concurrent),
        daily_inference_flops: match (t.daily_inference_flops, r.daily_inference_flops) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        },
    }
}
