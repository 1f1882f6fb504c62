//! The upstream connection pools, one per origin (scheme and authority) and shared by the
//! endpoints on it, and each endpoint's health (`balance`). An origin the previous snapshot had
//! keeps its pool and open connections across a reload, and an endpoint it had (the same URL and
//! paths) keeps its health: a reload does not put an ejected endpoint back or forget its load.

use std::collections::HashMap;
use std::sync::Arc;

use super::balance::Health;
use super::client::OriginPool;
use crate::endpoint::Endpoint;
use crate::ids::EndpointIdx;
use crate::route::Operation;

pub struct Pools {
    /// By endpoint, the index of its origin's pool.
    of_endpoint: Box<[u32]>,
    origins: Box<[Arc<OriginPool>]>,
    /// By endpoint.
    health: Box<[Arc<Health>]>,
}

/// What makes two endpoints the same upstream: origin and the paths under it (for Azure, the
/// deployment).
fn identity(ep: &Endpoint) -> (&http::Uri, &str) {
    (ep.origin(), ep.path(Operation::ChatCompletions).as_str())
}

impl Pools {
    /// Pools for `endpoints`, keeping those of `previous` (its endpoint table and pools) whose
    /// origin is still served, and the health of its endpoints still served.
    pub fn new(endpoints: &[Endpoint], previous: Option<(&[Endpoint], &Pools)>) -> Self {
        let mut kept: HashMap<&http::Uri, &Arc<OriginPool>> = HashMap::new();
        let mut kept_health: HashMap<(&http::Uri, &str), &Arc<Health>> = HashMap::new();
        if let Some((table, pools)) = previous {
            for (e, ep) in table.iter().enumerate() {
                if let Some(pool) = pools.get(e as EndpointIdx) {
                    kept.entry(ep.origin()).or_insert(pool);
                }
                if let Some(health) = pools.health(e as EndpointIdx) {
                    kept_health.entry(identity(ep)).or_insert(health);
                }
            }
        }
        let mut index: HashMap<&http::Uri, u32> = HashMap::new();
        let mut origins: Vec<Arc<OriginPool>> = Vec::new();
        let of_endpoint = endpoints
            .iter()
            .map(|ep| {
                *index.entry(ep.origin()).or_insert_with(|| {
                    origins.push(kept.get(ep.origin()).map_or_else(Default::default, |p| Arc::clone(p)));
                    (origins.len() - 1) as u32
                })
            })
            .collect();
        // Two endpoints of one snapshot that are the same upstream (one URL serving two models)
        // share its health too.
        let mut shared: HashMap<(&http::Uri, &str), Arc<Health>> = HashMap::new();
        let health = endpoints
            .iter()
            .map(|ep| {
                let key = identity(ep);
                shared
                    .entry(key)
                    .or_insert_with(|| kept_health.get(&key).map_or_else(Default::default, |h| Arc::clone(h)))
                    .clone()
            })
            .collect();
        Self { of_endpoint, origins: origins.into(), health }
    }

    /// The pool of endpoint `e`'s origin.
    pub fn get(&self, e: EndpointIdx) -> Option<&Arc<OriginPool>> {
        self.origins.get(*self.of_endpoint.get(e as usize)? as usize)
    }

    /// Endpoint `e`'s health.
    pub fn health(&self, e: EndpointIdx) -> Option<&Arc<Health>> {
        self.health.get(e as usize)
    }

    /// Each origin's pool, once.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<OriginPool>> {
        self.origins.iter()
    }
}
