//! Board-file mistakes of the strictness rules (accept regexes, secrets in emulator arguments,
//! unbounded durations, unknown template variables) are reported at their file:line:col with
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
