//! Creating, editing, checking, testing and deleting connectors in the console. A connector
//! starts from a template (the gallery filters as you type), from scratch, or from a
//! discovery URL that Check reads (RFC 8414, OpenID Connect, RFC 9728) to fill the endpoints.
//! Saving goes through the same code as the admin API's `PUT` (`live::stored::write`): the
//! same validator as the config file, whose errors appear next to their fields. Secrets are
//! write-only: the form shows `•••• last4`, and a blank field keeps the stored value.

use std::sync::Arc;

use http::{Response, StatusCode};
use maud::{html, Markup};
use serde_json::{json, Map, Value};

use super::layout::{action, badge, page};
use super::{field, html_response, redirect};
use crate::body::Body;
use crate::config::stored::StoredConnector;
use crate::config::templates;
use crate::live::stored::{self, ChangeError};
use crate::live::Shared;
use crate::signin::Session;

/// The form's text fields: (name, label, hint).
const TEXT_FIELDS: &[(&str, &str, &str)] = &[
    ("description", "Description", "What the connector is for, as users read it"),
    ("client_id", "Client ID", "From the provider's OAuth app; blank with a discovery URL registers one (RFC 7591)"),
    ("scopes", "Scopes", "Space-separated"),
    ("authorization_endpoint", "Authorization endpoint", "https://"),
    ("token_endpoint", "Token endpoint", "https://"),
    ("issuer", "Issuer (discovery)", "RFC 8414 / OpenID Connect issuer URL"),
    ("discovery_url", "Discovery URL", "A metadata document URL"),
    ("mcp_url", "MCP server URL", "RFC 9728 protected-resource metadata is read from it"),
];

/// The form as entered (or as stored): field name to text.
type Values = Map<String, Value>;

pub async fn get(shared: &Shared, session: &Session, path: &str, query: &[(String, String)]) -> Response<Body> {
    let state = shared.current();
    match path {
        "/console/connectors/new" => {
            let mut values = Values::new();
            if let Some(t) = field(query, "template").and_then(templates::find) {
                values.insert("template".into(), json!(t.name));
            }
            form(shared, session, &values, None, &[], None, true)
        }
        "/console/connectors/edit" => {
            let name = field(query, "name").unwrap_or_default();
            match stored::read_one(shared.store().as_ref(), name).await {
                Ok(Some(c)) => form(shared, session, &c.spec, Some(&c), &[], None, false),
                Ok(None) => {
                    let body = html! { p { code { (name) } " is not a connector stored through the console or the admin API. Connectors of the config file are changed in the file." } };
                    html_response(StatusCode::NOT_FOUND, &state, page("Not editable", Some(session), body))
                }
                Err(e) => super::unavailable(&state, &e.to_string()),
            }
        }
        "/console/connectors/delete" => {
            let name = field(query, "name").unwrap_or_default();
            let Some(index) = state.config.resolve_name(name).filter(|i| state.config.is_stored(*i)) else {
                let body = html! { p { "Only stored connectors can be deleted here." } };
                return html_response(StatusCode::NOT_FOUND, &state, page("Not found", Some(session), body));
            };
            let connector = &state.config.connectors[index];
            let count = match state.broker.store().list(Some(&connector.name), None).await {
                Ok(all) => all
                    .iter()
                    .filter(|(k, c)| {
                        k.connector == connector.name && c.status != crate::token::ConnectionStatus::Revoked
                    })
                    .count(),
                Err(e) => return super::unavailable(&state, &e.to_string()),
            };
            let body = html! {
                p { "Deleting " strong { (connector.name) } " removes it and its tools, and revokes its "
                    strong { (count) " connection" @if count != 1 { "s" } } " at the provider. Users must connect again if it comes back." }
                (action(session, "/console/connectors/delete", &format!("Delete {} and revoke {count}", connector.name), &[("name", &connector.name)], "danger"))
                " " a href="/console/connectors" { "Cancel" }
            };
            html_response(StatusCode::OK, &state, page("Delete connector", Some(session), body))
        }
        _ => html_response(StatusCode::NOT_FOUND, &state, super::not_found(Some(session))),
    }
}

pub async fn post(
    shared: &Shared,
    session: &Session,
    path: &str,
    form_in: &[(String, String)],
    from: String,
) -> Response<Body> {
    let state = shared.current();
    let audit = |action: &'static str, target: String| {
        let entry = crate::audit::Entry::new(&session.grant.principal, "console", from.clone(), action, &target);
        async move { crate::audit::record(shared.store().as_ref(), entry).await }
    };
    match path {
        "/console/connectors/save" | "/console/connectors/check" => {
            let values = values_from(form_in);
            let name = values.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            let creating = field(form_in, "creating") == Some("1");
            let previous = stored::read_one(shared.store().as_ref(), &name).await.ok().flatten();
            if path.ends_with("/check") {
                let (values, found) = check(shared, &values).await;
                return form(shared, session, &values, previous.as_ref(), &[], Some(found), creating);
            }
            if creating && previous.is_some() {
                let errors = vec![("name".to_string(), format!("a connector named `{name}` exists; edit it instead"))];
                return form(shared, session, &values, previous.as_ref(), &errors, None, creating);
            }
            let body = match serde_json::to_vec(&body_of(&values)) {
                Ok(b) => b,
                Err(e) => return super::unavailable(&state, &e.to_string()),
            };
            match stored::write(shared, &name, &body).await {
                Ok(created) => {
                    audit(if created { "connector.create" } else { "connector.update" }, name.clone()).await;
                    redirect("/console/connectors")
                }
                Err(ChangeError::Invalid(message) | ChangeError::Conflict(message)) => {
                    let errors = errors_by_field(&name, &message);
                    form(shared, session, &values, previous.as_ref(), &errors, None, creating)
                }
                Err(e) => super::unavailable(&state, &e.to_string()),
            }
        }
        "/console/connectors/delete" => {
            let name = field(form_in, "name").unwrap_or_default().to_string();
            match stored::remove(shared, &name).await {
                Ok(n) => {
                    audit("connector.delete", format!("{name} ({n} connections revoked)")).await;
                    redirect("/console/connectors")
                }
                Err(e) => {
                    let body = html! { p { (e.to_string()) } };
                    html_response(StatusCode::CONFLICT, &state, page("Not deleted", Some(session), body))
                }
            }
        }
        "/console/connectors/test" => {
            let name = field(form_in, "name").unwrap_or_default();
            let Some(index) = state.config.resolve_name(name) else {
                return html_response(StatusCode::NOT_FOUND, &state, super::not_found(Some(session)));
            };
            let connector = &state.config.connectors[index];
            let outcome = state.broker.test_connector(index, connector).await;
            let body = html! {
                p { "Test of " strong { (connector.name) } ": " (badge(outcome.health)) }
                p { (outcome.message) }
                p { a href="/console/connectors" { "Back to the connectors" } }
            };
            html_response(StatusCode::OK, &state, page("Test connector", Some(session), body))
        }
        _ => html_response(StatusCode::NOT_FOUND, &state, super::not_found(Some(session))),
    }
}

/// The form's fields as entered (secrets included; they are never echoed back).
fn values_from(form: &[(String, String)]) -> Values {
    let mut values = Values::new();
    for (k, v) in form {
        let known = ["name", "template", "grant", "access", "allowed_domains", "client_secret", "token"]
            .contains(&k.as_str())
            || TEXT_FIELDS.iter().any(|(n, _, _)| n == k);
        if known && !v.trim().is_empty() {
            values.insert(k.clone(), json!(v.trim()));
        }
    }
    values
}

/// The admin API body for the entered values: lists split, blank secrets left out (kept).
fn body_of(values: &Values) -> Value {
    let mut body = Map::new();
    for (k, v) in values {
        let text = v.as_str().unwrap_or_default();
        match k.as_str() {
            "scopes" => {
                body.insert(k.clone(), json!(text.split_whitespace().collect::<Vec<_>>()));
            }
            "allowed_domains" => {
                body.insert(
                    k.clone(),
                    json!(text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>()),
                );
            }
            _ => {
                body.insert(k.clone(), json!(text));
            }
        }
    }
    Value::Object(body)
}

/// Validation messages by the form field they name (`connectors.NAME.FIELD...: message`);
/// the rest under `""`.
fn errors_by_field(name: &str, message: &str) -> Vec<(String, String)> {
    message
        .lines()
        .map(|line| {
            let (path, text) = line.split_once(": ").unwrap_or(("", line));
            let rest = path.strip_prefix(&format!("connectors.{name}.")).unwrap_or("");
            let field = rest.split(['.', '[']).next().unwrap_or("").to_string();
            let known = ["name", "template", "grant", "access", "allowed_domains", "client_secret", "token"]
                .contains(&field.as_str())
                || TEXT_FIELDS.iter().any(|(n, _, _)| *n == field);
            if path == "connectors.name" || path.ends_with(".name") {
                ("name".to_string(), text.to_string())
            } else if known {
                (field, text.to_string())
            } else {
                (String::new(), line.to_string())
            }
        })
        .collect()
}

/// Check: reads the discovery URL the form names and fills the endpoints it finds.
async fn check(shared: &Shared, values: &Values) -> (Values, String) {
    let mut values = values.clone();
    let url_of = |k: &str| values.get(k).and_then(Value::as_str).map(str::to_string);
    let from_mcp = url_of("mcp_url").is_some();
    let Some(start) = url_of("mcp_url").or_else(|| url_of("issuer")).or_else(|| url_of("discovery_url")) else {
        return (values, "Fill in an issuer, a discovery URL or an MCP server URL, then press Check.".into());
    };
    let host = start.split('/').take(3).collect::<Vec<_>>().join("/");
    let mut probe = body_of(&values);
    if let Value::Object(map) = &mut probe {
        map.insert("name".into(), json!("check"));
        map.insert("grant".into(), json!("authorization_code"));
        map.entry("allowed_domains").or_insert_with(|| json!([format!("{host}/*")]));
        // A client id keeps the check from registering a client: that happens on save.
        map.entry("client_id").or_insert_with(|| json!("check"));
        map.remove("client_secret");
    }
    let state = shared.current();
    let connector = match serde_json::to_vec(&probe)
        .map_err(|e| e.to_string())
        .and_then(|b| StoredConnector::from_body("check", &b, None, 0))
    {
        Ok(c) => match c.validate() {
            Ok(connector) => connector,
            Err(e) => return (values, format!("The form cannot be checked yet: {e}")),
        },
        Err(e) => return (values, format!("The form cannot be checked yet: {e}")),
    };
    let http = match shared.http_client(&state.config, connector.addresses.clone()) {
        Ok(http) => http,
        Err(e) => return (values, e),
    };
    let Ok(metrics) = crate::metrics::Metrics::new([]) else {
        return (values, "the check could not start".into());
    };
    let providers = crate::token::provider::Providers::new(1, http, shared.store().clone(), metrics, String::new());
    match providers.resolve(0, &connector).await {
        Ok(oauth) => {
            let oauth = Arc::unwrap_or_clone(oauth);
            for (k, v) in
                [("authorization_endpoint", &oauth.authorization_endpoint), ("token_endpoint", &oauth.token_endpoint)]
            {
                if let Some(v) = v {
                    values.insert(k.into(), json!(v));
                }
            }
            if let (Some(issuer), false) = (&oauth.issuer, from_mcp) {
                values.insert("issuer".into(), json!(issuer));
            }
            let mut found =
                vec![format!("Found the authorization server {}.", oauth.issuer.as_deref().unwrap_or("(no issuer)"))];
            if oauth.revocation_endpoint.is_some() {
                found.push("It revokes tokens (RFC 7009).".into());
            }
            if oauth.registration_endpoint.is_some() {
                found.push("It registers clients (RFC 7591): leave Client ID blank to register one on save.".into());
            }
            if oauth.resource.is_some() {
                found.push("Tokens are requested for the MCP server as their resource (RFC 8707).".into());
            }
            (values, found.join(" "))
        }
        Err(why) => (values, format!("Nothing usable was found: {why}")),
    }
}

/// The create or edit form, with what was entered, errors next to their fields, and what a
/// Check found.
fn form(
    shared: &Shared,
    session: &Session,
    values: &Values,
    stored: Option<&StoredConnector>,
    errors: &[(String, String)],
    found: Option<String>,
    creating: bool,
) -> Response<Body> {
    let state = shared.current();
    let value = |k: &str| {
        values.get(k).and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| match values.get(k) {
            Some(Value::Array(items)) => {
                let sep = if k == "allowed_domains" { "\n" } else { " " };
                items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(sep)
            }
            _ => String::new(),
        })
    };
    let masked = |k: &str| {
        stored.and_then(|c| c.spec.get(k)).and_then(Value::as_str).map(|s| crate::secret::Secret::new(s).masked())
    };
    let error_of = |k: &str| -> Option<Markup> {
        let messages: Vec<&str> = errors.iter().filter(|(f, _)| f == k).map(|(_, m)| m.as_str()).collect();
        (!messages.is_empty())
            .then(|| html! { p class="field-error" id={ "err-" (k) } role="alert" { (messages.join("; ")) } })
    };
    let described = |k: &str| errors.iter().any(|(f, _)| f == k).then(|| format!("err-{k}"));
    let general: Vec<&str> = errors.iter().filter(|(f, _)| f.is_empty()).map(|(_, m)| m.as_str()).collect();
    let grant = value("grant");
    let title = if creating { "New connector" } else { "Edit connector" };
    let body = html! {
        @if creating {
            section aria-labelledby="gallery" {
                h2 id="gallery" { "Start from a template" }
                label for="template-filter" { "Filter templates" }
                input id="template-filter" type="search" data-filter="templates" placeholder="github, google, slack…";
                ul id="templates" class="gallery" {
                    @for name in templates::names() {
                        li data-name=(name) { a href={ "/console/connectors/new?template=" (name) } { (name) } }
                    }
                }
                p class="muted" { "Or fill in the form from scratch, or give a discovery URL and press Check." }
            }
        }
        @if !general.is_empty() { div class="notice bad" role="alert" { @for m in &general { p { (m) } } } }
        @if let Some(found) = &found { div class="notice" role="status" { p { (found) } } }
        div class="notice" {
            "Redirect URI to register at the provider: " code { (state.broker.links().redirect_uri()) } " "
            button class="secondary" type="button" data-copy=(state.broker.links().redirect_uri()) { "Copy the redirect URI" }
        }
        form method="post" action="/console/connectors/save" {
            input type="hidden" name="csrf" value=(session.csrf);
            input type="hidden" name="creating" value=(if creating { "1" } else { "0" });
            label for="f-name" { "Name" }
            @if creating {
                input id="f-name" type="text" name="name" value=(value("name")) required pattern="[a-z0-9][a-z0-9_-]{0,63}" aria-describedby=[described("name")];
            } @else {
                input id="f-name" type="text" name="name" value=(value("name")) readonly;
            }
            (error_of("name").unwrap_or_default())
            label for="f-template" { "Template" }
            input id="f-template" type="text" name="template" value=(value("template")) list="template-names" aria-describedby=[described("template")];
            datalist id="template-names" { @for name in templates::names() { option value=(name) {} } }
            (error_of("template").unwrap_or_default())
            label for="f-grant" { "Grant" }
            select id="f-grant" name="grant" {
                @for g in ["authorization_code", "client_credentials", "static"] {
                    option value=(g) selected[grant == g || (grant.is_empty() && g == "authorization_code")] { (g) }
                }
            }
            (error_of("grant").unwrap_or_default())
            fieldset {
                legend { "Access" }
                @let private = value("access") == "private";
                label class="choice" { input type="radio" name="access" value="public" checked[!private]; " Public: every user" }
                label class="choice" { input type="radio" name="access" value="private" checked[private]; " Private: admins only (also on the proxy)" }
            }
            (error_of("access").unwrap_or_default())
            @for (name, label, hint) in TEXT_FIELDS {
                label for={ "f-" (name) } { (label) }
                input id={ "f-" (name) } type="text" name=(name) value=(value(name)) placeholder=(hint) aria-describedby=[described(name)];
                (error_of(name).unwrap_or_default())
            }
            @for secret in ["client_secret", "token"] {
                label for={ "f-" (secret) } { (if secret == "token" { "Static token" } else { "Client secret" }) }
                input id={ "f-" (secret) } type="password" name=(secret) autocomplete="off"
                    placeholder=(masked(secret).map(|m| format!("{m} (blank keeps it)")).unwrap_or_else(|| "write-only".into()))
                    aria-describedby=[described(secret)];
                (error_of(secret).unwrap_or_default())
            }
            label for="f-allowed_domains" { "Allowed domains (one pattern per line)" }
            textarea id="f-allowed_domains" name="allowed_domains" rows="3" aria-describedby=[described("allowed_domains")] { (value("allowed_domains")) }
            (error_of("allowed_domains").unwrap_or_default())
            p {
                button type="submit" { "Save" } " "
                button class="secondary" type="submit" formaction="/console/connectors/check" { "Check" }
            }
        }
        @if !creating {
            p {
                (action(session, "/console/connectors/test", "Test", &[("name", &value("name"))], "secondary"))
                a class="button secondary" href={ "/console/connectors/delete?name=" (value("name")) } { "Delete…" }
            }
        }
    };
    let status = if errors.is_empty() { StatusCode::OK } else { StatusCode::BAD_REQUEST };
    html_response(status, &state, page(title, Some(session), body))
}
