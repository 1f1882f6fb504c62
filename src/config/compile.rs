//! Compiles the parsed files into a [`Policy`]: checks every cross-reference and range, collects
//! every problem instead of stopping at the first, and resolves all patterns and thresholds into
//! per-(jurisdiction version, model) verdicts so nothing is evaluated lazily on the request path.
//! Jurisdictions are compiled in `jurisdictions.rs`, expectations in `expect.rs`.

use std::collections::HashMap;
use std::ops::Range;

use globset::{Glob, GlobMatcher};
use http::HeaderValue;
use toml::Spanned;
use toml::value::Datetime;

use super::error::{ConfigError, Source};
use super::jurisdictions::{Coverage, compile_jurisdictions};
use super::raw::{
    CountryGroupsFile, ExpectationsFile, GatewayFile, JurisdictionsFile, ModelsFile, RawLimits, RawTenant,
    ScreeningFile, TenantStatus, TenantsFile,
};
use super::screen;
use crate::auth::{self, KeyIndex};
use crate::endpoint::Endpoint;
use crate::limits::LimitSpec;
use crate::policy::expect::Expectation;
use crate::policy::{
    Day, Declaration, EndpointIdx, Jurisdiction, Model, ModelSet, Policy, Rule, RuleId, Suspension, Tenant, Window,
};

pub(super) struct Parsed<'s> {
    pub gateway: (&'s Source, GatewayFile),
    pub models: (&'s Source, ModelsFile),
    pub groups: (&'s Source, CountryGroupsFile),
    pub jurisdictions: (&'s Source, JurisdictionsFile),
    pub tenants: (&'s Source, TenantsFile),
    pub screening: (&'s Source, ScreeningFile),
    pub list: Option<Source>,
    pub expectations: (&'s Source, ExpectationsFile),
}

/// What a config compiles to.
pub(super) struct Compiled {
    pub settings: GatewayFile,
    pub policy: Policy,
    pub expectations: Vec<Expectation>,
}

/// Collects errors and rules while compiling.
pub(super) struct Ctx<'e> {
    errors: Vec<ConfigError>,
    rules: Vec<Rule>,
    env: &'e dyn Fn(&str) -> Option<String>,
}

impl Ctx<'_> {
    pub(super) fn err(
        &mut self,
        src: &Source,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        msg: impl Into<String>,
    ) {
        self.errors.push(src.error(span.as_ref(), key, msg));
    }

    pub(super) fn push(&mut self, e: ConfigError) {
        self.errors.push(e);
    }

    pub(super) fn rule(&mut self, src: &Source, span: Range<usize>, key: String, detail: String) -> RuleId {
        let (line, _) = src.position(&span);
        self.rule_at(&src.name, line, key, detail)
    }

    /// A rule at a known line of a file that is not TOML (the screening list).
    pub(super) fn rule_at(&mut self, file: &str, line: usize, key: String, detail: String) -> RuleId {
        self.rules.push(Rule { file: file.into(), line, key: key.into(), detail: detail.into() });
        (self.rules.len() - 1) as RuleId
    }
}

pub(super) fn entry(list: &str, i: usize, id: &str) -> String {
    format!("{list}[{i}] ({id})")
}

/// Names that are compared byte for byte: printable ASCII without spaces, so look-alike Unicode,
/// whitespace and control characters can never be part of a model, alias, tenant or group id.
pub(super) fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && s.bytes().all(|b| b.is_ascii_graphic())
}

pub(super) fn valid_label(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

pub(super) fn valid_country(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase())
}

pub(super) fn glob(ctx: &mut Ctx, src: &Source, key: &str, p: &Spanned<String>) -> Option<GlobMatcher> {
    let pat = p.get_ref();
    if !valid_name(pat) {
        ctx.err(src, Some(p.span()), key, format!("pattern {pat:?} must be printable ASCII without spaces"));
        return None;
    }
    match Glob::new(pat) {
        Ok(g) => Some(g.compile_matcher()),
        Err(e) => {
            ctx.err(src, Some(p.span()), key, format!("invalid pattern {pat:?}: {}", e.kind()));
            None
        }
    }
}

/// Compiles a list of model patterns, each of which must match at least one of `names` (a
/// pattern that matches nothing is almost always a typo, and a mistyped deny fails open).
/// `None` if any pattern is invalid.
pub(super) fn model_patterns<'n, I: Iterator<Item = &'n str>>(
    ctx: &mut Ctx,
    src: &Source,
    key: &str,
    list: &[Spanned<String>],
    names: impl Fn() -> I,
    what: &str,
) -> Option<Vec<(GlobMatcher, RuleId)>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (i, p) in list.iter().enumerate() {
        let k = format!("{key}[{i}]");
        let Some(g) = glob(ctx, src, &k, p) else {
            ok = false;
            continue;
        };
        if !names().any(|n| g.is_match(n)) {
            ctx.err(src, Some(p.span()), k.clone(), format!("pattern {:?} matches no {what}", p.get_ref()));
            ok = false;
        }
        let field = key.rsplit('.').next().unwrap_or(key);
        let rule = ctx.rule(src, p.span(), k, format!("{field} contains {:?}", p.get_ref()));
        out.push((g, rule));
    }
    ok.then_some(out)
}

/// A TOML local date (`2027-01-01`) as a [`Day`]; a time or an offset is an error, since every
/// date in the policy is a whole UTC day.
pub(super) fn day(ctx: &mut Ctx, src: &Source, key: String, d: &Spanned<Datetime>) -> Option<Day> {
    let v = d.get_ref();
    let day = match (v.date, v.time, v.offset) {
        (Some(date), None, None) => Day::from_ymd(i64::from(date.year), u32::from(date.month), u32::from(date.day)),
        _ => None,
    };
    if day.is_none() {
        ctx.err(src, Some(d.span()), key, "must be a date such as 2027-01-01 (no time of day)");
    }
    day
}

/// Two optional inclusive dates as a [`Window`]; an end before the start is an error. `None` if
/// either date is invalid.
pub(super) fn day_window(
    ctx: &mut Ctx,
    src: &Source,
    key: &str,
    (from_name, from): (&str, Option<&Spanned<Datetime>>),
    (until_name, until): (&str, Option<&Spanned<Datetime>>),
) -> Option<Window> {
    let first = from.map(|d| day(ctx, src, format!("{key}.{from_name}"), d));
    let last = until.map(|d| day(ctx, src, format!("{key}.{until_name}"), d));
    let window = Window { from: first.unwrap_or(Some(Day::MIN))?, until: last.unwrap_or(Some(Day::MAX))? };
    if window.until < window.from {
        ctx.err(
            src,
            until.map(Spanned::span),
            format!("{key}.{until_name}"),
            format!("{} is before {from_name} {}", window.until, window.from),
        );
        return None;
    }
    Some(window)
}

pub(super) fn compile(
    p: Parsed<'_>,
    env: &dyn Fn(&str) -> Option<String>,
    version: String,
) -> Result<Compiled, Vec<ConfigError>> {
    let mut ctx = Ctx { errors: Vec::new(), rules: Vec::new(), env };
    check_gateway(&mut ctx, p.gateway.0, &p.gateway.1);
    let (models, model_names, endpoints) = compile_models(&mut ctx, p.models.0, &p.models.1);
    let groups = compile_groups(&mut ctx, p.groups.0, &p.groups.1);
    let j = compile_jurisdictions(&mut ctx, p.jurisdictions.0, &p.jurisdictions.1, &groups, &models, &endpoints);
    let regional_limits: Vec<Option<&RawLimits>> = j
        .first_block
        .iter()
        .map(|&b| p.jurisdictions.1.jurisdictions.get(b).and_then(|r| r.limits.as_ref()).map(Spanned::get_ref))
        .collect();
    let (mut tenants, tenant_ids, keys) =
        compile_tenants(&mut ctx, p.tenants.0, &p.tenants.1, &j.jurisdictions, &regional_limits, &j.coverage, &models);
    let screening = screen::screen(
        &mut ctx,
        (p.screening.0, &p.screening.1),
        p.list.as_ref(),
        &p.tenants.1,
        (&mut tenants, &tenant_ids),
    );
    let expectations = super::expect::compile_expectations(&mut ctx, p.expectations.0, &p.expectations.1, &tenant_ids);
    let (jurisdictions, verdicts, verdict_endpoints) = (j.jurisdictions, j.verdicts, j.verdict_endpoints);
    if !ctx.errors.is_empty() {
        return Err(ctx.errors);
    }
    let version_header = HeaderValue::try_from(version.as_str()).unwrap_or(HeaderValue::from_static("unknown"));
    let policy = Policy {
        version: version.into(),
        version_header,
        models: models.into_iter().map(|(m, _)| m).collect(),
        model_names,
        jurisdictions: jurisdictions.into(),
        tenants: tenants.into(),
        tenant_ids,
        keys,
        verdicts: verdicts.into(),
        verdict_endpoints: verdict_endpoints.into(),
        endpoints: endpoints.into(),
        rules: ctx.rules.into(),
        screening,
    };
    Ok(Compiled { settings: p.gateway.1, policy, expectations })
}

fn check_gateway(ctx: &mut Ctx, src: &Source, g: &GatewayFile) {
    let zero = |d: std::time::Duration| d.is_zero();
    let checks = [
        (g.server.max_body_bytes == 0, "server.max_body_bytes"),
        (g.server.max_connections == 0, "server.max_connections"),
        (zero(g.server.header_read_timeout), "server.header_read_timeout"),
        (zero(g.server.body_read_timeout), "server.body_read_timeout"),
        (zero(g.upstream.connect_timeout), "upstream.connect_timeout"),
        (zero(g.upstream.first_byte_timeout), "upstream.first_byte_timeout"),
        (g.limits.bytes_per_token == 0, "limits.bytes_per_token"),
    ];
    for (bad, key) in checks {
        if bad {
            ctx.err(src, None, key, "must be greater than zero");
        }
    }
}

/// A model with the indices of its endpoints.
pub(super) type ModelEntry = (Model, Vec<EndpointIdx>);

fn compile_models(
    ctx: &mut Ctx,
    src: &Source,
    file: &ModelsFile,
) -> (Vec<ModelEntry>, HashMap<Box<str>, u32>, Vec<Endpoint>) {
    let mut out = Vec::new();
    let mut names: HashMap<Box<str>, u32> = HashMap::new();
    let mut endpoints = Vec::new();
    if file.models.is_empty() {
        ctx.err(src, None, "models", "the catalog is empty; add at least one [[models]] entry");
    }
    for (i, m) in file.models.iter().enumerate() {
        let idx = out.len() as u32;
        let id = m.id.get_ref();
        let key = entry("models", i, id);
        for (name, span, k) in std::iter::once((id, m.id.span(), format!("{key}.id")))
            .chain(m.aliases.iter().enumerate().map(|(a, s)| (s.get_ref(), s.span(), format!("{key}.aliases[{a}]"))))
        {
            if !valid_name(name) {
                ctx.err(src, Some(span), k, format!("{name:?} must be printable ASCII without spaces"));
            } else if names.insert(name.as_str().into(), idx).is_some() {
                ctx.err(src, Some(span), k, format!("{name:?} is already a model id or alias"));
            }
        }
        let flops = *m.training_flops.get_ref();
        if !(flops.is_finite() && flops >= 0.0) {
            ctx.err(
                src,
                Some(m.training_flops.span()),
                format!("{key}.training_flops"),
                "must be a finite number >= 0",
            );
        }
        if let Some(p) = &m.parameters {
            if !(p.get_ref().is_finite() && *p.get_ref() > 0.0) {
                ctx.err(src, Some(p.span()), format!("{key}.parameters"), "must be a finite number > 0");
            }
        }
        if m.endpoints.is_empty() {
            ctx.err(src, Some(m.id.span()), format!("{key}.endpoints"), "a model needs at least one endpoint");
        }
        if m.endpoints.len() > usize::from(u8::MAX) {
            ctx.err(src, Some(m.id.span()), format!("{key}.endpoints"), "a model can have at most 255 endpoints");
        }
        let mut eps = Vec::new();
        for (e, ep) in m.endpoints.iter().enumerate() {
            let ekey = format!("{key}.endpoints[{e}]");
            if !valid_label(ep.residency.get_ref()) {
                ctx.err(
                    src,
                    Some(ep.residency.span()),
                    format!("{ekey}.residency"),
                    "must be lowercase letters, digits and '-', e.g. \"us-east\"",
                );
            }
            let credential = match &ep.api_key_env {
                None => None,
                Some(var) => match (ctx.env)(var.get_ref()) {
                    Some(v) if !v.is_empty() => Some(v),
                    _ => {
                        ctx.err(
                            src,
                            Some(var.span()),
                            format!("{ekey}.api_key_env"),
                            format!("environment variable {} is not set", var.get_ref()),
                        );
                        None
                    }
                },
            };
            match Endpoint::build(
                idx,
                ep.url.get_ref(),
                ep.kind,
                ep.residency.get_ref(),
                ep.deployment.as_ref().map(|d| d.get_ref().as_str()),
                ep.api_version.as_ref().map(|d| d.get_ref().as_str()),
                credential.as_deref(),
            ) {
                Ok(built) => {
                    eps.push(endpoints.len() as EndpointIdx);
                    endpoints.push(built);
                }
                Err(e) => ctx.err(src, Some(ep.url.span()), format!("{ekey}.url"), e.to_string()),
            }
        }
        let model = Model {
            id: id.as_str().into(),
            aliases: m.aliases.iter().map(|a| a.get_ref().as_str().into()).collect(),
            training_flops: flops,
            compute_basis: m.compute_basis,
            parameters: m.parameters.as_ref().map(|p| *p.get_ref()),
            developer: m.developer.as_deref().map(Into::into),
        };
        out.push((model, eps));
    }
    (out, names, endpoints)
}

fn compile_groups<'f>(ctx: &mut Ctx, src: &Source, file: &'f CountryGroupsFile) -> HashMap<&'f str, Vec<&'f str>> {
    let mut groups = HashMap::new();
    for (i, g) in file.groups.iter().enumerate() {
        let id = g.id.get_ref().as_str();
        let key = entry("groups", i, id);
        if !valid_name(id) {
            ctx.err(src, Some(g.id.span()), format!("{key}.id"), "must be printable ASCII without spaces");
        }
        let mut list = Vec::new();
        for (c, country) in g.countries.iter().enumerate() {
            if valid_country(country.get_ref()) {
                list.push(country.get_ref().as_str());
            } else {
                ctx.err(
                    src,
                    Some(country.span()),
                    format!("{key}.countries[{c}]"),
                    format!("{:?} is not an ISO 3166-1 alpha-2 code (two capital letters)", country.get_ref()),
                );
            }
        }
        if groups.insert(id, list).is_some() {
            ctx.err(src, Some(g.id.span()), format!("{key}.id"), format!("group {id:?} is defined twice"));
        }
    }
    groups
}

type TenantOut = (Vec<Tenant>, HashMap<Box<str>, u32>, KeyIndex);

fn compile_tenants(
    ctx: &mut Ctx,
    src: &Source,
    file: &TenantsFile,
    jurisdictions: &[Jurisdiction],
    regional_limits: &[Option<&RawLimits>],
    coverage: &Coverage,
    models: &[ModelEntry],
) -> TenantOut {
    let mut out = Vec::new();
    let mut ids = HashMap::new();
    let mut keys: HashMap<[u8; 32], (u32, String)> = HashMap::new();
    for (i, t) in file.tenants.iter().enumerate() {
        let idx = out.len() as u32;
        let id = t.id.get_ref().as_str();
        let key = entry("tenants", i, id);
        if !valid_name(id) {
            ctx.err(src, Some(t.id.span()), format!("{key}.id"), "must be printable ASCII without spaces");
        }
        if ids.insert(Box::<str>::from(id), idx).is_some() {
            ctx.err(src, Some(t.id.span()), format!("{key}.id"), format!("tenant {id:?} is defined twice"));
        }
        if t.legal_name.trim().is_empty() {
            ctx.err(src, Some(t.id.span()), format!("{key}.legal_name"), "must not be empty");
        }
        let jurisdiction = tenant_jurisdiction(ctx, src, &key, t, jurisdictions, coverage);
        for (k, d) in t.key_sha256.iter().enumerate() {
            let kk = format!("{key}.key_sha256[{k}]");
            match auth::parse_digest(d.get_ref()).filter(|_| d.get_ref().len() == 64) {
                None => ctx.err(
                    src,
                    Some(d.span()),
                    kk,
                    "must be 64 hex digits (the SHA-256 of the key; see `customs keygen`)",
                ),
                Some(digest) => {
                    if let Some((_, other)) = keys.insert(digest, (idx, id.to_owned())) {
                        ctx.err(
                            src,
                            Some(d.span()),
                            kk,
                            format!("this key digest is also listed for tenant {other:?}"),
                        );
                    }
                }
            }
        }
        let suspended = (*t.status.get_ref() == TenantStatus::Suspended)
            .then(|| ctx.rule(src, t.status.span(), format!("{key}.status"), "status = \"suspended\"".into()));
        let allowlist = t.allow_models.as_ref().map(|list| {
            let ids = || models.iter().map(|(m, _)| &*m.id);
            let patterns = model_patterns(ctx, src, &format!("{key}.allow_models"), list.get_ref(), ids, "model id");
            let mut bits = vec![0u64; models.len().div_ceil(64)];
            for (m, (model, _)) in models.iter().enumerate() {
                if patterns.iter().flatten().any(|(g, _)| g.is_match(&*model.id)) {
                    bits[m / 64] |= 1 << (m % 64);
                }
            }
            let rule = ctx.rule(
                src,
                list.span(),
                format!("{key}.allow_models"),
                "the tenant's own allowlist does not include the model".into(),
            );
            ModelSet { bits: bits.into(), rule }
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
            let purposes: Vec<&str> = d.purposes.iter().map(|p| p.get_ref().as_str()).collect();
            let decl = d.id.get_ref();
            let rule = ctx.rule(
                src,
                d.id.span(),
                dk.clone(),
                format!("declaration {decl} valid {valid}, purposes {purposes:?}"),
            );
            let pending_rule = match &d.effective_from {
                Some(from) => ctx.rule(
                    src,
                    from.span(),
                    format!("{dk}.effective_from"),
                    format!("declaration {decl} does not count before {}: as if none were on file", valid.from),
                ),
                None => rule,
            };
            Some(Declaration {
                id: decl.as_str().into(),
                effective_from: valid.from,
                expires: valid.until,
                purposes: purposes.into_iter().map(Into::into).collect(),
                rule,
                pending_rule,
            })
        });
        let suspension = t.suspension.as_ref().and_then(|s| {
            let sk = format!("{key}.suspension");
            let raw = s.get_ref();
            let window = day_window(
                ctx,
                src,
                &sk,
                ("effective_from", raw.effective_from.as_ref()),
                ("until", raw.until.as_ref()),
            );
            let reason = raw.reason.get_ref().trim();
            if reason.is_empty() {
                ctx.err(src, Some(raw.reason.span()), format!("{sk}.reason"), "must say why the tenant is suspended");
            }
            let window = window?;
            let rule = ctx.rule(src, s.span(), sk, format!("suspended {window}: {reason}"));
            Some(Suspension { window, rule })
        });
        if let Some(l) = &t.limits {
            check_limits(ctx, src, &format!("{key}.limits"), l);
        }
        let regional = regional_limits.get(jurisdiction as usize).copied().flatten();
        let limits = merge_limits(t.limits.as_ref().map(|l| l.get_ref()), regional);
        out.push(Tenant {
            id: id.into(),
            legal_name: t.legal_name.as_str().into(),
            country: t.country.get_ref().as_str().into(),
            jurisdiction,
            suspended,
            suspension,
            denied_party: None,
            declaration,
            allowlist,
            limits,
        });
    }
    let index = KeyIndex::build(keys.into_iter().map(|(d, (t, _))| (d, t)));
    (out, ids, index)
}

/// The tenant's jurisdiction, which must be the one its country belongs to: the binding is made
/// in config, checked against the country table, and never taken from the request.
fn tenant_jurisdiction(
    ctx: &mut Ctx,
    src: &Source,
    key: &str,
    t: &RawTenant,
    jurisdictions: &[Jurisdiction],
    coverage: &Coverage,
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
    match coverage.of(country) {
        Some(c) if c as usize == j => {}
        Some(c) => {
            let actual = jurisdictions.get(c as usize).map_or("?", |j| &*j.id);
            ctx.err(
                src,
                Some(t.jurisdiction.span()),
                format!("{key}.jurisdiction"),
                format!("country {country} belongs to jurisdiction {actual:?}, not {named:?}"),
            );
        }
        None => ctx.err(
            src,
            Some(t.country.span()),
            format!("{key}.country"),
            format!("country {country} is not covered by any jurisdiction"),
        ),
    }
    j as u32
}

pub(super) fn check_limits(ctx: &mut Ctx, src: &Source, key: &str, l: &Spanned<RawLimits>) {
    let v = l.get_ref();
    if let Some(f) = v.daily_inference_flops {
        if !(f.is_finite() && f > 0.0) {
            ctx.err(src, Some(l.span()), format!("{key}.daily_inference_flops"), "must be a finite number > 0");
        }
    }
    if v.request_burst.is_some() && v.requests_per_minute.is_none() {
        ctx.err(src, Some(l.span()), format!("{key}.request_burst"), "only applies with requests_per_minute");
    }
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
