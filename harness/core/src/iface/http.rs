//! HTTP(S) requests with evidence: GET over rustls (ring provider), a timeout on every
//! request, a cap on body size, redirects followed one by one and recorded, a lab CA bundle
//! and an optional client certificate, HTTP basic auth. Every exchange goes into the
//! transcript (bodies shown up to a few KiB), secrets redacted when it is rendered.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::transcript::{Direction, Transcript};

/// Bodies longer than this are cut (and flagged `truncated`).
pub const DEFAULT_MAX_BODY: usize = 2 << 20;
/// Redirects followed before giving up.
pub const MAX_REDIRECTS: usize = 8;
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

pub struct HttpClient {
    client: reqwest::Client,
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

impl HttpClient {
    pub fn new(opts: &HttpOptions) -> Result<HttpClient, HttpError> {
        let timeout = if opts.timeout.is_zero() {
            Duration::from_secs(15)
        } else {
            opts.timeout
        };
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_config(opts)?)
            .redirect(reqwest::redirect::Policy::none())
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
            timeout,
            max_body: if opts.max_body == 0 {
                DEFAULT_MAX_BODY
            } else {
                opts.max_body
            },
        })
    }

    /// GET `url`, following redirects (each recorded), with optional basic auth (sent only
    /// to the first URL's origin).
    pub async fn get(
        &self,
        url: &str,
        basic_auth: Option<(&str, &str)>,
        transcript: &Transcript,
        iface: &str,
    ) -> Result<HttpExchange, HttpError> {
        let start: reqwest::Url = url
            .parse()
            .map_err(|_| HttpError::BadUrl(url.to_string()))?;
        if !matches!(start.scheme(), "http" | "https") {
            return Err(HttpError::BadUrl(url.to_string()));
        }
        let deadline = Instant::now() + self.timeout;
        let mut current = start.clone();
        let mut redirects: Vec<(u16, String)> = Vec::new();
        let mut seen = vec![current.to_string()];
        loop {
            let mut req = self.client.get(current.clone());
            if let Some((u, p)) = basic_auth {
                if current.origin() == start.origin() {
                    req = req.basic_auth(u, Some(p));
                }
            }
            transcript.record(
                Direction::Tx,
                iface,
                format!(
                    "GET {current}{}\n",
                    if basic_auth.is_some() {
                        " (basic auth)"
                    } else {
                        ""
                    }
                )
                .as_bytes(),
            );
            let left = deadline.saturating_duration_since(Instant::now());
            let fail = |e: reqwest::Error, url: &reqwest::Url| {
                if e.is_timeout() {
                    HttpError::Timeout {
                        url: url.to_string(),
                        waited: self.timeout,
                    }
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
            let resp = match tokio::time::timeout(left, req.send()).await {
                Err(_) => {
                    return Err(HttpError::Timeout {
                        url: current.to_string(),
                        waited: self.timeout,
                    })
                }
                Ok(Err(e)) => {
                    let err = fail(e, &current);
                    transcript.note(format!("{iface}: {err}"));
                    return Err(err);
                }
                Ok(Ok(r)) => r,
            };
            let status = resp.status().as_u16();
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
                        format!("HTTP {status} -> {next}\n").as_bytes(),
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
                        return Err(HttpError::Timeout {
                            url: current.to_string(),
                            waited: self.timeout,
                        });
                    }
                    Ok(Err(e)) => return Err(fail(e, &current)),
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
                "HTTP {status} {}{}\n",
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
            return Ok(HttpExchange {
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
