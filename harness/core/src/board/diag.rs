//! Board-file diagnostics: every problem names file:line:col, what is wrong and what to do.
//!
//! The loader never stops at the first problem: each seam reports into a [`Diag`] for the file
//! it reads, and all of them are returned together, so a lab fixes a file in one pass.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in one board file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoardError {
    pub path: PathBuf,
    /// 1-based; 0 when the problem is not at a place in the file (e.g. unreadable file).
    pub line: usize,
    pub col: usize,
    pub message: String,
    /// What to do about it.
    pub help: Option<String>,
}

impl fmt::Display for BoardError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(
                f,
                "{}:{}:{}: {}",
                self.path.display(),
                self.line,
                self.col,
                self.message
            )?;
        } else {
            write!(f, "{}: {}", self.path.display(), self.message)?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// All problems found in a set of board files.
#[derive(Debug, Clone, thiserror::Error)]
pub struct BoardErrors(pub Vec<BoardError>);

impl fmt::Display for BoardErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Collects problems for one source file, turning byte spans into line:col.
pub(crate) struct Diag<'a> {
    pub path: &'a Path,
    pub text: &'a str,
    pub errors: Vec<BoardError>,
}

impl<'a> Diag<'a> {
    pub fn new(path: &'a Path, text: &'a str) -> Self {
        Diag {
            path,
            text,
            errors: Vec::new(),
        }
    }

    pub fn at(
        &mut self,
        span: Option<Range<usize>>,
        message: impl Into<String>,
        help: Option<&str>,
    ) {
        let (line, col) = match span {
            Some(s) => line_col(self.text, s.start),
            None => (0, 0),
        };
        self.errors.push(BoardError {
            path: self.path.to_path_buf(),
            line,
            col,
            message: message.into(),
            help: help.map(str::to_string),
        });
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = before
        .get(line_start..)
        .map(|s| s.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

/// A problem not at a place in a file (unreadable file, empty folder, clashing unit names).
pub(crate) fn plain_error(path: &Path, message: &str, help: Option<&str>) -> BoardError {
    BoardError {
        path: path.to_path_buf(),
        line: 0,
        col: 0,
        message: message.to_string(),
        help: help.map(str::to_string),
    }
}

/// What to do about an error of the TOML parser (unknown key, missing key, wrong type).
pub(crate) fn toml_help(msg: &str) -> Option<&'static str> {
    if msg.contains("unknown field") {
        Some("remove or rename the key; the board-file reference is in boards/README.md")
    } else if msg.contains("missing field") {
        Some("add the key; the board-file reference is in boards/README.md")
    } else if msg.contains("invalid type") {
        Some("check the value's type (string, number, table, array)")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let t = "a = 1\nbb = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, 9), (2, 4));
    }

    #[test]
    fn errors_print_as_file_line_col_then_help() {
        let mut d = Diag::new(Path::new("b.toml"), "a = 1\nbb = 2\n");
        d.at(Some(9..10), "bad", Some("fix it"));
        d.at(None, "unplaced", None);
        assert_eq!(d.errors[0].to_string(), "b.toml:2:4: bad\n  help: fix it");
        assert_eq!(d.errors[1].to_string(), "b.toml: unplaced");
        assert_eq!(
            BoardErrors(d.errors).to_string(),
            "b.toml:2:4: bad\n  help: fix it\nb.toml: unplaced"
        );
    }

    #[test]
    fn toml_errors_get_help() {
        assert!(toml_help("unknown field `parity`").is_some_and(|h| h.contains("boards/README.md")));
        assert!(toml_help("missing field `name`").is_some());
        assert!(toml_help("invalid type: string \"x\", expected u32").is_some());
        assert_eq!(toml_help("something else"), None);
    }
}
