//! Compiles the tenant files (`tenants.toml`, `tenants.d/`), a batch at a time as they are parsed:
//! each tenant's binding to the jurisdiction its country belongs to (and its owners'), its key
//! digests, allowlist, end-use declaration, scheduled suspension and limits (merged with its
//! jurisdiction's). Nothing of a batch's parse is kept once it is compiled.

use std::collections::HashMap;

use super::ctx::{
    Ctx, Entry, ModelEntry, check_limits, day, day_window, globs, valid_country, valid_label, valid_name,
};
use super::ownership::{Binding, bind_tenant};
use crate::auth::{self, KeyIndex};
use crate::config::error::{ConfigError, Source};
use crate::config::parse::Batches;
use crate::config::raw::{RawKyc, RawLimits, RawTenant, TenantStatus};
use crate::limits::LimitSpec;
use crate::policy::{Day, Declaration, Jurisdiction, Kyc, Line, MAX_TENANTS, ModelSet, Suspension, Tenant};

/// The tenants, their index by id, the key index, and the names of the files they came from.
type TenantOut = (Vec<Tenant>, HashMap<Box<str>, u32>, KeyIndex, Box<[Box<str>]>);

pub(super) fn compile_tenants(
    ctx: &mut Ctx,
    batches: &mut Batches<'_>,
    jurisdictions: &[Jurisdiction],
    regional_limits: &[Option<&RawLimits>],
    bind: &Binding<'_>,
    models: &[ModelEntry],
) -> TenantOut {
    let mut out = Vec::with_capacity(batches.at_most);
    let mut ids = HashMap::new();
    let mut keys: HashMap<[u8; 32], u32> = HashMap::new();
    let mut certificates: HashMap<Box<str>, u32> = HashMap::new();
    let mut both = Vec::new();
    let mut files: Vec<Box<str>> = Vec::new();
    for batch in batches.by_ref() {
        let src = &batch.src;
        if files.len() <= batch.file {
            files.resize(batch.file + 1, Box::default());
        }
        if files[batch.file].is_empty() {
            files[batch.file] = src.name.as_str().into();
        }
        for (k, t) in batch.tenants.iter().enumerate() {
            let mut x =
                Indexes { out: &out, ids: &mut ids, keys: &mut keys, certificates: &mut certificates, both: &mut both };
            let inputs = Inputs { jurisdictions, regional_limits, bind, models };
            let tenant = compile_tenant(ctx, src, (batch.file, batch.first + k), t, &mut x, &inputs);
            out.push(tenant);
        }
    }
    if out.len() > MAX_TENANTS {
        let file = files.last().map(|f| f.to_string()).unwrap_or_default();
        let message = format!("{} tenants; a policy holds at most {MAX_TENANTS}", out.len());
        ctx.push(ConfigError { file, position: None, key: "tenants".into(), message });
    }
    let index = KeyIndex::build(keys).with_certificates(certificates, both);
    (out, ids, index, files.into())
}

/// What compiling one tenant checks against: the tenants before it.
struct Indexes<'a> {
    out: &'a [Tenant],
    ids: &'a mut HashMap<Box<str>, u32>,
    keys: &'a mut HashMap<[u8; 32], u32>,
    certificates: &'a mut HashMap<Box<str>, u32>,
    both: &'a mut Vec<u32>,
}

/// What compiling one tenant reads from the other files.
struct Inputs<'a> {
    jurisdictions: &'a [Jurisdiction],
    regional_limits: &'a [Option<&'a RawLimits>],
    bind: &'a Binding<'a>,
    models: &'a [ModelEntry],
}

fn compile_tenant(
    ctx: &mut Ctx,
    src: &Source,
    (file, i): (usize, usize),
    t: &RawTenant,
    x: &mut Indexes<'_>,
    inputs: &Inputs<'_>,
) -> Tenant {
    let Inputs { jurisdictions, regional_limits, bind, models } = *inputs;
    let idx = x.out.len() as u32;
    let id = t.id.get_ref().as_str();
    let key = Entry("tenants", i, id);
    if !valid_name(id) {
        ctx.err(src, Some(t.id.span()), format!("{key}.id"), "must be printable ASCII without spaces");
    }
    if x.ids.insert(Box::<str>::from(id), idx).is_some() {
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
                if let Some(other) = x.keys.insert(digest, idx) {
                    let other = x.out.get(other as usize).map_or(id, |o| &*o.id);
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
        } else if let Some(other) = x.certificates.insert(n.into(), idx) {
            let other = x.out.get(other as usize).map_or(id, |o| &*o.id);
            ctx.err(src, Some(name.span()), kk(), format!("this name is also listed for tenant {other:?}"));
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
        id: id.into(),
        legal_name: t.legal_name.as_str().into(),
        aliases: t.aliases.iter().map(|a| a.as_str().into()).collect(),
        country: t.country.get_ref().as_str().into(),
        jurisdiction,
        suspended,
        suspension,
        denied_party: None,
        entity: None,
        affiliated: None,
        declaration,
        kyc,
        also: None,
        allowlist,
        limits,
        file: u32::try_from(file).unwrap_or(u32::MAX),
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
