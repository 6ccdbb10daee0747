//! Rules the runner applies to every unit, whatever the suite: the answering unit must be the
//! one the board file describes, and a unit left stuck by a failed action is brought back
//! before its next test.

mod common;

use std::fs;
use std::path::Path;
use std::time::Duration;

use common::*;

fn run_suite(dir: &Path, board: &Path, suite: &str) -> (Finished, serde_json::Value) {
    require_simdev();
    let out = dir.join("out");
    let done = hilsec(
        &[
            "run",
            "--board",
            board.to_str().expect("utf-8"),
            "--suite",
            suite,
            "--out",
            out.to_str().expect("utf-8"),
        ],
        dir,
        Duration::from_secs(300),
    );
    let results = results(&out);
    (done, results)
}

#[test]
fn a_unit_on_the_wrong_port_is_an_error_naming_both_identities() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The process answering claims another serial: as if the cables of two units were swapped.
    let board = one_unit_sim_board(dir.path(), "simcam-c0.toml", "swapped-cam", |t| {
        t.replacen("\"{unit.serial}\"", "\"SC0-SWAPPED-0002\"", 1)
    });
    let declared = fs::read_to_string(&board)
        .expect("board")
        .lines()
        .find_map(|l| {
            l.strip_prefix("serial = \"")
                .map(|s| s.trim_end_matches('"').to_string())
        })
        .expect("declared serial");
    let (done, results) = run_suite(dir.path(), &board, "password");
    let tests = results["tests"].as_array().expect("tests");
    let applicable: Vec<_> = tests
        .iter()
        .filter(|t| t["verdict"] != "not_applicable")
        .collect();
    assert!(!applicable.is_empty(), "no applicable test ran");
    for t in applicable {
        assert_eq!(t["verdict"], "error", "{t}");
        let m = t["message"].as_str().expect("message");
        assert!(
            m.contains("SC0-SWAPPED-0002") && m.contains(&declared),
            "the message names both identities: {m}"
        );
    }
    assert_eq!(done.code(), 3, "only errors: exit 3\n{}", done.stdout);
}

#[test]
fn a_unit_left_at_a_shell_by_a_failed_action_is_recovered_before_the_next_test() {
    let dir = tempfile::tempdir().expect("tempdir");
    let board = one_unit_sim_board(dir.path(), "simplug-s1.toml", "stuck-plug", |t| {
        // factory_reset logs in, then waits for something the unit never prints: the action
        // fails with the unit left at its shell prompt.
        let mut t = t.replacen(
            "{ send = \"factory-reset\\n\" },",
            "{ expect = 'NEVER-PRINTED-BY-THE-UNIT', timeout = \"1s\" },",
            1,
        );
        assert!(
            t.contains("NEVER-PRINTED"),
            "the factory_reset recipe changed shape"
        );
        if !t.contains("[actions.sync]") {
            t.push_str(
                "\n[actions.sync]\nsteps = [\n  { send = \"\\n\" },\n  { expect = 'login: $', timeout = \"3s\" },\n]\n",
            );
        }
        t
    });
    let (_, results) = run_suite(dir.path(), &board, "password");
    assert_eq!(
        verdict(
            &results,
            "stuck-plug",
            "password.universal-default-rejected"
        ),
        "error",
        "the broken factory_reset is an error"
    );
    assert_eq!(
        verdict(&results, "stuck-plug", "password.unit-password-accepted"),
        "pass",
        "the next test found the unit at its login prompt again: {}",
        record(&results, "stuck-plug", "password.unit-password-accepted")["message"]
    );
}

#[test]
fn an_unreachable_unit_is_not_retried_by_every_test() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A ser2net-style console on a loopback port where nothing listens: the link cannot be
    // opened. Its first test says why; the others are `error` at once with the same cause.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let board = dir.path().join("dead.toml");
    fs::write(
        &board,
        format!(
            r#"[model]
name = "Dead D1"

[declarations]
password_mechanism = "unique-per-unit"

[interfaces.console]
kind = "serial"
tcp = "127.0.0.1:{port}"
timeout = "2s"

[actions.login]
params = ["user", "password"]
secret_params = ["password"]
steps = [
  {{ send = "{{user}}\n" }},
  {{ expect = 'Password: $' }},
  {{ send = "{{password}}\n" }},
  {{ expect = '\$ $', reject = 'Login incorrect' }},
]

[[unit]]
name = "dead-1"
password = {{ value = "Xk3#pV9m!Qa2" }}
"#
        ),
    )
    .expect("write board");
    let (done, results) = run_suite(dir.path(), &board, "password");
    let unit_tests: Vec<&serde_json::Value> = results["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .filter(|t| t["verdict"] != "not_applicable")
        .collect();
    assert!(unit_tests.len() >= 3, "{results}");
    for t in &unit_tests {
        assert_eq!(t["verdict"], "error", "{t}");
    }
    let not_retried: Vec<_> = unit_tests
        .iter()
        .filter(|t| {
            t["message"]
                .as_str()
                .unwrap_or("")
                .contains("cannot be reached (not retried")
        })
        .collect();
    assert!(
        not_retried.len() + 1 >= unit_tests.len(),
        "after the first failure to open the link, the remaining tests are not retried: {unit_tests:#?}"
    );
    for t in &not_retried {
        assert!(
            t["message"]
                .as_str()
                .unwrap_or("")
                .contains(&port.to_string()),
            "the cause names the endpoint: {t}"
        );
        assert!(t["evidence"].is_null(), "nothing was exchanged: {t}");
    }
    assert_eq!(done.code(), 3);
}
