//! RFC 9728 protected-resource metadata for an MCP server, found the ways servers publish it:
//! the well-known URL with the resource's path appended, then the root well-known URL, then
//! the `resource_metadata` parameter of the `WWW-Authenticate` challenge the MCP endpoint
//! answers a request without a token with. Whichever answers must name the MCP server as its
//! `resource` (the root document may name the server's origin), so one server cannot hand out
//! another's authorization server.

use http::{header, Method, Request, StatusCode};

use super::{canonical, well_known, ProtectedResourceMetadata, Providers};
use crate::domains::{Scheme, Target};

impl Providers {
    /// The metadata of the MCP server at `mcp_url`, and where it was found.
    pub(super) async fn protected_resource(
        &self,
        index: usize,
        mcp_url: &str,
    ) -> Result<(String, ProtectedResourceMetadata), String> {
        let target = Target::parse(mcp_url).map_err(|e| format!("`{mcp_url}`: {e}"))?;
        let origin = format!("{}://{}", target.scheme.as_str(), target.authority());
        let suffixed = well_known(mcp_url, "oauth-protected-resource")?;
        let root = format!("{origin}/.well-known/oauth-protected-resource");
        let mut failures = Vec::new();
        let mut candidates = vec![(suffixed.clone(), vec![canonical(mcp_url)])];
        if root != suffixed {
            candidates.push((root, vec![canonical(mcp_url), canonical(&origin)]));
        }
        for (url, names) in candidates {
            match self.fetch::<ProtectedResourceMetadata>(index, &url).await {
                Ok(metadata) => return named(url, metadata, &names, mcp_url),
                Err(e) => failures.push(e),
            }
        }
        match self.challenge(index, mcp_url).await {
            Ok(url) => {
                let metadata = self.fetch::<ProtectedResourceMetadata>(index, &url).await?;
                named(url, metadata, &[canonical(mcp_url)], mcp_url)
            }
            Err(e) => {
                failures.push(e);
                Err(failures.join("; "))
            }
        }
    }

    /// The `resource_metadata` URL of the MCP endpoint's `WWW-Authenticate` challenge.
    async fn challenge(&self, index: usize, mcp_url: &str) -> Result<String, String> {
        let request = Request::builder()
            .method(Method::GET)
            .uri(mcp_url)
            .header(header::ACCEPT, "application/json, text/event-stream")
            .body(Vec::new())
            .map_err(|_| format!("`{mcp_url}` is not a URL"))?;
        let response = self.http.send(index, request).await.map_err(|e| format!("asking {mcp_url} failed: {e}"))?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Err(format!(
                "{mcp_url} answered {} without a token, not 401 with resource_metadata",
                response.status()
            ));
        }
        let url = response
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(resource_metadata)
            .ok_or_else(|| format!("{mcp_url}'s 401 names no resource_metadata"))?;
        match Target::parse(&url) {
            Ok(t) if t.scheme == Scheme::Https => Ok(url),
            _ => Err(format!("{mcp_url}'s resource_metadata is not an https URL")),
        }
    }
}

/// The metadata, if it names one of `names` as its resource.
fn named(
    url: String,
    metadata: ProtectedResourceMetadata,
    names: &[String],
    mcp_url: &str,
) -> Result<(String, ProtectedResourceMetadata), String> {
    if names.contains(&canonical(&metadata.resource)) {
        Ok((url, metadata))
    } else {
        Err(format!("the protected-resource metadata at {url} names resource {}, not {mcp_url}", metadata.resource))
    }
}

/// `resource_metadata="..."` in a `WWW-Authenticate` value (RFC 9728 section 5.1).
fn resource_metadata(challenge: &str) -> Option<String> {
    let at = challenge.find("resource_metadata=")? + "resource_metadata=".len();
    let rest = &challenge[at..];
    let value = match rest.strip_prefix('"') {
        Some(quoted) => &quoted[..quoted.find('"')?],
        None => rest.split([',', ' ']).next()?,
    };
    (!value.is_empty()).then(|| value.to_string())
}

#[cfg(test)]
mod tests {
    use super::resource_metadata;

    #[test]
    fn reads_resource_metadata_from_a_challenge() {
        let header = r#"Bearer error="invalid_token", resource_metadata="https://mcp.example.com/prm", scope="a b""#;
        assert_eq!(resource_metadata(header).as_deref(), Some("https://mcp.example.com/prm"));
        assert_eq!(
            resource_metadata("Bearer resource_metadata=https://x.example/m, realm=x").as_deref(),
            Some("https://x.example/m")
        );
        assert_eq!(resource_metadata("Bearer realm=\"x\""), None);
        assert_eq!(resource_metadata("Bearer resource_metadata=\"\""), None);
    }
}
