//! Reaching upstreams: the resolver and dialer interfaces, and the TLS connector that puts the
//! address check (`domains::addr`) between them.

pub mod connect;
pub mod http;
pub mod prefixed;
pub mod resolve;

pub use resolve::{Dialer, Resolver, SystemResolver, TcpDialer};
