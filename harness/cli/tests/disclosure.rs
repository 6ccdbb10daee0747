//! The disclosure suite against the simulated manufacturer pages (HTTPS on loopback, a CA the
//! units generate), `securitytxt check URL`, a shortened support period against a baseline, and
//! servers that stall, stream forever, loop, redirect to a sign-in page or present a certificate
//! for another name.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn fleet_disclosure_verdicts() {
    require_simdev();
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let run = hilsec(
        &[
            "run",
            "--suite",
            "disclosure",
            "--out",
            out.to_str().expect("utf-8"),
        ],
        tmp.path(),
        Duration::from_secs(180),
    );
    assert_eq!(run.code(), 1, "stderr:\n{}", run.stderr);
    let r = results(&out);
    for unit in ["sim-plug-1", "sim-plug-2"] {
        for t in [
            "disclosure.policy-published",
            "disclosure.security-txt",
            "disclosure.csaf-provider",
            "support.period-published",
            "identity.model-designation",
        ] {
            assert_eq!(
                verdict(&r, unit, t),
                "pass",
                "{unit} {t}: {}",
                record(&r, unit, t)["message"]
            );
        }
        assert_eq!(
            verdict(&r, unit, "support.period-not-shortened"),
            "not_applicable"
        );
    }
    for unit in ["sim-cam-1", "sim-cam-2"] {
        assert_eq!(verdict(&r, unit, "disclosure.policy-published"), "fail");
        assert_eq!(verdict(&r, unit, "disclosure.security-txt"), "fail");
    }
    for unit in ["sim-hub-1", "sim-hub-2"] {
        let st = record(&r, unit, "disclosure.security-txt");
        assert_eq!(st["verdict"], "fail", "{st}");
        assert!(
            st["message"].as_str().unwrap_or("").contains("expired"),
            "{st}"
        );
        assert_eq!(verdict(&r, unit, "support.period-published"), "fail");
        assert_eq!(verdict(&r, unit, "disclosure.policy-published"), "pass");
    }
    let ev = fs::read_to_string(out.join("evidence/sim-plug-1/disclosure.policy-published.log"))
        .expect("evidence keeps the page");
    assert!(
        ev.contains("HTTP 200") && ev.contains("security@simplug.example"),
        "{ev}"
    );
}

/// Copies a board of boards/sim/ with its first unit only, extra emulator arguments and
/// text replacements.
fn one_unit_board(
    dir: &std::path::Path,
    source: &str,
    name: &str,
    extra: &[&str],
    edits: &[(&str, &str)],
) -> std::path::PathBuf {
    let text = fs::read_to_string(repo_root().join("boards/sim").join(source)).expect("board");
    let first = text.find("\n[[unit]]").expect("unit");
    let second = text[first + 9..]
        .find("\n[[unit]]")
        .map(|i| first + 9 + i)
        .unwrap_or(text.len());
    let extra: String = extra.iter().map(|a| format!("\"{a}\", ")).collect();
    let mut text = rebase_fixture_paths(&text[..second])
        .replace("\"--https\",", &format!("\"--https\", {extra}"));
    for (from, to) in edits {
        assert!(text.contains(from), "{source} has no {from:?}");
        text = text.replace(from, to);
    }
    let path = dir.join(name);
    fs::write(&path, text).expect("write board");
    path
}

/// Copies the SimPlug board with one unit and extra emulator arguments.
fn plug_board(dir: &std::path::Path, name: &str, extra: &[&str]) -> std::path::PathBuf {
    one_unit_board(dir, "simplug-s1.toml", name, extra, &[])
}

/// `hilsec run --suite disclosure --board BOARD [--baseline FILE] --out OUT`.
fn run_disclosure(
    dir: &std::path::Path,
    board: &std::path::Path,
    baseline: Option<&std::path::Path>,
    out: &std::path::Path,
) -> Finished {
    let mut args = vec![
        "run",
        "--suite",
        "disclosure",
        "--board",
        board.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ];
    if let Some(b) = baseline {
        args.extend(["--baseline", b.to_str().expect("utf-8")]);
    }
    hilsec(&args, dir, Duration::from_secs(180))
}

fn message<'a>(r: &'a serde_json::Value, unit: &str, test: &str) -> &'a str {
    record(r, unit, test)["message"].as_str().unwrap_or("")
}

/// support.period-not-shortened against baselines written by real runs: shortened → fail,
/// the same end date → pass, the end date withdrawn → fail, and a baseline in the old
/// results.json format (no structured data) → inconclusive, saying why.
#[test]
fn the_support_period_is_compared_with_the_baseline_end_date() {
    require_simdev();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let before = plug_board(dir, "before.toml", &["--support-end", "2031-06-30"]);
    let after = plug_board(dir, "after.toml", &[]);
    // The manufacturer replaces the support page by one that states no end date.
    let withdrawn = one_unit_board(
        dir,
        "simplug-s1.toml",
        "withdrawn.toml",
        &[],
        &[(
            "support_url = \"https://localhost:{emulator.https_port}/support\"",
            "support_url = \"https://localhost:{emulator.https_port}/security/disclosure-policy\"",
        )],
    );
    const UNIT: &str = "sim-plug-1";
    const NOT_SHORTENED: &str = "support.period-not-shortened";

    let out1 = dir.join("run1");
    let run1 = run_disclosure(dir, &before, None, &out1);
    assert_eq!(run1.code(), 0, "{}", run1.stderr);
    let r1 = results(&out1);
    let published = record(&r1, UNIT, "support.period-published");
    assert_eq!(published["verdict"], "pass", "{published}");
    assert_eq!(
        published["data"],
        serde_json::json!({"support_end": "2031-06-30"}),
        "{published}"
    );
    assert_eq!(r1["run"]["schema"], 2);
    assert_eq!(verdict(&r1, UNIT, NOT_SHORTENED), "not_applicable");

    // Shortened: 2031-06-30 → 2030-12-31.
    let out2 = dir.join("run2");
    let run2 = run_disclosure(dir, &after, Some(&out1.join("results.json")), &out2);
    assert_eq!(run2.code(), 1, "{}", run2.stderr);
    let r2 = results(&out2);
    let t = record(&r2, UNIT, NOT_SHORTENED);
    assert_eq!(t["verdict"], "fail", "{t}");
    let m = message(&r2, UNIT, NOT_SHORTENED);
    assert!(m.contains("2031-06-30") && m.contains("2030-12-31"), "{m}");
    assert_eq!(
        t["data"],
        serde_json::json!({"support_end": "2030-12-31", "baseline_support_end": "2031-06-30"})
    );

    // The same end date again: not shortened.
    let out3 = dir.join("run3");
    let run3 = run_disclosure(dir, &after, Some(&out2.join("results.json")), &out3);
    assert_eq!(run3.code(), 0, "{}", run3.stderr);
    let r3 = results(&out3);
    assert_eq!(
        verdict(&r3, UNIT, NOT_SHORTENED),
        "pass",
        "{}",
        message(&r3, UNIT, NOT_SHORTENED)
    );

    // Withdrawn: the page no longer states an end date.
    let out4 = dir.join("run4");
    let run4 = run_disclosure(dir, &withdrawn, Some(&out3.join("results.json")), &out4);
    assert_eq!(run4.code(), 1, "{}", run4.stderr);
    let r4 = results(&out4);
    assert_eq!(verdict(&r4, UNIT, "support.period-published"), "fail");
    assert_eq!(
        record(&r4, UNIT, "support.period-published")["data"],
        serde_json::json!({"support_end": null})
    );
    let t = record(&r4, UNIT, NOT_SHORTENED);
    assert_eq!(t["verdict"], "fail", "{t}");
    let m = message(&r4, UNIT, NOT_SHORTENED);
    assert!(m.contains("2030-12-31") && m.contains("withdrawn"), "{m}");

    // A baseline in the old format: run1's file as earlier versions wrote it (no schema, no
    // data). Its message still says "ends on 2031-06-30", but text is not read as data.
    let mut old = results(&out1);
    old["run"].as_object_mut().expect("run").remove("schema");
    for t in old["tests"].as_array_mut().expect("tests") {
        t.as_object_mut().expect("record").remove("data");
    }
    old.as_object_mut().expect("file").remove("model_findings");
    let old_file = dir.join("old-results.json");
    fs::write(&old_file, serde_json::to_string_pretty(&old).expect("json")).expect("write");
    let out5 = dir.join("run5");
    let run5 = run_disclosure(dir, &after, Some(&old_file), &out5);
    assert_eq!(run5.code(), 0, "{}", run5.stderr);
    let r5 = results(&out5);
    let t = record(&r5, UNIT, NOT_SHORTENED);
    assert_eq!(t["verdict"], "inconclusive", "{t}");
    let m = message(&r5, UNIT, NOT_SHORTENED);
    assert!(
        m.contains("old results.json format") && m.contains("Re-run the baseline"),
        "{m}"
    );
}

/// A baseline run that found no end date gives nothing to compare with: not a pass.
#[test]
fn a_baseline_without_an_end_date_is_not_a_comparison() {
    require_simdev();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let hub = one_unit_board(dir, "simhub-h2.toml", "hub.toml", &[], &[]);
    let out1 = dir.join("run1");
    let run1 = run_disclosure(dir, &hub, None, &out1);
    assert_eq!(run1.code(), 1, "{}", run1.stderr);
    let r1 = results(&out1);
    assert_eq!(
        record(&r1, "sim-hub-1", "support.period-published")["data"],
        serde_json::json!({"support_end": null})
    );
    let out2 = dir.join("run2");
    let run2 = run_disclosure(dir, &hub, Some(&out1.join("results.json")), &out2);
    assert_eq!(run2.code(), 1, "{}", run2.stderr);
    let r2 = results(&out2);
    let t = record(&r2, "sim-hub-1", "support.period-not-shortened");
    assert_eq!(t["verdict"], "not_applicable", "{t}");
    assert!(
        message(&r2, "sim-hub-1", "support.period-not-shortened").contains("found no end date"),
        "{t}"
    );
}

#[test]
fn a_bad_baseline_is_a_usage_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (text, want) in [
        ("{\"run\": {}, \"tests\": ", "bad.json:1:"),
        (
            "{\"tests\": []}",
            "bad.json:1:13: not a hilsec results.json: missing field `run`",
        ),
        ("[1, 2]", "not a hilsec results.json"),
    ] {
        let bad = tmp.path().join("bad.json");
        fs::write(&bad, text).expect("write");
        let out = tmp.path().join("out");
        let run = hilsec(
            &[
                "run",
                "--baseline",
                bad.to_str().expect("utf-8"),
                "--out",
                out.to_str().expect("utf-8"),
            ],
            tmp.path(),
            Duration::from_secs(30),
        );
        assert_eq!(run.code(), 2, "{text}: {}", run.stderr);
        assert!(run.stderr.contains(want), "{text}: {}", run.stderr);
        assert!(!out.join("journal.jsonl").exists());
    }
}

/// Starts one simulated unit with HTTPS; returns (child, https port, CA path).
fn https_unit(model: &str, extra: &[&str]) -> (std::process::Child, String, String) {
    let exe = hilsec_bin().with_file_name("hilsec-simdev");
    let mut child = Command::new(exe)
        .args([
            "--model",
            model,
            "--unit",
            "u1",
            "--serial",
            "S-1",
            "--mac",
            "02:00:00:00:00:09",
            "--password",
            "Zq8#vN3m!Kp7",
            "--https",
        ])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the simulated unit");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready line");
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{k}=")).map(str::to_string))
            .unwrap_or_else(|| panic!("no {k}= in {line:?}"))
    };
    let port = field("https").rsplit(':').next().expect("port").to_string();
    (child, port, field("ca"))
}

#[test]
fn securitytxt_check_url() {
    require_simdev();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut plug, port, ca) = https_unit("plug", &[]);
    let origin = format!("https://localhost:{port}");
    let ok = hilsec(
        &["securitytxt", "check", &origin, "--ca", &ca, "--json"],
        tmp.path(),
        Duration::from_secs(60),
    );
    assert_eq!(ok.code(), 0, "{}{}", ok.stdout, ok.stderr);
    let v: serde_json::Value = serde_json::from_str(&ok.stdout).expect("json");
    assert_eq!(v["valid"], true);
    assert!(v["recommendations"]
        .as_array()
        .expect("list")
        .iter()
        .any(|r| r["code"] == "not_signed"));
    // Without the lab CA the certificate is not trusted: no answer, exit 2.
    let untrusted = hilsec(
        &["securitytxt", "check", &origin],
        tmp.path(),
        Duration::from_secs(60),
    );
    assert_eq!(untrusted.code(), 2, "{}", untrusted.stderr);
    drop(plug.stdin.take());
    let _ = plug.wait();

    let (mut hub, port, ca) = https_unit("hub", &[]);
    let url = format!("https://localhost:{port}/.well-known/security.txt");
    let expired = hilsec(
        &["securitytxt", "check", &url, "--ca", &ca, "--json"],
        tmp.path(),
        Duration::from_secs(60),
    );
    assert_eq!(expired.code(), 1, "{}", expired.stderr);
    let v: serde_json::Value = serde_json::from_str(&expired.stdout).expect("json");
    assert!(
        v["errors"]
            .as_array()
            .expect("list")
            .iter()
            .any(|e| e["code"] == "expired"),
        "{v}"
    );
    // --now before the expiry: valid then.
    let then = hilsec(
        &[
            "securitytxt",
            "check",
            &url,
            "--ca",
            &ca,
            "--now",
            "2023-06-01T00:00:00Z",
            "--json",
        ],
        tmp.path(),
        Duration::from_secs(60),
    );
    assert_eq!(then.code(), 0, "{}", then.stdout);
    drop(hub.stdin.take());
    let _ = hub.wait();
}

#[test]
fn misbehaving_servers_get_clear_verdicts() {
    require_simdev();
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let run = hilsec(
        &[
            "run",
            "--suite",
            "disclosure",
            "--board",
            "fixtures/boards/hostile-http.toml",
            "--out",
            out.to_str().expect("utf-8"),
        ],
        tmp.path(),
        Duration::from_secs(120),
    );
    assert!(run.code() == 1 || run.code() == 3, "{}", run.stderr);
    assert!(
        run.elapsed < Duration::from_secs(90),
        "took {:?}",
        run.elapsed
    );
    let r = results(&out);
    let msg = |u: &str, t: &str| {
        record(&r, u, t)["message"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(
        verdict(&r, "http-hostile", "disclosure.policy-published"),
        "error",
        "stall: {}",
        msg("http-hostile", "disclosure.policy-published")
    );
    assert!(msg("http-hostile", "disclosure.policy-published").contains("within"));
    assert_eq!(
        verdict(&r, "http-hostile", "disclosure.security-txt"),
        "error"
    );
    assert!(
        msg("http-hostile", "disclosure.security-txt").contains("redirect"),
        "{}",
        msg("http-hostile", "disclosure.security-txt")
    );
    // An endless body is cut at the cap and judged on what came.
    assert_eq!(
        verdict(&r, "http-hostile", "support.period-published"),
        "fail"
    );
    // A redirect to a sign-in page is not a published document.
    assert_eq!(
        verdict(&r, "http-hostile", "disclosure.csaf-provider"),
        "fail"
    );
    for t in [
        "disclosure.policy-published",
        "disclosure.security-txt",
        "support.period-published",
    ] {
        let m = msg("http-wrong-name", t);
        assert_eq!(verdict(&r, "http-wrong-name", t), "error", "{t}: {m}");
        assert!(m.to_lowercase().contains("certificate"), "{t}: {m}");
    }
}

#[test]
fn model_designation_over_modbus_rtu_on_a_pseudo_terminal() {
    require_simdev();
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let run = hilsec(
        &[
            "run",
            "--suite",
            "disclosure",
            "--board",
            "fixtures/boards/modbus-rtu.toml",
            "--out",
            out.to_str().expect("utf-8"),
        ],
        tmp.path(),
        Duration::from_secs(60),
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let r = results(&out);
    let t = record(&r, "rtu-hub-1", "identity.model-designation");
    assert_eq!(t["verdict"], "pass", "{t}");
    assert!(
        t["message"].as_str().unwrap_or("").contains("model_name"),
        "{t}"
    );
    let ev = fs::read_to_string(out.join("evidence/rtu-hub-1/identity.model-designation.log"))
        .expect("evidence");
    assert!(
        ev.contains("Modbus RTU") && ev.contains("read Input 0 x3"),
        "{ev}"
    );
}
