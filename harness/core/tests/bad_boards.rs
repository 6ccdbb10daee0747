//! Board-file mistakes of the strictness rules (accept regexes, secrets in emulator arguments,
//! unbounded durations, unknown template variables, calls in a cycle) are reported at their file:line:col with
//! what to do, by the loader itself.

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
        ("secret-in-args.toml", 8, 48, "visible to every user"),
        ("huge-duration.toml", 11, 36, "9999999h"),
        ("unknown-var.toml", 11, 3, "unknown variable {image.size}"),
        ("call-cycle.toml", 9, 1, "cycle: login -> sync -> login"),
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
