//! What denied-party screening found at load: every tenant name that scored in the review band or
//! above against the restricted-party list, and what became of it (blocked, cleared by a reviewer,
//! or left for review). The request path only reads the `denied_party` rule of each tenant's
//! [`super::Party`]; this is for `customs screen`, `customs explain` and the next reload.

use std::collections::{HashMap, HashSet};

use std::sync::Arc;

use super::{Day, EntityIdx, RuleId, TenantIdx};
use crate::screening::{Hit, Screener};

#[derive(Debug, Default)]
pub struct Screening {
    /// The list file, when screening is configured.
    pub list: Option<Box<str>>,
    pub entries: usize,
    pub threshold: f64,
    pub review_threshold: f64,
    pub findings: Box<[Finding]>,
    /// Digest of the list's text and the review threshold: what the screener and each tenant
    /// segment's screening hold for.
    pub(crate) against: [u8; 32],
    /// The list compiled for matching, when names needed it: a reload against the same list
    /// takes it instead of compiling the list again.
    pub(crate) screener: Option<Arc<Screener>>,
}

/// A tenant segment's screening against one list at one review threshold: its tenants' hits,
/// and what each of their name sets (legal name and aliases, by a 128-bit digest) found. A reload
/// takes the hits of a segment it kept, and screens a changed file's tenants only for names the
/// file's last version did not have: a provider's million tenants are not screened again for a
/// change to one.
#[derive(Debug, Default)]
pub(crate) struct SegmentScreening {
    pub against: [u8; 32],
    /// By index in the segment, the tenants with hits at or above the review threshold.
    pub hits: Box<[(u32, Vec<Hit>)]>,
    pub memo: Memo,
}

#[derive(Debug, Default)]
pub(crate) struct Memo {
    /// Name sets with no hit at or above the review threshold.
    pub clean: HashSet<u128>,
    pub hits: HashMap<u128, Vec<Hit>>,
}

/// Whose names were screened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    Tenant(TenantIdx),
    /// An entity of `ownership.toml`: a tenant's own legal entity or one of its owners.
    Entity(EntityIdx),
}

#[derive(Debug)]
pub struct Finding {
    pub subject: Subject,
    /// The tenant's or entity's legal name or alias that matched.
    pub query: Box<str>,
    pub entry_id: Box<str>,
    pub entry_name: Box<str>,
    pub source: Box<str>,
    /// The entry's line in the list file.
    pub list_line: usize,
    /// The entry's name or alias that matched.
    pub matched: Box<str>,
    pub score: f64,
    pub status: FindingStatus,
}

#[derive(Debug)]
pub enum FindingStatus {
    /// At or above the threshold, no clearance: the tenant is refused with `denied_party`.
    Blocked(RuleId),
    /// At or above the threshold, cleared by a reviewer for this exact tenant and entry.
    Cleared { reviewer: Box<str>, date: Day, note: Box<str> },
    /// In the review band: served, listed by `customs screen`.
    Review,
}

impl FindingStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Blocked(_) => "blocked",
            Self::Cleared { .. } => "cleared",
            Self::Review => "review",
        }
    }
}
