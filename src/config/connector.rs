//! A connector as the proxy uses it, and its validation from the raw file: template merged,
//! grant chosen, secrets resolved, patterns parsed under the connector's own address policy.

use std::collections::BTreeMap;

use http::HeaderName;

pub use super::inject::Injection;

use super::env::Environment;
use super::problems::Problems;
use super::raw::RawConnector;
use crate::config::templates;
use crate::domains::addr::{AddressPolicy, IpNet};
use crate::domains::{Pattern, Target};
use crate::secret::Secret;

/// How the token endpoint authenticates the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    None,
}

/// The OAuth side of a connector.
#[derive(Debug, Clone)]
pub struct OAuthClient {
    pub authorization_endpoint: Option<String>,
    pub token_endpoint: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub auth_method: AuthMethod,
    pub scopes: Vec<String>,
    pub issuer: Option<String>,
    pub discovery_url: Option<String>,
    pub mcp_url: Option<String>,
    /// Template defaults merged with the connector's own, minus `exclude_authorize_params`.
    pub authorize_params: BTreeMap<String, String>,
    /// `exclude_authorize_params` drops `scope` / `resource` from the authorization request.
    pub omit_scope: bool,
    pub omit_resource: bool,
    pub token_params: BTreeMap<String, String>,
    pub permanent_errors: Vec<String>,
    /// Template-declared codes meaning the client credentials are wrong (the connector's fault).
    pub client_errors: Vec<String>,
    /// RFC 8707 resource indicator, sent on authorization, token and refresh requests.
    pub resource: Option<String>,
    /// RFC 7009 endpoint, called when a connection is deleted.
    pub revocation_endpoint: Option<String>,
    /// The token answer's `instance_url` names the host to pin (Salesforce).
    pub host_from_instance_url: bool,
    /// RFC 7591 endpoint (from discovery) for registering when no `client_id` is configured.
    pub registration_endpoint: Option<String>,
    /// The server promised `iss` on every authorization answer (RFC 9207).
    pub iss_required: bool,
}

/// Where a connector's credential comes from.
#[derive(Debug, Clone)]
pub enum Grant {
    /// Per-user tokens from the connect flow.
    AuthorizationCode(OAuthClient),
    /// One token per connector and scope set.
    ClientCredentials(OAuthClient),
    /// A fixed secret from the config.
    Static(Secret),
}

impl Grant {
    pub fn as_str(&self) -> &'static str {
        match self {
            Grant::AuthorizationCode(_) => "authorization_code",
            Grant::ClientCredentials(_) => "client_credentials",
            Grant::Static(_) => "static",
        }
    }
}

/// A validated connector.
#[derive(Debug)]
pub struct Connector {
    pub name: String,
    pub grant: Grant,
    pub patterns: Vec<Pattern>,
    pub inject: Injection,
    /// Gateway mode: `/{name}/{rest}` goes to `{base_url}/{rest}`.
    pub base_url: Option<Target>,
    pub addresses: AddressPolicy,
    pub allow_websocket: bool,
    pub strip_headers: Vec<HeaderName>,
    pub pin_host: bool,
    /// What "Test connection" calls with a user's token.
    pub health_check: Option<super::health_check::HealthCheck>,
    pub description: Option<String>,
    /// `access: private`: only admin callers may use it (the proxy refuses others).
    pub private: bool,
    /// The provider template it starts from.
    pub template: Option<String>,
}

/// Where discovery starts: metadata (and the registration endpoint it names) is fetched over
/// https only, whatever `unsafe_allow_http` says.
const DISCOVERY_FIELDS: &[&str] = &["issuer", "discovery_url", "mcp_url"];

pub(crate) fn validate_connector(
    rc: &RawConnector,
    path: &str,
    env: &Environment,
    p: &mut Problems,
) -> Option<Connector> {
    let at = |field: &str| format!("{path}.{field}");
    let template = match rc.template.as_deref() {
        None => None,
        Some(name) => match templates::find(name) {
            Some(t) => Some(t),
            None => {
                p.add(at("template"), format!("unknown template `{name}`; known: {}", templates::names().join(", ")));
                return None;
            }
        },
    };
    let allow_http = rc.unsafe_allow_http.unwrap_or(false);
    let mut ranges = Vec::new();
    for (i, r) in rc.unsafe_allow_ranges.iter().flatten().enumerate() {
        match r.parse::<IpNet>() {
            Ok(net) => ranges.push(net),
            Err(e) => p.add(at(&format!("unsafe_allow_ranges[{i}]")), e),
        }
    }
    let addresses = AddressPolicy::new(ranges);

    let vetted = rc.allowed_domains.is_none() && template.is_some();
    let domain_texts: Vec<String> = match (&rc.allowed_domains, template) {
        (Some(list), _) => list.clone(),
        (None, Some(t)) => t.allowed_domains.iter().map(|s| s.to_string()).collect(),
        (None, None) => Vec::new(),
    };
    if domain_texts.is_empty() {
        p.add(at("allowed_domains"), "at least one pattern is required, e.g. https://api.example.com/*");
    }
    let mut patterns = Vec::new();
    for (i, text) in domain_texts.iter().enumerate() {
        let parsed =
            if vetted { Pattern::parse_vetted(text, &addresses) } else { Pattern::parse(text, allow_http, &addresses) };
        match parsed {
            Ok(pat) => patterns.push(pat),
            Err(e) => p.add(at(&format!("allowed_domains[{i}]")), e.to_string()),
        }
    }

    let grant_name = rc.grant.as_deref().unwrap_or(if rc.token.is_some() && template.is_none() {
        "static"
    } else {
        "authorization_code"
    });
    let grant = match grant_name {
        "static" => {
            if rc.client_id.is_some() || rc.client_secret.is_some() || rc.token_endpoint.is_some() {
                p.add(at("grant"), "a static connector takes `token`, not client credentials or endpoints");
            }
            match p.secret(env, &at("token"), rc.token.as_deref()) {
                Some(token) => Grant::Static(token),
                None => {
                    if rc.token.is_none() {
                        p.add(at("token"), "a static connector needs `token` (e.g. ${API_KEY})");
                    }
                    return None;
                }
            }
        }
        "authorization_code" | "client_credentials" => {
            if rc.token.is_some() {
                p.add(at("token"), "only static connectors take `token`");
            }
            let client = oauth_client(rc, template, path, env, allow_http, p)?;
            if grant_name == "client_credentials" {
                if client.token_endpoint.is_none() && client.issuer.is_none() && client.discovery_url.is_none() {
                    p.add(at("token_endpoint"), "a client_credentials connector needs token_endpoint (or issuer)");
                }
                Grant::ClientCredentials(client)
            } else {
                let discovered = client.issuer.is_some() || client.discovery_url.is_some() || client.mcp_url.is_some();
                if !discovered && (client.authorization_endpoint.is_none() || client.token_endpoint.is_none()) {
                    p.add(
                        at("authorization_endpoint"),
                        "an authorization_code connector needs authorization_endpoint and token_endpoint, or issuer, discovery_url or mcp_url",
                    );
                }
                Grant::AuthorizationCode(client)
            }
        }
        other => {
            p.add(
                at("grant"),
                format!("`{other}` is not a grant; use authorization_code, client_credentials or static"),
            );
            return None;
        }
    };

    let inject = super::inject::injection(rc, path, p)?;
    let base_url = rc.base_url.as_deref().and_then(|u| match Target::parse(u) {
        Ok(t) if t.query.is_none() => Some(t),
        _ => {
            p.add(at("base_url"), format!("`{u}` is not an https URL without query"));
            None
        }
    });
    let mut strip_headers = Vec::new();
    for (i, h) in rc.strip_headers.iter().flatten().enumerate() {
        match HeaderName::try_from(h.as_str()) {
            Ok(name) => strip_headers.push(name),
            Err(_) => p.add(at(&format!("strip_headers[{i}]")), format!("`{h}` is not a header name")),
        }
    }
    let health_check = super::health_check::health_check(rc, template, &patterns, path, p);
    if rc.description.as_ref().is_some_and(|d| d.len() > 500 || d.chars().any(char::is_control)) {
        p.add(at("description"), "at most 500 characters, no control characters");
    }
    Some(Connector {
        name: rc.name.clone(),
        grant,
        patterns,
        inject,
        base_url,
        addresses,
        allow_websocket: rc.allow_websocket.unwrap_or(false),
        strip_headers,
        pin_host: rc.pin_host.unwrap_or(template.is_some_and(|t| t.pin_host)),
        health_check,
        description: rc.description.clone().filter(|d| !d.trim().is_empty()),
        template: template.map(|t| t.name.to_string()),
        private: match rc.access.as_deref() {
            None | Some("public") => false,
            Some("private") => true,
            Some(other) => {
                p.add(at("access"), format!("`{other}` is not public or private"));
                false
            }
        },
    })
}

fn oauth_client(
    rc: &RawConnector,
    template: Option<&'static templates::Template>,
    path: &str,
    env: &Environment,
    allow_http: bool,
    p: &mut Problems,
) -> Option<OAuthClient> {
    let at = |field: &str| format!("{path}.{field}");
    let owned = template_vars(rc, template);
    let vars: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // Endpoints Tollgate calls with the client's credentials may use http on a connector that
    // opts in; discovery (and the registration it leads to) never does.
    let endpoint = |p: &mut Problems, field: &str, own: &Option<String>, default: Option<&str>| -> Option<String> {
        let http_ok = allow_http && !DISCOVERY_FIELDS.contains(&field);
        let value = match (own, default) {
            (Some(v), _) => v.clone(),
            (None, Some(d)) => match templates::fill(d, &vars) {
                Ok(v) => v,
                Err(name) => {
                    p.add(
                        at("template_vars"),
                        format!("the template needs `{name}` (template_vars: {{ {name}: ... }})"),
                    );
                    return None;
                }
            },
            (None, None) => return None,
        };
        match Target::parse(&value) {
            Ok(t) if t.scheme == crate::domains::Scheme::Https || http_ok => Some(value),
            Ok(_) if allow_http => {
                p.add(
                    at(field),
                    format!("`{value}` is not an https URL; discovery is https only, even with unsafe_allow_http"),
                );
                None
            }
            _ => {
                p.add(at(field), format!("`{value}` is not an https URL"));
                None
            }
        }
    };
    let authorization_endpoint =
        endpoint(p, "authorization_endpoint", &rc.authorization_endpoint, template.map(|t| t.authorization_endpoint));
    let token_endpoint = endpoint(p, "token_endpoint", &rc.token_endpoint, template.map(|t| t.token_endpoint));
    let issuer = endpoint(p, "issuer", &rc.issuer, None);
    let discovery_url = endpoint(p, "discovery_url", &rc.discovery_url, None);
    let mcp_url = endpoint(p, "mcp_url", &rc.mcp_url, None);
    let revocation_endpoint =
        endpoint(p, "revocation_endpoint", &rc.revocation_endpoint, template.and_then(|t| t.revocation_endpoint));
    let resource = rc.resource.as_deref().and_then(|r| match crate::domains::Target::parse(r) {
        Ok(t) if t.scheme == crate::domains::Scheme::Https => Some(t.to_string()),
        _ => {
            p.add(at("resource"), format!("`{r}` is not an https URI (RFC 8707 resource indicator)"));
            None
        }
    });
    let params = super::authorize::authorize_params(rc, template, path, p);
    let client_id = rc.client_id.as_deref().and_then(|v| p.secret(env, &at("client_id"), Some(v)));
    let client_secret = p.secret(env, &at("client_secret"), rc.client_secret.as_deref());
    let method_name = rc
        .token_endpoint_auth_method
        .as_deref()
        .or(template.map(|t| t.token_endpoint_auth_method))
        .unwrap_or(if rc.client_secret.is_some() { "client_secret_basic" } else { "none" });
    let auth_method = match method_name {
        "client_secret_basic" => AuthMethod::ClientSecretBasic,
        "client_secret_post" => AuthMethod::ClientSecretPost,
        "none" => AuthMethod::None,
        other => {
            p.add(
                at("token_endpoint_auth_method"),
                format!("`{other}` is not one of client_secret_basic, client_secret_post, none"),
            );
            AuthMethod::None
        }
    };
    if auth_method != AuthMethod::None && rc.client_secret.is_none() {
        p.add(at("client_secret"), format!("{method_name} needs a client_secret"));
    }
    let scopes = rc
        .scopes
        .clone()
        .unwrap_or_else(|| template.map(|t| t.scopes.iter().map(|s| s.to_string()).collect()).unwrap_or_default());
    Some(OAuthClient {
        authorization_endpoint,
        token_endpoint,
        client_id: client_id.map(|s| s.expose().to_string()),
        client_secret,
        auth_method,
        scopes,
        issuer,
        discovery_url,
        mcp_url,
        authorize_params: params.extra,
        omit_scope: params.omit_scope,
        omit_resource: params.omit_resource,
        token_params: rc.token_params.clone().unwrap_or_default(),
        permanent_errors: template
            .map(|t| t.permanent_errors.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default(),
        client_errors: template.map(|t| t.client_errors.iter().map(|s| s.to_string()).collect()).unwrap_or_default(),
        resource,
        revocation_endpoint,
        host_from_instance_url: template.is_some_and(|t| t.host_from_instance_url),
        registration_endpoint: None,
        iss_required: false,
    })
}

/// The template's `{placeholder}` values: its defaults, overridden by the connector's.
fn template_vars(rc: &RawConnector, template: Option<&'static templates::Template>) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> =
        template.map(|t| t.vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()).unwrap_or_default();
    for (k, v) in rc.template_vars.iter().flatten() {
        vars.retain(|(name, _)| name != k);
        vars.push((k.clone(), v.clone()));
    }
    vars
}
