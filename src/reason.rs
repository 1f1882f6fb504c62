//! Reason codes: the one list of every outcome a request can have. Each code is a contract; it
//! appears in error bodies, the `x-customs-reason` header, logs, `customs explain` and metrics.

use http::StatusCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Reason {
    Allowed,
    InvalidApiKey,
    TenantSuspended,
    DeniedParty,
    JurisdictionEmbargoed,
    ModelNotFound,
    ModelNotAllowed,
    ComputeThresholdExceeded,
    EndUseDeclarationRequired,
    EndUseDeclarationExpired,
    PurposeNotDeclared,
    NoResidentEndpoint,
    InvalidRequest,
    RequestTooLarge,
    RequestTimeout,
    RouteNotFound,
    MethodNotAllowed,
    RateLimitExceeded,
    TokenRateLimitExceeded,
    ConcurrencyLimitExceeded,
    ComputeQuotaExceeded,
    UpstreamUnavailable,
    UpstreamTimeout,
    AuditUnavailable,
}

impl Reason {
    pub const COUNT: usize = 24;

    pub const ALL: [Reason; Self::COUNT] = [
        Reason::Allowed,
        Reason::InvalidApiKey,
        Reason::TenantSuspended,
        Reason::DeniedParty,
        Reason::JurisdictionEmbargoed,
        Reason::ModelNotFound,
        Reason::ModelNotAllowed,
        Reason::ComputeThresholdExceeded,
        Reason::EndUseDeclarationRequired,
        Reason::EndUseDeclarationExpired,
        Reason::PurposeNotDeclared,
        Reason::NoResidentEndpoint,
        Reason::InvalidRequest,
        Reason::RequestTooLarge,
        Reason::RequestTimeout,
        Reason::RouteNotFound,
        Reason::MethodNotAllowed,
        Reason::RateLimitExceeded,
        Reason::TokenRateLimitExceeded,
        Reason::ConcurrencyLimitExceeded,
        Reason::ComputeQuotaExceeded,
        Reason::UpstreamUnavailable,
        Reason::UpstreamTimeout,
        Reason::AuditUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::InvalidApiKey => "invalid_api_key",
            Self::TenantSuspended => "tenant_suspended",
            Self::DeniedParty => "denied_party",
            Self::JurisdictionEmbargoed => "jurisdiction_embargoed",
            Self::ModelNotFound => "model_not_found",
            Self::ModelNotAllowed => "model_not_allowed",
            Self::ComputeThresholdExceeded => "compute_threshold_exceeded",
            Self::EndUseDeclarationRequired => "end_use_declaration_required",
            Self::EndUseDeclarationExpired => "end_use_declaration_expired",
            Self::PurposeNotDeclared => "purpose_not_declared",
            Self::NoResidentEndpoint => "no_resident_endpoint",
            Self::InvalidRequest => "invalid_request",
            Self::RequestTooLarge => "request_too_large",
            Self::RequestTimeout => "request_timeout",
            Self::RouteNotFound => "route_not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RateLimitExceeded => "rate_limit_exceeded",
            Self::TokenRateLimitExceeded => "token_rate_limit_exceeded",
            Self::ConcurrencyLimitExceeded => "concurrency_limit_exceeded",
            Self::ComputeQuotaExceeded => "compute_quota_exceeded",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::AuditUnavailable => "audit_unavailable",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::Allowed => StatusCode::OK,
            Self::InvalidApiKey => StatusCode::UNAUTHORIZED,
            Self::TenantSuspended
            | Self::DeniedParty
            | Self::JurisdictionEmbargoed
            | Self::ModelNotAllowed
            | Self::ComputeThresholdExceeded
            | Self::EndUseDeclarationRequired
            | Self::EndUseDeclarationExpired
            | Self::PurposeNotDeclared => StatusCode::FORBIDDEN,
            Self::ModelNotFound | Self::RouteNotFound => StatusCode::NOT_FOUND,
            Self::NoResidentEndpoint | Self::AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::InvalidRequest => StatusCode::BAD_REQUEST,
            Self::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RateLimitExceeded
            | Self::TokenRateLimitExceeded
            | Self::ConcurrencyLimitExceeded
            | Self::ComputeQuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
            Self::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    pub fn decision(self) -> Decision {
        match self {
            Self::Allowed => Decision::Allow,
            Self::UpstreamUnavailable | Self::UpstreamTimeout => Decision::Error,
            _ => Decision::Deny,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// What became of a request: allowed, refused by the gateway, or allowed but failed upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    Error,
}

impl Decision {
    pub const ALL: [Decision; 3] = [Decision::Allow, Decision::Deny, Decision::Error];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Error => "error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_all_is_complete_and_indexed_in_order() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
        let mut codes: Vec<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), Reason::COUNT);
    }
}
