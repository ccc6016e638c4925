//! The admin pages: connectors (grant, allowed domains, client health, connections by state,
//! the redirect URI to register), every user's connections (filter, test, revoke), and
//! Explain (the same answer as `tollgate explain`).

use std::collections::HashMap;

use http::{Response, StatusCode};
use maud::html;

use super::layout::{action, badge, page, when};
use super::{field, html_response, redirect};
use crate::body::Body;
use crate::proxy::State;
use crate::signin::Session;
use crate::token::{Connection, ConnectionKey, ConnectionStatus};

fn status_word(c: &Connection) -> &'static str {
    match c.status {
        ConnectionStatus::Connected => "connected",
        ConnectionStatus::NeedsReauth => "needs_reauth",
        ConnectionStatus::Revoked => "revoked",
    }
}

fn health_word(c: &Connection) -> &'static str {
    if c.status == ConnectionStatus::Connected {
        c.health.state()
    } else {
        "unhealthy"
    }
}

/// Every user connection (not Tollgate's own records).
async fn connections(state: &State, connector: Option<&str>) -> Option<Vec<(ConnectionKey, Connection)>> {
    let all = state.broker.store().list(connector, None).await.ok()?;
    Some(all.into_iter().filter(|(k, _)| k.connector != "tollgate").collect())
}

pub async fn get(state: &State, session: &Session, path: &str, query: &[(String, String)]) -> Response<Body> {
    match path {
        "/console/connectors" => connectors_page(state, session).await,
        "/console/connections" => connections_page(state, session, query).await,
        "/console/explain" => explain_page(state, session, query),
        "/console/audit" => audit_page(state, session, query).await,
        _ => html_response(StatusCode::NOT_FOUND, state, super::not_found(Some(session))),
    }
}

async fn connectors_page(state: &State, session: &Session) -> Response<Body> {
    let Some(all) = connections(state, None).await else {
        return super::unavailable(state, "listing connections");
    };
    let mut counts: HashMap<(&str, &str), usize> = HashMap::new();
    for (key, c) in &all {
        *counts.entry((key.connector.as_str(), status_word(c))).or_default() += 1;
    }
    let redirect_uri = state.broker.links().redirect_uri();
    let config = &state.config;
    let body = html! {
        p { a class="button" href="/console/connectors/new" { "New connector" } }
        div class="notice" {
            "Redirect URI to register at each provider: " code id="redirect-uri" { (redirect_uri) } " "
            button class="secondary" type="button" data-copy=(redirect_uri) { "Copy the redirect URI" }
        }
        div class="scroll" {
            table {
                caption class="muted" { (config.connectors.len()) " connectors" }
                thead { tr { th scope="col" { "Name" } th scope="col" { "Grant" } th scope="col" { "Template" } th scope="col" { "Allowed domains" } th scope="col" { "Access" } th scope="col" { "Source" } th scope="col" { "Client health" } th scope="col" { "Connections" } } }
                tbody {
                    @for (index, connector) in config.connectors.iter().enumerate() {
                        @let health = state.broker.connector_health().view(&connector.name);
                        tr {
                            th scope="row" {
                                @if config.is_stored(index) { a href={ "/console/connectors/edit?name=" (connector.name) } { (connector.name) } }
                                @else { (connector.name) }
                                @if let Some(d) = &connector.description { br; span class="muted" { (d) } }
                            }
                            td { (connector.grant.as_str()) }
                            td { (connector.template.as_deref().unwrap_or("—")) }
                            td { @for p in &connector.patterns { code { (p.to_string()) } br; } }
                            td { @if connector.private { "Private (admins)" } @else { "Public" } }
                            td { @if config.is_stored(index) { "admin API" } @else { "config file" } }
                            td {
                                (badge(health.state))
                                @if let Some(reason) = &health.reason { " " code { (reason) } }
                                @if health.since.is_some() { br; span class="muted" { "since " (when(health.since)) } }
                            }
                            td {
                                @for word in ["connected", "needs_reauth", "revoked"] {
                                    @let n = counts.get(&(connector.name.as_str(), word)).copied().unwrap_or(0);
                                    @if n > 0 { (badge(word)) " " (n) br; }
                                }
                                a href={ "/console/connections?connector=" (connector.name) } { "View" }
                                " "
                                (action(session, "/console/connectors/test", "Test", &[("name", &connector.name)], "secondary"))
                            }
                        }
                    }
                }
            }
        }
    };
    html_response(StatusCode::OK, state, page("Connectors", Some(session), body))
}

async fn connections_page(state: &State, session: &Session, query: &[(String, String)]) -> Response<Body> {
    let connector = field(query, "connector").filter(|c| !c.is_empty());
    let wanted = field(query, "state").filter(|s| !s.is_empty());
    let Some(all) = connections(state, connector).await else {
        return super::unavailable(state, "listing connections");
    };
    let rows: Vec<&(ConnectionKey, Connection)> =
        all.iter().filter(|(_, c)| wanted.is_none_or(|w| w == status_word(c))).collect();
    let names: Vec<&str> = state.config.connectors.iter().map(|c| c.name.as_str()).collect();
    let body = html! {
        form class="filters" method="get" action="/console/connections" {
            div { label for="f-connector" { "Connector" }
                select id="f-connector" name="connector" {
                    option value="" { "All" }
                    @for n in &names { option value=(n) selected[connector == Some(*n)] { (n) } }
                }
            }
            div { label for="f-state" { "State" }
                select id="f-state" name="state" {
                    option value="" { "All" }
                    @for w in ["connected", "needs_reauth", "revoked"] { option value=(w) selected[wanted == Some(w)] { (w.replace('_', " ")) } }
                }
            }
            button type="submit" { "Filter" }
        }
        div class="scroll" {
            table {
                caption class="muted" { (rows.len()) " connections" }
                thead { tr { th scope="col" { "User" } th scope="col" { "Connector" } th scope="col" { "State" } th scope="col" { "Health" } th scope="col" { "Last success" } th scope="col" { "Last failure" } th scope="col" { "Refresh token expires" } th scope="col" { "Actions" } } }
                tbody {
                    @for (key, c) in &rows {
                        tr {
                            th scope="row" { (key.principal) }
                            td { (key.connector) }
                            td { (badge(status_word(c))) }
                            td { (badge(health_word(c))) }
                            td { (when(c.health.last_success_at)) }
                            td { (when(c.health.last_failure_at)) @if let Some(code) = &c.health.last_error { " " code { (code) } } }
                            td { (when(c.refresh_expires_at)) }
                            td {
                                @let fields = [("connector", key.connector.as_str()), ("principal", key.principal.as_str())];
                                @if c.status == ConnectionStatus::Connected { (action(session, "/console/connections/test", "Test", &fields, "secondary")) }
                                @if c.status != ConnectionStatus::Revoked { (action(session, "/console/connections/revoke", "Revoke", &fields, "danger")) }
                            }
                        }
                    }
                }
            }
        }
    };
    html_response(StatusCode::OK, state, page("Connections", Some(session), body))
}

fn explain_page(state: &State, session: &Session, query: &[(String, String)]) -> Response<Body> {
    let url = field(query, "url").unwrap_or_default();
    let connector = field(query, "connector").filter(|c| !c.is_empty());
    let answer = (!url.is_empty()).then(|| crate::explain::with_config(&state.config, connector, url));
    let body = html! {
        p { "Would a request to this URL be allowed, for which connector, by which pattern? The same answer as " code { "tollgate explain" } "." }
        form method="get" action="/console/explain" {
            label for="e-url" { "URL" }
            input id="e-url" type="url" name="url" value=(url) required placeholder="https://api.github.com/repos/x/y";
            label for="e-connector" { "Connector (optional)" }
            input id="e-connector" type="text" name="connector" value=(connector.unwrap_or_default());
            p { button type="submit" { "Explain" } }
        }
        @match answer {
            Some(Ok(e)) => {
                @let e = e.without_query();
                section class={ "notice" @if !e.allowed() { " bad" } } aria-live="polite" {
                    p { strong { (e.decision) } @if let Some(error) = e.error { " — " code { (error) } } }
                    p { "URL: " code { (e.url) } }
                    @if let Some(c) = &e.connector { p { "Connector: " (c) } }
                    @if let Some(p) = &e.pattern { p { "Pattern: " code { (p) } } }
                }
            }
            Some(Err(message)) => { section class="notice bad" { p { (message) } } }
            None => {}
        }
    };
    html_response(StatusCode::OK, state, page("Explain", Some(session), body))
}

/// `GET /console/audit?q=`: the newest admin changes first, filtered by a word in any field.
async fn audit_page(state: &State, session: &Session, query: &[(String, String)]) -> Response<Body> {
    let Ok(trail) = crate::audit::read(state.broker.store().as_ref()).await else {
        return super::unavailable(state, "reading the audit trail");
    };
    let q = field(query, "q").unwrap_or_default().trim().to_lowercase();
    let shown: Vec<&crate::audit::Entry> = trail
        .iter()
        .filter(|e| {
            q.is_empty()
                || [&e.actor, &e.via, &e.from, &e.action, &e.target].iter().any(|f| f.to_lowercase().contains(&q))
        })
        .collect();
    let body = html! {
        form class="filters" method="get" action="/console/audit" {
            div { label for="a-q" { "Filter" } input id="a-q" type="text" name="q" value=(q) placeholder="an actor, action or target"; }
            button type="submit" { "Filter" }
        }
        div class="scroll" {
            table {
                caption class="muted" { (shown.len()) " of the last " (trail.len()) " changes" }
                thead { tr { th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "Via" } th scope="col" { "From" } th scope="col" { "What" } th scope="col" { "On" } } }
                tbody {
                    @for e in &shown {
                        tr { td { (when(Some(e.at))) } td { (e.actor) } td { (e.via) } td { (e.from) } td { code { (e.action) } } td { (e.target) } }
                    }
                }
            }
        }
    };
    html_response(StatusCode::OK, state, page("Audit", Some(session), body))
}

pub async fn post(
    state: &State,
    session: &Session,
    path: &str,
    form: &[(String, String)],
    from: String,
) -> Response<Body> {
    let name = field(form, "connector").unwrap_or_default();
    let principal = field(form, "principal").unwrap_or_default();
    let Some(index) = state.config.resolve_name(name) else {
        let body = html! { p { "No connector is named " code { (name) } "." } };
        return html_response(StatusCode::NOT_FOUND, state, page("Not found", Some(session), body));
    };
    let connector = &state.config.connectors[index];
    let back = format!("/console/connections?connector={}", connector.name);
    match path {
        "/console/connections/revoke" => {
            let key = ConnectionKey::new(&connector.name, principal);
            match state.broker.delete(index, connector, &key).await {
                Ok(_) => {
                    let target = format!("{}/{principal}", connector.name);
                    let entry = crate::audit::Entry::new(
                        &session.grant.principal,
                        "console",
                        from,
                        "connection.revoke",
                        &target,
                    );
                    crate::audit::record(state.broker.store().as_ref(), entry).await;
                    redirect(&back)
                }
                Err(e) => super::unavailable(state, &e.to_string()),
            }
        }
        "/console/connections/test" => {
            let outcome = state.broker.test_connection(index, connector, principal).await;
            let (health, message) = match outcome {
                Ok(o) => (o.health, o.message),
                Err(e) => ("unhealthy", e.to_string()),
            };
            let body = html! {
                p { "Test of " strong { (connector.name) } " for " strong { (principal) } ": " (badge(health)) }
                p { (message) }
                p { a href=(back) { "Back to the connections" } }
            };
            html_response(StatusCode::OK, state, page("Test connection", Some(session), body))
        }
        _ => html_response(StatusCode::NOT_FOUND, state, super::not_found(Some(session))),
    }
}
