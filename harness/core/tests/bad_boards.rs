//! Board-file mistakes of the strictness rules (accept regexes, secrets in emulator arguments,
//! unbounded durations, unknown template variables, calls in a cycle) are reported at their file:line:col with
//! what to do, by the loader itself; the place is the offending value (not the table holding
//! it), and the printed error shows that value's line with the value underlined.

use std::path::PathBuf;

use hilsec_core::board::{load_boards, LoadMode};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/boards/bad")
        .join(name)
}

#[test]
fn strictness_mistakes_name_their_place_and_what_to_do() {
    for (file, line, col, words) in [
        ("bad-accept.toml", 14, 38, "invalid regex in `accept`"),
        ("secret-in-args.toml", 8, 49, "visible to every user"),
        ("huge-duration.toml", 11, 36, "9999999h"),
        ("unknown-var.toml", 11, 21, "unknown variable {image.size}"),
        ("call-cycle.toml", 11, 12, "cycle: login -> sync -> login"),
    ] {
        for mode in [LoadMode::Check, LoadMode::Run] {
            let errs = load_boards(&[fixture(file)], mode).expect_err(file).0;
            assert_eq!(errs.len(), 1, "{file}: {errs:?}");
            let e = &errs[0];
            assert_eq!((e.line, e.col), (line, col), "{file}: {e}");
            assert!(e.message.contains(words), "{file}: {e}");
            assert!(e.help.is_some(), "{file}: no help: {e}");
        }
    }
}

#[test]
fn every_bad_fixture_is_refused() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/boards/bad");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("fixtures/boards/bad") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            n += 1;
            let errs = load_boards(std::slice::from_ref(&path), LoadMode::Check)
                .expect_err(&path.display().to_string());
            assert!(
                errs.0.iter().all(|e| e.line > 0),
                "{}: every problem has a place: {errs}",
                path.display()
            );
        }
    }
    assert!(n >= 9, "{n} fixtures");
}

/// What the rendered error underlines: the characters of the numbered source line above the
/// carets.
fn underlined(rendered: &str, line: usize) -> String {
    let lines: Vec<&str> = rendered.lines().collect();
    let gutter = format!("{line} | ");
    let at = lines
        .iter()
        .position(|l| l.starts_with(&gutter))
        .unwrap_or_else(|| panic!("no source line {line} in:\n{rendered}"));
    let source = &lines[at][gutter.len()..];
    let marks = lines.get(at + 1).copied().unwrap_or("");
    let marks = marks.get(gutter.len()..).unwrap_or("");
    source
        .chars()
        .zip(marks.chars().chain(std::iter::repeat(' ')))
        .filter(|(_, m)| *m == '^')
        .map(|(c, _)| c)
        .collect()
}

#[test]
fn errors_point_at_the_value_and_underline_it() {
    for (file, line, col, value, words) in [
        (
            "bad-regex.toml",
            16,
            14,
            "\"(?P<prompt>[$#] $\"",
            "invalid regex in `expect`: unclosed group",
        ),
        (
            "huge-duration.toml",
            11,
            36,
            "\"9999999h\"",
            "longer than 24 hours",
        ),
        (
            "unknown-var.toml",
            11,
            21,
            "{image.size}",
            "unknown variable {image.size}",
        ),
        (
            "missing-interface.toml",
            12,
            6,
            "\"uart2\"",
            "interface \"uart2\" is not declared",
        ),
        ("wrong-type.toml", 7, 8, "\"fast\"", "expected u32"),
        ("call-cycle.toml", 11, 12, "\"sync\"", "cycle"),
    ] {
        let errs = load_boards(&[fixture(file)], LoadMode::Check)
            .expect_err(file)
            .0;
        assert_eq!(errs.len(), 1, "{file}: {errs:?}");
        let e = &errs[0];
        assert_eq!((e.line, e.col), (line, col), "{file}: {e}");
        assert!(e.message.contains(words), "{file}: {e}");
        let rendered = e.to_string();
        // The first line stays `file:line:col: message` for scripts that grep it.
        assert_eq!(
            rendered.lines().next(),
            Some(format!("{}:{line}:{col}: {}", fixture(file).display(), e.message).as_str()),
            "{file}"
        );
        assert_eq!(underlined(&rendered, line), value, "{file}:\n{rendered}");
        let help = e.help.as_deref().unwrap_or_default();
        assert!(
            rendered.ends_with(&format!("= help: {help}")),
            "{file}: the help comes last:\n{rendered}"
        );
        assert!(!rendered.contains('\u{1b}'), "{file}: no colour codes");
    }
}
