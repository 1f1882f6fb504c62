//! Compiles `models.toml`: each model's names (ids and aliases share one namespace), its compute
//! figures, and its endpoints built into the upstream table with their credentials resolved.

use std::collections::HashMap;

use super::ctx::{Ctx, ModelEntry, entry, valid_label, valid_name};
use crate::config::error::Source;
use crate::config::raw::ModelsFile;
use crate::endpoint::{Endpoint, EndpointKind};
use crate::policy::{EndpointIdx, Model};
use crate::route::Operation;

pub(super) fn compile_models(
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
        if let Some(t) = &m.max_output_tokens
            && *t.get_ref() == 0
        {
            ctx.err(src, Some(t.span()), format!("{key}.max_output_tokens"), "must be at least 1");
        }
        if m.endpoints.is_empty() {
            ctx.err(src, Some(m.id.span()), format!("{key}.endpoints"), "a model needs at least one endpoint");
        }
        // Azure clients name the model as one segment of the path (/openai/deployments/{name}/..),
        // where a '/' cannot be; such a name would be reachable from the body's `model` only.
        if m.endpoints.iter().any(|ep| ep.kind == EndpointKind::Azure) {
            let names = std::iter::once((&m.id, format!("{key}.id")))
                .chain(m.aliases.iter().enumerate().map(|(a, s)| (s, format!("{key}.aliases[{a}]"))));
            for (name, k) in names {
                if name.get_ref().contains('/') {
                    ctx.err(
                        src,
                        Some(name.span()),
                        k,
                        format!(
                            "{:?} contains '/': this model has an Azure endpoint, and Azure clients name a model as a deployment in the URL path, where '/' cannot be",
                            name.get_ref()
                        ),
                    );
                }
            }
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
            for (value, name) in
                [(ep.stream_idle_timeout, "stream_idle_timeout"), (ep.stream_max_duration, "stream_max_duration")]
            {
                if value.is_some_and(|d| d.is_zero()) {
                    ctx.err(src, Some(ep.url.span()), format!("{ekey}.{name}"), "must be greater than zero");
                }
            }
            let credential = match &ep.api_key_env {
                None => None,
                Some(var) => match ctx.env(var.get_ref()) {
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
                Ok(built) if built.origin().scheme_str() == Some("http") && !built.is_loopback() && !ep.allow_http => {
                    ctx.err(
                        src,
                        Some(ep.url.span()),
                        format!("{ekey}.url"),
                        "is http:// off loopback, where the upstream key would travel in clear; use https://, or set allow_http = true for a network you trust",
                    );
                }
                Ok(mut built) => {
                    built.ask_stream_usage = ep.ask_stream_usage.unwrap_or(true);
                    built.stream_idle_timeout = ep.stream_idle_timeout;
                    built.stream_max_duration = ep.stream_max_duration;
                    eps.push(endpoints.len() as EndpointIdx);
                    endpoints.push(built);
                }
                Err(e) => ctx.err(src, Some(ep.url.span()), format!("{ekey}.url"), e.to_string()),
            }
        }
        // An endpoint serves the operations of its API's kind; a model, what all of its do.
        let kind_of = |op: Operation| m.endpoints.iter().find(|ep| !ep.kind.serves(op)).map(|ep| ep.kind);
        let mut operations =
            Operation::ALL.into_iter().filter(|op| kind_of(*op).is_none()).fold(0u8, |bits, op| bits | 1 << op.index());
        if operations == 0 {
            ctx.err(
                src,
                Some(m.id.span()),
                format!("{key}.endpoints"),
                "mixes endpoint kinds that serve no operation in common (anthropic serves messages; openai and azure the rest)",
            );
        }
        if let Some(list) = &m.operations {
            operations = 0;
            if list.get_ref().is_empty() {
                ctx.err(
                    src,
                    Some(list.span()),
                    format!("{key}.operations"),
                    "lists no operation; leave it out to serve all its endpoints serve",
                );
            }
            for (o, name) in list.get_ref().iter().enumerate() {
                let named = Operation::ALL.into_iter().filter(|op| op.config_name() == name.get_ref());
                let okey = format!("{key}.operations[{o}]");
                let mut known = false;
                for op in named {
                    known = true;
                    if let Some(kind) = kind_of(op) {
                        let msg =
                            format!("{:?} is not served by an endpoint of kind {:?}", name.get_ref(), kind.as_str());
                        ctx.err(src, Some(name.span()), okey.clone(), msg);
                    }
                    operations |= 1 << op.index();
                }
                if !known {
                    let mut names: Vec<&str> = Operation::ALL.iter().map(|op| op.config_name()).collect();
                    names.dedup();
                    let msg = format!("unknown operation {:?}; one of {}", name.get_ref(), names.join(", "));
                    ctx.err(src, Some(name.span()), okey, msg);
                }
            }
        }
        let model = Model {
            id: id.as_str().into(),
            aliases: m.aliases.iter().map(|a| a.get_ref().as_str().into()).collect(),
            training_flops: flops,
            compute_basis: m.compute_basis,
            parameters: m.parameters.as_ref().map(|p| *p.get_ref()),
            max_output_tokens: m.max_output_tokens.as_ref().map(|t| *t.get_ref()),
            developer: m.developer.as_deref().map(Into::into),
            operations,
        };
        out.push((model, eps));
    }
    (out, names, endpoints)
}
