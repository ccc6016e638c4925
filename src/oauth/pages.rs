//! The small HTML pages browsers see during a connect flow: the start page with its Continue
//! button, and result pages that say what happened and what to fix. Every dynamic value is
//! escaped; pages are not cacheable, not frameable, and run only their own inline script
//! (which tells a popup's opener how the flow ended).

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::body::Body;

/// Escapes text for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// How a flow ended, for the opener of a popup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Connected,
    Failed,
}

/// A complete page. `body` is trusted HTML built with [`escape`]d values.
pub fn page(status: StatusCode, title: &str, body: &str, notify: Option<(Outcome, &str)>) -> Response<Body> {
    let script = match notify {
        Some((outcome, connector)) => {
            let message = serde_json::json!({
                "type": "tollgate.oauth",
                "status": if outcome == Outcome::Connected { "connected" } else { "failed" },
                "connector": connector,
            });
            // `<` escaped so no value can close the script element.
            let json = message.to_string().replace('<', "\\u003c");
            format!("<script>if (window.opener) {{ window.opener.postMessage({json}, \"*\"); }}</script>")
        }
        None => String::new(),
    };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{title}</title><style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}}\
         button{{font-size:1rem;padding:.5rem 1.5rem}}code{{background:#f3f3f3;padding:0 .2rem}}</style></head>\
         <body><h1>{title}</h1>{body}{script}</body></html>",
        title = escape(title)
    );
    let mut response = Response::new(Full::new(Bytes::from(html)).map_err(|never| match never {}).boxed());
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Same-origin, not no-referrer: with no-referrer a browser sends `Origin: null` on the
    // page's own form POST, which the origin check must refuse. Other sites get no referrer.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; base-uri 'none'",
        ),
    );
    response
}

/// A failure page: what happened and what to do about it.
pub fn failure(status: StatusCode, connector: Option<&str>, what: &str, fix: &str) -> Response<Body> {
    let body = format!("<p>{}</p><p><strong>What to do:</strong> {}</p>", escape(what), escape(fix));
    page(status, "Could not connect", &body, Some((Outcome::Failed, connector.unwrap_or(""))))
}

/// What the callback page says for each error a provider sends back.
pub fn provider_error(code: &str, connector: &str, redirect_uri: &str) -> (&'static str, String) {
    match code {
        "access_denied" => (
            "Access was not granted.",
            format!("Connect again from your tool and choose Allow on the {connector} consent screen."),
        ),
        "redirect_uri_mismatch" | "invalid_redirect_uri" => (
            "The provider does not accept Tollgate's redirect URI.",
            format!("An administrator must register {redirect_uri} as a redirect URI of the {connector} OAuth app."),
        ),
        "invalid_client" | "unauthorized_client" => (
            "The provider does not recognise the connector's client credentials.",
            format!("An administrator must check the client_id and client_secret of the {connector} connector."),
        ),
        "invalid_scope" => (
            "The provider refused the requested scopes.",
            format!("An administrator must fix the scopes of the {connector} connector."),
        ),
        "invalid_target" => (
            "The provider refused the resource indicator.",
            format!("An administrator must fix the `resource` of the {connector} connector."),
        ),
        _ => (
            "The provider reported an error.",
            "Connect again from your tool; if it keeps failing, ask an administrator.".into(),
        ),
    }
}
