//! Serde mirror of the config folder's files. Nothing here is validated beyond its type: every
//! cross-reference and range check lives in `compile`, so that all problems are reported at once.

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::value::Datetime;

use super::settings::{AuditSync, OnAuditFailure};
use crate::endpoint::EndpointKind;
use crate::policy::ComputeBasis;

/// `gateway.toml`: listeners, limits and timeouts. Optional; every key has a default. An unset
/// key is `None` here: what each key means, and its default, is on its [`Settings`](super::Settings) field.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub upstream: UpstreamSection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default)]
    pub audit: AuditSection,
    #[serde(default)]
    pub admin: AdminSection,
    #[serde(default)]
    pub reload: ReloadSection,
    #[serde(default)]
    pub report: ReportSection,
    #[serde(default)]
    pub responses: ResponsesSection,
    pub cluster: Option<ClusterSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub key_prefix: Option<String>,
    pub replica_id: Option<String>,
    #[serde(with = "humantime_serde")]
    pub timeout: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub max_staleness: Option<Duration>,
    pub fail_closed: Vec<String>,
    pub lease_fraction: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportSection {
    pub home_jurisdictions: Vec<String>,
    pub flops_line: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    pub dir: Option<PathBuf>,
    pub max_file_bytes: Option<u64>,
    pub queue: Option<usize>,
    pub on_failure: Option<OnAuditFailure>,
    pub sync: Option<AuditSync>,
    pub key_env: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    pub token_env: Option<String>,
    pub state_file: Option<PathBuf>,
    pub max_connections: Option<usize>,
    pub tls: Option<TlsSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadSection {
    pub watch: Option<bool>,
    #[serde(with = "humantime_serde")]
    pub debounce: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponsesSection {
    pub max_bound_ids: Option<u64>,
    #[serde(with = "humantime_serde")]
    pub bound_for: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    pub default_max_tokens: Option<u64>,
    pub bytes_per_token: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSection {
    pub listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub max_body_bytes: Option<u64>,
    pub max_buffered_body_bytes: Option<u64>,
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Option<Duration>,
    pub max_connections: Option<u64>,
    pub min_body_rate: Option<u64>,
    #[serde(with = "humantime_serde")]
    pub body_rate_grace: Option<Duration>,
    pub max_memory_bytes: Option<u64>,
    pub max_header_bytes: Option<u32>,
    pub max_header_fields: Option<u32>,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub http2_keep_alive_interval: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub http2_keep_alive_timeout: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Option<Duration>,
    pub tls: Option<TlsSection>,
}

/// `[server.tls]`, `[admin.tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamSection {
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub first_byte_timeout: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub pool_idle_timeout: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub stream_idle_timeout: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub stream_max_duration: Option<Duration>,
    pub max_in_flight: Option<u32>,
    pub outlier: OutlierSection,
    pub ca_file: Option<PathBuf>,
}

/// `[upstream.outlier]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierSection {
    pub consecutive_failures: Option<u32>,
    #[serde(with = "humantime_serde")]
    pub ejection: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub max_ejection: Option<Duration>,
}

/// `models.toml`: the catalog.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsFile {
    #[serde(default)]
    pub models: Vec<RawModel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub id: Spanned<String>,
    #[serde(default)]
    pub aliases: Vec<Spanned<String>>,
    pub training_flops: Spanned<f64>,
    pub compute_basis: ComputeBasis,
    #[serde(default)]
    #[expect(dead_code, reason = "documents the entry for its readers; no decision reads it")]
    pub compute_source: Option<String>,
    #[serde(default)]
    pub parameters: Option<Spanned<f64>>,
    #[serde(default)]
    pub max_output_tokens: Option<Spanned<u64>>,
    #[serde(default)]
    pub operations: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub developer: Option<String>,
    #[serde(default)]
    #[expect(dead_code, reason = "documents the entry for its readers; no decision reads it")]
    pub description: Option<String>,
    #[serde(default)]
    pub endpoints: Vec<RawEndpoint>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    pub url: Spanned<String>,
    #[serde(default)]
    pub kind: EndpointKind,
    pub residency: Spanned<String>,
    #[serde(default)]
    pub api_key_env: Option<Spanned<String>>,
    /// Azure only: the deployment name on the upstream resource.
    #[serde(default)]
    pub deployment: Option<Spanned<String>>,
    /// Azure only: the `api-version` query value sent upstream.
    #[serde(default)]
    pub api_version: Option<Spanned<String>>,
    /// Whether streams are sent `stream_options.include_usage` when the client did not ask.
    #[serde(default)]
    pub ask_stream_usage: Option<bool>,
    /// This endpoint's own stream timers, in place of `[upstream]`'s.
    #[serde(default, with = "humantime_serde")]
    pub stream_idle_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub stream_max_duration: Option<Duration>,
    /// An `http://` URL off loopback, accepted knowingly.
    #[serde(default)]
    pub allow_http: bool,
}

/// `country-groups.toml`: named sets of ISO 3166-1 alpha-2 codes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountryGroupsFile {
    #[serde(default)]
    pub groups: Vec<RawGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    pub id: Spanned<String>,
    #[serde(default)]
    #[expect(dead_code, reason = "documents the entry for its readers; no decision reads it")]
    pub description: Option<String>,
    #[serde(default)]
    #[expect(dead_code, reason = "documents the entry for its readers; no decision reads it")]
    pub source: Option<String>,
    pub countries: Vec<Spanned<String>>,
}

/// `jurisdictions.toml`: the regions tenants belong to and what each may use.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JurisdictionsFile {
    #[serde(default)]
    pub jurisdictions: Vec<RawJurisdiction>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJurisdiction {
    /// Tenants bind to the id. An id may have several blocks, one per version, whose
    /// `effective_from`..`until` ranges must not overlap.
    pub id: Spanned<String>,
    #[serde(default)]
    #[expect(dead_code, reason = "documents the entry for its readers; no decision reads it")]
    pub description: Option<String>,
    /// First day this version is in force (UTC); unset: since always.
    #[serde(default)]
    pub effective_from: Option<Spanned<Datetime>>,
    /// Last day this version is in force (UTC); unset: until further notice.
    #[serde(default)]
    pub until: Option<Spanned<Datetime>>,
    /// Which of a tenant's countries puts it here: its own (the default), its ultimate parent's
    /// headquarters, or either (the tenant then answers to both jurisdictions).
    #[serde(default)]
    pub applies_by: Option<Spanned<AppliesBy>>,
    #[serde(default)]
    pub countries: Vec<Spanned<String>>,
    #[serde(default)]
    pub country_groups: Vec<Spanned<String>>,
    #[serde(default)]
    pub exclude_countries: Vec<Spanned<String>>,
    #[serde(default)]
    pub exclude_country_groups: Vec<Spanned<String>>,
    #[serde(default)]
    pub embargoed: Option<Spanned<bool>>,
    #[serde(default)]
    pub max_training_flops: Option<Spanned<f64>>,
    #[serde(default)]
    pub allow_models: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub deny_models: Vec<Spanned<String>>,
    #[serde(default)]
    pub require_declaration: Option<Spanned<DeclarationRequirement>>,
    #[serde(default)]
    pub declaration_flops: Option<Spanned<f64>>,
    #[serde(default)]
    pub allowed_residencies: Option<Spanned<Vec<Spanned<String>>>>,
    /// Defaults for this jurisdiction's tenants.
    #[serde(default)]
    pub limits: Option<Spanned<RawLimits>>,
}

/// Rate limits and quotas. Every key is optional; an unset key means no such limit.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub requests_per_minute: Option<NonZeroU32>,
    /// Requests that may arrive at once; defaults to `requests_per_minute`.
    pub request_burst: Option<NonZeroU32>,
    pub tokens_per_minute: Option<NonZeroU64>,
    pub max_concurrent: Option<NonZeroU32>,
    /// Inference FLOPs per UTC day, charged as 2 x parameters x tokens for models that declare
    /// a parameter count.
    pub daily_inference_flops: Option<f64>,
}

pub use crate::policy::AppliesBy;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeclarationRequirement {
    Always,
    Never,
    /// Required for models whose training compute is at or above `declaration_flops`.
    AtOrAboveFlops,
}

/// `tenants.toml`: who may call, from where, with which keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantsFile {
    #[serde(default)]
    pub tenants: Vec<RawTenant>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenant {
    pub id: Spanned<String>,
    pub legal_name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub country: Spanned<String>,
    pub jurisdiction: Spanned<String>,
    pub status: Spanned<TenantStatus>,
    #[serde(default)]
    pub key_sha256: Vec<Spanned<String>>,
    /// Names (a subject alternative name, or the subject's common name) of client certificates
    /// that identify this tenant.
    #[serde(default)]
    pub client_certificate_names: Vec<Spanned<String>>,
    #[serde(default)]
    pub require_key_and_certificate: bool,
    #[serde(default)]
    pub allow_models: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub end_use: Option<RawDeclaration>,
    /// A scheduled suspension, beside `status` (which suspends at once and indefinitely).
    #[serde(default)]
    pub suspension: Option<Spanned<RawSuspension>>,
    #[serde(default)]
    pub limits: Option<Spanned<RawLimits>>,
    /// The tenant's own entity in `ownership.toml`, whose owners are screened with it.
    #[serde(default)]
    pub entity: Option<Spanned<String>>,
    /// Who verified the customer, when, on what evidence, and when it is due again.
    #[serde(default)]
    pub kyc: Option<Spanned<RawKyc>>,
}

/// A know-your-customer record: references to evidence only, never the documents.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKyc {
    pub verified_by: Spanned<String>,
    pub verified_on: Spanned<Datetime>,
    #[serde(default)]
    pub evidence: Vec<Spanned<String>>,
    /// Last day the verification counts.
    pub reverify_by: Spanned<Datetime>,
    /// Days after `reverify_by` still served (while a re-verification is under way).
    #[serde(default)]
    pub grace_days: Option<Spanned<u32>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TenantStatus {
    Active,
    Suspended,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeclaration {
    pub id: Spanned<String>,
    /// First day the declaration counts; unset: from the day it is on file.
    #[serde(default)]
    pub effective_from: Option<Spanned<Datetime>>,
    /// Last day the declaration counts.
    pub expires: Spanned<Datetime>,
    pub purposes: Vec<Spanned<String>>,
}

/// `screening.toml`: how tenants are screened against the restricted-party list, and the
/// clearances compliance reviewers recorded for false positives.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScreeningFile {
    #[serde(default)]
    pub screening: ScreeningSettings,
    #[serde(default)]
    pub clearances: Vec<RawClearance>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScreeningSettings {
    /// The list, in the Consolidated Screening List CSV format, relative to the config folder.
    pub list: Spanned<String>,
    /// Scores (0-100) at or above this block the tenant with `denied_party`.
    pub threshold: Spanned<f64>,
    /// `customs screen` lists scores from here up to the threshold for review.
    pub review_threshold: Spanned<f64>,
}

impl Default for ScreeningSettings {
    fn default() -> Self {
        Self {
            list: Spanned::new(0..0, "screening-list.csv".into()),
            threshold: Spanned::new(0..0, crate::screening::DEFAULT_THRESHOLD),
            review_threshold: Spanned::new(0..0, crate::screening::REVIEW_THRESHOLD),
        }
    }
}

/// A reviewer's decision that one tenant (or one entity of `ownership.toml`) is not one list
/// entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClearance {
    #[serde(default)]
    pub tenant: Option<Spanned<String>>,
    #[serde(default)]
    pub entity: Option<Spanned<String>>,
    /// The entry's `_id` in the list.
    pub entry: Spanned<String>,
    pub reviewer: String,
    pub date: Spanned<toml::value::Datetime>,
    pub note: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSuspension {
    /// First day suspended; unset: already.
    #[serde(default)]
    pub effective_from: Option<Spanned<Datetime>>,
    /// Last day suspended; unset: until further notice.
    #[serde(default)]
    pub until: Option<Spanned<Datetime>>,
    /// Why, for whoever reads `explain` or the config; never sent to the tenant.
    pub reason: Spanned<String>,
}

/// `expectations.toml`: what the policy should decide, checked by `customs check`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectationsFile {
    #[serde(default)]
    pub expect: Vec<Spanned<RawExpectation>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpectation {
    #[serde(default)]
    pub name: Option<String>,
    pub tenant: Spanned<String>,
    /// As a client would send it: an unknown name is a valid expectation (`model_not_found`).
    pub model: Spanned<String>,
    #[serde(default)]
    pub purpose: Option<Spanned<String>>,
    /// The day decided for; unset: the day `customs check` runs.
    #[serde(default)]
    pub at: Option<Spanned<Datetime>>,
    pub decision: Spanned<ExpectedDecision>,
    /// The reason code of a denial; required with `decision = "deny"`.
    #[serde(default)]
    pub reason: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExpectedDecision {
    Allow,
    Deny,
}

/// `ownership.toml`: the legal entities behind tenants, who owns them and by how much, and the
/// dated rule (the BIS Affiliates rule) that extends a listed party's restrictions to what it owns.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnershipFile {
    #[serde(default)]
    pub affiliates_rule: Option<Spanned<RawAffiliatesRule>>,
    #[serde(default)]
    pub entities: Vec<Spanned<RawEntity>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAffiliatesRule {
    /// Percent owned by listed parties, together, at or above which an entity is restricted.
    pub threshold: Spanned<f64>,
    #[serde(default)]
    pub effective_from: Option<Spanned<Datetime>>,
    #[serde(default)]
    pub until: Option<Spanned<Datetime>>,
    /// Windows in which the rule is not applied (the one-year suspension of November 2025).
    #[serde(default)]
    pub suspensions: Vec<Spanned<RawSuspension>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEntity {
    pub id: Spanned<String>,
    pub legal_name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Country of incorporation (ISO 3166-1 alpha-2).
    pub incorporated: Spanned<String>,
    /// Country of headquarters (ISO 3166-1 alpha-2).
    pub headquarters: Spanned<String>,
    #[serde(default)]
    pub owners: Vec<Spanned<RawOwner>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOwner {
    pub entity: Spanned<String>,
    pub percent: Spanned<f64>,
}
