//! Reason codes: the one list of every outcome a request can have. Each code is a contract; it
//! appears in error bodies, the `x-customs-reason` header, logs, `customs explain` and metrics.
//! The policy's refusals ([`Denial`], re-exported by [`crate::policy`]) are lines of the same list.

use http::StatusCode;

/// Declares [`Reason`] and [`Denial`] from one list, so their variants, [`Reason::ALL`],
/// [`Denial::ALL`], the codes and the denials' messages cannot drift apart. A line marked
/// `denial(error_type, message)` is a refusal [`crate::policy::Policy::decide`] can return.
macro_rules! reasons {
    ($($variant:ident => $code:literal $(denial($error_type:literal, $message:literal))?,)+) => {
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

        /// Policy refusals: the reasons [`crate::policy::Policy::decide`] can return, each
        /// documented with the message the client gets.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Denial {
            $($(#[doc = $message] $variant,)?)+
        }

        impl Denial {
            /// Every denial, in the order of [`Reason::ALL`].
            pub const ALL: [Denial; [$($($message,)?)+].len()] = [$($(first!(Denial::$variant, $message),)?)+];

            pub fn reason(self) -> Reason {
                match self {
                    $($(Self::$variant => first!(Reason::$variant, $message),)?)+
                }
            }

            /// The client-facing message. Fixed text: it never echoes request content or policy
            /// internals.
            pub fn message(self) -> &'static str {
                match self {
                    $($(Self::$variant => $message,)?)+
                }
            }

            /// OpenAI's `error.type`.
            pub fn error_type(self) -> &'static str {
                match self {
                    $($(Self::$variant => $error_type,)?)+
                }
            }
        }
    };
}

/// Expands to its first argument. A repetition over a line's optional `denial(...)` part repeats
/// only if it names a fragment of that part; this names one and drops it.
macro_rules! first {
    ($keep:expr, $($drop:tt)*) => {
        $keep
    };
}

reasons! {
    Allowed => "allowed",
    InvalidApiKey => "invalid_api_key",
    ClientCertificateRequired => "client_certificate_required",
    TenantSuspended => "tenant_suspended" denial("policy_violation", "This tenant is suspended."),
    DeniedParty => "denied_party" denial(
        "policy_violation",
        "This tenant matches an entry on a restricted-party screening list and is blocked pending review."
    ),
    KycExpired => "kyc_expired" denial(
        "policy_violation",
        "This tenant's customer verification is past its re-verification date."
    ),
    JurisdictionEmbargoed => "jurisdiction_embargoed" denial(
        "policy_violation",
        "Service is not available in this tenant's jurisdiction."
    ),
    ModelNotFound => "model_not_found" denial("invalid_request_error", "The model does not exist."),
    ModelNotAllowed => "model_not_allowed" denial("policy_violation", "The model is not allowed for this tenant."),
    ComputeThresholdExceeded => "compute_threshold_exceeded" denial(
        "policy_violation",
        "The model's training compute exceeds the limit for this tenant's jurisdiction."
    ),
    EndUseDeclarationRequired => "end_use_declaration_required" denial(
        "policy_violation",
        "This model requires an end-use declaration on file."
    ),
    EndUseDeclarationExpired => "end_use_declaration_expired" denial(
        "policy_violation",
        "The tenant's end-use declaration has expired."
    ),
    PurposeNotDeclared => "purpose_not_declared" denial(
        "policy_violation",
        "The stated purpose is not in the tenant's end-use declaration."
    ),
    NoResidentEndpoint => "no_resident_endpoint" denial(
        "service_unavailable",
        "No endpoint for this model runs in a location this tenant's jurisdiction allows."
    ),
    InvalidRequest => "invalid_request",
    RequestTooLarge => "request_too_large",
    HeaderTooLarge => "header_too_large",
    RequestTimeout => "request_timeout",
    RouteNotFound => "route_not_found",
    MethodNotAllowed => "method_not_allowed",
    OperationNotSupported => "operation_not_supported",
    ResponseNotFound => "response_not_found",
    RateLimitExceeded => "rate_limit_exceeded",
    TokenRateLimitExceeded => "token_rate_limit_exceeded",
    ConcurrencyLimitExceeded => "concurrency_limit_exceeded",
    ComputeQuotaExceeded => "compute_quota_exceeded",
    UpstreamUnavailable => "upstream_unavailable",
    UpstreamTimeout => "upstream_timeout",
    UpstreamError => "upstream_error",
    UpstreamOverloaded => "upstream_overloaded",
    AuditUnavailable => "audit_unavailable",
    Overloaded => "overloaded",
    ClusterUnavailable => "cluster_unavailable",
    InternalError => "internal_error",
}

// === impl Denial ===

impl Denial {
    pub fn code(self) -> &'static str {
        self.reason().as_str()
    }

    pub fn status(self) -> StatusCode {
        self.reason().status()
    }
}

// === impl Reason ===

impl Reason {
    pub fn status(self) -> StatusCode {
        match self {
            Self::Allowed => StatusCode::OK,
            Self::InvalidApiKey | Self::ClientCertificateRequired => StatusCode::UNAUTHORIZED,
            Self::TenantSuspended
            | Self::DeniedParty
            | Self::KycExpired
            | Self::JurisdictionEmbargoed
            | Self::ModelNotAllowed
            | Self::ComputeThresholdExceeded
            | Self::EndUseDeclarationRequired
            | Self::EndUseDeclarationExpired
            | Self::PurposeNotDeclared => StatusCode::FORBIDDEN,
            Self::ModelNotFound | Self::RouteNotFound | Self::ResponseNotFound => StatusCode::NOT_FOUND,
            Self::NoResidentEndpoint
            | Self::AuditUnavailable
            | Self::ClusterUnavailable
            | Self::Overloaded
            | Self::UpstreamOverloaded => StatusCode::SERVICE_UNAVAILABLE,
            Self::InvalidRequest | Self::OperationNotSupported => StatusCode::BAD_REQUEST,
            Self::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::HeaderTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RateLimitExceeded
            | Self::TokenRateLimitExceeded
            | Self::ConcurrencyLimitExceeded
            | Self::ComputeQuotaExceeded => StatusCode::TOO_MANY_REQUESTS,
            Self::UpstreamUnavailable => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            // The upstream's own status is what the client gets (see GatewayError::status).
            Self::UpstreamError => StatusCode::BAD_GATEWAY,
            Self::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn decision(self) -> Decision {
        match self {
            Self::Allowed => Decision::Allow,
            Self::UpstreamUnavailable
            | Self::UpstreamTimeout
            | Self::UpstreamError
            | Self::UpstreamOverloaded
            | Self::InternalError => Decision::Error,
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
    fn every_denial_is_a_distinct_policy_refusal_with_a_fixed_message() {
        let reasons: std::collections::HashSet<Reason> = Denial::ALL.iter().map(|d| d.reason()).collect();
        assert_eq!(reasons.len(), Denial::ALL.len(), "two denials map to one reason");
        for d in Denial::ALL {
            assert_eq!(d.reason().decision(), Decision::Deny, "{d:?} is not a refusal");
            assert!(matches!(d.status().as_u16(), 403 | 404 | 503), "{d:?}: {}", d.status());
            let m = d.message();
            assert!(m.ends_with('.') && !m.contains('{'), "{d:?}: {m:?} is not a fixed sentence");
            let types = ["policy_violation", "invalid_request_error", "service_unavailable"];
            assert!(types.contains(&d.error_type()), "{d:?}: {}", d.error_type());
        }
    }
}
