//! Serial consoles: tty devices (UARTs, USB adapters, pseudo-terminals) and raw TCP (ser2net,
//! QEMU `-serial tcp:`, Renode), behind one send/expect interface.
//!
//! A reader (a thread for ttys, a task for TCP) forwards chunks over a bounded channel, so a
//! device that floods cannot grow memory: when the harness is not reading, the reader blocks and
//! the device's own output buffer fills. The match buffer is bounded too.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use regex::bytes::Regex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::transcript::{escape, Direction, Transcript};

/// Most bytes kept for matching; older bytes are discarded first.
pub const MATCH_BUFFER_CAP: usize = 64 * 1024;
const CHUNK: usize = 4096;

/// Why talking to a console failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot open {endpoint}: {detail}")]
    Open { endpoint: String, detail: String },
    #[error("the link closed: {0}")]
    Closed(String),
    #[error("no match for /{pattern}/ within {waited:?}; last bytes received: \"{tail}\"")]
    Timeout {
        pattern: String,
        waited: Duration,
        tail: String,
    },
    #[error("write failed: {0}")]
    Write(String),
    /// The device answered, but not in the protocol's terms (e.g. a Modbus exception).
    #[error("{0}")]
    Protocol(String),
}

/// Marks a descriptor close-on-exec.
pub(crate) fn set_cloexec(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl on a descriptor we own; no memory is passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

enum Chunk {
    Data(Vec<u8>),
    Closed(String),
}

enum Writer {
    Tty(Box<dyn serialport::SerialPort>),
    Tcp(tokio::net::tcp::OwnedWriteHalf),
}

/// The outcome of a successful `expect`.
#[derive(Debug, Clone, Default)]
pub struct Matched {
    /// True when the `reject` pattern matched instead of the expected one.
    pub rejected: bool,
    /// The whole matched text.
    pub text: String,
    pub captures: BTreeMap<String, String>,
}

/// An open console.
pub struct Console {
    name: String,
    rx: mpsc::Receiver<Chunk>,
    writer: Option<Writer>,
    buf: Vec<u8>,
    closed: Option<String>,
    transcript: Transcript,
    stop: Arc<AtomicBool>,
    /// The tty reader thread, joined on drop: it holds the port (and its exclusive lock) until
    /// it returns, and a console reopened after a broken link must find the port free.
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Console {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // A reader blocked on a full channel wakes up with an error once the channel is closed.
        self.rx.close();
        self.writer = None;
        if let Some(r) = self.reader.take() {
            // Returns within one read timeout (50 ms).
            let _ = r.join();
        }
    }
}

impl Console {
    /// Opens a tty. The reader thread polls with a short timeout so it notices when the console
    /// is dropped.
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
        let port = {
            // serialport opens without O_CLOEXEC: a device process spawned meanwhile would
            // inherit the tty and its lock. Opening and marking close-on-exec happen under the
            // same lock that spawning takes.
            let _guard = crate::emulator::SPAWN_LOCK
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let port = serialport::new(path, baud)
                .timeout(Duration::from_millis(50))
                .open_native()
                .map_err(|e| open_err(e.to_string()))?;
            set_cloexec(port.as_raw_fd()).map_err(|e| open_err(e.to_string()))?;
            Box::new(port) as Box<dyn serialport::SerialPort>
        };
        let mut reader = port.try_clone().map_err(|e| open_err(e.to_string()))?;
        let (tx, rx) = mpsc::channel(64);
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let reader = std::thread::Builder::new()
            .name(format!("serial-{name}"))
            .spawn(move || {
                let mut buf = vec![0u8; CHUNK];
                loop {
                    if stop2.load(Ordering::Relaxed) || tx.is_closed() {
                        return;
                    }
                    match reader.read(&mut buf) {
                        Ok(0) => {
                            let _ = tx.blocking_send(Chunk::Closed("end of file".into()));
                            return;
                        }
                        Ok(n) => {
                            if tx.blocking_send(Chunk::Data(buf[..n].to_vec())).is_err() {
                                return;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            let _ = tx.blocking_send(Chunk::Closed(format!("read error: {e}")));
                            return;
                        }
                    }
                }
            })
            .map_err(|e| open_err(format!("cannot start reader thread: {e}")))?;
        Ok(Console {
            name: name.to_string(),
            rx,
            writer: Some(Writer::Tty(port)),
            buf: Vec::new(),
            closed: None,
            transcript,
            stop,
            reader: Some(reader),
        })
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
        let (mut r, w) = stream.into_split();
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            let mut buf = vec![0u8; CHUNK];
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    res = r.read(&mut buf) => match res {
                        Ok(0) => { let _ = tx.send(Chunk::Closed("peer closed the connection".into())).await; return; }
                        Ok(n) => if tx.send(Chunk::Data(buf[..n].to_vec())).await.is_err() { return },
                        Err(e) => { let _ = tx.send(Chunk::Closed(format!("read error: {e}"))).await; return; }
                    }
                }
            }
        });
        Ok(Console {
            name: name.to_string(),
            rx,
            writer: Some(Writer::Tcp(w)),
            buf: Vec::new(),
            closed: None,
            transcript,
            stop: Arc::new(AtomicBool::new(false)),
            reader: None,
        })
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    /// Future traffic goes to this transcript (one per test).
    pub fn set_transcript(&mut self, t: Transcript) {
        self.transcript = t;
    }

    /// Drops everything received so far, reading what is already queued.
    pub fn flush(&mut self) {
        self.buf.clear();
        while let Ok(c) = self.rx.try_recv() {
            self.absorb(c);
        }
        self.buf.clear();
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
        match self.writer.take() {
            Some(Writer::Tcp(mut w)) => {
                let res = tokio::time::timeout(timeout, async {
                    w.write_all(bytes).await?;
                    w.flush().await
                })
                .await;
                self.writer = Some(Writer::Tcp(w));
                match res {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(LinkError::Write(e.to_string())),
                    Err(_) => Err(LinkError::Write(format!(
                        "device did not take the bytes within {timeout:?}"
                    ))),
                }
            }
            Some(Writer::Tty(mut port)) => {
                let data = bytes.to_vec();
                let res = tokio::time::timeout(
                    timeout,
                    tokio::task::spawn_blocking(move || {
                        let r = std::io::Write::write_all(&mut port, &data)
                            .and_then(|_| std::io::Write::flush(&mut port));
                        (port, r)
                    }),
                )
                .await;
                match res {
                    Ok(Ok((port, r))) => {
                        self.writer = Some(Writer::Tty(port));
                        r.map_err(|e| LinkError::Write(e.to_string()))
                    }
                    Ok(Err(e)) => Err(LinkError::Write(format!("writer task failed: {e}"))),
                    Err(_) => Err(LinkError::Write(format!(
                        "device did not take the bytes within {timeout:?}"
                    ))),
                }
            }
            None => Err(LinkError::Write(
                "a previous write did not finish; reopen the console".into(),
            )),
        }
    }

    fn absorb(&mut self, c: Chunk) {
        match c {
            Chunk::Data(d) => {
                self.transcript.record(Direction::Rx, &self.name, &d);
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
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self.try_match(pattern, reject) {
                return Ok(m);
            }
            if let Some(why) = &self.closed {
                return Err(LinkError::Closed(why.clone()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.timeout_error(pattern, timeout));
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
                Err(_) => return Err(self.timeout_error(pattern, timeout)),
            }
        }
    }

    fn timeout_error(&self, pattern: &Regex, waited: Duration) -> LinkError {
        let tail_start = self.buf.len().saturating_sub(80);
        LinkError::Timeout {
            pattern: pattern.as_str().to_string(),
            waited,
            tail: escape(&self.buf[tail_start..]),
        }
    }

    fn try_match(&mut self, pattern: &Regex, reject: Option<&Regex>) -> Option<Matched> {
        let good = pattern.captures(&self.buf);
        let bad = reject.and_then(|r| r.captures(&self.buf));
        let (caps, re, rejected) = match (good, bad) {
            (Some(g), Some(b)) => {
                let gs = g.get(0).map(|m| m.start()).unwrap_or(0);
                let bs = b.get(0).map(|m| m.start()).unwrap_or(0);
                if bs < gs {
                    (b, reject?, true)
                } else {
                    (g, pattern, false)
                }
            }
            (Some(g), None) => (g, pattern, false),
            (None, Some(b)) => (b, reject?, true),
            (None, None) => return None,
        };
        let whole = caps.get(0)?;
        let end = whole.end();
        let mut m = Matched {
            rejected,
            text: String::from_utf8_lossy(whole.as_bytes()).into_owned(),
            captures: BTreeMap::new(),
        };
        for name in re.capture_names().flatten() {
            if let Some(c) = caps.name(name) {
                m.captures.insert(
                    name.to_string(),
                    String::from_utf8_lossy(c.as_bytes()).trim().to_string(),
                );
            }
        }
        self.buf.drain(..end);
        Some(m)
    }
}
