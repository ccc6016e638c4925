//! Provider templates: endpoints, default scopes, quirks and default allowed domains for
//! common platforms. A connector names a template and overrides any field it sets itself.

/// What a template fills in for a connector that leaves the field unset.
#[derive(Debug, Clone)]
pub struct Template {
    pub name: &'static str,
    pub authorization_endpoint: &'static str,
    pub token_endpoint: &'static str,
    pub revocation_endpoint: Option<&'static str>,
    pub scopes: &'static [&'static str],
    pub allowed_domains: &'static [&'static str],
    /// `client_secret_basic`, `client_secret_post` or `none`.
    pub token_endpoint_auth_method: &'static str,
    /// Error codes in a token response that mean the grant is gone for good, beyond the
    /// standard `invalid_grant`, `invalid_client` and `unauthorized_client`.
    pub permanent_errors: &'static [&'static str],
    /// The token endpoint answers form-encoded unless `Accept: application/json` is sent.
    pub needs_json_accept: bool,
}

const TEMPLATES: &[Template] = &[Template {
    name: "github",
    authorization_endpoint: "https://github.com/login/oauth/authorize",
    token_endpoint: "https://github.com/login/oauth/access_token",
    revocation_endpoint: None,
    scopes: &["repo", "read:user"],
    allowed_domains: &["https://api.github.com/*", "https://uploads.github.com/*"],
    token_endpoint_auth_method: "client_secret_post",
    permanent_errors: &["bad_refresh_token", "bad_verification_code"],
    needs_json_accept: true,
}];

/// The template of that name.
pub fn find(name: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.name == name)
}

/// Names of every template, for error messages.
pub fn names() -> Vec<&'static str> {
    TEMPLATES.iter().map(|t| t.name).collect()
}
