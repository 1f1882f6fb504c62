//! Compiles `jurisdictions.toml`: country coverage, each version's rules resolved into a row of
//! per-model verdicts, and each jurisdiction's timeline of versions (effective dates checked for
//! overlap, gaps made explicit so a lookup on any day finds its answer).

use std::collections::{BTreeSet, HashMap};

use globset::GlobMatcher;
use toml::Spanned;

use super::ctx::{Ctx, ModelEntry, check_limits, day_window, entry, glob, model_patterns, valid_country, valid_label};
use crate::config::error::Source;
use crate::config::raw::{DeclarationRequirement, JurisdictionsFile, RawJurisdiction};
use crate::endpoint::Endpoint;
use crate::policy::{
    AppliesBy, Cell, Day, EndpointIdx, EndpointRun, InForce, Jurisdiction, JurisdictionVersion, Model, Period, RuleId,
    TableBuilder, VerdictTable, Window,
};

/// Which jurisdiction each country belongs to, and the catch-all one (`countries = ["*"]`).
pub(super) struct Coverage {
    by_country: HashMap<String, u32>,
    rest: Option<u32>,
}

impl Coverage {
    pub(super) fn of(&self, country: &str) -> Option<u32> {
        self.by_country.get(country).copied().or(self.rest)
    }
}

pub(super) struct Compiled {
    pub jurisdictions: Vec<Jurisdiction>,
    pub coverage: Coverage,
    pub verdicts: VerdictTable,
    /// Each jurisdiction's first block: its limits are every version's (limits are not dated).
    pub first_block: Vec<usize>,
}

/// The countries one block covers, after exclusions; `star` for the catch-all.
#[derive(PartialEq, Eq)]
struct Countries {
    set: BTreeSet<String>,
    star: bool,
}

/// What is known of one jurisdiction id while its blocks are read.
struct Blocks<'f> {
    id: &'f str,
    first: usize,
    countries: Countries,
    /// (block index, the days it is in force, its compiled rules); a block whose dates are
    /// invalid is left out (the load fails anyway).
    versions: Vec<(usize, Window, JurisdictionVersion)>,
}

pub(super) fn compile_jurisdictions(
    ctx: &mut Ctx,
    src: &Source,
    file: &JurisdictionsFile,
    groups: &HashMap<&str, Vec<&str>>,
    models: &[ModelEntry],
    endpoints: &[Endpoint],
) -> Compiled {
    let mut verdicts = TableBuilder::new(models.len());
    let mut coverage = Coverage { by_country: HashMap::new(), rest: None };
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut all: Vec<Blocks> = Vec::new();
    if file.jurisdictions.is_empty() {
        ctx.err(src, None, "jurisdictions", "no jurisdictions are defined; every tenant needs one");
    }
    for (i, j) in file.jurisdictions.iter().enumerate() {
        let id = j.id.get_ref().as_str();
        let key = entry("jurisdictions", i, id);
        if !valid_label(id) {
            ctx.err(src, Some(j.id.span()), format!("{key}.id"), "must be lowercase letters, digits and '-'");
        }
        let window =
            day_window(ctx, src, &key, ("effective_from", j.effective_from.as_ref()), ("until", j.until.as_ref()));
        let countries = expand_countries(ctx, src, &key, j, groups);
        let idx = match ids.get(id) {
            Some(&idx) => {
                if let Some(b) = all.get(idx) {
                    same_as_first_version(ctx, src, &key, j, &countries, b, file);
                }
                idx
            }
            None => {
                let idx = all.len();
                ids.insert(id, idx);
                claim_countries(ctx, src, &key, idx as u32, j, &countries, &mut coverage, &all);
                all.push(Blocks { id, first: i, countries, versions: Vec::new() });
                idx
            }
        };
        let version_rule =
            ctx.rule(src, j.id.span(), key.clone(), format!("in force {}", window.unwrap_or(Window::ALWAYS)));
        let embargoed = j.embargoed.as_ref().filter(|e| *e.get_ref()).map(|e| {
            ctx.rule(src, e.span(), format!("{key}.embargoed"), "embargoed = true: every model is denied".into())
        });
        let regional = if embargoed.is_some() { None } else { region_rules(ctx, src, &key, j, models, endpoints) };
        let row = verdicts.push_row(|m, run| match (&regional, models.get(m)) {
            (Some(r), Some((model, eps))) => r.verdict(model, eps, endpoints, run),
            // Embargoed (or invalid, which fails the load): decided before any verdict is read.
            _ => Cell::denied(embargoed.unwrap_or(0)),
        });
        if let Some(l) = &j.limits {
            check_limits(ctx, src, &format!("{key}.limits"), l);
        }
        let rule = |f: fn(&RegionRules) -> RuleId| regional.as_ref().map_or(0, f);
        let version = JurisdictionVersion {
            row,
            rule: version_rule,
            embargoed,
            threshold_rule: rule(|r| r.threshold_rule),
            declaration_rule: rule(|r| r.declaration.map_or(0, |(_, rule)| rule)),
            residency_rule: rule(|r| r.residency_rule),
        };
        if let (Some(w), Some(b)) = (window, all.get_mut(idx)) {
            b.versions.push((i, w, version));
        }
    }
    let mut first_block = Vec::with_capacity(all.len());
    let jurisdictions = all
        .into_iter()
        .map(|b| {
            first_block.push(b.first);
            let applies_by = applies_by(ctx, src, file, b.id, b.first);
            Jurisdiction { id: b.id.into(), applies_by, periods: timeline(ctx, src, file, b.id, b.versions).into() }
        })
        .collect();
    Compiled { jurisdictions, coverage, verdicts: verdicts.build(), first_block }
}

/// The first block's `applies_by`, which every later block of the id must repeat (or leave
/// unset): a tenant's binding is checked once, not per version.
fn applies_by(ctx: &mut Ctx, src: &Source, file: &JurisdictionsFile, id: &str, first: usize) -> AppliesBy {
    let of = |j: &RawJurisdiction| j.applies_by.as_ref().map(|a| *a.get_ref()).unwrap_or_default();
    let want = file.jurisdictions.get(first).map(of).unwrap_or_default();
    for (i, j) in file.jurisdictions.iter().enumerate().filter(|(i, j)| *i != first && j.id.get_ref() == id) {
        if of(j) != want {
            let span = j.applies_by.as_ref().map(Spanned::span).or(Some(j.id.span()));
            ctx.err(
                src,
                span,
                format!("{}.applies_by", entry("jurisdictions", i, id)),
                "must be the same in every version",
            );
        }
    }
    want
}

/// Orders one jurisdiction's versions by date, reports every pair that overlaps (at the later
/// block in the file, naming the other's line), and fills the days no version covers with gaps
/// whose rule names their dates.
fn timeline(
    ctx: &mut Ctx,
    src: &Source,
    file: &JurisdictionsFile,
    id: &str,
    mut versions: Vec<(usize, Window, JurisdictionVersion)>,
) -> Vec<Period> {
    let block = |i: usize| file.jurisdictions.get(i);
    for (a, (ia, wa, _)) in versions.iter().enumerate() {
        for (ib, wb, _) in versions.iter().skip(a + 1) {
            if !wa.overlaps(*wb) {
                continue;
            }
            let (Some(first), Some(later)) = (block(*ia), block(*ib)) else { continue };
            let (line, _) = src.position(&first.id.span());
            ctx.err(
                src,
                Some(later.id.span()),
                entry("jurisdictions", *ib, id),
                format!(
                    "in force {wb}, which overlaps its version at {}:{line} (in force {wa}); \
                     versions of a jurisdiction need effective_from/until ranges that do not overlap",
                    src.name
                ),
            );
        }
    }
    versions.sort_by_key(|(_, w, _)| w.from);
    let mut periods = Vec::with_capacity(versions.len());
    // The first day not yet covered; `None` once a version runs to the end of time.
    let mut next = Some(Day::MIN);
    let mut last: Option<usize> = None;
    for (i, w, version) in versions {
        if let (Some(n), Some(before)) = (next, w.from.pred()) {
            if n <= before {
                let gap = Window { from: n, until: before };
                let span = block(i).and_then(|b| b.effective_from.as_ref()).map(Spanned::span);
                let rule =
                    gap_rule(ctx, src, format!("{}.effective_from", entry("jurisdictions", i, id)), span, id, gap);
                periods.push(Period { window: gap, in_force: InForce::Nothing(rule) });
            }
        }
        periods.push(Period { window: w, in_force: InForce::Version(version) });
        next = next.max(w.until.succ()).filter(|_| w.until != Day::MAX);
        last = Some(i);
    }
    if let (Some(from), Some(i)) = (next, last) {
        let gap = Window { from, until: Day::MAX };
        let span = block(i).and_then(|b| b.until.as_ref()).map(Spanned::span);
        let rule = gap_rule(ctx, src, format!("{}.until", entry("jurisdictions", i, id)), span, id, gap);
        periods.push(Period { window: gap, in_force: InForce::Nothing(rule) });
    }
    periods
}

fn gap_rule(
    ctx: &mut Ctx,
    src: &Source,
    key: String,
    span: Option<std::ops::Range<usize>>,
    id: &str,
    gap: Window,
) -> RuleId {
    let when = match (gap.from == Day::MIN, gap.until == Day::MAX, gap.from.pred(), gap.until.succ()) {
        (true, false, _, Some(next)) => format!("before {next}"),
        (false, true, Some(prev), _) => format!("after {prev}"),
        _ => format!("{gap}"),
    };
    ctx.rule(
        src,
        span.unwrap_or_default(),
        key,
        format!("no version of jurisdiction {id:?} is in force {when}, so every model is denied (default deny)"),
    )
}

fn expand_countries(
    ctx: &mut Ctx,
    src: &Source,
    key: &str,
    j: &RawJurisdiction,
    groups: &HashMap<&str, Vec<&str>>,
) -> Countries {
    let mut expand = |list: &[Spanned<String>], field: &str, allow_star: bool| -> BTreeSet<String> {
        let mut set = BTreeSet::new();
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
    let excluded: BTreeSet<String> = expand(&j.exclude_countries, "exclude_countries", false)
        .into_iter()
        .chain(expand(&j.exclude_country_groups, "exclude_country_groups", false))
        .collect();
    let star = included.remove("*");
    Countries { set: included.difference(&excluded).cloned().collect(), star }
}

#[expect(clippy::too_many_arguments, reason = "one call site; a struct would only rename the arguments")]
fn claim_countries(
    ctx: &mut Ctx,
    src: &Source,
    key: &str,
    idx: u32,
    j: &RawJurisdiction,
    countries: &Countries,
    coverage: &mut Coverage,
    all: &[Blocks],
) {
    let other = |prev: u32| all.get(prev as usize).map_or("?", |o| o.id);
    if countries.star {
        if let Some(prev) = coverage.rest.replace(idx) {
            ctx.err(
                src,
                Some(j.id.span()),
                format!("{key}.countries"),
                format!("\"*\" is already claimed by jurisdiction {:?}", other(prev)),
            );
        }
    }
    if countries.set.is_empty() && coverage.rest != Some(idx) {
        ctx.err(src, Some(j.id.span()), format!("{key}.countries"), "covers no country");
    }
    for c in &countries.set {
        if let Some(prev) = coverage.by_country.insert(c.clone(), idx) {
            ctx.err(
                src,
                Some(j.id.span()),
                format!("{key}.countries"),
                format!("country {c} is also covered by jurisdiction {:?}; exclude it from one of them", other(prev)),
            );
        }
    }
}

/// A later version must cover the same countries and set the same limits as the first: tenants
/// are checked against their jurisdiction's countries, and given its limits, once, at load.
fn same_as_first_version(
    ctx: &mut Ctx,
    src: &Source,
    key: &str,
    j: &RawJurisdiction,
    countries: &Countries,
    first: &Blocks,
    file: &JurisdictionsFile,
) {
    let Some(raw_first) = file.jurisdictions.get(first.first) else { return };
    let (line, _) = src.position(&raw_first.id.span());
    if *countries != first.countries {
        let list = |a: &Countries, b: &Countries| {
            let mut v: Vec<&str> = a.set.difference(&b.set).map(String::as_str).collect();
            if a.star && !b.star {
                v.insert(0, "*");
            }
            if v.is_empty() { "none".to_owned() } else { v.join(", ") }
        };
        ctx.err(
            src,
            Some(j.id.span()),
            format!("{key}.countries"),
            format!(
                "covers other countries than its version at {}:{line} (only here: {}; only there: {}); \
                 every version covers the same countries, since tenants are bound to the jurisdiction",
                src.name,
                list(countries, &first.countries),
                list(&first.countries, countries),
            ),
        );
    }
    let limits = |j: &RawJurisdiction| j.limits.as_ref().map(|l| l.get_ref().clone());
    if limits(j) != limits(raw_first) {
        let span = j.limits.as_ref().map_or(j.id.span(), Spanned::span);
        ctx.err(
            src,
            Some(span),
            format!("{key}.limits"),
            format!(
                "differ from its version at {}:{line}; limits are not dated, so every version sets the same",
                src.name
            ),
        );
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
    fn verdict(&self, model: &Model, eps: &[EndpointIdx], endpoints: &[Endpoint], run: &mut EndpointRun<'_>) -> Cell {
        let names = || std::iter::once(&*model.id).chain(model.aliases.iter().map(|a| &**a));
        // Deny looks at every name of the model, allow only at its id: an alias can never be the
        // thing that grants access, and can never be a way around a deny.
        let (pattern_rule, denied_by_pattern) = match self.deny.iter().find(|(g, _)| names().any(|n| g.is_match(n))) {
            Some((_, rule)) => (*rule, true),
            None => match self.allow.iter().find(|(g, _)| g.is_match(&*model.id)) {
                Some((_, rule)) => (*rule, false),
                None => (self.no_allow_match, true),
            },
        };
        run.extend(eps.iter().copied().filter(|&e| {
            endpoints.get(e as usize).is_some_and(|ep| self.residencies.iter().any(|g| g.is_match(&*ep.residency)))
        }));
        Cell {
            pattern_rule,
            denied_by_pattern,
            over_threshold: model.training_flops >= self.max_flops,
            needs_declaration: self.declaration.is_some_and(|(at, _)| model.training_flops >= at),
        }
    }
}

fn region_rules(
    ctx: &mut Ctx,
    src: &Source,
    key: &str,
    j: &RawJurisdiction,
    models: &[ModelEntry],
    endpoints: &[Endpoint],
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
            // A mistyped label, or a model left out for its errors, is reported in models.toml;
            // it would make patterns here look wrong too.
            let labels_ok = !endpoints.is_empty() && endpoints.iter().all(|e| valid_label(&e.residency));
            for (i, p) in list.get_ref().iter().enumerate() {
                let k = format!("{key}.allowed_residencies[{i}]");
                match glob(ctx, src, &k, p) {
                    // A typo here would refuse every request of the jurisdiction with
                    // no_resident_endpoint: a pattern must name a label some endpoint has.
                    Some(g) if labels_ok && !endpoints.iter().any(|e| g.is_match(&*e.residency)) => {
                        let msg = format!("pattern {:?} matches no endpoint residency label", p.get_ref());
                        ctx.err(src, Some(p.span()), k, msg);
                        ok = false;
                    }
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
