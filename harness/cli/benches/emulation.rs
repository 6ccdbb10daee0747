//! Benchmark: the emulated regression run — the reference firmware (fixtures/firmware/) in QEMU,
//! as `boards/qemu/` runs it — with printed figures (not a timed test: nothing fails on a
//! figure).
//!
//! Run with `ci/bench emulation` (it builds the release binaries and the firmware first). Prints:
//! - the firmware's flash and RAM size per build (from `fixtures/firmware/build`);
//! - boot to prompt per unit: from starting QEMU to the console connected (QEMU listening) and
//!   to the firmware's `login:` prompt, over `HILSEC_BENCH_BOOTS` boots (default 5);
//! - suite wall time per unit: the password and the update suite on one secure unit;
//! - units run concurrently on this machine's cores: the update suite on fleets of
//!   `HILSEC_BENCH_EMU_UNITS` secure units (default 1,2,4,8), wall time against one unit's, and
//!   the CPU time of the harness and its QEMUs per unit.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hilsec_core::board::{load_boards, LoadMode};
use hilsec_core::device::RunEnv;
use hilsec_core::emulator::start_unit;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `boards/qemu/hilref-f4.toml` with `n` units of the secure build (unique names, serials,
/// MACs and passwords), paths made absolute, written to `dir/board.toml`.
fn secure_fleet(dir: &Path, n: usize) -> PathBuf {
    let text = fs::read_to_string(repo_root().join("boards/qemu/hilref-f4.toml")).expect("board");
    let root = repo_root().canonicalize().expect("repo root");
    let root = root.display().to_string();
    let model = &text[..text.find("[[unit]]").expect("units")];
    let mut out = model
        .replace("{board.dir}/../..", &root)
        .replace("\"../../fixtures", &format!("\"{root}/fixtures"));
    for i in 0..n {
        out.push_str(&format!(
            "[[unit]]\nname = \"bench-{i:03}\"\nserial = \"HRF4-B{i:03}\"\nmac = \"02:48:52:10:{:02x}:{:02x}\"\npassword = {{ value = \"Bq{i:03}#xZ8!k{}\" }}\nvars = {{ build = \"secure\" }}\n\n",
            i / 256,
            i % 256,
            (b'a' + (i % 26) as u8) as char
        ));
    }
    let f = dir.join("board.toml");
    fs::create_dir_all(dir).expect("dir");
    fs::write(&f, out).expect("write board");
    f
}

fn children_cpu() -> Duration {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    let t = |tv: libc::timeval| Duration::new(tv.tv_sec as u64, tv.tv_usec as u32 * 1000);
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// Runs `hilsec run` on `board`; wall time, CPU of the harness and every QEMU it reaped, and
/// each unit's summed test durations (ms) from results.json.
fn run(board: &Path, suite: &str, out: &Path) -> (Duration, Duration, Vec<f64>) {
    let bin = repo_root().join("target/release/hilsec");
    let cpu0 = children_cpu();
    let t0 = Instant::now();
    let st = Command::new(&bin)
        .args(["run", "--board"])
        .arg(board)
        .args(["--suite", suite, "--out"])
        .arg(out)
        .output()
        .expect("run hilsec");
    let wall = t0.elapsed();
    let cpu = children_cpu().saturating_sub(cpu0);
    let code = st.status.code().unwrap_or(-1);
    if code != 0 {
        eprintln!(
            "note: hilsec exited {code}: {}",
            String::from_utf8_lossy(&st.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    let text = fs::read_to_string(out.join("results.json")).expect("results.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    let mut per_unit = std::collections::BTreeMap::<String, f64>::new();
    let mut errors = 0;
    for t in v["tests"].as_array().expect("tests") {
        if t["scope"] == "model" {
            continue;
        }
        if t["verdict"] == "error" {
            errors += 1;
        }
        *per_unit
            .entry(t["board"].as_str().unwrap_or("").to_string())
            .or_default() += t["duration_ms"].as_f64().unwrap_or(0.0);
    }
    if errors > 0 {
        eprintln!("note: {errors} tests ended in error");
    }
    (wall, cpu, per_unit.into_values().collect())
}

fn stats(xs: &mut [f64]) -> (f64, f64, f64) {
    xs.sort_by(|a, b| a.total_cmp(b));
    let med = xs[xs.len() / 2];
    (xs[0], med, xs[xs.len() - 1])
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let root = repo_root();
    println!("== reference firmware: flash and RAM per build");
    let st = Command::new(root.join("fixtures/firmware/build"))
        .status()
        .expect("run fixtures/firmware/build");
    assert!(st.success(), "fixtures/firmware/build failed");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let tmp = tempfile::tempdir().expect("tempdir");

    // Boot to prompt.
    let boots: usize = std::env::var("HILSEC_BENCH_BOOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let board = secure_fleet(&tmp.path().join("boot"), 1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (mut ready_ms, mut prompt_ms) = (Vec::new(), Vec::new());
    for _ in 0..boots {
        let b = load_boards(std::slice::from_ref(&board), LoadMode::Run)
            .unwrap_or_else(|e| panic!("board: {e:?}"))
            .remove(0);
        rt.block_on(async {
            let t0 = Instant::now();
            let Ok(mut s) =
                start_unit(b.units[0].clone(), b.model.clone(), &RunEnv::default()).await
            else {
                panic!("the unit starts");
            };
            ready_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
            // `sync` waits for the login prompt (or brings the console to it).
            s.device.begin_test();
            s.device.run_action("sync", &[]).await.expect("prompt");
            prompt_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
            drop(s.device);
            if let Some(e) = s.emulator {
                e.lock().await.stop().await;
            }
        });
    }
    let (a, m, z) = stats(&mut ready_ms);
    println!("\n== boot to prompt, {boots} boots of one unit (QEMU netduinoplus2)");
    println!("QEMU started to console connected: min {a:.0} ms, median {m:.0} ms, max {z:.0} ms");
    let (a, m, z) = stats(&mut prompt_ms);
    println!("QEMU started to `login:` prompt:   min {a:.0} ms, median {m:.0} ms, max {z:.0} ms");

    // Suite wall time per unit.
    println!("\n== suite wall time, one secure unit");
    for suite in ["password", "update"] {
        let (wall, cpu, per_unit) = run(&board, suite, &tmp.path().join(format!("one-{suite}")));
        println!(
            "{suite:<9} wall {:6.1} s   tests {:6.1} s   CPU (harness + QEMU) {:5.1} s",
            wall.as_secs_f64(),
            per_unit.iter().sum::<f64>() / 1000.0,
            cpu.as_secs_f64()
        );
    }

    // Concurrency.
    let sizes: Vec<usize> = std::env::var("HILSEC_BENCH_EMU_UNITS")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2, 4, 8]);
    println!("\n== units run concurrently on {cores} cores, update suite (10 images per unit)");
    println!("units   wall      vs 1 unit   per unit (median test time)   CPU/unit");
    let mut base = None;
    for n in sizes {
        let board = secure_fleet(&tmp.path().join(format!("fleet-{n}")), n);
        let (wall, cpu, mut per_unit) = run(&board, "update", &tmp.path().join(format!("out-{n}")));
        let base_s = *base.get_or_insert(wall.as_secs_f64());
        let (_, med, _) = stats(&mut per_unit);
        println!(
            "{n:>5} {:7.1} s   {:5.2}x      {:7.1} s                      {:5.2} s",
            wall.as_secs_f64(),
            wall.as_secs_f64() / base_s,
            med / 1000.0,
            cpu.as_secs_f64() / n as f64
        );
    }
}
