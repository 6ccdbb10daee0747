//! Board-file diagnostics: every problem names file:line:col, what is wrong and what to do.
//!
//! The loader never stops at the first problem: each seam reports into a [`Diag`] for the file
//! it reads, and all of them are returned together, so a lab fixes a file in one pass.
//!
//! A problem at a place in the file prints as `file:line:col: message` (the first line, which
//! scripts and tests grep), then the source line with the offending value underlined and the
//! help, rendered by `annotate-snippets` without colour:
//!
//! ```text
//! boards/plug.toml:16:14: invalid regex in `expect`: unclosed group
//!    |
//! 16 |   { expect = '(foo' },
//!    |              ^^^^^^
//!    |
//!    = help: board regexes use Rust regex syntax; ...
//! ```
//!
//! Seams report at the span of the value that is wrong (the regex, the duration, the interface
//! name), not at the table holding it; a table's span is for what is *missing* from it.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};

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
    /// The source line the problem is at, shown under the message; `None` when the problem is
    /// not at a place in the file.
    pub excerpt: Option<Excerpt>,
}

/// The line of a board file a problem is at and the part of it to underline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excerpt {
    /// The whole line, without its line break.
    pub text: String,
    /// Byte range of the offending value within `text` (clipped to this line when the value
    /// spans several, e.g. a multi-line table).
    pub span: Range<usize>,
}

impl Excerpt {
    /// The line of `text` holding byte `span.start`, with `span` made relative to it; `None`
    /// when the span is not within `text` at character boundaries.
    fn of(text: &str, span: &Range<usize>) -> Option<Excerpt> {
        let start = span.start;
        let before = text.get(..start)?;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let rest = text.get(line_start..)?;
        let line = rest.split('\n').next().unwrap_or("");
        let line = line.strip_suffix('\r').unwrap_or(line);
        let from = start - line_start;
        let to = span.end.saturating_sub(line_start).clamp(from, line.len());
        line.get(from..to)?;
        Some(Excerpt {
            text: line.to_string(),
            span: from..to,
        })
    }

    /// The line (numbered `line`) with the span underlined, and `help` after it; plain text.
    fn render(&self, line: usize, help: Option<&str>) -> String {
        let snippet = Snippet::source(self.text.as_str())
            .line_start(line)
            .fold(false)
            .annotation(AnnotationKind::Primary.span(self.span.clone()));
        let mut group = Group::with_level(Level::ERROR).element(snippet);
        if let Some(h) = help {
            group = group.element(Level::HELP.message(h));
        }
        Renderer::plain().render(&[group])
    }
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
        match (&self.excerpt, &self.help) {
            (Some(x), help) if self.line > 0 => {
                write!(f, "\n{}", x.render(self.line, help.as_deref()))?
            }
            (_, Some(help)) => write!(f, "\n  help: {help}")?,
            (_, None) => {}
        }
        Ok(())
    }
}

/// All problems found in a set of board files, printed one after another with a blank line
/// between them.
#[derive(Debug, Clone, thiserror::Error)]
pub struct BoardErrors(pub Vec<BoardError>);

impl fmt::Display for BoardErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, "\n\n")?;
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

    /// The part of `span` where `needle` is written, e.g. `{image.size}` in a template, or all
    /// of `span` when it is not written there as is (TOML escapes).
    pub fn narrow(&self, span: Range<usize>, needle: &str) -> Range<usize> {
        self.text
            .get(span.clone())
            .and_then(|s| s.find(needle))
            .map(|i| span.start + i..span.start + i + needle.len())
            .unwrap_or(span)
    }

    /// Reports a problem at `span` (the offending value's, when it has one).
    pub fn at(
        &mut self,
        span: Option<Range<usize>>,
        message: impl Into<String>,
        help: Option<&str>,
    ) {
        let (line, col) = match &span {
            Some(s) => line_col(self.text, s.start),
            None => (0, 0),
        };
        self.errors.push(BoardError {
            path: self.path.to_path_buf(),
            line,
            col,
            message: message.into(),
            help: help.map(str::to_string),
            excerpt: span.and_then(|s| Excerpt::of(self.text, &s)),
        });
    }
}

/// The span written later of two (e.g. the second of two keys that exclude each other: the
/// one that is too many).
pub(crate) fn later(a: Range<usize>, b: Range<usize>) -> Range<usize> {
    if b.start > a.start {
        b
    } else {
        a
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
        excerpt: None,
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
    fn errors_print_as_file_line_col_then_the_underlined_value_and_help() {
        let mut d = Diag::new(Path::new("b.toml"), "a = 1\nbb = 2\n");
        d.at(Some(9..10), "bad", Some("fix it"));
        d.at(None, "unplaced", Some("look"));
        d.at(Some(0..1), "no help", None);
        let placed = "b.toml:2:4: bad\n  |\n2 | bb = 2\n  |    ^\n  |\n  = help: fix it";
        assert_eq!(d.errors[0].to_string(), placed);
        assert_eq!(d.errors[1].to_string(), "b.toml: unplaced\n  help: look");
        assert_eq!(
            d.errors[2].to_string(),
            "b.toml:1:1: no help\n  |\n1 | a = 1\n  | ^"
        );
        assert_eq!(
            BoardErrors(d.errors).to_string(),
            format!("{placed}\n\nb.toml: unplaced\n  help: look\n\nb.toml:1:1: no help\n  |\n1 | a = 1\n  | ^")
        );
    }

    #[test]
    fn the_excerpt_is_the_line_of_the_span_start() {
        let text = "[t]\nk = 'abc'\r\nx = [\n  1,\n]\n";
        let x = Excerpt::of(text, &(8..13)).expect("excerpt");
        assert_eq!((x.text.as_str(), x.span.clone()), ("k = 'abc'", 4..9));
        // A span over several lines is underlined on its first line only.
        let x = Excerpt::of(text, &(19..28)).expect("excerpt");
        assert_eq!((x.text.as_str(), x.span.clone()), ("x = [", 4..5));
        // An empty span (end of file, a missing table) still shows its line.
        let x = Excerpt::of(text, &(0..0)).expect("excerpt");
        assert_eq!((x.text.as_str(), x.span.clone()), ("[t]", 0..0));
        assert_eq!(Excerpt::of(text, &(999..1000)), None);
        assert_eq!(Excerpt::of("é", &(1..2)), None, "not a char boundary");
    }

    #[test]
    fn toml_errors_get_help() {
        assert!(toml_help("unknown field `parity`").is_some_and(|h| h.contains("boards/README.md")));
        assert!(toml_help("missing field `name`").is_some());
        assert!(toml_help("invalid type: string \"x\", expected u32").is_some());
        assert_eq!(toml_help("something else"), None);
    }
}
