//! Misbehaving network peers end to end: a "unit" whose telnet login, SSH server, web form or
//! MQTT broker stays silent, floods bytes (telnet negotiation and garbage) or closes each
//! connection at once gets `error` from every password test that talks to it, within its
//! interface timeouts, never `pass` or `fail`, and the run does not hang.
//!
//! The peers are plain TCP servers of this test (one thread per connection, bounded by the
//! run), each bound to a port of its own on 127.0.0.1; the board files point one login surface
//! at them per model, so each surface meets each behaviour first.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

#[derive(Clone, Copy, Debug)]
enum Behaviour {
    Silent,
    Flood,
    Close,
}

const BEHAVIOURS: [Behaviour; 3] = [Behaviour::Silent, Behaviour::Flood, Behaviour::Close];

impl Behaviour {
    fn name(self) -> &'static str {
        match self {
            Behaviour::Silent => "silent",
            Behaviour::Flood => "flood",
            Behaviour::Close => "close",
        }
    }
}

/// A server misbehaving on every connection until `stop` is set; its port.
fn serve(b: Behaviour, stop: Arc<AtomicBool>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    l.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((s, _)) => {
                    let stop = stop.clone();
                    std::thread::spawn(move || misbehave(b, s, &stop));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    port
}

fn misbehave(b: Behaviour, mut s: TcpStream, stop: &AtomicBool) {
    let _ = s.set_nonblocking(false);
    match b {
        Behaviour::Close => {
            let _ = s.shutdown(Shutdown::Both);
        }
        Behaviour::Silent => {
            // Read and drop whatever comes; never answer.
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
            let mut buf = [0u8; 1024];
            while !stop.load(Ordering::Relaxed) {
                match s.read(&mut buf) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => return,
                }
            }
        }
        Behaviour::Flood => {
            // Telnet negotiation (DO TTYPE, WILL ECHO, DO NAWS), an escape, NULs and text,
            // as fast as the client takes them.
            let chunk: Vec<u8> = b"\xff\xfd\x18\xff\xfb\x01\xff\xfd\x1fgarbage \x00\x1b[6n\xfe\xfe"
                .iter()
                .copied()
                .cycle()
                .take(16 * 1024)
                .collect();
            let _ = s.set_write_timeout(Some(Duration::from_millis(500)));
            while !stop.load(Ordering::Relaxed) {
                match s.write_all(&chunk) {
                    Ok(()) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => return,
                }
            }
        }
    }
}

const HEAD: &str = r#"
[declarations]
login_user = "admin"
"#;

/// One model per surface; one unit per behaviour, its peer's port in `vars`.
fn boards(dir: &std::path::Path, stop: &Arc<AtomicBool>) -> std::path::PathBuf {
    let boards = dir.join("boards");
    std::fs::create_dir_all(&boards).expect("mkdir");
    let surfaces = [
        (
            "telnet",
            r#"
[declarations.broker]
address = "127.0.0.1:{unit.broker}"
command_topics = ["t/{unit.name}/cmd"]
listen = "1s"

[interfaces.telnet]
kind = "telnet"
address = "127.0.0.1:{unit.port}"
timeout = "2s"

[actions.login]
params = ["user", "password"]
secret_params = ["password"]
steps = [
  { send = "\n" },
  { expect = 'login: $' },
  { send = "{user}\n" },
  { expect = 'Password: $' },
  { send = "{password}\n" },
  { expect = '\$ $', reject = 'Login incorrect' },
]
"#,
        ),
        (
            "ssh",
            r#"
[interfaces.ssh]
kind = "ssh"
address = "127.0.0.1:{unit.port}"
timeout = "2s"

[actions.login]
params = ["user", "password"]
secret_params = ["password"]
steps = [
  { ssh_auth = "password", user = "{user}", password = "{password}" },
  { expect = '\$ $' },
]
"#,
        ),
        (
            "form",
            r#"
[interfaces.web]
kind = "http"
timeout = "2s"

[actions.login]
params = ["user", "password"]
secret_params = ["password"]
steps = [
  { post = "http://127.0.0.1:{unit.port}/login", form = { username = "{user}", password = "{password}" }, expect = 'Redirect: 302', reject = 'Invalid' },
]
"#,
        ),
    ];
    for (surface, body) in surfaces {
        let mut text = format!("[model]\nname = \"Peer {surface}\"\n{HEAD}{body}");
        for b in BEHAVIOURS {
            let port = serve(b, stop.clone());
            let broker = serve(b, stop.clone());
            text.push_str(&format!(
                "\n[[unit]]\nname = \"{surface}-{}\"\npassword = {{ value = \"unit-pass-{surface}-{}\" }}\nvars = {{ port = \"{port}\", broker = \"{broker}\" }}\n",
                b.name(),
                b.name()
            ));
        }
        std::fs::write(boards.join(format!("{surface}.toml")), text).expect("write board");
    }
    boards
}

#[test]
fn misbehaving_network_peers_get_error_within_their_timeouts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = Arc::new(AtomicBool::new(false));
    let boards = boards(dir.path(), &stop);
    let out = dir.path().join("out");
    let run = hilsec(
        &[
            "run",
            "--board",
            boards.to_str().expect("utf-8"),
            "--suite",
            "password",
            "--out",
            out.to_str().expect("utf-8"),
            "--test-timeout",
            "60s",
        ],
        dir.path(),
        Duration::from_secs(240),
    );
    stop.store(true, Ordering::Relaxed);
    // 3 (errors); 1 when a per-model test judges the declared passwords weak, which it may:
    // those tests judge the board file, not the peers.
    assert!(
        matches!(run.code(), 1 | 3),
        "exit {}; stdout:\n{}\nstderr:\n{}",
        run.code(),
        run.stdout,
        run.stderr
    );
    let results = results(&out);
    let tests = results["tests"].as_array().expect("tests");
    let mut checked = 0;
    for t in tests {
        let v = t["verdict"].as_str().expect("verdict");
        let id = t["test"].as_str().expect("test");
        let board = t["board"].as_str().unwrap_or_default();
        let talks = matches!(
            id,
            "password.universal-default-rejected"
                | "password.unit-password-accepted"
                | "password.brute-force-throttled"
        ) || (id == "password.broker-requires-auth" && board.starts_with("telnet-"));
        if talks {
            assert_eq!(v, "error", "{board} {id}: {}", t["message"]);
            // Bounded by the interface timeouts (2 s an exchange, a reconnect at most), far
            // below the test's own limit.
            let ms = t["duration_ms"].as_u64().expect("duration");
            assert!(ms < 30_000, "{board} {id} took {ms} ms: {}", t["message"]);
            checked += 1;
        }
    }
    // Three surfaces x three behaviours x three login tests, plus the broker on three units.
    assert_eq!(checked, 3 * 3 * 3 + 3, "every talking test was checked");
}
