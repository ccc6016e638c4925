//! What a browser does in a connect flow: open the start page, press Continue, let the
//! provider consent, follow the redirect back to the callback.

use std::net::SocketAddr;

use bytes::Bytes;
use http::StatusCode;

use super::oauth::TokenEndpoint;
use super::{get, send, Answer};

pub fn query(url: &str) -> Vec<(String, String)> {
    let q = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    q.split('&').filter_map(|p| p.split_once('=')).map(|(k, v)| (k.to_string(), percent_decode(v))).collect()
}

fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap(), 16).unwrap());
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

pub fn get_field<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

/// The value of a hidden form field on a page.
pub fn hidden(body: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body.find(&marker).unwrap_or_else(|| panic!("no {name} on the page")) + marker.len();
    body[start..start + body[start..].find('"').unwrap()].to_string()
}

/// Opens the start page and presses Continue (with `extra` form fields), as a browser does:
/// the page's CSRF value and its cookie go back with the form.
pub async fn post_start(proxy: SocketAddr, connect_path: &str, extra: &str) -> Answer {
    let page = get(proxy, connect_path, &[]).await;
    assert_eq!(page.status, 200, "{:?}", page.body);
    let body = String::from_utf8_lossy(&page.body).to_string();
    let cookie = page.headers["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let ticket = connect_path.split_once("ticket=").unwrap().1;
    let form = format!("ticket={ticket}&csrf={}{extra}", hidden(&body, "csrf"));
    let headers = [("content-type", "application/x-www-form-urlencoded"), ("cookie", cookie.as_str())];
    send(proxy, "POST", "/oauth/start", &headers, Bytes::from(form)).await
}

/// Start page, then Continue: the provider URL and the flow cookie.
pub async fn start(proxy: SocketAddr, connect_path: &str, host: Option<&str>) -> (String, String) {
    let extra = host.map(|h| format!("&host={h}")).unwrap_or_default();
    let posted = post_start(proxy, connect_path, &extra).await;
    assert_eq!(posted.status, StatusCode::SEE_OTHER, "{}", String::from_utf8_lossy(&posted.body));
    let location = posted.headers["location"].to_str().unwrap().to_string();
    let cookie = posted.headers["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    (location, cookie)
}

/// The provider's consent (a code for the flow's challenge), then the callback.
pub async fn consent(proxy: SocketAddr, endpoint: &TokenEndpoint, location: &str, cookie: &str, extra: &str) -> Answer {
    let q = query(location);
    let code = endpoint.issue_code(get_field(&q, "code_challenge").unwrap(), get_field(&q, "redirect_uri").unwrap());
    let state = get_field(&q, "state").unwrap();
    get(proxy, &format!("/oauth/callback?code={code}&state={state}{extra}"), &[("cookie", cookie)]).await
}

/// `&iss=...` naming the stub's issuer.
pub fn iss(endpoint: &TokenEndpoint) -> String {
    format!("&iss=https%3A%2F%2Fauth.test%3A{}", endpoint.server.port)
}
