//! Benchmark: the password suite on simulated fleets of 6 (the built-in), 64 and 256 units,
//! with printed figures, each next to its target (not a timed test: nothing fails on a miss).
//!
//! Run with `ci/bench` (it builds the release binaries first). `HILSEC_BENCH_UNITS=6,64`
//! selects fleet sizes (default `6,64,256`). For every size it prints:
//! - wall time of the fleet run;
//! - the longest unit's own critical path: each model's first unit run alone (same binary,
//!   same suite), the slowest of those, and the fleet's wall time against it;
//! - harness CPU time and peak RSS (the `hilsec` process alone, read from /proc);
//! - the device processes' CPU time (the reaped `hilsec-simdev` children of `hilsec`);
//! - shutdown: from the end of the last test (latest `started_at + duration_ms` in
//!   results.json) to the exit of `hilsec`, split at `run.finished` (the `RunFinished` event:
//!   before it, units are stopped; after it, reports are written and the process exits).
//!
//! Fleets other than 6 are generated in a temporary folder from `boards/sim/*.toml`: each
//! model's file with its units multiplied, unit names, serials and MACs unique, per-unit
//! passwords as the simulated firmware has them (SimPlug S1: a unique random 12-character
//! password per unit, handed to the unit; SimHub H2: derived from the MAC by its firmware;
//! SimCam C0: the universal `admin`), so the verdicts match the built-in fleet's.
//!
//! With 6 units selected it also prints the run of all suites and `hilsec list` times.
//! `HILSEC_BENCH_BOARDS=DIR` keeps the generated fleets in `DIR/fleet-N/` (to profile a run).

mod common;

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use common::*;

/// The password suite's tests (3 per unit, 5 per model, each recorded on every unit).
const PASSWORD_TESTS: usize = 10;

/// Targets of the issue (64 and 256 units) and of the earlier 6-unit bench. `None`: no target.
struct Targets {
    ratio: Option<f64>,
    cpu_s: Option<f64>,
    rss_mb: Option<f64>,
    /// Proposed, not from the issue: shutdown must not grow with the fleet (it was ~28 ms per
    /// unit, 7 s at 256 units).
    shutdown_ms: Option<f64>,
}

fn targets(units: usize) -> Targets {
    match units {
        6 => Targets {
            ratio: Some(1.25),
            cpu_s: None,
            rss_mb: Some(50.0),
            shutdown_ms: Some(500.0),
        },
        64 => Targets {
            ratio: Some(1.10),
            cpu_s: Some(2.0),
            rss_mb: None,
            shutdown_ms: Some(500.0),
        },
        256 => Targets {
            ratio: Some(1.15),
            cpu_s: None,
            rss_mb: Some(60.0),
            shutdown_ms: Some(500.0),
        },
        _ => Targets {
            ratio: None,
            cpu_s: None,
            rss_mb: None,
            shutdown_ms: Some(500.0),
        },
    }
}

/// ` target <= X  ok|MISSED`, or the empty string without a target.
fn verdict(value: f64, target: Option<f64>, unit: &str) -> String {
    match target {
        Some(t) => format!(
            "target <= {t}{unit}  {}",
            if value <= t { "ok" } else { "MISSED" }
        ),
        None => "(no target at this size)".into(),
    }
}

struct SizeFigures {
    units: usize,
    wall_ms: f64,
    ratio: f64,
    cpu_s: f64,
    rss_mb: f64,
    devices_cpu_s: f64,
    shutdown_ms: Option<f64>,
    errors: u64,
}

fn main() {
    if answered_list("fleet") {
        return;
    }
    require_simdev("ci/bench");
    let sizes = sizes_from_env("HILSEC_BENCH_UNITS", "6,64,256", 3);
    let (nofile, nofile_max) = check_limits(sizes.iter().copied().max().unwrap_or(6));

    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let out_s = out.to_str().expect("utf-8 path").to_string();

    // Warm-up (page cache, first pty allocations), not measured.
    let _ = measure(&["run", "--suite", "password", "--out", &out_s]);

    // The longest unit's own critical path: each model's first unit alone.
    let mut solo = Vec::new();
    let mut sim: Vec<_> = fs::read_dir(repo_root().join("boards/sim"))
        .expect("boards/sim")
        .flatten()
        .collect();
    sim.sort_by_key(|e| e.file_name());
    for e in sim {
        let solo_dir = tmp.path().join("solo");
        fs::create_dir_all(&solo_dir).expect("solo dir");
        let board = solo_dir.join(e.file_name());
        first_unit_only(&e.path(), &board);
        let solo_out = tmp.path().join("solo-out");
        let m = measure(&[
            "run",
            "--suite",
            "password",
            "--board",
            board.to_str().expect("utf-8"),
            "--out",
            solo_out.to_str().expect("utf-8"),
        ]);
        assert!(
            m.code == 0 || m.code == 1,
            "a solo run of {:?} failed to run (exit {})",
            e.file_name(),
            m.code
        );
        fs::remove_file(&board).expect("remove solo board");
        solo.push((e.file_name().to_string_lossy().into_owned(), m.wall));
    }
    solo.sort_by_key(|(_, w)| *w);
    let (slowest, critical) = solo.last().cloned().expect("a model");

    println!("hilsec fleet benchmark (password suite)");
    println!(
        "  descriptors: RLIMIT_NOFILE {nofile} (hard {nofile_max}); free pseudo-terminals: {}",
        free_ptys()
            .map(|n| n.to_string())
            .unwrap_or_else(|| "?".into())
    );
    for (name, wall) in &solo {
        println!(
            "  one unit alone: {name:<20} {:>8.0} ms",
            wall.as_secs_f64() * 1e3
        );
    }
    println!(
        "  longest unit's critical path    {:>8.0} ms  ({slowest}, run alone)",
        critical.as_secs_f64() * 1e3
    );

    let mut rng = Rng::seeded();
    let mut summary = Vec::new();
    for &n in &sizes {
        let mut args: Vec<String> = vec!["run".into(), "--suite".into(), "password".into()];
        let composition = if n == 6 {
            "the built-in fleet, boards/sim".to_string()
        } else {
            // HILSEC_BENCH_BOARDS=DIR keeps the generated fleets (e.g. to profile one run).
            let dir = match std::env::var_os("HILSEC_BENCH_BOARDS") {
                Some(d) => PathBuf::from(d).join(format!("fleet-{n}")),
                None => tmp.path().join(format!("fleet-{n}")),
            };
            let counts = generate_fleet(&dir, n, &mut rng);
            args.push("--board".into());
            args.push(dir.to_str().expect("utf-8").into());
            counts
                .iter()
                .map(|(f, c)| format!("{c} x {}", f.trim_end_matches(".toml")))
                .collect::<Vec<_>>()
                .join(", ")
        };
        args.push("--out".into());
        args.push(out_s.clone());
        let _ = fs::remove_file(out.join("results.json"));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let m = measure(&argv);
        let f = facts(&out);
        let t = targets(n);

        let wall_ms = m.wall.as_secs_f64() * 1e3;
        let ratio = m.wall.as_secs_f64() / critical.as_secs_f64();
        let cpu_s = m.cpu.as_secs_f64();
        let rss_mb = m.peak_rss_kib as f64 / 1024.0;
        let devices_cpu_s = m.children_cpu.as_secs_f64();
        let shutdown_ms = f.last_test_end.map(|e| ms_between(e, m.exited_at));
        let [pass, fail, inconclusive, na, error] = f.counts;

        println!();
        println!("fleet of {n} units ({composition})");
        println!(
            "  exit {} ; {} results of {} expected: {pass} pass, {fail} fail, {inconclusive} inconclusive, {na} not applicable, {error} error{}",
            m.code,
            f.results,
            n * PASSWORD_TESTS,
            if error > 0 || f.results != n * PASSWORD_TESTS {
                "  (figures suspect: the run did not behave like the built-in fleet)"
            } else {
                ""
            }
        );
        println!("  wall time, fleet run            {wall_ms:>8.0} ms");
        println!(
            "  wall / critical path            {ratio:>8.2} x   {}",
            verdict(ratio, t.ratio, "")
        );
        println!(
            "  harness CPU time (user+sys)     {cpu_s:>8.2} s   {}",
            verdict(cpu_s, t.cpu_s, " s")
        );
        println!(
            "  harness peak RSS                {rss_mb:>8.1} MB  {}",
            verdict(rss_mb, t.rss_mb, " MB")
        );
        println!(
            "  device processes CPU time       {devices_cpu_s:>8.2} s   ({n} hilsec-simdev, {:.0} ms each)",
            devices_cpu_s * 1e3 / n as f64
        );
        match shutdown_ms {
            Some(s) => {
                println!(
                    "  shutdown: last test -> exit     {s:>8.0} ms  {} (proposed: O(1))",
                    verdict(s, t.shutdown_ms, " ms")
                );
                if let (Some(end), Some(fin)) = (f.last_test_end, f.run_finished) {
                    println!(
                        "    last test -> RunFinished (units stopped) {:>6.0} ms; RunFinished -> exit (reports, teardown) {:>6.0} ms; {:.1} ms per unit",
                        ms_between(end, fin),
                        ms_between(fin, m.exited_at),
                        s / n as f64
                    );
                }
            }
            None => println!("  shutdown: last test -> exit            ? (no results.json)"),
        }
        summary.push(SizeFigures {
            units: n,
            wall_ms,
            ratio,
            cpu_s,
            rss_mb,
            devices_cpu_s,
            shutdown_ms,
            errors: error,
        });
    }

    if sizes.contains(&6) {
        let all_suites = measure(&["run", "--out", &out_s]);
        let mut list_times: Vec<Duration> = (0..21).map(|_| measure(&["list"]).wall).collect();
        list_times.sort();
        println!();
        println!(
            "  6 units, all suites (password, update, disclosure): wall {:.0} ms, harness CPU {:.0} ms, peak RSS {:.1} MB",
            all_suites.wall.as_secs_f64() * 1e3,
            all_suites.cpu.as_secs_f64() * 1e3,
            all_suites.peak_rss_kib as f64 / 1024.0
        );
        println!(
            "  `hilsec list`                   {:>8.1} ms median, {:.1} ms worst of 21  {}",
            list_times[10].as_secs_f64() * 1e3,
            list_times[20].as_secs_f64() * 1e3,
            verdict(list_times[10].as_secs_f64() * 1e3, Some(50.0), " ms")
        );
    }

    println!();
    println!(
        "summary (critical path {:.0} ms)",
        critical.as_secs_f64() * 1e3
    );
    println!("  units   wall ms   ratio   CPU s   RSS MB   devices CPU s   shutdown ms   errors");
    for s in &summary {
        println!(
            "  {:>5} {:>9.0} {:>7.2} {:>7.2} {:>8.1} {:>15.2} {:>13} {:>8}",
            s.units,
            s.wall_ms,
            s.ratio,
            s.cpu_s,
            s.rss_mb,
            s.devices_cpu_s,
            s.shutdown_ms
                .map(|v| format!("{v:.0}"))
                .unwrap_or_else(|| "?".into()),
            s.errors
        );
    }
}
