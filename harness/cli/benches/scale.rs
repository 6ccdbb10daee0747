//! Benchmark: one `hilsec run` against the same fleet in 4 shards run at once and merged
//! (`hilsec run --shard I/4` ×4, then `hilsec merge`), with the password suite on simulated
//! fleets of 1, 8, 64 and 256 units. It prints figures only (no targets; nothing fails on them).
//!
//! Run with `ci/bench scale` (it builds the release binaries first). `HILSEC_SCALE_UNITS=1,8,64`
//! selects fleet sizes (default `1,8,64,256`); `HILSEC_BENCH_BOARDS=DIR` keeps the generated
//! fleets in `DIR/scale-N/`. For every size it prints:
//! - (a) the single run: wall time, and against the longest unit's own critical path (each
//!   simulated model's first unit run alone, as the fleet benchmark measures it; the slowest of
//!   the models in the fleet), harness CPU time and peak RSS (the `hilsec` process, from /proc),
//!   exit status and verdict counts;
//! - (b) the 4 shards, started together on this machine: wall time until the last exits and
//!   each shard's, harness CPU summed over the shards, the largest shard's peak RSS; then the
//!   merge's wall time, CPU and peak RSS, the total (shards + merge) against the critical path,
//!   and whether the merged (unit, test, verdict) set is the single run's;
//! - the merged report.html's size and the time of `hilsec report DIR` (re-rendering it from
//!   the merged results.json).
//!
//! Times are sampled every 10 ms, so a process shorter than that (a small merge, a report)
//! shows about 10 ms and may have no RSS sample (`?`).
//!
//! Sharding splits by model, so fleets are generated with enough models to keep 4 shards busy:
//! 1 unit is one SimPlug S1 unit; from 3 units on, the fleet has min(12, max(4, N/8)) models
//! (never more than N), the three simulated models in turn and, past three, copies of them
//! under other names (`SimCam C0 #2`, ...), units spread evenly. The single run (a) runs the
//! same fleet. The password suite (as the fleet benchmark) is used because its per-model tests
//! (uniqueness, derivation) are what keeps a model's units in one shard, and its throttled
//! brute-force test gives every unit a critical path of its own.
//!
//! On a machine with fewer cores than shards, (b) competes with itself: its wall time shows
//! what one machine gains (or loses) by running shards at once, not what 4 runners would.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const SHARDS: usize = 4;

/// The models of the fleet of `n` units: (index into `models`, copy, units).
fn groups_for(n: usize, models: &[ModelGen]) -> Vec<Group> {
    let index = |kind: &str| {
        models
            .iter()
            .position(|m| m.kind == kind)
            .unwrap_or_else(|| panic!("boards/sim has no {kind} model"))
    };
    if n < 3 {
        return vec![Group {
            model: index("plug"),
            copy: 0,
            units: n,
        }];
    }
    let kinds = [index("cam"), index("hub"), index("plug")];
    let g = (n / 8).clamp(4, 12).min(n);
    (0..g)
        .map(|k| Group {
            model: kinds[k % kinds.len()],
            copy: k / kinds.len(),
            units: n / g + usize::from(k < n % g),
        })
        .collect()
}

/// (board, test, verdict) of every record of a results.json.
fn verdict_set(out: &Path) -> BTreeSet<(String, String, String)> {
    let text = fs::read_to_string(out.join("results.json")).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    v["tests"]
        .as_array()
        .map(|tests| {
            tests
                .iter()
                .map(|t| {
                    let f = |k: &str| t[k].as_str().unwrap_or_default().to_string();
                    (f("board"), f("test"), f("verdict"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn units_in(out: &Path) -> usize {
    let text = fs::read_to_string(out.join("results.json")).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    v["run"]["units"].as_array().map_or(0, |u| u.len())
}

/// Peak RSS in MB, or `?` when the process ended before the first 10 ms sample.
fn rss(kib: u64) -> String {
    if kib == 0 {
        "? MB (ended before the first sample)".into()
    } else {
        format!("{:.1} MB", kib as f64 / 1024.0)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn counts_line(f: &RunFacts) -> String {
    let [pass, fail, inconclusive, na, error] = f.counts;
    format!(
        "{} results: {pass} pass, {fail} fail, {inconclusive} inconclusive, {na} not applicable, {error} error",
        f.results
    )
}

struct Row {
    units: usize,
    critical_ms: f64,
    single_ms: f64,
    single_cpu_s: f64,
    single_rss_mb: f64,
    shards_ms: f64,
    shards_cpu_s: f64,
    shards_rss_mb: f64,
    merge_ms: f64,
    report_kib: f64,
    report_ms: Option<f64>,
    same: bool,
}

fn main() {
    if answered_list("scale") {
        return;
    }
    require_simdev("ci/bench scale");
    let sizes = sizes_from_env("HILSEC_SCALE_UNITS", "1,8,64,256", 1);
    let (nofile, nofile_max) = check_limits(sizes.iter().copied().max().unwrap_or(1));

    let tmp = tempfile::tempdir().expect("tempdir");
    let models = sim_models();

    // The longest unit's own critical path: each model's first unit alone (the first of these
    // runs is repeated: it warms the page cache and the pty allocator).
    let mut solo: Vec<(&'static str, Duration)> = Vec::new();
    let solo_dir = tmp.path().join("solo");
    fs::create_dir_all(&solo_dir).expect("solo dir");
    for (k, m) in models.iter().enumerate() {
        let board = solo_dir.join(&m.file);
        first_unit_only(&repo_root().join("boards/sim").join(&m.file), &board);
        let solo_out = tmp.path().join("solo-out");
        let args = [
            "run",
            "--suite",
            "password",
            "--board",
            board.to_str().expect("utf-8"),
            "--out",
            solo_out.to_str().expect("utf-8"),
        ];
        if k == 0 {
            let _ = measure(&args);
        }
        let r = measure(&args);
        assert!(
            r.code == 0 || r.code == 1,
            "a solo run of {} failed to run (exit {})",
            m.file,
            r.code
        );
        fs::remove_file(&board).expect("remove solo board");
        solo.push((m.kind, r.wall));
    }

    println!(
        "hilsec scale benchmark (password suite): one run against {SHARDS} shards at once + merge"
    );
    println!(
        "  {} cores; descriptors: RLIMIT_NOFILE {nofile} (hard {nofile_max}); free pseudo-terminals: {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        free_ptys()
            .map(|n| n.to_string())
            .unwrap_or_else(|| "?".into())
    );
    for (m, (_, wall)) in models.iter().zip(&solo) {
        println!("  one unit alone: {:<20} {:>8.0} ms", m.file, ms(*wall));
    }

    let mut rng = Rng::seeded();
    let mut rows = Vec::new();
    for &n in &sizes {
        let dir = match std::env::var_os("HILSEC_BENCH_BOARDS") {
            Some(d) => PathBuf::from(d).join(format!("scale-{n}")),
            None => tmp.path().join(format!("scale-{n}")),
        };
        let _ = fs::remove_dir_all(&dir);
        let groups = groups_for(n, &models);
        let files = generate_groups(&dir, &models, &groups, &mut rng);
        let critical = groups
            .iter()
            .map(|g| solo[g.model].1)
            .max()
            .expect("a model");
        let board = dir.to_str().expect("utf-8").to_string();
        let work = tmp.path().join(format!("out-{n}"));
        let out = |name: &str| work.join(name).to_str().expect("utf-8").to_string();
        let run_args = |out: String, shard: Option<usize>| -> Vec<String> {
            let mut a: Vec<String> = ["run", "--suite", "password", "--board", &board]
                .iter()
                .map(|s| s.to_string())
                .collect();
            if let Some(i) = shard {
                a.push("--shard".into());
                a.push(format!("{i}/{SHARDS}"));
            }
            a.push("--out".into());
            a.push(out);
            a
        };

        // (a) one run.
        let single_out = out("single");
        let single = measure_many(&[run_args(single_out.clone(), None)])
            .pop()
            .expect("one run");
        let single_facts = facts(Path::new(&single_out));

        // (b) the shards at once, then the merge.
        let shard_outs: Vec<String> = (1..=SHARDS).map(|i| out(&format!("shard-{i}"))).collect();
        let shards = measure_many(
            &(1..=SHARDS)
                .map(|i| run_args(shard_outs[i - 1].clone(), Some(i)))
                .collect::<Vec<_>>(),
        );
        let merged_out = out("merged");
        let mut merge_args: Vec<&str> = vec!["merge"];
        merge_args.extend(shard_outs.iter().map(String::as_str));
        merge_args.extend(["--out", &merged_out]);
        let merge = measure(&merge_args);
        let merged_facts = facts(Path::new(&merged_out));
        let report_path = Path::new(&merged_out).join("report.html");
        let report = measure(&["report", &merged_out]);
        let report_kib = fs::metadata(&report_path).map_or(0.0, |m| m.len() as f64 / 1024.0);

        let shards_wall = shards.iter().map(|m| m.wall).max().unwrap_or_default();
        let shards_cpu: Duration = shards.iter().map(|m| m.cpu).sum();
        let shards_rss = shards.iter().map(|m| m.peak_rss_kib).max().unwrap_or(0);
        let total = shards_wall + merge.wall;
        let single_set = verdict_set(Path::new(&single_out));
        let merged_set = verdict_set(Path::new(&merged_out));
        let differ = single_set.symmetric_difference(&merged_set).count();
        let ratio = |d: Duration| d.as_secs_f64() / critical.as_secs_f64();

        println!();
        println!(
            "fleet of {n} units ({} models: {})",
            files.len(),
            files
                .iter()
                .map(|(f, c)| format!("{c} x {}", f.trim_end_matches(".toml")))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!(
            "  longest unit's critical path          {:>8.0} ms  (its model's first unit run alone)",
            ms(critical)
        );
        println!(
            "  (a) one run: exit {}; {}",
            single.code,
            counts_line(&single_facts)
        );
        println!(
            "      wall {:>8.0} ms  ({:.2} x critical path); harness CPU {:.2} s; peak RSS {:.1} MB",
            ms(single.wall),
            ratio(single.wall),
            single.cpu.as_secs_f64(),
            single.peak_rss_kib as f64 / 1024.0
        );
        println!(
            "  (b) {SHARDS} shards at once: units per shard {}; exits {}",
            shard_outs
                .iter()
                .map(|o| units_in(Path::new(o)).to_string())
                .collect::<Vec<_>>()
                .join("/"),
            shards
                .iter()
                .map(|m| m.code.to_string())
                .collect::<Vec<_>>()
                .join("/")
        );
        println!(
            "      wall {:>8.0} ms  ({:.2} x critical path; shards {} ms); harness CPU {:.2} s summed; peak RSS {:.1} MB (largest shard)",
            ms(shards_wall),
            ratio(shards_wall),
            shards
                .iter()
                .map(|m| format!("{:.0}", ms(m.wall)))
                .collect::<Vec<_>>()
                .join("/"),
            shards_cpu.as_secs_f64(),
            shards_rss as f64 / 1024.0
        );
        println!(
            "      merge {:>7.0} ms  (exit {}; CPU {:.2} s; peak RSS {}); {}",
            ms(merge.wall),
            merge.code,
            merge.cpu.as_secs_f64(),
            rss(merge.peak_rss_kib),
            counts_line(&merged_facts)
        );
        println!(
            "      shards + merge {:>8.0} ms  ({:.2} x critical path; {:+.0} ms against one run)",
            ms(total),
            ratio(total),
            ms(total) - ms(single.wall)
        );
        println!(
            "      merged verdicts: {}",
            if differ == 0 {
                "the same (unit, test, verdict) as one run".to_string()
            } else {
                format!("{differ} (unit, test, verdict) differ from one run (timing-sensitive tests under load?)")
            }
        );
        let report_ms = (report.code == 0).then(|| ms(report.wall));
        println!(
            "  report.html {:.1} KiB; `hilsec report` (re-render from the merged results.json) {}",
            report_kib,
            match report_ms {
                Some(t) => format!(
                    "{t:.0} ms (CPU {:.2} s; peak RSS {})",
                    report.cpu.as_secs_f64(),
                    rss(report.peak_rss_kib)
                ),
                None => format!("exit {}", report.code),
            }
        );
        rows.push(Row {
            units: n,
            critical_ms: ms(critical),
            single_ms: ms(single.wall),
            single_cpu_s: single.cpu.as_secs_f64(),
            single_rss_mb: single.peak_rss_kib as f64 / 1024.0,
            shards_ms: ms(shards_wall),
            shards_cpu_s: shards_cpu.as_secs_f64(),
            shards_rss_mb: shards_rss as f64 / 1024.0,
            merge_ms: ms(merge.wall),
            report_kib,
            report_ms,
            same: differ == 0,
        });
        if std::env::var_os("HILSEC_BENCH_BOARDS").is_none() {
            let _ = fs::remove_dir_all(&dir);
        }
        let _ = fs::remove_dir_all(&work);
    }

    println!();
    println!("summary (wall ms; ratio = wall / longest unit's critical path)");
    println!(
        "  units  critical |  one run  ratio  CPU s  RSS MB |   shards  ratio  CPU s  RSS MB   merge  +merge ratio | report KiB  ms | same"
    );
    for r in &rows {
        let total = r.shards_ms + r.merge_ms;
        println!(
            "  {:>5} {:>9.0} | {:>8.0} {:>6.2} {:>6.2} {:>7.1} | {:>8.0} {:>6.2} {:>6.2} {:>7.1} {:>7.0} {:>12.2} | {:>10.1} {:>3} | {}",
            r.units,
            r.critical_ms,
            r.single_ms,
            r.single_ms / r.critical_ms,
            r.single_cpu_s,
            r.single_rss_mb,
            r.shards_ms,
            r.shards_ms / r.critical_ms,
            r.shards_cpu_s,
            r.shards_rss_mb,
            r.merge_ms,
            total / r.critical_ms,
            r.report_kib,
            r.report_ms
                .map(|v| format!("{v:.0}"))
                .unwrap_or_else(|| "?".into()),
            if r.same { "yes" } else { "no" }
        );
    }
}
