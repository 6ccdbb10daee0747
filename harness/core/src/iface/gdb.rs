//! A debug port over the GDB remote serial protocol (RSP) on TCP: QEMU's and Renode's gdbstub,
//! OpenOCD, any `gdbserver`.
//!
//! This module exists because an emulator or a lab's debug probe offers its debug port as a
//! GDB server, and the harness needs that port without a `gdb` binary: to read a firmware's
//! memory (keys left in RAM, configuration in flash), write test patterns, look at registers and
//! reset the target. [`GdbLink`] implements [`DebugAccess`] so suites never know whether a GDB
//! stub or a probe sits behind the port.
//!
//! Protocol, client side and all-stop only:
//! - packets `$body#xx` (checksum: sum of the body's bytes mod 256), `+`/`-` acknowledgements
//!   (a packet answered `-` is sent again, at most [`RETRANSMITS`] times; a corrupt reply is
//!   answered `-`, as bounded), `QStartNoAckMode` when the stub offers it, `qSupported` for
//!   `PacketSize`;
//! - replies decoded from run-length encoding (`X*n`) and binary escapes (`}` then the byte
//!   xor 0x20); at most [`MAX_PACKET`] bytes of packet and of decoded reply, so a stub cannot
//!   fill an unbounded buffer;
//! - `O` (console output) packets are noted and skipped; a stop reply that arrives when none
//!   was asked for (the target stopped by itself, or stubs that announce the halt they make on
//!   attach, as QEMU does) is noted and skipped too;
//! - every exchange has the link's timeout ([`LinkError::Timeout`]); a stub that closes the
//!   connection gives [`LinkError::Closed`]. After a timeout, a framing error or an exchange
//!   whose future was dropped, the link is out of step and reports itself closed.
//!
//! Stubs halt the target when a debugger attaches (QEMU, OpenOCD, Renode). After attaching,
//! [`GdbLink::connect`] asks `?` and resumes the target when [`GdbOptions::running`] says it was
//! running, so attaching does not freeze the firmware. In all-stop mode a stub takes no command
//! while the target runs (QEMU even treats any byte as a break), so memory and register accesses
//! on a running target halt it (`0x03`), access, and resume (`c`). Dropping the link detaches
//! (`D`), best effort, so the target keeps running; [`DebugAccess::close`] does the same and
//! waits for the answer.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::debug::{check_access, halted_for, hex_preview, DebugAccess, Register};
use super::LinkError;
use crate::transcript::{escape, Direction, Transcript};

/// Largest packet (framing included) the client accepts, and largest decoded reply.
pub const MAX_PACKET: usize = 256 * 1024;
/// Packet size assumed when the stub does not say (GDB's own default).
pub const DEFAULT_PACKET_SIZE: usize = 400;
/// Largest packet size used even if the stub offers more.
const MAX_PACKET_SIZE: usize = 64 * 1024;
/// How often a packet is sent again after a `-`, and how many corrupt replies are answered
/// with `-`, before the exchange fails.
pub const RETRANSMITS: u32 = 3;
/// Bytes of each packet kept in the transcript's raw record.
pub const PACKET_SHOWN: usize = 256;
/// How long [`DebugAccess::close`] waits for the stub to confirm the detach, at most.
const DETACH_WAIT: Duration = Duration::from_secs(2);

/// How to treat the target behind a GDB server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GdbOptions {
    /// Monitor command (sent with `qRcmd`) that resets the target: `system_reset` for QEMU,
    /// `reset halt` for OpenOCD. `None`: [`DebugAccess::reset`] is not supported.
    pub reset_command: Option<String>,
    /// Whether the target was running before the debugger attached (default true): the stub
    /// halts it on attach, and the link then resumes it.
    pub running: bool,
}

impl Default for GdbOptions {
    fn default() -> Self {
        GdbOptions {
            reset_command: None,
            running: true,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Codec: pure functions, tested below.

/// Why bytes from the stub are not a well-formed packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("packet longer than {0} bytes")]
    TooLong(usize),
    #[error("run-length marker `*` with nothing to repeat")]
    RepeatWithoutChar,
    #[error("invalid run-length count byte 0x{0:02x}")]
    BadRepeatCount(u8),
    #[error("escape `}}` at the end of the packet")]
    DanglingEscape,
    #[error("not hex: {0:?}")]
    NotHex(String),
}

/// The RSP checksum of a packet body as sent (after escaping): the sum of its bytes mod 256.
pub fn checksum(body: &[u8]) -> u8 {
    body.iter().fold(0u8, |a, b| a.wrapping_add(*b))
}

/// Frames `body` as `$body#xx`, escaping `$`, `#`, `}` and `*` (as `}` and the byte xor 0x20).
pub fn encode_packet(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.push(b'$');
    for &b in body {
        if matches!(b, b'$' | b'#' | b'}' | b'*') {
            out.push(b'}');
            out.push(b ^ 0x20);
        } else {
            out.push(b);
        }
    }
    let sum = checksum(&out[1..]);
    out.push(b'#');
    out.extend_from_slice(format!("{sum:02x}").as_bytes());
    out
}

/// Decodes a packet body as received: first run-length encoding (`c*n`: `n - 29` more copies
/// of the byte before `*`), then binary escapes. Errors past `limit` decoded bytes.
pub fn decode_body(raw: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    let mut expanded: Vec<u8> = Vec::with_capacity(raw.len().min(limit));
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'*' {
            let &prev = expanded.last().ok_or(CodecError::RepeatWithoutChar)?;
            let &count = raw.get(i + 1).ok_or(CodecError::BadRepeatCount(0))?;
            if !(32..=126).contains(&count) {
                return Err(CodecError::BadRepeatCount(count));
            }
            let n = usize::from(count - 29);
            if expanded.len() + n > limit {
                return Err(CodecError::TooLong(limit));
            }
            expanded.extend(std::iter::repeat_n(prev, n));
            i += 2;
        } else {
            if expanded.len() >= limit {
                return Err(CodecError::TooLong(limit));
            }
            expanded.push(b);
            i += 1;
        }
    }
    let mut out = Vec::with_capacity(expanded.len());
    let mut it = expanded.into_iter();
    while let Some(b) = it.next() {
        if b == b'}' {
            out.push(it.next().ok_or(CodecError::DanglingEscape)? ^ 0x20);
        } else {
            out.push(b);
        }
    }
    Ok(out)
}

/// One unit of what a stub sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// `+`
    Ack,
    /// `-`: the stub wants the last packet again.
    Nak,
    /// `$raw#xx`: `raw` as received (still encoded); whether the checksum matched.
    Packet { raw: Vec<u8>, checksum_ok: bool },
}

/// Splits the byte stream from a stub into [`Frame`]s. Holds at most one incomplete packet
/// (bounded by its limit); bytes outside packets other than `+`/`-` are discarded and counted.
#[derive(Debug)]
pub struct Decoder {
    buf: Vec<u8>,
    limit: usize,
    /// Bytes discarded outside packets so far.
    pub junk: usize,
}

impl Decoder {
    /// A decoder accepting packets of at most `limit` bytes, framing included.
    pub fn new(limit: usize) -> Self {
        Decoder {
            buf: Vec::new(),
            limit,
            junk: 0,
        }
    }

    /// Adds received bytes. Call [`Decoder::next_frame`] until it returns `None` before
    /// pushing more, so the buffer stays bounded.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The last bytes held (for error messages).
    pub fn tail(&self) -> &[u8] {
        &self.buf[self.buf.len().saturating_sub(64)..]
    }

    /// The next complete frame, `None` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, CodecError> {
        // Skip to the first meaningful byte.
        let mut skip = 0;
        while skip < self.buf.len() {
            match self.buf[skip] {
                b'+' | b'-' | b'$' => break,
                _ => skip += 1,
            }
        }
        if skip > 0 {
            self.junk += skip;
            self.buf.drain(..skip);
        }
        let Some(&first) = self.buf.first() else {
            return Ok(None);
        };
        match first {
            b'+' => {
                self.buf.drain(..1);
                Ok(Some(Frame::Ack))
            }
            b'-' => {
                self.buf.drain(..1);
                Ok(Some(Frame::Nak))
            }
            _ => {
                let Some(hash) = self.buf.iter().position(|&b| b == b'#') else {
                    if self.buf.len() > self.limit.saturating_sub(3) {
                        self.buf.clear();
                        return Err(CodecError::TooLong(self.limit));
                    }
                    return Ok(None);
                };
                if hash + 3 > self.limit {
                    self.buf.clear();
                    return Err(CodecError::TooLong(self.limit));
                }
                if self.buf.len() < hash + 3 {
                    return Ok(None);
                }
                let raw = self.buf[1..hash].to_vec();
                let sent = std::str::from_utf8(&self.buf[hash + 1..hash + 3])
                    .ok()
                    .and_then(|s| u8::from_str_radix(s, 16).ok());
                let checksum_ok = sent == Some(checksum(&raw));
                self.buf.drain(..hash + 3);
                Ok(Some(Frame::Packet { raw, checksum_ok }))
            }
        }
    }
}

/// Lower-case hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn hex_digit(c: u8) -> Option<u8> {
    (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// Bytes from hex (either case); an odd length or a non-hex character is an error.
pub fn from_hex(text: &[u8]) -> Result<Vec<u8>, CodecError> {
    let bad = || CodecError::NotHex(String::from_utf8_lossy(&text[..text.len().min(40)]).into());
    if !text.len().is_multiple_of(2) {
        return Err(bad());
    }
    text.chunks(2)
        .map(|p| Some(hex_digit(p[0])? << 4 | hex_digit(p[1])?))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)
}

/// Bytes of a `g` reply: `None` for a byte the stub marks unavailable (`xx`).
fn register_bytes(text: &[u8]) -> Result<Vec<Option<u8>>, CodecError> {
    let bad = || CodecError::NotHex(String::from_utf8_lossy(&text[..text.len().min(40)]).into());
    if !text.len().is_multiple_of(2) {
        return Err(bad());
    }
    text.chunks(2)
        .map(|p| match p {
            [b'x', b'x'] => Ok(None),
            _ => Ok(Some(
                hex_digit(p[0]).ok_or_else(bad)? << 4 | hex_digit(p[1]).ok_or_else(bad)?,
            )),
        })
        .collect()
}

/// A little-endian value from up to 8 bytes; `None` if any byte is unavailable.
fn le_value(bytes: &[Option<u8>]) -> Option<u64> {
    bytes
        .iter()
        .take(8)
        .enumerate()
        .try_fold(0u64, |v, (i, b)| Some(v | u64::from((*b)?) << (8 * i)))
}

const CORTEX_M_CORE: [&str; 16] = [
    "r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "r11", "r12", "sp", "lr",
    "pc",
];

/// Registers from the bytes of a `g` reply.
///
/// ARM Cortex-M layouts are recognised by size: 168 bytes is the legacy 26-register ARM layout
/// (r0–r15, eight 12-byte FPA registers, fps, cpsr/xpsr; QEMU without a target description),
/// 68 bytes or more is r0–r15 and xpsr (OpenOCD), whatever follows numbered `reg17`, … as
/// 32-bit words. Anything shorter is returned as numbered 32-bit little-endian words `reg0`,
/// `reg1`, …. Registers the stub reports unavailable (`xx`) are left out.
pub fn decode_registers(bytes: &[Option<u8>]) -> Vec<Register> {
    let word = |i: usize| {
        bytes
            .get(i * 4..(i * 4 + 4).min(bytes.len()))
            .and_then(le_value)
    };
    let mut out = Vec::new();
    let mut push = |name: String, v: Option<u64>| {
        if let Some(value) = v {
            out.push(Register { name, value });
        }
    };
    let raw_from = if bytes.len() == 168 {
        for (i, n) in CORTEX_M_CORE.iter().enumerate() {
            push((*n).to_string(), word(i));
        }
        push("xpsr".into(), bytes.get(164..168).and_then(le_value));
        None
    } else if bytes.len() >= 68 {
        for (i, n) in CORTEX_M_CORE.iter().enumerate() {
            push((*n).to_string(), word(i));
        }
        push("xpsr".into(), word(16));
        Some(17)
    } else {
        Some(0)
    };
    if let Some(from) = raw_from {
        for i in from..bytes.len().div_ceil(4) {
            push(format!("reg{i}"), word(i));
        }
    }
    out
}

/// Whether a decoded reply is a stop reply (`Sxx`, `Txx…`) or an exit (`Wxx`, `Xxx`).
fn stop_kind(reply: &[u8]) -> Option<u8> {
    match reply {
        [k @ (b'S' | b'T' | b'W' | b'X'), a, b, ..]
            if hex_digit(*a).is_some() && hex_digit(*b).is_some() =>
        {
            Some(*k)
        }
        _ => None,
    }
}

/// Whether a reply is an error: `Exx` or `E.text`.
fn is_error_reply(reply: &[u8]) -> bool {
    match reply {
        [b'E', a, b] => hex_digit(*a).is_some() && hex_digit(*b).is_some(),
        [b'E', b'.', ..] => true,
        _ => false,
    }
}

/// Console output: `O` and hex (not `OK`).
fn console_output(reply: &[u8]) -> Option<Vec<u8>> {
    match reply {
        [b'O', rest @ ..] if !rest.is_empty() => from_hex(rest).ok(),
        _ => None,
    }
}

/// A stop reply shortened for a note: the kind and signal (`T05`).
fn stop_summary(reply: &[u8]) -> String {
    String::from_utf8_lossy(&reply[..reply.len().min(3)]).into_owned()
}

/// A packet for the raw record: at most [`PACKET_SHOWN`] bytes, then how many were left out.
fn shown(bytes: &[u8]) -> Vec<u8> {
    if bytes.len() <= PACKET_SHOWN {
        return bytes.to_vec();
    }
    let mut v = bytes[..PACKET_SHOWN].to_vec();
    v.extend_from_slice(format!("… ({} more bytes)", bytes.len() - PACKET_SHOWN).as_bytes());
    v
}

// ---------------------------------------------------------------------------------------------
// The link.

/// A debug port reached through a GDB server over TCP. See the module documentation.
pub struct GdbLink {
    name: String,
    address: String,
    stream: Option<TcpStream>,
    decoder: Decoder,
    /// Packets (raw) that arrived while an acknowledgement was awaited.
    pending: VecDeque<Frame>,
    /// The last packet sent, for a retransmission on `-`.
    last_sent: Vec<u8>,
    timeout: Duration,
    transcript: Transcript,
    options: GdbOptions,
    /// `+`/`-` acknowledgements in use (until `QStartNoAckMode` is accepted).
    acks: bool,
    /// Largest packet the stub accepts.
    packet_size: usize,
    /// The target's run state as the link knows it.
    halted: bool,
    /// Why the link is unusable, once it is.
    closed: Option<String>,
    /// An exchange is under way; still set at the next call if its future was dropped.
    in_flight: bool,
    /// Successful accesses are not noted nor their packets recorded (see
    /// [`DebugAccess::set_quiet`]).
    quiet: bool,
}

impl std::fmt::Debug for GdbLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GdbLink")
            .field("name", &self.name)
            .field("address", &self.address)
            .field("halted", &self.halted)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

/// What an exchange is, for errors and notes.
type What<'a> = &'a str;

impl GdbLink {
    /// Connects to the GDB server at `address` (`host:port`), negotiates (`qSupported`,
    /// `QStartNoAckMode` when offered), asks for the stop state (`?`) and, when
    /// `options.running`, resumes the target the stub halted on attach. `timeout` bounds the
    /// connection and every later exchange. Any failure here is [`LinkError::Open`].
    pub async fn connect(
        name: &str,
        address: &str,
        timeout: Duration,
        transcript: Transcript,
        options: GdbOptions,
    ) -> Result<GdbLink, LinkError> {
        let open = |detail: String| LinkError::Open {
            endpoint: address.to_string(),
            detail,
        };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
            .await
            .map_err(|_| open(format!("no connection within {timeout:?}")))?
            .map_err(|e| open(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let mut link = GdbLink {
            name: name.to_string(),
            address: address.to_string(),
            stream: Some(stream),
            decoder: Decoder::new(MAX_PACKET),
            pending: VecDeque::new(),
            last_sent: Vec::new(),
            timeout,
            transcript,
            options,
            acks: true,
            packet_size: DEFAULT_PACKET_SIZE,
            halted: false,
            closed: None,
            in_flight: false,
            quiet: false,
        };
        match link.attach().await {
            Ok(()) => Ok(link),
            Err(e) => {
                link.note(format!("attaching to {address} failed: {e}"));
                // Dropping the link detaches, best effort, if the connection still works.
                link.closed = Some(e.to_string());
                Err(open(format!("GDB handshake failed: {e}")))
            }
        }
    }

    async fn attach(&mut self) -> Result<(), LinkError> {
        let (features, _) = self
            .exchange(b"qSupported:swbreak+;hwbreak+", "qSupported", true)
            .await?;
        let mut offers_no_ack = false;
        for f in features.split(|&b| b == b';') {
            if let Some(v) = f.strip_prefix(b"PacketSize=") {
                let size = std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| usize::from_str_radix(s, 16).ok())
                    .ok_or_else(|| {
                        self.protocol(format!("bad PacketSize in qSupported reply: {}", escape(v)))
                    })?;
                self.packet_size = size.clamp(64, MAX_PACKET_SIZE);
            } else if f == b"QStartNoAckMode+" {
                offers_no_ack = true;
            }
        }
        if offers_no_ack {
            let (r, _) = self
                .exchange(b"QStartNoAckMode", "QStartNoAckMode", true)
                .await?;
            if r == b"OK" {
                self.acks = false;
            }
        }
        let stop = self.stop_state().await?;
        let mut text = format!(
            "attached to {} (packet size {}, acknowledgements {})",
            self.address,
            self.packet_size,
            if self.acks { "on" } else { "off" }
        );
        match stop {
            Some(s) if self.options.running => {
                self.resume_inner().await?;
                let _ = write!(
                    text,
                    "; the stub halted the target on attach ({s}), resumed"
                );
            }
            Some(s) => {
                let _ = write!(
                    text,
                    "; target halted ({s}), left halted (not running before attach)"
                );
            }
            None => text.push_str("; target running"),
        }
        self.note(text);
        Ok(())
    }

    /// Asks `?`: `Some(summary)` when the target is halted, `None` when it runs.
    async fn stop_state(&mut self) -> Result<Option<String>, LinkError> {
        let deadline = Instant::now() + self.timeout;
        self.send_packet(b"?", deadline, "?").await?;
        let reply = self.reply(deadline, "?", true, &mut Vec::new()).await?;
        match stop_kind(&reply) {
            Some(b'S' | b'T') => {
                self.halted = true;
                Ok(Some(stop_summary(&reply)))
            }
            Some(_) => Err(LinkError::Closed(format!(
                "the GDB server at {} reports the target exited ({})",
                self.address,
                escape(&reply)
            ))),
            None if reply == b"OK" => {
                self.halted = false;
                Ok(None)
            }
            None => Err(self.protocol(format!(
                "unexpected answer to `?`: {}",
                escape(&reply[..reply.len().min(64)])
            ))),
        }
    }

    /// Whether the target is halted, as far as the link knows.
    pub fn is_halted(&self) -> bool {
        self.halted
    }

    /// The packet size in use (from the stub's `qSupported` reply).
    pub fn packet_size(&self) -> usize {
        self.packet_size
    }

    /// Whether `+`/`-` acknowledgements are in use (the stub did not offer no-ack mode).
    pub fn acks(&self) -> bool {
        self.acks
    }

    fn note(&self, text: impl AsRef<str>) {
        if !self.quiet {
            self.note_always(text);
        }
    }

    /// A note made even while quiet: failures.
    fn note_always(&self, text: impl AsRef<str>) {
        self.transcript
            .note(format!("debug {}: {}", self.name, text.as_ref()));
    }

    /// Records raw bytes of the exchange, unless quiet.
    fn record(&self, dir: Direction, bytes: &[u8]) {
        if !self.quiet {
            self.transcript.record(dir, &self.name, bytes);
        }
    }

    fn protocol(&self, detail: String) -> LinkError {
        LinkError::Protocol(format!("GDB server at {}: {detail}", self.address))
    }

    /// Marks the link unusable (out of step or gone) and passes the error on. The connection
    /// is dropped after a best-effort detach, so a target halted for an access is not left
    /// halted.
    fn broken(&mut self, e: LinkError) -> LinkError {
        if self.closed.is_none() {
            self.closed = Some(e.to_string());
            self.note_always(format!("link unusable: {e}"));
            self.detach_best_effort();
        }
        e
    }

    /// Sends `D` without waiting and drops the connection: `0x03` first when the target may
    /// be running (a stub takes no packet while it runs; QEMU would take the `$` as a break
    /// and stay halted). Stubs resume the target on `D`.
    fn detach_best_effort(&mut self) {
        let Some(stream) = self.stream.take() else {
            return;
        };
        let mut bytes = Vec::new();
        if !self.halted || self.in_flight {
            bytes.push(0x03);
        }
        bytes.extend_from_slice(&encode_packet(b"D"));
        if stream.try_write(&bytes).is_ok() {
            self.record(Direction::Tx, &bytes);
            self.note(format!(
                "detached from {} on close (best effort)",
                self.address
            ));
        }
    }

    /// Starts a public operation: refuses on a closed link, and closes one whose previous
    /// exchange was interrupted (its reply may still come and would answer the wrong request).
    fn enter(&mut self) -> Result<(), LinkError> {
        if let Some(why) = &self.closed {
            return Err(LinkError::Closed(format!(
                "the GDB link to {} is closed ({why})",
                self.address
            )));
        }
        if self.in_flight {
            // Still set while detaching: the run state is unknown, so `0x03` goes first.
            let e = self.broken(LinkError::Closed(format!(
                "an earlier exchange with the GDB server at {} was interrupted before its answer; \
                 the link is out of step",
                self.address
            )));
            self.in_flight = false;
            return Err(e);
        }
        self.in_flight = true;
        Ok(())
    }

    /// Ends a public operation; notes a failure.
    fn leave<T>(&mut self, what: &str, r: Result<T, LinkError>) -> Result<T, LinkError> {
        self.in_flight = false;
        if let Err(e) = &r {
            self.note_always(format!("{what}: failed: {e}"));
        }
        r
    }

    fn timeout_error(&self, what: What<'_>) -> LinkError {
        LinkError::Timeout {
            pattern: format!("GDB reply to {what}"),
            waited: self.timeout,
            tail: escape(self.decoder.tail()),
        }
    }

    async fn write_raw(
        &mut self,
        bytes: &[u8],
        deadline: Instant,
        what: What<'_>,
    ) -> Result<(), LinkError> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(LinkError::Closed(format!(
                "the GDB link to {} is closed",
                self.address
            )));
        };
        let r = tokio::time::timeout_at(deadline.into(), stream.write_all(bytes)).await;
        match r {
            Ok(Ok(())) => Ok(()),
            Err(_) => Err(self.broken_timeout(what)),
            Ok(Err(e)) => {
                use std::io::ErrorKind::*;
                let err = match e.kind() {
                    BrokenPipe | ConnectionReset | ConnectionAborted | NotConnected => {
                        LinkError::Closed(format!(
                            "the GDB server at {} closed the connection ({e}) during {what}",
                            self.address
                        ))
                    }
                    _ => LinkError::Write(format!("to the GDB server at {}: {e}", self.address)),
                };
                Err(self.broken(err))
            }
        }
    }

    fn broken_timeout(&mut self, what: What<'_>) -> LinkError {
        let e = self.timeout_error(what);
        self.broken(e)
    }

    /// The next frame from the stub (a pending one first), reading as needed until `deadline`.
    async fn read_frame(&mut self, deadline: Instant, what: What<'_>) -> Result<Frame, LinkError> {
        if let Some(f) = self.pending.pop_front() {
            return Ok(f);
        }
        let mut chunk = [0u8; 4096];
        loop {
            match self.decoder.next_frame() {
                Ok(Some(f)) => return Ok(f),
                Ok(None) => {}
                Err(e) => {
                    let e = self.protocol(format!("unusable reply to {what}: {e}"));
                    return Err(self.broken(e));
                }
            }
            let Some(stream) = self.stream.as_mut() else {
                return Err(LinkError::Closed(format!(
                    "the GDB link to {} is closed",
                    self.address
                )));
            };
            match tokio::time::timeout_at(deadline.into(), stream.read(&mut chunk)).await {
                Err(_) => return Err(self.broken_timeout(what)),
                Ok(Ok(0)) => {
                    let e = LinkError::Closed(format!(
                        "the GDB server at {} closed the connection during {what}",
                        self.address
                    ));
                    return Err(self.broken(e));
                }
                Ok(Ok(n)) => self.decoder.push(&chunk[..n]),
                Ok(Err(e)) => {
                    let e = LinkError::Closed(format!(
                        "reading from the GDB server at {} during {what}: {e}",
                        self.address
                    ));
                    return Err(self.broken(e));
                }
            }
        }
    }

    /// Sends one packet; with acknowledgements on, waits for `+` and sends again on `-`.
    async fn send_packet(
        &mut self,
        body: &[u8],
        deadline: Instant,
        what: What<'_>,
    ) -> Result<(), LinkError> {
        let frame = encode_packet(body);
        self.record(Direction::Tx, &shown(&frame));
        self.write_raw(&frame, deadline, what).await?;
        self.last_sent = frame;
        if !self.acks {
            return Ok(());
        }
        let mut naks = 0;
        loop {
            match self.read_frame(deadline, what).await? {
                Frame::Ack => return Ok(()),
                Frame::Nak => {
                    naks += 1;
                    self.retransmit(naks, deadline, what).await?;
                }
                p @ Frame::Packet { .. } => {
                    // A reply without `+`: take it as acknowledged.
                    self.pending.push_back(p);
                    return Ok(());
                }
            }
        }
    }

    async fn retransmit(
        &mut self,
        naks: u32,
        deadline: Instant,
        what: What<'_>,
    ) -> Result<(), LinkError> {
        if naks > RETRANSMITS || self.last_sent.is_empty() {
            let e = self.protocol(format!("{what} refused as corrupt (`-`) {naks} times"));
            return Err(self.broken(e));
        }
        let frame = std::mem::take(&mut self.last_sent);
        self.record(Direction::Tx, &shown(&frame));
        let r = self.write_raw(&frame, deadline, what).await;
        self.last_sent = frame;
        r
    }

    /// The next packet, decoded; acknowledges it (acks on) or asks again for a corrupt one.
    async fn read_packet(
        &mut self,
        deadline: Instant,
        what: What<'_>,
    ) -> Result<Vec<u8>, LinkError> {
        let mut corrupt = 0;
        let mut naks = 0;
        loop {
            match self.read_frame(deadline, what).await? {
                Frame::Ack => {}
                Frame::Nak => {
                    if self.acks {
                        naks += 1;
                        self.retransmit(naks, deadline, what).await?;
                    }
                }
                Frame::Packet { raw, checksum_ok } => {
                    let mut rec = Vec::with_capacity(raw.len().min(PACKET_SHOWN) + 2);
                    rec.push(b'$');
                    rec.extend_from_slice(&raw);
                    self.record(Direction::Rx, &shown(&rec));
                    if !checksum_ok {
                        corrupt += 1;
                        if !self.acks || corrupt > RETRANSMITS {
                            let e = self.protocol(format!("reply to {what} with a bad checksum"));
                            return Err(self.broken(e));
                        }
                        self.write_raw(b"-", deadline, what).await?;
                        continue;
                    }
                    if self.acks {
                        self.write_raw(b"+", deadline, what).await?;
                    }
                    return decode_body(&raw, MAX_PACKET).map_err(|e| {
                        let e = self.protocol(format!("unusable reply to {what}: {e}"));
                        self.broken(e)
                    });
                }
            }
        }
    }

    /// The reply to the request just sent: skips console output (collected into `console`)
    /// and, unless `want_stop`, stop replies the stub sent unasked (noted; the target is then
    /// halted). An exit reply (`W`/`X`) closes the link.
    async fn reply(
        &mut self,
        deadline: Instant,
        what: What<'_>,
        want_stop: bool,
        console: &mut Vec<u8>,
    ) -> Result<Vec<u8>, LinkError> {
        loop {
            let p = self.read_packet(deadline, what).await?;
            if let Some(out) = console_output(&p) {
                if console.len() + out.len() <= MAX_PACKET {
                    console.extend_from_slice(&out);
                }
                continue;
            }
            match stop_kind(&p) {
                Some(b'W' | b'X') => {
                    let e = LinkError::Closed(format!(
                        "the GDB server at {} reports the target exited ({})",
                        self.address,
                        escape(&p[..p.len().min(32)])
                    ));
                    return Err(self.broken(e));
                }
                Some(_) if !want_stop => {
                    self.halted = true;
                    self.note(format!(
                        "stop reply {} arrived unasked: the target is halted",
                        stop_summary(&p)
                    ));
                    continue;
                }
                _ => return Ok(p),
            }
        }
    }

    /// One request and its reply: an error reply (`Exx`) is [`LinkError::Protocol`] naming
    /// `what` and the server, an empty reply (not supported) too. Console output that came
    /// with the reply is noted.
    async fn command(&mut self, body: &[u8], what: What<'_>) -> Result<Vec<u8>, LinkError> {
        let (reply, console) = self.exchange(body, what, false).await?;
        if !console.is_empty() {
            self.note(format!(
                "console output: {}",
                escape(&console[..console.len().min(256)])
            ));
        }
        Ok(reply)
    }

    /// One request: the reply and the console output (`O` packets) that came before it.
    /// `empty_ok`: an empty reply is an answer (an optional feature the stub lacks).
    async fn exchange(
        &mut self,
        body: &[u8],
        what: What<'_>,
        empty_ok: bool,
    ) -> Result<(Vec<u8>, Vec<u8>), LinkError> {
        let deadline = Instant::now() + self.timeout;
        self.send_packet(body, deadline, what).await?;
        let mut console = Vec::new();
        let r = self.reply(deadline, what, false, &mut console).await?;
        if is_error_reply(&r) {
            let detail = format!("{what} refused: {}", escape(&r));
            // A memory access the stub answered with an error: the target (or the stub in
            // front of it) said no, e.g. an unmapped address or readout protection.
            if matches!(body.first(), Some(b'm' | b'M' | b'X')) {
                return Err(LinkError::Refused(format!(
                    "GDB server at {}: {detail}",
                    self.address
                )));
            }
            return Err(self.protocol(detail));
        }
        if r.is_empty() && !empty_ok {
            return Err(self.protocol(format!("{what} is not supported (empty reply)")));
        }
        Ok((r, console))
    }

    /// Halts with `0x03` and waits for the stop reply. Returns its summary.
    async fn halt_inner(&mut self) -> Result<String, LinkError> {
        let deadline = Instant::now() + self.timeout;
        self.record(Direction::Tx, b"\x03");
        self.write_raw(b"\x03", deadline, "halt").await?;
        let r = self.reply(deadline, "halt", true, &mut Vec::new()).await?;
        match stop_kind(&r) {
            Some(_) => {
                self.halted = true;
                Ok(stop_summary(&r))
            }
            None => Err(self.protocol(format!(
                "answered {} to an interrupt instead of a stop reply",
                escape(&r[..r.len().min(64)])
            ))),
        }
    }

    /// Resumes with `c` (no reply until the next stop).
    async fn resume_inner(&mut self) -> Result<(), LinkError> {
        let deadline = Instant::now() + self.timeout;
        self.send_packet(b"c", deadline, "resume").await?;
        self.halted = false;
        Ok(())
    }

    /// Halts a running target for an access; returns whether it has to be resumed after.
    async fn halt_for_access(&mut self) -> Result<bool, LinkError> {
        if self.halted {
            return Ok(false);
        }
        self.halt_inner().await?;
        Ok(true)
    }

    /// Resumes after an access when the target ran before it (also after a refused access,
    /// unless the link broke).
    async fn restore(&mut self, was_running: bool) -> Result<(), LinkError> {
        if was_running && self.closed.is_none() && self.halted {
            self.resume_inner().await?;
        }
        Ok(())
    }

    fn read_chunk(&self) -> usize {
        // `$` + hex + `#xx`, with room to spare.
        (self.packet_size.saturating_sub(16) / 2).max(1)
    }

    fn write_chunk(&self) -> usize {
        // `$M<16 hex>,<8 hex>:` + hex + `#xx`.
        (self.packet_size.saturating_sub(48) / 2).max(1)
    }

    async fn read_memory_inner(&mut self, address: u64, len: usize) -> Result<Vec<u8>, LinkError> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let at = address + out.len() as u64;
            let n = (len - out.len()).min(self.read_chunk());
            let what = format!("read of {n} bytes at {at:#010x}");
            let reply = self
                .command(format!("m{at:x},{n:x}").as_bytes(), &what)
                .await?;
            let bytes = from_hex(&reply)
                .map_err(|e| self.protocol(format!("unusable reply to {what}: {e}")))?;
            if bytes.is_empty() || bytes.len() > n {
                return Err(self.protocol(format!("{what} answered with {} bytes", bytes.len())));
            }
            out.extend_from_slice(&bytes);
        }
        Ok(out)
    }

    async fn write_memory_inner(&mut self, address: u64, data: &[u8]) -> Result<(), LinkError> {
        let mut done = 0;
        let chunk = self.write_chunk();
        for part in data.chunks(chunk) {
            let at = address + done as u64;
            let what = format!("write of {} bytes at {at:#010x}", part.len());
            let body = format!("M{at:x},{:x}:{}", part.len(), to_hex(part));
            let reply = self.command(body.as_bytes(), &what).await?;
            if reply != b"OK" {
                return Err(self.protocol(format!(
                    "{what} answered {}",
                    escape(&reply[..reply.len().min(64)])
                )));
            }
            done += part.len();
        }
        Ok(())
    }

    async fn reset_inner(&mut self, command: &str) -> Result<String, LinkError> {
        let was_running = self.halt_for_access().await?;
        let r = self
            .exchange(
                format!("qRcmd,{}", to_hex(command.as_bytes())).as_bytes(),
                &format!("monitor command {command:?}"),
                false,
            )
            .await;
        let (reply, mut console) = match r {
            Ok(r) => r,
            Err(e) => {
                self.restore(was_running).await?;
                return Err(e);
            }
        };
        if reply != b"OK" {
            // Some stubs answer with the output as hex instead of `O` packets.
            if let Ok(out) = from_hex(&reply) {
                console.extend_from_slice(&out);
            }
        }
        self.restore(was_running).await?;
        let out = String::from_utf8_lossy(&console[..console.len().min(256)])
            .trim()
            .to_string();
        // QEMU answers `OK` even to a command it does not know, after saying so on the
        // console; OpenOCD says "invalid command name".
        let lower = out.to_ascii_lowercase();
        if lower.contains("unknown command") || lower.contains("invalid command") {
            return Err(self.protocol(format!(
                "monitor command {command:?} rejected: {}",
                escape(out.as_bytes())
            )));
        }
        Ok(out)
    }

    async fn detach(&mut self) -> Result<(), LinkError> {
        if !self.halted {
            self.halt_inner().await?;
        }
        let deadline = Instant::now() + self.timeout.min(DETACH_WAIT);
        self.send_packet(b"D", deadline, "detach").await?;
        let r = self
            .reply(deadline, "detach", false, &mut Vec::new())
            .await?;
        if r != b"OK" {
            return Err(self.protocol(format!("detach answered {}", escape(&r[..r.len().min(64)]))));
        }
        self.halted = false;
        Ok(())
    }
}

#[async_trait::async_trait]
impl DebugAccess for GdbLink {
    async fn halt(&mut self) -> Result<(), LinkError> {
        self.enter()?;
        let r = if self.halted {
            self.note("halt: already halted");
            Ok(())
        } else {
            match self.halt_inner().await {
                Ok(s) => {
                    self.note(format!("halted ({s})"));
                    Ok(())
                }
                Err(e) => Err(e),
            }
        };
        self.leave("halt", r)
    }

    async fn resume(&mut self) -> Result<(), LinkError> {
        self.enter()?;
        let r = if self.halted {
            let r = self.resume_inner().await;
            if r.is_ok() {
                self.note("resumed");
            }
            r
        } else {
            self.note("resume: already running");
            Ok(())
        };
        self.leave("resume", r)
    }

    async fn read_memory(&mut self, address: u64, len: usize) -> Result<Vec<u8>, LinkError> {
        let what = format!("read {len} bytes at {address:#010x}");
        if let Err(e) = check_access("read", address, len) {
            self.note(format!("{what}: failed: {e}"));
            return Err(e);
        }
        self.enter()?;
        let r = async {
            let started = Instant::now();
            let was_running = self.halt_for_access().await?;
            let r = self.read_memory_inner(address, len).await;
            self.restore(was_running).await?;
            let bytes = r?;
            let halted = halted_for(was_running, started);
            self.note(format!("{what}{halted}: {}", hex_preview(&bytes)));
            Ok(bytes)
        }
        .await;
        self.leave(&what, r)
    }

    async fn write_memory(&mut self, address: u64, data: &[u8]) -> Result<(), LinkError> {
        let what = format!("write {} bytes at {address:#010x}", data.len());
        if let Err(e) = check_access("write", address, data.len()) {
            self.note(format!("{what}: failed: {e}"));
            return Err(e);
        }
        self.enter()?;
        let r = async {
            let started = Instant::now();
            let was_running = self.halt_for_access().await?;
            let r = self.write_memory_inner(address, data).await;
            self.restore(was_running).await?;
            r?;
            let halted = halted_for(was_running, started);
            self.note(format!(
                "wrote {} bytes at {address:#010x}{halted}: {}",
                data.len(),
                hex_preview(data)
            ));
            Ok(())
        }
        .await;
        self.leave(&what, r)
    }

    async fn read_registers(&mut self) -> Result<Vec<Register>, LinkError> {
        self.enter()?;
        let r = async {
            let was_running = self.halt_for_access().await?;
            let r = self.command(b"g", "register read").await;
            self.restore(was_running).await?;
            let reply = r?;
            let bytes = register_bytes(&reply)
                .map_err(|e| self.protocol(format!("unusable reply to register read: {e}")))?;
            let regs = decode_registers(&bytes);
            let mut text = String::from("registers:");
            for reg in &regs {
                let _ = write!(text, " {}={:#010x}", reg.name, reg.value);
            }
            if was_running {
                text.push_str(" (halted for the read)");
            }
            self.note(text);
            Ok(regs)
        }
        .await;
        self.leave("read registers", r)
    }

    async fn reset(&mut self) -> Result<(), LinkError> {
        let Some(command) = self.options.reset_command.clone() else {
            let e = LinkError::Protocol(format!(
                "the debug port {} (GDB server at {}) does not support reset: no reset command \
                 configured (e.g. \"system_reset\" for QEMU, \"reset halt\" for OpenOCD)",
                self.name, self.address
            ));
            self.note_always(format!("reset: failed: {e}"));
            return Err(e);
        };
        self.enter()?;
        let r = match self.reset_inner(&command).await {
            Ok(out) => {
                if out.is_empty() {
                    self.note(format!("reset (monitor {command})"));
                } else {
                    self.note(format!(
                        "reset (monitor {command}): {}",
                        escape(out.as_bytes())
                    ));
                }
                Ok(())
            }
            Err(e) => Err(e),
        };
        self.leave(&format!("reset (monitor {command})"), r)
    }

    fn set_quiet(&mut self, quiet: bool) {
        self.quiet = quiet;
    }

    async fn flash(
        &mut self,
        req: &crate::iface::flash::FlashRequest,
        progress: &crate::iface::flash::ProgressSink,
    ) -> Result<crate::iface::flash::FlashReport, LinkError> {
        crate::iface::flash::load_via_memory(self, req, progress).await
    }

    async fn close(&mut self) -> Result<(), LinkError> {
        if self.closed.is_some() {
            return Ok(());
        }
        self.enter()?;
        let r = self.detach().await;
        self.in_flight = false;
        match &r {
            Ok(()) => self.note(format!("detached from {}; the target runs", self.address)),
            Err(e) => self.note(format!("detach failed: {e}")),
        }
        self.stream = None;
        self.closed = Some("closed by the harness".into());
        r
    }

    fn is_closed(&self) -> bool {
        // Every exchange holds `&mut self`: seen from here, a set `in_flight` means the last
        // one was interrupted (its future dropped) and the link is out of step.
        self.closed.is_some() || self.in_flight
    }

    fn set_transcript(&mut self, t: Transcript) {
        self.transcript = t;
    }
}

impl Drop for GdbLink {
    /// Detaches best effort without waiting, so the target keeps running.
    fn drop(&mut self) {
        self.detach_best_effort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_and_framing() {
        assert_eq!(checksum(b""), 0);
        assert_eq!(checksum(b"OK"), 0x9a);
        assert_eq!(encode_packet(b"?"), b"$?#3f");
        assert_eq!(encode_packet(b"c"), b"$c#63");
        assert_eq!(encode_packet(b"D"), b"$D#44");
        assert_eq!(encode_packet(b"m20000000,10"), b"$m20000000,10#7c".to_vec());
    }

    #[test]
    fn encode_escapes_special_bytes() {
        let p = encode_packet(b"a$b#c}d*");
        assert_eq!(&p[..13], b"$a}\x04b}\x03c}]d}\x0a");
        // The checksum covers the escaped body.
        let body = &p[1..p.len() - 3];
        assert_eq!(
            p[p.len() - 2..],
            *format!("{:02x}", checksum(body)).as_bytes()
        );
        assert_eq!(decode_body(body, 100).unwrap(), b"a$b#c}d*");
    }

    #[test]
    fn run_length_decoding() {
        // `0* ` is '0' and 3 more copies (' ' = 32, 32 - 29 = 3).
        assert_eq!(decode_body(b"0* ", 100).unwrap(), b"0000");
        assert_eq!(decode_body(b"ab*\"c", 100).unwrap(), b"abbbbbbc");
        assert_eq!(decode_body(b"f*~", 200).unwrap(), vec![b'f'; 98]);
        assert_eq!(decode_body(b"*a", 100), Err(CodecError::RepeatWithoutChar));
        assert_eq!(decode_body(b"a*", 100), Err(CodecError::BadRepeatCount(0)));
        assert_eq!(
            decode_body(b"a*\x10", 100),
            Err(CodecError::BadRepeatCount(0x10))
        );
        // Expansion is bounded.
        assert_eq!(decode_body(b"a*~a*~", 100), Err(CodecError::TooLong(100)));
        assert_eq!(
            decode_body(&[b'a'; 101], 100),
            Err(CodecError::TooLong(100))
        );
    }

    #[test]
    fn escapes_in_replies() {
        assert_eq!(decode_body(b"}\x03}\x04}]", 100).unwrap(), b"#$}");
        assert_eq!(decode_body(b"x}", 100), Err(CodecError::DanglingEscape));
        // Run-length applies to the raw byte before `*` (GDB's order), then unescaping.
        assert_eq!(decode_body(b"}]* ", 100).unwrap(), b"}]]]");
    }

    #[test]
    fn splits_packets_and_acks() {
        let mut d = Decoder::new(1024);
        d.push(b"+$OK#9a-junk$T05thread:01;#0");
        assert_eq!(d.next_frame().unwrap(), Some(Frame::Ack));
        assert_eq!(
            d.next_frame().unwrap(),
            Some(Frame::Packet {
                raw: b"OK".to_vec(),
                checksum_ok: true
            })
        );
        assert_eq!(d.next_frame().unwrap(), Some(Frame::Nak));
        // `junk` skipped; the packet lacks a checksum digit.
        assert_eq!(d.next_frame().unwrap(), None);
        assert_eq!(d.junk, 4);
        d.push(b"7");
        assert_eq!(
            d.next_frame().unwrap(),
            Some(Frame::Packet {
                raw: b"T05thread:01;".to_vec(),
                checksum_ok: true
            })
        );
        assert_eq!(d.next_frame().unwrap(), None);
    }

    #[test]
    fn packet_split_across_reads() {
        let mut d = Decoder::new(1024);
        for b in b"$deadbeef#20".iter() {
            assert_eq!(d.next_frame().unwrap(), None);
            d.push(&[*b]);
        }
        assert_eq!(
            d.next_frame().unwrap(),
            Some(Frame::Packet {
                raw: b"deadbeef".to_vec(),
                checksum_ok: true
            })
        );
    }

    #[test]
    fn bad_checksum_is_flagged() {
        let mut d = Decoder::new(1024);
        d.push(b"$OK#00$OK#zz");
        for _ in 0..2 {
            assert!(matches!(
                d.next_frame().unwrap(),
                Some(Frame::Packet {
                    checksum_ok: false,
                    ..
                })
            ));
        }
    }

    #[test]
    fn oversized_packet_is_refused() {
        let mut d = Decoder::new(64);
        d.push(b"$");
        d.push(&[b'0'; 70]);
        assert_eq!(d.next_frame(), Err(CodecError::TooLong(64)));
        // A complete but too long packet too.
        let mut d = Decoder::new(8);
        d.push(b"$0123456#00");
        assert_eq!(d.next_frame(), Err(CodecError::TooLong(8)));
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(to_hex(&[0xde, 0xad, 0xbe, 0xef]), "deadbeef");
        assert_eq!(from_hex(b"DEADbeef").unwrap(), vec![0xde, 0xad, 0xbe, 0xef]);
        assert!(from_hex(b"abc").is_err());
        assert!(from_hex(b"zz").is_err());
    }

    #[test]
    fn reply_kinds() {
        assert_eq!(stop_kind(b"T05thread:01;"), Some(b'T'));
        assert_eq!(stop_kind(b"S02"), Some(b'S'));
        assert_eq!(stop_kind(b"W00"), Some(b'W'));
        assert_eq!(stop_kind(b"OK"), None);
        assert_eq!(stop_kind(b"deadbeef"), None);
        assert!(is_error_reply(b"E14"));
        assert!(is_error_reply(b"E.no such memory"));
        assert!(!is_error_reply(b"e1"));
        assert!(!is_error_reply(b"E1234"));
        assert_eq!(console_output(b"O6869"), Some(b"hi".to_vec()));
        assert_eq!(console_output(b"OK"), None);
        assert_eq!(console_output(b"O"), None);
    }

    fn word_hex(words: &[u32]) -> Vec<u8> {
        words
            .iter()
            .flat_map(|w| to_hex(&w.to_le_bytes()).into_bytes())
            .collect()
    }

    #[test]
    fn registers_legacy_arm_layout() {
        // QEMU without a target description: r0-r15, 8 x 12-byte FPA, fps, cpsr.
        let mut text = word_hex(&(0..16).collect::<Vec<u32>>());
        text.extend(std::iter::repeat_n(b'0', 8 * 24 + 8));
        text.extend(word_hex(&[0x0100_0000]));
        let regs = decode_registers(&register_bytes(&text).unwrap());
        assert_eq!(regs.len(), 17);
        assert_eq!(super::super::debug::register(&regs, "r0"), Some(0));
        assert_eq!(super::super::debug::register(&regs, "sp"), Some(13));
        assert_eq!(super::super::debug::register(&regs, "lr"), Some(14));
        assert_eq!(super::super::debug::register(&regs, "pc"), Some(15));
        assert_eq!(
            super::super::debug::register(&regs, "xpsr"),
            Some(0x0100_0000)
        );
    }

    #[test]
    fn registers_cortex_m_layout_and_extra() {
        // OpenOCD: r0-r15, xpsr; then one extra word and an unavailable one.
        let mut words: Vec<u32> = (100..116).collect();
        words.push(0x6100_0000);
        words.push(7);
        let mut text = word_hex(&words);
        text.extend_from_slice(b"xxxxxxxx");
        let regs = decode_registers(&register_bytes(&text).unwrap());
        let names: Vec<&str> = regs.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names.len(), 18, "{names:?}");
        assert_eq!(names[15], "pc");
        assert_eq!(regs[15].value, 115);
        assert_eq!(regs[16].name, "xpsr");
        assert_eq!(regs[16].value, 0x6100_0000);
        assert_eq!(regs[17].name, "reg17");
        assert_eq!(regs[17].value, 7);
    }

    #[test]
    fn registers_unknown_layout_are_numbered() {
        let mut text = word_hex(&[1, 0xdead_beef]);
        text.extend_from_slice(b"xxxxxxxx0102");
        let regs = decode_registers(&register_bytes(&text).unwrap());
        assert_eq!(
            regs,
            vec![
                Register {
                    name: "reg0".into(),
                    value: 1
                },
                Register {
                    name: "reg1".into(),
                    value: 0xdead_beef
                },
                Register {
                    name: "reg3".into(),
                    value: 0x0201
                },
            ]
        );
        assert!(register_bytes(b"0x").is_err());
        assert!(register_bytes(b"123").is_err());
    }
}
