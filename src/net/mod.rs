//! Reaching upstreams: the address policy, the resolver and dialer interfaces, and the TLS
//! connector that puts the address check between them.

pub mod addr;
pub mod connect;
pub mod http;
pub mod prefixed;
pub mod resolve;

pub use resolve::{Dialer, Resolver, SystemResolver, TcpDialer};
