//! Path canonicalization for targets and patterns: percent-encoded unreserved characters
//! decoded, the other escapes upper-cased, dot segments removed (RFC 3986 5.2.4), and every
//! form a backend could read differently refused: encoded `/` or `\`, encoded control
//! characters, encoded or parameterized dot segments, paths that climb above the root. What
//! comes out is exactly what is matched and what is sent.

use super::target::TargetError;

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Canonicalizes a path that starts with `/`: decodes percent-encoded unreserved
/// characters, upper-cases the remaining escapes, removes dot segments (RFC 3986 5.2.4) and
/// refuses every form a backend could read differently.
pub(crate) fn normalize_path(path: &str) -> Result<String, TargetError> {
    let body = path.strip_prefix('/').ok_or(TargetError::InvalidHost)?;
    // Without escapes or dot segments there is nothing to change or refuse.
    if !body.contains('%')
        && !body.split('/').any(|segment| matches!(segment.split(';').next(), Some(".") | Some("..")))
    {
        return Ok(path.to_string());
    }
    let mut out: Vec<String> = Vec::new();
    let segments: Vec<&str> = body.split('/').collect();
    let last = segments.len() - 1;
    for (i, raw) in segments.iter().enumerate() {
        let (segment, dot_was_encoded) = decode_segment(raw)?;
        let before_params = segment.split(';').next().unwrap_or("");
        let is_dots = matches!(before_params, "." | "..");
        if is_dots && segment.contains(';') {
            return Err(TargetError::DotSegmentParams);
        }
        if is_dots && dot_was_encoded {
            return Err(TargetError::EncodedDotSegment);
        }
        match segment.as_str() {
            "." => {}
            ".." => {
                if out.pop().is_none() {
                    return Err(TargetError::AboveRoot);
                }
            }
            _ => {
                out.push(segment);
                continue;
            }
        }
        // A trailing dot segment leaves the path ending in `/` (`/v1/x/..` is `/v1/`).
        if i == last {
            out.push(String::new());
        }
    }
    Ok(format!("/{}", out.join("/")))
}

/// Decodes one segment. Returns the canonical text and whether a `.` came from `%2E`.
fn decode_segment(raw: &str) -> Result<(String, bool), TargetError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut dot_was_encoded = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            out.push(b as char);
            i += 1;
            continue;
        }
        let hex = bytes.get(i + 1..i + 3).ok_or(TargetError::BadPercentEncoding)?;
        let value = std::str::from_utf8(hex)
            .ok()
            .filter(|h| h.bytes().all(|c| c.is_ascii_hexdigit()))
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or(TargetError::BadPercentEncoding)?;
        match value {
            b'/' | b'\\' => return Err(TargetError::EncodedSeparator),
            0x00..=0x1f | 0x7f => return Err(TargetError::EncodedControl),
            v if is_unreserved(v) => {
                dot_was_encoded |= v == b'.';
                out.push(v as char);
            }
            v => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(char::from(HEX[usize::from(v >> 4)]));
                out.push(char::from(HEX[usize::from(v & 0xf)]));
            }
        }
        i += 3;
    }
    Ok((out, dot_was_encoded))
}
