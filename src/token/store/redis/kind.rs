//! Redis errors in a few secret-free words, for logs, `/readyz` and error bodies.

/// A short, secret-free description of a Redis error.
pub trait KindText {
    fn kind_text(&self) -> String;
}

impl KindText for redis::RedisError {
    fn kind_text(&self) -> String {
        // rustls's own words: they name the problem, never key material.
        let text = self.to_string();
        if let Some(why) = text.strip_prefix("invalid peer certificate: ") {
            return format!(
                "TLS: the Redis server's certificate is not trusted ({why}); check store.tls.ca_file or the system's CA roots"
            );
        }
        if text.contains("alert") && text.contains("Certificate") {
            return format!(
                "TLS: the Redis server refused this client ({text}); check store.tls.cert_file and key_file"
            );
        }
        if self.is_timeout() {
            "timed out".into()
        } else if self.is_connection_refusal() || self.is_connection_dropped() || self.is_io_error() {
            "connection failed".into()
        } else {
            format!("{:?}", self.kind())
        }
    }
}
