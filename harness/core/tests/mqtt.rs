//! The MQTT link against real brokers: the embedded rumqttd, and mosquitto (installed by
//! `ci/test`). Publish/await with captures and refusals, timeouts, and a broker that goes away.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hilsec_core::iface::mqtt::{MqttLink, MqttParams};
use hilsec_core::iface::serial::{LinkError, Outcomes};
use hilsec_core::transcript::Transcript;
use regex::bytes::Regex;

fn params(port: u16, id: &str) -> MqttParams {
    MqttParams {
        host: "127.0.0.1".into(),
        port,
        client_id: id.into(),
        credentials: None,
    }
}

async fn exchange(port: u16) {
    let t = Transcript::new();
    let mut harness = MqttLink::connect(
        "mqtt",
        &params(port, "h"),
        Duration::from_secs(10),
        t.clone(),
    )
    .await
    .expect("harness connects");
    let mut device = MqttLink::connect(
        "dev",
        &params(port, "d"),
        Duration::from_secs(10),
        t.clone(),
    )
    .await
    .expect("device connects");
    device
        .subscribe("sim/u1/cmd", Duration::from_secs(10))
        .await
        .expect("device subscribes");
    // One filter for all answers: overlapping subscriptions may deliver a message twice.
    harness
        .subscribe("sim/+/resp", Duration::from_secs(10))
        .await
        .expect("harness subscribes");

    harness
        .publish("sim/u1/cmd", b"version".to_vec(), 1, false, None)
        .await
        .expect("publish");
    let any = Regex::new("").expect("regex");
    let got = device
        .await_message("sim/u1/cmd", &any, None, Duration::from_secs(10))
        .await
        .expect("device receives the command");
    assert_eq!(got.text, "version");

    // Unrelated messages are skipped; captures come from the matching one.
    device
        .publish("sim/u1/resp", b"noise".to_vec(), 1, false, None)
        .await
        .expect("publish");
    device
        .publish("sim/u1/resp", b"firmware=1.4.2".to_vec(), 1, false, None)
        .await
        .expect("publish");
    let pat = Regex::new(r"firmware=(?P<version>\S+)").expect("regex");
    let got = harness
        .await_message("sim/+/resp", &pat, None, Duration::from_secs(10))
        .await
        .expect("answer");
    assert_eq!(
        got.captures.get("version").map(String::as_str),
        Some("1.4.2")
    );

    // A refusal.
    device
        .publish(
            "sim/u1/resp",
            b"rejected: bad signature".to_vec(),
            1,
            false,
            None,
        )
        .await
        .expect("publish");
    let reject = Regex::new("rejected").expect("regex");
    let got = harness
        .await_message("sim/+/resp", &pat, Some(&reject), Duration::from_secs(10))
        .await
        .expect("answer");
    assert!(got.rejected);

    // Several outcomes: the payload is judged whole, `accept` before `expect`.
    device
        .publish(
            "sim/u1/resp",
            b"status\nalready installed".to_vec(),
            1,
            false,
            None,
        )
        .await
        .expect("publish");
    let accept = Regex::new("already (?P<what>installed)").expect("regex");
    let got = harness
        .await_outcomes(
            "sim/+/resp",
            Outcomes {
                expect: &Regex::new("status").expect("regex"),
                accept: Some(&accept),
                reject: Some(&reject),
            },
            Duration::from_secs(10),
        )
        .await
        .expect("answer");
    assert!(got.accepted && !got.rejected, "{got:?}");
    assert_eq!(
        got.captures.get("what").map(String::as_str),
        Some("installed")
    );
    // Evidence escapes the payload once (`\n`, not `\\n`).
    let text = t.render(&Default::default());
    assert!(text.contains(r"status\nalready installed"), "{text}");
    assert!(!text.contains(r"status\\n"), "{text}");

    // Silence: a timeout, not a hang.
    let t0 = Instant::now();
    let err = harness
        .await_message("sim/+/resp", &pat, None, Duration::from_millis(500))
        .await
        .expect_err("nothing comes");
    assert!(matches!(err, LinkError::Timeout { .. }), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(t.render(&Default::default()).contains("firmware=1.4.2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_await_with_the_embedded_broker() {
    let broker = hilsec_core::broker::start_embedded().expect("embedded broker");
    exchange(broker.addr.port()).await;
}

/// mosquitto on a free loopback port, killed on drop.
struct Mosquitto(Child, u16);

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mosquitto() -> Mosquitto {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let exe = ["/usr/sbin/mosquitto", "mosquitto"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .arg("-h")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        })
        .expect("mosquitto is installed (ci/test installs the Debian package when missing)");
    let child = Command::new(exe)
        .args(["-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto");
    let t0 = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "mosquitto did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Mosquitto(child, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_await_with_mosquitto() {
    let m = mosquitto();
    exchange(m.1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_goes_away_ends_the_wait() {
    let mut m = mosquitto();
    let t = Transcript::new();
    let mut link = MqttLink::connect("mqtt", &params(m.1, "h2"), Duration::from_secs(10), t)
        .await
        .expect("connects");
    link.subscribe("x/#", Duration::from_secs(10))
        .await
        .expect("subscribes");
    let _ = m.0.kill();
    let any = Regex::new("").expect("regex");
    let t0 = Instant::now();
    let err = link
        .await_message("x/#", &any, None, Duration::from_secs(30))
        .await
        .expect_err("the broker is gone");
    assert!(matches!(err, LinkError::Closed(_)), "{err}");
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "noticed in {:?}",
        t0.elapsed()
    );
    assert!(link.is_closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_broker_address_is_an_open_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let err = MqttLink::connect(
        "mqtt",
        &params(port, "h3"),
        Duration::from_secs(5),
        Transcript::new(),
    )
    .await
    .err()
    .expect("nobody listens");
    assert!(matches!(err, LinkError::Open { .. }), "{err}");
}
