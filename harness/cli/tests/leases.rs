//! Leases on a shared bench, end to end with the real `hilsec` binary and simulated units: a
//! unit another run holds is `error` naming the holder (or waited for with --lease-wait), and a
//! holder killed with SIGKILL (it cannot release) is listed as stale and then recovered.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use common::*;
use hilsec_core::lease::{self, Attempt, LeaseSettings};

const KEY: &str = "bench-t/plug-a";
/// A quick per-unit test the simulated plug passes.
const TEST: &str = "password.unit-password-accepted";

/// A one-unit SimPlug board (`edit`ed) whose unit sets `lease = KEY`.
fn plug_board(dir: &Path, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let path = one_unit_sim_board(dir, "simplug-s1.toml", name, edit);
    // The unit is the file's last table: the key goes into it.
    let mut text = fs::read_to_string(&path).expect("board");
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!("lease = \"{KEY}\"\n"));
    fs::write(&path, text).expect("write board");
    path
}

fn run_args<'a>(
    board: &'a Path,
    out: &'a Path,
    leases: &'a Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut a = vec![
        "run",
        "--board",
        board.to_str().expect("utf-8"),
        "--test",
        TEST,
        "--out",
        out.to_str().expect("utf-8"),
        "--lease-dir",
        leases.to_str().expect("utf-8"),
    ];
    a.extend_from_slice(extra);
    a
}

fn unit_records<'a>(results: &'a serde_json::Value, unit: &str) -> Vec<&'a serde_json::Value> {
    results["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .filter(|t| t["board"] == unit)
        .collect()
}

fn hold(leases: &Path) -> lease::Lease {
    match lease::try_acquire(leases, KEY, &LeaseSettings::default()).expect("lease dir usable") {
        Attempt::Acquired { lease, recovered } => {
            assert_eq!(recovered, None);
            lease
        }
        Attempt::Held(h) => panic!("already held by {}", h.describe()),
    }
}

fn parse_time(s: &str) -> SystemTime {
    humantime::parse_rfc3339_weak(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

/// `hilsec lease list --json` of `leases`, one object per lease.
fn list_json(dir: &Path, leases: &Path) -> Vec<serde_json::Value> {
    let done = hilsec(
        &[
            "lease",
            "list",
            "--json",
            "--lease-dir",
            leases.to_str().expect("utf-8"),
        ],
        dir,
        Duration::from_secs(60),
    );
    assert_eq!(done.code(), 0, "{}", done.stderr);
    done.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// Waits (at most `limit`) until the lease of KEY is listed in `state` with `pid`.
fn wait_listed(dir: &Path, leases: &Path, state: &str, pid: u32, limit: Duration) -> bool {
    let t0 = Instant::now();
    loop {
        let found = list_json(dir, leases)
            .iter()
            .any(|e| e["key"] == KEY && e["state"] == state && e["record"]["pid"] == pid);
        if found || t0.elapsed() > limit {
            return found;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_unit_held_by_another_run_is_an_error_naming_the_holder() {
    require_simdev();
    let tmp = tempfile::tempdir().expect("tempdir");
    let leases = tmp.path().join("leases");
    let board = plug_board(tmp.path(), "lease-plug", |t| t);
    let out = tmp.path().join("out");

    let held = hold(&leases);
    let done = hilsec(
        &run_args(&board, &out, &leases, &[]),
        tmp.path(),
        Duration::from_secs(180),
    );
    assert_eq!(
        done.code(),
        3,
        "only errors: exit 3\n{}\n{}",
        done.stdout,
        done.stderr
    );
    let res = results(&out);
    let recs = unit_records(&res, "lease-plug");
    assert!(!recs.is_empty(), "no record of the unit");
    let me = std::process::id();
    for r in recs {
        assert_eq!(r["verdict"], "error", "{r}");
        let m = r["message"].as_str().expect("message");
        assert!(
            m.starts_with("unit held by ")
                && m.contains(&format!("pid {me} since "))
                && m.contains(&format!("(lease {KEY})"))
                && m.contains("--lease-wait"),
            "{m}"
        );
    }
    // The holder is listed, with this process as holder.
    let listed = list_json(tmp.path(), &leases);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["state"], "held");
    assert_eq!(listed[0]["record"]["pid"], me);
    drop(held);
    assert_eq!(list_json(tmp.path(), &leases)[0]["state"], "free");

    // Free again: the same run passes.
    let out2 = tmp.path().join("out2");
    let done = hilsec(
        &run_args(&board, &out2, &leases, &[]),
        tmp.path(),
        Duration::from_secs(180),
    );
    assert_eq!(done.code(), 0, "{}\n{}", done.stdout, done.stderr);
    assert_eq!(verdict(&results(&out2), "lease-plug", TEST), "pass");
}

#[test]
fn lease_wait_waits_for_the_holder_and_then_runs_the_unit() {
    require_simdev();
    let tmp = tempfile::tempdir().expect("tempdir");
    let leases = tmp.path().join("leases");
    let board = plug_board(tmp.path(), "waiting-plug", |t| t);

    // Held in this process until the waiting run has said it waits.
    let held = hold(&leases);
    let out = tmp.path().join("out");
    let run = spawn(
        &run_args(&board, &out, &leases, &["--lease-wait", "10m"]),
        tmp.path(),
    );
    let t0 = Instant::now();
    while !fs::read_to_string(&run.stderr)
        .unwrap_or_default()
        .contains("waiting for waiting-plug: held by ")
    {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no waiting line; stderr:\n{}",
            fs::read_to_string(&run.stderr).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let released = SystemTime::now();
    drop(held);
    let done = run.finish(Duration::from_secs(300));
    assert_eq!(done.code(), 0, "{}\n{}", done.stdout, done.stderr);
    assert!(
        done.stderr.contains("left of --lease-wait)"),
        "{}",
        done.stderr
    );
    let res = results(&out);
    let rec = record(&res, "waiting-plug", TEST);
    assert_eq!(rec["verdict"], "pass", "{rec}");
    // Second-precision slack: started_at has milliseconds, `released` is this clock's.
    assert!(
        parse_time(rec["started_at"].as_str().expect("started_at")) + Duration::from_millis(1)
            >= released,
        "the unit ran only after the holder released it: {rec}"
    );

    // Two real runs: the second, told to wait, runs the unit only after the first is done.
    let first_out = tmp.path().join("first");
    let second_out = tmp.path().join("second");
    let first_dir = tmp.path().join("first-run");
    let second_dir = tmp.path().join("second-run");
    fs::create_dir_all(&first_dir).expect("dir");
    fs::create_dir_all(&second_dir).expect("dir");
    let first = spawn(&run_args(&board, &first_out, &leases, &[]), &first_dir);
    let second = spawn(
        &run_args(&board, &second_out, &leases, &["--lease-wait", "10m"]),
        &second_dir,
    );
    let first = first.finish(Duration::from_secs(300));
    let second = second.finish(Duration::from_secs(600));
    let (a, b) = (results(&first_out), results(&second_out));
    let (ra, rb) = (
        record(&a, "waiting-plug", TEST),
        record(&b, "waiting-plug", TEST),
    );
    assert_eq!(
        rb["verdict"], "pass",
        "the waiting run: {rb}\n{}",
        second.stderr
    );
    let first_held_off = ra["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("unit held by "));
    if first_held_off {
        // The waiting run took the unit first; the other, told not to wait, never touched it.
        assert_eq!(ra["verdict"], "error", "{ra}");
    } else {
        // Both ran the unit: one after the other.
        assert_eq!(ra["verdict"], "pass", "{ra}\n{}", first.stderr);
        let span = |r: &serde_json::Value| {
            let t = parse_time(r["started_at"].as_str().expect("started_at"));
            (
                t,
                t + Duration::from_millis(r["duration_ms"].as_u64().expect("ms")),
            )
        };
        let ((a0, a1), (b0, b1)) = (span(ra), span(rb));
        assert!(
            b0 >= a1 || a0 >= b1,
            "overlapping runs of one unit: {ra} / {rb}"
        );
    }
}

#[test]
fn a_killed_holder_is_listed_stale_and_recovered_by_the_next_run() {
    require_simdev();
    let tmp = tempfile::tempdir().expect("tempdir");
    let leases = tmp.path().join("leases");
    // The holder's unit never becomes ready (its ready line never matches, for 10 minutes), so
    // the run holds the lease as long as the test needs.
    let hung = tmp.path().join("hung");
    fs::create_dir_all(&hung).expect("dir");
    let hung_board = plug_board(&hung, "stale-plug", |t| {
        let t = t.replacen("ready = '", "ready = 'NEVER-PRINTED-BY-THE-UNIT ", 1);
        assert!(
            t.contains("NEVER-PRINTED"),
            "the board's ready line changed shape"
        );
        match t.find("ready_timeout = \"") {
            Some(i) => {
                let end = t[i..].find('\n').map(|j| i + j).unwrap_or(t.len());
                format!("{}ready_timeout = \"600s\"{}", &t[..i], &t[end..])
            }
            None => t.replacen("ready = '", "ready_timeout = \"600s\"\nready = '", 1),
        }
    });
    let hung_out = tmp.path().join("hung-out");
    let mut holder = spawn(&run_args(&hung_board, &hung_out, &leases, &[]), &hung);
    let pid = holder.child.id();
    let held = wait_listed(tmp.path(), &leases, "held", pid, Duration::from_secs(120));
    if !held {
        let _ = holder.child.kill();
        let _ = holder.child.wait();
        panic!(
            "the holder never held the lease; stderr:\n{}",
            fs::read_to_string(&holder.stderr).unwrap_or_default()
        );
    }
    signal(pid, libc::SIGKILL);
    holder.child.wait().expect("reap the killed holder");

    // The kernel released its lock; its record stays: stale.
    let listed = list_json(tmp.path(), &leases);
    let entry = listed.iter().find(|e| e["key"] == KEY).expect("listed");
    assert_eq!(entry["state"], "stale", "{entry}");
    assert_eq!(entry["record"]["pid"], pid, "{entry}");
    let table = hilsec(
        &[
            "lease",
            "list",
            "--lease-dir",
            leases.to_str().expect("utf-8"),
        ],
        tmp.path(),
        Duration::from_secs(60),
    );
    assert_eq!(table.code(), 0);
    let row = table
        .stdout
        .lines()
        .find(|l| l.starts_with(KEY))
        .unwrap_or_else(|| panic!("no row for {KEY}:\n{}", table.stdout));
    assert!(
        row.contains(&pid.to_string()) && row.trim_end().ends_with("stale"),
        "{row}"
    );

    // The next run recovers it, says so, and runs the unit.
    let board = plug_board(tmp.path(), "stale-plug", |t| t);
    let out = tmp.path().join("out");
    let done = hilsec(
        &run_args(&board, &out, &leases, &[]),
        tmp.path(),
        Duration::from_secs(180),
    );
    assert_eq!(done.code(), 0, "{}\n{}", done.stdout, done.stderr);
    let note = "recovered a stale lease of ";
    assert!(
        done.stderr.contains(note)
            && done.stderr.contains(&format!(" pid {pid} since "))
            && done.stderr.contains("which had died"),
        "{}",
        done.stderr
    );
    let res = results(&out);
    let rec = record(&res, "stale-plug", TEST);
    assert_eq!(rec["verdict"], "pass", "{rec}");
    let evidence = fs::read_to_string(out.join(rec["evidence"].as_str().expect("evidence")))
        .expect("evidence file");
    assert!(
        evidence.contains(note) && evidence.contains("which had died"),
        "{evidence}"
    );
    // Released at the end of the run.
    let listed = list_json(tmp.path(), &leases);
    assert_eq!(listed[0]["state"], "free", "{listed:?}");
}

/// A SimPlug board of the repository's first two units, renamed `names`, taking `leases`.
fn two_unit_board(dir: &Path, names: [&str; 2], leases: [&str; 2]) -> PathBuf {
    let text = fs::read_to_string(repo_root().join("boards/sim/simplug-s1.toml")).expect("board");
    let mut parts = text.split("\n[[unit]]\n");
    let head = parts.next().expect("model part");
    let mut out = rebase_fixture_paths(head);
    for (i, unit) in parts.take(2).enumerate() {
        let old = unit
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|l| l.strip_suffix('"'))
            .expect("unit name");
        let unit = unit.replace(
            &format!("name = \"{old}\""),
            &format!("name = \"{}\"", names[i]),
        );
        out.push_str(&format!(
            "\n[[unit]]\n{}\nlease = \"{}\"\n",
            unit.trim_end(),
            leases[i]
        ));
    }
    let path = dir.join(format!("{}.toml", names[0]));
    fs::write(&path, out).expect("write board");
    path
}

/// Two runs sharing two units, which list them in opposite orders (L1, L2 / L2, L1), started
/// together: each takes its leases in the same global order, so they never wait for each
/// other in a cycle; one runs, then the other, and neither ends in `error`.
#[test]
fn two_runs_sharing_units_in_opposite_orders_run_one_after_the_other() {
    require_simdev();
    let tmp = tempfile::tempdir().expect("tempdir");
    let leases = tmp.path().join("leases");
    let (l1, l2) = ("bench-t/shared-1", "bench-t/shared-2");
    let board_a = two_unit_board(tmp.path(), ["dl-a1", "dl-a2"], [l1, l2]);
    let board_b = two_unit_board(tmp.path(), ["dl-b1", "dl-b2"], [l2, l1]);
    // Twice: which unit of a run went first was up to the scheduler, so an unordered runner
    // deadlocked in about three rounds of four.
    for round in 0..2 {
        opposite_orders_round(tmp.path(), round, &leases, [l1, l2], [&board_a, &board_b]);
    }
}

fn opposite_orders_round(
    tmp: &Path,
    round: usize,
    leases: &Path,
    [l1, l2]: [&str; 2],
    [board_a, board_b]: [&Path; 2],
) {
    let (out_a, out_b) = (
        tmp.join(format!("out-a{round}")),
        tmp.join(format!("out-b{round}")),
    );
    let (dir_a, dir_b) = (
        tmp.join(format!("run-a{round}")),
        tmp.join(format!("run-b{round}")),
    );
    fs::create_dir_all(&dir_a).expect("dir");
    fs::create_dir_all(&dir_b).expect("dir");
    // Both keys held here until both runs wait, then freed at once. One unit at a time: before
    // ordered acquisition each run then took its first unit's lease (A: L1, B: L2 when the
    // scheduler picked those first), ran that unit, kept its lease and waited for the other
    // run's, until --lease-wait ran out for both.
    let held = [l1, l2].map(|k| {
        match lease::try_acquire(leases, k, &LeaseSettings::default()).expect("lease dir") {
            Attempt::Acquired { lease, .. } => lease,
            Attempt::Held(h) => panic!("already held by {}", h.describe()),
        }
    });
    let extra = ["--lease-wait", "300s", "--jobs", "1"];
    let a = spawn(&run_args(board_a, &out_a, leases, &extra), &dir_a);
    let b = spawn(&run_args(board_b, &out_b, leases, &extra), &dir_b);
    let t0 = Instant::now();
    for run in [&a, &b] {
        while !fs::read_to_string(&run.stderr)
            .unwrap_or_default()
            .contains("waiting for dl-")
        {
            assert!(
                t0.elapsed() < Duration::from_secs(120),
                "no waiting line; stderr:\n{}",
                fs::read_to_string(&run.stderr).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // Every unit that would try a lease now has tried once.
    std::thread::sleep(Duration::from_secs(1));
    drop(held);
    let (a, b) = (
        a.finish(Duration::from_secs(600)),
        b.finish(Duration::from_secs(600)),
    );
    for (done, out, units) in [
        (&a, &out_a, ["dl-a1", "dl-a2"]),
        (&b, &out_b, ["dl-b1", "dl-b2"]),
    ] {
        assert_eq!(done.code(), 0, "{}\n{}", done.stdout, done.stderr);
        let res = results(out);
        for u in units {
            let recs = unit_records(&res, u);
            assert!(!recs.is_empty(), "no record of {u}");
            for r in recs {
                assert_eq!(r["verdict"], "pass", "{r}\n{}", done.stderr);
            }
        }
    }
    // One after the other: the runs' spans of tests do not overlap.
    let span = |out: &Path| {
        let res = results(out);
        let mut spans = res["tests"].as_array().expect("tests").iter().map(|r| {
            let t = parse_time(r["started_at"].as_str().expect("started_at"));
            (
                t,
                t + Duration::from_millis(r["duration_ms"].as_u64().expect("ms")),
            )
        });
        let first = spans.next().expect("a record");
        spans.fold(first, |(a0, a1), (b0, b1)| (a0.min(b0), a1.max(b1)))
    };
    let ((a0, a1), (b0, b1)) = (span(&out_a), span(&out_b));
    assert!(
        b0 >= a1 || a0 >= b1,
        "the runs drove the shared units at once: {a0:?}..{a1:?} / {b0:?}..{b1:?}"
    );
    // Both leases are free again.
    let listed = list_json(tmp, leases);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.iter().all(|e| e["state"] == "free"), "{listed:?}");
}
