//! `CONNECT host:port` with TLS interception. The tunnel is opened only for a caller whose
//! credential is valid and for a host:port that some connector the caller may use covers;
//! a blind tunnel is never opened. Inside, TLS is terminated with a leaf minted for the
//! CONNECT host, and every inner request (HTTP/1.1 or HTTP/2) goes through the same pipeline
//! as forward mode, with the caller authenticated on the CONNECT. An inner `Host` or
//! `:authority` that differs from the CONNECT target is `bad_target`.

use std::sync::Arc;

use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::caller::Caller;
use crate::domains::{Target, TargetError};
use crate::proxy::context::Record;
use crate::proxy::error::{PolicyError, ProxyError};
use crate::proxy::headers::{X_TOLLGATE_CONNECTOR, X_TOLLGATE_TOOL};
use crate::proxy::identity::identify;
use crate::proxy::target::Route;
use crate::proxy::{Body, State};

/// Authorizes a CONNECT and, once hyper has switched protocols, serves the tunnel.
pub async fn open(
    state: &Arc<State>,
    request: Request<Incoming>,
    record: &mut Record,
) -> Result<Response<Body>, ProxyError> {
    let caller = identify(request.headers(), false, &state.config)?;
    record.principal = Some(caller.principal.clone());
    let authority = request.uri().authority().map(|a| a.as_str().to_string()).ok_or(TargetError::MissingHost)?;
    if !authority.contains(':') && !authority.ends_with(']') {
        return Err(TargetError::InvalidPort.into());
    }
    let target = Target::parse(&format!("https://{authority}/"))?;
    record.set_target(&target);
    authorize_tunnel(request.headers(), &caller, &target, state)?;
    let Some(authority_ca) = state.interception.as_ref() else {
        return Err(ProxyError::NotImplemented("TLS interception is not configured"));
    };
    let tls = authority_ca.server_config(&target.host.to_string()).map_err(|e| {
        tracing::error!(error = %e, "cannot mint an interception certificate");
        ProxyError::Internal
    })?;
    let (state, id) = (state.clone(), record.request_id.clone());
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(request).await {
            Ok(u) => u,
            Err(e) => return tracing::debug!(request_id = %id, error = %e, "CONNECT upgrade failed"),
        };
        let tls = match tokio_rustls::TlsAcceptor::from(tls).accept(TokioIo::new(upgraded)).await {
            Ok(s) => s,
            Err(e) => {
                return tracing::info!(request_id = %id, error = %e, "TLS inside the tunnel failed (does the client trust the CA?)")
            }
        };
        let caller = Arc::new(caller);
        let service = hyper::service::service_fn(move |inner: Request<Incoming>| {
            let (state, caller, target) = (state.clone(), caller.clone(), target.clone());
            async move { Ok::<_, std::convert::Infallible>(inner_request(state, &caller, &target, inner).await) }
        });
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        if let Err(e) = builder.serve_connection_with_upgrades(TokioIo::new(tls), service).await {
            tracing::debug!(request_id = %id, error = %e, "tunnel ended with an error");
        }
    });
    Ok(Response::new(Empty::new().map_err(|never| match never {}).boxed()))
}

/// The tunnel may open only if a connector the caller may use (the named one, if any)
/// covers the host and port.
fn authorize_tunnel(
    headers: &http::HeaderMap,
    caller: &Caller,
    target: &Target,
    state: &State,
) -> Result<(), ProxyError> {
    let config = &state.config;
    let header = |h: &http::HeaderName| headers.get(h).and_then(|v| v.to_str().ok()).map(str::to_string);
    let named: Vec<String> = [
        header(&X_TOLLGATE_CONNECTOR),
        header(&X_TOLLGATE_TOOL),
        caller.username.clone(),
        caller.claimed_connector.clone(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut chosen = None;
    for name in &named {
        let index = config.resolve_name(name).ok_or_else(|| PolicyError::Unknown(name.clone()))?;
        if chosen.is_some_and(|c| c != index) {
            return Err(PolicyError::Ambiguous(format!("the CONNECT names both {} and {name}", named[0])).into());
        }
        chosen = Some(index);
    }
    if let Some(index) = chosen {
        if !caller.may_use(index) {
            return Err(PolicyError::Forbidden(config.connectors[index].name.clone()).into());
        }
    }
    let covered = config.allow_list.owners_for_authority(target);
    let usable = covered.iter().any(|owner| caller.may_use(*owner) && chosen.is_none_or(|c| c == *owner));
    if !usable {
        return Err(PolicyError::NotCovered {
            url: target.authority(),
            scope: "any connector this caller may use".into(),
        }
        .into());
    }
    Ok(())
}

/// One request inside the tunnel.
async fn inner_request(
    state: Arc<State>,
    caller: &Caller,
    target: &Target,
    request: Request<Incoming>,
) -> Response<Body> {
    let mut record = Record::start(request.method(), &state.metrics);
    let named = request
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| request.headers().get(http::header::HOST).and_then(|h| h.to_str().ok()).map(str::to_string));
    let path = request.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
    let same_host = named
        .as_deref()
        .and_then(|n| Target::parse(&format!("https://{n}/")).ok())
        .is_some_and(|inner| inner.host == target.host && inner.port == target.port);
    let result = if same_host {
        let route = Route::Forward(format!("https://{}{path}", target.authority()));
        crate::proxy::pipeline::run(&state, request, route, &mut record, Some(caller.clone())).await
    } else {
        Err(TargetError::HostMismatch.into())
    };
    crate::proxy::respond(record, result)
}
