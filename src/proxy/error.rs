//! The error edge: every refusal Tollgate makes, its code, its status, and the one place it
//! becomes a response (SPEC section 7). Phases return their own error types; they meet here.

use bytes::Bytes;
use http::{header, HeaderValue, Response};
use http_body_util::{BodyExt, Full};
use serde::Serialize;

use crate::body::Body;
use crate::caller::IdentityError;
use crate::domains::TargetError;
pub use crate::error_code::ErrorCode;
use crate::token::broker::CredentialError;

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
                CredentialError::ConnectorMisconfigured { .. } => ErrorCode::ConnectorMisconfigured,
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
    headers.insert(crate::error_code::X_TOLLGATE_ERROR, HeaderValue::from_static(code.as_str()));
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
