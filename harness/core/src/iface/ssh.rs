//! SSH links: a unit's SSH server as a login surface (password and keyboard-interactive
//! authentication) and as a command console (a pty + shell channel that send/expect recipes
//! drive like a UART).
//!
//! This module exists because many network devices offer SSH next to (or instead of) a
//! serial console, and the password rules must hold there too: an SSH server that accepts a
//! universal default password is a finding like a console that does. The client is `russh`
//! on the `ring` provider: pure Rust, no OpenSSL, libssh or aws-lc (cmake) system library.
//!
//! What it promises:
//! - **One connection, one attempt.** [`ssh_login`] connects, completes the handshake, records
//!   what the server showed ([`SshServerInfo`]: its identification line, host key fingerprint,
//!   negotiated algorithms) as a transcript note, and tries one method for one user. A refusal
//!   is an answer ([`SshLogin::Refused`], with the methods the server offers instead), not an
//!   error. The password is never recorded: keyboard-interactive notes name the prompts and
//!   say which were answered with the password.
//! - **Never a hang.** Connecting, the handshake and the authentication are each bounded by
//!   the caller's timeout, so a silent server, one that floods or sends garbage instead of an
//!   identification line, or one that closes early, is a [`LinkError`] within that timeout.
//!   The first bytes the server sent (escaped, bounded) go into the error and the transcript.
//! - **Pinned host keys.** With [`SshOptions::host_key`] set, any other key is refused before
//!   authentication (an `Open` error naming both fingerprints); without it the key is accepted
//!   and recorded.
//! - **Closing is dropping.** An [`SshSession`] and the consoles it opened share one guard on
//!   the socket: when the last of them is dropped, the socket is closed and russh's session
//!   task ends, even in the middle of a key exchange.
//! - **Bounded console.** [`SshSession::open_shell`] bridges the channel through a
//!   `tokio::io::duplex` pipe of [`PIPE_BYTES`] to [`Console::from_stream`]: while nobody reads
//!   the console, the pipe stays full, the pump stops reading the channel, and russh's bounded
//!   channel queue and SSH flow control hold the server back.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use russh::client::{self, AuthResult, KeyboardInteractiveAuthResponse};
use russh::keys::{HashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, MethodKind, MethodSet};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_util::sync::{CancellationToken, DropGuard, WaitForCancellationFutureOwned};

use crate::iface::serial::Console;
use crate::iface::LinkError;
use crate::transcript::{escape, Transcript};

/// Bytes the console pipe holds in each direction.
pub const PIPE_BYTES: usize = 4096;
/// Most bytes of what the server sent first that are kept (for its identification line and
/// for the evidence when the handshake fails).
const HEAD_BYTES: usize = 1024;
/// Most keyboard-interactive rounds answered before giving up on a server that keeps asking.
const MAX_KBD_ROUNDS: usize = 8;
/// Keepalives on an authenticated connection: one after this much silence from the server.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// Unanswered keepalives before the connection counts as dead.
const KEEPALIVE_MAX: usize = 3;
/// How long closing a shell channel may take once its console is gone.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Longest wait for the server to take console input (its flow-control window) before the
/// pump gives up on the channel.
const WRITE_STALL: Duration = Duration::from_secs(60);

/// Which SSH authentication method a login step uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SshAuthMethod {
    Password,
    KeyboardInteractive,
}

impl SshAuthMethod {
    /// The method's name in the SSH protocol.
    pub fn protocol_name(self) -> &'static str {
        match self {
            SshAuthMethod::Password => "password",
            SshAuthMethod::KeyboardInteractive => "keyboard-interactive",
        }
    }
}

/// How to connect: host key pinning and the shell's terminal.
#[derive(Debug, Clone, Default)]
pub struct SshOptions {
    /// Pinned host key fingerprint ("SHA256:<base64>", as ssh-keygen -l prints); a different key
    /// is an `Open` error naming both. `None`: any key is accepted and recorded.
    pub host_key: Option<String>,
    /// Terminal type and size for the shell's pty ("" = "vt100", 0 = 80x24).
    pub terminal: String,
    pub columns: u32,
    pub rows: u32,
}

/// What the server showed: recorded in the transcript at every connection.
#[derive(Debug, Clone)]
pub struct SshServerInfo {
    /// The server's identification line ("SSH-2.0-...").
    pub banner: String,
    /// Host key algorithm and fingerprint ("ssh-ed25519 SHA256:...").
    pub host_key: String,
    /// Negotiated key exchange, cipher and MAC ("" when not known).
    pub kex: String,
    pub cipher: String,
    pub mac: String,
}

impl SshServerInfo {
    /// The host key's fingerprint alone ("SHA256:...").
    pub fn fingerprint(&self) -> &str {
        self.host_key
            .rsplit(' ')
            .next()
            .unwrap_or(self.host_key.as_str())
    }
}

/// The outcome of one authentication attempt.
pub enum SshLogin {
    /// Authenticated.
    Accepted(SshSession),
    /// The server refused the credential (a usable answer); `methods`: what it offers instead.
    Refused { methods: Vec<String> },
}

impl std::fmt::Debug for SshLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SshLogin::Accepted(s) => f.debug_tuple("Accepted").field(&s.inner.server).finish(),
            SshLogin::Refused { methods } => {
                f.debug_struct("Refused").field("methods", methods).finish()
            }
        }
    }
}

/// An authenticated connection.
pub struct SshSession {
    /// Boxed: a session is moved around in enums next to small variants.
    inner: Box<Inner>,
}

struct Inner {
    endpoint: String,
    handle: client::Handle<Client>,
    server: SshServerInfo,
    opts: SshOptions,
    /// Closes the socket when the session and every console it opened are gone.
    guard: Arc<DropGuard>,
}

impl std::fmt::Debug for SshSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshSession")
            .field("endpoint", &self.inner.endpoint)
            .field("server", &self.inner.server)
            .finish_non_exhaustive()
    }
}

impl SshSession {
    /// What the server showed at the handshake.
    pub fn server(&self) -> &SshServerInfo {
        &self.inner.server
    }

    /// True once the connection has ended (the server closed it, or it failed).
    pub fn is_closed(&self) -> bool {
        self.inner.handle.is_closed()
    }

    /// Opens a pty + shell channel as a console (send/expect recipes run on it), the channel
    /// bridged through a bounded `tokio::io::duplex` pump to `Console::from_stream`; the console
    /// shows closed when the channel or connection closes.
    pub async fn open_shell(
        &mut self,
        name: &str,
        timeout: Duration,
        transcript: Transcript,
    ) -> Result<Console, LinkError> {
        let this = &mut *self.inner;
        let term = if this.opts.terminal.is_empty() {
            "vt100".to_string()
        } else {
            this.opts.terminal.clone()
        };
        let cols = if this.opts.columns == 0 {
            80
        } else {
            this.opts.columns
        };
        let rows = if this.opts.rows == 0 {
            24
        } else {
            this.opts.rows
        };
        let endpoint = this.endpoint.clone();
        let handle = &this.handle;
        let opened = tokio::time::timeout(timeout, async {
            let mut channel = handle
                .channel_open_session()
                .await
                .map_err(|e| channel_error(&endpoint, "open a session channel", e))?;
            // Output that arrives before the shell's confirmation is kept for the console.
            let mut early = Vec::new();
            channel
                .request_pty(true, &term, cols, rows, 0, 0, &[])
                .await
                .map_err(|e| channel_error(&endpoint, "request a pty", e))?;
            // A server without ptys (some embedded ones) still gets its shell.
            let pty = match confirm(&mut channel, &mut early, "pty").await {
                Ok(()) => true,
                Err(LinkError::Refused(_)) => false,
                Err(e) => return Err(e),
            };
            channel
                .request_shell(true)
                .await
                .map_err(|e| channel_error(&endpoint, "request a shell", e))?;
            confirm(&mut channel, &mut early, "shell").await?;
            Ok::<_, LinkError>((channel, early, pty))
        })
        .await;
        let (channel, early, pty) = match opened {
            Ok(r) => r?,
            Err(_) => {
                return Err(LinkError::Timeout {
                    pattern: format!("SSH shell channel on {endpoint} (pty {term} {cols}x{rows})"),
                    waited: timeout,
                    tail: String::new(),
                })
            }
        };
        transcript.note(if pty {
            format!("{name}: SSH shell opened on {endpoint} (pty {term} {cols}x{rows})")
        } else {
            format!("{name}: SSH shell opened on {endpoint} without a pty (the server refused one)")
        });
        let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
        tokio::spawn(pump(channel, ours, early, Arc::clone(&this.guard)));
        Ok(Console::from_stream(name, theirs, transcript))
    }
}

/// Waits for the answer to a channel request sent with `want_reply`.
async fn confirm(
    channel: &mut russh::Channel<client::Msg>,
    early: &mut Vec<u8>,
    what: &str,
) -> Result<(), LinkError> {
    loop {
        match channel.wait().await {
            Some(ChannelMsg::Success) => return Ok(()),
            Some(ChannelMsg::Failure) => {
                return Err(LinkError::Refused(format!(
                    "the SSH server refused the {what} request"
                )))
            }
            Some(ChannelMsg::Data { data }) | Some(ChannelMsg::ExtendedData { data, .. }) => {
                let room = PIPE_BYTES.saturating_sub(early.len());
                early.extend_from_slice(&data[..data.len().min(room)]);
            }
            Some(ChannelMsg::Eof) | Some(ChannelMsg::Close) | None => {
                return Err(LinkError::Closed(format!(
                    "the SSH server closed the channel instead of answering the {what} request"
                )))
            }
            Some(_) => {}
        }
    }
}

fn channel_error(endpoint: &str, what: &str, e: russh::Error) -> LinkError {
    match e {
        russh::Error::Disconnect
        | russh::Error::SendError
        | russh::Error::RecvError
        | russh::Error::IO(_) => LinkError::Closed(format!(
            "SSH connection to {endpoint} ended while trying to {what}: {e}"
        )),
        russh::Error::ChannelOpenFailure(reason) => LinkError::Refused(format!(
            "the SSH server on {endpoint} would not open a session channel ({reason:?})"
        )),
        other => LinkError::Protocol(format!("SSH: cannot {what} on {endpoint}: {other}")),
    }
}

/// Moves bytes between the shell channel and the console's pipe until either side ends; then
/// closes the channel (bounded) and lets go of the connection guard.
async fn pump(
    mut channel: russh::Channel<client::Msg>,
    pipe: tokio::io::DuplexStream,
    early: Vec<u8>,
    guard: Arc<DropGuard>,
) {
    let (mut rd, mut wr) = tokio::io::split(pipe);
    let mut buf = vec![0u8; PIPE_BYTES];
    let mut open = early.is_empty() || wr.write_all(&early).await.is_ok();
    while open {
        tokio::select! {
            msg = channel.wait() => match msg {
                Some(ChannelMsg::Data { data }) | Some(ChannelMsg::ExtendedData { data, .. }) => {
                    // Blocks while the console does not read: the pipe is the bound.
                    open = wr.write_all(&data).await.is_ok();
                }
                Some(ChannelMsg::Eof) | Some(ChannelMsg::Close) | None => open = false,
                Some(_) => {}
            },
            n = rd.read(&mut buf) => match n {
                Ok(0) | Err(_) => open = false,
                // A server that takes nothing for so long is gone: stop rather than hold on.
                Ok(n) => open = matches!(
                    tokio::time::timeout(WRITE_STALL, channel.data(&buf[..n])).await,
                    Ok(Ok(()))
                ),
            },
        }
    }
    // The console reads end-of-file from here on.
    drop(wr);
    let _ = tokio::time::timeout(CLOSE_WAIT, channel.close()).await;
    drop(channel);
    drop(guard);
}

/// What the handler learnt during the handshake.
#[derive(Debug, Default)]
struct Seen {
    /// "algorithm SHA256:..." of the server's host key.
    host_key: Option<String>,
    /// The pinned key did not match: "pinned X, server has Y".
    mismatch: Option<String>,
    kex: String,
    cipher: String,
    mac: String,
}

/// russh's client callbacks: checks and records the host key, records the algorithms.
struct Client {
    pin: Option<String>,
    seen: Arc<Mutex<Seen>>,
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(|p| p.into_inner())
}

fn describe_key(key: &PublicKeyOrCertificate) -> (String, String) {
    let describe = |k: &PublicKey| {
        (
            k.algorithm().as_str().to_string(),
            k.fingerprint(HashAlg::Sha256).to_string(),
        )
    };
    match key {
        PublicKeyOrCertificate::PublicKey { key, .. } => describe(key),
        PublicKeyOrCertificate::Certificate(cert) => {
            let fp = cert.public_key().fingerprint(HashAlg::Sha256).to_string();
            (format!("{} (certificate)", cert.algorithm().as_str()), fp)
        }
    }
}

/// The fingerprint part of a pinned key as a board may write it ("SHA256:..." or
/// "ssh-ed25519 SHA256:..."), without base64 padding.
fn pin_fingerprint(pin: &str) -> &str {
    pin.split_whitespace()
        .last()
        .unwrap_or("")
        .trim_end_matches('=')
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let (alg, fp) = describe_key(server_public_key);
        let mut seen = lock(&self.seen);
        seen.host_key = Some(format!("{alg} {fp}"));
        if let Some(pin) = &self.pin {
            if pin_fingerprint(pin) != fp.trim_end_matches('=') {
                seen.mismatch = Some(format!(
                    "host key mismatch: pinned {}, the server has {alg} {fp}",
                    pin.trim()
                ));
                return Ok(false);
            }
        }
        Ok(true)
    }

    async fn kex_done(
        &mut self,
        _shared_secret: Option<&[u8]>,
        names: &russh::Names,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let mut seen = lock(&self.seen);
        seen.kex = names.kex.as_ref().to_string();
        seen.cipher = names.cipher.as_ref().to_string();
        let (c2s, s2c) = (names.client_mac.as_ref(), names.server_mac.as_ref());
        // An AEAD cipher authenticates the packets itself: the negotiated MAC is not used.
        let aead = seen.cipher.contains("poly1305") || seen.cipher.contains("gcm");
        seen.mac = if aead {
            "implicit (AEAD cipher)".to_string()
        } else if c2s == s2c {
            c2s.to_string()
        } else {
            format!("{c2s} (client to server), {s2c} (server to client)")
        };
        Ok(())
    }
}

/// What the server sent first, kept by [`Tap`].
#[derive(Debug, Default)]
struct Head {
    bytes: Vec<u8>,
    total: u64,
}

/// The TCP stream as russh sees it: keeps the first bytes the server sent (its identification
/// line, or the garbage it sent instead) and fails every read and write once the connection's
/// token is cancelled, which ends russh's session task and closes the socket.
struct Tap {
    inner: tokio::net::TcpStream,
    head: Arc<Mutex<Head>>,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Tap {
    fn check_cancelled(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        match self.cancelled.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "SSH connection closed by the harness",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

use std::future::Future as _;

impl AsyncRead for Tap {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check_cancelled(cx)?;
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            let new = &buf.filled()[before..];
            let mut head = this.head.lock().unwrap_or_else(|p| p.into_inner());
            head.total += new.len() as u64;
            let room = HEAD_BYTES.saturating_sub(head.bytes.len());
            head.bytes.extend_from_slice(&new[..new.len().min(room)]);
        }
        r
    }
}

impl AsyncWrite for Tap {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check_cancelled(cx)?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check_cancelled(cx)?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The identification line among the first bytes (lines before it are allowed by RFC 4253).
fn banner_of(head: &[u8]) -> Option<String> {
    head.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .find(|l| l.starts_with(b"SSH-"))
        .map(|l| String::from_utf8_lossy(l).into_owned())
}

/// The first bytes received, escaped, for an error or a note.
fn head_text(head: &Mutex<Head>) -> (String, u64) {
    let h = head.lock().unwrap_or_else(|p| p.into_inner());
    let shown = &h.bytes[..h.bytes.len().min(160)];
    (escape(shown), h.total)
}

fn method_names(methods: &MethodSet) -> Vec<String> {
    methods
        .iter()
        .map(|m: &MethodKind| String::from(m))
        .collect()
}

/// One connection, one authentication attempt: connect to `addr` (host:port), handshake, record
/// the server info into `transcript` (never the password), try `method` for `user`. For
/// keyboard-interactive, every prompt is answered with the password, except prompts that echo
/// (echo=true), which get the user name. Everything bounded by `timeout` (connect, handshake,
/// auth each), so a silent, garbage-sending or closing server is a `LinkError`
/// (Open/Timeout/Protocol/Closed as fits) within the timeout.
#[allow(clippy::too_many_arguments)]
pub async fn ssh_login(
    name: &str,
    addr: &str,
    user: &str,
    password: &str,
    method: SshAuthMethod,
    opts: &SshOptions,
    timeout: Duration,
    transcript: &Transcript,
) -> Result<SshLogin, LinkError> {
    let open_err = |detail: String| LinkError::Open {
        endpoint: addr.to_string(),
        detail,
    };
    let tcp = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| open_err(format!("no connection within {timeout:?}")))?
        .map_err(|e| open_err(e.to_string()))?;
    let _ = tcp.set_nodelay(true);

    let token = CancellationToken::new();
    let head = Arc::new(Mutex::new(Head::default()));
    let tap = Tap {
        inner: tcp,
        head: Arc::clone(&head),
        cancelled: Box::pin(token.clone().cancelled_owned()),
    };
    // From here on, every way out without a session closes the socket.
    let guard = Arc::new(token.drop_guard());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let handler = Client {
        pin: opts.host_key.clone(),
        seen: Arc::clone(&seen),
    };
    let config = Arc::new(client::Config {
        inactivity_timeout: None,
        keepalive_interval: Some(KEEPALIVE),
        keepalive_max: KEEPALIVE_MAX,
        nodelay: true,
        ..Default::default()
    });

    let handshake =
        tokio::time::timeout(timeout, client::connect_stream(config, tap, handler)).await;
    let mut handle = match handshake {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            let (first, total) = head_text(&head);
            if let Some(m) = lock(&seen).mismatch.clone() {
                transcript.note(format!("{name}: SSH {addr}: {m}"));
                return Err(open_err(m));
            }
            let err = handshake_error(addr, e, &first, total);
            transcript.note(format!("{name}: SSH handshake with {addr} failed: {err}"));
            return Err(err);
        }
        Err(_) => {
            let (first, total) = head_text(&head);
            let what = if total == 0 {
                "nothing received".to_string()
            } else {
                format!("{total} bytes received")
            };
            transcript.note(format!(
                "{name}: SSH handshake with {addr}: no answer within {timeout:?} ({what})"
            ));
            return Err(LinkError::Timeout {
                pattern: format!("SSH handshake with {addr} ({what})"),
                waited: timeout,
                tail: first,
            });
        }
    };

    let server = {
        let s = lock(&seen);
        let h = head.lock().unwrap_or_else(|p| p.into_inner());
        SshServerInfo {
            banner: banner_of(&h.bytes).unwrap_or_default(),
            host_key: s.host_key.clone().unwrap_or_default(),
            kex: s.kex.clone(),
            cipher: s.cipher.clone(),
            mac: s.mac.clone(),
        }
    };
    transcript.note(format!(
        "{name}: SSH server {addr}: {}; host key {}; kex {}; cipher {}; mac {}",
        if server.banner.is_empty() {
            "(no identification line seen)".to_string()
        } else {
            escape(server.banner.as_bytes())
        },
        server.host_key,
        or_unknown(&server.kex),
        or_unknown(&server.cipher),
        or_unknown(&server.mac),
    ));

    let attempt = tokio::time::timeout(
        timeout,
        authenticate(name, &mut handle, user, password, method, transcript),
    )
    .await;
    let outcome = match attempt {
        Ok(r) => r.map_err(|e| auth_error(addr, method, e, handle.is_closed()))?,
        Err(_) => {
            transcript.note(format!(
                "{name}: SSH {} authentication as {user:?}: no answer within {timeout:?}",
                method.protocol_name()
            ));
            return Err(LinkError::Timeout {
                pattern: format!(
                    "SSH {} authentication answer from {addr}",
                    method.protocol_name()
                ),
                waited: timeout,
                tail: String::new(),
            });
        }
    };
    match outcome {
        Outcome::Accepted => {
            transcript.note(format!(
                "{name}: SSH {} authentication as {user:?}: accepted",
                method.protocol_name()
            ));
            Ok(SshLogin::Accepted(SshSession {
                inner: Box::new(Inner {
                    endpoint: addr.to_string(),
                    handle,
                    server,
                    opts: opts.clone(),
                    guard,
                }),
            }))
        }
        Outcome::Refused(methods) if methods.is_empty() && handle.is_closed() => {
            let err = LinkError::Closed(format!(
                "the SSH server {addr} closed the connection during {} authentication",
                method.protocol_name()
            ));
            transcript.note(format!("{name}: {err}"));
            Err(err)
        }
        Outcome::Refused(methods) => {
            transcript.note(format!(
                "{name}: SSH {} authentication as {user:?}: refused (the server offers: {})",
                method.protocol_name(),
                if methods.is_empty() {
                    "nothing".to_string()
                } else {
                    methods.join(", ")
                }
            ));
            Ok(SshLogin::Refused { methods })
        }
    }
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() {
        "(unknown)"
    } else {
        s
    }
}

enum Outcome {
    Accepted,
    Refused(Vec<String>),
}

async fn authenticate(
    name: &str,
    handle: &mut client::Handle<Client>,
    user: &str,
    password: &str,
    method: SshAuthMethod,
    transcript: &Transcript,
) -> Result<Outcome, russh::Error> {
    match method {
        SshAuthMethod::Password => match handle.authenticate_password(user, password).await? {
            AuthResult::Success => Ok(Outcome::Accepted),
            AuthResult::Failure {
                remaining_methods, ..
            } => Ok(Outcome::Refused(method_names(&remaining_methods))),
        },
        SshAuthMethod::KeyboardInteractive => {
            let mut reply = handle
                .authenticate_keyboard_interactive_start(user, None)
                .await?;
            for _ in 0..MAX_KBD_ROUNDS {
                match reply {
                    KeyboardInteractiveAuthResponse::Success => return Ok(Outcome::Accepted),
                    KeyboardInteractiveAuthResponse::Failure {
                        remaining_methods, ..
                    } => return Ok(Outcome::Refused(method_names(&remaining_methods))),
                    KeyboardInteractiveAuthResponse::InfoRequest {
                        name: title,
                        instructions,
                        prompts,
                    } => {
                        let shown: Vec<String> = prompts
                            .iter()
                            .map(|p| {
                                format!(
                                    "\"{}\" ({})",
                                    escape(p.prompt.as_bytes()),
                                    if p.echo {
                                        "echoed: answered with the user name"
                                    } else {
                                        "not echoed: answered with the password"
                                    }
                                )
                            })
                            .collect();
                        transcript.note(format!(
                            "{name}: SSH keyboard-interactive request (name \"{}\", instructions \"{}\"): prompts {}",
                            escape(title.as_bytes()),
                            escape(instructions.as_bytes()),
                            if shown.is_empty() {
                                "none".to_string()
                            } else {
                                shown.join("; ")
                            }
                        ));
                        let answers = prompts
                            .iter()
                            .map(|p| {
                                if p.echo {
                                    user.to_string()
                                } else {
                                    password.to_string()
                                }
                            })
                            .collect();
                        reply = handle
                            .authenticate_keyboard_interactive_respond(answers)
                            .await?;
                    }
                }
            }
            Err(russh::Error::Inconsistent)
        }
    }
}

fn handshake_error(addr: &str, e: russh::Error, first: &str, total: u64) -> LinkError {
    let got = if total == 0 {
        "nothing".to_string()
    } else {
        format!("{total} bytes, first: \"{first}\"")
    };
    match e {
        russh::Error::Version => LinkError::Protocol(format!(
            "{addr} is not an SSH server: no valid identification line (received {got})"
        )),
        russh::Error::Disconnect
        | russh::Error::IO(_)
        | russh::Error::RecvError
        | russh::Error::SendError => LinkError::Closed(format!(
            "the server {addr} closed the connection during the SSH handshake ({e}; received {got})"
        )),
        other => LinkError::Protocol(format!(
            "SSH handshake with {addr} failed: {other} (received {got})"
        )),
    }
}

fn auth_error(addr: &str, method: SshAuthMethod, e: russh::Error, closed: bool) -> LinkError {
    match e {
        russh::Error::Inconsistent => LinkError::Protocol(format!(
            "the SSH server {addr} asked more than {MAX_KBD_ROUNDS} keyboard-interactive rounds"
        )),
        _ if closed => LinkError::Closed(format!(
            "the SSH server {addr} closed the connection during {} authentication: {e}",
            method.protocol_name()
        )),
        other => LinkError::Protocol(format!(
            "SSH {} authentication with {addr} failed: {other}",
            method.protocol_name()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banner_after_other_lines() {
        assert_eq!(
            banner_of(b"hello\r\nSSH-2.0-x_1\r\nrest").as_deref(),
            Some("SSH-2.0-x_1")
        );
        assert_eq!(banner_of(b"garbage"), None);
    }

    #[test]
    fn pins_compare_fingerprints() {
        assert_eq!(pin_fingerprint("SHA256:abc="), "SHA256:abc");
        assert_eq!(pin_fingerprint("ssh-ed25519 SHA256:abc"), "SHA256:abc");
        assert_eq!(pin_fingerprint("  "), "");
    }
}
