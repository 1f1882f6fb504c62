//! Reason codes: the one list of every outcome a request can have. Each code is a contract; it
//! appears in error bodies, the `x-customs-reason` header, logs, `customs explain` and metrics.

use http::StatusCode;

/// Declares [`Reason`] from one list, so its variants, [`Reason::ALL`], [`Reason::COUNT`] and
/// the codes cannot drift apart.
macro_rules! reasons {
    ($($variant:ident => $code:literal,)+) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Reason {
            $($variant,)+
        }

        impl Reason {
            pub const COUNT: usize = [$(Reason::$variant),+].len();

            /// Every reason, in declaration order: `ALL[r.index()] == r`.
            pub const ALL: [Reason; Self::COUNT] = [$(Reason::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)+
                }
            }
        }
    };
}

reasons! {
    Allowed => "allowed",
    InvalidApiKey => "invalid_api_key",
    TenantSuspended => "tenant_suspended",
    DeniedParty => "denied_party",
    JurisdictionEmbargoed => "jurisdiction_embargoed",
    ModelNotFound => "model_not_found",
    ModelNotAllowed => "model_not_allowed",
    ComputeThresholdExceeded => "compute_threshold_exceeded",
    EndUseDeclarationRequired => "end_use_declaration_required",
    EndUseDeclarationExpired => "end_use_declaration_expired",
    PurposeNotDeclared => "purpose_not_declared",
    NoResidentEndpoint => "no_resident_endpoint",
    InvalidRequest => "invalid_request",
    RequestTooLarge => "request_too_large",
    RequestTimeout => "request_timeout",
    RouteNotFound => "route_not_found",
    MethodNotAllowed => "method_not_allowed",
    RateLimitExceeded => "rate_limit_exceeded",
    TokenRateLimitExceeded => "token_rate_limit_exceeded",
    ConcurrencyLimitExceeded => "concurrency_limit_exceeded",
    ComputeQuotaExceeded => "compute_quota_exceeded",
    UpstreamUnavailable => "upstream_unavailable",
    UpstreamTimeout => "upstream_timeout",
    AuditUnavailable => "audit_unavailable",
}

impl Reason {
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
    fn reason_codes_are_distinct_snake_case_and_indexed_in_order() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            let code = r.as_str();
            assert!(!code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{code}");
        }
        let mut codes: Vec<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), Reason::ALL.len(), "two reasons share a code");
    }

    #[test]
    fn every_denial_is_a_reason_with_its_code() {
        for d in crate::policy::Denial::ALL {
            let r = d.reason();
            assert_eq!(r.as_str(), d.code());
            assert_ne!(r, Reason::Allowed);
        }
    }
}
