//! YAML parsing with `path:line:column` errors (serde-saphyr underneath).

use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::at::with_file;
use super::diag::{Diagnostic, Pos};

/// Parses one YAML document of `file`. An empty document (or one of only comments) parses
/// as `T::default()` through `Option`, so an empty `config.yaml` is a valid env config.
pub fn parse<T: DeserializeOwned + Default>(file: &Arc<str>, text: &str) -> Result<T, Diagnostic> {
    let options = serde_saphyr::options! {
        with_snippet: false,
    };
    let parsed: Result<Option<T>, _> =
        with_file(file, || serde_saphyr::from_str_with_options(text, options));
    match parsed {
        Ok(value) => Ok(value.unwrap_or_default()),
        Err(err) => Err(to_diagnostic(file, &err)),
    }
}

fn to_diagnostic(file: &Arc<str>, err: &serde_saphyr::Error) -> Diagnostic {
    let err = err.without_snippet();
    let (line, column) = err
        .location()
        .map(|l| (l.line() as u32, l.column() as u32))
        .unwrap_or((1, 1));
    Diagnostic::new(Pos::new(file.clone(), line, column), clean_message(&err.to_string()))
}

/// The crate appends " at line N, column M" to its messages; we print the position first.
fn clean_message(message: &str) -> String {
    let mut msg = message.trim().to_string();
    if let Some(idx) = msg.rfind(" at line ") {
        let tail = &msg[idx + " at line ".len()..];
        if tail
            .chars()
            .all(|c| c.is_ascii_digit() || c == ',' || c == ' ' || "column".contains(c))
        {
            msg.truncate(idx);
        }
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_the_position_suffix() {
        assert_eq!(
            clean_message("unknown field `x` at line 3, column 5"),
            "unknown field `x`"
        );
        assert_eq!(clean_message("plain"), "plain");
    }
}
