//! Compiles the parsed files into a [`Policy`]: checks every cross-reference and range, collects
//! every problem instead of stopping at the first, and resolves all patterns and thresholds into
//! per-(jurisdiction version, model) verdicts so nothing is evaluated lazily on the request path.
//!
//! This file only runs the per-file compilers in order and assembles what they built. Each of
//! them is a leaf that shares only [`ctx`] with the others, so what one file's compiler needs from
//! another's is passed in here, never imported.

mod ctx;
mod expect;
mod gateway;
mod groups;
mod jurisdictions;
mod models;
mod ownership;
mod screening;
mod tenants;

use std::collections::HashMap;

use http::HeaderValue;
use toml::Spanned;

use super::error::{ConfigError, Source};
use super::parse::Batches;
use super::raw::{
    CountryGroupsFile, ExpectationsFile, GatewayFile, JurisdictionsFile, ModelsFile, OwnershipFile, RawLimits,
    ScreeningFile,
};
use super::settings::Settings;
use crate::policy::expect::Expectation;
use crate::policy::{Parties, Policy};
pub(super) use tenants::Plan;

pub(super) struct Parsed<'s> {
    pub gateway: (&'s Source, GatewayFile),
    pub models: (&'s Source, ModelsFile),
    pub groups: (&'s Source, CountryGroupsFile),
    pub jurisdictions: (&'s Source, JurisdictionsFile),
    pub screening: (&'s Source, ScreeningFile),
    pub ownership: (&'s Source, OwnershipFile),
    pub list: Option<Source>,
    pub expectations: (&'s Source, ExpectationsFile),
    /// The last load's policy, on a reload: names it screened are not screened again.
    pub previous: Option<&'s Policy>,
    /// Where each tenant file's tenants come from, and the digest of the files they are compiled
    /// against.
    pub plan: Vec<Plan>,
    pub tenant_inputs: [u8; 32],
}

/// What a config compiles to.
pub(super) struct Compiled {
    pub settings: Settings,
    pub policy: Policy,
    pub expectations: Vec<Expectation>,
}

/// `[cluster] fail_closed` resolved to a flag per tenant; an id no jurisdiction has is an error.
fn fail_closed(
    ctx: &mut ctx::Ctx,
    src: &Source,
    cluster: Option<&crate::config::ClusterSettings>,
    jurisdictions: &[crate::policy::Jurisdiction],
    tenants: &crate::policy::Tenants,
) -> Box<[bool]> {
    let names = cluster.map(|c| c.fail_closed.as_slice()).unwrap_or_default();
    let all = names.iter().any(|n| n == "*");
    for n in names.iter().filter(|n| *n != "*") {
        if !jurisdictions.iter().any(|j| &*j.id == n.as_str()) {
            ctx.err(src, None, "cluster.fail_closed", format!("no jurisdiction has the id `{n}`"));
        }
    }
    tenants
        .iter()
        .map(|t| {
            all || jurisdictions
                .get(t.jurisdiction as usize)
                .is_some_and(|j| names.iter().any(|n| n.as_str() == &*j.id))
        })
        .collect()
}

/// Compiles the parsed files and the tenant batches, read as they are parsed. The policy's version
/// is the caller's to set, once every tenant file has been read.
pub(super) fn compile(
    p: Parsed<'_>,
    mut batches: Batches<'_>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Compiled, Vec<ConfigError>> {
    let mut ctx = ctx::Ctx::new(env);
    let settings = gateway::compile_gateway(&mut ctx, p.gateway.0, p.gateway.1);
    let (models, model_names, endpoints) = models::compile_models(&mut ctx, p.models.0, &p.models.1);
    let groups = groups::compile_groups(&mut ctx, p.groups.0, &p.groups.1);
    let j = jurisdictions::compile_jurisdictions(
        &mut ctx,
        p.jurisdictions.0,
        &p.jurisdictions.1,
        &groups,
        &models,
        &endpoints,
    );
    let regional_limits: Vec<Option<&RawLimits>> = j
        .first_block
        .iter()
        .map(|&b| p.jurisdictions.1.jurisdictions.get(b).and_then(|r| r.limits.as_ref()).map(Spanned::get_ref))
        .collect();
    let coverage = |country: &str| j.coverage.of(country);
    let graph = ownership::compile_graph(&mut ctx, p.ownership.0, &p.ownership.1);
    let bind = ownership::Binding { jurisdictions: &j.jurisdictions, coverage: &coverage, ownership: &graph.ownership };
    let inputs = tenants::Inputs {
        jurisdictions: &j.jurisdictions,
        regional_limits: &regional_limits,
        bind: &bind,
        models: &models,
    };
    let (tenants, tenant_ids, keys) = tenants::compile_tenants(&mut ctx, p.plan, &mut batches, &inputs);
    if batches.failed() {
        // The tenant files' own errors are the caller's to report; screening the tenants that
        // did parse would only take time.
        return Err(Vec::new());
    }
    let entities = screening::Entities { names: &graph.names, ids: &graph.ownership.entity_ids };
    let mut parties = HashMap::new();
    let (screening, listed) = screening::screen(
        &mut ctx,
        (p.screening.0, &p.screening.1),
        p.list.as_ref(),
        (&tenants, &tenant_ids, &mut parties),
        entities,
        p.previous,
    );
    let ownership = ownership::resolve(&mut ctx, p.ownership.0, graph, listed, &tenants, &mut parties);
    let cluster_fail_closed = fail_closed(&mut ctx, p.gateway.0, settings.cluster.as_ref(), &j.jurisdictions, &tenants);
    let expectations = expect::compile_expectations(&mut ctx, p.expectations.0, &p.expectations.1, &tenant_ids);
    let rules = ctx.finish()?;
    let policy = Policy {
        version: "".into(),
        version_header: HeaderValue::from_static(""),
        models: models.into_iter().map(|(m, _)| m).collect(),
        model_names,
        jurisdictions: j.jurisdictions.into(),
        parties: Parties::new(tenants.len(), parties),
        tenants,
        tenant_ids,
        keys,
        verdicts: j.verdicts,
        endpoints: endpoints.into(),
        rules: rules.into(),
        tenant_inputs: p.tenant_inputs,
        screening,
        ownership,
        cluster_fail_closed,
    };
    Ok(Compiled { settings, policy, expectations })
}
