//! Helpers shared by the fleet and scale benchmarks: running `hilsec` while sampling its CPU
//! time and peak RSS from /proc, generating simulated fleets of any size from `boards/sim/`,
//! and reading a run's results.json.

#![allow(dead_code)]

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

pub struct Measured {
    pub wall: Duration,
    pub cpu: Duration,
    pub children_cpu: Duration,
    pub peak_rss_kib: u64,
    pub code: i32,
    /// Wall-clock time the process was seen to have exited.
    pub exited_at: SystemTime,
}

/// `cargo bench -- --list` asks which benchmarks exist: answers with `name` and returns `true`
/// (the caller stops there).
pub fn answered_list(name: &str) -> bool {
    if std::env::args().any(|a| a == "--list") {
        println!("{name}: bench");
        return true;
    }
    false
}

/// Stops with what to run when the release `hilsec-simdev` is not next to `hilsec`
/// (`build_with`: the command that builds every release binary first).
pub fn require_simdev(build_with: &str) {
    let simdev = PathBuf::from(env!("CARGO_BIN_EXE_hilsec")).with_file_name("hilsec-simdev");
    assert!(
        simdev.is_file(),
        "{} missing: run {build_with} (it builds every release binary first)",
        simdev.display()
    );
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no memory effects.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime+stime and cutime+cstime of a process, from /proc/PID/stat.
pub fn cpu_of(pid: u32) -> Option<(Duration, Duration)> {
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

pub fn hwm_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Runs `hilsec ARGS`, sampling its peak RSS, and reads its CPU time once it has exited but
/// before it is reaped (a zombie keeps its counters).
pub fn measure(args: &[&str]) -> Measured {
    let argv: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    measure_many(&[argv]).pop().expect("one run")
}

/// Runs several `hilsec` processes at once (one per argument list), each measured as
/// [`measure`] does; wall times count from the moment all were started.
pub fn measure_many(runs: &[Vec<String>]) -> Vec<Measured> {
    let t0 = Instant::now();
    let mut children: Vec<_> = runs
        .iter()
        .map(|args| {
            Command::new(env!("CARGO_BIN_EXE_hilsec"))
                .args(args)
                .current_dir(repo_root())
                .env("CI", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn hilsec")
        })
        .collect();
    let mut peaks = vec![0u64; children.len()];
    let mut done: Vec<Option<Measured>> = children.iter().map(|_| None).collect();
    while done.iter().any(Option::is_none) {
        for (k, child) in children.iter_mut().enumerate() {
            if done[k].is_some() {
                continue;
            }
            let pid = child.id();
            // VmHWM only grows: the last reading before the exit is the peak.
            if let Some(h) = hwm_kib(pid) {
                peaks[k] = peaks[k].max(h);
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
                let wall = t0.elapsed();
                let exited_at = SystemTime::now();
                let (cpu, children_cpu) = cpu_of(pid).unwrap_or_default();
                let status = child.wait().expect("reap hilsec");
                done[k] = Some(Measured {
                    wall,
                    cpu,
                    children_cpu,
                    peak_rss_kib: peaks[k],
                    code: status.code().unwrap_or(-1),
                    exited_at,
                });
            }
        }
        if done.iter().any(Option::is_none) {
            // Light sampling: on a 2-core machine the bench must not compete with what it
            // measures.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    done.into_iter().map(|m| m.expect("measured")).collect()
}

/// Paths relative to `boards/sim/` made absolute, for a copy of a board file elsewhere (as
/// `rebase_fixture_paths` in the CLI tests).
pub fn rebase_fixture_paths(text: &str) -> String {
    let fixtures = repo_root().join("fixtures").display().to_string();
    text.replace("{board.dir}/../../fixtures", &fixtures)
        .replace("\"../../fixtures", &format!("\"{fixtures}"))
}

/// A board file's text before its first `[[unit]]` (the model, its interfaces and actions).
pub fn model_part(text: &str) -> &str {
    let first = text.find("\n[[unit]]").expect("a unit");
    &text[..first + 1]
}

/// A copy of a board file with only its first unit.
pub fn first_unit_only(src: &Path, dst: &Path) {
    let text = fs::read_to_string(src).expect("board file");
    let first = text.find("\n[[unit]]").expect("a unit");
    let cut = text[first + 9..]
        .find("\n[[unit]]")
        .map(|i| first + 9 + i)
        .unwrap_or(text.len());
    fs::write(dst, rebase_fixture_paths(&text[..cut])).expect("write board");
}

/// splitmix64: enough randomness for test passwords without another dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn seeded() -> Rng {
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        Rng(t ^ ((std::process::id() as u64) << 32))
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn pick(&mut self, set: &[u8]) -> char {
        set[(self.next() % set.len() as u64) as usize] as char
    }
}

/// A random 12-character password with upper and lower case letters, digits and symbols
/// (none that TOML, templates or a console line would treat specially).
pub fn random_password(rng: &mut Rng) -> String {
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
pub struct ModelGen {
    pub file: String,
    /// `cam`, `hub` or `plug` (the simulated firmware: how it knows its password).
    pub kind: &'static str,
    pub header: String,
}

/// The models of `boards/sim/`, in file name order.
pub fn sim_models() -> Vec<ModelGen> {
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
    models
}

/// Writes a fleet of `n` units into `dir` (the models of `boards/sim/`, units spread evenly),
/// returns how many units each model got.
pub fn generate_fleet(dir: &Path, n: usize, rng: &mut Rng) -> Vec<(String, usize)> {
    let models = sim_models();
    let m = models.len();
    let groups: Vec<Group> = (0..m)
        .map(|mi| Group {
            model: mi,
            copy: 0,
            units: n / m + usize::from(mi < n % m),
        })
        .collect();
    generate_groups(dir, &models, &groups, rng)
}

/// Units of one model in a generated fleet.
#[derive(Debug, Clone, Copy)]
pub struct Group {
    /// Index into [`sim_models`].
    pub model: usize,
    /// 0: the model as `boards/sim/` names it; k > 0: the same model under another name
    /// (`NAME #k+1`, file `FILE-k+1.toml`), which the harness judges and shards as a model of
    /// its own.
    pub copy: usize,
    pub units: usize,
}

/// Writes one board file per group into `dir`, returns (file, units) per group. Unit names,
/// serials and MACs are unique across the fleet (numbered per simulated model across copies),
/// per-unit passwords as the simulated firmware has them (SimPlug S1: a unique random
/// 12-character password per unit, handed to the unit; SimHub H2: derived from the MAC by its
/// firmware; SimCam C0: the universal `admin`).
pub fn generate_groups(
    dir: &Path,
    models: &[ModelGen],
    groups: &[Group],
    rng: &mut Rng,
) -> Vec<(String, usize)> {
    fs::create_dir_all(dir).expect("fleet dir");
    let mut used_passwords = HashSet::new();
    let mut next_index = vec![0usize; models.len()];
    let mut counts = Vec::new();
    for grp in groups {
        let g = &models[grp.model];
        let count = grp.units;
        let (file, header) = if grp.copy == 0 {
            (g.file.clone(), g.header.clone())
        } else {
            let stem = g.file.trim_end_matches(".toml");
            (
                format!("{stem}-{}.toml", grp.copy + 1),
                renamed_model(&g.header, grp.copy + 1),
            )
        };
        let mut text = header;
        text.push_str(&format!(
            "\n# {count} units generated by the fleet benchmark\n"
        ));
        let base = next_index[grp.model];
        next_index[grp.model] += count;
        for i in base..base + count {
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
        fs::write(dir.join(&file), text).expect("write fleet board");
        counts.push((file, count));
    }
    counts
}

/// A model part with `[model] name` changed to `NAME #k`.
fn renamed_model(header: &str, k: usize) -> String {
    let at = header.find("[model]").expect("[model]");
    let name_at = at + header[at..].find("\nname = \"").expect("[model] name") + 1;
    let end = name_at + header[name_at..].find('\n').expect("end of line");
    let old = header[name_at..end]
        .trim_start_matches("name = \"")
        .trim_end_matches('"');
    format!(
        "{}name = \"{old} #{k}\"{}",
        &header[..name_at],
        &header[end..]
    )
}

/// The `[model] firmware` of a board file.
pub fn firmware_of(header: &str) -> String {
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
pub fn raise_nofile() -> (libc::rlim_t, libc::rlim_t) {
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
pub fn free_ptys() -> Option<u64> {
    let read = |p: &str| -> Option<u64> { fs::read_to_string(p).ok()?.trim().parse().ok() };
    Some(read("/proc/sys/kernel/pty/max")?.saturating_sub(read("/proc/sys/kernel/pty/nr")?))
}

/// What results.json says about a run.
pub struct RunFacts {
    pub results: usize,
    /// pass, fail, inconclusive, not_applicable, error.
    pub counts: [u64; 5],
    /// The end of the test that finished last.
    pub last_test_end: Option<SystemTime>,
    /// `run.finished` (the `RunFinished` event, seen by the JSON reporter).
    pub run_finished: Option<SystemTime>,
}

pub fn facts(out: &Path) -> RunFacts {
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
pub fn ms_between(a: SystemTime, b: SystemTime) -> f64 {
    match b.duration_since(a) {
        Ok(d) => d.as_secs_f64() * 1e3,
        Err(e) => -e.duration().as_secs_f64() * 1e3,
    }
}

/// The fleet sizes a bench runs: `var` (comma-separated unit counts) or `default`; each at
/// least `min`.
pub fn sizes_from_env(var: &str, default: &str, min: usize) -> Vec<usize> {
    let sizes: Vec<usize> = std::env::var(var)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{var}: {s:?} is not a number of units"))
        })
        .collect();
    assert!(
        sizes.iter().all(|n| *n >= min),
        "{var}: at least {min} units per fleet"
    );
    sizes
}

/// Raises the descriptor limit and warns when it, or the free pseudo-terminals, look too few
/// for `largest` units. Per unit: console and its reader's handle, a wake-up pipe, three pipes
/// to the device process, HTTP and MQTT sockets (both ends of MQTT inside hilsec): about 12.
/// Returns the descriptor limit (soft, hard).
pub fn check_limits(largest: usize) -> (libc::rlim_t, libc::rlim_t) {
    let (nofile, nofile_max) = raise_nofile();
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
    (nofile, nofile_max)
}
