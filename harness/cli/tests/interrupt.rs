//! A run that is stopped: SIGKILL leaves the journal of every finished test; Ctrl-C (SIGINT)
//! stops cleanly, writes results for what finished, leaves no device process behind and exits
//! 130 whatever the verdicts so far.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn sigkill_mid_run_leaves_a_usable_journal_and_no_orphans() {
    require_simdev();
    let tmp = tempfile::tempdir().expect("tempdir");
    let marker = format!("k{}", std::process::id());
    let boards = fleet_copy(tmp.path(), &marker);
    let out = tmp.path().join("out");
    let (b, o) = (
        boards.to_str().expect("utf-8"),
        out.to_str().expect("utf-8"),
    );
    let mut run = spawn(&["run", "--board", b, "--out", o], tmp.path());

    let seen = wait_for_journal(&out, 4, Duration::from_secs(60));
    assert!(seen >= 4, "tests finished before the kill");
    signal(run.child.id(), libc::SIGKILL);
    let _ = run.child.wait();

    let lines = journal(&out);
    assert!(
        lines.len() >= seen,
        "every line seen before the kill is still there"
    );
    assert!(
        !out.join("results.json").exists(),
        "the run was killed mid-way (results.json is written at the end)"
    );
    for l in &lines {
        assert!(l["verdict"].is_string() && l["test"].is_string() && l["board"].is_string());
    }
    let left = survivors_after(&marker, Duration::from_secs(10));
    assert!(
        left.is_empty(),
        "device processes outlived the harness: {left:?}"
    );
}

/// The run is interrupted after a test has already failed (the fleet's weak models fail early):
/// the exit status is still 130, so a script can tell "stopped" from "the device failed".
#[test]
fn ctrl_c_stops_cleanly_writes_results_and_exits_130() {
    require_simdev();
    let tmp = tempfile::tempdir().expect("tempdir");
    let marker = format!("i{}", std::process::id());
    let boards = fleet_copy(tmp.path(), &marker);
    let out = tmp.path().join("out");
    let (b, o) = (
        boards.to_str().expect("utf-8"),
        out.to_str().expect("utf-8"),
    );
    let run = spawn(&["run", "--board", b, "--out", o], tmp.path());

    let (seen, failed) = wait_for_verdict(&out, "fail", Duration::from_secs(120));
    assert!(
        failed,
        "a test failed before the interrupt ({seen} finished)"
    );
    signal(run.child.id(), libc::SIGINT);
    let done = run.finish(Duration::from_secs(30));
    assert_eq!(
        done.code(),
        130,
        "interrupted after a fail: exit 130; stderr:\n{}",
        done.stderr
    );
    assert!(done.stderr.contains("interrupted"), "{}", done.stderr);

    let results = results(&out);
    assert_eq!(results["run"]["interrupted"], true);
    assert!(
        results["tests"]
            .as_array()
            .expect("tests")
            .iter()
            .any(|t| t["verdict"] == "fail"),
        "the fail seen before the interrupt is in results.json"
    );
    let recorded = results["tests"].as_array().expect("tests").len();
    assert!(recorded >= seen, "results.json keeps what finished");
    assert_eq!(journal(&out).len(), recorded);
    assert!(out.join("junit.xml").is_file());
    let left = survivors_after(&marker, Duration::from_secs(10));
    assert!(
        left.is_empty(),
        "device processes outlived the run: {left:?}"
    );
}
