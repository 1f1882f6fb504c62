//! Compiles the parsed files into a [`Policy`]: checks every cross-reference and range, collects
//! every problem instead of stopping at the first, and resolves all patterns and thresholds into
//! per-(jurisdiction, model) verdicts so nothing is evaluated lazily on the request path.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use globset::{Glob, GlobMatcher};
use http::HeaderValue;
use toml::Spanned;

use super::error::{ConfigError, Source};
use super::raw::{
    CountryGroupsFile, DeclarationRequirement, GatewayFile, JurisdictionsFile, ModelsFile, RawJurisdiction, RawLimits,
    RawTenant, ScreeningFile, TenantStatus, TenantsFile,
};
use super::screen::{self, ListSource};
use crate::auth::{self, KeyIndex};
use crate::limits::LimitSpec;
use crate::policy::{
    Day, Declaration, EndpointIdx, Jurisdiction, Model, ModelSet, Policy, RegionVerdict, Rule, RuleId, Tenant,
};
use crate::route::Endpoint;

pub(super) struct Parsed<'s> {
    pub gateway: (&'s Source, GatewayFile),
    pub models: (&'s Source, ModelsFile),
    pub groups: (&'s Source, CountryGroupsFile),
    pub jurisdictions: (&'s Source, JurisdictionsFile),
    pub tenants: (&'s Source, TenantsFile),
    pub screening: (&'s Source, ScreeningFile),
    pub list: Option<ListSource>,
}

/// Collects errors and rules while compiling.
struct Ctx<'e> {
    errors: Vec<ConfigError>,
    rules: Vec<Rule>,
    env: &'e dyn Fn(&str) -> Option<String>,
}

impl Ctx<'_> {
    fn err(&mut self, src: &Source, span: Option<Range<usize>>, key: impl Into<String>, msg: impl Into<String>) {
        self.errors.push(src.error(span.as_ref(), key, msg));
    }

    fn rule(&mut self, src: &Source, span: Range<usize>, key: String, detail: String) -> RuleId {
        let (line, _) = src.position(&span);
        self.rules.push(Rule { file: src.name.as_str().into(), line, key: key.into(), detail: detail.into() });
        (self.rules.len() - 1) as RuleId
    }
}

fn entry(list: &str, i: usize, id: &str) -> String {
    format!("{list}[{i}] ({id})")
}

/// Names that are compared byte for byte: printable ASCII without spaces, so look-alike Unicode,
/// whitespace and control characters can never be part of a model, alias, tenant or group id.
fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && s.bytes().all(|b| b.is_ascii_graphic())
}

fn valid_label(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn valid_country(s: &str) -> bool {
    s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase())
}

fn glob(ctx: &mut Ctx, src: &Source, key: &str, p: &Spanned<String>) -> Option<GlobMatcher> {
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
fn model_patterns<'n, I: Iterator<Item = &'n str>>(
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

pub(super) fn compile(
    p: Parsed<'_>,
    env: &dyn Fn(&str) -> Option<String>,
    version: String,
) -> Result<(GatewayFile, Policy), Vec<ConfigError>> {
    let mut ctx = Ctx { errors: Vec::new(), rules: Vec::new(), env };
    check_gateway(&mut ctx, p.gateway.0, &p.gateway.1);
    let (models, model_names, endpoints) = compile_models(&mut ctx, p.models.0, &p.models.1);
    let groups = compile_groups(&mut ctx, p.groups.0, &p.groups.1);
    let (jurisdictions, coverage, verdicts, verdict_endpoints) =
        compile_jurisdictions(&mut ctx, p.jurisdictions.0, &p.jurisdictions.1, &groups, &models, &endpoints);
    let (mut tenants, tenant_ids, keys) =
        compile_tenants(&mut ctx, p.tenants.0, &p.tenants.1, &jurisdictions, &p.jurisdictions.1, &coverage, &models);
    let screening = screen::screen(
        &mut ctx.errors,
        &mut ctx.rules,
        (p.screening.0, &p.screening.1),
        p.list.as_ref(),
        &p.tenants.1,
        &mut tenants,
    );
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
    Ok((p.gateway.1, policy))
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
type ModelEntry = (Model, Vec<EndpointIdx>);

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

/// Which jurisdiction each country belongs to, and the catch-all one (`countries = ["*"]`).
pub(super) struct Coverage {
    by_country: HashMap<String, u32>,
    rest: Option<u32>,
}

impl Coverage {
    fn of(&self, country: &str) -> Option<u32> {
        self.by_country.get(country).copied().or(self.rest)
    }
}

fn compile_jurisdictions(
    ctx: &mut Ctx,
    src: &Source,
    file: &JurisdictionsFile,
    groups: &HashMap<&str, Vec<&str>>,
    models: &[ModelEntry],
    endpoints: &[Endpoint],
) -> (Vec<Jurisdiction>, Coverage, Vec<RegionVerdict>, Vec<EndpointIdx>) {
    let mut out = Vec::new();
    let mut verdicts = Vec::new();
    let mut verdict_endpoints = Vec::new();
    let mut coverage = Coverage { by_country: HashMap::new(), rest: None };
    let mut ids = HashSet::new();
    if file.jurisdictions.is_empty() {
        ctx.err(src, None, "jurisdictions", "no jurisdictions are defined; every tenant needs one");
    }
    for (i, j) in file.jurisdictions.iter().enumerate() {
        let idx = out.len() as u32;
        let id = j.id.get_ref().as_str();
        let key = entry("jurisdictions", i, id);
        if !valid_label(id) {
            ctx.err(src, Some(j.id.span()), format!("{key}.id"), "must be lowercase letters, digits and '-'");
        }
        if !ids.insert(id) {
            ctx.err(src, Some(j.id.span()), format!("{key}.id"), format!("jurisdiction {id:?} is defined twice"));
        }
        cover_countries(ctx, src, &key, idx, j, groups, &mut coverage, &file.jurisdictions);
        let embargoed = j.embargoed.as_ref().filter(|e| *e.get_ref()).map(|e| {
            ctx.rule(src, e.span(), format!("{key}.embargoed"), "embargoed = true: every model is denied".into())
        });
        let regional = if embargoed.is_some() { None } else { region_rules(ctx, src, &key, j, models) };
        for (model, eps) in models {
            let v = match &regional {
                Some(r) => r.verdict(model, eps, endpoints, &mut verdict_endpoints),
                // Embargoed (or invalid, which fails the load): decided before any verdict is read.
                None => RegionVerdict {
                    pattern_rule: embargoed.unwrap_or(0),
                    flags: RegionVerdict::DENIED_BY_PATTERN,
                    endpoints_len: 0,
                    endpoints_start: 0,
                },
            };
            verdicts.push(v);
        }
        if let Some(l) = &j.limits {
            check_limits(ctx, src, &format!("{key}.limits"), l);
        }
        let rule = |f: fn(&RegionRules) -> RuleId| regional.as_ref().map_or(0, f);
        out.push(Jurisdiction {
            id: id.into(),
            embargoed,
            threshold_rule: rule(|r| r.threshold_rule),
            declaration_rule: rule(|r| r.declaration.map_or(0, |(_, rule)| rule)),
            residency_rule: rule(|r| r.residency_rule),
        });
    }
    (out, coverage, verdicts, verdict_endpoints)
}

#[expect(clippy::too_many_arguments, reason = "one call site; a struct would only rename the arguments")]
fn cover_countries(
    ctx: &mut Ctx,
    src: &Source,
    key: &str,
    idx: u32,
    j: &RawJurisdiction,
    groups: &HashMap<&str, Vec<&str>>,
    coverage: &mut Coverage,
    all: &[RawJurisdiction],
) {
    let mut expand = |list: &[Spanned<String>], field: &str, allow_star: bool| -> HashSet<String> {
        let mut set = HashSet::new();
        for (c, item) in list.iter().enumerate() {
            let v = item.get_ref();
            let k = format!("{key}.{field}[{c}]");
            if field.ends_with("groups") {
                match groups.get(v.as_str()) {
                    Some(members) => set.extend(members.iter().map(|s| (*s).to_owned())),
                    None => ctx.err(src, Some(item.span()), k, format!("unknown country group {v:?}")),
                }
            } else if allow_star && v == "*" {
                set.insert("*".to_owned());
            } else if valid_country(v) {
                set.insert(v.clone());
            } else {
                ctx.err(src, Some(item.span()), k, format!("{v:?} is not an ISO 3166-1 alpha-2 code"));
            }
        }
        set
    };
    let mut included = expand(&j.countries, "countries", true);
    included.extend(expand(&j.country_groups, "country_groups", false));
    let excluded: HashSet<String> = expand(&j.exclude_countries, "exclude_countries", false)
        .into_iter()
        .chain(expand(&j.exclude_country_groups, "exclude_country_groups", false))
        .collect();
    if included.remove("*") {
        if let Some(prev) = coverage.rest.replace(idx) {
            let other = all.get(prev as usize).map_or("?", |o| o.id.get_ref().as_str());
            ctx.err(
                src,
                Some(j.id.span()),
                format!("{key}.countries"),
                format!("\"*\" is already claimed by jurisdiction {other:?}"),
            );
        }
    }
    if included.is_empty() && coverage.rest != Some(idx) {
        ctx.err(src, Some(j.id.span()), format!("{key}.countries"), "covers no country");
    }
    let mut sorted: Vec<_> = included.difference(&excluded).cloned().collect();
    sorted.sort();
    for c in sorted {
        if let Some(prev) = coverage.by_country.insert(c.clone(), idx) {
            let other = all.get(prev as usize).map_or("?", |o| o.id.get_ref().as_str());
            ctx.err(
                src,
                Some(j.id.span()),
                format!("{key}.countries"),
                format!("country {c} is also covered by jurisdiction {other:?}; exclude it from one of them"),
            );
        }
    }
}

/// A non-embargoed jurisdiction's compiled rules.
struct RegionRules {
    deny: Vec<(GlobMatcher, RuleId)>,
    allow: Vec<(GlobMatcher, RuleId)>,
    no_allow_match: RuleId,
    max_flops: f64,
    threshold_rule: RuleId,
    declaration: Option<(f64, RuleId)>,
    residencies: Vec<GlobMatcher>,
    residency_rule: RuleId,
}

impl RegionRules {
    fn verdict(
        &self,
        model: &Model,
        eps: &[EndpointIdx],
        endpoints: &[Endpoint],
        out: &mut Vec<EndpointIdx>,
    ) -> RegionVerdict {
        let names = || std::iter::once(&*model.id).chain(model.aliases.iter().map(|a| &**a));
        // Deny looks at every name of the model, allow only at its id: an alias can never be the
        // thing that grants access, and can never be a way around a deny.
        let (pattern_rule, mut flags) = match self.deny.iter().find(|(g, _)| names().any(|n| g.is_match(n))) {
            Some((_, rule)) => (*rule, RegionVerdict::DENIED_BY_PATTERN),
            None => match self.allow.iter().find(|(g, _)| g.is_match(&*model.id)) {
                Some((_, rule)) => (*rule, 0),
                None => (self.no_allow_match, RegionVerdict::DENIED_BY_PATTERN),
            },
        };
        if model.training_flops >= self.max_flops {
            flags |= RegionVerdict::OVER_THRESHOLD;
        }
        if self.declaration.is_some_and(|(at, _)| model.training_flops >= at) {
            flags |= RegionVerdict::NEEDS_DECLARATION;
        }
        let start = out.len();
        out.extend(eps.iter().copied().filter(|&e| {
            endpoints.get(e as usize).is_some_and(|ep| self.residencies.iter().any(|g| g.is_match(&*ep.residency)))
        }));
        RegionVerdict {
            pattern_rule,
            flags,
            // Models have at most 255 endpoints (checked when they are compiled).
            endpoints_len: u8::try_from(out.len() - start).unwrap_or(u8::MAX),
            endpoints_start: start as u32,
        }
    }
}

fn region_rules(
    ctx: &mut Ctx,
    src: &Source,
    key: &str,
    j: &RawJurisdiction,
    models: &[ModelEntry],
) -> Option<RegionRules> {
    let missing = |ctx: &mut Ctx, field: &str, hint: &str| {
        ctx.err(
            src,
            Some(j.id.span()),
            format!("{key}.{field}"),
            format!("is required unless embargoed = true; {hint}"),
        );
    };
    let all_names = || models.iter().flat_map(|(m, _)| std::iter::once(&*m.id).chain(m.aliases.iter().map(|a| &**a)));
    let ids = || models.iter().map(|(m, _)| &*m.id);

    let deny = model_patterns(ctx, src, &format!("{key}.deny_models"), &j.deny_models, all_names, "model id or alias");
    let mut ok = deny.is_some();
    let deny = deny.unwrap_or_default();
    let (allow, no_allow_match) = match &j.allow_models {
        None => {
            missing(ctx, "allow_models", "list the model id patterns this jurisdiction may use");
            ok = false;
            (Vec::new(), 0)
        }
        Some(list) => {
            let allow = model_patterns(ctx, src, &format!("{key}.allow_models"), list.get_ref(), ids, "model id");
            ok &= allow.is_some();
            let allow = allow.unwrap_or_default();
            let rule = ctx.rule(
                src,
                list.span(),
                format!("{key}.allow_models"),
                "no allow_models pattern matches the model id (default deny)".into(),
            );
            (allow, rule)
        }
    };
    let (max_flops, threshold_rule) = match &j.max_training_flops {
        None => {
            missing(
                ctx,
                "max_training_flops",
                "models trained with this many FLOPs or more are denied (use inf for no line)",
            );
            ok = false;
            (0.0, 0)
        }
        Some(v) => {
            let f = *v.get_ref();
            if f.is_nan() || f <= 0.0 {
                ctx.err(src, Some(v.span()), format!("{key}.max_training_flops"), "must be a number > 0 (or inf)");
                ok = false;
            }
            let rule = ctx.rule(
                src,
                v.span(),
                format!("{key}.max_training_flops"),
                format!("models trained with {f:e} FLOPs or more are denied"),
            );
            (f, rule)
        }
    };
    let declaration = match (&j.require_declaration, &j.declaration_flops) {
        (None, _) => {
            missing(ctx, "require_declaration", "one of \"always\", \"never\", \"at-or-above-flops\"");
            ok = false;
            None
        }
        (Some(r), flops) => match (*r.get_ref(), flops) {
            (DeclarationRequirement::Always, None) => Some((
                f64::NEG_INFINITY,
                ctx.rule(
                    src,
                    r.span(),
                    format!("{key}.require_declaration"),
                    "an end-use declaration is required for every model".into(),
                ),
            )),
            (DeclarationRequirement::Never, None) => None,
            (DeclarationRequirement::AtOrAboveFlops, Some(f)) if f.get_ref().is_finite() && *f.get_ref() >= 0.0 => {
                let at = *f.get_ref();
                Some((
                    at,
                    ctx.rule(
                        src,
                        f.span(),
                        format!("{key}.declaration_flops"),
                        format!("an end-use declaration is required for models trained with {at:e} FLOPs or more"),
                    ),
                ))
            }
            (DeclarationRequirement::AtOrAboveFlops, Some(f)) => {
                ctx.err(src, Some(f.span()), format!("{key}.declaration_flops"), "must be a finite number >= 0");
                ok = false;
                None
            }
            (DeclarationRequirement::AtOrAboveFlops, None) => {
                ctx.err(
                    src,
                    Some(r.span()),
                    format!("{key}.declaration_flops"),
                    "is required when require_declaration = \"at-or-above-flops\"",
                );
                ok = false;
                None
            }
            (_, Some(f)) => {
                ctx.err(
                    src,
                    Some(f.span()),
                    format!("{key}.declaration_flops"),
                    "only applies when require_declaration = \"at-or-above-flops\"",
                );
                ok = false;
                None
            }
        },
    };
    let (residencies, residency_rule) = match &j.allowed_residencies {
        None => {
            missing(
                ctx,
                "allowed_residencies",
                "list the endpoint residency labels (patterns) that may serve this jurisdiction",
            );
            ok = false;
            (Vec::new(), 0)
        }
        Some(list) => {
            let mut gs = Vec::new();
            for (i, p) in list.get_ref().iter().enumerate() {
                match glob(ctx, src, &format!("{key}.allowed_residencies[{i}]"), p) {
                    Some(g) => gs.push(g),
                    None => ok = false,
                }
            }
            let shown: Vec<&str> = list.get_ref().iter().map(|s| s.get_ref().as_str()).collect();
            let rule = ctx.rule(
                src,
                list.span(),
                format!("{key}.allowed_residencies"),
                format!("endpoints may run in {shown:?}"),
            );
            (gs, rule)
        }
    };
    ok.then_some(RegionRules {
        deny,
        allow,
        no_allow_match,
        max_flops,
        threshold_rule,
        declaration,
        residencies,
        residency_rule,
    })
}

type TenantOut = (Vec<Tenant>, HashMap<Box<str>, u32>, KeyIndex);

fn compile_tenants(
    ctx: &mut Ctx,
    src: &Source,
    file: &TenantsFile,
    jurisdictions: &[Jurisdiction],
    raw_jurisdictions: &JurisdictionsFile,
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
            let date = d.expires.get_ref();
            let expires = match (date.date, date.time) {
                (Some(day), None) => Day::from_ymd(i64::from(day.year), u32::from(day.month), u32::from(day.day)),
                _ => None,
            };
            if expires.is_none() {
                ctx.err(src, Some(d.expires.span()), format!("{dk}.expires"), "must be a date such as 2027-06-30");
            }
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
            let expires = expires?;
            let purposes: Vec<&str> = d.purposes.iter().map(|p| p.get_ref().as_str()).collect();
            let rule = ctx.rule(
                src,
                d.id.span(),
                dk,
                format!("declaration {} valid through {expires}, purposes {purposes:?}", d.id.get_ref()),
            );
            Some(Declaration {
                id: d.id.get_ref().as_str().into(),
                expires,
                purposes: purposes.into_iter().map(Into::into).collect(),
                rule,
            })
        });
        if let Some(l) = &t.limits {
            check_limits(ctx, src, &format!("{key}.limits"), l);
        }
        let regional = raw_jurisdictions.jurisdictions.get(jurisdiction as usize).and_then(|j| j.limits.as_ref());
        let limits = merge_limits(t.limits.as_ref().map(|l| l.get_ref()), regional.map(|l| l.get_ref()));
        out.push(Tenant {
            id: id.into(),
            legal_name: t.legal_name.as_str().into(),
            country: t.country.get_ref().as_str().into(),
            jurisdiction,
            suspended,
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

fn check_limits(ctx: &mut Ctx, src: &Source, key: &str, l: &Spanned<RawLimits>) {
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
