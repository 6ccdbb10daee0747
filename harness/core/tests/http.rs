//! The HTTP client against misbehaving servers written here (plain HTTP on loopback): redirects
//! recorded, a redirect loop, an endless body cut at the cap, a server that stalls after its
//! headers, basic auth sent only to the first origin.

use std::time::{Duration, Instant};

use hilsec_core::iface::http::{HttpClient, HttpError, HttpOptions};
use hilsec_core::transcript::Transcript;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Serves every connection with `answer(path, request_text)`; `None` means: send headers of an
/// endless or stalled body (see the path).
async fn server() -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", l.local_addr().expect("addr"));
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut n = 0;
                while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && n < buf.len() {
                    match s.read(&mut buf[n..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => n += k,
                    }
                }
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
                let reply = |status: &str, extra: &str, body: &str| {
                    format!(
                        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
                        body.len()
                    )
                };
                let out = match path.as_str() {
                    "/ok" => reply("200 OK", "", "hello"),
                    "/lines" => reply("200 OK", "", "first\nsecond\\path"),
                    "/moved" => reply("301 Moved Permanently", "Location: /ok\r\n", ""),
                    "/loop" => reply("302 Found", "Location: /loop\r\n", ""),
                    "/auth" => {
                        let has = req.to_lowercase().contains("authorization: basic ");
                        reply("200 OK", "", if has { "with-auth" } else { "no-auth" })
                    }
                    "/endless" => {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
                            .await;
                        let chunk = vec![b'x'; 16384];
                        while s.write_all(&chunk).await.is_ok() {}
                        return;
                    }
                    "/stall" => {
                        let _ = s
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nabc")
                            .await;
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        return;
                    }
                    _ => reply("404 Not Found", "", "no"),
                };
                let _ = s.write_all(out.as_bytes()).await;
            });
        }
    });
    base
}

fn client(timeout: Duration, max_body: usize) -> HttpClient {
    HttpClient::new(&HttpOptions {
        timeout,
        max_body,
        ..Default::default()
    })
    .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_followed_and_recorded() {
    let base = server().await;
    let t = Transcript::new();
    let x = client(Duration::from_secs(5), 0)
        .get(&format!("{base}/moved"), None, &t, "http")
        .await
        .expect("answer");
    assert_eq!(x.status, 200);
    assert_eq!(x.body, b"hello");
    assert_eq!(x.redirects.len(), 1);
    assert!(x.final_url.ends_with("/ok"));
    let text = t.render(&Default::default());
    assert!(
        text.contains("HTTP 301") && text.contains("HTTP 200"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_loop_is_an_error() {
    let base = server().await;
    let e = client(Duration::from_secs(5), 0)
        .get(&format!("{base}/loop"), None, &Transcript::new(), "http")
        .await
        .expect_err("loop");
    assert!(matches!(e, HttpError::Redirects { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_body_is_cut_at_the_cap() {
    let base = server().await;
    let t0 = Instant::now();
    let x = client(Duration::from_secs(10), 100_000)
        .get(&format!("{base}/endless"), None, &Transcript::new(), "http")
        .await
        .expect("answer");
    assert!(x.truncated);
    assert_eq!(x.body.len(), 100_000);
    assert!(t0.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_times_out() {
    let base = server().await;
    let t0 = Instant::now();
    let e = client(Duration::from_millis(700), 0)
        .get(&format!("{base}/stall"), None, &Transcript::new(), "http")
        .await
        .expect_err("stall");
    assert!(matches!(e, HttpError::Timeout { .. }), "{e}");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t0.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_is_sent() {
    let base = server().await;
    let c = client(Duration::from_secs(5), 0);
    let with = c
        .get(
            &format!("{base}/auth"),
            Some(("admin", "pw")),
            &Transcript::new(),
            "http",
        )
        .await
        .expect("answer");
    assert_eq!(with.body, b"with-auth");
    let without = c
        .get(&format!("{base}/auth"), None, &Transcript::new(), "http")
        .await
        .expect("answer");
    assert_eq!(without.body, b"no-auth");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_listening_is_a_request_error() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    let e = client(Duration::from_secs(5), 0)
        .get(
            &format!("http://127.0.0.1:{port}/"),
            None,
            &Transcript::new(),
            "http",
        )
        .await
        .expect_err("refused");
    assert!(matches!(e, HttpError::Request { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_escaped_once_in_evidence() {
    let base = server().await;
    let t = Transcript::new();
    let x = client(Duration::from_secs(5), 0)
        .get(&format!("{base}/lines"), None, &t, "http")
        .await
        .expect("answer");
    assert_eq!(x.body, b"first\nsecond\\path");
    let text = t.render(&Default::default());
    // A newline shows as `\n`, a backslash as `\\`: escaped once, not `\\n`.
    assert!(text.contains(r"first\nsecond\\path"), "{text}");
    assert!(!text.contains(r"first\\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_url_fetches_wait_as_long_as_the_http_interface_says() {
    let base = server().await;
    let dir = std::env::temp_dir().join(format!("hilsec-http-timeout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("board.toml");
    std::fs::write(
        &file,
        "[model]\nname = \"T\"\n\n[interfaces.web]\nkind = \"http\"\ntimeout = \"500ms\"\n\n[[unit]]\nname = \"t-1\"\n",
    )
    .expect("write board");
    let mut boards = hilsec_core::board::load_boards(
        std::slice::from_ref(&file),
        hilsec_core::board::LoadMode::Run,
    )
    .unwrap_or_else(|e| panic!("{e:?}"));
    let _ = std::fs::remove_dir_all(&dir);
    let b = boards.remove(0);
    let mut dev = hilsec_core::device::Device::new(
        b.units[0].clone(),
        b.model,
        &Default::default(),
        &Default::default(),
    );
    let t0 = std::time::Instant::now();
    let r = dev.http_get(&format!("{base}/stall"), None).await;
    let took = t0.elapsed();
    assert!(r.is_err(), "a stalled body is an error");
    // The fixed default was 10 s; the interface says 500 ms.
    assert!(took < Duration::from_secs(4), "took {took:?}");
}
