//! Web logins beyond basic auth, through `HttpClient::request`: HTTP digest and form logins
//! against a real simulated unit (`hilsec-simdev --https`: `/digest/admin`, `/login`, `/home`),
//! digest algorithms and redirect rules against small servers written here, and misbehaving
//! peers (silent, flooding, closing early, a digest challenge loop) that must give an error or
//! a refusal within the client's timeout.

mod common;
use common::simdev::simdev_exe;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hilsec_core::iface::http::{
    FormField, HttpAuth, HttpAuthScheme, HttpClient, HttpError, HttpExchange, HttpMethod,
    HttpOptions, HttpRequest,
};
use hilsec_core::transcript::Transcript;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How long a loaded machine may take to start a unit or answer.
const PATIENCE: Duration = Duration::from_secs(30);
/// Added to a client's timeout when checking that an error came in time.
const MARGIN: Duration = Duration::from_secs(10);
/// A password that must never show in a transcript.
const WRONG: &str = "Wr0ng-Secret-42";

/// A running simulated camera serving HTTPS; ended when dropped.
struct Cam {
    child: Child,
    stdin: Option<ChildStdin>,
    /// `https://127.0.0.1:PORT`
    base: String,
    ca: PathBuf,
}

impl Drop for Cam {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_cam() -> Cam {
    let mut child = Command::new(simdev_exe())
        .args([
            "--model",
            "cam",
            "--unit",
            "t",
            "--serial",
            "S",
            "--mac",
            "02:00:00:00:00:01",
            "--https",
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
    let mut cam = Cam {
        child,
        stdin,
        base: String::new(),
        ca: PathBuf::new(),
    };
    let line = rx.recv_timeout(PATIENCE).expect("ready line in time");
    assert!(
        line.starts_with("HILSEC-SIM-READY "),
        "ready line: {line:?}"
    );
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
            .to_string()
    };
    cam.base = format!("https://{}", field("https="));
    cam.ca = PathBuf::from(field("ca="));
    cam
}

fn cam_client(cam: &Cam) -> HttpClient {
    HttpClient::new(&HttpOptions {
        ca: vec![cam.ca.clone()],
        timeout: PATIENCE,
        ..Default::default()
    })
    .expect("client")
}

fn client(timeout: Duration) -> HttpClient {
    HttpClient::new(&HttpOptions {
        timeout,
        ..Default::default()
    })
    .expect("client")
}

fn field(name: &str, value: &str, secret: bool) -> FormField {
    FormField {
        name: name.into(),
        value: value.into(),
        secret,
    }
}

fn digest<'a>(user: &'a str, password: &'a str) -> Option<HttpAuth<'a>> {
    Some(HttpAuth {
        scheme: HttpAuthScheme::Digest,
        user,
        password,
    })
}

async fn get(c: &HttpClient, url: &str, t: &Transcript) -> HttpExchange {
    c.request(
        &HttpRequest {
            method: HttpMethod::Get,
            url,
            auth: None,
            form: &[],
        },
        t,
        "web",
    )
    .await
    .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// GET /login and the CSRF token of its form.
async fn login_page(c: &HttpClient, cam: &Cam, t: &Transcript) -> String {
    let page = get(c, &format!("{}/login", cam.base), t).await;
    assert_eq!(page.status, 200);
    let body = String::from_utf8_lossy(&page.body);
    let re = regex::Regex::new(r#"name="csrf" value="([^"]+)""#).expect("regex");
    re.captures(&body)
        .unwrap_or_else(|| panic!("no csrf in {body}"))[1]
        .to_string()
}

async fn post_login(
    c: &HttpClient,
    cam: &Cam,
    user: &str,
    password: &str,
    csrf: &str,
    t: &Transcript,
) -> HttpExchange {
    let form = [
        field("username", user, false),
        field("password", password, true),
        field("csrf", csrf, false),
    ];
    let url = format!("{}/login", cam.base);
    c.request(
        &HttpRequest {
            method: HttpMethod::Post,
            url: &url,
            auth: None,
            form: &form,
        },
        t,
        "web",
    )
    .await
    .expect("POST /login")
}

fn text(t: &Transcript) -> String {
    t.render(&Default::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_login_is_accepted_and_refused() {
    let cam = start_cam();
    let c = cam_client(&cam);
    let url = format!("{}/digest/admin", cam.base);
    let t = Transcript::new();
    let ok = c
        .request(
            &HttpRequest {
                method: HttpMethod::Get,
                url: &url,
                auth: digest("admin", "admin"),
                form: &[],
            },
            &t,
            "web",
        )
        .await
        .expect("digest login");
    assert_eq!(ok.status, 200, "{}", text(&t));
    assert!(String::from_utf8_lossy(&ok.body).contains("Welcome"));
    let shown = text(&t);
    assert!(
        shown.contains("HTTP 401 digest challenge (realm \"SimDevice\", MD5)"),
        "{shown}"
    );
    assert!(shown.contains("(digest auth)"), "{shown}");

    // A wrong password: the second 401 is the answer, a refusal, not an error.
    let t = Transcript::new();
    let refused = c
        .request(
            &HttpRequest {
                method: HttpMethod::Get,
                url: &url,
                auth: digest("admin", WRONG),
                form: &[],
            },
            &t,
            "web",
        )
        .await
        .expect("a refusal is an answer");
    assert_eq!(refused.status, 401);
    assert!(refused
        .header("WWW-Authenticate")
        .is_some_and(|h| h.starts_with("Digest ")));
    let shown = text(&t);
    assert_eq!(shown.matches("digest challenge").count(), 1, "{shown}");
    assert!(shown.contains("HTTP 401 text/html"), "{shown}");
    assert!(!shown.contains(WRONG), "{shown}");

    // Without credentials: the challenge itself is the answer.
    let plain = get(&c, &url, &Transcript::new()).await;
    assert_eq!(plain.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_login_keeps_the_session_until_a_new_one() {
    let cam = start_cam();
    let c = cam_client(&cam);
    let t = Transcript::new();
    let csrf = login_page(&c, &cam, &t).await;
    let x = post_login(&c, &cam, "admin", "admin", &csrf, &t).await;
    // 302 to /home, followed as a GET with the session cookie.
    assert_eq!(x.redirects.len(), 1, "{}", text(&t));
    assert_eq!(x.redirects[0].0, 302);
    assert_eq!(x.redirects[0].1, format!("{}/home", cam.base));
    assert_eq!(x.method, HttpMethod::Get);
    assert_eq!(x.status, 200);
    assert!(String::from_utf8_lossy(&x.body).contains("Welcome admin"));
    // The cookie is kept for later requests.
    let home = get(&c, &format!("{}/home", cam.base), &t).await;
    assert_eq!(home.status, 200);
    assert!(home.redirects.is_empty());
    let shown = text(&t);
    assert!(shown.contains("(cookies set: sid)"), "{shown}");
    assert!(shown.contains("(cookies set: session)"), "{shown}");
    assert!(
        shown.contains(&format!(
            "form: username=admin password=«secret» csrf={csrf}"
        )),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("HTTP 302 -> {}/home", cam.base)),
        "{shown}"
    );

    // A new session forgets the cookie: /home sends the client to the sign-in page.
    c.new_session();
    let again = get(&c, &format!("{}/home", cam.base), &Transcript::new()).await;
    assert_eq!(again.redirects.len(), 1);
    assert_eq!(again.redirects[0].1, format!("{}/login", cam.base));
    assert!(again.final_url.ends_with("/login"));
    // The old CSRF token belonged to the forgotten `sid`.
    let stale = post_login(&c, &cam, "admin", "admin", &csrf, &Transcript::new()).await;
    assert_eq!(stale.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_login_refusals() {
    let cam = start_cam();
    let c = cam_client(&cam);
    let t = Transcript::new();
    let csrf = login_page(&c, &cam, &t).await;
    let x = post_login(&c, &cam, "admin", WRONG, &csrf, &t).await;
    assert_eq!(x.status, 200);
    assert!(x.redirects.is_empty());
    assert_eq!(x.method, HttpMethod::Post);
    let body = String::from_utf8_lossy(&x.body);
    assert!(body.contains("Invalid user name or password"), "{body}");
    // Still not signed in.
    let home = get(&c, &format!("{}/home", cam.base), &t).await;
    assert!(home.final_url.ends_with("/login"));
    let shown = text(&t);
    assert!(!shown.contains(WRONG), "{shown}");
    assert!(shown.contains("password=«secret»"), "{shown}");
    // A wrong or missing CSRF token: 403, whatever the credentials.
    let x = post_login(&c, &cam, "admin", "admin", "not-the-token", &t).await;
    assert_eq!(x.status, 403);
    c.new_session();
    let x = post_login(&c, &cam, "admin", "admin", "", &t).await;
    assert_eq!(x.status, 403);
    // The server reads at most 16 KiB of a form.
    let big = "x".repeat(20 * 1024);
    let x = post_login(&c, &cam, "admin", &big, &csrf, &t).await;
    assert_eq!(x.status, 413);
}

/// A request to a small server written here: its method, target, headers and body.
#[derive(Debug, Clone)]
struct Req {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Handler = Arc<dyn Fn(&Req) -> String + Send + Sync>;

/// Serves each connection one request, answered with `handler`'s raw response, then closes.
async fn server(handler: Handler) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", l.local_addr().expect("addr"));
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let end = loop {
                    if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break p;
                    }
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let mut lines = head.split("\r\n");
                let first: Vec<&str> = lines.next().unwrap_or_default().split(' ').collect();
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let mut body = buf[end + 4..].to_vec();
                while body.len() < len {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => body.extend_from_slice(&chunk[..n]),
                    }
                }
                let req = Req {
                    method: first.first().unwrap_or(&"").to_string(),
                    target: first.get(1).unwrap_or(&"").to_string(),
                    headers,
                    body,
                };
                let out = handler(&req);
                let _ = s.write_all(out.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    base
}

fn reply(status: &str, extra: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n{body}",
        body.len()
    )
}

/// `Digest k="v", k=v` → pairs (the test's own parser, not the client's).
fn digest_params(h: &str) -> Vec<(String, String)> {
    let rest = h.strip_prefix("Digest ").expect("Digest answer");
    let mut out = Vec::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (k, v) = s.split_once('=').expect("k=v");
        let k = k.trim().trim_start_matches(',').trim().to_string();
        let v = v.trim_start();
        let (val, next) = if let Some(q) = v.strip_prefix('"') {
            let end = q.find('"').expect("closing quote");
            (q[..end].to_string(), &q[end + 1..])
        } else {
            let end = v.find(',').unwrap_or(v.len());
            (v[..end].trim().to_string(), &v[end..])
        };
        out.push((k, val));
        s = next.trim_start_matches([',', ' ']);
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn md5(s: &str) -> String {
    use md5::Digest as _;
    hex(&md5::Md5::digest(s.as_bytes()))
}

fn sha256(s: &str) -> String {
    use sha2::Digest as _;
    hex(&sha2::Sha256::digest(s.as_bytes()))
}

/// A digest algorithm's hash, hex.
type HashFn = fn(&str) -> String;

/// A server that challenges with `challenge` and checks the answer for `admin`/`password`
/// with `h` (the challenge's hash), RFC 7616 with or without qop.
fn digest_server(
    challenge: &'static str,
    h: fn(&str) -> String,
    password: &'static str,
) -> Handler {
    Arc::new(move |req: &Req| {
        let refuse = reply(
            "401 Unauthorized",
            &format!("WWW-Authenticate: {challenge}\r\n"),
            "no",
        );
        let Some(auth) = req.header("Authorization") else {
            return refuse;
        };
        let p = digest_params(auth);
        let get = |k: &str| {
            p.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let ha1 = h(&format!("{}:{}:{password}", get("username"), get("realm")));
        let ha2 = h(&format!("{}:{}", req.method, get("uri")));
        let want = if get("qop").is_empty() {
            h(&format!("{ha1}:{}:{ha2}", get("nonce")))
        } else {
            h(&format!(
                "{ha1}:{}:{}:{}:{}:{ha2}",
                get("nonce"),
                get("nc"),
                get("cnonce"),
                get("qop")
            ))
        };
        if get("uri") == req.target && get("response") == want {
            reply("200 OK", "", &format!("welcome {}", req.method))
        } else {
            refuse
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_sha256_and_without_qop() {
    let cases: [(&'static str, HashFn); 3] = [
        (
            r#"Digest realm="lab", nonce="n-sha", algorithm=SHA-256, qop="auth""#,
            sha256,
        ),
        (r#"Digest realm="lab", nonce="n-old""#, md5),
        (
            r#"Digest realm="lab", nonce="n-md5", algorithm=MD5, qop="auth", opaque="o""#,
            md5,
        ),
    ];
    let c = client(PATIENCE);
    for (challenge, h) in cases {
        let base = server(digest_server(challenge, h, "s3cret pw")).await;
        let url = format!("{base}/x?y=1");
        for (method, form) in [
            (HttpMethod::Get, vec![]),
            (HttpMethod::Post, vec![field("a", "b c", false)]),
        ] {
            let t = Transcript::new();
            let ok = c
                .request(
                    &HttpRequest {
                        method,
                        url: &url,
                        auth: digest("admin", "s3cret pw"),
                        form: &form,
                    },
                    &t,
                    "web",
                )
                .await
                .expect("answer");
            assert_eq!(ok.status, 200, "{challenge}: {}", text(&t));
            assert_eq!(
                String::from_utf8_lossy(&ok.body),
                format!("welcome {}", method.as_str())
            );
            let no = c
                .request(
                    &HttpRequest {
                        method,
                        url: &url,
                        auth: digest("admin", WRONG),
                        form: &form,
                    },
                    &t,
                    "web",
                )
                .await
                .expect("answer");
            assert_eq!(no.status, 401, "{challenge}");
            assert!(!text(&t).contains(WRONG));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_after_a_post() {
    let base = server(Arc::new(|req: &Req| match req.target.as_str() {
        "/see-other" => reply("303 See Other", "Location: /echo\r\n", ""),
        "/found" => reply("302 Found", "Location: /echo\r\n", ""),
        "/temporary" => reply("307 Temporary Redirect", "Location: /echo\r\n", ""),
        "/permanent" => reply("308 Permanent Redirect", "Location: /echo\r\n", ""),
        "/echo" => reply(
            "200 OK",
            "",
            &format!(
                "{} {} {}",
                req.method,
                req.header("Content-Type").unwrap_or("-"),
                String::from_utf8_lossy(&req.body)
            ),
        ),
        _ => reply("404 Not Found", "", ""),
    }))
    .await;
    let c = client(PATIENCE);
    let form = [field("user", "me", false), field("pw", "x&y", true)];
    for (path, method, body) in [
        ("/see-other", HttpMethod::Get, "GET - "),
        ("/found", HttpMethod::Get, "GET - "),
        (
            "/temporary",
            HttpMethod::Post,
            "POST application/x-www-form-urlencoded user=me&pw=x%26y",
        ),
        (
            "/permanent",
            HttpMethod::Post,
            "POST application/x-www-form-urlencoded user=me&pw=x%26y",
        ),
    ] {
        let t = Transcript::new();
        let x = c
            .request(
                &HttpRequest {
                    method: HttpMethod::Post,
                    url: &format!("{base}{path}"),
                    auth: None,
                    form: &form,
                },
                &t,
                "web",
            )
            .await
            .expect("answer");
        assert_eq!(x.method, method, "{path}");
        assert_eq!(String::from_utf8_lossy(&x.body), body, "{path}");
        assert_eq!(x.redirects.len(), 1);
        // What was sent never shows the secret (the echo server's answer does, of course).
        let shown = text(&t);
        for sent in shown
            .lines()
            .filter(|l| l.contains(" -> POST ") || l.contains(" -> GET "))
        {
            assert!(!sent.contains("x&y") && !sent.contains("x%26y"), "{shown}");
        }
        assert!(shown.contains("pw=«secret»"), "{shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_on_a_post_goes_to_the_first_origin_only() {
    let other = server(Arc::new(|req: &Req| {
        let has = req.header("Authorization").is_some();
        reply("200 OK", "", if has { "leaked" } else { "clean" })
    }))
    .await;
    let first = server(Arc::new(move |req: &Req| {
        if req.header("Authorization").is_some() {
            reply("303 See Other", &format!("Location: {other}/x\r\n"), "")
        } else {
            reply("401 Unauthorized", "", "")
        }
    }))
    .await;
    let t = Transcript::new();
    let x = client(PATIENCE)
        .request(
            &HttpRequest {
                method: HttpMethod::Post,
                url: &format!("{first}/login"),
                auth: Some(HttpAuth {
                    scheme: HttpAuthScheme::Basic,
                    user: "admin",
                    password: WRONG,
                }),
                form: &[],
            },
            &t,
            "web",
        )
        .await
        .expect("answer");
    assert_eq!(x.body, b"clean");
    let shown = text(&t);
    assert_eq!(shown.matches("(basic auth)").count(), 1, "{shown}");
    assert!(!shown.contains(WRONG));
}

/// Plain listeners that misbehave in one way each.
#[derive(Clone, Copy, Debug)]
enum Peer {
    /// Accepts, then says nothing.
    Silent,
    /// Reads the request, then sends an endless head.
    Flood,
    /// Closes right after accepting.
    Close,
    /// Answers every request with a fresh digest challenge.
    ChallengeLoop,
}

async fn misbehaving(peer: Peer, requests: Arc<AtomicUsize>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", l.local_addr().expect("addr"));
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            let requests = Arc::clone(&requests);
            tokio::spawn(async move {
                match peer {
                    Peer::Silent => {
                        tokio::time::sleep(Duration::from_secs(120)).await;
                        drop(s);
                    }
                    Peer::Flood => {
                        // The request first (a flood before it is refused at once as an
                        // unexpected message), then a head that never ends.
                        let mut buf = [0u8; 4096];
                        if !matches!(s.read(&mut buf).await, Ok(n) if n > 0) {
                            return;
                        }
                        let _ = s.write_all(b"HTTP/1.1 200 OK\r\n").await;
                        let line = format!("X-Flood: {}\r\n", "a".repeat(1000));
                        while s.write_all(line.as_bytes()).await.is_ok() {}
                    }
                    Peer::Close => drop(s),
                    Peer::ChallengeLoop => {
                        let mut buf = vec![0u8; 16384];
                        let mut n = 0;
                        while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") && n < buf.len() {
                            match s.read(&mut buf[n..]).await {
                                Ok(0) | Err(_) => return,
                                Ok(k) => n += k,
                            }
                        }
                        let k = requests.fetch_add(1, Ordering::SeqCst);
                        let out = reply(
                            "401 Unauthorized",
                            &format!(
                                "WWW-Authenticate: Digest realm=\"loop\", nonce=\"n{k}\", qop=\"auth\"\r\n"
                            ),
                            "again",
                        );
                        let _ = s.write_all(out.as_bytes()).await;
                    }
                }
            });
        }
    });
    base
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_peers_give_an_error_within_the_timeout() {
    let timeout = Duration::from_secs(2);
    let c = client(timeout);
    let form = [
        field("username", "admin", false),
        field("password", WRONG, true),
    ];
    for peer in [Peer::Silent, Peer::Flood, Peer::Close] {
        let base = misbehaving(peer, Arc::new(AtomicUsize::new(0))).await;
        for (method, auth) in [
            (HttpMethod::Get, None),
            (HttpMethod::Post, None),
            (HttpMethod::Get, digest("admin", WRONG)),
        ] {
            let t = Transcript::new();
            let t0 = Instant::now();
            let e = c
                .request(
                    &HttpRequest {
                        method,
                        url: &format!("{base}/login"),
                        auth,
                        form: if method == HttpMethod::Post {
                            &form
                        } else {
                            &[]
                        },
                    },
                    &t,
                    "web",
                )
                .await
                .expect_err("no usable answer");
            let took = t0.elapsed();
            eprintln!("{peer:?} {method:?}: {e} after {took:?}");
            assert!(took < timeout + MARGIN, "{peer:?}: took {took:?}");
            match peer {
                Peer::Silent => assert!(matches!(e, HttpError::Timeout { .. }), "{peer:?}: {e}"),
                Peer::Close | Peer::Flood => {
                    assert!(matches!(e, HttpError::Request { .. }), "{peer:?}: {e}")
                }
                Peer::ChallengeLoop => unreachable!(),
            }
            let shown = text(&t);
            assert!(!shown.contains(WRONG), "{shown}");
            assert!(shown.contains("web: "), "the error is noted: {shown}");
        }
    }

    // A server that challenges forever: answered once, the second 401 is a refusal.
    let requests = Arc::new(AtomicUsize::new(0));
    let base = misbehaving(Peer::ChallengeLoop, Arc::clone(&requests)).await;
    let t = Transcript::new();
    let t0 = Instant::now();
    let x = c
        .request(
            &HttpRequest {
                method: HttpMethod::Get,
                url: &format!("{base}/admin"),
                auth: digest("admin", WRONG),
                form: &[],
            },
            &t,
            "web",
        )
        .await
        .expect("a refusal");
    assert!(t0.elapsed() < timeout + MARGIN);
    assert_eq!(x.status, 401);
    assert_eq!(x.body, b"again");
    assert_eq!(requests.load(Ordering::SeqCst), 2);
}
