//! The emulated regression run: `boards/qemu/` (the reference firmware in QEMU, two units of
//! the secure build and one of each weak build) through the password and update suites. Each
//! build gets exactly the verdicts its weakness earns, the evidence holds the firmware's own
//! console output and the debug-port reads, and no QEMU survives the run, an interrupted run
//! or a killed harness.
//!
//! Needs `qemu-system-arm` and the firmware in `target/firmware/` (the test command installs
//! and builds both); outside CI a missing QEMU is a loud skip.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

/// `boards/qemu/hilref-f4.toml` copied into `dir` with its paths made absolute and every QEMU
/// named `marker-<unit>` (`-name`), so the test finds its own emulators by command line.
fn qemu_fleet_copy(dir: &Path, marker: &str) -> PathBuf {
    let text = fs::read_to_string(repo_root().join("boards/qemu/hilref-f4.toml")).expect("board");
    let root = repo_root().display().to_string();
    let text = text
        .replace("{board.dir}/../..", &root)
        .replace("\"../../fixtures", &format!("\"{root}/fixtures"))
        .replace(
            "console = \"console\"\n",
            &format!("console = \"console\"\nargs = [\"-name\", \"{marker}-{{unit.name}}\"]\n"),
        );
    assert!(text.contains(marker), "marker inserted");
    let boards = dir.join("boards");
    fs::create_dir_all(&boards).expect("boards dir");
    fs::write(boards.join("hilref-f4.toml"), text).expect("write board");
    boards
}

/// What each build must get: the tests it fails; everything else of the two suites passes.
fn expected_failures(unit: &str) -> &'static [&'static str] {
    match unit {
        "hilref-weak-password" => &["password.universal-default-rejected"],
        "hilref-weak-signature" => &[
            "update.rejects-signature-bitflip",
            "update.rejects-unsigned",
            "update.rejects-wrong-key",
            "update.rejects-transplant-signature",
        ],
        "hilref-weak-rollback" => &["update.rejects-rollback"],
        _ => &[],
    }
}

#[test]
fn each_build_of_the_reference_firmware_gets_the_verdicts_of_its_weakness() {
    if !have_qemu() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let marker = format!("qf{}", std::process::id());
    let boards = qemu_fleet_copy(tmp.path(), &marker);
    let out = tmp.path().join("out");
    let (b, o) = (
        boards.to_str().expect("utf-8"),
        out.to_str().expect("utf-8"),
    );
    let run = hilsec(
        &[
            "run", "--board", b, "--out", o, "--suite", "password", "--suite", "update",
        ],
        tmp.path(),
        Duration::from_secs(600),
    );
    assert_eq!(run.code(), 1, "weak builds fail; stderr:\n{}", run.stderr);
    let results = results(&out);
    let records = results["tests"].as_array().expect("tests");
    let units = [
        "hilref-secure-1",
        "hilref-secure-2",
        "hilref-weak-password",
        "hilref-weak-signature",
        "hilref-weak-rollback",
    ];
    let mut wrong = Vec::new();
    for unit in units {
        let mine: Vec<&serde_json::Value> = records.iter().filter(|r| r["board"] == unit).collect();
        assert_eq!(mine.len(), 20, "{unit}: every test of both suites ran");
        for r in mine {
            let test = r["test"].as_str().expect("test id");
            // The reference firmware has no network: no address to scan, no broker.
            let want = if matches!(
                test,
                "password.no-undeclared-surfaces" | "password.broker-requires-auth"
            ) {
                "not_applicable"
            } else if expected_failures(unit).contains(&test) {
                "fail"
            } else {
                "pass"
            };
            if r["verdict"] != want {
                wrong.push(format!(
                    "{unit} {test}: {} (want {want}): {}",
                    r["verdict"], r["message"]
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "verdicts:\n{}", wrong.join("\n"));

    // The firmware's own console output is evidence: the boot banner arrived before the first
    // test (kept because the console was connected when QEMU started).
    let ev = |unit: &str, test: &str| {
        fs::read_to_string(out.join("evidence").join(unit).join(format!("{test}.log")))
            .unwrap_or_else(|e| panic!("evidence of {unit} {test}: {e}"))
    };
    let first = ev("hilref-secure-1", "password.universal-default-rejected");
    assert!(first.contains("HilRef"), "{first}");
    assert!(first.contains("login: "), "{first}");
    // The installed image is read through the debug port before and after a refused image.
    let refused = ev("hilref-secure-1", "update.rejects-payload-bitflip");
    assert!(refused.contains("0x20010000"), "{refused}");
    assert!(refused.contains("unchanged"), "{refused}");
    // The labels' passwords never reach an artefact.
    for f in files_under(&out) {
        let text = fs::read_to_string(&f).unwrap_or_default();
        assert!(
            !text.contains("Tq8#vN3m!Rz6"),
            "{} holds a password",
            f.display()
        );
    }
    let left = survivors_after(&marker, Duration::from_secs(10));
    assert!(left.is_empty(), "QEMU outlived the run: {left:?}");
}

#[test]
fn the_debug_port_lock_test_finds_the_open_gdb_stub_of_production_builds() {
    if !have_qemu() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let marker = format!("qd{}", std::process::id());
    let boards = qemu_fleet_copy(tmp.path(), &marker);
    let out = tmp.path().join("out");
    let (b, o) = (
        boards.to_str().expect("utf-8"),
        out.to_str().expect("utf-8"),
    );
    let run = hilsec(
        &["run", "--board", b, "--out", o, "--suite", "debug"],
        tmp.path(),
        Duration::from_secs(300),
    );
    assert_eq!(run.code(), 1, "open ports fail; stderr:\n{}", run.stderr);
    let results = results(&out);
    let records = results["tests"].as_array().expect("tests");
    assert_eq!(records.len(), 5, "one lock test per unit");
    // The flash's first words: the firmware's initial stack pointer and reset vector, as the
    // ELF holds them.
    for r in records {
        assert_eq!(r["test"], "debug.port-locked");
        assert_eq!(r["verdict"], "fail", "{r}");
        let msg = r["message"].as_str().expect("message");
        assert!(
            msg.contains("is open") && msg.contains("16 bytes at 0x08000000"),
            "{msg}"
        );
        let unit = r["board"].as_str().expect("unit");
        let log = fs::read_to_string(
            out.join("evidence")
                .join(unit)
                .join("debug.port-locked.log"),
        )
        .expect("evidence");
        assert!(log.contains("read 16 bytes at 0x08000000"), "{log}");
        assert!(log.contains("nothing is written"), "{log}");
    }
    let left = survivors_after(&marker, Duration::from_secs(10));
    assert!(left.is_empty(), "QEMU outlived the run: {left:?}");
}

#[test]
fn an_interrupted_or_killed_run_leaves_no_qemu_behind() {
    if !have_qemu() {
        return;
    }
    for (sig, tag) in [(libc::SIGINT, "int"), (libc::SIGKILL, "kill")] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let marker = format!("q{tag}{}", std::process::id());
        let boards = qemu_fleet_copy(tmp.path(), &marker);
        let out = tmp.path().join("out");
        let (b, o) = (
            boards.to_str().expect("utf-8"),
            out.to_str().expect("utf-8"),
        );
        let mut run = spawn(
            &["run", "--board", b, "--out", o, "--suite", "password"],
            tmp.path(),
        );
        let seen = wait_for_journal(&out, 1, Duration::from_secs(120));
        assert!(seen >= 1, "a test finished before the signal");
        assert!(
            !processes_with(&marker).is_empty(),
            "the emulators run while the suite does"
        );
        signal(run.child.id(), sig);
        if sig == libc::SIGINT {
            let done = run.finish(Duration::from_secs(60));
            assert_eq!(done.code(), 130, "stderr:\n{}", done.stderr);
        } else {
            let _ = run.child.wait();
        }
        let left = survivors_after(&marker, Duration::from_secs(10));
        assert!(
            left.is_empty(),
            "QEMU outlived the harness ({tag}): {left:?}"
        );
    }
}
