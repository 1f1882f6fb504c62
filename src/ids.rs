//! Indices into one compiled policy's tables. A leaf: the request path, the audit trail, metrics
//! and config all carry these plain numbers, and none of them should need the policy module to
//! name one. An index is only meaningful with the snapshot it was taken from.

/// A tenant's place in `Policy::tenants`.
pub type TenantIdx = u32;
/// A model's place in the policy's model catalog.
pub type ModelIdx = u32;
/// An upstream endpoint's place in the policy's endpoint table.
pub type EndpointIdx = u32;
/// A rule's place in the policy's rule table (file, line and key of what decided).
pub type RuleId = u32;
