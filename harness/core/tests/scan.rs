//! Surface discovery (`iface::scan`) against real listeners on a random loopback address
//! 127.x.y.z (never 127.0.0.1, so the machine's own services do not answer for the "unit"):
//! banners and service guesses, a silent service nudged, a flooding one capped, one closing at
//! once, closed and unanswered ports, a listener on every local address told apart from the
//! unit's, refusals of anything that is not one host, and the time bound.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher as _, Hasher as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hilsec_core::iface::scan::{
    describe_banner, scan, scan_time_bound, service_from_banner, PortState, ScanError, ScanPlan,
    BANNER_CAP, DEFAULT_PORTS, MAX_PORTS, NUDGE,
};
use hilsec_core::secret::Redactor;
use hilsec_core::transcript::Transcript;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Slack for a loaded 2-core machine on top of the scan's own bound.
const MARGIN: Duration = Duration::from_secs(10);

fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// A random loopback address 127.x.y.z: not 127.0.0.1, not the scanner's control addresses
/// (127.255.255.25x), not loopback's broadcast address.
fn random_loopback() -> Ipv4Addr {
    let r = random_u64().to_le_bytes();
    Ipv4Addr::new(127, 1 + r[0] % 254, r[1], 1 + r[2] % 254)
}

fn plan(host: impl Into<String>, ports: Vec<u16>, connect: u64, banner: u64) -> ScanPlan {
    ScanPlan {
        host: host.into(),
        ports,
        connect_timeout: Duration::from_secs(connect),
        banner_timeout: Duration::from_secs(banner),
    }
}

/// Serves every connection to `listener` with `serve` in its own task, for the test's life.
fn serve<F, Fut>(listener: TcpListener, serve: F) -> u16
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let port = listener.local_addr().expect("local address").port();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve(s));
        }
    });
    port
}

async fn listen(ip: Ipv4Addr) -> TcpListener {
    TcpListener::bind(SocketAddr::new(IpAddr::V4(ip), 0))
        .await
        .expect("bind a loopback listener")
}

/// Reads until the peer goes (bounded by the test's runtime ending), keeping what came.
async fn drain(mut s: TcpStream, seen: Option<Arc<Mutex<Vec<u8>>>>) {
    let mut buf = [0u8; 512];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(60), s.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        if let Some(seen) = &seen {
            seen.lock().expect("lock").extend_from_slice(&buf[..n]);
        }
    }
}

/// A port on `ip` that nothing listens on (bound, then released).
async fn closed_port(ip: Ipv4Addr) -> u16 {
    let l = listen(ip).await;
    l.local_addr().expect("local address").port()
}

fn open(state: &PortState) -> (&[u8], Option<&str>) {
    match state {
        PortState::Open { banner, service } => (banner.as_slice(), service.as_deref()),
        other => panic!("expected an open port, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_finds_undeclared_services_and_their_banners() {
    let ip = random_loopback();

    let ssh = serve(listen(ip).await, |mut s| async move {
        let _ = s.write_all(b"SSH-2.0-Test\r\n").await;
        drain(s, None).await;
    });
    let nudges = Arc::new(Mutex::new(Vec::new()));
    let seen = nudges.clone();
    let silent = serve(listen(ip).await, move |s| drain(s, Some(seen.clone())));
    let http = serve(listen(ip).await, |mut s| async move {
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            match tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                _ => return,
            }
        }
        let _ = s
            .write_all(b"HTTP/1.0 200 OK\r\nServer: test-httpd\r\n\r\n")
            .await;
    });
    let flood = serve(listen(ip).await, |mut s| async move {
        let chunk = [b'A'; 4096];
        // Until the scanner goes away (bounded: 64 MiB at most).
        for _ in 0..16 * 1024 {
            if s.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    let closing = serve(listen(ip).await, |s| async move { drop(s) });
    let telnet = serve(listen(ip).await, |mut s| async move {
        // IAC DO ECHO, IAC WILL SUPPRESS-GO-AHEAD, IAC SB TTYPE SEND IAC SE, then a prompt.
        let _ = s
            .write_all(b"\xff\xfd\x01\xff\xfb\x03\xff\xfa\x18\x01\xff\xf0unit login: ")
            .await;
        drain(s, None).await;
    });
    let closed_a = closed_port(ip).await;
    let closed_b = closed_port(ip).await;

    let ports = vec![
        ssh, silent, http, flood, closing, telnet, closed_a, closed_b,
    ];
    let p = plan(ip.to_string(), ports.clone(), 5, 1);
    let t = Transcript::new();
    let began = Instant::now();
    let reports = scan(&p, &t).await.expect("scan");
    let took = began.elapsed();
    assert!(
        took <= scan_time_bound(&p) + MARGIN,
        "the scan took {took:?}, bound {:?}",
        scan_time_bound(&p)
    );

    // One report per port, in ascending order.
    let mut sorted = ports.clone();
    sorted.sort_unstable();
    assert_eq!(reports.iter().map(|r| r.port).collect::<Vec<_>>(), sorted);
    let get = |port: u16| {
        reports
            .iter()
            .find(|r| r.port == port)
            .expect("a report per port")
    };
    for r in &reports {
        assert!(
            !r.host_wide,
            "port {} bound to {ip} only, not host-wide",
            r.port
        );
    }

    let (banner, service) = open(&get(ssh).state);
    assert_eq!(banner, b"SSH-2.0-Test\r\n");
    assert_eq!(service, Some("ssh"));

    let (banner, service) = open(&get(silent).state);
    assert!(banner.is_empty(), "silent service: {banner:?}");
    assert_eq!(service, None);
    assert_eq!(
        nudges.lock().expect("lock").as_slice(),
        NUDGE,
        "the silent service was nudged once"
    );

    let (banner, service) = open(&get(http).state);
    assert!(banner.starts_with(b"HTTP/1.0 200 OK"), "{banner:?}");
    assert_eq!(service, Some("http"));

    let (banner, _) = open(&get(flood).state);
    assert_eq!(banner.len(), BANNER_CAP);
    assert!(banner.iter().all(|&b| b == b'A'));

    let (banner, _) = open(&get(closing).state);
    assert!(banner.is_empty());
    assert!(get(closing).closed_at_once, "said nothing and closed");
    assert!(!get(ssh).closed_at_once && !get(silent).closed_at_once);

    let (banner, service) = open(&get(telnet).state);
    assert_eq!(service, Some("telnet"));
    assert_eq!(describe_banner(banner), "<telnet negotiation>unit login: ");

    assert_eq!(get(closed_a).state, PortState::Closed);
    assert_eq!(get(closed_b).state, PortState::Closed);

    // The evidence names every open port and its banner.
    let text = t.render(&Redactor::default());
    eprintln!("{text}");
    for port in [ssh, silent, http, flood, closing, telnet] {
        assert!(
            text.contains(&format!("port {port}: open")),
            "port {port} in the evidence:\n{text}"
        );
    }
    assert!(text.contains("SSH-2.0-Test"), "{text}");
    assert!(text.contains("HTTP/1.0 200 OK"), "{text}");
    assert!(
        text.contains(&format!("closed {closed_a}, {closed_b}"))
            || text.contains(&format!("closed {closed_b}, {closed_a}")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_on_every_address_is_host_wide() {
    let ip = random_loopback();
    // The "machine's" service: bound to every local address, so it also accepts on `ip`.
    let everywhere = TcpListener::bind("0.0.0.0:0").await.expect("bind 0.0.0.0");
    let wide = serve(everywhere, |mut s| async move {
        let _ = s.write_all(b"SSH-2.0-HostSshd\r\n").await;
        drain(s, None).await;
    });
    // The unit's own service, on its address only.
    let own = serve(listen(ip).await, |mut s| async move {
        let _ = s.write_all(b"SSH-2.0-Unit\r\n").await;
        drain(s, None).await;
    });

    let t = Transcript::new();
    let reports = scan(&plan(ip.to_string(), vec![wide, own], 5, 1), &t)
        .await
        .expect("scan");
    let wide_r = reports.iter().find(|r| r.port == wide).expect("report");
    let own_r = reports.iter().find(|r| r.port == own).expect("report");
    assert_eq!(open(&wide_r.state).0, b"SSH-2.0-HostSshd\r\n");
    assert!(
        wide_r.host_wide,
        "a listener on 0.0.0.0:{wide} is host-wide"
    );
    assert_eq!(open(&own_r.state).0, b"SSH-2.0-Unit\r\n");
    assert!(!own_r.host_wide, "a listener on {ip}:{own} is the unit's");
    let text = t.render(&Redactor::default());
    assert!(text.contains("control address"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_that_never_answers_is_no_answer() {
    // A listener whose accept queue is full: Linux drops further SYNs, so a connect gets no
    // answer at all, as behind a filtering firewall.
    let ip = random_loopback();
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(IpAddr::V4(ip), 0))
        .expect("bind");
    let port = socket.local_addr().expect("local address").port();
    let _listener = socket.listen(1).expect("listen");
    let mut held = Vec::new();
    let mut full = false;
    for _ in 0..32 {
        match tokio::time::timeout(
            Duration::from_millis(500),
            TcpStream::connect(SocketAddr::new(IpAddr::V4(ip), port)),
        )
        .await
        {
            Ok(Ok(s)) => held.push(s),
            Ok(Err(e)) => panic!("filling the accept queue: {e}"),
            Err(_) => {
                full = true;
                break;
            }
        }
    }
    assert!(full, "the accept queue never filled");

    let p = plan(ip.to_string(), vec![port], 1, 1);
    let began = Instant::now();
    let reports = scan(&p, &Transcript::new()).await.expect("scan");
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].state, PortState::NoAnswer);
    assert!(began.elapsed() <= scan_time_bound(&p) + MARGIN);
}

#[tokio::test]
async fn anything_but_one_host_and_a_short_port_list_is_refused() {
    // The scan runs inside spawned test tasks: its future must be Send.
    fn assert_send<T: Send>(_: &T) {}
    let (p, t) = (plan("127.0.0.2", vec![22], 1, 1), Transcript::new());
    let fut = scan(&p, &t);
    assert_send(&fut);
    drop(fut);

    for host in [
        "10.0.0.0/24",
        "*",
        "127.0.0.1-5",
        "10.0.0.*",
        "10.0.0.1,10.0.0.2",
        "10.0.0.1 10.0.0.2",
        "",
        "0.0.0.0",
        "::",
        "[::]",
        "255.255.255.255",
        "224.0.0.1",
        "-bad-.example",
    ] {
        let t = Transcript::new();
        match scan(&plan(host, vec![22], 1, 1), &t).await {
            Err(ScanError::NotOneHost(h)) => assert_eq!(h, host),
            other => panic!("{host:?}: expected NotOneHost, got {other:?}"),
        }
        assert!(t.render(&Redactor::default()).is_empty(), "nothing tried");
    }

    let ip = random_loopback().to_string();
    let too_many: Vec<u16> = (1000..1000 + MAX_PORTS as u16 + 1).collect();
    assert_eq!(too_many.len(), 65);
    match scan(&plan(ip.clone(), too_many, 1, 1), &Transcript::new()).await {
        Err(ScanError::TooManyPorts { count: 65, max: 64 }) => {}
        other => panic!("expected TooManyPorts, got {other:?}"),
    }
    match scan(&plan(ip.clone(), vec![], 1, 1), &Transcript::new()).await {
        Err(ScanError::NoPorts) => {}
        other => panic!("expected NoPorts, got {other:?}"),
    }
    match scan(&plan(ip, vec![22, 0], 1, 1), &Transcript::new()).await {
        Err(ScanError::BadPort(0)) => {}
        other => panic!("expected BadPort, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_ports_of_an_unused_address_are_scanned_within_the_bound() {
    let ip = random_loopback();
    let p = plan(ip.to_string(), DEFAULT_PORTS.to_vec(), 2, 1);
    let began = Instant::now();
    let reports = scan(&p, &Transcript::new()).await.expect("scan");
    let took = began.elapsed();
    // Nothing listens on this address itself: every port closed (or, for a service of this
    // machine bound to every address, open and host-wide), quickly.
    assert!(
        took <= p.connect_timeout + p.banner_timeout + MARGIN,
        "scanning {} ports took {took:?}",
        DEFAULT_PORTS.len()
    );
    let mut want = DEFAULT_PORTS.to_vec();
    want.sort_unstable();
    assert_eq!(reports.iter().map(|r| r.port).collect::<Vec<_>>(), want);
    for r in &reports {
        match r.state {
            PortState::Closed => assert!(!r.host_wide),
            PortState::Open { .. } => assert!(r.host_wide, "port {} open on {ip}", r.port),
            PortState::NoAnswer => panic!("port {} unanswered on loopback", r.port),
        }
    }
}

#[test]
fn banners_are_described_and_recognised() {
    assert_eq!(
        describe_banner(b"SSH-2.0-dropbear_2022.83\r\n"),
        "SSH-2.0-dropbear_2022.83"
    );
    assert_eq!(describe_banner(b""), "(no banner)");
    assert_eq!(
        describe_banner(b"\xff\xfd\x01\xff\xfb\x03"),
        "<telnet negotiation>"
    );
    assert_eq!(
        describe_banner(b"220 ftp\tready\x00\x1b[0m\\ \xc3\xa9\r\n"),
        "220 ftp\\tready\\x00\\x1b[0m\\\\ \\xc3\\xa9"
    );
    let long = describe_banner(&[b'x'; 256]);
    assert_eq!(long.len(), 100);
    assert!(long.ends_with("..."));
    // A cut never splits an escape.
    let escaped = describe_banner(&[0x01; 256]);
    assert!(escaped.len() <= 100);
    assert!(
        escaped.trim_end_matches("...").ends_with("\\x01"),
        "{escaped}"
    );
    assert_eq!(describe_banner(&[b'y'; 100]).len(), 100);
    assert!(!describe_banner(&[b'y'; 100]).ends_with("..."));

    assert_eq!(service_from_banner(b"SSH-2.0-x\r\n"), Some("ssh"));
    assert_eq!(
        service_from_banner(b"HTTP/1.1 400 Bad Request\r\n"),
        Some("http")
    );
    assert_eq!(
        service_from_banner(b"RTSP/1.0 400 Bad Request\r\n"),
        Some("rtsp")
    );
    assert_eq!(
        service_from_banner(b"\x15\x03\x03\x00\x02\x02\x46"),
        Some("tls")
    );
    assert_eq!(service_from_banner(b"220 (vsFTPd 3.0.3)\r\n"), Some("ftp"));
    assert_eq!(service_from_banner(b"\xff\xfb\x01"), Some("telnet"));
    assert_eq!(service_from_banner(b"Password: "), Some("login"));
    assert_eq!(service_from_banner(b"\x00\x01\x02"), None);
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_a_resolve_error() {
    // `.invalid` never resolves (RFC 6761); a resolver that cannot answer times out instead.
    let p = plan("no-such-unit.invalid", vec![22], 1, 1);
    let began = Instant::now();
    match scan(&p, &Transcript::new()).await {
        Err(ScanError::Resolve { host, .. }) => assert_eq!(host, "no-such-unit.invalid"),
        other => panic!("expected a Resolve error, got {other:?}"),
    }
    assert!(began.elapsed() <= scan_time_bound(&p) + MARGIN);
}
