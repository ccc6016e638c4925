//! Transparent HTTPS: `CONNECT` tunnels whose TLS Tollgate terminates with certificates from
//! its own CA, so unmodified clients that only know `HTTPS_PROXY` are checked and get their
//! tokens like any other request.

pub mod tunnel;
