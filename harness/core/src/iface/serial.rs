//! Serial consoles: tty devices (UARTs, USB adapters, pseudo-terminals) and raw TCP (ser2net,
//! QEMU `-serial tcp:`, Renode), behind one send/expect interface.
//!
//! A reader task per console (over the runtime's reactor for ttys, raw TCP and any other byte
//! stream, see [`Console::from_stream`]) forwards chunks over a bounded channel, so a device
//! that floods cannot grow memory: when the harness is not reading, the reader waits and the
//! device's own output buffer fills. The match buffer is bounded too.
//!
//! Each chunk carries the instant the reader got it, so the transcript shows when bytes
//! arrived, not when a step got round to reading them. Dropping a console ends its reader at
//! once (it waits on the channel closing as well as on the link) and releases a tty's
//! exclusive lock before `drop` returns, so closing many consoles costs no read timeouts and
//! a console reopened after a broken link finds the port free.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd as _;
use std::time::{Duration, Instant};

use regex::bytes::Regex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::transcript::{escape, Direction, Transcript};

/// Most bytes kept for matching; older bytes are discarded first.
pub const MATCH_BUFFER_CAP: usize = 64 * 1024;
/// Most bytes left over from before a test that are kept in the new test's evidence (the rest
/// are counted); see [`Console::drain_before_test`].
pub const BEFORE_TEST_CAP: usize = 64 * 1024;
/// Most bytes [`Console::drain_before_test`] reads off a flooding link before it stops.
const BEFORE_TEST_READ_MAX: usize = 1 << 20;
const CHUNK: usize = 4096;

/// What a terminal hang-up looks like to the harness: the other side of a pseudo-terminal
/// closed (the device process exited), or a USB adapter was unplugged.
fn hangup_message(errno: &str) -> String {
    format!("the device side of the terminal hung up ({errno})")
}

/// Maps an I/O error of a tty to a link error: a hang-up (EIO on read or write, EPIPE on
/// write) is [`LinkError::Closed`], anything else keeps its own text.
fn tty_error(e: &std::io::Error, writing: bool) -> LinkError {
    use rustix::io::Errno;
    match Errno::from_io_error(e) {
        Some(Errno::IO) => LinkError::Closed(hangup_message("EIO")),
        Some(Errno::PIPE) => LinkError::Closed(hangup_message("EPIPE")),
        Some(Errno::NXIO) => LinkError::Closed("the terminal is gone (ENXIO)".into()),
        Some(Errno::NODEV) => LinkError::Closed("the terminal is gone (ENODEV)".into()),
        // A hang-up seen before a write may come back as a BrokenPipe error of its own.
        _ if e.kind() == std::io::ErrorKind::BrokenPipe => {
            LinkError::Closed(hangup_message("EPIPE"))
        }
        _ if writing => LinkError::Write(e.to_string()),
        _ => LinkError::Closed(format!("read error: {e}")),
    }
}

pub use super::LinkError;

enum Chunk {
    /// Bytes and the instant the reader received them.
    Data(Instant, Vec<u8>),
    Closed(String),
}

/// The outcome of a successful `expect`.
#[derive(Debug, Clone, Default)]
pub struct Matched {
    /// True when the `reject` pattern matched instead of the expected one.
    pub rejected: bool,
    /// True when the `accept` pattern matched: the device is already where the rest of the
    /// action would have brought it (e.g. a shell right after the user name).
    pub accepted: bool,
    /// The whole matched text.
    pub text: String,
    pub captures: BTreeMap<String, String>,
}

/// The outcomes one `expect` waits for: `expect` (go on), and optionally `accept` (done
/// already) and `reject` (refused). The earliest match in the received bytes wins; on a tie,
/// `reject` before `accept` before `expect`.
#[derive(Debug, Clone, Copy)]
pub struct Outcomes<'a> {
    pub expect: &'a Regex,
    pub accept: Option<&'a Regex>,
    pub reject: Option<&'a Regex>,
}

impl<'a> Outcomes<'a> {
    pub fn new(expect: &'a Regex) -> Self {
        Outcomes {
            expect,
            accept: None,
            reject: None,
        }
    }

    /// The pattern(s) waited for, for timeout messages.
    pub fn describe(&self) -> String {
        let mut s = self.expect.as_str().to_string();
        if let Some(a) = self.accept {
            s.push_str(&format!("/ or accept /{}", a.as_str()));
        }
        if let Some(r) = self.reject {
            s.push_str(&format!("/ or reject /{}", r.as_str()));
        }
        s
    }

    /// Which outcome matches `buf` first (earliest start; ties: reject, accept, expect), and
    /// where its match ends.
    fn first_match<'b>(
        &self,
        buf: &'b [u8],
    ) -> Option<(Kind, &'a Regex, regex::bytes::Captures<'b>)> {
        let mut best: Option<(Kind, &'a Regex, regex::bytes::Captures<'b>)> = None;
        for (kind, re) in [
            (Kind::Reject, self.reject),
            (Kind::Accept, self.accept),
            (Kind::Expect, Some(self.expect)),
        ] {
            let Some(re) = re else { continue };
            let Some(c) = re.captures(buf) else { continue };
            let start = c.get(0).map(|m| m.start()).unwrap_or(0);
            let better = match &best {
                None => true,
                Some((_, _, b)) => start < b.get(0).map(|m| m.start()).unwrap_or(0),
            };
            if better {
                best = Some((kind, re, c));
            }
        }
        best
    }

    /// Judges one whole answer (an MQTT message, an HTTP response, a Modbus read): `reject`
    /// if it matches anywhere, else `accept`, else `expect`.
    pub fn judge(&self, answer: &[u8]) -> Option<Matched> {
        for (kind, re) in [
            (Kind::Reject, self.reject),
            (Kind::Accept, self.accept),
            (Kind::Expect, Some(self.expect)),
        ] {
            let Some(re) = re else { continue };
            if let Some(c) = re.captures(answer) {
                return Some(matched(kind, re, &c, false));
            }
        }
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Expect,
    Accept,
    Reject,
}

/// A [`Matched`] from the captures of `re`; `trim` trims captured values (console text).
fn matched(kind: Kind, re: &Regex, caps: &regex::bytes::Captures<'_>, trim: bool) -> Matched {
    let mut m = Matched {
        rejected: kind == Kind::Reject,
        accepted: kind == Kind::Accept,
        text: caps
            .get(0)
            .map(|w| String::from_utf8_lossy(w.as_bytes()).into_owned())
            .unwrap_or_default(),
        captures: BTreeMap::new(),
    };
    for name in re.capture_names().flatten() {
        if let Some(c) = caps.name(name) {
            let v = String::from_utf8_lossy(c.as_bytes());
            m.captures.insert(
                name.to_string(),
                if trim {
                    v.trim().to_string()
                } else {
                    v.into_owned()
                },
            );
        }
    }
    m
}

/// An open console.
pub struct Console {
    name: String,
    rx: mpsc::Receiver<Chunk>,
    writer: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    /// How this link's I/O errors read (a tty's hang-up is not a socket's reset).
    kind: LinkKind,
    buf: Vec<u8>,
    closed: Option<String>,
    /// Bytes received since the console was opened.
    received: u64,
    transcript: Transcript,
    /// A tty's own handle, kept to release its exclusive lock when the console is dropped:
    /// the reader task lets go of its handle only when it next runs, and a console reopened
    /// after a broken link must find the port free at once.
    tty_lock: Option<serialport::TTYPort>,
}

impl Drop for Console {
    fn drop(&mut self) {
        if let Some(port) = self.tty_lock.as_mut() {
            // Clear TIOCEXCL, then drop the advisory lock of the open file itself: the reader
            // task's duplicate of it closes only when the task next runs, and a console
            // reopened at once must be able to lock the port.
            let _ = port.set_exclusive(false);
            // SAFETY: the descriptor belongs to `port`, alive for this call.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(port.as_raw_fd()) };
            let _ = rustix::fs::flock(fd, rustix::fs::FlockOperation::Unlock);
        }
        // The reader task sees the channel closed and returns, dropping its half of the link.
        self.rx.close();
        self.writer = None;
    }
}

/// What kind of byte stream a console reads: decides how end-of-file and I/O errors are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinkKind {
    Tty,
    Stream,
}

impl LinkKind {
    fn eof(self) -> String {
        match self {
            // The slave side of a pseudo-terminal reads end-of-file once the device closed the
            // master: a hang-up like EIO.
            LinkKind::Tty => hangup_message("end of file"),
            LinkKind::Stream => "peer closed the connection".into(),
        }
    }

    fn read_error(self, e: &std::io::Error) -> String {
        match self {
            LinkKind::Tty => match tty_error(e, false) {
                LinkError::Closed(why) => why,
                other => other.to_string(),
            },
            LinkKind::Stream => format!("read error: {e}"),
        }
    }

    fn write_error(self, e: &std::io::Error) -> LinkError {
        match self {
            LinkKind::Tty => tty_error(e, true),
            LinkKind::Stream => LinkError::Write(e.to_string()),
        }
    }
}

impl Console {
    /// Opens a tty (UART, USB adapter, pseudo-terminal) in raw mode at `baud`, locked for
    /// exclusive use. Reading and writing go through the runtime's reactor like a socket: no
    /// thread per console. Must be called within a tokio runtime.
    pub fn open_tty(
        name: &str,
        path: &str,
        baud: u32,
        transcript: Transcript,
    ) -> Result<Console, LinkError> {
        let open_err = |detail: String| LinkError::Open {
            endpoint: path.to_string(),
            detail,
        };
        // serialport opens close-on-exec (and duplicates so): no device process spawned
        // meanwhile inherits the tty or its lock.
        let lock = serialport::new(path, baud)
            .open_native()
            .map_err(|e| open_err(e.to_string()))?;
        let io = lock
            .try_clone_native()
            .map_err(|e| open_err(e.to_string()))?;
        // Non-blocking, registered with the reactor.
        let stream =
            tokio_serial::SerialStream::try_from(io).map_err(|e| open_err(e.to_string()))?;
        let (r, w) = tokio::io::split(stream);
        let mut c = Console::from_halves(name, r, w, transcript, LinkKind::Tty);
        c.tty_lock = Some(lock);
        Ok(c)
    }

    /// Connects to a console exposed over raw TCP.
    pub async fn open_tcp(
        name: &str,
        addr: &str,
        timeout: Duration,
        transcript: Transcript,
    ) -> Result<Console, LinkError> {
        let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| LinkError::Open {
                endpoint: addr.to_string(),
                detail: format!("no connection within {timeout:?}"),
            })?
            .map_err(|e| LinkError::Open {
                endpoint: addr.to_string(),
                detail: e.to_string(),
            })?;
        let _ = stream.set_nodelay(true);
        let (r, w) = stream.into_split();
        Ok(Console::from_halves(
            name,
            r,
            w,
            transcript,
            LinkKind::Stream,
        ))
    }

    /// A console over any async byte stream (a socket, a pipe, one end of
    /// `tokio::io::duplex`): what a raw-TCP console is, without the connecting. Lets a test, or
    /// a program embedding the harness, drive actions against a scripted peer without processes
    /// or sockets. Must be called within a tokio runtime (the reader is a task).
    pub fn from_stream<S>(name: &str, stream: S, transcript: Transcript) -> Console
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (r, w) = tokio::io::split(stream);
        Console::from_halves(name, r, w, transcript, LinkKind::Stream)
    }

    /// A console reading `r` in a task that forwards chunks over the bounded channel (so a
    /// flood blocks the reader, not memory) and writing `w`.
    fn from_halves<R, W>(
        name: &str,
        mut r: R,
        w: W,
        transcript: Transcript,
        kind: LinkKind,
    ) -> Console
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let mut buf = vec![0u8; CHUNK];
            loop {
                tokio::select! {
                    // A console dropped while bytes arrive: stop rather than read them.
                    biased;
                    _ = tx.closed() => return,
                    res = r.read(&mut buf) => match res {
                        Ok(0) => { let _ = tx.send(Chunk::Closed(kind.eof())).await; return; }
                        Ok(n) => if tx.send(Chunk::Data(Instant::now(), buf[..n].to_vec())).await.is_err() { return },
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => { let _ = tx.send(Chunk::Closed(kind.read_error(&e))).await; return; }
                    }
                }
            }
        });
        Console {
            name: name.to_string(),
            rx,
            writer: Some(Box::new(w)),
            kind,
            buf: Vec::new(),
            closed: None,
            received: 0,
            transcript,
            tty_lock: None,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// Bytes received since the console was opened.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Future traffic goes to this transcript (one per test).
    pub fn set_transcript(&mut self, t: Transcript) {
        self.transcript = t;
    }

    /// Takes what the reader has already queued into the match buffer, without waiting, so
    /// that a link the device closed since the last exchange is known to be closed.
    pub fn poll_pending(&mut self) {
        while self.closed.is_none() {
            match self.rx.try_recv() {
                Ok(c) => self.absorb(c),
                Err(_) => break,
            }
        }
    }

    /// Drops everything received so far, reading what is already queued.
    pub fn flush(&mut self) {
        self.buf.clear();
        while let Ok(c) = self.rx.try_recv() {
            self.absorb(c);
        }
        self.buf.clear();
    }

    /// At the start of a test: moves what the device sent since the last read (a late prompt,
    /// the rest of a flood) into the current transcript marked *before test*, with its arrival
    /// times, and empties the match buffer, so the test's first `expect` only sees bytes that
    /// came after. Reads at most 1 MiB off a link that keeps flooding; keeps at most
    /// [`BEFORE_TEST_CAP`] bytes in the evidence and notes how many more there were. Does not
    /// wait: only what has already arrived is drained. Returns the bytes drained.
    pub fn drain_before_test(&mut self) -> usize {
        // Unmatched bytes of the previous test were already recorded in its own transcript.
        self.buf.clear();
        let mut total = 0usize;
        let mut kept = 0usize;
        while total < BEFORE_TEST_READ_MAX {
            let Ok(c) = self.rx.try_recv() else { break };
            match c {
                Chunk::Data(at, d) => {
                    total += d.len();
                    let keep = d.len().min(BEFORE_TEST_CAP - kept);
                    if keep > 0 {
                        self.transcript.record_before_test(
                            Direction::Rx,
                            &self.name,
                            &d[..keep],
                            at,
                        );
                        kept += keep;
                    }
                }
                Chunk::Closed(why) => {
                    self.transcript.note(format!(
                        "{}: link closed before the test ({why})",
                        self.name
                    ));
                    self.closed = Some(why);
                    break;
                }
            }
        }
        if total > kept {
            self.transcript.note(format!(
                "{}: {} further bytes received before the test were not kept",
                self.name,
                total - kept
            ));
        }
        self.buf.clear();
        total
    }

    /// Sends bytes; `shown` is what the transcript records (secrets already redacted).
    pub async fn send(
        &mut self,
        bytes: &[u8],
        shown: &str,
        timeout: Duration,
    ) -> Result<(), LinkError> {
        if let Some(why) = &self.closed {
            return Err(LinkError::Closed(why.clone()));
        }
        self.transcript
            .record(Direction::Tx, &self.name, shown.as_bytes());
        let Some(mut w) = self.writer.take() else {
            return Err(LinkError::Write(
                "a previous write did not finish; reopen the console".into(),
            ));
        };
        let kind = self.kind;
        let res = tokio::time::timeout(timeout, async {
            w.write_all(bytes).await?;
            // A tty's flush is tcdrain, which blocks the runtime thread until the UART has
            // sent everything (for ever under stalled flow control) and cannot be timed out;
            // the bytes are the kernel's once written.
            if kind == LinkKind::Stream {
                w.flush().await?;
            }
            Ok::<(), std::io::Error>(())
        })
        .await;
        self.writer = Some(w);
        match res {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                let err = self.kind.write_error(&e);
                if let LinkError::Closed(why) = &err {
                    self.transcript
                        .note(format!("{}: link closed ({why})", self.name));
                    self.closed = Some(why.clone());
                }
                Err(err)
            }
            Err(_) => Err(LinkError::Write(format!(
                "device did not take the bytes within {timeout:?}"
            ))),
        }
    }

    fn absorb(&mut self, c: Chunk) {
        match c {
            Chunk::Data(at, d) => {
                self.received += d.len() as u64;
                self.transcript.record_at(Direction::Rx, &self.name, &d, at);
                self.buf.extend_from_slice(&d);
                if self.buf.len() > MATCH_BUFFER_CAP {
                    let cut = self.buf.len() - MATCH_BUFFER_CAP / 2;
                    self.buf.drain(..cut);
                }
            }
            Chunk::Closed(why) => {
                self.transcript
                    .note(format!("{}: link closed ({why})", self.name));
                self.closed = Some(why);
            }
        }
    }

    /// Waits until `pattern` (or `reject`) matches what the device sent since the last match.
    pub async fn expect(
        &mut self,
        pattern: &Regex,
        reject: Option<&Regex>,
        timeout: Duration,
    ) -> Result<Matched, LinkError> {
        let mut o = Outcomes::new(pattern);
        o.reject = reject;
        self.expect_outcomes(o, timeout).await
    }

    /// Waits until one of the outcomes matches what the device sent since the last match; the
    /// earliest match in the received bytes wins (see [`Outcomes`]).
    pub async fn expect_outcomes(
        &mut self,
        outcomes: Outcomes<'_>,
        timeout: Duration,
    ) -> Result<Matched, LinkError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.try_match(&outcomes) {
                return Ok(m);
            }
            if let Some(why) = &self.closed {
                return Err(LinkError::Closed(why.clone()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.timeout_error(&outcomes, timeout));
            }
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(c)) => {
                    self.absorb(c);
                    // Take whatever else is queued before matching again (cheaper under floods).
                    while let Ok(c) = self.rx.try_recv() {
                        self.absorb(c);
                        if self.closed.is_some() {
                            break;
                        }
                    }
                }
                Ok(None) => self.closed = Some("reader stopped".into()),
                Err(_) => return Err(self.timeout_error(&outcomes, timeout)),
            }
        }
    }

    fn timeout_error(&self, outcomes: &Outcomes<'_>, waited: Duration) -> LinkError {
        let tail_start = self.buf.len().saturating_sub(80);
        LinkError::Timeout {
            pattern: outcomes.describe(),
            waited,
            tail: escape(&self.buf[tail_start..]),
        }
    }

    fn try_match(&mut self, outcomes: &Outcomes<'_>) -> Option<Matched> {
        let (m, end) = {
            let (kind, re, caps) = outcomes.first_match(&self.buf)?;
            let end = caps.get(0)?.end();
            (matched(kind, re, &caps, true), end)
        };
        self.buf.drain(..end);
        Some(m)
    }
}
