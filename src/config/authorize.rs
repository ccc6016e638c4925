//! The authorization request's parameters (seed 004): Tollgate's own, which no connector can
//! set or drop (`response_type`, `client_id`, `redirect_uri`, `state`, and PKCE's
//! `code_challenge` / `code_challenge_method`); the defaults a connector may drop with
//! `exclude_authorize_params` (`scope`, `resource`, and its template's, such as Google's
//! `access_type` and `prompt`); and its own `authorize_params`.

use std::collections::BTreeMap;

use super::problems::Problems;
use super::raw::RawConnector;
use super::templates::Template;

/// Sent on every authorization request, by Tollgate alone.
pub const TOLLGATE_PARAMS: &[&str] =
    &["response_type", "client_id", "redirect_uri", "state", "code_challenge", "code_challenge_method"];

/// What a connector sends beside Tollgate's own parameters.
pub struct AuthorizeParams {
    pub extra: BTreeMap<String, String>,
    pub omit_scope: bool,
    pub omit_resource: bool,
}

pub(crate) fn authorize_params(
    rc: &RawConnector,
    template: Option<&Template>,
    path: &str,
    p: &mut Problems,
) -> AuthorizeParams {
    let mut extra: BTreeMap<String, String> = template
        .map(|t| t.authorize_params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
        .unwrap_or_default();
    for (k, v) in rc.authorize_params.iter().flatten() {
        if TOLLGATE_PARAMS.contains(&k.as_str()) || k == "scope" || k == "resource" {
            p.add(
                format!("{path}.authorize_params.{k}"),
                "is set by Tollgate (scopes and resource have their own keys); it cannot be given here",
            );
        } else {
            extra.insert(k.clone(), v.clone());
        }
    }
    let (mut omit_scope, mut omit_resource) = (false, false);
    for (i, excluded) in rc.exclude_authorize_params.iter().flatten().enumerate() {
        match excluded.as_str() {
            name if TOLLGATE_PARAMS.contains(&name) => p.add(
                format!("{path}.exclude_authorize_params[{i}]"),
                format!("`{name}` is never excluded: state, PKCE and the redirect URI protect every flow"),
            ),
            "scope" => omit_scope = true,
            "resource" => omit_resource = true,
            name => {
                extra.remove(name);
            }
        }
    }
    AuthorizeParams { extra, omit_scope, omit_resource }
}
