//! Reading the YAML text: the only file that touches `serde_yaml`. What it reads is the
//! file as written ([`RawConfig`]), with secrets still references.

use super::raw::RawConfig;

/// A config parse error with its location, ready to show to the operator.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub message: String,
    pub line: Option<usize>,
}

/// Parses the YAML text. Secrets are still references here: they are resolved per field
/// after parsing, so a syntax error can never echo a secret value.
pub fn parse(text: &str) -> Result<RawConfig, ParseError> {
    read(text)
}

/// The file as JSON (for schema validation), parsed exactly as [`parse`] does.
pub fn to_json(text: &str) -> Result<serde_json::Value, ParseError> {
    read(text)
}

fn read<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ParseError> {
    serde_yaml::from_str(&quote_references(text))
        .map_err(|e| ParseError { line: e.location().map(|l| l.line()), message: e.to_string() })
}

/// Wraps each bare `${NAME}` that stands as a whole value in double quotes.
///
/// Users write `admin_tokens: [${TOLLGATE_ADMIN_TOKEN}]`, but `{` and `}` are flow indicators
/// in YAML, so the bare form does not parse inside `[...]`. Quoting the reference (never its
/// value: nothing is substituted here) keeps the file as users write it loadable. A
/// reference counts as a whole value when it follows `[`, `,`, `:`, `-` or the line start
/// and is followed by `]`, `,`, `}`, a comment or the line end.
fn quote_references(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let (before, from) = rest.split_at(start);
        out.push_str(before);
        let Some(end) = from.find('}') else {
            out.push_str(from);
            return out;
        };
        let reference = &from[..=end];
        let name = &reference[2..reference.len() - 1];
        let is_name = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        let prev = out.trim_end_matches([' ', '\t']).chars().last();
        let after = from[end + 1..].trim_start_matches([' ', '\t']).chars().next();
        let starts_value = matches!(prev, None | Some('[' | ',' | ':' | '-' | '\n'));
        let ends_value = matches!(after, None | Some(']' | ',' | '}' | '#' | '\n' | '\r'));
        if is_name && starts_value && ends_value {
            out.push('"');
            out.push_str(reference);
            out.push('"');
        } else {
            out.push_str(reference);
        }
        rest = &from[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::quote_references;

    #[test]
    fn quotes_only_whole_value_references() {
        assert_eq!(quote_references("a: [${X}, ${Y_1}]"), "a: [\"${X}\", \"${Y_1}\"]");
        assert_eq!(quote_references("a: ${X} # c"), "a: \"${X}\" # c");
        assert_eq!(quote_references("- ${X}\n"), "- \"${X}\"\n");
        assert_eq!(quote_references("a: \"${X}\""), "a: \"${X}\"");
        assert_eq!(quote_references("a: pre${X}"), "a: pre${X}");
        assert_eq!(quote_references("a: ${X}post"), "a: ${X}post");
        assert_eq!(quote_references("a: ${X"), "a: ${X");
    }
}
