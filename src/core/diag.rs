//! Diagnostics: every user-facing validation problem as `path:line:column: message`.

use std::fmt;
use std::sync::Arc;

/// A position in a file of the repository (1-based line and column).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub file: Arc<str>,
    pub line: u32,
    pub column: u32,
}

impl Pos {
    pub fn new(file: impl Into<Arc<str>>, line: u32, column: u32) -> Self {
        Pos { file: file.into(), line: line.max(1), column: column.max(1) }
    }

    /// The start of a file, for problems that belong to the file as a whole.
    pub fn file_start(file: impl Into<Arc<str>>) -> Self {
        Pos::new(file, 1, 1)
    }

    pub fn shifted(&self, columns: u32) -> Self {
        Pos { column: self.column + columns, ..self.clone() }
    }
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One validation problem.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Diagnostic {
    pub pos: Pos,
    pub message: String,
}

impl Diagnostic {
    pub fn new(pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic { pos, message: message.into() }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pos, self.message)
    }
}

/// Sorts diagnostics by position and drops exact repeats (a base field that is invalid in
/// every environment is reported once).
pub fn normalize(diags: &mut Vec<Diagnostic>) {
    diags.sort();
    diags.dedup();
}

/// Renders diagnostics one per line.
pub fn render(diags: &[Diagnostic]) -> String {
    diags.iter().map(|d| format!("{d}\n")).collect()
}

/// A failure made of one or more diagnostics.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", render(.0).trim_end())]
pub struct Diagnostics(pub Vec<Diagnostic>);
