//! Telnet consoles against real servers: BusyBox `telnetd` (Debian package `busybox-static`; the
//! plain `busybox` package has no telnetd), the simulated camera's telnet login and debug shell
//! (`hilsec-simdev --telnet-port/--debug-shell-port`), and misbehaving peers (silent, flooding
//! data or negotiation, closing at once, not listening). Every wait is bounded; outcomes, not
//! speeds, are asserted.

mod common;
use common::simdev::simdev_exe;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hilsec_core::iface::serial::{Console, LinkError};
use hilsec_core::iface::telnet::{open_telnet, TelnetOptions};
use hilsec_core::transcript::Transcript;
use regex::bytes::Regex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Generous bound for anything a loaded machine must finish.
const PATIENCE: Duration = Duration::from_secs(20);
/// Slack allowed past a timeout before calling it a hang.
const MARGIN: Duration = Duration::from_secs(5);

fn re(s: &str) -> Regex {
    Regex::new(s).expect("regex")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn rendered(t: &Transcript) -> String {
    t.render(&Default::default())
}

/// Asserts that no received byte in the transcript is a telnet command byte.
fn assert_no_iac_received(t: &Transcript) {
    let text = rendered(t);
    for line in text.lines().filter(|l| l.contains(" <- ")) {
        assert!(
            !line.contains("\\xff") && !line.contains("\\xfb") && !line.contains("\\xfd"),
            "telnet command bytes reached the transcript's received data: {line}\n{text}"
        );
    }
}

/// Waits for `pattern`, capturing everything received before it too, and checks that none of
/// it is a telnet command byte (what `expect` matches is data only).
async fn expect_clean(c: &mut Console, pattern: &str) -> String {
    let m = c
        .expect(&re(&format!("(?s-u)(?P<all>.*?{pattern})")), None, PATIENCE)
        .await
        .unwrap_or_else(|e| panic!("expect /{pattern}/: {e}"));
    let all = &m.captures["all"];
    assert!(
        !all.contains('\u{fffd}'),
        "a non-text byte (IAC?) reached expect: {all:?}"
    );
    all.clone()
}

// ---------------------------------------------------------------------------------------------
// BusyBox telnetd

/// A program with `telnetd` built in: BusyBox from `busybox-static` (or `HILSEC_BUSYBOX`).
/// `None` (after a skip message) when there is none; under `CI` a missing one fails the test.
fn busybox_with_telnetd() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = std::env::var_os("HILSEC_BUSYBOX")
        .map(PathBuf::from)
        .into_iter()
        .chain(["/bin/busybox", "/usr/bin/busybox", "busybox"].map(PathBuf::from))
        .collect();
    for exe in &candidates {
        let Ok(out) = Command::new(exe)
            .arg("--list")
            .stderr(Stdio::null())
            .output()
        else {
            continue;
        };
        if String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.trim() == "telnetd")
        {
            return Some(exe.clone());
        }
    }
    let msg = "BusyBox with telnetd is missing: install the Debian package busybox-static \
               (the plain busybox package has no telnetd); ci/test installs it";
    if std::env::var_os("CI").is_some() {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

/// BusyBox telnetd on a free loopback port running a small login script; killed on drop.
struct Telnetd {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Telnetd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The login the script plays: user `root`, password `s3cret`, then a shell that answers
/// `ran:<cmd>`.
const LOGIN_SCRIPT: &str = r#"#!/bin/sh
printf 'login: '
read -r user
printf 'Password: '
stty -echo 2>/dev/null
read -r pass
stty echo 2>/dev/null
printf '\n'
if [ "$user" = "root" ] && [ "$pass" = "s3cret" ]; then
  printf 'Welcome\n$ '
  while read -r cmd; do
    case "$cmd" in
      exit) exit 0 ;;
      "") ;;
      *) printf 'ran:%s\n' "$cmd" ;;
    esac
    printf '$ '
  done
else
  printf 'Login incorrect\n'
fi
"#;

fn start_telnetd(busybox: &PathBuf) -> Telnetd {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("login.sh");
    std::fs::write(&script, LOGIN_SCRIPT).expect("write login script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let port = free_port();
    let child = Command::new(busybox)
        .args([
            "telnetd",
            "-F",
            "-p",
            &port.to_string(),
            "-b",
            "127.0.0.1",
            "-l",
        ])
        .arg(&script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start busybox telnetd");
    let d = Telnetd {
        child,
        port,
        _dir: dir,
    };
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t0.elapsed() < PATIENCE, "busybox telnetd did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busybox_telnetd_negotiates_and_logs_in_with_serial_recipes() {
    let Some(busybox) = busybox_with_telnetd() else {
        return;
    };
    let d = start_telnetd(&busybox);
    let addr = format!("127.0.0.1:{}", d.port);
    let t = Transcript::new();
    let mut c = open_telnet("tn", &addr, PATIENCE, &TelnetOptions::default(), t.clone())
        .await
        .expect("connect");
    // BusyBox opens with DO ECHO, DO NAWS, WILL ECHO, WILL SGA, and prints /etc/issue.net.
    expect_clean(&mut c, "login: ").await;
    // A serial recipe's Enter is "\n".
    c.send(b"root\n", "root\\n", PATIENCE).await.expect("send");
    let echoed = expect_clean(&mut c, "Password: ").await;
    assert!(echoed.contains("root"), "user name echoed: {echoed:?}");
    c.send(b"s3cret\n", "\u{ab}secret\u{bb}\\n", PATIENCE)
        .await
        .expect("send");
    let m = c
        .expect(&re(r"\$ "), Some(&re("Login incorrect")), PATIENCE)
        .await
        .expect("shell prompt");
    assert!(!m.rejected, "password refused: {}", rendered(&t));
    c.send(b"uname\n", "uname\\n", PATIENCE)
        .await
        .expect("send");
    let out = expect_clean(&mut c, r"ran:uname\r?\n\$ ").await;
    assert_eq!(out.matches("ran:").count(), 1, "{out:?}");
    // One Enter, not two: a second line would bring a second prompt.
    let extra = c
        .expect(&re(r"\$ "), None, Duration::from_millis(800))
        .await;
    assert!(
        matches!(extra, Err(LinkError::Timeout { .. })),
        "one \\n made two lines: {extra:?}"
    );

    let text = rendered(&t);
    for note in [
        "tn: telnet: server WILL ECHO -> DO ECHO",
        "tn: telnet: server WILL SGA -> DO SGA",
        "tn: telnet: server DO NAWS -> WILL NAWS, SB NAWS 80x24",
        "tn: telnet: server DO ECHO -> WONT ECHO",
    ] {
        assert!(text.contains(note), "missing note {note:?} in\n{text}");
    }
    // What the harness sent is recorded in its redacted form. The server may still echo the
    // password (a loaded machine lets the line arrive before login turns the pty's echo off):
    // that is the device's doing, and the unit's redactor hides it in evidence.
    assert!(
        text.contains("-> \u{ab}secret\u{bb}"),
        "the password was not sent in its redacted form:\n{text}"
    );
    let mut redactor = hilsec_core::secret::Redactor::default();
    redactor.add("s3cret");
    let evidence = t.render(&redactor);
    assert!(
        !evidence.contains("s3cret"),
        "the password reached the evidence:\n{evidence}"
    );
    assert_no_iac_received(&t);

    // `exit` ends the shell: BusyBox closes the connection, and the console says so.
    c.send(b"exit\n", "exit\\n", PATIENCE).await.expect("send");
    let e = c
        .expect(&re("never"), None, PATIENCE)
        .await
        .expect_err("closed");
    assert!(matches!(e, LinkError::Closed(_)), "{e}");
    assert!(c.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busybox_telnetd_refuses_a_wrong_password() {
    let Some(busybox) = busybox_with_telnetd() else {
        return;
    };
    let d = start_telnetd(&busybox);
    let t = Transcript::new();
    let mut c = open_telnet(
        "tn",
        &format!("127.0.0.1:{}", d.port),
        PATIENCE,
        &TelnetOptions::default(),
        t.clone(),
    )
    .await
    .expect("connect");
    expect_clean(&mut c, "login: ").await;
    // A bare CR (some recipes' Enter) works too: it goes out as CR NUL.
    c.send(b"root\r", "root\\r", PATIENCE).await.expect("send");
    expect_clean(&mut c, "Password: ").await;
    c.send(b"wrong\r\n", "wrong\\r\\n", PATIENCE)
        .await
        .expect("send");
    let m = c
        .expect(&re(r"\$ "), Some(&re("Login incorrect")), PATIENCE)
        .await
        .expect("an answer");
    assert!(m.rejected, "a wrong password was accepted");
    assert_no_iac_received(&t);
}

// ---------------------------------------------------------------------------------------------
// The simulated camera

/// A simulated camera with its telnet login and debug shell; ended when dropped.
struct SimCam {
    child: Child,
    stdin: Option<ChildStdin>,
    telnet: String,
    debug: String,
}

impl Drop for SimCam {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_cam() -> SimCam {
    let (tp, dp) = (free_port(), free_port());
    let mut child = Command::new(simdev_exe())
        .args([
            "--model",
            "cam",
            "--unit",
            "sim-cam-1",
            "--serial",
            "SC0-000042",
            "--mac",
            "02:1a:2b:00:03:01",
            "--address",
            "127.0.0.1",
            "--telnet-port",
            &tp.to_string(),
            "--debug-shell-port",
            &dp.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn hilsec-simdev");
    let stdin = child.stdin.take();
    let stdout = child.stdout.take().expect("stdout");
    // The ready line is read on a thread so that a hung unit cannot hang the test.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let cam = SimCam {
        child,
        stdin,
        telnet: format!("127.0.0.1:{tp}"),
        debug: format!("127.0.0.1:{dp}"),
    };
    let line = rx.recv_timeout(PATIENCE).expect("ready line in time");
    assert!(
        line.starts_with("HILSEC-SIM-READY "),
        "ready line: {line:?}"
    );
    cam
}

async fn login(c: &mut Console, user: &str, password: &str) -> bool {
    expect_clean(c, "sim-cam-1 login: ").await;
    c.send(format!("{user}\n").as_bytes(), user, PATIENCE)
        .await
        .expect("send user");
    expect_clean(c, "Password: ").await;
    c.send(
        format!("{password}\n").as_bytes(),
        "\u{ab}secret\u{bb}",
        PATIENCE,
    )
    .await
    .expect("send password");
    let m = c
        .expect(
            &re(r"admin@sim-cam-1:~\$ "),
            Some(&re("Login incorrect")),
            PATIENCE,
        )
        .await
        .expect("an answer to the login");
    !m.rejected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simcam_telnet_login_takes_the_universal_default() {
    let cam = start_cam();
    let t = Transcript::new();
    let opts = TelnetOptions::default();
    let mut c = open_telnet("cam", &cam.telnet, PATIENCE, &opts, t.clone())
        .await
        .expect("connect");
    assert!(
        !login(&mut c, "admin", "wrong").await,
        "a wrong password was accepted"
    );
    assert!(login(&mut c, "admin", "admin").await, "admin/admin refused");
    c.send(b"identity\n", "identity", PATIENCE)
        .await
        .expect("send");
    let m = c
        .expect(&re(r"model=(?P<model>[^\r\n]*)\r\n"), None, PATIENCE)
        .await
        .expect("identity");
    assert_eq!(m.captures["model"], "SimCam C0");
    // A second session at the same time works too.
    let t2 = Transcript::new();
    let mut c2 = open_telnet("cam2", &cam.telnet, PATIENCE, &opts, t2.clone())
        .await
        .expect("second connection");
    assert!(
        login(&mut c2, "admin", "admin").await,
        "second session refused"
    );
    c.send(b"exit\n", "exit", PATIENCE).await.expect("send");
    expect_clean(&mut c, "logout\r\n\r\nsim-cam-1 login: ").await;

    let text = rendered(&t);
    for note in [
        "cam: telnet: server WILL ECHO -> DO ECHO",
        "cam: telnet: server WILL SGA -> DO SGA",
        "cam: telnet: server DO NAWS -> WILL NAWS, SB NAWS 80x24",
    ] {
        assert!(text.contains(note), "missing note {note:?} in\n{text}");
    }
    assert_no_iac_received(&t);
    assert_no_iac_received(&t2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simcam_serves_at_most_eight_sessions() {
    let cam = start_cam();
    let opts = TelnetOptions::default();
    let mut open = Vec::new();
    for i in 0..8 {
        let mut c = open_telnet(
            &format!("s{i}"),
            &cam.telnet,
            PATIENCE,
            &opts,
            Transcript::new(),
        )
        .await
        .expect("connect");
        expect_clean(&mut c, "login: ").await;
        open.push(c);
    }
    let mut ninth = open_telnet("s8", &cam.telnet, PATIENCE, &opts, Transcript::new())
        .await
        .expect("the ninth connects (then is closed)");
    let e = ninth
        .expect(&re("login: "), None, PATIENCE)
        .await
        .expect_err("the ninth session is refused");
    assert!(matches!(e, LinkError::Closed(_)), "{e}");
    // A slot freed is served again.
    drop(open.pop());
    let t0 = Instant::now();
    loop {
        let mut c = open_telnet("again", &cam.telnet, PATIENCE, &opts, Transcript::new())
            .await
            .expect("connect");
        match c.expect(&re("login: "), None, PATIENCE).await {
            Ok(_) => break,
            Err(LinkError::Closed(_)) if t0.elapsed() < PATIENCE => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no session after one ended: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simcam_debug_shell_is_an_unauthenticated_root_shell() {
    let cam = start_cam();
    let t = Transcript::new();
    let mut c = open_telnet(
        "dbg",
        &cam.debug,
        PATIENCE,
        &TelnetOptions::default(),
        t.clone(),
    )
    .await
    .expect("connect");
    expect_clean(&mut c, "\r\nSimCam debug shell\r\n# ").await;
    c.send(b"id\n", "id", PATIENCE).await.expect("send");
    let m = c
        .expect(&re(r"uid=(?P<uid>\d+)\(root\)"), None, PATIENCE)
        .await
        .expect("id");
    assert_eq!(m.captures["uid"], "0");
    c.send(b"ls\n", "ls", PATIENCE).await.expect("send");
    expect_clean(&mut c, r"sh: ls: not found\r\n# ").await;
    assert_no_iac_received(&t);
}

// ---------------------------------------------------------------------------------------------
// Misbehaving peers

/// A loopback listener whose every connection is handed to `serve`.
async fn peer<F, Fut>(serve: F) -> String
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve(s));
        }
    });
    addr
}

/// Expects `login:` within `timeout` and returns the error and how long it took.
async fn expect_fails(c: &mut Console, timeout: Duration) -> (LinkError, Duration) {
    let t0 = Instant::now();
    let e = c
        .expect(&re("login: "), None, timeout)
        .await
        .expect_err("no login prompt");
    (e, t0.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_times_out() {
    let addr = peer(|s| async move {
        tokio::time::sleep(Duration::from_secs(120)).await;
        drop(s);
    })
    .await;
    let mut c = open_telnet(
        "tn",
        &addr,
        PATIENCE,
        &TelnetOptions::default(),
        Transcript::new(),
    )
    .await
    .expect("connect");
    let timeout = Duration::from_secs(1);
    let (e, took) = expect_fails(&mut c, timeout).await;
    assert!(matches!(e, LinkError::Timeout { .. }), "{e}");
    assert!(took < timeout + MARGIN, "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_server_times_out_with_bounded_answers() {
    // Data, option toggles and requests for every option, without end; the server counts what
    // the client sends back.
    let answered = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&answered);
    let addr = peer(move |s| {
        let counter = Arc::clone(&counter);
        async move {
            let (mut r, mut w) = s.into_split();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = r.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    counter.fetch_add(n, Ordering::SeqCst);
                }
            });
            let mut chunk = Vec::new();
            for opt in 0..=255u8 {
                chunk.extend_from_slice(&[255, 253, opt, 255, 251, opt, 255, 252, 1, 255, 251, 1]);
                chunk.extend_from_slice(b"flood flood flood ");
                chunk.extend_from_slice(&[255, 250, 24, 1, 255, 240]);
            }
            while w.write_all(&chunk).await.is_ok() {}
        }
    })
    .await;
    let t = Transcript::new();
    let mut c = open_telnet("tn", &addr, PATIENCE, &TelnetOptions::default(), t.clone())
        .await
        .expect("connect");
    let timeout = Duration::from_secs(3);
    let (e, took) = expect_fails(&mut c, timeout).await;
    assert!(matches!(e, LinkError::Timeout { .. }), "{e}");
    assert!(took < timeout + MARGIN, "took {took:?}");
    assert!(c.received() > 0, "the flood's data reached the console");
    // What the client sent back: at most 256 answers (the longest is NAWS, 12 bytes).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = answered.load(Ordering::SeqCst);
    assert!(
        sent <= 256 * 12,
        "the client answered a flood with {sent} bytes"
    );
    assert!(sent > 0, "the client answered nothing");
    assert!(rendered(&t).contains("the server keeps negotiating"));
    assert_no_iac_received(&t);
    // The console still closes at once when dropped.
    drop(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_with_broken_telnet_commands_is_survived() {
    // 256 KiB of pseudo-random bytes, a third of them IAC (commands, subnegotiations left open,
    // unknown verbs), then two `IAC SE` (which end whatever state the garbage left) and a prompt.
    let addr = peer(|mut s| async move {
        let mut x: u32 = 0x1234_5678;
        let mut junk = Vec::with_capacity(256 * 1024);
        for _ in 0..256 * 1024 {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let b = (x >> 24) as u8;
            junk.push(if b.is_multiple_of(3) { 255 } else { b });
        }
        junk.extend_from_slice(&[255, 240, 255, 240]);
        junk.extend_from_slice(b"\r\nlogin: ");
        let _ = s.write_all(&junk).await;
        let mut buf = [0u8; 1024];
        while let Ok(Ok(n)) = tokio::time::timeout(PATIENCE, s.read(&mut buf)).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    let t = Transcript::new();
    let mut c = open_telnet("tn", &addr, PATIENCE, &TelnetOptions::default(), t.clone())
        .await
        .expect("connect");
    c.expect(&re("\r\nlogin: "), None, PATIENCE)
        .await
        .expect("the prompt after the garbage");
    c.send(b"root\n", "root", PATIENCE)
        .await
        .expect("the link still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_closing_at_once_is_a_closed_link() {
    let addr = peer(|s| async move { drop(s) }).await;
    let mut c = open_telnet(
        "tn",
        &addr,
        PATIENCE,
        &TelnetOptions::default(),
        Transcript::new(),
    )
    .await
    .expect("connect");
    let timeout = Duration::from_secs(10);
    let (e, took) = expect_fails(&mut c, timeout).await;
    assert!(matches!(e, LinkError::Closed(_)), "{e}");
    assert!(took < timeout, "a closed link was waited out: {took:?}");
    assert!(c.is_closed());
    let e = c.send(b"x\n", "x", PATIENCE).await.expect_err("closed");
    assert!(matches!(e, LinkError::Closed(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_closing_after_a_prompt_is_a_closed_link() {
    let addr = peer(|mut s| async move {
        let _ = s.write_all(&[255, 251, 1, b'h', b'i', 255]).await;
    })
    .await;
    // A console called "telnet" (as boards name it): its notes are not "telnet: telnet: ...".
    let t = Transcript::new();
    let mut c = open_telnet(
        "telnet",
        &addr,
        PATIENCE,
        &TelnetOptions::default(),
        t.clone(),
    )
    .await
    .expect("connect");
    c.expect(&re("hi"), None, PATIENCE)
        .await
        .expect("data before the close");
    let (e, _) = expect_fails(&mut c, Duration::from_secs(10)).await;
    assert!(matches!(e, LinkError::Closed(_)), "{e}");
    let text = rendered(&t);
    assert!(
        text.contains("## telnet: server WILL ECHO -> DO ECHO"),
        "{text}"
    );
    assert!(!text.contains("telnet: telnet:"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_port_is_an_open_error() {
    let port = free_port();
    let res = open_telnet(
        "tn",
        &format!("127.0.0.1:{port}"),
        PATIENCE,
        &TelnetOptions::default(),
        Transcript::new(),
    )
    .await
    .map(|_| ());
    let Err(e) = res else {
        panic!("connected although nothing listens");
    };
    assert!(matches!(e, LinkError::Open { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_bytes_are_nvt_encoded() {
    let (tx, rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
    let tx = std::sync::Mutex::new(Some(tx));
    let addr = peer(move |mut s| {
        let tx = tx.lock().ok().and_then(|mut t| t.take());
        async move {
            let want = b"a\r\nb\r\nc\r\0d\xff\xff".len();
            let mut got = Vec::new();
            let mut buf = [0u8; 256];
            while got.len() < want {
                match tokio::time::timeout(PATIENCE, s.read(&mut buf)).await {
                    Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            if let Some(tx) = tx {
                let _ = tx.send(got);
            }
        }
    })
    .await;
    let mut c = open_telnet(
        "tn",
        &addr,
        PATIENCE,
        &TelnetOptions::default(),
        Transcript::new(),
    )
    .await
    .expect("connect");
    c.send(b"a\nb\r\nc\rd\xff", "bytes", PATIENCE)
        .await
        .expect("send");
    let got = tokio::time::timeout(PATIENCE, rx)
        .await
        .expect("server read in time")
        .expect("server result");
    assert_eq!(got, b"a\r\nb\r\nc\r\0d\xff\xff");
}
