//! The Go-template subset of the Lemon design: `{{ .Variables["name"] }}`, `{{ .Service }}`,
//! `{{ .Env }}`, `{{ .Commit }}` and `{{ .Version }}`.
//!
//! Go's own spellings of a map lookup, `{{ index .Variables "name" }}` and
//! `{{ .Variables.name }}`, are accepted as well. Every error carries the column of the
//! action inside the YAML scalar.

use crate::core::diag::{Diagnostic, Pos};

#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    Literal(String),
    Variable { name: String, pos: Pos },
    Service,
    Env,
    Commit,
    Version,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    pub parts: Vec<Part>,
}

/// Values the built-in fields take.
pub struct Context<'a> {
    pub service: &'a str,
    pub env: &'a str,
    pub commit: &'a str,
    pub version: &'a str,
}

impl Template {
    /// Parses `text`, which starts at `start` in its file (the first character of the value,
    /// after any opening quote).
    pub fn parse(text: &str, start: &Pos) -> Result<Template, Vec<Diagnostic>> {
        let mut parts = Vec::new();
        let mut errors = Vec::new();
        let mut rest = text;
        let mut offset = 0usize; // in chars, from the start of `text`
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Literal(rest[..open].to_string()));
            }
            let action_offset = offset + rest[..open].chars().count();
            let at = column_pos(text, start, action_offset);
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                errors.push(Diagnostic::new(at, "malformed template: `{{` is never closed by `}}`"));
                return Err(errors);
            };
            let inner = &after[..close];
            match parse_action(inner) {
                Ok(Action::Variable(name)) => parts.push(Part::Variable { name, pos: at }),
                Ok(Action::Field(part)) => parts.push(part),
                Err(msg) => errors.push(Diagnostic::new(at, msg)),
            }
            let consumed = open + 2 + close + 2;
            offset += rest[..consumed].chars().count();
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_string()));
        }
        if errors.is_empty() { Ok(Template { parts }) } else { Err(errors) }
    }

    pub fn variables(&self) -> impl Iterator<Item = (&str, &Pos)> {
        self.parts.iter().filter_map(|p| match p {
            Part::Variable { name, pos } => Some((name.as_str(), pos)),
            _ => None,
        })
    }

    /// When the whole value is one variable (surrounding blanks allowed), its name.
    pub fn sole_variable(&self) -> Option<&str> {
        let mut found = None;
        for part in &self.parts {
            match part {
                Part::Literal(text) if text.trim().is_empty() => {}
                Part::Variable { name, .. } if found.is_none() => found = Some(name.as_str()),
                _ => return None,
            }
        }
        found
    }

    /// Expands the template; `variable` answers `.Variables[...]`.
    pub fn expand(&self, ctx: &Context<'_>, mut variable: impl FnMut(&str) -> String) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Variable { name, .. } => out.push_str(&variable(name)),
                Part::Service => out.push_str(ctx.service),
                Part::Env => out.push_str(ctx.env),
                Part::Commit => out.push_str(ctx.commit),
                Part::Version => out.push_str(ctx.version),
            }
        }
        out
    }
}

fn column_pos(text: &str, start: &Pos, char_offset: usize) -> Pos {
    // A multi-line (block) scalar: every line is indented like the first one.
    let before: String = text.chars().take(char_offset).collect();
    match before.rfind('\n') {
        None => start.shifted(char_offset as u32),
        Some(nl) => {
            let line = start.line + before.matches('\n').count() as u32;
            let column = start.column + before[nl + 1..].chars().count() as u32;
            Pos::new(start.file.clone(), line, column)
        }
    }
}

enum Action {
    Variable(String),
    Field(Part),
}

const EXPECTED: &str = "expected .Variables[\"name\"], .Service, .Env, .Commit or .Version";

fn parse_action(inner: &str) -> Result<Action, String> {
    let expr = inner.trim();
    if expr.starts_with('-') || expr.ends_with('-') {
        return Err(format!("malformed template `{{{{{inner}}}}}`: trim markers are not supported; {EXPECTED}"));
    }
    match expr {
        "" => {
            return Err(format!("malformed template: empty action `{{{{{inner}}}}}`; {EXPECTED}"));
        }
        ".Service" => return Ok(Action::Field(Part::Service)),
        ".Env" => return Ok(Action::Field(Part::Env)),
        ".Commit" => return Ok(Action::Field(Part::Commit)),
        ".Version" => return Ok(Action::Field(Part::Version)),
        _ => {}
    }
    let name = if let Some(rest) = expr.strip_prefix(".Variables[") {
        let Some(quoted) = rest.strip_suffix(']') else {
            return Err(format!("malformed template `{expr}`: missing `]`"));
        };
        unquote(quoted.trim())
            .ok_or_else(|| format!("malformed template `{expr}`: the variable name must be a quoted string"))?
    } else if let Some(rest) = expr.strip_prefix("index .Variables ") {
        unquote(rest.trim())
            .ok_or_else(|| format!("malformed template `{expr}`: the variable name must be a quoted string"))?
    } else if let Some(rest) = expr.strip_prefix(".Variables.") {
        rest.to_string()
    } else {
        return Err(format!("unsupported template expression `{expr}`; {EXPECTED}"));
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) {
        return Err(format!("malformed template `{expr}`: variable names use letters, digits, `_`, `-` and `.`"));
    }
    Ok(Action::Variable(name))
}

fn unquote(s: &str) -> Option<String> {
    let inner = s
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .or_else(|| s.strip_prefix('`').and_then(|r| r.strip_suffix('`')))?;
    if inner.contains('"') || inner.contains('`') {
        return None;
    }
    Some(inner.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos() -> Pos {
        Pos::new("f.yaml", 3, 12)
    }

    fn ctx() -> Context<'static> {
        Context { service: "svc", env: "pre", commit: "abc", version: "" }
    }

    #[test]
    fn expands_every_form() {
        let t = Template::parse(
            r#"a={{ .Variables["x"] }} b={{index .Variables "y"}} c={{.Variables.z}} {{ .Service }}/{{ .Env }}/{{ .Commit }}/{{ .Version }}"#,
            &pos(),
        )
        .unwrap();
        let out = t.expand(&ctx(), |n| n.to_uppercase());
        assert_eq!(out, "a=X b=Y c=Z svc/pre/abc/");
    }

    #[test]
    fn reports_the_column_of_the_action() {
        let err = Template::parse("ab {{ .Nope }}", &pos()).unwrap_err();
        assert_eq!(err[0].pos, Pos::new("f.yaml", 3, 15));
        assert!(err[0].message.contains("unsupported template expression `.Nope`"));
        let err = Template::parse("x {{ .Service", &pos()).unwrap_err();
        assert_eq!(err[0].pos.column, 14);
        assert!(err[0].message.contains("never closed"));
    }

    #[test]
    fn sole_variable_is_the_whole_value_only() {
        let t = Template::parse(r#" {{ .Variables["k"] }} "#, &pos()).unwrap();
        assert_eq!(t.sole_variable(), Some("k"));
        let t = Template::parse(r#"pre-{{ .Variables["k"] }}"#, &pos()).unwrap();
        assert_eq!(t.sole_variable(), None);
    }
}
