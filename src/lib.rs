//! Tollgate: an egress proxy for AI-agent tool traffic.
//!
//! A request's path through the crate, in order:
//!
//! 1. [`server`] accepts the connection; [`proxy::handle`] classifies the request
//!    ([`proxy::target::route`]): absolute-form forward proxy, gateway `/{connector}/...`,
//!    or one of Tollgate's own paths.
//! 2. [`proxy::pipeline::run`] runs the phases: `identify` ([`caller`]: JWT or API key, or
//!    the connection's [`caller::Memo`] of the last one verified), `resolve_target`
//!    ([`domains::Target`]: the normalized URL), `authorize` (connector selection and the
//!    [`domains::AllowList`]), `refuse_upgrades`, `attach_credentials` (the
//!    [`token::broker::Broker`] reads the [`token::TokenStore`]), and `forward`
//!    ([`proxy::h1`], the HTTP/1.1 client run in the request's task, over the
//!    [`proxy::pool`] of upstream connections, the last one kept by each client connection
//!    in its [`proxy::affinity::Affinity`]; new ones through [`net::connect`]: resolve,
//!    check the [`net::addr`] policy, dial, TLS).
//! 3. Errors meet at one edge ([`proxy::error`]) and become the JSON of SPEC section 7;
//!    [`proxy::context::Record`] writes one audit line and the [`metrics`] exactly once.
//!
//! [`config`] loads and validates the YAML file; [`admin`] serves health, readiness and
//! metrics; [`app`] wires it all and binds the listeners.

#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod authority;
pub mod body;
pub mod caller;
pub mod cli;
pub mod clock;
pub mod config;
pub mod domains;
pub mod error_code;
pub mod explain;
pub mod form;
pub mod intercept;
pub mod live;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod oauth;
pub mod proxy;
pub mod router;
pub mod secret;
pub mod server;
pub mod token;
