//! Provider templates: endpoints, default scopes, quirks and default allowed domains for
//! common platforms. A connector names a template and overrides any field it sets itself.
//! `{name}` placeholders in endpoints and domains are filled from the connector's
//! `template_vars` (Microsoft's `{tenant}` defaults to `common`; Databricks needs
//! `account_id`). Endpoints were checked against each provider's own documentation on
//! 2026-11-22; non-standard revocation APIs (GitHub, Slack, Dropbox, Microsoft Graph) are not
//! called, so those templates set no revocation endpoint.

/// What a template fills in for a connector that leaves the field unset.
#[derive(Debug, Clone)]
pub struct Template {
    pub name: &'static str,
    pub authorization_endpoint: &'static str,
    pub token_endpoint: &'static str,
    /// An RFC 7009 endpoint, when the provider has one.
    pub revocation_endpoint: Option<&'static str>,
    pub scopes: &'static [&'static str],
    pub allowed_domains: &'static [&'static str],
    /// `client_secret_basic`, `client_secret_post` or `none`.
    pub token_endpoint_auth_method: &'static str,
    /// Added to the authorization request (a connector can exclude any of them).
    pub authorize_params: &'static [(&'static str, &'static str)],
    /// Error codes in a token answer that mean the grant is gone for good, beyond the
    /// standard `invalid_grant`.
    pub permanent_errors: &'static [&'static str],
    /// Error codes that mean the connector's client credentials are wrong, beyond the standard
    /// `invalid_client` and `unauthorized_client`: the connector's fault, not the user's.
    pub client_errors: &'static [&'static str],
    /// Tokens are bound to one tenant host on a shared wildcard.
    pub pin_host: bool,
    /// The token answer names that host (`instance_url`).
    pub host_from_instance_url: bool,
    /// Default values of `{placeholders}`; a placeholder without one must be set.
    pub vars: &'static [(&'static str, &'static str)],
    /// A `GET` that answers 200 to any valid token (the user's own profile): "Test connection".
    pub health_check: Option<&'static str>,
}

const fn base(name: &'static str, authorization_endpoint: &'static str, token_endpoint: &'static str) -> Template {
    Template {
        name,
        authorization_endpoint,
        token_endpoint,
        revocation_endpoint: None,
        scopes: &[],
        allowed_domains: &[],
        token_endpoint_auth_method: "client_secret_basic",
        authorize_params: &[],
        permanent_errors: &[],
        client_errors: &[],
        pin_host: false,
        host_from_instance_url: false,
        vars: &[],
        health_check: None,
    }
}

const TEMPLATES: &[Template] = &[
    Template {
        scopes: &["repo", "read:user"],
        allowed_domains: &["https://api.github.com/*", "https://uploads.github.com/*"],
        token_endpoint_auth_method: "client_secret_post",
        // GitHub answers refresh failures with HTTP 200 and an error field.
        permanent_errors: &["bad_refresh_token", "bad_verification_code"],
        client_errors: &["incorrect_client_credentials"],
        health_check: Some("https://api.github.com/user"),
        ..base("github", "https://github.com/login/oauth/authorize", "https://github.com/login/oauth/access_token")
    },
    Template {
        revocation_endpoint: Some("https://oauth2.googleapis.com/revoke"),
        scopes: &["openid", "email"],
        allowed_domains: &["https://*.googleapis.com/*"],
        token_endpoint_auth_method: "client_secret_post",
        // Without both, Google issues no refresh token on a repeat consent.
        authorize_params: &[("access_type", "offline"), ("prompt", "consent")],
        health_check: Some("https://openidconnect.googleapis.com/v1/userinfo"),
        ..base("google", "https://accounts.google.com/o/oauth2/v2/auth", "https://oauth2.googleapis.com/token")
    },
    Template {
        scopes: &["offline_access", "https://graph.microsoft.com/User.Read"],
        allowed_domains: &["https://graph.microsoft.com/*"],
        token_endpoint_auth_method: "client_secret_post",
        vars: &[("tenant", "common")],
        health_check: Some("https://graph.microsoft.com/v1.0/me"),
        ..base(
            "microsoft",
            "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize",
            "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",
        )
    },
    Template {
        revocation_endpoint: Some("https://login.salesforce.com/services/oauth2/revoke"),
        scopes: &["api", "refresh_token"],
        allowed_domains: &["https://*.my.salesforce.com/*"],
        token_endpoint_auth_method: "client_secret_post",
        pin_host: true,
        host_from_instance_url: true,
        ..base(
            "salesforce",
            "https://login.salesforce.com/services/oauth2/authorize",
            "https://login.salesforce.com/services/oauth2/token",
        )
    },
    Template {
        scopes: &["channels:read", "chat:write"],
        allowed_domains: &["https://slack.com/api/*"],
        token_endpoint_auth_method: "client_secret_post",
        // Slack answers HTTP 200 with ok:false and these errors.
        permanent_errors: &["invalid_refresh_token", "token_revoked"],
        client_errors: &["invalid_client_id", "bad_client_secret"],
        ..base("slack", "https://slack.com/oauth/v2/authorize", "https://slack.com/api/oauth.v2.access")
    },
    Template {
        scopes: &["read:jira-work", "read:jira-user", "offline_access"],
        allowed_domains: &["https://api.atlassian.com/*"],
        token_endpoint_auth_method: "client_secret_post",
        authorize_params: &[("audience", "api.atlassian.com"), ("prompt", "consent")],
        health_check: Some("https://api.atlassian.com/me"),
        ..base("atlassian", "https://auth.atlassian.com/authorize", "https://auth.atlassian.com/oauth/token")
    },
    Template {
        scopes: &["all-apis", "offline_access"],
        allowed_domains: &["https://*.cloud.databricks.com/*"],
        token_endpoint_auth_method: "none",
        pin_host: true,
        ..base(
            "databricks",
            "https://accounts.cloud.databricks.com/oidc/accounts/{account_id}/v1/authorize",
            "https://accounts.cloud.databricks.com/oidc/accounts/{account_id}/v1/token",
        )
    },
    Template {
        revocation_endpoint: Some("https://gitlab.com/oauth/revoke"),
        scopes: &["api"],
        allowed_domains: &["https://gitlab.com/api/*"],
        token_endpoint_auth_method: "client_secret_post",
        health_check: Some("https://gitlab.com/api/v4/user"),
        ..base("gitlab", "https://gitlab.com/oauth/authorize", "https://gitlab.com/oauth/token")
    },
    Template {
        revocation_endpoint: Some("https://api.notion.com/v1/oauth/revoke"),
        allowed_domains: &["https://api.notion.com/*"],
        authorize_params: &[("owner", "user")],
        ..base("notion", "https://api.notion.com/v1/oauth/authorize", "https://api.notion.com/v1/oauth/token")
    },
    Template {
        scopes: &["oauth", "crm.objects.contacts.read"],
        allowed_domains: &["https://api.hubapi.com/*"],
        token_endpoint_auth_method: "client_secret_post",
        // The dated token path replaces /oauth/v1/token, deprecated from 2027-02-16.
        ..base("hubspot", "https://app.hubspot.com/oauth/authorize", "https://api.hubapi.com/oauth/2026-03/token")
    },
    Template {
        revocation_endpoint: Some("https://zoom.us/oauth/revoke"),
        allowed_domains: &["https://api.zoom.us/*"],
        health_check: Some("https://api.zoom.us/v2/users/me"),
        ..base("zoom", "https://zoom.us/oauth/authorize", "https://zoom.us/oauth/token")
    },
    Template {
        scopes: &["files.metadata.read"],
        allowed_domains: &["https://api.dropboxapi.com/*", "https://content.dropboxapi.com/*"],
        authorize_params: &[("token_access_type", "offline")],
        ..base("dropbox", "https://www.dropbox.com/oauth2/authorize", "https://api.dropboxapi.com/oauth2/token")
    },
];

/// The template of that name.
pub fn find(name: &str) -> Option<&'static Template> {
    TEMPLATES.iter().find(|t| t.name == name)
}

/// Names of every template, for error messages.
pub fn names() -> Vec<&'static str> {
    TEMPLATES.iter().map(|t| t.name).collect()
}

/// Fills `{name}` placeholders; `Err` names the first placeholder without a value.
pub fn fill(text: &str, vars: &[(&str, &str)]) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').ok_or_else(|| format!("unclosed placeholder in {text}"))? + start;
        let name = &rest[start + 1..end];
        let value = vars.iter().find(|(k, _)| *k == name).map(|(_, v)| *v).ok_or_else(|| name.to_string())?;
        out.push_str(value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_is_complete_and_loads() {
        use crate::domains::addr::AddressPolicy;
        use crate::domains::{Pattern, Target};
        assert!(TEMPLATES.len() >= 12);
        for t in TEMPLATES {
            let vars: Vec<(&str, &str)> = [("tenant", "contoso"), ("account_id", "acc-1")].to_vec();
            for url in [t.authorization_endpoint, t.token_endpoint].into_iter().chain(t.revocation_endpoint) {
                let url = fill(url, &vars).unwrap();
                assert!(Target::parse(&url).is_ok_and(|u| u.scheme.as_str() == "https"), "{}: {url}", t.name);
            }
            assert!(!t.allowed_domains.is_empty(), "{}", t.name);
            for d in t.allowed_domains {
                Pattern::parse_vetted(d, &AddressPolicy::default()).unwrap_or_else(|e| panic!("{}: {e}", t.name));
            }
            assert!(["client_secret_basic", "client_secret_post", "none"].contains(&t.token_endpoint_auth_method));
            if let Some(url) = t.health_check {
                let target = Target::parse(url).unwrap();
                let patterns =
                    t.allowed_domains.iter().map(|d| (0, Pattern::parse_vetted(d, &AddressPolicy::default()).unwrap()));
                let list = crate::domains::AllowList::build(patterns).unwrap();
                assert!(list.covering_for(0, &target).is_some(), "{}: {url} is outside its allowed domains", t.name);
            }
        }
        assert_eq!(fill("https://x/{tenant}/a", &[("tenant", "common")]).unwrap(), "https://x/common/a");
        assert_eq!(fill("https://x/{account_id}", &[]), Err("account_id".into()));
    }
}
