//! Board-file mistakes: exit 2, a message naming file:line:col and what to do, nothing run.

mod common;

use std::fs;
use std::time::Duration;

use common::*;

/// (fixture, expected "file:line:col" suffix, words the message must contain)
const CASES: [(&str, &str, &str); 4] = [
    ("unknown-key.toml", ":8:1:", "unknown field `parity`"),
    ("bad-regex.toml", ":16:14:", "invalid regex"),
    (
        "missing-interface.toml",
        ":12:6:",
        "interface \"uart2\" is not declared",
    ),
    ("wrong-type.toml", ":7:8:", "expected u32"),
];

#[test]
fn board_file_mistakes_name_the_place_and_stop_everything() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let out_s = out.to_str().expect("utf-8");
    for (file, place, words) in CASES {
        let path = format!("fixtures/boards/bad/{file}");
        for args in [
            vec!["check-board", path.as_str()],
            vec!["run", "--board", path.as_str(), "--out", out_s],
        ] {
            let run = hilsec(&args, tmp.path(), Duration::from_secs(30));
            assert_eq!(run.code(), 2, "{args:?}: {}", run.stderr);
            let expected = format!("{path}{place}");
            assert!(
                run.stderr.contains(&expected),
                "{args:?} names {expected}: {}",
                run.stderr
            );
            assert!(
                run.stderr.contains(words),
                "{args:?} says {words:?}: {}",
                run.stderr
            );
            assert!(
                run.stderr.contains("help:"),
                "{args:?} says what to do: {}",
                run.stderr
            );
            assert!(!out.join("journal.jsonl").exists(), "{args:?} ran nothing");
        }
    }
}

#[test]
fn unreadable_and_non_text_board_files_are_reported() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("no-such-board.toml");
    let binary = tmp.path().join("binary.toml");
    fs::write(&binary, b"[model]\nname = \"\xff\xfe\"\n").expect("write");
    let empty_dir = tmp.path().join("empty");
    fs::create_dir(&empty_dir).expect("mkdir");
    for (p, words) in [
        (&missing, "cannot read board file"),
        (&binary, "not UTF-8"),
        (&empty_dir, "holds no board files"),
    ] {
        let p_s = p.to_str().expect("utf-8");
        let run = hilsec(&["check-board", p_s], tmp.path(), Duration::from_secs(30));
        assert_eq!(run.code(), 2, "{p_s}: {}", run.stderr);
        assert!(
            run.stderr.contains(p_s) && run.stderr.contains(words),
            "{p_s}: {}",
            run.stderr
        );
    }
}

#[test]
fn every_problem_of_every_file_is_reported_in_one_pass() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = hilsec(
        &["check-board", "fixtures/boards/bad"],
        tmp.path(),
        Duration::from_secs(30),
    );
    assert_eq!(run.code(), 2);
    for (file, place, _) in CASES {
        assert!(
            run.stderr.contains(&format!("{file}{place}")),
            "{file}: {}",
            run.stderr
        );
    }
}

#[test]
fn the_shipped_boards_are_valid() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for p in [
        "boards/sim",
        "fixtures/boards/hostile.toml",
        "boards/examples",
        "boards/qemu",
        "boards/renode",
    ] {
        let run = hilsec(&["check-board", p], tmp.path(), Duration::from_secs(30));
        assert_eq!(run.code(), 0, "{p}: {}", run.stderr);
    }
}
