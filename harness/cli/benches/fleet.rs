//! Benchmark: the password suite on the 6-unit simulated fleet, with printed figures.
//!
//! Run with `ci/bench` (it builds the release binaries first). Prints:
//! - wall time of the fleet run;
//! - the longest unit's own critical path: each model's first unit run alone (same binary,
//!   same suite), the slowest of those; the fleet's wall time should stay within 1.25x of it
//!   when boards truly run in parallel;
//! - harness CPU time and peak RSS (the `hilsec` process alone, read from /proc: device
//!   processes are reported separately);
//! - `hilsec list` time (median and worst of 21 runs).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Measured {
    wall: Duration,
    cpu: Duration,
    children_cpu: Duration,
    peak_rss_kib: u64,
    code: i32,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
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
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn hilsec");
    let pid = child.id();
    let mut peak = 0;
    loop {
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
        std::thread::sleep(Duration::from_millis(5));
    }
    let wall = t0.elapsed();
    let (cpu, children_cpu) = cpu_of(pid).unwrap_or_default();
    let status = child.wait().expect("reap hilsec");
    Measured {
        wall,
        cpu,
        children_cpu,
        peak_rss_kib: peak,
        code: status.code().unwrap_or(-1),
    }
}

/// A copy of a board file with only its first unit.
fn first_unit_only(src: &Path, dst: &Path) {
    let text = fs::read_to_string(src).expect("board file");
    let first = text.find("\n[[unit]]").expect("a unit");
    let cut = text[first + 9..]
        .find("\n[[unit]]")
        .map(|i| first + 9 + i)
        .unwrap_or(text.len());
    // Paths relative to boards/sim/ must still reach the repository's fixtures.
    let fixtures = repo_root()
        .join("fixtures")
        .canonicalize()
        .expect("fixtures");
    let fixtures = fixtures.display().to_string();
    let text = text[..cut]
        .replace("{board.dir}/../../fixtures", &fixtures)
        .replace("\"../../fixtures", &format!("\"{fixtures}"));
    fs::write(dst, text).expect("write board");
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
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    let out_s = out.to_str().expect("utf-8 path");

    // Warm-up (page cache, first pty allocations), not measured.
    let _ = measure(&["run", "--suite", "password", "--out", out_s]);
    let fleet = measure(&["run", "--suite", "password", "--out", out_s]);

    assert_eq!(fleet.code, 1, "the fleet run exits 1 (weak models fail)");
    let results: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("results.json")).expect("results"))
            .expect("results.json");
    let tests = results["tests"].as_array().map(|a| a.len()).unwrap_or(0);
    let all_suites = measure(&["run", "--out", out_s]);

    let mut solo = Vec::new();
    for e in fs::read_dir(repo_root().join("boards/sim"))
        .expect("boards/sim")
        .flatten()
    {
        let board = tmp.path().join(e.file_name());
        first_unit_only(&e.path(), &board);
        let solo_out = tmp.path().join("solo");
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
            "a solo run of {:?} failed to run",
            e.file_name()
        );
        solo.push((e.file_name().to_string_lossy().into_owned(), m.wall));
    }
    solo.sort_by_key(|(_, w)| *w);
    let (slowest, critical) = solo.last().cloned().expect("a model");

    let mut list_times: Vec<Duration> = (0..21).map(|_| measure(&["list"]).wall).collect();
    list_times.sort();

    println!("hilsec fleet benchmark (password suite, 6 units, 3 models, {tests} results)");
    println!(
        "  wall time, fleet run            {:>8.0} ms",
        fleet.wall.as_secs_f64() * 1e3
    );
    for (name, wall) in &solo {
        println!(
            "    one unit alone: {name:<20} {:>8.0} ms",
            wall.as_secs_f64() * 1e3
        );
    }
    println!(
        "  longest unit's critical path    {:>8.0} ms  ({slowest}, run alone)",
        critical.as_secs_f64() * 1e3
    );
    println!(
        "  wall / critical path            {:>8.2} x   (target <= 1.25)",
        fleet.wall.as_secs_f64() / critical.as_secs_f64()
    );
    println!(
        "  harness CPU time (user+sys)     {:>8.0} ms",
        fleet.cpu.as_secs_f64() * 1e3
    );
    println!(
        "  device processes CPU time       {:>8.0} ms  (6 hilsec-simdev)",
        fleet.children_cpu.as_secs_f64() * 1e3
    );
    println!(
        "  harness peak RSS                {:>8.1} MB  (target < 50)",
        fleet.peak_rss_kib as f64 / 1024.0
    );
    println!(
        "  all suites (password, update, disclosure): wall {:.0} ms, harness CPU {:.0} ms, peak RSS {:.1} MB",
        all_suites.wall.as_secs_f64() * 1e3,
        all_suites.cpu.as_secs_f64() * 1e3,
        all_suites.peak_rss_kib as f64 / 1024.0
    );
    println!(
        "  `hilsec list`                   {:>8.1} ms median, {:.1} ms worst of 21  (target < 50)",
        list_times[10].as_secs_f64() * 1e3,
        list_times[20].as_secs_f64() * 1e3
    );
}
