//! Consoles over real pseudo-terminals, driven by a scripted fake device on the master side:
//! multi-outcome `expect` (`accept` skips the rest of an action), per-arrival timestamps,
//! leftovers of a previous test recorded as "before test", hang-ups reported as such, and
//! closing many consoles without waiting on read timeouts.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hilsec_core::board::{load_boards, LoadMode};
use hilsec_core::device::{Device, RunEnv};
use hilsec_core::iface::serial::{Console, LinkError};
use hilsec_core::secret::{Redactor, SecretValue};
use hilsec_core::transcript::Transcript;
use regex::bytes::Regex;

/// The master side of a pseudo-terminal and the path of its slave (what the harness opens).
struct Pty {
    master: File,
    path: String,
}

fn pty() -> Pty {
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    let m = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).expect("openpt");
    grantpt(&m).expect("grantpt");
    unlockpt(&m).expect("unlockpt");
    let path = ptsname(&m, Vec::new()).expect("ptsname");
    Pty {
        master: File::from(m),
        path: path.to_string_lossy().into_owned(),
    }
}

/// A line the fake device answers, after an optional pause, with each of `replies` in turn.
type Script = Box<dyn Fn(&str) -> Vec<(Duration, Vec<u8>)> + Send>;

/// Runs a fake device on the master: reads lines the harness sends (recorded in the returned
/// list) and answers per `script`. Ends when the harness closes its side.
fn fake_device(master: File, script: Script) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let seen = lines.clone();
    let mut writer = master.try_clone().expect("dup master");
    std::thread::spawn(move || {
        let mut master = master;
        let mut pending = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = match master.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            pending.extend_from_slice(&buf[..n]);
            while let Some(pos) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&line).trim_end().to_string();
                seen.lock().expect("lines").push(line.clone());
                for (pause, bytes) in script(&line) {
                    std::thread::sleep(pause);
                    if writer.write_all(&bytes).is_err() {
                        return;
                    }
                }
            }
        }
    });
    lines
}

fn now(b: &[u8]) -> Vec<(Duration, Vec<u8>)> {
    vec![(Duration::ZERO, b.to_vec())]
}

const BOARD: &str = r#"
[model]
name = "Pty Test"

[interfaces.console]
kind = "serial"
path = "{unit.tty}"
timeout = "5s"

[actions.login]
params = ["user", "password"]
secret_params = ["password"]
steps = [
  { send = "{user}\n" },
  { expect = 'Password: $', accept = '(?P<prompt>[#$]) $', reject = 'Login incorrect' },
  { send = "{password}\n" },
  { expect = '(?P<prompt>[#$]) $', reject = 'Login incorrect' },
]

# A caller goes on after its callee was accepted early.
[actions.whoami]
steps = [
  { call = "login", args = { user = "root", password = "{secret.password}" } },
  { send = "id\n" },
  { expect = 'uid=(?P<uid>\d+)' },
]

[actions.slow]
steps = [
  { send = "slow\n" },
  { wait = "600ms" },
  { expect = 'Login incorrect' },
]

[actions.poke]
steps = [
  { send = "poke\n" },
  { expect = 'ok\r?\n' },
]

[actions.prompt]
steps = [
  { send = "\n" },
  { expect = '(?P<which>\w+) login: $' },
]

[[unit]]
name = "pty-1"
password = { value = "S3cret-pass!" }
vars = { tty = "TTY" }
"#;

/// A device for a board whose console is `tty`.
fn device(tty: &str) -> (Device, PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "hilsec-pty-{}-{}",
        std::process::id(),
        tty.replace('/', "_")
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("board.toml");
    std::fs::write(&file, BOARD.replace("TTY", tty)).expect("write board");
    let mut boards = load_boards(std::slice::from_ref(&file), LoadMode::Run)
        .unwrap_or_else(|e| panic!("board loads: {e:?}"));
    let board = boards.remove(0);
    let unit = board.units[0].clone();
    (
        Device::new(unit, board.model, &BTreeMap::new(), &RunEnv::default()),
        dir,
    )
}

fn login_args() -> Vec<(&'static str, SecretValue)> {
    vec![
        ("user", SecretValue::plain("admin")),
        ("password", SecretValue::secret("S3cret-pass!")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_right_after_the_user_name_is_accepted_and_skips_the_rest() {
    let p = pty();
    let (mut dev, dir) = device(&p.path);
    let lines = fake_device(
        p.master,
        Box::new(|l| match l {
            "admin" => now(b"\r\nBusyBox v1.36 built-in shell\r\n# "),
            _ => now(b"\r\nsh: unexpected\r\n# "),
        }),
    );
    let t = dev.begin_test();
    let out = dev.run_action("login", &login_args()).await.expect("login");
    assert!(out.accepted(), "{out:?}");
    assert_eq!(out.shortcut.as_deref(), Some("#"), "{out:?}");
    assert_eq!(out.captures.get("prompt").map(String::as_str), Some("#"));
    // The password steps were skipped: the device never got a second line.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(*lines.lock().expect("lines"), vec!["admin".to_string()]);
    let ev = t.render(dev.redactor());
    assert!(ev.contains("accepted early"), "{ev}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_prompt_goes_on_and_a_refusal_is_rejected() {
    let p = pty();
    let (mut dev, dir) = device(&p.path);
    let lines = fake_device(
        p.master,
        Box::new(|l| match l {
            "admin" => now(b"\r\nPassword: "),
            "S3cret-pass!" => now(b"\r\n$ "),
            "nobody" => now(b"\r\nLogin incorrect\r\nlogin: "),
            _ => now(b"?\r\n"),
        }),
    );
    dev.begin_test();
    let out = dev.run_action("login", &login_args()).await.expect("login");
    assert!(out.accepted() && out.shortcut.is_none(), "{out:?}");
    assert_eq!(out.captures.get("prompt").map(String::as_str), Some("$"));
    assert_eq!(lines.lock().expect("lines").len(), 2);

    let out = dev
        .run_action(
            "login",
            &[
                ("user", SecretValue::plain("nobody")),
                ("password", SecretValue::secret("x")),
            ],
        )
        .await
        .expect("login");
    assert_eq!(out.rejected.as_deref(), Some("Login incorrect"), "{out:?}");
    assert!(out.shortcut.is_none());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accept_in_a_called_action_ends_only_the_callee() {
    let p = pty();
    let (mut dev, dir) = device(&p.path);
    let _lines = fake_device(
        p.master,
        Box::new(|l| match l {
            "root" => now(b"\r\n# "),
            "id" => now(b"\r\nuid=0(root) gid=0(root)\r\n# "),
            _ => now(b"?\r\n"),
        }),
    );
    dev.begin_test();
    let out = dev.run_action("whoami", &[]).await.expect("whoami");
    assert_eq!(out.shortcut.as_deref(), Some("#"), "{out:?}");
    assert_eq!(
        out.captures.get("uid").map(String::as_str),
        Some("0"),
        "{out:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// The `[  123.456 ms]` stamp of the first transcript line containing `needle`.
fn stamp_of(rendered: &str, needle: &str) -> f64 {
    let line = rendered
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{rendered}"));
    line.trim_start_matches('[')
        .split(" ms]")
        .next()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no stamp in {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_are_stamped_when_they_arrived() {
    let p = pty();
    let (mut dev, dir) = device(&p.path);
    let _lines = fake_device(
        p.master,
        Box::new(|l| match l {
            "slow" => vec![
                (Duration::ZERO, b"Password: ".to_vec()),
                (Duration::from_millis(200), b"Login incorrect\r\n".to_vec()),
            ],
            _ => now(b"?\r\n"),
        }),
    );
    let t = dev.begin_test();
    // Both chunks are read only after the wait: their stamps must still be 200 ms apart,
    // on separate lines.
    dev.run_action("slow", &[]).await.expect("slow");
    let ev = t.render(&Redactor::default());
    let first = stamp_of(&ev, "<- Password: ");
    let second = stamp_of(&ev, "Login incorrect");
    assert!(
        !ev.lines()
            .any(|l| l.contains("Password: ") && l.contains("Login incorrect")),
        "merged: {ev}"
    );
    assert!(second - first >= 150.0, "{first} / {second}:\n{ev}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_the_previous_test_are_marked_and_not_matched() {
    let p = pty();
    let (mut dev, dir) = device(&p.path);
    let _lines = fake_device(
        p.master,
        Box::new(|l| match l {
            "poke" => vec![
                (Duration::ZERO, b"ok\r\n".to_vec()),
                (Duration::from_millis(50), b"stale login: ".to_vec()),
            ],
            "" => now(b"\r\nfresh login: "),
            _ => now(b"?\r\n"),
        }),
    );
    let first = dev.begin_test();
    dev.run_action("poke", &[]).await.expect("poke");
    // The late prompt arrives after the action ended.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = dev.begin_test();
    let out = dev.run_action("prompt", &[]).await.expect("prompt");
    assert_eq!(
        out.captures.get("which").map(String::as_str),
        Some("fresh"),
        "{out:?}"
    );
    let ev = second.render(&Redactor::default());
    assert!(
        ev.lines()
            .any(|l| l.contains("<- (before test) stale login: ")),
        "{ev}"
    );
    assert!(stamp_of(&ev, "(before test)") < 0.0, "{ev}");
    assert!(
        !first.render(&Redactor::default()).contains("stale"),
        "the previous test never read it"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hang_up_is_reported_as_such() {
    // Reading: the device side closes while the harness waits.
    let p = pty();
    let mut c = Console::open_tty("console", &p.path, 115_200, Transcript::new()).expect("open");
    let master = p.master;
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        drop(master);
    });
    let re = Regex::new("never").expect("regex");
    let err = c
        .expect(&re, None, Duration::from_secs(5))
        .await
        .expect_err("hang-up");
    match &err {
        LinkError::Closed(why) => assert!(why.contains("hung up"), "{err}"),
        other => panic!("not Closed: {other}"),
    }

    // Writing: the device side is already gone.
    let p = pty();
    let mut c = Console::open_tty("console", &p.path, 115_200, Transcript::new()).expect("open");
    drop(p.master);
    let err = c
        .send(b"hello\n", "hello\n", Duration::from_secs(5))
        .await
        .expect_err("hang-up");
    match &err {
        LinkError::Closed(why) => assert!(why.contains("hung up"), "{err}"),
        other => panic!("not Closed: {other}"),
    }
    assert!(!err.to_string().contains("Broken pipe"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_many_consoles_does_not_wait_on_read_timeouts() {
    const N: usize = 48;
    let ptys: Vec<Pty> = (0..N).map(|_| pty()).collect();
    let consoles: Vec<Console> = ptys
        .iter()
        .map(|p| Console::open_tty("console", &p.path, 115_200, Transcript::new()).expect("open"))
        .collect();
    // Let every reader settle into its wait.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    for c in consoles {
        drop(c);
    }
    let took = start.elapsed();
    // A reader polling with a 50 ms read timeout costs ~25 ms per console on average.
    assert!(
        took < Duration::from_millis(10 * N as u64),
        "closing {N} consoles took {took:?}"
    );
    // Each port is free again at once (the exclusive lock went with the reader).
    for p in &ptys[..4] {
        let c = Console::open_tty("console", &p.path, 115_200, Transcript::new());
        assert!(c.is_ok(), "reopen {}: {:?}", p.path, c.err());
    }
}

/// On a runtime with one thread, the dropped console's reader task cannot run before the next
/// open: the port must be free all the same (the drop releases its locks itself).
#[tokio::test(flavor = "current_thread")]
async fn a_dropped_console_frees_the_port_before_its_reader_runs() {
    let p = pty();
    for round in 0..3 {
        let c = Console::open_tty("console", &p.path, 115_200, Transcript::new());
        assert!(c.is_ok(), "open {round}: {:?}", c.err());
        drop(c);
    }
}
