//! Policy refusals: the subset of [`Reason`] that [`super::Policy::decide`] can return.

use http::StatusCode;

use crate::reason::Reason;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Denial {
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
}

impl Denial {
    pub const ALL: [Denial; 10] = [
        Denial::TenantSuspended,
        Denial::DeniedParty,
        Denial::JurisdictionEmbargoed,
        Denial::ModelNotFound,
        Denial::ModelNotAllowed,
        Denial::ComputeThresholdExceeded,
        Denial::EndUseDeclarationRequired,
        Denial::EndUseDeclarationExpired,
        Denial::PurposeNotDeclared,
        Denial::NoResidentEndpoint,
    ];

    pub fn reason(self) -> Reason {
        match self {
            Self::TenantSuspended => Reason::TenantSuspended,
            Self::DeniedParty => Reason::DeniedParty,
            Self::JurisdictionEmbargoed => Reason::JurisdictionEmbargoed,
            Self::ModelNotFound => Reason::ModelNotFound,
            Self::ModelNotAllowed => Reason::ModelNotAllowed,
            Self::ComputeThresholdExceeded => Reason::ComputeThresholdExceeded,
            Self::EndUseDeclarationRequired => Reason::EndUseDeclarationRequired,
            Self::EndUseDeclarationExpired => Reason::EndUseDeclarationExpired,
            Self::PurposeNotDeclared => Reason::PurposeNotDeclared,
            Self::NoResidentEndpoint => Reason::NoResidentEndpoint,
        }
    }

    pub fn code(self) -> &'static str {
        self.reason().as_str()
    }

    pub fn status(self) -> StatusCode {
        self.reason().status()
    }

    /// The client-facing message. Fixed text: it never echoes request content or policy internals.
    pub fn message(self) -> &'static str {
        match self {
            Self::TenantSuspended => "This tenant is suspended.",
            Self::DeniedParty => {
                "This tenant matches an entry on a restricted-party screening list and is blocked pending review."
            }
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
