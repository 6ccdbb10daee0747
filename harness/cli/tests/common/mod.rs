//! Helpers shared by the CLI's integration tests: running the real `hilsec` binary with a
//! deadline (a hang is a failure, never a stuck CI job), and reading what it wrote.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

pub fn hilsec_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hilsec"))
}

/// The simulated device must sit next to `hilsec` (cargo builds it with the workspace).
pub fn require_simdev() {
    let simdev = hilsec_bin().with_file_name("hilsec-simdev");
    assert!(
        simdev.is_file() || std::env::var_os("HILSEC_SIMDEV").is_some(),
        "{} is missing: run `cargo build --workspace` (ci/test does) before these tests",
        simdev.display()
    );
}

/// A `hilsec` command run from the repository root, output captured into files in `dir`.
pub struct Run {
    pub child: Child,
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

pub fn spawn(args: &[&str], dir: &Path) -> Run {
    spawn_env(args, &[], dir)
}

/// Like [`spawn`], with extra environment variables for `hilsec`.
pub fn spawn_env(args: &[&str], env: &[(&str, &str)], dir: &Path) -> Run {
    let stdout = dir.join("stdout.txt");
    let stderr = dir.join("stderr.txt");
    let child = Command::new(hilsec_bin())
        .args(args)
        .current_dir(repo_root())
        .env("CI", "1")
        // Physical units take leases: keep them in the test's folder, not the host's lease
        // folder shared with whoever else runs hilsec here (an explicit env entry wins).
        .env("HILSEC_LEASE_DIR", dir.join("leases"))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout).expect("stdout file"))
        .stderr(fs::File::create(&stderr).expect("stderr file"))
        .spawn()
        .expect("spawn hilsec");
    Run {
        child,
        stdout,
        stderr,
    }
}

pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Finished {
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
}

impl Run {
    /// Waits for the process; kills it and fails the test if it outlives `deadline`.
    pub fn finish(mut self, deadline: Duration) -> Finished {
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Finished {
                    status,
                    stdout: fs::read_to_string(&self.stdout).unwrap_or_default(),
                    stderr: fs::read_to_string(&self.stderr).unwrap_or_default(),
                    elapsed: t0.elapsed(),
                };
            }
            if t0.elapsed() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "hilsec did not finish within {deadline:?}; stderr:\n{}",
                    fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Runs `hilsec ARGS` to completion within `deadline`.
pub fn hilsec(args: &[&str], dir: &Path, deadline: Duration) -> Finished {
    spawn(args, dir).finish(deadline)
}

/// `results.json` of a run.
pub fn results(out: &Path) -> serde_json::Value {
    let text = fs::read_to_string(out.join("results.json")).expect("results.json written");
    serde_json::from_str(&text).expect("results.json is JSON")
}

/// The record of `test` on `board` in `results.json`.
pub fn record<'a>(
    results: &'a serde_json::Value,
    board: &str,
    test: &str,
) -> &'a serde_json::Value {
    results["tests"]
        .as_array()
        .expect("tests array")
        .iter()
        .find(|t| t["board"] == board && t["test"] == test)
        .unwrap_or_else(|| panic!("no record of {test} on {board}"))
}

pub fn verdict<'a>(results: &'a serde_json::Value, board: &str, test: &str) -> &'a str {
    record(results, board, test)["verdict"]
        .as_str()
        .expect("verdict string")
}

/// Lines of `journal.jsonl`, each parsed (a torn line fails the test).
pub fn journal(out: &Path) -> Vec<serde_json::Value> {
    let text = fs::read_to_string(out.join("journal.jsonl")).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("torn journal line {l:?}: {e}")))
        .collect()
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Processes whose command line contains `marker` (other than ourselves).
pub fn processes_with(marker: &str) -> Vec<(u32, String)> {
    let me = std::process::id();
    let mut found = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(raw) = fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            if cmd.contains(marker) {
                found.push((pid, cmd));
            }
        }
    }
    found
}

/// Waits up to `limit` for every process with `marker` to be gone; returns the survivors.
pub fn survivors_after(marker: &str, limit: Duration) -> Vec<(u32, String)> {
    let t0 = Instant::now();
    loop {
        let left = processes_with(marker);
        if left.is_empty() || t0.elapsed() > limit {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Copies the built-in fleet into `dir`, renaming every unit `sim-*` to `<prefix>-*`, so a
/// test can find its own device processes by name.
pub fn fleet_copy(dir: &Path, prefix: &str) -> PathBuf {
    let boards = dir.join("boards");
    fs::create_dir_all(&boards).expect("boards dir");
    for e in fs::read_dir(repo_root().join("boards/sim"))
        .expect("boards/sim")
        .flatten()
    {
        let text = fs::read_to_string(e.path()).expect("board file");
        let text =
            rebase_fixture_paths(&text.replace("name = \"sim-", &format!("name = \"{prefix}-")));
        fs::write(boards.join(e.file_name()), text).expect("write board copy");
    }
    boards
}

/// A board file of `boards/sim/` rewritten to live elsewhere: its paths relative to
/// `boards/sim/` become absolute paths of the repository's fixtures.
pub fn rebase_fixture_paths(text: &str) -> String {
    let fixtures = repo_root().join("fixtures").display().to_string();
    text.replace("{board.dir}/../../fixtures", &fixtures)
        .replace("\"../../fixtures", &format!("\"{fixtures}"))
}

/// Waits until `journal.jsonl` in `out` holds a complete line with `verdict` (or `limit`
/// passes); returns how many lines it held then, and whether one had that verdict.
pub fn wait_for_verdict(out: &Path, verdict: &str, limit: Duration) -> (usize, bool) {
    let t0 = Instant::now();
    loop {
        let text = fs::read_to_string(out.join("journal.jsonl")).unwrap_or_default();
        // Only newline-terminated lines: the last one may be half written.
        let complete: Vec<&str> = text
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .collect();
        let found = complete.iter().any(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .map(|v| v["verdict"] == verdict)
                .unwrap_or(false)
        });
        if found || t0.elapsed() > limit {
            return (complete.len(), found);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `journal.jsonl` in `out` holds at least `n` lines (or `limit` passes).
pub fn wait_for_journal(out: &Path, n: usize, limit: Duration) -> usize {
    let t0 = Instant::now();
    loop {
        let lines = fs::read_to_string(out.join("journal.jsonl"))
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if lines >= n || t0.elapsed() > limit {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A copy of `boards/sim/FILE` in `dir` holding only its first unit, renamed `name`, with the
/// model part passed through `edit` (paths rebased to the repository's fixtures).
pub fn one_unit_sim_board(
    dir: &Path,
    file: &str,
    name: &str,
    edit: impl Fn(String) -> String,
) -> PathBuf {
    let text = fs::read_to_string(repo_root().join("boards/sim").join(file)).expect("board");
    let cut = text.find("\n[[unit]]").expect("a [[unit]] table");
    let (head, units) = text.split_at(cut + 1);
    let first_end = units[8..]
        .find("\n[[unit]]")
        .map(|i| i + 9)
        .unwrap_or(units.len());
    let first = &units[..first_end];
    let old_name = first
        .lines()
        .find_map(|l| l.strip_prefix("name = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("unit name");
    let first = first.replace(
        &format!("name = \"{old_name}\""),
        &format!("name = \"{name}\""),
    );
    let path = dir.join(format!("{name}.toml"));
    fs::write(&path, edit(rebase_fixture_paths(head)) + &first).expect("write board");
    path
}

/// Sends `sig` to a child process the test spawned and has not reaped.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid we own; no memory is involved.
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig})");
}

/// Whether the emulated-fleet tests can run: `qemu-system-arm` on PATH (in CI it must be: the
/// test command installs it; elsewhere its absence is a loud skip), and the reference firmware
/// built (built here when missing).
pub fn have_qemu() -> bool {
    let ok = Command::new("qemu-system-arm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "qemu-system-arm is missing in CI: the test command (ci/test) installs it"
        );
        eprintln!("SKIPPED: qemu-system-arm is not on PATH; install it (apt-get install --no-install-recommends qemu-system-arm) or run ci/test");
        return false;
    }
    if !repo_root().join("target/firmware/rtt.elf").is_file() {
        let st = Command::new(repo_root().join("fixtures/firmware/build"))
            .status()
            .expect("run fixtures/firmware/build");
        assert!(st.success(), "fixtures/firmware/build failed");
    }
    true
}
