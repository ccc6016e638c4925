//! HTTP/1.1 as Tollgate speaks it itself, both ways, in one place: heads read and written,
//! message framing (RFC 9112 section 6), the chunked coding (`chunked.rs`), and the field rules
//! both directions share (`fields.rs`).
//!
//! - Server side, for the listeners' fast path (`server/fast.rs`): [`head`] reads a request
//!   head and says whether the fast path takes it; [`answer`] writes the answer.
//! - Client side, for upstreams: [`request`] writes a request head, [`response`] reads an
//!   answer's head, [`body`] reads its body, and [`client`] runs one exchange on a [`Conn`].
//!
//! What still goes through hyper (`server/mod.rs`, the tunnel, `net/http.rs`) and why is in
//! docs/architecture.md. This module knows no connector, token or pool: where a connection
//! goes after its answer is the caller's [`Return`].

pub mod answer;
pub mod body;
pub mod chunked;
pub mod client;
pub mod fields;
pub mod head;
pub mod request;
pub mod response;

pub use body::{ResponseBody, Return, Upgraded};
pub use client::{Conn, Error, SendError};
pub use request::{Outbound, RequestFraming};
pub use response::{Framing, ResponseHead};
