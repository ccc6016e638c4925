//! Error codes, the request vocabulary every layer may use: the closed set of refusal codes
//! (SPEC section 7 and Tollgate's own), the status each maps to, and the header that carries
//! one. Also the `outcome` label of the request metrics and the `decision` of the audit line.
//! Imports nothing of the crate.

use http::header::HeaderName;
use http::StatusCode;

/// The header on every refusal Tollgate makes itself, never on an answer relayed from upstream.
pub const X_TOLLGATE_ERROR: HeaderName = HeaderName::from_static("x-tollgate-error");

/// The closed set of error codes; also the `outcome` metric label and the log `decision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    EndpointNotAllowed,
    CallerUnauthenticated,
    ConnectorForbidden,
    ConnectorUnknown,
    ConnectorAmbiguous,
    ConnectionRequired,
    ReauthRequired,
    BadTarget,
    UpgradeRefused,
    /// The proxy listener got a request that is neither proxy traffic nor one of its paths
    /// (`OPTIONS *`, an origin-form path that names no gateway connector).
    ProxyRequestExpected,
    NotFound,
    RequestTimeout,
    PayloadTooLarge,
    HeadersTooLarge,
    TokenEndpointUnavailable,
    /// The connector's token endpoint refuses its client credentials (`503`).
    ConnectorMisconfigured,
    TokenStoreUnavailable,
    UpstreamUnreachable,
    UpstreamTimeout,
    Internal,
    /// A body that is not what the route takes (`400`): admin API, `POST /connect`.
    InvalidRequest,
    /// A request head refused on the wire, before routing: ambiguous framing, a bare CR or
    /// LF, obs-fold, a malformed line (`400`, connection closed). Not a metrics outcome.
    MalformedRequest,
    /// Admin API only: the change conflicts with what exists, e.g. a file connector (`409`).
    Conflict,
}

impl ErrorCode {
    /// Every code a request on the proxy listener can end with (`conflict` is admin-only).
    pub const ALL: [ErrorCode; 21] = [
        ErrorCode::EndpointNotAllowed,
        ErrorCode::CallerUnauthenticated,
        ErrorCode::ConnectorForbidden,
        ErrorCode::ConnectorUnknown,
        ErrorCode::ConnectorAmbiguous,
        ErrorCode::ConnectionRequired,
        ErrorCode::ReauthRequired,
        ErrorCode::BadTarget,
        ErrorCode::UpgradeRefused,
        ErrorCode::ProxyRequestExpected,
        ErrorCode::NotFound,
        ErrorCode::RequestTimeout,
        ErrorCode::PayloadTooLarge,
        ErrorCode::HeadersTooLarge,
        ErrorCode::TokenEndpointUnavailable,
        ErrorCode::ConnectorMisconfigured,
        ErrorCode::TokenStoreUnavailable,
        ErrorCode::UpstreamUnreachable,
        ErrorCode::UpstreamTimeout,
        ErrorCode::Internal,
        ErrorCode::InvalidRequest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::EndpointNotAllowed => "endpoint_not_allowed",
            ErrorCode::CallerUnauthenticated => "caller_unauthenticated",
            ErrorCode::ConnectorForbidden => "connector_forbidden",
            ErrorCode::ConnectorUnknown => "connector_unknown",
            ErrorCode::ConnectorAmbiguous => "connector_ambiguous",
            ErrorCode::ConnectionRequired => "connection_required",
            ErrorCode::ReauthRequired => "reauth_required",
            ErrorCode::BadTarget => "bad_target",
            ErrorCode::UpgradeRefused => "upgrade_refused",
            ErrorCode::ProxyRequestExpected => "proxy_request_expected",
            ErrorCode::NotFound => "not_found",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::TokenEndpointUnavailable => "token_endpoint_unavailable",
            ErrorCode::ConnectorMisconfigured => "connector_misconfigured",
            ErrorCode::TokenStoreUnavailable => "token_store_unavailable",
            ErrorCode::UpstreamUnreachable => "upstream_unreachable",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::Internal => "internal",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::MalformedRequest => "malformed_request",
            ErrorCode::Conflict => "conflict",
        }
    }

    /// The status; `caller_unauthenticated` is 407 in the proxy modes and 401 in gateway mode.
    pub fn status(self, gateway: bool) -> StatusCode {
        match self {
            ErrorCode::EndpointNotAllowed | ErrorCode::ConnectorForbidden => StatusCode::FORBIDDEN,
            ErrorCode::CallerUnauthenticated if gateway => StatusCode::UNAUTHORIZED,
            ErrorCode::CallerUnauthenticated => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            ErrorCode::ConnectorUnknown
            | ErrorCode::ConnectorAmbiguous
            | ErrorCode::BadTarget
            | ErrorCode::UpgradeRefused
            | ErrorCode::ProxyRequestExpected => StatusCode::BAD_REQUEST,
            ErrorCode::ConnectionRequired | ErrorCode::ReauthRequired => StatusCode::UNAUTHORIZED,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::TokenEndpointUnavailable
            | ErrorCode::ConnectorMisconfigured
            | ErrorCode::TokenStoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::UpstreamUnreachable => StatusCode::BAD_GATEWAY,
            ErrorCode::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::InvalidRequest | ErrorCode::MalformedRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Conflict => StatusCode::CONFLICT,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn the_operations_error_table_lists_every_code_with_its_status() {
        let doc = include_str!("../docs/operations.md");
        let codes = ErrorCode::ALL.iter().copied().chain([ErrorCode::MalformedRequest, ErrorCode::Conflict]);
        for code in codes {
            let row = doc
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", code.as_str())))
                .unwrap_or_else(|| panic!("docs/operations.md has no row for {}", code.as_str()));
            let status = code.status(false).as_u16().to_string();
            assert!(row.contains(&status), "{}: the row does not give {status}: {row}", code.as_str());
        }
    }
}
