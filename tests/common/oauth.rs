//! A stub token endpoint that behaves like a real one: refresh tokens rotate, a reused one is
//! refused with `invalid_grant` and revokes the whole family (as rotating servers do), and a
//! test can make it slow, failing, or refuse for good.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use http::{Response, StatusCode};
use http_body_util::BodyExt;

use super::{full, Body, TestCa, Upstream};

/// How the endpoint answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Rotate: new access and refresh token, `expires_in: 3600`.
    Rotate,
    /// Like `Rotate` but without `expires_in`; `with_refresh` says whether a refresh token comes back.
    NoExpiresIn { with_refresh: bool },
    /// A 400 with this error code.
    Refuse(&'static str),
    /// A 200 whose body is `{"error": code}` (GitHub's style).
    OkError(&'static str),
    /// This status with a small body.
    Status(u16),
    /// A 200 with exactly this JSON.
    Raw(serde_json::Value),
}

#[derive(Debug)]
pub struct State {
    pub mode: Mode,
    pub calls: usize,
    pub valid: HashSet<String>,
    pub used: HashSet<String>,
    pub issued: usize,
    pub grant_types: Vec<String>,
    /// Authorization codes: code -> (PKCE challenge, redirect URI).
    pub codes: std::collections::HashMap<String, (String, String)>,
    /// Every token-endpoint form, in order.
    pub forms: Vec<Vec<(String, String)>>,
    /// Included in token answers when set (Salesforce style).
    pub instance_url: Option<String>,
    /// Revocation requests: (token, token_type_hint).
    pub revocations: Vec<(String, String)>,
    pub revoke_status: u16,
    /// `https://auth.test:<port>`: the issuer this server's metadata names.
    pub issuer: String,
    /// Registrations received (RFC 7591), as their JSON bodies.
    pub registrations: Vec<serde_json::Value>,
    /// Answer every registration with this client id.
    pub same_client_id: Option<String>,
    /// Answer registrations with these redirect URIs instead of the requested ones.
    pub registered_redirects: Option<Vec<String>>,
    /// When set, the token endpoint answers `401 invalid_client` (as real servers do) unless
    /// the client authenticates with this secret (HTTP Basic or `client_secret` in the form).
    pub client_secret: Option<String>,
}

pub type Hold = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

pub struct TokenEndpoint {
    pub server: Upstream,
    pub state: Arc<Mutex<State>>,
}

impl TokenEndpoint {
    /// `refresh_tokens` are valid at start; `hold` runs before every answer.
    pub async fn start(ca: &TestCa, refresh_tokens: &[&str], hold: Option<Hold>) -> TokenEndpoint {
        let state = Arc::new(Mutex::new(State {
            mode: Mode::Rotate,
            calls: 0,
            valid: refresh_tokens.iter().map(|s| s.to_string()).collect(),
            used: HashSet::new(),
            issued: 0,
            grant_types: Vec::new(),
            codes: Default::default(),
            forms: Vec::new(),
            instance_url: None,
            revocations: Vec::new(),
            revoke_status: 200,
            issuer: String::new(),
            registrations: Vec::new(),
            same_client_id: None,
            registered_redirects: None,
            client_secret: None,
        }));
        let s = state.clone();
        let server = Upstream::with(ca, move |req| {
            let state = s.clone();
            let hold = hold.clone();
            async move {
                let path = req.uri().path().to_string();
                let basic_secret = basic_password(req.headers());
                let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                let form: Vec<(String, String)> = url_decode_form(&body);
                let field = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                if let Some(answer) = metadata(&mut state.lock().unwrap(), &path, &body) {
                    return answer;
                }
                if path == "/revoke" {
                    let mut st = state.lock().unwrap();
                    st.revocations
                        .push((field("token").unwrap_or_default(), field("token_type_hint").unwrap_or_default()));
                    let mut r = Response::new(full(""));
                    *r.status_mut() = StatusCode::from_u16(st.revoke_status).unwrap();
                    return r;
                }
                {
                    let mut st = state.lock().unwrap();
                    st.calls += 1;
                    st.forms.push(form.clone());
                }
                if let Some(hold) = hold {
                    hold().await;
                }
                let mut st = state.lock().unwrap();
                if let Some(expected) = &st.client_secret {
                    if basic_secret.or_else(|| field("client_secret")).as_deref() != Some(expected.as_str()) {
                        return json(StatusCode::UNAUTHORIZED, serde_json::json!({ "error": "invalid_client" }));
                    }
                }
                if field("grant_type").as_deref() == Some("authorization_code") {
                    if let Some(refused) =
                        check_code(&mut st, field("code"), field("code_verifier"), field("redirect_uri"))
                    {
                        return refused;
                    }
                }
                answer(&mut st, field("grant_type"), field("refresh_token"))
            }
        })
        .await;
        state.lock().unwrap().issuer = format!("https://auth.test:{}", server.port);
        TokenEndpoint { server, state }
    }

    pub fn calls(&self) -> usize {
        self.state.lock().unwrap().calls
    }

    pub fn set_mode(&self, mode: Mode) {
        self.state.lock().unwrap().mode = mode;
    }

    /// What the provider's consent screen does: a code bound to the PKCE challenge.
    pub fn issue_code(&self, challenge: &str, redirect_uri: &str) -> String {
        let mut st = self.state.lock().unwrap();
        let code = format!("code-{}", st.codes.len() + 1);
        st.codes.insert(code.clone(), (challenge.to_string(), redirect_uri.to_string()));
        code
    }
}

/// RFC 8414 and RFC 9728 metadata, and RFC 7591 registration.
fn metadata(st: &mut State, path: &str, body: &[u8]) -> Option<Response<Body>> {
    let issuer = st.issuer.clone();
    match path {
        "/.well-known/oauth-authorization-server" => Some(json(
            StatusCode::OK,
            serde_json::json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{issuer}/authorize"),
                "token_endpoint": format!("{issuer}/token"),
                "revocation_endpoint": format!("{issuer}/revoke"),
                "registration_endpoint": format!("{issuer}/register"),
                "authorization_response_iss_parameter_supported": true,
                "code_challenge_methods_supported": ["S256"],
            }),
        )),
        // Metadata fetched for another issuer path names this server's issuer: a mismatch.
        "/.well-known/oauth-authorization-server/other" => {
            Some(json(StatusCode::OK, serde_json::json!({ "issuer": issuer })))
        }
        // Issuers whose metadata hands out non-https endpoints.
        "/.well-known/oauth-authorization-server/httpauth" => Some(json(
            StatusCode::OK,
            serde_json::json!({
                "issuer": format!("{issuer}/httpauth"),
                "authorization_endpoint": "javascript:alert(1)",
                "token_endpoint": format!("{issuer}/token"),
            }),
        )),
        "/.well-known/oauth-authorization-server/httpreg" => Some(json(
            StatusCode::OK,
            serde_json::json!({
                "issuer": format!("{issuer}/httpreg"),
                "authorization_endpoint": format!("{issuer}/authorize"),
                "token_endpoint": format!("{issuer}/token"),
                "registration_endpoint": "http://auth.test/register",
            }),
        )),
        // Any other issuer path: complete metadata for that issuer, with registration.
        p if p.starts_with("/.well-known/oauth-authorization-server/") => {
            let sub = &p["/.well-known/oauth-authorization-server".len()..];
            Some(json(
                StatusCode::OK,
                serde_json::json!({
                    "issuer": format!("{issuer}{sub}"),
                    "authorization_endpoint": format!("{issuer}/authorize"),
                    "token_endpoint": format!("{issuer}/token"),
                    "registration_endpoint": format!("{issuer}{sub}/register"),
                }),
            ))
        }
        "/.well-known/oauth-protected-resource/mcp" => Some(json(
            StatusCode::OK,
            serde_json::json!({ "resource": format!("{issuer}/mcp"), "authorization_servers": [issuer] }),
        )),
        p if p.ends_with("/register") => {
            let request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
            st.registrations.push(request.clone());
            let n = st.registrations.len();
            // The servers behind issuer paths /one and /two hand out the same client id.
            let shared = (path.starts_with("/one/") || path.starts_with("/two/")).then(|| "same-client".to_string());
            let client_id = st.same_client_id.clone().or(shared).unwrap_or_else(|| format!("registered-{n}"));
            // The server behind issuer path /r1 rewrites the redirect URIs it was given.
            let redirects = match (&st.registered_redirects, path.starts_with("/r1/")) {
                (Some(r), _) => serde_json::json!(r),
                (None, true) => serde_json::json!(["https://evil.io/cb"]),
                (None, false) => request["redirect_uris"].clone(),
            };
            Some(json(
                StatusCode::CREATED,
                serde_json::json!({ "client_id": client_id, "redirect_uris": redirects, "token_endpoint_auth_method": "none" }),
            ))
        }
        _ => None,
    }
}

/// A code is good once, for the verifier whose S256 is its challenge, at its redirect URI.
fn check_code(
    st: &mut State,
    code: Option<String>,
    verifier: Option<String>,
    redirect: Option<String>,
) -> Option<Response<Body>> {
    use base64::Engine;
    let refuse = || Some(json(StatusCode::BAD_REQUEST, serde_json::json!({ "error": "invalid_grant" })));
    let Some((challenge, redirect_uri)) = code.and_then(|c| st.codes.remove(&c)) else { return refuse() };
    let Some(verifier) = verifier else { return refuse() };
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    if base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest) != challenge
        || redirect.as_deref() != Some(&redirect_uri)
    {
        return refuse();
    }
    None
}

/// The password of an HTTP Basic `Authorization` header (form-encoded, as RFC 6749 2.3.1 says).
fn basic_password(headers: &http::HeaderMap) -> Option<String> {
    use base64::Engine;
    let value = headers.get("authorization")?.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(value).ok()?;
    let (_, password) =
        String::from_utf8(decoded).ok()?.split_once(':').map(|(u, p)| (u.to_string(), p.to_string()))?;
    url_decode_form(format!("p={password}").as_bytes()).into_iter().next().map(|(_, v)| v)
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(full(value.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert("content-type", "application/json".parse().unwrap());
    r
}

fn answer(state: &mut State, grant: Option<String>, refresh: Option<String>) -> Response<Body> {
    state.grant_types.push(grant.clone().unwrap_or_default());
    match state.mode.clone() {
        Mode::Refuse(code) => return json(StatusCode::BAD_REQUEST, serde_json::json!({ "error": code })),
        Mode::OkError(code) => return json(StatusCode::OK, serde_json::json!({ "error": code })),
        Mode::Raw(value) => return json(StatusCode::OK, value),
        Mode::Status(code) => {
            let mut r = Response::new(full("upstream trouble"));
            *r.status_mut() = StatusCode::from_u16(code).unwrap();
            return r;
        }
        Mode::Rotate | Mode::NoExpiresIn { .. } => {}
    }
    if grant.as_deref() == Some("refresh_token") {
        let rt = refresh.unwrap_or_default();
        if state.used.contains(&rt) {
            // Reuse of a rotated token: the whole family is revoked.
            state.valid.clear();
            return json(
                StatusCode::BAD_REQUEST,
                serde_json::json!({ "error": "invalid_grant", "error_description": "reused" }),
            );
        }
        if !state.valid.remove(&rt) {
            return json(StatusCode::BAD_REQUEST, serde_json::json!({ "error": "invalid_grant" }));
        }
        state.used.insert(rt);
    }
    state.issued += 1;
    let n = state.issued + 1;
    let mut body = serde_json::json!({ "access_token": format!("at-{n}"), "token_type": "Bearer" });
    let with_refresh = match state.mode {
        Mode::NoExpiresIn { with_refresh } => with_refresh,
        _ => {
            body["expires_in"] = 3600.into();
            true
        }
    };
    if let Some(instance) = &state.instance_url {
        body["instance_url"] = instance.clone().into();
    }
    if with_refresh && matches!(grant.as_deref(), Some("refresh_token" | "authorization_code")) {
        let rt = format!("rt-{n}");
        state.valid.insert(rt.clone());
        body["refresh_token"] = rt.into();
    }
    json(StatusCode::OK, body)
}

pub fn url_decode_form(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    text.split('&').filter_map(|pair| pair.split_once('=')).map(|(k, v)| (decode(k), decode(v))).collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(0));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
