//! Turns raw bytes into numbered lines.
//!
//! This module exists because every later step reports findings by line number of the
//! original file, and because the bytes come from a device under test: they may be cut at
//! the size cap, carry a byte-order mark, mix CRLF and LF, or not be UTF-8 at all. All of
//! that is settled here, once, so the parsers above see only `(number, text)` pairs.
//!
//! A leading UTF-8 byte-order mark and a last line without a line break are errors, as in the
//! `sectxt` validator behind internet.nl: RFC 9116 section 4 asks for UTF-8 in Net-Unicode
//! form and its ABNF ends every line with `eol` (`*WSP [CR] LF`). Both are reported and the
//! rest of the file is still parsed, so every other finding is listed too.

use crate::report::{codes, Collector};

/// One line of the input, without its line terminator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    /// 1-based line number in the original input.
    pub number: usize,
    /// The text; invalid UTF-8 sequences are replaced by U+FFFD (and reported).
    pub text: String,
}

/// The UTF-8 encoding of U+FEFF.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Splits `bytes` into lines on LF, dropping a CR before it. Reports a byte-order mark,
/// lines that are not UTF-8, and a missing final line break (all errors).
pub(crate) fn split(bytes: &[u8], out: &mut Collector) -> Vec<Line> {
    let mut bytes = bytes;
    if let Some(rest) = bytes.strip_prefix(BOM) {
        out.error(
            codes::BOM_IN_FILE,
            Some(1),
            "the file starts with a UTF-8 byte-order mark (bytes EF BB BF): RFC 9116 section 4 \
             requires UTF-8 in Net-Unicode form, without a BOM; re-save the file without it \
             (the rest of the file was checked as if it were absent)",
        );
        bytes = rest;
    }
    if bytes.is_empty() {
        return Vec::new();
    }

    let ends_with_newline = bytes.last() == Some(&b'\n');
    let mut segments: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    if ends_with_newline {
        // `split` yields an empty segment after the final LF; it is not a line.
        segments.pop();
    }

    let mut lines = Vec::with_capacity(segments.len());
    let mut last_number = 0;
    for (i, seg) in segments.into_iter().enumerate() {
        let number = i + 1;
        last_number = number;
        let seg = seg.strip_suffix(b"\r").unwrap_or(seg);
        let text = match std::str::from_utf8(seg) {
            Ok(s) => s.to_string(),
            Err(e) => {
                let utf16 =
                    number == 1 && (seg.starts_with(b"\xFF\xFE") || seg.starts_with(b"\xFE\xFF"));
                let what = if utf16 {
                    "the file is UTF-16 (it starts with a UTF-16 byte-order mark)".to_string()
                } else {
                    format!(
                        "line is not valid UTF-8 (bad byte at column {})",
                        e.valid_up_to() + 1
                    )
                };
                out.error(
                    codes::NOT_UTF8,
                    Some(number),
                    format!("{what}; RFC 9116 section 4 requires UTF-8: re-save the file as UTF-8"),
                );
                String::from_utf8_lossy(seg).into_owned()
            }
        };
        lines.push(Line { number, text });
    }
    if !ends_with_newline {
        out.error(
            codes::NO_LINE_SEPARATORS,
            Some(last_number),
            "the last line has no line break: RFC 9116's ABNF (section 4) ends every line, \
             the last one too, with LF or CRLF; add a line break at the end of the file",
        );
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(bytes: &[u8]) -> (Vec<(usize, String)>, Collector) {
        let mut c = Collector::default();
        let lines = split(bytes, &mut c)
            .into_iter()
            .map(|l| (l.number, l.text))
            .collect();
        (lines, c)
    }

    #[test]
    fn crlf_and_lf_mix() {
        let (lines, c) = texts(b"a\r\nb\nc\r\n");
        assert_eq!(
            lines,
            vec![(1, "a".into()), (2, "b".into()), (3, "c".into())]
        );
        assert!(c.notes.is_empty());
    }

    #[test]
    fn bom_and_missing_final_newline_are_errors() {
        let (lines, c) = texts(b"\xEF\xBB\xBFa\nb");
        assert_eq!(lines, vec![(1, "a".into()), (2, "b".into())]);
        let errors: Vec<_> = c.errors.iter().map(|f| (f.code.as_str(), f.line)).collect();
        assert_eq!(
            errors,
            vec![
                (codes::BOM_IN_FILE, Some(1)),
                (codes::NO_LINE_SEPARATORS, Some(2))
            ]
        );
        assert!(c.notes.is_empty());
    }

    #[test]
    fn final_line_break_rules() {
        for ok in [&b"a\n"[..], b"a\r\n", b"a\n\n", b""] {
            let (_, c) = texts(ok);
            assert!(c.errors.is_empty(), "{ok:?}: {:?}", c.errors);
        }
        // A CR alone, or spaces after the last line break, are not a line break (the ABNF's
        // `eol` is `*WSP [CR] LF`).
        for (bad, line) in [(&b"a\r"[..], 1), (b"a\n  ", 2), (b"a\n# c", 2)] {
            let (_, c) = texts(bad);
            let errors: Vec<_> = c.errors.iter().map(|f| (f.code.as_str(), f.line)).collect();
            assert_eq!(
                errors,
                vec![(codes::NO_LINE_SEPARATORS, Some(line))],
                "{bad:?}"
            );
        }
        // A BOM alone: the BOM error, and no line.
        let (lines, c) = texts(b"\xEF\xBB\xBF");
        assert!(lines.is_empty());
        assert_eq!(c.errors.len(), 1);
        assert_eq!(c.errors[0].code, codes::BOM_IN_FILE);
    }

    #[test]
    fn invalid_utf8_is_reported_and_replaced() {
        let (lines, c) = texts(b"ok\n\xff\xfe\n");
        assert_eq!(lines[1].1, "\u{FFFD}\u{FFFD}");
        assert_eq!(c.errors.len(), 1);
        assert_eq!(c.errors[0].line, Some(2));
    }
}
