//! The upstream connection pools: one per origin (scheme and authority), shared by the
//! endpoints on it. An origin the previous snapshot had keeps its pool, and its open
//! connections, across a reload.

use std::collections::HashMap;
use std::sync::Arc;

use super::client::OriginPool;
use crate::endpoint::Endpoint;
use crate::ids::EndpointIdx;

pub struct Pools {
    /// By endpoint, the index of its origin's pool.
    of_endpoint: Box<[u32]>,
    origins: Box<[Arc<OriginPool>]>,
}

impl Pools {
    /// Pools for `endpoints`, keeping those of `previous` (its endpoint table and pools) whose
    /// origin is still served.
    pub fn new(endpoints: &[Endpoint], previous: Option<(&[Endpoint], &Pools)>) -> Self {
        let mut kept: HashMap<&http::Uri, &Arc<OriginPool>> = HashMap::new();
        if let Some((table, pools)) = previous {
            for (e, ep) in table.iter().enumerate() {
                if let Some(pool) = pools.get(e as EndpointIdx) {
                    kept.entry(ep.origin()).or_insert(pool);
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
        Self { of_endpoint, origins: origins.into() }
    }

    /// The pool of endpoint `e`'s origin.
    pub fn get(&self, e: EndpointIdx) -> Option<&Arc<OriginPool>> {
        self.origins.get(*self.of_endpoint.get(e as usize)? as usize)
    }

    /// Each origin's pool, once.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<OriginPool>> {
        self.origins.iter()
    }
}
