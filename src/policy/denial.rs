//! Policy refusals and their stable reason codes. The codes are a contract: they appear in error
//! bodies, the `x-customs-reason` header, logs, `customs explain` and (later) audit and metrics.

use http::StatusCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Denial {
    TenantSuspended,
    JurisdictionEmbargoed,
    ModelNotFound,
    ModelNotAllowed,
    ComputeThresholdExceeded,
    EndUseDeclarationRequired,
    EndUseDeclarationExpired,
    PurposeNotDeclared,
    NoResidentEndpoint,
}

impl Denial {
    pub const ALL: [Denial; 9] = [
        Denial::TenantSuspended,
        Denial::JurisdictionEmbargoed,
        Denial::ModelNotFound,
        Denial::ModelNotAllowed,
        Denial::ComputeThresholdExceeded,
        Denial::EndUseDeclarationRequired,
        Denial::EndUseDeclarationExpired,
        Denial::PurposeNotDeclared,
        Denial::NoResidentEndpoint,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Self::TenantSuspended => "tenant_suspended",
            Self::JurisdictionEmbargoed => "jurisdiction_embargoed",
            Self::ModelNotFound => "model_not_found",
            Self::ModelNotAllowed => "model_not_allowed",
            Self::ComputeThresholdExceeded => "compute_threshold_exceeded",
            Self::EndUseDeclarationRequired => "end_use_declaration_required",
            Self::EndUseDeclarationExpired => "end_use_declaration_expired",
            Self::PurposeNotDeclared => "purpose_not_declared",
            Self::NoResidentEndpoint => "no_resident_endpoint",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::ModelNotFound => StatusCode::NOT_FOUND,
            Self::NoResidentEndpoint => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::FORBIDDEN,
        }
    }

    /// The client-facing message. Fixed text: it never echoes request content or policy internals.
    pub fn message(self) -> &'static str {
        match self {
            Self::TenantSuspended => "This tenant is suspended.",
            Self::JurisdictionEmbargoed => "Service is not available in this tenant's jurisdiction.",
            Self::ModelNotFound => "The model does not exist.",
            Self::ModelNotAllowed => "The model is not allowed for this tenant.",
            Self::ComputeThresholdExceeded => {
                "The model's training compute exceeds the limit for this tenant's jurisdiction."
            }
            Self::EndUseDeclarationRequired => "This model requires an end-use declaration on file.",
            Self::EndUseDeclarationExpired => "The tenant's end-use declaration has expired.",
            Self::PurposeNotDeclared => "The stated purpose is not in the tenant's end-use declaration.",
            Self::NoResidentEndpoint => {
                "No endpoint for this model runs in a location this tenant's jurisdiction allows."
            }
        }
    }

    /// OpenAI's `error.type`.
    pub fn error_type(self) -> &'static str {
        match self {
            Self::ModelNotFound => "invalid_request_error",
            Self::NoResidentEndpoint => "service_unavailable",
            _ => "policy_violation",
        }
    }
}
