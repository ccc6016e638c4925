//! The error edge: every refusal Tollgate makes, its code, its status, and the one place it
//! becomes a response (SPEC section 7). Phases return their own error types; they meet here.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde::Serialize;

use super::Body;
use crate::caller::IdentityError;
use crate::domains::TargetError;
use crate::token::broker::CredentialError;

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
    TokenStoreUnavailable,
    UpstreamUnreachable,
    UpstreamTimeout,
    Internal,
    /// A body that is not what the route takes (`400`): admin API, `POST /connect`.
    InvalidRequest,
    /// Admin API only: the change conflicts with what exists, e.g. a file connector (`409`).
    Conflict,
}

impl ErrorCode {
    /// Every code a request on the proxy listener can end with (`conflict` is admin-only).
    pub const ALL: [ErrorCode; 20] = [
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
            ErrorCode::TokenStoreUnavailable => "token_store_unavailable",
            ErrorCode::UpstreamUnreachable => "upstream_unreachable",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::Internal => "internal",
            ErrorCode::InvalidRequest => "invalid_request",
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
            ErrorCode::TokenEndpointUnavailable | ErrorCode::TokenStoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::UpstreamUnreachable => StatusCode::BAD_GATEWAY,
            ErrorCode::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorCode::Conflict => StatusCode::CONFLICT,
        }
    }
}

/// Why the allowed-domains or connector-selection phase refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "{url} is not covered by the allowed domains of {scope}; add a pattern to the connector or use another URL"
    )]
    NotCovered { url: String, scope: String },
    #[error("{url} resolves to a {range} address, which is refused; list the range in the connector's unsafe_allow_ranges if this is intended")]
    AddressDenied { url: String, range: &'static str },
    #[error("this caller may not use connector {0}")]
    Forbidden(String),
    #[error("no connector or tool is named {0}")]
    Unknown(String),
    #[error("{0}")]
    Ambiguous(String),
}

/// Why forwarding failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("could not reach {0}: {1}")]
    Unreachable(String, String),
    #[error("{0} did not answer within {1} s")]
    Timeout(String, u64),
}

/// Every refusal, from whichever phase.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("the target URL is malformed or ambiguous: {0}")]
    Target(#[from] TargetError),
    #[error("caller not authenticated: {0}; send Proxy-Authorization (or Authorization in gateway mode) with a valid JWT or API key")]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("the admin API needs Authorization: Bearer <admin token> (one of admin_tokens)")]
    AdminUnauthenticated,
    #[error("{0} requests are refused: the upstream would echo the injected credential")]
    EchoMethod(String),
    #[error("{0} upgrades are not allowed through this connector")]
    UpgradeRefused(String),
    #[error("request headers exceed {0} bytes")]
    HeadersTooLarge(usize),
    #[error("{0}")]
    NotFound(String),
    #[error("the proxy listener takes absolute-form requests (GET https://host/path), CONNECT host:port, or gateway paths /{{connector}}/... for a connector with base_url; {0}")]
    ProxyRequestExpected(String),
    #[error("the request body could not be read; the caller stopped sending it")]
    RequestBody,
    #[error("the request body's framing is malformed (chunked encoding); it was not forwarded")]
    MalformedBody,
    #[error("an internal error occurred")]
    Internal,
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Conflict(String),
}

impl ProxyError {
    /// The one exhaustive mapping from error to code.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProxyError::Target(_) => ErrorCode::BadTarget,
            ProxyError::Identity(_) | ProxyError::AdminUnauthenticated => ErrorCode::CallerUnauthenticated,
            ProxyError::Policy(p) => match p {
                PolicyError::NotCovered { .. } | PolicyError::AddressDenied { .. } => ErrorCode::EndpointNotAllowed,
                PolicyError::Forbidden(_) => ErrorCode::ConnectorForbidden,
                PolicyError::Unknown(_) => ErrorCode::ConnectorUnknown,
                PolicyError::Ambiguous(_) => ErrorCode::ConnectorAmbiguous,
            },
            ProxyError::Credential(c) => match c {
                CredentialError::ConnectionRequired { .. } => ErrorCode::ConnectionRequired,
                CredentialError::ReauthRequired { .. } => ErrorCode::ReauthRequired,
                CredentialError::PinnedHost { .. } => ErrorCode::EndpointNotAllowed,
                CredentialError::Store { .. } => ErrorCode::TokenStoreUnavailable,
                CredentialError::TokenEndpointUnavailable { .. } => ErrorCode::TokenEndpointUnavailable,
            },
            ProxyError::Upstream(UpstreamError::Unreachable(..)) => ErrorCode::UpstreamUnreachable,
            ProxyError::Upstream(UpstreamError::Timeout(..)) => ErrorCode::UpstreamTimeout,
            ProxyError::UpgradeRefused(_) => ErrorCode::UpgradeRefused,
            ProxyError::EchoMethod(_) => ErrorCode::EndpointNotAllowed,
            ProxyError::HeadersTooLarge(_) => ErrorCode::HeadersTooLarge,
            ProxyError::NotFound(_) => ErrorCode::NotFound,
            ProxyError::ProxyRequestExpected(_) => ErrorCode::ProxyRequestExpected,
            ProxyError::RequestBody => ErrorCode::RequestTimeout,
            ProxyError::MalformedBody => ErrorCode::BadTarget,
            ProxyError::Internal => ErrorCode::Internal,
            ProxyError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            ProxyError::Conflict(_) => ErrorCode::Conflict,
        }
    }

    /// The blocked-reason label when this is a policy refusal.
    pub fn blocked_reason(&self) -> Option<&'static str> {
        Some(match self {
            ProxyError::Policy(PolicyError::NotCovered { .. }) => "not_covered",
            ProxyError::Policy(PolicyError::AddressDenied { .. }) => "address_denied",
            ProxyError::Policy(PolicyError::Forbidden(_)) => "connector_forbidden",
            ProxyError::Credential(CredentialError::PinnedHost { .. }) => "pinned_host",
            ProxyError::UpgradeRefused(_) => "upgrade_refused",
            ProxyError::EchoMethod(_) => "echo_method",
            _ => return None,
        })
    }

    /// Seconds for `Retry-After`, when the refusal is temporary.
    fn retry_after(&self) -> Option<u64> {
        match self {
            ProxyError::Credential(CredentialError::TokenEndpointUnavailable { retry_after, .. }) => Some(*retry_after),
            ProxyError::Credential(CredentialError::Store { .. }) => Some(1),
            _ => None,
        }
    }

    fn connect_url(&self) -> Option<&str> {
        match self {
            ProxyError::Credential(CredentialError::ConnectionRequired { connect_url, .. })
            | ProxyError::Credential(CredentialError::ReauthRequired { connect_url, .. }) => Some(connect_url),
            _ => None,
        }
    }
}

/// What the response says besides the error itself.
#[derive(Debug, Default)]
pub struct ErrorContext<'a> {
    pub connector: Option<&'a str>,
    pub url: Option<&'a str>,
    pub request_id: &'a str,
    pub gateway: bool,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    connector: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connect_url: Option<&'a str>,
    request_id: &'a str,
}

/// Renders a refusal as the JSON body of SPEC section 7 with `X-Tollgate-Error`.
pub fn error_response(err: &ProxyError, ctx: &ErrorContext<'_>) -> Response<Body> {
    let code = err.code();
    let message = match code {
        ErrorCode::Internal => "an internal error occurred; the request id is in Tollgate's log".to_string(),
        _ => err.to_string(),
    };
    let body = ErrorBody {
        error: code.as_str(),
        message,
        connector: ctx.connector,
        url: ctx.url,
        connect_url: err.connect_url(),
        request_id: ctx.request_id,
    };
    let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"error\":\"internal\"}".to_vec());
    let mut response = Response::new(Full::new(Bytes::from(json)).map_err(|never| match never {}).boxed());
    *response.status_mut() = code.status(ctx.gateway);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(super::headers::X_TOLLGATE_ERROR, HeaderValue::from_static(code.as_str()));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(seconds) = err.retry_after() {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    if code == ErrorCode::CallerUnauthenticated {
        let (name, value) = if ctx.gateway {
            (header::WWW_AUTHENTICATE, "Bearer realm=\"tollgate\"")
        } else {
            (header::PROXY_AUTHENTICATE, "Basic realm=\"tollgate\", Bearer realm=\"tollgate\"")
        };
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}
