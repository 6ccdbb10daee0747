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

/// Copies the SimPlug board with one unit and extra emulator arguments.
fn plug_board(dir: &std::path::Path, name: &str, extra: &[&str]) -> std::path::PathBuf {
    let text = fs::read_to_string(repo_root().join("boards/sim/simplug-s1.toml")).expect("board");
    let first = text.find("\n[[unit]]").expect("unit");
    let second = text[first + 9..]
        .find("\n[[unit]]")
        .map(|i| first + 9 + i)
        .unwrap_or(text.len());
    let extra: String = extra.iter().map(|a| format!("\"{a}\", ")).collect();
    let text = rebase_fixture_paths(&text[..second])
        .replace("\"--https\",", &format!("\"--https\", {extra}"));
    let path = dir.join(name);
    fs::write(&path, text).expect("write board");
    path
}

#[test]
fn a_shortened_support_period_fails_against_the_baseline() {
    require_simdev();
    let tmp = tempfile::tempdir().expect("tempdir");
    let before = plug_board(tmp.path(), "before.toml", &["--support-end", "2031-06-30"]);
    let after = plug_board(tmp.path(), "after.toml", &[]);
    let out1 = tmp.path().join("run1");
    let out2 = tmp.path().join("run2");
    let run1 = hilsec(
        &[
            "run",
            "--suite",
            "disclosure",
            "--board",
            before.to_str().expect("utf-8"),
            "--out",
            out1.to_str().expect("utf-8"),
        ],
        tmp.path(),
        Duration::from_secs(120),
    );
    assert_eq!(run1.code(), 0, "{}", run1.stderr);
    let r1 = results(&out1);
    assert!(
        record(&r1, "sim-plug-1", "support.period-published")["message"]
            .as_str()
            .unwrap_or("")
            .contains("2031-06-30")
    );
    let baseline = out1.join("results.json");
    let run2 = hilsec(
        &[
            "run",
            "--suite",
            "disclosure",
            "--board",
            after.to_str().expect("utf-8"),
            "--baseline",
            baseline.to_str().expect("utf-8"),
            "--out",
            out2.to_str().expect("utf-8"),
        ],
        tmp.path(),
        Duration::from_secs(120),
    );
    assert_eq!(run2.code(), 1, "{}", run2.stderr);
    let r2 = results(&out2);
    let t = record(&r2, "sim-plug-1", "support.period-not-shortened");
    assert_eq!(t["verdict"], "fail", "{t}");
    assert!(
        t["message"].as_str().unwrap_or("").contains("2030-12-31"),
        "{t}"
    );

    // The same period again is not shortened.
    let out3 = tmp.path().join("run3");
    let run3 = hilsec(
        &[
            "run",
            "--suite",
            "disclosure",
            "--board",
            after.to_str().expect("utf-8"),
            "--baseline",
            out2.join("results.json").to_str().expect("utf-8"),
            "--out",
            out3.to_str().expect("utf-8"),
        ],
        tmp.path(),
        Duration::from_secs(120),
    );
    assert_eq!(run3.code(), 0, "{}", run3.stderr);
    assert_eq!(
        verdict(
            &results(&out3),
            "sim-plug-1",
            "support.period-not-shortened"
        ),
        "pass"
    );
}

#[test]
fn a_bad_baseline_is_a_usage_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bad = tmp.path().join("bad.json");
    fs::write(&bad, "{\"run\": {}, \"tests\": ").expect("write");
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
    assert_eq!(run.code(), 2, "{}", run.stderr);
    assert!(run.stderr.contains("bad.json:1:"), "{}", run.stderr);
    assert!(!out.join("journal.jsonl").exists());
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
