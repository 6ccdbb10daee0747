//! HTTP(S) requests with evidence: GET and form POSTs over rustls (ring provider), a timeout
//! on every request (redirects and an authentication retry included), a cap on body size,
//! redirects followed one by one and recorded, a lab CA bundle and an optional client
//! certificate, HTTP basic and digest auth (RFC 7616 through `http-auth`), and a cookie jar per
//! client so a form login's session carries over to the next requests until
//! [`HttpClient::new_session`]. Every exchange goes into the transcript (bodies shown up to a
//! few KiB, the names of cookies set but not their values, form fields marked secret never),
//! secrets redacted when it is rendered.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::transcript::{Direction, Transcript};

/// Bodies longer than this are cut (and flagged `truncated`).
pub const DEFAULT_MAX_BODY: usize = 2 << 20;
/// Redirects followed before giving up.
pub const MAX_REDIRECTS: usize = 8;
/// `Set-Cookie` headers a client stores per session (until [`HttpClient::new_session`]);
/// further ones are ignored, so a server cannot grow the jar without bound.
pub const MAX_COOKIES: usize = 128;
/// Body bytes shown in the transcript.
const SHOWN: usize = 4096;

/// Why a request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot read TLS material {path}: {detail}")]
    Tls { path: PathBuf, detail: String },
    #[error("{url}: {detail}")]
    Request { url: String, detail: String },
    #[error("{url}: no complete answer within {waited:?}")]
    Timeout { url: String, waited: Duration },
    #[error("{url}: redirect loop or more than {max} redirects ({chain})")]
    Redirects {
        url: String,
        max: usize,
        chain: String,
    },
    #[error("{0:?} is not an http(s) URL")]
    BadUrl(String),
}

/// How a request authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpAuthScheme {
    /// Sent with the first request, to the first URL's origin only.
    #[default]
    Basic,
    /// Sent in answer to the server's `401` digest challenge, once per request.
    Digest,
}

/// Credentials for a request.
#[derive(Debug, Clone, Copy)]
pub struct HttpAuth<'a> {
    pub scheme: HttpAuthScheme,
    pub user: &'a str,
    pub password: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    Get,
    Post,
}

impl HttpMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
        }
    }
}

/// One field of a form: `secret` fields are shown as «secret» in the transcript.
#[derive(Debug, Clone)]
pub struct FormField {
    pub name: String,
    pub value: String,
    pub secret: bool,
}

/// One request to send with [`HttpClient::request`].
#[derive(Debug, Clone)]
pub struct HttpRequest<'a> {
    pub method: HttpMethod,
    pub url: &'a str,
    pub auth: Option<HttpAuth<'a>>,
    /// POST body as application/x-www-form-urlencoded (empty for GET).
    pub form: &'a [FormField],
}

/// How to reach servers.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// Extra trusted CA certificates (PEM), e.g. the lab CA; system roots are trusted too.
    pub ca: Vec<PathBuf>,
    /// Client certificate chain and key (PEM).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Whole-request timeout (connect, headers, body).
    pub timeout: Duration,
    pub max_body: usize,
}

/// One request and everything that came back, after redirects.
#[derive(Debug, Clone)]
pub struct HttpExchange {
    /// The method of the last request sent (a POST answered by a 303 ends as a GET).
    pub method: HttpMethod,
    pub url: String,
    pub final_url: String,
    /// Each redirect followed: status and target.
    pub redirects: Vec<(u16, String)>,
    pub status: u16,
    pub content_type: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub truncated: bool,
}

impl HttpExchange {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The client's cookies: reqwest's jar (browser rules: domain, path, secure, expiry) behind a
/// lock so that [`HttpClient::new_session`] can swap in an empty one while the client is
/// shared.
#[derive(Debug, Default)]
struct SessionJar {
    current: RwLock<Arc<reqwest::cookie::Jar>>,
    /// `Set-Cookie` headers stored since the last clear (at most [`MAX_COOKIES`]).
    stored: AtomicUsize,
}

impl SessionJar {
    fn jar(&self) -> Arc<reqwest::cookie::Jar> {
        match self.current.read() {
            Ok(j) => Arc::clone(&j),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn clear(&self) {
        let fresh = Arc::new(reqwest::cookie::Jar::default());
        match self.current.write() {
            Ok(mut j) => *j = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        self.stored.store(0, Ordering::Relaxed);
    }
}

impl reqwest::cookie::CookieStore for SessionJar {
    fn set_cookies(
        &self,
        cookie_headers: &mut dyn Iterator<Item = &reqwest::header::HeaderValue>,
        url: &reqwest::Url,
    ) {
        let room = MAX_COOKIES.saturating_sub(self.stored.load(Ordering::Relaxed));
        let kept: Vec<&reqwest::header::HeaderValue> = cookie_headers.take(room).collect();
        self.stored.fetch_add(kept.len(), Ordering::Relaxed);
        reqwest::cookie::CookieStore::set_cookies(&*self.jar(), &mut kept.into_iter(), url);
    }

    fn cookies(&self, url: &reqwest::Url) -> Option<reqwest::header::HeaderValue> {
        reqwest::cookie::CookieStore::cookies(&*self.jar(), url)
    }
}

pub struct HttpClient {
    client: reqwest::Client,
    jar: Arc<SessionJar>,
    timeout: Duration,
    max_body: usize,
}

fn read_pem(path: &Path) -> Result<Vec<u8>, HttpError> {
    std::fs::read(path).map_err(|e| HttpError::Tls {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}

/// The crypto every client uses.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<rustls::crypto::CryptoProvider>> =
        std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// A verifier of the system's trusted roots, built once per process and shared by every unit's
/// client: reading the system store per client cost more time than the exchange, and a copy
/// of the store per unit was the largest allocation of a fleet run. `None` on a host without
/// trusted roots (a minimal container): then only a board's own CAs are trusted.
fn system_verifier() -> Option<Arc<rustls::client::WebPkiServerVerifier>> {
    static VERIFIER: std::sync::OnceLock<Option<Arc<rustls::client::WebPkiServerVerifier>>> =
        std::sync::OnceLock::new();
    VERIFIER
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
            if roots.is_empty() {
                return None;
            }
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .ok()
        })
        .clone()
}

/// Trusts a board's own CAs (a device's self-signed CA) as well as the system's roots, without
/// copying the system's roots into each unit's store.
#[derive(Debug)]
struct BoardOrSystemRoots {
    board: Arc<rustls::client::WebPkiServerVerifier>,
    system: Arc<rustls::client::WebPkiServerVerifier>,
}

impl rustls::client::danger::ServerCertVerifier for BoardOrSystemRoots {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        // The board's CA first: that is the device; the system's for anything else it links to.
        self.board
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .or_else(|board_err| {
                self.system
                    .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                    .map_err(|system_err| {
                        // Not the board's CA at all: what the system's roots said is the reason
                        // (a wrong name, an expired certificate), not "unknown issuer".
                        let unknown = rustls::Error::InvalidCertificate(
                            rustls::CertificateError::UnknownIssuer,
                        );
                        if board_err == unknown {
                            system_err
                        } else {
                            board_err
                        }
                    })
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.system.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.system.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.system.supported_verify_schemes()
    }
}

fn tls_config(opts: &HttpOptions) -> Result<rustls::ClientConfig, HttpError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let system = system_verifier();
    let mut board_roots = rustls::RootCertStore::empty();
    for path in &opts.ca {
        let pem = read_pem(path)?;
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| HttpError::Tls {
                path: path.clone(),
                detail: e.to_string(),
            })?;
            board_roots.add(cert).map_err(|e| HttpError::Tls {
                path: path.clone(),
                detail: e.to_string(),
            })?;
            n += 1;
        }
        if n == 0 {
            return Err(HttpError::Tls {
                path: path.clone(),
                detail: "no certificate in the file".into(),
            });
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Tls {
            path: PathBuf::new(),
            detail: e.to_string(),
        })?;
    let builder = if opts.ca.is_empty() {
        match system {
            Some(system) => builder.with_webpki_verifier(system),
            // No trusted root at all: plain HTTP works, every certificate is refused.
            None => builder.with_root_certificates(rustls::RootCertStore::empty()),
        }
    } else {
        let board = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(board_roots),
            provider(),
        )
        .build()
        .map_err(|e| HttpError::Tls {
            path: opts.ca.first().cloned().unwrap_or_default(),
            detail: e.to_string(),
        })?;
        match system {
            Some(system) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(BoardOrSystemRoots { board, system })),
            None => builder.with_webpki_verifier(board),
        }
    };
    let mut config = match &opts.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let certs = CertificateDer::pem_slice_iter(&read_pem(cert)?)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| HttpError::Tls {
                    path: cert.clone(),
                    detail: e.to_string(),
                })?;
            let key =
                PrivateKeyDer::from_pem_slice(&read_pem(key)?).map_err(|e| HttpError::Tls {
                    path: key.clone(),
                    detail: e.to_string(),
                })?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| HttpError::Tls {
                    path: cert.clone(),
                    detail: e.to_string(),
                })?
        }
    };
    // A unit's client talks to a handful of origins: a small session cache, not rustls's 256.
    config.resumption = rustls::client::Resumption::in_memory_sessions(8);
    Ok(config)
}

/// The body as the transcript records it: raw bytes, capped. Raw, because the transcript
/// escapes when it renders (escaping here too showed `\\n` in evidence).
fn shown_body(body: &[u8]) -> Vec<u8> {
    if body.len() <= SHOWN {
        body.to_vec()
    } else {
        let mut v = body[..SHOWN].to_vec();
        v.extend_from_slice(format!("… ({} bytes)", body.len()).as_bytes());
        v
    }
}

/// `application/x-www-form-urlencoded`, as browsers encode a form.
fn encode_form(form: &[FormField]) -> Vec<u8> {
    fn push(out: &mut Vec<u8>, s: &str) {
        for &b in s.as_bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(b),
                b' ' => out.push(b'+'),
                _ => out.extend_from_slice(format!("%{b:02X}").as_bytes()),
            }
        }
    }
    let mut out = Vec::new();
    for (i, f) in form.iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        push(&mut out, &f.name);
        out.push(b'=');
        push(&mut out, &f.value);
    }
    out
}

/// The form as the transcript shows it: `name=value` pairs, secret values never written.
fn shown_form(form: &[FormField]) -> String {
    form.iter()
        .map(|f| {
            if f.secret {
                format!("{}=«secret»", f.name)
            } else {
                format!("{}={}", f.name, f.value)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// ` (cookies set: a, b)` for the cookies a response sets: names only, values are session
/// tokens.
fn cookies_set(headers: &reqwest::header::HeaderMap) -> String {
    let names: Vec<String> = headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .map(|v| {
            let v = String::from_utf8_lossy(v.as_bytes());
            let pair = v.split(';').next().unwrap_or_default();
            pair.split('=')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .collect();
    if names.is_empty() {
        String::new()
    } else {
        format!(" (cookies set: {})", names.join(", "))
    }
}

/// What a 401 asks for, for messages: its `WWW-Authenticate` headers, shortened.
fn resp_auth_header(headers: &[(String, String)]) -> String {
    let asked: Vec<&str> = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, v)| v.as_str())
        .collect();
    if asked.is_empty() {
        return "no WWW-Authenticate scheme".into();
    }
    let mut text = asked.join(", ");
    if text.len() > 120 {
        let mut cut = 120;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

/// The first digest challenge of a 401 that can be answered (RFC 7616: the server lists its
/// challenges in order of preference).
fn digest_challenge(
    headers: &reqwest::header::HeaderMap,
) -> Result<http_auth::DigestClient, String> {
    let mut first_err: Option<String> = None;
    for value in headers.get_all(reqwest::header::WWW_AUTHENTICATE) {
        let Ok(text) = value.to_str() else {
            first_err.get_or_insert_with(|| "a WWW-Authenticate header that is not ASCII".into());
            continue;
        };
        for challenge in http_auth::ChallengeParser::new(text) {
            match challenge {
                Ok(c) if c.scheme.eq_ignore_ascii_case("Digest") => {
                    match http_auth::DigestClient::try_from(&c) {
                        Ok(d) => return Ok(d),
                        Err(e) => {
                            first_err.get_or_insert(e);
                        }
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    first_err.get_or_insert_with(|| format!("unparsable WWW-Authenticate: {e}"));
                    break;
                }
            }
        }
    }
    Err(first_err.unwrap_or_else(|| "no Digest challenge in WWW-Authenticate".into()))
}

fn algorithm_name(a: http_auth::digest::Algorithm) -> &'static str {
    use http_auth::digest::Algorithm;
    match a {
        Algorithm::Md5 => "MD5",
        Algorithm::Sha256 => "SHA-256",
        Algorithm::Sha512Trunc256 => "SHA-512-256",
        _ => "another algorithm",
    }
}

/// The request target a digest answer names: path and query, as sent on the request line.
fn request_target(url: &reqwest::Url) -> String {
    let mut target = url.path().to_string();
    if let Some(q) = url.query() {
        target.push('?');
        target.push_str(q);
    }
    target
}

impl HttpClient {
    pub fn new(opts: &HttpOptions) -> Result<HttpClient, HttpError> {
        let timeout = if opts.timeout.is_zero() {
            Duration::from_secs(15)
        } else {
            opts.timeout
        };
        let jar = Arc::new(SessionJar::default());
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config(opts)?)
            .redirect(reqwest::redirect::Policy::none())
            .cookie_provider(Arc::clone(&jar))
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("hilsec/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpError::Request {
                url: String::new(),
                detail: e.to_string(),
            })?;
        Ok(HttpClient {
            client,
            jar,
            timeout,
            max_body: if opts.max_body == 0 {
                DEFAULT_MAX_BODY
            } else {
                opts.max_body
            },
        })
    }

    /// Forgets every cookie: the next request starts a new session (called at the start of
    /// each action, so one login attempt's session never leaks into the next).
    pub fn new_session(&self) {
        self.jar.clear();
    }

    /// GET `url`, following redirects (each recorded), with optional basic auth (sent only
    /// to the first URL's origin). A thin wrapper of [`HttpClient::request`].
    pub async fn get(
        &self,
        url: &str,
        basic_auth: Option<(&str, &str)>,
        transcript: &Transcript,
        iface: &str,
    ) -> Result<HttpExchange, HttpError> {
        let auth = basic_auth.map(|(user, password)| HttpAuth {
            scheme: HttpAuthScheme::Basic,
            user,
            password,
        });
        let req = HttpRequest {
            method: HttpMethod::Get,
            url,
            auth,
            form: &[],
        };
        self.request(&req, transcript, iface).await
    }

    /// Sends `req`, following redirects one by one (each recorded): after a POST, 301/302/303
    /// continue as GET without body (browser behaviour), 307/308 repeat the POST. Basic auth
    /// is sent preemptively to the first URL's origin only; digest answers the server's 401
    /// `WWW-Authenticate: Digest` challenge once (from the first URL's origin; MD5, SHA-256,
    /// their `-sess` forms; qop=auth, auth-int or none) and a second 401 is returned as the
    /// answer (a refusal), not an error. Cookies the server sets are kept in the client's jar
    /// and sent on later requests (browser rules) until [`HttpClient::new_session`]. The
    /// timeout covers the whole request: redirects, the digest retry and the body.
    pub async fn request(
        &self,
        req: &HttpRequest<'_>,
        transcript: &Transcript,
        iface: &str,
    ) -> Result<HttpExchange, HttpError> {
        let url = req.url;
        let start: reqwest::Url = url
            .parse()
            .map_err(|_| HttpError::BadUrl(url.to_string()))?;
        if !matches!(start.scheme(), "http" | "https") {
            return Err(HttpError::BadUrl(url.to_string()));
        }
        let deadline = Instant::now() + self.timeout;
        let form_body = encode_form(req.form);
        let mut method = req.method;
        let mut current = start.clone();
        let mut redirects: Vec<(u16, String)> = Vec::new();
        let mut seen = vec![current.to_string()];
        // The `Authorization` answering a digest challenge, for the next request.
        let mut digest_answer: Option<String> = None;
        let mut digest_answered = false;
        // Whether the credentials went out on some request (basic sent, a digest answered): a
        // 401 before they did is the server asking for something else, not a refusal of them.
        let mut presented = false;
        let timeout_err = |url: &reqwest::Url| HttpError::Timeout {
            url: url.to_string(),
            waited: self.timeout,
        };
        let fail = |e: reqwest::Error, url: &reqwest::Url| {
            if e.is_timeout() {
                timeout_err(url)
            } else {
                // The source chain says why (e.g. the certificate names another host).
                let mut detail = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    detail.push_str(": ");
                    detail.push_str(&s.to_string());
                    src = s.source();
                }
                HttpError::Request {
                    url: url.to_string(),
                    detail,
                }
            }
        };
        loop {
            let same_origin = current.origin() == start.origin();
            let verb = match method {
                HttpMethod::Get => reqwest::Method::GET,
                HttpMethod::Post => reqwest::Method::POST,
            };
            let mut rb = self.client.request(verb, current.clone());
            let mut label = "";
            match req.auth {
                Some(a) if a.scheme == HttpAuthScheme::Basic && same_origin => {
                    rb = rb.basic_auth(a.user, Some(a.password));
                    label = " (basic auth)";
                    presented = true;
                }
                Some(a) if a.scheme == HttpAuthScheme::Digest => {
                    if let Some(answer) = digest_answer.take() {
                        rb = rb.header(reqwest::header::AUTHORIZATION, answer);
                        label = " (digest auth)";
                        presented = true;
                    } else if same_origin && !digest_answered {
                        label = " (digest auth, awaiting the challenge)";
                    }
                }
                _ => {}
            }
            let mut shown = format!("{} {current}{label}\n", method.as_str());
            if method == HttpMethod::Post {
                rb = rb
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        "application/x-www-form-urlencoded",
                    )
                    .body(form_body.clone());
                if !req.form.is_empty() {
                    shown.push_str(&format!("form: {}\n", shown_form(req.form)));
                }
            }
            transcript.record(Direction::Tx, iface, shown.as_bytes());
            let left = deadline.saturating_duration_since(Instant::now());
            let resp = match tokio::time::timeout(left, rb.send()).await {
                Err(_) => {
                    let err = timeout_err(&current);
                    transcript.note(format!("{iface}: {err}"));
                    return Err(err);
                }
                Ok(Err(e)) => {
                    let err = fail(e, &current);
                    transcript.note(format!("{iface}: {err}"));
                    return Err(err);
                }
                Ok(Ok(r)) => r,
            };
            let status = resp.status().as_u16();
            let cookies = cookies_set(resp.headers());
            let headers: Vec<(String, String)> = resp
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            if status == 401 && same_origin && !digest_answered {
                if let Some(a) = req.auth.filter(|a| a.scheme == HttpAuthScheme::Digest) {
                    digest_answered = true;
                    let answer = digest_challenge(resp.headers()).and_then(|mut d| {
                        let body: &[u8] = if method == HttpMethod::Post {
                            &form_body
                        } else {
                            &[]
                        };
                        let target = request_target(&current);
                        let answer = d.respond(&http_auth::PasswordParams {
                            username: a.user,
                            password: a.password,
                            uri: &target,
                            method: method.as_str(),
                            body: Some(body),
                        })?;
                        Ok((d, answer))
                    });
                    match answer {
                        Ok((d, answer)) => {
                            transcript.record(
                                Direction::Rx,
                                iface,
                                format!(
                                    "HTTP 401 digest challenge (realm {:?}, {}{}{}){cookies}\n",
                                    d.realm(),
                                    algorithm_name(d.algorithm()),
                                    if d.session() { "-sess" } else { "" },
                                    if d.rfc2069_compat() { ", no qop" } else { "" },
                                )
                                .as_bytes(),
                            );
                            digest_answer = Some(answer);
                            // The challenge's body is not read: dropping it closes that
                            // connection, the answer goes on a new one.
                            drop(resp);
                            continue;
                        }
                        Err(detail) => transcript.note(format!(
                            "{iface}: cannot answer the 401's digest challenge: {detail}"
                        )),
                    }
                }
            }
            if resp.status().is_redirection() {
                if let Some(loc) = resp.headers().get(reqwest::header::LOCATION) {
                    let loc = String::from_utf8_lossy(loc.as_bytes()).into_owned();
                    let next = current.join(&loc).map_err(|_| HttpError::Request {
                        url: current.to_string(),
                        detail: format!("redirect to an invalid location {loc:?}"),
                    })?;
                    transcript.record(
                        Direction::Rx,
                        iface,
                        format!("HTTP {status} -> {next}{cookies}\n").as_bytes(),
                    );
                    redirects.push((status, next.to_string()));
                    let looped = seen.contains(&next.to_string());
                    seen.push(next.to_string());
                    if looped || redirects.len() > MAX_REDIRECTS {
                        return Err(HttpError::Redirects {
                            url: url.to_string(),
                            max: MAX_REDIRECTS,
                            chain: seen.join(" -> "),
                        });
                    }
                    // A browser turns a POST into a GET on these; 307 and 308 repeat it, but
                    // never with a secret to another origin.
                    if matches!(status, 301..=303) {
                        method = HttpMethod::Get;
                    } else if method == HttpMethod::Post
                        && next.origin() != start.origin()
                        && req.form.iter().any(|f| f.secret)
                    {
                        let err = HttpError::Request {
                            url: current.to_string(),
                            detail: format!(
                                "HTTP {status} asks to repeat the form with its secret fields at another origin ({next}); not sent"
                            ),
                        };
                        transcript.note(format!("{iface}: {err}"));
                        return Err(err);
                    }
                    current = next;
                    continue;
                }
            }
            let content_type = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            let mut body = Vec::new();
            let mut truncated = false;
            let mut resp = resp;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, resp.chunk()).await {
                    Err(_) => {
                        transcript.note(format!(
                            "{iface}: the body did not finish within {:?} ({} bytes so far)",
                            self.timeout,
                            body.len()
                        ));
                        return Err(timeout_err(&current));
                    }
                    Ok(Err(e)) => {
                        let err = fail(e, &current);
                        transcript.note(format!("{iface}: {err}"));
                        return Err(err);
                    }
                    Ok(Ok(None)) => break,
                    Ok(Ok(Some(chunk))) => {
                        let room = self.max_body.saturating_sub(body.len());
                        if chunk.len() > room {
                            body.extend_from_slice(&chunk[..room]);
                            truncated = true;
                            break;
                        }
                        body.extend_from_slice(&chunk);
                    }
                }
            }
            let mut shown = format!(
                "HTTP {status} {}{}{cookies}\n",
                content_type.as_deref().unwrap_or("(no content type)"),
                if truncated {
                    format!(", body cut at {} bytes", self.max_body)
                } else {
                    format!(", {} bytes", body.len())
                },
            )
            .into_bytes();
            shown.extend_from_slice(&shown_body(&body));
            shown.push(b'\n');
            transcript.record(Direction::Rx, iface, &shown);
            if status == 401 && req.auth.is_some() && !presented {
                // The credentials never went out (another scheme asked for, a challenge that
                // cannot be answered, another origin): the 401 says nothing about them.
                let asked = resp_auth_header(&headers);
                let err = HttpError::Request {
                    url: current.to_string(),
                    detail: format!(
                        "HTTP 401 before the credentials could be presented (the server asks for {asked}): not an answer to them"
                    ),
                };
                transcript.note(format!("{iface}: {err}"));
                return Err(err);
            }
            return Ok(HttpExchange {
                method,
                url: url.to_string(),
                final_url: current.to_string(),
                redirects,
                status,
                content_type,
                headers,
                body,
                truncated,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_encoded_like_a_browser() {
        let f = |name: &str, value: &str, secret| FormField {
            name: name.into(),
            value: value.into(),
            secret,
        };
        let form = [
            f("user", "a b", false),
            f("pw", "p&=%é", true),
            f("x", "A-z_0.9*~", false),
        ];
        assert_eq!(
            String::from_utf8(encode_form(&form)).unwrap(),
            "user=a+b&pw=p%26%3D%25%C3%A9&x=A-z_0.9*%7E"
        );
        assert_eq!(shown_form(&form), "user=a b pw=«secret» x=A-z_0.9*~");
        assert!(encode_form(&[]).is_empty());
    }

    #[test]
    fn digest_challenges() {
        let mut h = reqwest::header::HeaderMap::new();
        h.append(
            reqwest::header::WWW_AUTHENTICATE,
            "Basic realm=\"x\"".parse().unwrap(),
        );
        assert!(digest_challenge(&h).is_err());
        h.append(
            reqwest::header::WWW_AUTHENTICATE,
            "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-256, qop=\"auth\", Digest realm=\"r\", nonce=\"m\""
                .parse()
                .unwrap(),
        );
        let d = digest_challenge(&h).unwrap();
        assert_eq!(d.nonce(), "n");
        assert_eq!(d.algorithm(), http_auth::digest::Algorithm::Sha256);
        let mut bad = reqwest::header::HeaderMap::new();
        bad.append(
            reqwest::header::WWW_AUTHENTICATE,
            "Digest realm=\"r\"".parse().unwrap(),
        );
        assert!(digest_challenge(&bad).unwrap_err().contains("nonce"));
    }

    #[test]
    fn the_jar_is_bounded_and_cleared() {
        use reqwest::cookie::CookieStore as _;
        let jar = SessionJar::default();
        let url: reqwest::Url = "http://127.0.0.1:1/".parse().unwrap();
        let headers: Vec<reqwest::header::HeaderValue> = (0..MAX_COOKIES + 10)
            .map(|i| format!("c{i}=v").parse().unwrap())
            .collect();
        jar.set_cookies(&mut headers.iter(), &url);
        let sent = jar.cookies(&url).unwrap();
        let sent = sent.to_str().unwrap();
        assert_eq!(sent.split("; ").count(), MAX_COOKIES);
        assert!(sent.contains("c0=v") && !sent.contains(&format!("c{MAX_COOKIES}=")));
        jar.clear();
        assert!(jar.cookies(&url).is_none());
        jar.set_cookies(&mut headers[MAX_COOKIES..].iter(), &url);
        assert!(jar.cookies(&url).is_some());
    }

    #[test]
    fn cookie_names_only() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(cookies_set(&h), "");
        h.append(
            reqwest::header::SET_COOKIE,
            "session=s3cr3t; HttpOnly; Path=/".parse().unwrap(),
        );
        h.append(reqwest::header::SET_COOKIE, "sid=x".parse().unwrap());
        assert_eq!(cookies_set(&h), " (cookies set: session, sid)");
    }
}
