//! `CONNECT host:port` with TLS interception. The tunnel is opened only for a caller whose
//! credential is valid and for a host:port that some connector the caller may use covers;
//! a blind tunnel is never opened. Inside, TLS is terminated with a leaf minted for the
//! CONNECT host; inner HTTP/1.1 connections are served by the listeners' own connection code
//! (`server::serve_connection`: heads screened, fast path, limits) and HTTP/2 by hyper, and
//! every inner request goes through the same pipeline as forward mode, judged by the current config with the CONNECT's credential verified
//! again, so reloads and expiring JWTs apply inside long-lived tunnels too. An inner `Host`
//! or `:authority` that differs from the CONNECT target is `bad_target`.

use std::sync::Arc;

use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::body::{Body, Inbound};
use crate::caller::IdentityError;
use crate::clock::unix_now;
use crate::domains::{Target, TargetError};
use crate::live::Shared;
use crate::proxy::context::Record;
use crate::proxy::error::ProxyError;
use crate::proxy::headers::check_header_limit;
use crate::proxy::policy::authorize_connect;
use crate::proxy::target::Route;
use crate::proxy::{Session, State};
use crate::server::{answering, serve_connection};
use crate::token::broker::CredentialError;
use crate::token::StoreError;

/// Authorizes a CONNECT and, once hyper has switched protocols, serves the tunnel.
pub async fn open(
    shared: &Arc<Shared>,
    state: &Arc<State>,
    request: Request<Inbound>,
    record: &mut Record,
) -> Result<Response<Body>, ProxyError> {
    let header = request.headers().get(http::header::PROXY_AUTHORIZATION).ok_or(IdentityError::Missing)?.clone();
    // The tunnel's inner requests verify the CONNECT's credential again, through this
    // session's memo, and share its upstream connection.
    let session = Arc::new(Session::default());
    let caller = session.callers.identify_fresh(&header, &state.config, unix_now()).await?;
    record.caller = Some(caller.clone());
    let authority = request.uri().authority().map(|a| a.as_str().to_string()).ok_or(TargetError::MissingHost)?;
    if !authority.contains(':') && !authority.ends_with(']') {
        return Err(TargetError::InvalidPort.into());
    }
    let target = record.set_target(Target::parse(&format!("https://{authority}/"))?);
    authorize_connect(&crate::proxy::headers::Asked::of(request.headers()), &caller, &target, &state.config)?;
    let Some(authority_ca) = shared.authority() else {
        // Only a CA kept in the token store can be missing: the store was down at start.
        return Err(CredentialError::Store {
            connector: String::new(),
            source: StoreError::Unavailable("the interception CA is not loaded yet".into()),
        }
        .into());
    };
    let (tls, minted) = authority_ca.server_config(&target.host.to_string()).map_err(|e| {
        tracing::error!(error = %e, "cannot mint an interception certificate");
        ProxyError::Internal
    })?;
    let metrics = state.metrics.tunnel.clone();
    if minted {
        metrics.minted.inc();
    }
    let (shared, id) = (shared.clone(), record.request_id);
    let limits = shared.limits();
    tokio::spawn(async move {
        let upgraded = match hyper::upgrade::on(request).await {
            Ok(u) => u,
            Err(e) => return tracing::debug!(request_id = %id, error = %e, "CONNECT upgrade failed"),
        };
        let handshake = tokio_rustls::TlsAcceptor::from(tls).accept(TokioIo::new(upgraded));
        let tls = match tokio::time::timeout(limits.header_read_timeout, handshake).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                metrics.handshake(None);
                return tracing::info!(request_id = %id, error = %e, "TLS inside the tunnel failed (does the client trust the CA?)");
            }
            Err(_) => {
                metrics.handshake(None);
                return tracing::info!(request_id = %id, "TLS inside the tunnel timed out");
            }
        };
        metrics.handshake(Some(tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed)));
        let stop = shared.shutdown();
        if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
            // HTTP/2 frames its own messages (no Content-Length or chunked to disagree on):
            // hyper serves it.
            let service = hyper::service::service_fn(move |inner: Request<Incoming>| {
                let (shared, session, header, target) =
                    (shared.clone(), session.clone(), header.clone(), target.clone());
                async move {
                    Ok::<_, std::convert::Infallible>(
                        inner_request(&shared, &session, &header, &target, inner.map(Inbound::from)).await,
                    )
                }
            });
            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(tls), service);
            if let Err(e) = conn.await {
                tracing::debug!(request_id = %id, error = %e, "tunnel ended with an error");
            }
            return;
        }
        // HTTP/1.1 inside the tunnel is served like any listener's connection: the same heads
        // screened, the same fast path, the same limits and head timeout.
        let handler = move |inner: Request<Inbound>, busy| {
            let (shared, session, header, target) = (shared.clone(), session.clone(), header.clone(), target.clone());
            answering(busy, async move { Ok(inner_request(&shared, &session, &header, &target, inner).await) })
        };
        serve_connection(tls, handler, limits, stop).await;
    });
    Ok(Response::new(Empty::new().map_err(|never| match never {}).boxed()))
}

/// One request inside the tunnel: judged by the current config, with the CONNECT's
/// credential verified again (it may have expired, or the config changed, since the tunnel
/// opened).
async fn inner_request(
    shared: &Shared,
    session: &Session,
    header: &http::HeaderValue,
    target: &Target,
    request: Request<Inbound>,
) -> Response<Body> {
    let state = shared.current();
    let mut record = Record::start(request.method(), &state);
    let caller = match session.callers.identify_fresh(header, &state.config, unix_now()).await {
        Ok(caller) => caller,
        Err(e) => return crate::proxy::respond(record, Err(e.into())),
    };
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
    let limit = check_header_limit(request.headers(), state.config.limits.max_header_bytes);
    let result = if let Err(refused) = limit {
        Err(refused)
    } else if !same_host {
        Err(TargetError::HostMismatch.into())
    } else if !path.starts_with('/') {
        Err(TargetError::MissingHost.into())
    } else {
        let route = Route::Forward(format!("https://{}{path}", target.authority()));
        crate::proxy::pipeline::run(&state, session, request, route, &mut record, Some(caller)).await
    };
    crate::proxy::respond(record, result)
}
