//! `list --baseline`: applicability of the tests that compare with an earlier run is shown as
//! `run` decides it, per unit.

mod common;

use std::time::Duration;

use common::*;

const NOT_SHORTENED: &str = "support.period-not-shortened";
const BOARD: &str = "boards/sim/simplug-s1.toml";

/// The reason `list` gives for `unit` of SimPlug S1, if it lists the unit as not applicable.
fn listed_reason(stdout: &str, unit: &str) -> Option<String> {
    let prefix = format!("      SimPlug S1 [{unit}]: not applicable: ");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(str::to_string)
}

#[test]
fn list_shows_applicability_as_run_decides_it_with_and_without_a_baseline() {
    require_simdev();
    let tmp = tempfile::tempdir().expect("tempdir");
    let quick = Duration::from_secs(60);
    let slow = Duration::from_secs(180);

    let list = hilsec(
        &["list", "--board", BOARD, "--test", NOT_SHORTENED],
        tmp.path(),
        quick,
    );
    assert_eq!(list.code(), 0, "{}", list.stderr);
    assert!(
        list.stdout.contains(
            "SimPlug S1 [sim-plug-1, sim-plug-2]: not applicable: no baseline: run with --baseline FILE"
        ),
        "{}",
        list.stdout
    );

    // A real baseline of sim-plug-1 only: a board file with that unit alone.
    let text =
        rebase_fixture_paths(&std::fs::read_to_string(repo_root().join(BOARD)).expect("board"));
    let (head, _) = text
        .split_once("\n[[unit]]\nname = \"sim-plug-2\"")
        .expect("sim-plug-2 is the second unit");
    let one = tmp.path().join("plug-1.toml");
    std::fs::write(&one, head).expect("one-unit board");
    let base_out = tmp.path().join("base");
    let base = hilsec(
        &[
            "run",
            "--board",
            one.to_str().expect("utf-8"),
            "--test",
            "support.period-published",
            "--out",
            base_out.to_str().expect("utf-8"),
        ],
        tmp.path(),
        slow,
    );
    assert!(base.code() == 0 || base.code() == 1, "{}", base.stderr);
    let baseline = base_out.join("results.json");
    let b = baseline.to_str().expect("utf-8");

    let list = hilsec(
        &[
            "list",
            "--board",
            BOARD,
            "--test",
            NOT_SHORTENED,
            "--baseline",
            b,
        ],
        tmp.path(),
        quick,
    );
    assert_eq!(list.code(), 0, "{}", list.stderr);
    assert!(
        list.stdout.contains("SimPlug S1 [sim-plug-1]: applies"),
        "{}",
        list.stdout
    );
    let reason = listed_reason(&list.stdout, "sim-plug-2")
        .unwrap_or_else(|| panic!("sim-plug-2 not applicable: {}", list.stdout));
    assert!(reason.contains("sim-plug-2"), "{reason}");

    // `run` with the same baseline decides the same, with the same reason.
    let out = tmp.path().join("out");
    let run = hilsec(
        &[
            "run",
            "--board",
            BOARD,
            "--test",
            "support.*",
            "--baseline",
            b,
            "--out",
            out.to_str().expect("utf-8"),
        ],
        tmp.path(),
        slow,
    );
    assert!(run.code() == 0 || run.code() == 1, "{}", run.stderr);
    let r = results(&out);
    assert_ne!(verdict(&r, "sim-plug-1", NOT_SHORTENED), "not_applicable");
    let rec = record(&r, "sim-plug-2", NOT_SHORTENED);
    assert_eq!(rec["verdict"], "not_applicable");
    assert_eq!(rec["message"], reason.as_str());

    // A baseline that is not a results.json is a usage error, as for `run`.
    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, "{}").expect("bad baseline");
    let bad_run = hilsec(
        &["list", "--baseline", bad.to_str().expect("utf-8")],
        tmp.path(),
        quick,
    );
    assert_eq!(bad_run.code(), 2, "{}", bad_run.stderr);
    assert!(bad_run.stderr.contains("bad.json"), "{}", bad_run.stderr);
}
