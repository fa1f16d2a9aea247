//! What every report line shares: the `# phyr-` marker, the words after `# phyr-KIND`, and
//! the error every line parser returns.

/// What every report line starts with, before its kind.
pub const MARKER: &str = "# phyr-";

/// Why a report line did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not a `# phyr-{0}` line")]
    NotThisKind(&'static str),
    #[error("`# phyr-{0}` is not a report line kind")]
    UnknownKind(String),
    #[error("missing field `{0}`")]
    Missing(&'static str),
    #[error("field `{key}={value}`: {what}")]
    Bad {
        key: &'static str,
        value: String,
        what: &'static str,
    },
    #[error("field `{0}` given twice")]
    Duplicate(String),
    #[error("`{0}` is not `key=value`")]
    NotKeyValue(String),
    #[error("range `{text}`: {what}")]
    Range { text: String, what: &'static str },
    #[error("phyr-{kind} line: {what}")]
    Positional { kind: &'static str, what: &'static str },
}

/// The words after `# phyr-<kind>` in `line` (leading and trailing whitespace ignored).
pub(crate) fn words_after<'a>(line: &'a str, kind: &'static str) -> Result<&'a str, ParseError> {
    let rest = line
        .trim()
        .strip_prefix(MARKER)
        .and_then(|r| r.strip_prefix(kind))
        .ok_or(ParseError::NotThisKind(kind))?;
    if rest.is_empty() || rest.starts_with(char::is_whitespace) {
        Ok(rest)
    } else {
        Err(ParseError::NotThisKind(kind))
    }
}
