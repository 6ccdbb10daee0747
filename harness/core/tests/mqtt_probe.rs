//! Probing a unit's own MQTT broker (`iface::mqtt_probe`) against real brokers: mosquitto
//! (installed by `ci/test`) with and without anonymous access, with a password file, with an
//! ACL; the simulated hub's own broker (`hilsec-simdev --broker-port`); and misbehaving peers
//! (plain tokio listeners: silent, garbage, closing at once, huge messages). Timeouts are
//! generous (a loaded 2-core CI machine); only "it ended within its bound" is asserted of time.

mod common;
use common::simdev::simdev_exe;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use hilsec_core::iface::mqtt::{MqttLink, MqttParams};
use hilsec_core::iface::mqtt_probe::{probe_broker, try_connect, Connack, ProbePlan};
use hilsec_core::iface::LinkError;
use hilsec_core::secret::Redactor;
use hilsec_core::transcript::Transcript;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bound of every step that should succeed.
const PATIENCE: Duration = Duration::from_secs(20);
/// Guard against a hang: a test that takes this long has failed.
const HANG: Duration = Duration::from_secs(120);

async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(HANG, f).await.expect("no hang")
}

fn text(t: &Transcript) -> String {
    t.render(&Redactor::default())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The program at one of `paths`, or `None` (a loud skip) outside CI.
fn program(paths: &[&str], package: &str) -> Option<PathBuf> {
    let found = paths
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .or_else(|| {
            let name = Path::new(paths[0]).file_name()?;
            std::env::var_os("PATH").and_then(|path| {
                std::env::split_paths(&path)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{package} is missing in CI: the test command (ci/test) installs it"
        );
        eprintln!("SKIPPED: {package} is not installed (apt-get install {package})");
    }
    found
}

/// mosquitto on a free loopback port with the given extra configuration lines, killed on drop.
struct Mosquitto {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `config` gets `{dir}` replaced by the private folder (for password and ACL files written
/// there by `files`).
fn mosquitto(config: &str, files: &[(&str, &str)], users: &[(&str, &str)]) -> Option<Mosquitto> {
    let exe = program(&["/usr/sbin/mosquitto", "/usr/bin/mosquitto"], "mosquitto")?;
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).expect("write file");
    }
    if !users.is_empty() {
        let passwd = program(&["/usr/bin/mosquitto_passwd"], "mosquitto")?;
        for (i, (user, pass)) in users.iter().enumerate() {
            let mut cmd = Command::new(&passwd);
            cmd.arg("-b");
            if i == 0 {
                cmd.arg("-c");
            }
            let status = cmd
                .arg(dir.path().join("passwd"))
                .args([user, pass])
                .stdout(Stdio::null())
                .status()
                .expect("run mosquitto_passwd");
            assert!(status.success(), "mosquitto_passwd failed");
        }
    }
    let port = free_port();
    let mut conf = format!("listener {port} 127.0.0.1\npersistence false\n");
    // As root, mosquitto would switch to its own user, who cannot read our private folder.
    if rustix::process::geteuid().is_root() {
        conf.push_str("user root\n");
    }
    conf.push_str(&config.replace("{dir}", &dir.path().display().to_string()));
    let conf_path = dir.path().join("mosquitto.conf");
    std::fs::write(&conf_path, conf).expect("write config");
    let child = Command::new(exe)
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto");
    let mut m = Mosquitto {
        child,
        addr: format!("127.0.0.1:{port}"),
        _dir: dir,
    };
    let deadline = Instant::now() + PATIENCE;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = m.child.try_wait() {
            panic!("mosquitto exited at start ({status}): check the configuration");
        }
        assert!(Instant::now() < deadline, "mosquitto did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(m)
}

fn plan(subscribe: &[&str], publish: &[&str], listen: Duration) -> ProbePlan {
    ProbePlan {
        subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
        publish: publish.iter().map(|s| s.to_string()).collect(),
        listen,
        max_topics: 50,
    }
}

/// A client of `addr` (as `creds`) that publishes `payload` on `topic` every 200 ms until the
/// task is aborted.
async fn chatter(
    addr: &str,
    creds: Option<(&str, &str)>,
    topic: &'static str,
    payload: &'static str,
) -> tokio::task::JoinHandle<()> {
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let params = MqttParams {
        host: host.to_string(),
        port: port.parse().expect("port"),
        client_id: format!("chatter-{}", topic.replace('/', "-")),
        credentials: creds.map(|(u, p)| (u.to_string(), p.to_string())),
    };
    let mut link = MqttLink::connect("dev", &params, PATIENCE, Transcript::new())
        .await
        .expect("chatter connects");
    tokio::spawn(async move {
        loop {
            if link
                .publish(topic, payload.as_bytes().to_vec(), 0, false, None)
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_mosquitto_lets_anyone_read_and_write() {
    let Some(m) = mosquitto("allow_anonymous true\n", &[], &[]) else {
        return;
    };
    bounded(async {
        let chatter = chatter(&m.addr, None, "home/lock/state", "{\"locked\":true}").await;
        let t = Transcript::new();
        let probe = probe_broker(
            "broker",
            &m.addr,
            None,
            &plan(&["#"], &["home/lock/cmd/open"], Duration::from_secs(2)),
            PATIENCE,
            &t,
        )
        .await
        .expect("probe");
        chatter.abort();
        assert_eq!(probe.connack, Connack::Accepted);
        assert_eq!(probe.granted, vec![("#".to_string(), Some(0))]);
        let state = probe
            .seen
            .iter()
            .find(|s| s.topic == "home/lock/state")
            .unwrap_or_else(|| panic!("the device's messages are seen: {:?}", probe.seen));
        assert!(state.messages >= 1);
        assert_eq!(state.bytes, state.messages * "{\"locked\":true}".len());
        // Our own message is no device traffic.
        assert!(
            probe.seen.iter().all(|s| s.topic != "home/lock/cmd/open"),
            "{:?}",
            probe.seen
        );
        assert_eq!(probe.delivered, vec!["home/lock/cmd/open".to_string()]);
        assert!(probe.unverified.is_empty());
        let ev = text(&t);
        assert!(ev.contains("CONNACK 0"), "{ev}");
        assert!(ev.contains("SUBACK #: granted QoS 0"), "{ev}");
        assert!(ev.contains("seen home/lock/state"), "{ev}");
        assert!(ev.contains("came back (delivered)"), "{ev}");
        // Counts and sizes, never the device's payloads.
        assert!(!ev.contains("locked\":true"), "{ev}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_with_a_password_file_refuses_strangers() {
    let Some(m) = mosquitto(
        "allow_anonymous false\npassword_file {dir}/passwd\n",
        &[],
        &[("admin", "admin"), ("operator", "s3cret-Pw-91")],
    ) else {
        return;
    };
    bounded(async {
        let t = Transcript::new();
        let probe = probe_broker(
            "broker",
            &m.addr,
            None,
            &plan(&["#"], &["x/cmd"], Duration::from_secs(1)),
            PATIENCE,
            &t,
        )
        .await
        .expect("probe");
        assert_eq!(
            probe.connack,
            Connack::Refused {
                code: 5,
                meaning: "not authorized".into()
            }
        );
        assert!(probe.granted.is_empty() && probe.seen.is_empty() && probe.delivered.is_empty());

        let c = try_connect("broker", &m.addr, None, PATIENCE, &t)
            .await
            .expect("answer");
        assert!(matches!(c, Connack::Refused { code: 5, .. }), "{c:?}");
        let c = try_connect("broker", &m.addr, Some(("admin", "admin")), PATIENCE, &t)
            .await
            .expect("answer");
        assert_eq!(c, Connack::Accepted);
        let c = try_connect("broker", &m.addr, Some(("admin", "wrong")), PATIENCE, &t)
            .await
            .expect("answer");
        assert!(matches!(c, Connack::Refused { code: 4 | 5, .. }), "{c:?}");
        let c = try_connect(
            "broker",
            &m.addr,
            Some(("operator", "s3cret-Pw-91")),
            PATIENCE,
            &t,
        )
        .await
        .expect("answer");
        assert_eq!(c, Connack::Accepted);

        // Accepted with the default credential, the whole plan runs.
        let probe = probe_broker(
            "broker",
            &m.addr,
            Some(("admin", "admin")),
            &plan(&["#"], &["x/cmd"], Duration::from_millis(500)),
            PATIENCE,
            &t,
        )
        .await
        .expect("probe");
        assert_eq!(probe.connack, Connack::Accepted);
        assert_eq!(probe.delivered, vec!["x/cmd".to_string()]);

        let ev = text(&t);
        assert!(ev.contains("CONNACK 5 (not authorized)"), "{ev}");
        assert!(ev.contains("user name \"admin\""), "{ev}");
        assert!(!ev.contains("s3cret"), "a password was recorded: {ev}");
        assert!(!ev.contains("wrong"), "a password was recorded: {ev}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_with_an_acl_limits_what_strangers_read_and_write() {
    // Topic lines before any `user` line apply to anonymous clients: they may read `home/#`
    // only, and write nowhere; `owner` may do everything. mosquitto grants every subscription
    // (SUBACK 0) and filters at delivery, so only what arrives tells.
    let Some(m) = mosquitto(
        "allow_anonymous true\npassword_file {dir}/passwd\nacl_file {dir}/acl\n",
        &[("acl", "topic read home/#\nuser owner\ntopic readwrite #\n")],
        &[("owner", "owner-pw-7")],
    ) else {
        return;
    };
    bounded(async {
        let owner = Some(("owner", "owner-pw-7"));
        let state = chatter(&m.addr, owner, "home/lock/state", "{\"locked\":true}").await;
        let secret = chatter(&m.addr, owner, "vault/key", "k").await;
        let t = Transcript::new();
        let probe = probe_broker(
            "broker",
            &m.addr,
            None,
            &plan(&["#"], &["home/lock/cmd/open"], Duration::from_secs(2)),
            PATIENCE,
            &t,
        )
        .await
        .expect("probe");
        state.abort();
        secret.abort();
        assert_eq!(probe.connack, Connack::Accepted);
        eprintln!("granted under the ACL: {:?}", probe.granted);
        assert_eq!(probe.granted.len(), 1);
        let topics: Vec<&str> = probe.seen.iter().map(|s| s.topic.as_str()).collect();
        assert_eq!(topics, vec!["home/lock/state"]);
        // Readable, so the echo would have been seen: the write was not delivered.
        assert!(probe.delivered.is_empty(), "{:?}", probe.delivered);
        assert!(probe.unverified.is_empty(), "{:?}", probe.unverified);
        assert!(text(&t).contains("did not come back"), "{}", text(&t));

        // The owner may write: the same probe with its credential is delivered.
        let probe = probe_broker(
            "broker",
            &m.addr,
            owner,
            &plan(&["#"], &["home/lock/cmd/open"], Duration::from_secs(1)),
            PATIENCE,
            &t,
        )
        .await
        .expect("probe");
        assert_eq!(probe.delivered, vec!["home/lock/cmd/open".to_string()]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_rumqttd_is_open_too() {
    // Another implementation than mosquitto's: the harness's own embedded broker.
    let broker = hilsec_core::broker::start_embedded().expect("embedded broker");
    let addr = broker.addr.to_string();
    bounded(async {
        let chatter = chatter(&addr, None, "plant/valve/state", "open").await;
        let probe = probe_broker(
            "broker",
            &addr,
            None,
            &plan(&["#"], &["plant/valve/cmd"], Duration::from_secs(2)),
            PATIENCE,
            &Transcript::new(),
        )
        .await
        .expect("probe");
        chatter.abort();
        assert_eq!(probe.connack, Connack::Accepted);
        assert_eq!(probe.granted, vec![("#".to_string(), Some(0))]);
        assert!(
            probe.seen.iter().any(|s| s.topic == "plant/valve/state"),
            "{:?}",
            probe.seen
        );
        assert_eq!(probe.delivered, vec!["plant/valve/cmd".to_string()]);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// The simulated hub's own broker

/// A running simulated hub with its own broker; ended when dropped.
struct Hub {
    child: Child,
    stdin: Option<ChildStdin>,
    addr: String,
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_hub() -> Hub {
    let port = free_port();
    let mut child = Command::new(simdev_exe())
        .args([
            "--model",
            "hub",
            "--unit",
            "t",
            "--serial",
            "S",
            "--mac",
            "02:00:00:00:00:01",
            "--address",
            "127.0.0.1",
            "--broker-port",
            &port.to_string(),
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
    let line = rx.recv_timeout(PATIENCE).expect("ready line in time");
    assert!(line.starts_with("HILSEC-SIM-READY"), "{line:?}");
    Hub {
        child,
        stdin,
        addr: format!("127.0.0.1:{port}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulated_hub_runs_an_open_broker() {
    let mut hub = start_hub();
    bounded(async {
        let t = Transcript::new();
        let probe = probe_broker(
            "hub-broker",
            &hub.addr,
            None,
            &plan(&["#"], &["simhub/t/cmd/relay"], Duration::from_millis(2500)),
            PATIENCE,
            &t,
        )
        .await
        .expect("probe");
        assert_eq!(probe.connack, Connack::Accepted);
        assert_eq!(probe.granted, vec![("#".to_string(), Some(0))]);
        let state = probe
            .seen
            .iter()
            .find(|s| s.topic == "simhub/t/state")
            .unwrap_or_else(|| panic!("the hub's state is seen: {:?}", probe.seen));
        assert!(state.messages >= 1 && state.bytes > 0, "{state:?}");
        assert_eq!(probe.delivered, vec!["simhub/t/cmd/relay".to_string()]);

        // A credential is accepted too (the broker checks nothing).
        let c = try_connect("hub-broker", &hub.addr, Some(("admin", "x")), PATIENCE, &t)
            .await
            .expect("answer");
        assert_eq!(c, Connack::Accepted);

        // A stranger's command is obeyed: the relay switches on.
        let (host, port) = hub.addr.rsplit_once(':').expect("host:port");
        let params = MqttParams {
            host: host.into(),
            port: port.parse().expect("port"),
            client_id: "stranger".into(),
            credentials: None,
        };
        let mut link = MqttLink::connect("mqtt", &params, PATIENCE, t.clone())
            .await
            .expect("a rumqttc client connects");
        link.subscribe("simhub/t/state", PATIENCE)
            .await
            .expect("subscribes");
        link.publish("simhub/t/cmd/relay", b"on".to_vec(), 1, false, None)
            .await
            .expect("publishes");
        let on = regex::bytes::Regex::new(r#""relay":1"#).expect("regex");
        link.await_message("simhub/t/state", &on, None, PATIENCE)
            .await
            .expect("the relay is on");

        // Shutdown with a client still connected: the unit exits promptly.
        drop(hub.stdin.take());
        let t0 = Instant::now();
        loop {
            if let Some(status) = hub.child.try_wait().expect("wait") {
                assert!(status.success(), "{status}");
                break;
            }
            assert!(
                t0.elapsed() < PATIENCE,
                "the unit did not exit after stdin closed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(link);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_broker_port_fails_the_start() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let out = Command::new(simdev_exe())
        .args([
            "--model",
            "hub",
            "--unit",
            "t",
            "--serial",
            "S",
            "--mac",
            "02:00:00:00:00:01",
            "--broker-port",
            &port.to_string(),
        ])
        .stdin(Stdio::piped())
        .output()
        .expect("run hilsec-simdev");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).is_empty(),
        "no ready line"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot serve MQTT"),
        "{out:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Misbehaving peers

/// A listener whose every connection is handed to `peer`.
async fn peer<F, Fut>(behave: F) -> String
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(behave(s));
        }
    });
    addr
}

/// Reads whatever comes, forever (a peer that never answers but keeps the link open).
async fn swallow(mut s: tokio::net::TcpStream) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

const SHORT: Duration = Duration::from_secs(2);
/// How far past its timeout a failing call may end on a loaded machine.
const MARGIN: Duration = Duration::from_secs(5);

async fn assert_fails_in_time(addr: &str) -> LinkError {
    let t0 = Instant::now();
    let r = try_connect("broker", addr, None, SHORT, &Transcript::new()).await;
    assert!(t0.elapsed() < SHORT + MARGIN, "took {:?}", t0.elapsed());
    let e1 = r.expect_err("no broker there");
    let t0 = Instant::now();
    let r = probe_broker(
        "broker",
        addr,
        None,
        &plan(&["#"], &["a/b"], SHORT),
        SHORT,
        &Transcript::new(),
    )
    .await;
    assert!(t0.elapsed() < SHORT + MARGIN, "took {:?}", t0.elapsed());
    let e2 = r.expect_err("no broker there");
    assert_eq!(
        std::mem::discriminant(&e1),
        std::mem::discriminant(&e2),
        "{e1} / {e2}"
    );
    e1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_a_timeout() {
    let addr = peer(swallow).await;
    let e = bounded(assert_fails_in_time(&addr)).await;
    assert!(matches!(e, LinkError::Timeout { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_flood_is_a_protocol_error() {
    let addr = peer(|mut s: tokio::net::TcpStream| async move {
        let junk: Vec<u8> = (0..64 * 1024).map(|i| (i * 7 + 0xf1) as u8).collect();
        while s.write_all(&junk).await.is_ok() {}
    })
    .await;
    let e = bounded(assert_fails_in_time(&addr)).await;
    assert!(matches!(e, LinkError::Protocol(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_closing_at_once_is_closed() {
    let addr = peer(|s: tokio::net::TcpStream| async move { drop(s) }).await;
    let e = bounded(assert_fails_in_time(&addr)).await;
    assert!(matches!(e, LinkError::Closed(_)), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_listening_is_an_open_error() {
    let addr = format!("127.0.0.1:{}", free_port());
    let e = bounded(assert_fails_in_time(&addr)).await;
    assert!(matches!(e, LinkError::Open { .. }), "{e}");
}

/// Reads one MQTT packet (first byte, body) from a client; `None` at EOF.
async fn read_packet(s: &mut tokio::net::TcpStream) -> Option<(u8, Vec<u8>)> {
    let first = s.read_u8().await.ok()?;
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let b = s.read_u8().await.ok()?;
        len |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let mut body = vec![0; len];
    s.read_exact(&mut body).await.ok()?;
    Some((first, body))
}

/// Accepts CONNECT with CONNACK 0, then hands over.
async fn accept_connect(s: &mut tokio::net::TcpStream) -> Option<()> {
    let (first, _) = read_packet(s).await?;
    assert_eq!(first, 0x10, "CONNECT first");
    s.write_all(&[0x20, 2, 0, 0]).await.ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_silent_after_subscribe_is_a_timeout() {
    let addr = peer(|mut s: tokio::net::TcpStream| async move {
        if accept_connect(&mut s).await.is_some() {
            swallow(s).await;
        }
    })
    .await;
    let t0 = Instant::now();
    let r = bounded(probe_broker(
        "broker",
        &addr,
        None,
        &plan(&["#"], &[], SHORT),
        SHORT,
        &Transcript::new(),
    ))
    .await;
    assert!(t0.elapsed() < SHORT * 2 + MARGIN, "took {:?}", t0.elapsed());
    let e = r.expect_err("no SUBACK");
    assert!(matches!(e, LinkError::Timeout { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_closing_on_subscribe_refuses_it() {
    // As some brokers refuse a subscription: CONNACK, then the connection closes.
    let addr = peer(|mut s: tokio::net::TcpStream| async move {
        if accept_connect(&mut s).await.is_some() {
            let _ = read_packet(&mut s).await;
        }
    })
    .await;
    let t = Transcript::new();
    let probe = bounded(probe_broker(
        "broker",
        &addr,
        None,
        &plan(&["#", "a/#"], &["a/cmd"], SHORT),
        SHORT,
        &t,
    ))
    .await
    .expect("what was learnt");
    assert_eq!(probe.connack, Connack::Accepted);
    assert_eq!(
        probe.granted,
        vec![("#".to_string(), None), ("a/#".to_string(), None)]
    );
    assert_eq!(probe.unverified, vec!["a/cmd".to_string()]);
    assert!(probe.delivered.is_empty());
    assert!(text(&t).contains("closed the connection after SUBSCRIBE #"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_messages_and_many_topics_stay_bounded() {
    // Grants every SUBSCRIBE, then sends a 3 MiB message and messages on 100 topics.
    let addr = peer(|mut s: tokio::net::TcpStream| async move {
        if accept_connect(&mut s).await.is_none() {
            return;
        }
        let Some((first, body)) = read_packet(&mut s).await else {
            return;
        };
        assert_eq!(first, 0x82, "SUBSCRIBE");
        if s.write_all(&[0x90, 3, body[0], body[1], 0]).await.is_err() {
            return;
        }
        let publish = |topic: &str, payload: &[u8]| {
            let mut b = (topic.len() as u16).to_be_bytes().to_vec();
            b.extend_from_slice(topic.as_bytes());
            b.extend_from_slice(payload);
            let mut out = vec![0x30];
            let mut len = b.len();
            loop {
                let mut byte = (len % 128) as u8;
                len /= 128;
                if len > 0 {
                    byte |= 0x80;
                }
                out.push(byte);
                if len == 0 {
                    break;
                }
            }
            out.extend_from_slice(&b);
            out
        };
        let big = vec![b'x'; 3 << 20];
        if s.write_all(&publish("big/one", &big)).await.is_err() {
            return;
        }
        for i in 0..100 {
            if s.write_all(&publish(&format!("t/{i}"), b"v"))
                .await
                .is_err()
            {
                return;
            }
        }
        swallow(s).await;
    })
    .await;
    let mut p = plan(&["#"], &[], Duration::from_secs(3));
    p.max_topics = 10;
    let t = Transcript::new();
    let probe = bounded(probe_broker("broker", &addr, None, &p, PATIENCE, &t))
        .await
        .expect("probe");
    assert_eq!(probe.seen.len(), 10, "{:?}", probe.seen);
    assert_eq!(probe.seen[0].topic, "big/one");
    assert_eq!(probe.seen[0].bytes, 3 << 20);
    assert!(text(&t).contains("91 further message(s)"), "{}", text(&t));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_filter_is_refused_before_connecting() {
    let e = probe_broker(
        "broker",
        "127.0.0.1:1",
        None,
        &plan(&["a/#/b"], &[], SHORT),
        SHORT,
        &Transcript::new(),
    )
    .await
    .expect_err("invalid filter");
    assert!(matches!(e, LinkError::Protocol(_)), "{e}");
}
