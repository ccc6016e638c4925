//! Tollgate: an egress proxy for AI-agent tool traffic.
//!
//! A request's path through the crate, in order (docs/architecture.md draws it):
//!
//! 1. [`server`] accepts the connection; [`http1::head`] reads and screens each request head
//!    (strict framing), and the fast path answers plain requests itself.
//! 2. [`router`] hands each request to exactly one place: the OAuth pages ([`oauth`]), the
//!    CONNECT tunnel ([`intercept`]), Tollgate's own paths ([`proxy::local`]), or the
//!    request path; the admin listener to [`admin`].
//! 3. [`proxy::pipeline::run()`] runs the phases: `identify` ([`caller`]: JWT or API key, or
//!    the connection's [`caller::Memo`] of the last one verified), `resolve_target`
//!    ([`domains::Target`]: the normalized URL), `authorize` (connector selection and the
//!    [`domains::AllowList`]), `refuse_upgrades`, `attach_credentials` (the
//!    [`token::broker::Broker`] reads the [`token::TokenStore`]), and `forward`
//!    ([`http1::client`], the HTTP/1.1 client run in the request's task, over the
//!    [`pool`] of upstream connections, the last one kept by each client connection in its
//!    [`pool::Affinity`]; new ones through [`net::connect`]: resolve, check the
//!    [`domains::addr`] policy, dial, TLS).
//! 4. Errors meet at one edge ([`proxy::error`]) and become the JSON of SPEC section 7;
//!    [`proxy::context::Record`] writes one audit line and the [`metrics`] exactly once.
//!
//! Beside the path: [`live`] keeps the current state (reloads, stored connectors, the
//! interception CA); [`config`] loads and validates the YAML file; [`app`] wires it all and
//! binds the listeners. The request vocabulary every layer may use: [`body`], [`clock`],
//! [`error_code`], [`request_id`], [`secret`].

#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod audit;
pub mod authority;
pub mod body;
pub mod caller;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod domains;
pub mod error_code;
pub mod explain;
pub mod form;
pub mod http1;
pub mod intercept;
pub mod live;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod oauth;
pub mod pool;
pub mod proxy;
pub mod request_id;
pub mod router;
pub mod secret;
pub mod server;
pub mod signin;
pub mod token;
