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

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// The password suite's tests (3 per unit, 5 per model, each recorded on every unit).
const PASSWORD_TESTS: usize = 8;

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

struct Measured {
    wall: Duration,
    cpu: Duration,
    children_cpu: Duration,
    peak_rss_kib: u64,
    code: i32,
    /// Wall-clock time the process was seen to have exited.
    exited_at: SystemTime,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime+stime and cutime+cstime of a process, from /proc/PID/stat.
fn cpu_of(pid: u32) -> Option<(Duration, Duration)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) as f64;
    // rest[0] is field 3 (state); utime is field 14 → index 11.
    let hz = clock_ticks();
    let own = Duration::from_secs_f64((n(11) + n(12)) / hz);
    let children = Duration::from_secs_f64((n(13) + n(14)) / hz);
    Some((own, children))
}

fn hwm_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Runs `hilsec ARGS`, sampling its peak RSS, and reads its CPU time once it has exited but
/// before it is reaped (a zombie keeps its counters).
fn measure(args: &[&str]) -> Measured {
    let t0 = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hilsec"))
        .args(args)
        .current_dir(repo_root())
        .env("CI", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn hilsec");
    let pid = child.id();
    let mut peak = 0;
    loop {
        // VmHWM only grows: the last reading before the exit is the peak.
        if let Some(h) = hwm_kib(pid) {
            peak = peak.max(h);
        }
        // SAFETY: waitid with WNOWAIT only inspects our own child; the struct is ours.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        // SAFETY: si_pid is valid for a WEXITED report.
        if rc == 0 && unsafe { info.si_pid() } == pid as i32 {
            break;
        }
        // Light sampling: on a 2-core machine the bench must not compete with what it measures.
        std::thread::sleep(Duration::from_millis(10));
    }
    let wall = t0.elapsed();
    let exited_at = SystemTime::now();
    let (cpu, children_cpu) = cpu_of(pid).unwrap_or_default();
    let status = child.wait().expect("reap hilsec");
    Measured {
        wall,
        cpu,
        children_cpu,
        peak_rss_kib: peak,
        code: status.code().unwrap_or(-1),
        exited_at,
    }
}

/// Paths relative to `boards/sim/` made absolute, for a copy of a board file elsewhere (as
/// `rebase_fixture_paths` in the CLI tests).
fn rebase_fixture_paths(text: &str) -> String {
    let fixtures = repo_root().join("fixtures").display().to_string();
    text.replace("{board.dir}/../../fixtures", &fixtures)
        .replace("\"../../fixtures", &format!("\"{fixtures}"))
}

/// A board file's text before its first `[[unit]]` (the model, its interfaces and actions).
fn model_part(text: &str) -> &str {
    let first = text.find("\n[[unit]]").expect("a unit");
    &text[..first + 1]
}

/// A copy of a board file with only its first unit.
fn first_unit_only(src: &Path, dst: &Path) {
    let text = fs::read_to_string(src).expect("board file");
    let first = text.find("\n[[unit]]").expect("a unit");
    let cut = text[first + 9..]
        .find("\n[[unit]]")
        .map(|i| first + 9 + i)
        .unwrap_or(text.len());
    fs::write(dst, rebase_fixture_paths(&text[..cut])).expect("write board");
}

/// splitmix64: enough randomness for test passwords without another dependency.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        Rng(t ^ ((std::process::id() as u64) << 32))
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn pick(&mut self, set: &[u8]) -> char {
        set[(self.next() % set.len() as u64) as usize] as char
    }
}

/// A random 12-character password with upper and lower case letters, digits and symbols
/// (none that TOML, templates or a console line would treat specially).
fn random_password(rng: &mut Rng) -> String {
    const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
    const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
    const DIGIT: &[u8] = b"23456789";
    const SYMBOL: &[u8] = b"#%!?*+=-_";
    let all: Vec<u8> = [UPPER, LOWER, DIGIT, SYMBOL].concat();
    let mut p: Vec<char> = vec![
        rng.pick(UPPER),
        rng.pick(LOWER),
        rng.pick(DIGIT),
        rng.pick(SYMBOL),
    ];
    while p.len() < 12 {
        p.push(rng.pick(&all));
    }
    // Fisher-Yates, so the classes are not always in the same places.
    for i in (1..p.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        p.swap(i, j);
    }
    p.into_iter().collect()
}

/// One generated model file: what its units need.
struct ModelGen {
    file: String,
    /// `cam`, `hub` or `plug` (the simulated firmware: how it knows its password).
    kind: &'static str,
    header: String,
}

/// Writes a fleet of `n` units into `dir` (the models of `boards/sim/`, units spread evenly),
/// returns how many units each model got.
fn generate_fleet(dir: &Path, n: usize, rng: &mut Rng) -> Vec<(String, usize)> {
    fs::create_dir_all(dir).expect("fleet dir");
    let mut models: Vec<ModelGen> = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(repo_root().join("boards/sim"))
        .expect("boards/sim")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let text = fs::read_to_string(e.path()).expect("board file");
        let kind = ["cam", "hub", "plug"]
            .into_iter()
            .find(|k| text.contains(&format!("\"--model\", \"{k}\"")))
            .unwrap_or_else(|| panic!("{:?}: unknown simulated model", e.file_name()));
        models.push(ModelGen {
            file: e.file_name().to_string_lossy().into_owned(),
            kind,
            header: rebase_fixture_paths(model_part(&text)),
        });
    }
    let mut used_passwords = HashSet::new();
    let mut counts = Vec::new();
    let m = models.len();
    for (mi, g) in models.iter().enumerate() {
        let count = n / m + usize::from(mi < n % m);
        let mut text = g.header.clone();
        text.push_str(&format!(
            "\n# {count} units generated by the fleet benchmark\n"
        ));
        for i in 0..count {
            let (hi, lo) = ((i >> 8) as u8, (i & 0xff) as u8);
            let (name, serial, mac, password) = match g.kind {
                // The universal default: every unit of the model has it.
                "cam" => (
                    format!("sim-cam-{i:04}"),
                    format!("CC0-2024-{:05}", 1000 + i * 7),
                    format!("02:c4:7e:10:{hi:02x}:{lo:02x}"),
                    "admin".to_string(),
                ),
                // Derived by the firmware: the MAC's last six hex digits; consecutive serials.
                "hub" => (
                    format!("sim-hub-{i:04}"),
                    format!("H2-{:06}", 141 + i),
                    format!("02:00:5e:3a:{hi:02x}:{lo:02x}"),
                    format!("3a{hi:02x}{lo:02x}"),
                ),
                // Compliant: a unique random password per unit, handed to the unit.
                _ => {
                    let p = loop {
                        let p = random_password(rng);
                        if used_passwords.insert(p.clone()) {
                            break p;
                        }
                    };
                    (
                        format!("sim-plug-{i:04}"),
                        format!("SP1-{:04X}-{:04}", rng.next() as u16, i),
                        format!("02:5e:11:{:02x}:{hi:02x}:{lo:02x}", rng.next() as u8),
                        p,
                    )
                }
            };
            text.push_str(&format!(
                "\n[[unit]]\nname = \"{name}\"\nserial = \"{serial}\"\nmac = \"{mac}\"\nfirmware = \"{}\"\npassword = {{ value = \"{password}\" }}\n",
                firmware_of(&g.header)
            ));
        }
        fs::write(dir.join(&g.file), text).expect("write fleet board");
        counts.push((g.file.clone(), count));
    }
    counts
}

/// The `[model] firmware` of a board file.
fn firmware_of(header: &str) -> String {
    header
        .lines()
        .find_map(|l| {
            let v = l.strip_prefix("firmware = \"")?;
            Some(v.trim_end_matches('"').to_string())
        })
        .expect("[model] firmware")
}

/// Lets `hilsec` (which inherits the limit) open every console, pipe and socket of a large
/// fleet: the soft descriptor limit is raised to the hard one.
fn raise_nofile() -> (libc::rlim_t, libc::rlim_t) {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 && rl.rlim_cur < rl.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: rl.rlim_max,
                rlim_max: rl.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                rl = raised;
            }
        }
    }
    (rl.rlim_cur, rl.rlim_max)
}

/// Free pseudo-terminals (`/proc/sys/kernel/pty/max` minus those in use).
fn free_ptys() -> Option<u64> {
    let read = |p: &str| -> Option<u64> { fs::read_to_string(p).ok()?.trim().parse().ok() };
    Some(read("/proc/sys/kernel/pty/max")?.saturating_sub(read("/proc/sys/kernel/pty/nr")?))
}

/// What results.json says about a run.
struct RunFacts {
    results: usize,
    /// pass, fail, inconclusive, not_applicable, error.
    counts: [u64; 5],
    /// The end of the test that finished last.
    last_test_end: Option<SystemTime>,
    /// `run.finished` (the `RunFinished` event, seen by the JSON reporter).
    run_finished: Option<SystemTime>,
}

fn facts(out: &Path) -> RunFacts {
    let text = fs::read_to_string(out.join("results.json")).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let tests = v["tests"].as_array().cloned().unwrap_or_default();
    let last_test_end = tests
        .iter()
        .filter_map(|t| {
            let start = humantime::parse_rfc3339(t["started_at"].as_str()?).ok()?;
            Some(start + Duration::from_millis(t["duration_ms"].as_u64()?))
        })
        .max();
    let c = &v["run"]["counts"];
    let n = |k: &str| c[k].as_u64().unwrap_or(0);
    RunFacts {
        results: tests.len(),
        counts: [
            n("pass"),
            n("fail"),
            n("inconclusive"),
            n("not_applicable"),
            n("error"),
        ],
        last_test_end,
        run_finished: v["run"]["finished"]
            .as_str()
            .and_then(|s| humantime::parse_rfc3339(s).ok()),
    }
}

/// Milliseconds from `a` to `b` (negative when `b` is earlier).
fn ms_between(a: SystemTime, b: SystemTime) -> f64 {
    match b.duration_since(a) {
        Ok(d) => d.as_secs_f64() * 1e3,
        Err(e) => -e.duration().as_secs_f64() * 1e3,
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
    if std::env::args().any(|a| a == "--list") {
        // `cargo bench -- --list` compatibility: one benchmark.
        println!("fleet: bench");
        return;
    }
    let simdev = PathBuf::from(env!("CARGO_BIN_EXE_hilsec")).with_file_name("hilsec-simdev");
    assert!(
        simdev.is_file(),
        "{} missing: run ci/bench (it builds every release binary first)",
        simdev.display()
    );
    let sizes: Vec<usize> = std::env::var("HILSEC_BENCH_UNITS")
        .unwrap_or_else(|_| "6,64,256".into())
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("HILSEC_BENCH_UNITS: {s:?} is not a number of units"))
        })
        .collect();
    assert!(
        sizes.iter().all(|n| *n >= 3),
        "HILSEC_BENCH_UNITS: at least 3 units per fleet (one per model)"
    );
    let (nofile, nofile_max) = raise_nofile();
    let largest = sizes.iter().copied().max().unwrap_or(6);
    // Per unit: console and its reader's handle, a wake-up pipe, three pipes to the device
    // process, HTTP and MQTT sockets (both ends of MQTT inside hilsec): about 12.
    if (nofile as usize) < largest * 12 + 256 {
        println!(
            "warning: RLIMIT_NOFILE {nofile} (hard {nofile_max}) may be too low for {largest} units"
        );
    }
    if let Some(free) = free_ptys() {
        if (free as usize) < largest + 16 {
            println!(
                "warning: only {free} free pseudo-terminals (/proc/sys/kernel/pty/max) for {largest} units"
            );
        }
    }

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
