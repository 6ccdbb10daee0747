//! A device that ends its console session between exchanges (a telnet or ser2net session closed
//! by a logout, BusyBox `login` exiting after three failures) is connected to again by the next
//! action, which starts over; a device that is gone for good is not retried forever.
//!
//! The device is a loopback TCP server played by the test: real sockets, real closes.

use std::sync::Arc;
use std::time::Duration;

use hilsec_core::board::{load_boards, LoadMode, Model, Unit};
use hilsec_core::device::{Device, RunEnv};
use hilsec_core::secret::SecretValue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn board(port: u16) -> (Arc<Model>, Unit) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("b.toml");
    std::fs::write(
        &file,
        format!(
            r#"[model]
name = "Reconnect R1"

[interfaces.console]
kind = "serial"
tcp = "127.0.0.1:{port}"
timeout = "2s"

[actions.login]
params = ["user", "password"]
secret_params = ["password"]
steps = [
  {{ send = "\n", flush = true }},
  {{ expect = 'login: $' }},
  {{ send = "{{user}}\n" }},
  {{ expect = 'Password: $' }},
  {{ send = "{{password}}\n" }},
  {{ expect = '\$ $', reject = 'Login incorrect' }},
]

[actions.logout]
steps = [{{ send = "exit\n" }}]

[[unit]]
name = "r1"
"#
        ),
    )
    .expect("board");
    let b = load_boards(&[file], LoadMode::Run)
        .unwrap_or_else(|e| panic!("{e:?}"))
        .remove(0);
    (b.model, b.units.into_iter().next().expect("unit"))
}

/// Reads from `s` until `needle` was received (or the peer closes).
async fn read_until(s: &mut tokio::net::TcpStream, needle: &str) -> bool {
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                got.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&got).contains(needle) {
                    return true;
                }
            }
            _ => return false,
        }
    }
}

/// One login session per connection, like a login program behind ser2net or telnetd: it asks
/// for the user and the password, answers, and after `exit` (or a refusal) ends the session.
async fn sessions(listener: TcpListener, sessions: usize) -> usize {
    let mut served = 0;
    for _ in 0..sessions {
        let Ok((mut s, _)) = listener.accept().await else {
            break;
        };
        served += 1;
        let _ = s.write_all(b"box login: ").await;
        if !read_until(&mut s, "\n").await {
            continue;
        }
        // The newline that woke the prompt, then the user name.
        let _ = s.write_all(b"box login: ").await;
        if !read_until(&mut s, "\n").await {
            continue;
        }
        let _ = s.write_all(b"Password: ").await;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).await.unwrap_or(0);
        if String::from_utf8_lossy(&buf[..n]).starts_with("good") {
            let _ = s.write_all(b"\r\n$ ").await;
            read_until(&mut s, "exit").await;
            let _ = s.write_all(b"exit\r\n").await;
        } else {
            let _ = s.write_all(b"\r\nLogin incorrect\r\n").await;
        }
        // The session ends: the connection closes.
    }
    served
}

#[tokio::test]
async fn a_session_the_device_ended_is_reconnected_by_the_next_action() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = tokio::spawn(sessions(listener, 3));
    let (model, unit) = board(port);
    let mut dev = Device::new(unit, model, &Default::default(), &RunEnv::default());
    dev.begin_test();
    let login = |p: &str| {
        vec![
            ("user", SecretValue::plain("admin")),
            ("password", SecretValue::plain(p.to_string())),
        ]
    };
    let first = dev
        .run_action("login", &login("good"))
        .await
        .expect("login");
    assert!(first.accepted());
    dev.run_action("logout", &[]).await.expect("logout");
    // The session is over (the device closed it after `exit`): the next login connects again.
    let second = dev
        .run_action("login", &login("wrong"))
        .await
        .expect("a second session");
    assert_eq!(second.rejected.as_deref(), Some("Login incorrect"));
    let third = dev
        .run_action("login", &login("good"))
        .await
        .expect("a third session");
    assert!(third.accepted());
    let evidence = dev.transcript().render(dev.redactor());
    assert_eq!(
        evidence.matches("connecting to").count(),
        3,
        "one connection per session:\n{evidence}"
    );
    drop(dev);
    assert_eq!(server.await.expect("server"), 3);
}

#[tokio::test]
async fn a_device_that_is_gone_is_not_retried_forever() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // One session that hangs up at once; the port is closed before the hang-up, so the
    // reconnect that follows finds nobody listening.
    let server = tokio::spawn(async move {
        if let Ok((s, _)) = listener.accept().await {
            drop(listener);
            drop(s);
        }
    });
    let (model, unit) = board(port);
    let mut dev = Device::new(unit, model, &Default::default(), &RunEnv::default());
    dev.begin_test();
    let r = dev
        .run_action(
            "login",
            &[
                ("user", SecretValue::plain("admin")),
                ("password", SecretValue::plain("x")),
            ],
        )
        .await;
    let _ = server.await;
    assert!(r.is_err(), "{r:?}");
    assert!(dev.unreachable().is_some(), "the reconnect failed to open");
    let evidence = dev.transcript().render(dev.redactor());
    assert_eq!(
        evidence.matches("starting the action over").count(),
        1,
        "one retry only:\n{evidence}"
    );
}
