//! The SSH link against the simulated plug's SSH server (`hilsec-simdev --ssh-port`): password
//! and keyboard-interactive logins accepted and refused, the server's identity and algorithms
//! in the transcript (never the password), the shell console driven by send/expect, host key
//! pinning, the unit's throttling; and against misbehaving peers (plain tokio listeners): a
//! silent server, a flood, garbage lines, a server closing early, an unreachable port, each an
//! error within its timeout.

mod common;
use common::simdev::simdev_exe;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use hilsec_core::iface::ssh::{ssh_login, SshAuthMethod, SshLogin, SshOptions, SshSession};
use hilsec_core::iface::LinkError;
use hilsec_core::secret::Redactor;
use hilsec_core::transcript::Transcript;
use regex::bytes::Regex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The unit's label password in these tests.
const PASSWORD: &str = "Zx8-pLq2-Hv4-ssh";
/// A wrong password.
const WRONG: &str = "admin-guess-1";
/// Bound of every operation that should succeed (a loaded 2-core machine).
const PATIENCE: Duration = Duration::from_secs(20);
/// Timeout given to the client against misbehaving peers.
const SHORT: Duration = Duration::from_secs(2);
/// What a misbehaving peer may take beyond its timeout before the test counts it as a hang.
const MARGIN: Duration = Duration::from_secs(8);
/// Guard against a hang: a test that takes this long has failed.
const HANG: Duration = Duration::from_secs(120);

fn text(t: &Transcript) -> String {
    t.render(&Redactor::default())
}

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(HANG, f).await.expect("no hang")
}

fn free_port(ip: IpAddr) -> u16 {
    TcpListener::bind(SocketAddr::new(ip, 0))
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A running simulated plug serving SSH; ended when dropped.
struct SimUnit {
    child: Child,
    stdin: Option<ChildStdin>,
    addr: String,
}

impl Drop for SimUnit {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a plug with an SSH server on a free port of 127.0.0.1 (a port taken meanwhile by
/// someone else: retried with another).
fn start_plug(extra: &[&str]) -> SimUnit {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port(ip);
        let mut child = Command::new(simdev_exe())
            .args([
                "--model",
                "plug",
                "--password",
                PASSWORD,
                "--unit",
                "t",
                "--serial",
                "S",
                "--mac",
                "02:00:00:00:00:01",
                "--address",
                "127.0.0.1",
                "--ssh-port",
                &port.to_string(),
            ])
            .args(extra)
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
        let unit = SimUnit {
            child,
            stdin,
            addr: format!("127.0.0.1:{port}"),
        };
        let line = rx.recv_timeout(PATIENCE).expect("ready line in time");
        if line.starts_with("HILSEC-SIM-READY ") {
            return unit;
        }
        last = line;
    }
    panic!("hilsec-simdev did not start with an SSH port (last output: {last:?})");
}

async fn login(
    unit: &SimUnit,
    password: &str,
    method: SshAuthMethod,
    opts: &SshOptions,
    t: &Transcript,
) -> Result<SshLogin, LinkError> {
    ssh_login(
        "ssh", &unit.addr, "admin", password, method, opts, PATIENCE, t,
    )
    .await
}

fn accepted(r: Result<SshLogin, LinkError>) -> SshSession {
    match r {
        Ok(SshLogin::Accepted(s)) => s,
        other => panic!("expected the login to be accepted, got {other:?}"),
    }
}

fn refused(r: Result<SshLogin, LinkError>) -> Vec<String> {
    match r {
        Ok(SshLogin::Refused { methods }) => methods,
        other => panic!("expected the login to be refused, got {other:?}"),
    }
}

/// What every transcript of a connection to the plug shows, and never shows.
fn check_transcript(t: &Transcript, session: &SshSession) {
    let shown = text(t);
    let info = session.server();
    assert!(info.banner.starts_with("SSH-2.0-"), "{info:?}");
    assert!(info.host_key.starts_with("ssh-ed25519 SHA256:"), "{info:?}");
    assert!(info.fingerprint().starts_with("SHA256:"), "{info:?}");
    assert!(!info.kex.is_empty() && !info.cipher.is_empty(), "{info:?}");
    for part in [&info.banner, &info.host_key, &info.kex, &info.cipher] {
        assert!(shown.contains(part.as_str()), "{part} not in: {shown}");
    }
    assert!(
        !shown.contains(PASSWORD),
        "password in the transcript: {shown}"
    );
    assert!(
        !shown.contains(WRONG),
        "password in the transcript: {shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_auth_accepts_the_unit_password_and_refuses_a_wrong_one() {
    let unit = start_plug(&[]);
    let t = Transcript::new();
    let opts = SshOptions::default();
    let methods = refused(bounded(login(&unit, WRONG, SshAuthMethod::Password, &opts, &t)).await);
    assert!(methods.iter().any(|m| m == "password"), "{methods:?}");
    assert!(
        methods.iter().any(|m| m == "keyboard-interactive"),
        "{methods:?}"
    );
    let session =
        accepted(bounded(login(&unit, PASSWORD, SshAuthMethod::Password, &opts, &t)).await);
    check_transcript(&t, &session);
    let shown = text(&t);
    assert!(
        shown.contains("password authentication as \"admin\": refused"),
        "{shown}"
    );
    assert!(
        shown.contains("password authentication as \"admin\": accepted"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyboard_interactive_auth_accepts_the_unit_password_and_refuses_a_wrong_one() {
    let unit = start_plug(&[]);
    let t = Transcript::new();
    let opts = SshOptions::default();
    let methods = refused(
        bounded(login(
            &unit,
            WRONG,
            SshAuthMethod::KeyboardInteractive,
            &opts,
            &t,
        ))
        .await,
    );
    assert!(!methods.is_empty(), "the server names what it offers");
    let session = accepted(
        bounded(login(
            &unit,
            PASSWORD,
            SshAuthMethod::KeyboardInteractive,
            &opts,
            &t,
        ))
        .await,
    );
    check_transcript(&t, &session);
    let shown = text(&t);
    assert!(shown.contains("Password: "), "the prompt is noted: {shown}");
    assert!(
        shown.contains("keyboard-interactive authentication as \"admin\": accepted"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shell_console_runs_identity_with_send_expect() {
    let unit = start_plug(&[]);
    let t = Transcript::new();
    let mut session = accepted(
        bounded(login(
            &unit,
            PASSWORD,
            SshAuthMethod::Password,
            &SshOptions::default(),
            &t,
        ))
        .await,
    );
    let mut console = bounded(session.open_shell("ssh", PATIENCE, t.clone()))
        .await
        .expect("shell opens");
    let prompt = Regex::new(r"\$ $").expect("regex");
    console
        .expect(&prompt, None, PATIENCE)
        .await
        .expect("first prompt");
    console
        .send(b"identity\r", "identity\\r", PATIENCE)
        .await
        .expect("send");
    let serial = Regex::new(r"serial=(?P<serial>\S+)\r\nmac=(?P<mac>\S+)").expect("regex");
    let m = console
        .expect(&serial, None, PATIENCE)
        .await
        .expect("identity lines");
    assert_eq!(m.captures.get("serial").map(String::as_str), Some("S"));
    assert_eq!(
        m.captures.get("mac").map(String::as_str),
        Some("02:00:00:00:00:01")
    );
    console
        .expect(&prompt, None, PATIENCE)
        .await
        .expect("prompt");
    // A command typed as "\r\n" runs once.
    console
        .send(b"version\r\n", "version\\r\\n", PATIENCE)
        .await
        .expect("send");
    let version = Regex::new(r"firmware \S+\r\n\$ $").expect("regex");
    console
        .expect(&version, None, PATIENCE)
        .await
        .expect("version");

    // `exit` ends the shell: the console reads the server closing the channel.
    console
        .send(b"exit\r", "exit\\r", PATIENCE)
        .await
        .expect("send");
    let never = Regex::new("never-sent").expect("regex");
    let err = console
        .expect(&never, None, PATIENCE)
        .await
        .expect_err("the channel closes");
    assert!(matches!(err, LinkError::Closed(_)), "{err:?}");
    assert!(console.is_closed());
    let shown = text(&t);
    assert!(
        shown.contains("serial=S"),
        "console bytes recorded: {shown}"
    );
    assert!(!shown.contains(PASSWORD), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_key_pinning() {
    let unit = start_plug(&[]);
    let t = Transcript::new();
    let first = accepted(
        bounded(login(
            &unit,
            PASSWORD,
            SshAuthMethod::Password,
            &SshOptions::default(),
            &t,
        ))
        .await,
    );
    let real = first.server().fingerprint().to_string();
    drop(first);

    // The right key, as ssh-keygen -l prints it: accepted.
    let pinned = SshOptions {
        host_key: Some(real.clone()),
        ..Default::default()
    };
    let again =
        accepted(bounded(login(&unit, PASSWORD, SshAuthMethod::Password, &pinned, &t)).await);
    assert_eq!(again.server().fingerprint(), real);
    drop(again);

    // Another key: refused before any password is sent.
    let wrong_pin = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let other = SshOptions {
        host_key: Some(wrong_pin.into()),
        ..Default::default()
    };
    let t2 = Transcript::new();
    let err = bounded(login(&unit, PASSWORD, SshAuthMethod::Password, &other, &t2))
        .await
        .expect_err("a different host key is refused");
    match &err {
        LinkError::Open { detail, .. } => {
            assert!(detail.contains(wrong_pin), "{detail}");
            assert!(detail.contains(&real), "{detail}");
        }
        other => panic!("expected an Open error, got {other:?}"),
    }
    let shown = text(&t2);
    assert!(!shown.contains("accepted"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_throttled_like_on_the_console() {
    // Throttled from the second failure on: each further refusal waits 2 s.
    let unit = start_plug(&["--throttle-after", "1", "--throttle-ms", "2000"]);
    let t = Transcript::new();
    let opts = SshOptions::default();
    refused(bounded(login(&unit, WRONG, SshAuthMethod::Password, &opts, &t)).await);
    let started = Instant::now();
    refused(
        bounded(login(
            &unit,
            WRONG,
            SshAuthMethod::KeyboardInteractive,
            &opts,
            &t,
        ))
        .await,
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "the throttled refusal came after {took:?}"
    );
    // The right password is not delayed, and resets the counter.
    accepted(bounded(login(&unit, PASSWORD, SshAuthMethod::Password, &opts, &t)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_sessions_closes_their_connections() {
    // The server serves at most a few connections at once: sessions that stayed open would
    // make later logins fail.
    let unit = start_plug(&[]);
    let t = Transcript::new();
    let opts = SshOptions::default();
    for i in 0..8 {
        let deadline = Instant::now() + PATIENCE;
        let mut session = loop {
            match bounded(login(&unit, PASSWORD, SshAuthMethod::Password, &opts, &t)).await {
                Ok(SshLogin::Accepted(s)) => break s,
                other if Instant::now() > deadline => {
                    panic!("login {i} after dropping the earlier sessions: {other:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        if i % 2 == 0 {
            // With a console too: both must go for the connection to close.
            let console = bounded(session.open_shell("ssh", PATIENCE, t.clone()))
                .await
                .expect("shell");
            drop(session);
            drop(console);
        } else {
            drop(session);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Misbehaving peers

/// A listener on 127.0.0.1 whose connections `peer` handles.
async fn peer<F, Fut>(peer: F) -> (String, tokio::task::JoinHandle<()>)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(peer(s));
        }
    });
    (addr, task)
}

/// Logs in to a misbehaving peer with [`SHORT`]; returns the error and how long it took.
async fn against(addr: &str, t: &Transcript) -> (LinkError, Duration) {
    let started = Instant::now();
    let r = bounded(ssh_login(
        "ssh",
        addr,
        "admin",
        PASSWORD,
        SshAuthMethod::Password,
        &SshOptions::default(),
        SHORT,
        t,
    ))
    .await;
    let took = started.elapsed();
    let err = match r {
        Err(e) => e,
        Ok(other) => panic!("expected an error, got {other:?}"),
    };
    assert!(took <= SHORT + MARGIN, "took {took:?}: {err}");
    assert!(!text(t).contains(PASSWORD), "{}", text(t));
    (err, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_is_a_timeout() {
    let (addr, task) = peer(|mut s| async move {
        // Reads everything, says nothing, never closes.
        let mut buf = [0u8; 1024];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
        std::future::pending::<()>().await;
    })
    .await;
    let t = Transcript::new();
    let (err, took) = against(&addr, &t).await;
    assert!(matches!(err, LinkError::Timeout { .. }), "{err:?}");
    assert!(took >= SHORT - Duration::from_millis(100), "{took:?}");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_instead_of_a_banner_is_an_error() {
    let (addr, task) = peer(|mut s| async move {
        // Bytes without a line end, as fast as the client takes them.
        let chunk = vec![b'A'; 16 * 1024];
        while s.write_all(&chunk).await.is_ok() {}
    })
    .await;
    let t = Transcript::new();
    let (err, _) = against(&addr, &t).await;
    assert!(
        matches!(err, LinkError::Protocol(_) | LinkError::Timeout { .. }),
        "{err:?}"
    );
    assert!(
        text(&t).contains("AAAA"),
        "what came is evidence: {}",
        text(&t)
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_lines_instead_of_a_banner_are_an_error() {
    let (addr, task) = peer(|mut s| async move {
        // Endless short lines of binary junk, none of them an identification line.
        let line = b"\x00\xff\x1b[2J junk \xfe\r\n".repeat(512);
        while s.write_all(&line).await.is_ok() {}
    })
    .await;
    let t = Transcript::new();
    let (err, _) = against(&addr, &t).await;
    assert!(
        matches!(err, LinkError::Protocol(_) | LinkError::Timeout { .. }),
        "{err:?}"
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_silent_after_its_banner_is_a_timeout_and_the_socket_is_closed() {
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (addr, task) = peer(move |mut s| {
        let closed_tx = closed_tx.clone();
        async move {
            // A banner, then nothing: the key exchange never starts on this side.
            let _ = s.write_all(b"SSH-2.0-Staller_1.0\r\n").await;
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
            let _ = closed_tx.send(());
        }
    })
    .await;
    let t = Transcript::new();
    let (err, _) = against(&addr, &t).await;
    assert!(matches!(err, LinkError::Timeout { .. }), "{err:?}");
    // The client gave up: its socket is closed too, not left to russh's session task.
    tokio::time::timeout(MARGIN, closed_rx.recv())
        .await
        .expect("the client closes the connection after its timeout");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_that_never_answers_a_login_is_a_timeout() {
    // A frozen unit: after the first failure it never answers again.
    let unit = start_plug(&["--freeze-after-failures", "1"]);
    let t = Transcript::new();
    let started = Instant::now();
    let err = bounded(ssh_login(
        "ssh",
        &unit.addr,
        "admin",
        WRONG,
        SshAuthMethod::Password,
        &SshOptions::default(),
        SHORT,
        &t,
    ))
    .await
    .expect_err("no answer");
    let took = started.elapsed();
    assert!(matches!(err, LinkError::Timeout { .. }), "{err:?}");
    assert!(took <= SHORT * 3 + MARGIN, "{took:?}");
    let shown = text(&t);
    assert!(
        shown.contains("SimDevSSH"),
        "server recorded first: {shown}"
    );
    assert!(!shown.contains(WRONG), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_closing_right_after_accept_is_closed() {
    let (addr, task) = peer(|s| async move { drop(s) }).await;
    let t = Transcript::new();
    let (err, _) = against(&addr, &t).await;
    assert!(matches!(err, LinkError::Closed(_)), "{err:?}");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_closing_after_its_banner_is_closed() {
    let (addr, task) = peer(|mut s| async move {
        let _ = s.write_all(b"SSH-2.0-Closer_1.0\r\n").await;
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf).await;
    })
    .await;
    let t = Transcript::new();
    let (err, _) = against(&addr, &t).await;
    assert!(matches!(err, LinkError::Closed(_)), "{err:?}");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_port_is_an_open_error() {
    let port = free_port(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let t = Transcript::new();
    let (err, _) = against(&format!("127.0.0.1:{port}"), &t).await;
    assert!(matches!(err, LinkError::Open { .. }), "{err:?}");
}
