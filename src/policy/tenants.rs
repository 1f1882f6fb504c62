//! The policy's tenants: one segment per tenant file, shared by the policies of successive
//! reloads while its file and the files it was compiled against are unchanged; and what the other
//! files say of each tenant (screening and ownership), which is each policy's own.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use super::{RuleId, SegmentScreening, Tenant, TenantIdx};
use crate::auth::Digest;

/// The compiled tenants of one tenant file.
pub struct TenantSegment {
    /// The file, as messages and rules name it.
    pub(crate) name: Box<str>,
    /// Its name in the config folder and the SHA-256 of its bytes: what a reload compares.
    pub(crate) relative: Box<str>,
    pub(crate) digest: [u8; 32],
    pub(crate) tenants: Box<[Tenant]>,
    /// Its tenants' key digests, client-certificate names, and those that need both, by index in
    /// the segment: what the policy's key index is built from.
    pub(crate) keys: Box<[(Digest, u32)]>,
    pub(crate) certificates: Box<[(Box<str>, u32)]>,
    pub(crate) both: Box<[u32]>,
    /// Set by the first load that screens it.
    pub(crate) screened: OnceLock<SegmentScreening>,
}

/// Every tenant of a policy, by [`TenantIdx`]: the segments' tenants in file order.
#[derive(Default)]
pub struct Tenants {
    pub(super) segments: Box<[Arc<TenantSegment>]>,
    /// Each segment's first tenant.
    starts: Box<[TenantIdx]>,
    len: usize,
}

impl Tenants {
    pub(crate) fn new(segments: Vec<Arc<TenantSegment>>) -> Self {
        let mut len = 0usize;
        let starts = segments
            .iter()
            .map(|s| {
                let start = len;
                len += s.tenants.len();
                // At most MAX_TENANTS, which the compiler checks.
                start as TenantIdx
            })
            .collect();
        Self { segments: segments.into(), starts, len }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A tenant and its segment.
    #[inline]
    pub(crate) fn locate(&self, t: TenantIdx) -> Option<(&TenantSegment, &Tenant)> {
        let (s, k) = self.position(t)?;
        let segment = self.segments.get(s)?;
        Some((segment, segment.tenants.get(k)?))
    }

    /// The index of a tenant's segment, and its index in the segment.
    #[inline]
    pub(crate) fn position(&self, t: TenantIdx) -> Option<(usize, usize)> {
        // The last segment starting at or before `t`; empty segments before it share its start.
        let s = self.starts.partition_point(|&start| start <= t).checked_sub(1)?;
        let k = (t - self.starts.get(s)?) as usize;
        (k < self.segments.get(s)?.tenants.len()).then_some((s, k))
    }

    #[inline]
    pub fn get(&self, t: TenantIdx) -> Option<&Tenant> {
        self.locate(t).map(|(_, tenant)| tenant)
    }

    pub fn iter(&self) -> Iter<'_> {
        self.segments.iter().flat_map(|s| s.tenants.iter())
    }

    pub(crate) fn segments(&self) -> &[Arc<TenantSegment>] {
        &self.segments
    }
}

impl<'a> IntoIterator for &'a Tenants {
    type Item = &'a Tenant;
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// Every tenant, in index order.
pub type Iter<'a> = std::iter::FlatMap<
    std::slice::Iter<'a, Arc<TenantSegment>>,
    std::slice::Iter<'a, Tenant>,
    fn(&'a Arc<TenantSegment>) -> std::slice::Iter<'a, Tenant>,
>;

/// What screening and ownership found against a tenant.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Party {
    /// The screening-list entry that blocks it (or the listed entity that is its own), when it
    /// matched and was not cleared.
    pub denied_party: Option<RuleId>,
    /// Owned by listed parties at or above the Affiliates rule's threshold: refused as a denied
    /// party on the days that rule is in force. The rule's detail is the chain of ownership.
    pub affiliated: Option<RuleId>,
}

/// [`Party`] per tenant. Few tenants have one, so a bit per tenant says whether to look.
#[derive(Default)]
pub(crate) struct Parties {
    flagged: Box<[u64]>,
    of: HashMap<TenantIdx, Party>,
}

impl Parties {
    pub(crate) fn new(tenants: usize, of: HashMap<TenantIdx, Party>) -> Self {
        let mut flagged = vec![0u64; tenants.div_ceil(64)];
        for &t in of.keys() {
            if let Some(w) = flagged.get_mut(t as usize / 64) {
                *w |= 1 << (t % 64);
            }
        }
        Self { flagged: flagged.into(), of }
    }

    #[inline]
    pub(crate) fn get(&self, t: TenantIdx) -> Party {
        let flagged = self.flagged.get(t as usize / 64).is_some_and(|w| w & (1 << (t % 64)) != 0);
        if flagged { self.of.get(&t).copied().unwrap_or_default() } else { Party::default() }
    }
}
