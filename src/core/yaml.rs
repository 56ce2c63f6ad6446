//! YAML parsing with `path:line:column` errors (serde-saphyr underneath).

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_saphyr::{MessageFormatter as _, UserMessageFormatter};

use super::at::Stamp;
use super::diag::{Diagnostic, Pos};

/// Parses one YAML document of `file`. An empty document (or one of only comments) parses
/// as `T::default()` through `Option`, so an empty `config.yaml` is a valid env config.
pub fn parse<T: DeserializeOwned + Default + Stamp>(file: &Arc<str>, text: &str) -> Result<T, Diagnostic> {
    // Files are read lossily: an invalid UTF-8 sequence arrives here as U+FFFD.
    if text.len() > MAX_FILE_BYTES {
        return Err(Diagnostic::new(
            Pos::file_start(file.clone()),
            format!(
                "the file is larger than {} KiB, berth's limit for a deploy file: keep data that is not deploy \
                 settings out of deploy/",
                MAX_FILE_BYTES / 1024
            ),
        ));
    }
    if let Some(pos) = replacement_char(file, text) {
        return Err(Diagnostic::new(pos, "the file is not valid UTF-8 here: save it as UTF-8"));
    }
    if let Some(d) = unknown_tag(file, text) {
        return Err(d);
    }
    let options = serde_saphyr::options! {
        with_snippet: false,
    };
    let parsed: Result<Option<T>, _> = serde_saphyr::from_str_with_options(text, options);
    match parsed {
        Ok(value) => {
            let mut value = value.unwrap_or_default();
            value.stamp(file);
            Ok(value)
        }
        Err(err) => Err(to_diagnostic(file, text, &err)),
    }
}

/// The largest deploy file berth parses. The readers (`source::dir`, `source::git`) read at
/// most one byte more, so a huge file costs no more memory than this before it is refused.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// The first tag berth does not understand (`!Sub`, `!Ref`, `!include`, …). serde-saphyr
/// would read such a node as its literal text; berth refuses it where it is written. The
/// core schema's tags (`!!str`, `!!int`, …) and the non-specific `!` are fine.
fn unknown_tag(file: &Arc<str>, text: &str) -> Option<Diagnostic> {
    use granit_parser::{Event, Parser};
    if !text.contains('!') {
        return None;
    }
    for event in Parser::new_from_str(text) {
        // A syntax error is reported by the deserializer, with its own message.
        let Ok((event, span)) = event else { return None };
        let tag = match &event {
            Event::Scalar(_, _, _, tag) | Event::SequenceStart(_, _, tag) | Event::MappingStart(_, _, tag) => tag,
            _ => continue,
        };
        let Some(tag) = tag else { continue };
        if tag.core_suffix().is_some() || tag.suffix_in_namespace("!").is_some_and(|s| s.is_empty()) {
            continue;
        }
        // The event starts at its content; the tag is the last `!` written before it (on
        // that line, or on an earlier one for a block collection).
        let end = span
            .start
            .byte_offset()
            .unwrap_or_else(|| text.char_indices().nth(span.start.index()).map_or(text.len(), |(b, _)| b));
        let end = end.min(text.len());
        let at = text[..end].rfind('!').unwrap_or(end);
        let line = text[..at].matches('\n').count() + 1;
        let col = text[..at].rsplit('\n').next().unwrap_or("").chars().count();
        let pos = Pos::new(file.clone(), line as u32, col as u32 + 1);
        return Some(Diagnostic::new(
            pos,
            format!(
                "unknown YAML tag `{tag}`: berth evaluates no tags (CloudFormation's `!Sub` or `!Ref` are not \
                 YAML); write the value itself, or a `{{{{ .Variables[\"name\"] }}}}` template"
            ),
        ));
    }
    None
}

fn replacement_char(file: &Arc<str>, text: &str) -> Option<Pos> {
    text.lines().enumerate().find_map(|(i, line)| {
        let col = line.chars().position(|c| c == '\u{FFFD}')?;
        Some(Pos::new(file.clone(), i as u32 + 1, col as u32 + 1))
    })
}

fn to_diagnostic(file: &Arc<str>, text: &str, err: &serde_saphyr::Error) -> Diagnostic {
    let err = err.without_snippet();
    let (line, mut column) = err.location().map(|l| (l.line() as u32, l.column() as u32)).unwrap_or((1, 1));
    let source_line = text.lines().nth(line.saturating_sub(1) as usize).unwrap_or("");
    let message = match err {
        serde_saphyr::Error::InvalidScalar { ty, .. } => {
            format!("expected {}, found `{}`", describe_type(ty), token_at(source_line, column))
        }
        serde_saphyr::Error::Unexpected { expected, .. } => {
            format!("expected {}", describe_expected(expected))
        }
        serde_saphyr::Error::SerdeUnknownVariant { variant, expected, .. } => {
            format!("unknown value `{variant}`, expected one of {}", expected.join(", "))
        }
        serde_saphyr::Error::SerdeMissingField { field, .. } => {
            format!("missing required field `{field}`")
        }
        serde_saphyr::Error::DuplicateMappingKey { key: Some(k), .. } => {
            format!("duplicate key `{k}`: a key may appear only once in a mapping")
        }
        _ => {
            let msg = clean_message(&UserMessageFormatter.format_message(err));
            if msg.contains("tab") && source_line.contains('\t') {
                column = source_line.chars().position(|c| c == '\t').map_or(column, |c| c as u32 + 1);
                "tab character in indentation: YAML indents with spaces only".to_string()
            } else if msg.contains("quoted scalar") {
                format!("{msg}: is a closing quote missing?")
            } else if msg == "mapping values are not allowed in this context" {
                format!("{msg}: check this line's indentation, or quote a value that contains `: `")
            } else {
                msg
            }
        }
    };
    Diagnostic::new(Pos::new(file.clone(), line, column), message)
}

fn describe_type(ty: &str) -> String {
    match ty {
        "u8" | "u16" | "u32" | "u64" => {
            let max: u64 = match ty {
                "u8" => u8::MAX.into(),
                "u16" => u16::MAX.into(),
                "u32" => u32::MAX.into(),
                _ => u64::MAX,
            };
            format!("a whole number from 0 to {max}")
        }
        "i8" | "i16" | "i32" | "i64" => "a whole number".to_string(),
        "f32" | "f64" | "floating point" => "a number".to_string(),
        "bool" | "boolean" => "`true` or `false`".to_string(),
        other => format!("a value of type {other}"),
    }
}

fn describe_expected(expected: &str) -> &str {
    match expected {
        "sequence start" => "a list (`- item` lines or `[a, b]`)",
        "mapping start" | "empty mapping start" => "a mapping (`key: value` lines)",
        "string scalar" => "a string",
        "scalar" => "a single value",
        other => other,
    }
}

/// The scalar written at 1-based `column` of `line`, up to the end of a flow or block value.
fn token_at(line: &str, column: u32) -> String {
    let rest: String = line.chars().skip(column.saturating_sub(1) as usize).collect();
    let end = rest.find([',', ']', '}', '#']).unwrap_or(rest.len());
    rest[..end].trim().to_string()
}

/// The crate appends " at line N, column M" to its messages; we print the position first.
fn clean_message(message: &str) -> String {
    let mut msg = message.trim().to_string();
    if let Some(idx) = msg.rfind(" at line ") {
        let tail = &msg[idx + " at line ".len()..];
        if tail.chars().all(|c| c.is_ascii_digit() || c == ',' || c == ' ' || "column".contains(c)) {
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
        assert_eq!(clean_message("unknown field `x` at line 3, column 5"), "unknown field `x`");
        assert_eq!(clean_message("plain"), "plain");
    }

    #[test]
    fn names_the_offending_token() {
        assert_eq!(token_at("  resources: {cpu: big, memory: 512}", 20), "big");
        assert_eq!(token_at("  count: two # words", 10), "two");
    }

    #[test]
    fn refuses_tags_berth_does_not_evaluate_where_they_are_written() {
        let file: Arc<str> = Arc::from("s.yaml");
        let at = |text: &str| unknown_tag(&file, text).map(|d| (d.pos.line, d.pos.column));
        assert_eq!(at("a: !Sub '${AWS::Region}'\n"), Some((1, 4)));
        assert_eq!(at("a:\n  b: [1, !Ref x]\n"), Some((2, 10)));
        assert_eq!(at("a: !GetAtt\n  - x\n"), Some((1, 4)));
        // The core schema's tags, the non-specific tag and a `!` inside a value are fine.
        assert_eq!(at("a: !!str 5\nb: ! 7\nc: 'hi!'\nd: \"!x\"\n# !Ref in a comment\n"), None);
    }
}
