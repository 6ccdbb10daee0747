//! RTT consoles: a firmware's SEGGER Real-Time Transfer channels as a send/expect console.
//!
//! This module exists because many boards have no UART wired out (or use it for something
//! else) and talk over RTT instead: ring buffers in the target's RAM that a debugger reads and
//! writes while the core runs. [`open_console`] finds the firmware's RTT control block through
//! the harness's own [`DebugAccess`] trait, not probe-rs's `Rtt` (which needs a probe-rs
//! `Core`), so the same console works over a probe-rs probe and over any GDB stub (QEMU,
//! Renode, OpenOCD), and it is a [`Console`] like a UART's: the same recipes drive it.
//!
//! Layout read (32-bit targets, as SEGGER's `SEGGER_RTT.c` defines it): the control block is a
//! 16-byte id `"SEGGER RTT"` padded with NULs, an `i32` count of up channels (target → host), an
//! `i32` count of down channels (host → target), then one 24-byte descriptor per channel, up
//! channels first: `{u32 name, u32 buffer, u32 size, u32 WrOff, u32 RdOff, u32 flags}`. A ring
//! is empty when both offsets are equal and full when WrOff is one behind RdOff. The host owns
//! RdOff of an up channel and WrOff of a down channel; the target the others.
//!
//! What it promises:
//! - **Found, then checked.** The block is at [`RttOptions::control_block`] or found by
//!   scanning [`RttOptions::scan`] (reads of at most [`SCAN_CHUNK`] bytes; an id straddling two
//!   reads is found), waiting up to [`RttOptions::timeout`] for the firmware to set it up.
//!   Channel counts (at most [`MAX_CHANNELS`]), buffer sizes (1 byte to [`MAX_BUFFER`]), buffer
//!   ranges and offsets are validated before use, and the offsets again on every poll; a block
//!   that fails is `LinkError::Protocol("... not a valid RTT control block ...")`. Not found in
//!   time: `LinkError::Open`, naming what was searched and what to do.
//! - **One pump task per console**, polling every [`RttOptions::poll`] (at once again while
//!   bytes move): per poll one read covering both channels' offsets, the new up bytes (two
//!   reads when they wrap), the new RdOff, and as much pending down data as the ring has room
//!   for, then WrOff. The shared debug link is locked only for a poll's accesses, never across
//!   the sleep, and set quiet for them, so the transcript holds the console's bytes (recorded
//!   by the console) and not a note per poll.
//! - **Bounded memory, like a UART.** Up bytes go into a `tokio::io::duplex` pipe of
//!   [`PIPE_BYTES`]; while nobody reads the console the pipe stays full, the pump stops reading
//!   the target and the firmware's up buffer fills (a blocking firmware waits, as on a UART).
//!   Down bytes wait in at most [`PIPE_BYTES`] of the pump's own plus the pipe; past that a
//!   `send` times out as on a UART that does not take bytes.
//! - **Never a hang.** The pump ends when the console is dropped, or when a debug access fails
//!   or the block stops making sense: then it notes why in the transcript and closes the pipe,
//!   so the console reads end-of-file, `expect` fails with `LinkError::Closed` and
//!   [`Console::is_closed`] turns true.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use crate::iface::debug::{DebugAccess, MAX_ACCESS};
use crate::iface::serial::Console;
use crate::iface::LinkError;
use crate::transcript::Transcript;

/// A debug link shared by whoever needs the target: an RTT console's pump locks it only for
/// the accesses of one poll.
pub type SharedDebug = Arc<tokio::sync::Mutex<Box<dyn DebugAccess>>>;

/// The control block's id, as the firmware writes it.
pub const RTT_ID: &[u8; 16] = b"SEGGER RTT\0\0\0\0\0\0";
/// Most up or down channels a control block may declare.
pub const MAX_CHANNELS: i32 = 16;
/// Largest channel buffer accepted.
pub const MAX_BUFFER: u32 = 1 << 20;
/// Largest read of a scan for the control block.
pub const SCAN_CHUNK: usize = 16 * 1024;
/// Bytes the console pipe holds in each direction (and the most down bytes the pump keeps).
pub const PIPE_BYTES: usize = 4096;
/// Most up bytes read from the target in one access.
const READ_CHUNK: usize = 16 * 1024;
/// Control block header: id and the two counts.
const HEADER: u64 = 24;
/// One channel descriptor.
const DESCRIPTOR: u64 = 24;
/// Longest channel name read for the transcript note.
const NAME_MAX: usize = 32;

/// Where the control block is and which channels make the console.
#[derive(Debug, Clone)]
pub struct RttOptions {
    /// Exact address of the control block (e.g. the `_SEGGER_RTT` symbol), if the board knows it.
    pub control_block: Option<u64>,
    /// Otherwise: ranges `(start, length)` searched for the id, e.g. the chip's RAM.
    pub scan: Vec<(u64, u64)>,
    /// Up channel (target → host) read as the console's input.
    pub up: u32,
    /// Down channel (host → target) the console's sends go to.
    pub down: u32,
    /// Time between polls while nothing moves (at least 1 ms is used).
    pub poll: Duration,
    /// How long to wait for the control block to appear (the firmware sets it up after boot).
    pub timeout: Duration,
}

impl Default for RttOptions {
    /// No address, nothing to scan (set one of them), channels 0 and 0, 10 ms polling, 5 s to
    /// find the block.
    fn default() -> Self {
        RttOptions {
            control_block: None,
            scan: Vec::new(),
            up: 0,
            down: 0,
            poll: Duration::from_millis(10),
            timeout: Duration::from_secs(5),
        }
    }
}

/// One channel's ring as validated at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ring {
    /// Address of the descriptor.
    desc: u64,
    buffer: u64,
    size: u32,
}

impl Ring {
    /// Address of the descriptor's WrOff (RdOff follows).
    fn offsets(&self) -> u64 {
        self.desc + 12
    }
}

/// The validated control block: the two rings of the console.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    at: u64,
    up: Ring,
    down: Ring,
    up_name: String,
    down_name: String,
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn invalid(at: u64, why: impl std::fmt::Display) -> LinkError {
    LinkError::Protocol(format!(
        "not a valid RTT control block at {at:#010x}: {why}"
    ))
}

/// Checks a descriptor (24 bytes) and makes it a ring.
fn ring(at: u64, which: &str, desc_at: u64, d: &[u8]) -> Result<Ring, LinkError> {
    let buffer = le32(d, 4);
    let size = le32(d, 8);
    let wr = le32(d, 12);
    let rd = le32(d, 16);
    if buffer == 0 {
        return Err(invalid(at, format!("{which} has no buffer (null pointer)")));
    }
    if size == 0 || size > MAX_BUFFER {
        return Err(invalid(
            at,
            format!("{which} buffer size {size} (must be 1 to {MAX_BUFFER} bytes)"),
        ));
    }
    if u64::from(buffer) + u64::from(size) > 1 << 32 {
        return Err(invalid(
            at,
            format!("{which} buffer {buffer:#010x} of {size} bytes runs past 4 GiB"),
        ));
    }
    if wr >= size || rd >= size {
        return Err(invalid(
            at,
            format!("{which} offsets WrOff {wr} / RdOff {rd} not below its size {size}"),
        ));
    }
    Ok(Ring {
        desc: desc_at,
        buffer: u64::from(buffer),
        size,
    })
}

/// Parses the control block read at `at`: header plus every descriptor.
fn parse(at: u64, block: &[u8], up: u32, down: u32) -> Result<(Ring, Ring, u32, u32), LinkError> {
    if block.len() < HEADER as usize || &block[..16] != RTT_ID {
        return Err(invalid(at, "no \"SEGGER RTT\" id"));
    }
    let max_up = le32(block, 16) as i32;
    let max_down = le32(block, 20) as i32;
    if !(0..=MAX_CHANNELS).contains(&max_up) || !(0..=MAX_CHANNELS).contains(&max_down) {
        return Err(invalid(
            at,
            format!("{max_up} up and {max_down} down channels (at most {MAX_CHANNELS} each)"),
        ));
    }
    // Checked non-negative above.
    let (max_up, max_down) = (max_up as u32, max_down as u32);
    if up >= max_up {
        return Err(LinkError::Protocol(format!(
            "RTT control block at {at:#010x} has {max_up} up channel(s); channel {up} was asked for"
        )));
    }
    if down >= max_down {
        return Err(LinkError::Protocol(format!(
            "RTT control block at {at:#010x} has {max_down} down channel(s); channel {down} was asked for"
        )));
    }
    let need = HEADER as usize + (max_up + max_down) as usize * DESCRIPTOR as usize;
    if block.len() < need {
        return Err(invalid(at, "descriptors cut short"));
    }
    let desc = |i: u32| {
        let off = HEADER as usize + i as usize * DESCRIPTOR as usize;
        (at + off as u64, &block[off..off + DESCRIPTOR as usize])
    };
    let (ua, ud) = desc(up);
    let up_ring = ring(at, &format!("up channel {up}"), ua, ud)?;
    let (da, dd) = desc(max_up + down);
    let down_ring = ring(at, &format!("down channel {down}"), da, dd)?;
    Ok((up_ring, down_ring, le32(ud, 0), le32(dd, 0)))
}

/// Where `needle` occurs in `hay`, all positions.
fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    if hay.len() < needle.len() {
        return Vec::new();
    }
    (0..=hay.len() - needle.len())
        .filter(|&i| &hay[i..i + needle.len()] == needle)
        .collect()
}

async fn read(debug: &SharedDebug, at: u64, len: usize) -> Result<Vec<u8>, LinkError> {
    let mut d = debug.lock().await;
    d.set_quiet(true);
    let r = d.read_memory(at, len).await;
    d.set_quiet(false);
    r
}

/// Reads and validates the block at `at` (its id already seen).
async fn load(
    debug: &SharedDebug,
    at: u64,
    opts: &RttOptions,
) -> Result<Option<Layout>, LinkError> {
    let header = read(debug, at, HEADER as usize).await?;
    if header.len() < HEADER as usize || &header[..16] != RTT_ID {
        return Ok(None);
    }
    let counts = |i: usize| (le32(&header, i) as i32).clamp(0, MAX_CHANNELS) as usize;
    let len = HEADER as usize + (counts(16) + counts(20)) * DESCRIPTOR as usize;
    let block = read(debug, at, len).await?;
    let (up, down, up_name, down_name) = parse(at, &block, opts.up, opts.down)?;
    Ok(Some(Layout {
        at,
        up,
        down,
        up_name: name(debug, up_name).await,
        down_name: name(debug, down_name).await,
    }))
}

/// A channel's name for the note, best effort (`?` when unreadable).
async fn name(debug: &SharedDebug, ptr: u32) -> String {
    if ptr == 0 {
        return String::new();
    }
    match read(debug, u64::from(ptr), NAME_MAX).await {
        Ok(b) => {
            let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
            String::from_utf8_lossy(&b[..end])
                .chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect()
        }
        Err(_) => "?".into(),
    }
}

/// Scans every range once; the first id whose block validates wins. `Ok(None)`: no id at all.
/// An id whose block does not validate is remembered in `bad` (the error if nothing else is
/// found).
async fn scan_once(
    debug: &SharedDebug,
    opts: &RttOptions,
    bad: &mut Option<LinkError>,
) -> Result<Option<Layout>, LinkError> {
    let keep = RTT_ID.len() - 1;
    for &(start, length) in &opts.scan {
        let end = start.saturating_add(length);
        let mut carry: Vec<u8> = Vec::new();
        let mut pos = start;
        while pos < end {
            let n = (end - pos).min(SCAN_CHUNK as u64) as usize;
            let chunk = read(debug, pos, n).await.map_err(|e| match e {
                LinkError::Protocol(why) | LinkError::Refused(why) => LinkError::Protocol(format!(
                    "RTT scan of {start:#010x}+{length:#x} could not read {pos:#010x}: {why}"
                )),
                other => other,
            })?;
            let base = pos - carry.len() as u64;
            carry.extend_from_slice(&chunk);
            for i in find_all(&carry, RTT_ID) {
                match load(debug, base + i as u64, opts).await {
                    Ok(Some(l)) => return Ok(Some(l)),
                    Ok(None) => {}
                    Err(e @ LinkError::Protocol(_)) => {
                        bad.get_or_insert(e);
                    }
                    Err(e) => return Err(e),
                }
            }
            let cut = carry.len().saturating_sub(keep);
            carry.drain(..cut);
            pos += n as u64;
        }
    }
    Ok(None)
}

/// Waits for the control block: at the declared address, or by scanning.
async fn locate(debug: &SharedDebug, opts: &RttOptions) -> Result<Layout, LinkError> {
    if opts.control_block.is_none() && opts.scan.iter().all(|&(_, len)| len == 0) {
        return Err(LinkError::Open {
            endpoint: "RTT control block".into(),
            detail: "neither its address (`control_block`) nor memory to scan for it (`scan`) \
                     was given"
                .into(),
        });
    }
    let deadline = Instant::now() + opts.timeout;
    let pause = opts.poll.max(Duration::from_millis(20));
    let mut bad = None;
    loop {
        match opts.control_block {
            Some(at) => {
                if let Some(l) = load(debug, at, opts).await? {
                    return Ok(l);
                }
            }
            None => {
                if let Some(l) = scan_once(debug, opts, &mut bad).await? {
                    return Ok(l);
                }
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(pause).await;
    }
    if let Some(e) = bad {
        return Err(e);
    }
    let (endpoint, searched) = match opts.control_block {
        Some(at) => (
            format!("RTT control block at {at:#010x}"),
            format!("no \"SEGGER RTT\" id at {at:#010x}"),
        ),
        None => {
            let ranges: Vec<String> = opts
                .scan
                .iter()
                .map(|(s, l)| format!("{s:#010x}..{:#010x}", s.saturating_add(*l)))
                .collect();
            (
                "RTT control block".to_string(),
                format!("no \"SEGGER RTT\" id in {}", ranges.join(", ")),
            )
        }
    };
    Err(LinkError::Open {
        endpoint,
        detail: format!(
            "{searched} within {:?}; check that the firmware initialises RTT (and runs), or \
             declare the control block's address (`control_block`, the `_SEGGER_RTT` symbol in \
             the ELF)",
            opts.timeout
        ),
    })
}

/// Opens the console on the RTT channels `opts.up`/`opts.down` of the firmware behind `debug`.
///
/// Waits up to `opts.timeout` for the control block, validates it, notes where it is in
/// `transcript`, and starts the pump task (see the module documentation). The console's name
/// is `name`; its bytes are recorded in `transcript` as any console's.
pub async fn open_console(
    name: &str,
    debug: SharedDebug,
    opts: &RttOptions,
    transcript: Transcript,
) -> Result<Console, LinkError> {
    let layout = locate(&debug, opts).await?;
    let ring_note = |dir: &str, ch: u32, n: &str, r: &Ring| {
        format!(
            "{dir} channel {ch} \"{n}\" ({} bytes at {:#010x})",
            r.size, r.buffer
        )
    };
    transcript.note(format!(
        "{name}: RTT control block at {:#010x}; {}, {}; polling every {:?} (accesses not noted)",
        layout.at,
        ring_note("up", opts.up, &layout.up_name, &layout.up),
        ring_note("down", opts.down, &layout.down_name, &layout.down),
        opts.poll
    ));
    let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
    let pump = Pump {
        name: name.to_string(),
        debug,
        layout,
        poll: opts.poll.max(Duration::from_millis(1)),
        transcript: transcript.clone(),
        pending: Vec::new(),
    };
    tokio::spawn(pump.run(ours));
    Ok(Console::from_stream(name, theirs, transcript))
}

/// Moves bytes between the target's rings and the console's pipe.
struct Pump {
    name: String,
    debug: SharedDebug,
    layout: Layout,
    poll: Duration,
    transcript: Transcript,
    /// Down bytes from the console not yet in the target's ring.
    pending: Vec<u8>,
}

/// Why the pump stopped.
enum End {
    /// The console was dropped: nothing to say.
    Dropped,
    /// The target is gone or the block stopped making sense.
    Failed(String),
}

impl Pump {
    async fn run(mut self, mut io: DuplexStream) {
        let end = self.pump(&mut io).await;
        if let End::Failed(why) = end {
            self.transcript
                .note(format!("{}: RTT console closed: {why}", self.name));
        }
        // Dropping `io` closes the pipe: the console reads end-of-file.
        drop(io);
    }

    async fn pump(&mut self, io: &mut DuplexStream) -> End {
        let mut buf = vec![0u8; PIPE_BYTES];
        loop {
            let up = match self.poll_once().await {
                Ok(up) => up,
                Err(e) => return End::Failed(e),
            };
            let moved = !up.is_empty();
            if moved && io.write_all(&up).await.is_err() {
                return End::Dropped;
            }
            // Wait for the next poll, taking what the console sends meanwhile (and polling at
            // once when it does, or when bytes just moved).
            let room = PIPE_BYTES.saturating_sub(self.pending.len());
            if room == 0 {
                // The target is not taking bytes: only notice a dropped console.
                if io.write(&[]).await.is_err() {
                    return End::Dropped;
                }
                tokio::time::sleep(self.poll).await;
                continue;
            }
            let wait = if moved { Duration::ZERO } else { self.poll };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                r = io.read(&mut buf[..room]) => match r {
                    Ok(0) | Err(_) => return End::Dropped,
                    Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                },
            }
        }
    }

    /// One poll under the lock, quiet; the new up bytes.
    async fn poll_once(&mut self) -> Result<Vec<u8>, String> {
        let debug = self.debug.clone();
        let mut d = debug.lock().await;
        d.set_quiet(true);
        let r = self.accesses(d.as_mut()).await;
        d.set_quiet(false);
        r
    }

    async fn accesses(&mut self, d: &mut dyn DebugAccess) -> Result<Vec<u8>, String> {
        let (up, down) = (self.layout.up, self.layout.down);
        let fail = |what: &str, e: LinkError| format!("{what} failed: {e}");
        // Both offset pairs in one read when the descriptors are close (always, for channels
        // of one block of at most 16 + 16).
        let (lo, hi) = (
            up.offsets().min(down.offsets()),
            up.offsets().max(down.offsets()),
        );
        let span = (hi - lo + 8) as usize;
        let offs = d
            .read_memory(lo, span)
            .await
            .map_err(|e| fail("reading the RTT offsets", e))?;
        if offs.len() != span {
            return Err(format!(
                "reading the RTT offsets returned {} of {span} bytes",
                offs.len()
            ));
        }
        let at = |r: &Ring| (r.offsets() - lo) as usize;
        let (uw, ur) = (le32(&offs, at(&up)), le32(&offs, at(&up) + 4));
        let (dw, dr) = (le32(&offs, at(&down)), le32(&offs, at(&down) + 4));
        if uw >= up.size || ur >= up.size || dw >= down.size || dr >= down.size {
            return Err(format!(
                "not a valid RTT control block at {:#010x} any more: offsets up WrOff {uw} \
                 RdOff {ur} (size {}), down WrOff {dw} RdOff {dr} (size {})",
                self.layout.at, up.size, down.size
            ));
        }

        // Up: [RdOff, WrOff), wrapping at the end of the buffer; at most READ_CHUNK per poll.
        let mut data = Vec::new();
        if uw != ur {
            let mut rd = ur;
            let mut left = if uw > ur { uw - ur } else { up.size - ur + uw } as usize;
            left = left.min(READ_CHUNK);
            while left > 0 {
                let n = ((up.size - rd) as usize).min(left).min(MAX_ACCESS);
                let part = d
                    .read_memory(up.buffer + u64::from(rd), n)
                    .await
                    .map_err(|e| fail("reading the RTT up buffer", e))?;
                if part.len() != n {
                    return Err(format!(
                        "reading the RTT up buffer returned {} of {n} bytes",
                        part.len()
                    ));
                }
                data.extend_from_slice(&part);
                left -= n;
                rd = (rd + n as u32) % up.size;
            }
            d.write_memory(up.offsets() + 4, &rd.to_le_bytes())
                .await
                .map_err(|e| fail("writing the RTT up RdOff", e))?;
        }

        // Down: into the free space, which ends one byte before RdOff.
        if !self.pending.is_empty() {
            let free = if dr > dw {
                dr - dw - 1
            } else {
                down.size - dw + dr - 1
            } as usize;
            let mut take = free.min(self.pending.len());
            let mut wr = dw;
            let mut sent = 0usize;
            while take > 0 {
                let n = ((down.size - wr) as usize).min(take).min(MAX_ACCESS);
                d.write_memory(down.buffer + u64::from(wr), &self.pending[sent..sent + n])
                    .await
                    .map_err(|e| fail("writing the RTT down buffer", e))?;
                sent += n;
                take -= n;
                wr = (wr + n as u32) % down.size;
            }
            if sent > 0 {
                d.write_memory(down.offsets(), &wr.to_le_bytes())
                    .await
                    .map_err(|e| fail("writing the RTT down WrOff", e))?;
                self.pending.drain(..sent);
            }
        }
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iface::debug::Register;
    use crate::iface::flash::{FlashReport, FlashRequest, ProgressSink};

    /// A target of plain memory: 64 KiB at 0x2000_0000.
    struct Fake {
        mem: Arc<std::sync::Mutex<Vec<u8>>>,
        fail: Arc<std::sync::atomic::AtomicBool>,
        quiet_reads: Arc<std::sync::atomic::AtomicUsize>,
        quiet: bool,
    }
    const BASE: u64 = 0x2000_0000;

    #[async_trait::async_trait]
    impl DebugAccess for Fake {
        async fn halt(&mut self) -> Result<(), LinkError> {
            Ok(())
        }
        async fn resume(&mut self) -> Result<(), LinkError> {
            Ok(())
        }
        async fn read_memory(&mut self, address: u64, len: usize) -> Result<Vec<u8>, LinkError> {
            assert!(len <= MAX_ACCESS);
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(LinkError::Closed("peer gone".into()));
            }
            if self.quiet {
                self.quiet_reads
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            let m = self.mem.lock().unwrap();
            let a = address
                .checked_sub(BASE)
                .filter(|a| a + len as u64 <= m.len() as u64)
                .ok_or_else(|| LinkError::Protocol(format!("cannot read {address:#x}")))?
                as usize;
            Ok(m[a..a + len].to_vec())
        }
        async fn write_memory(&mut self, address: u64, data: &[u8]) -> Result<(), LinkError> {
            if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(LinkError::Closed("peer gone".into()));
            }
            let mut m = self.mem.lock().unwrap();
            let a = (address - BASE) as usize;
            m[a..a + data.len()].copy_from_slice(data);
            Ok(())
        }
        async fn read_registers(&mut self) -> Result<Vec<Register>, LinkError> {
            Ok(Vec::new())
        }
        async fn reset(&mut self) -> Result<(), LinkError> {
            Ok(())
        }
        async fn flash(
            &mut self,
            _req: &FlashRequest,
            _progress: &ProgressSink,
        ) -> Result<FlashReport, LinkError> {
            Err(LinkError::Protocol("no flash".into()))
        }
        fn is_closed(&self) -> bool {
            false
        }
        fn set_transcript(&mut self, _t: Transcript) {}
        fn set_quiet(&mut self, quiet: bool) {
            self.quiet = quiet;
        }
    }

    struct Target {
        mem: Arc<std::sync::Mutex<Vec<u8>>>,
        fail: Arc<std::sync::atomic::AtomicBool>,
        debug: SharedDebug,
    }

    fn target() -> Target {
        let mem = Arc::new(std::sync::Mutex::new(vec![0u8; 0x10000]));
        let fail = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let fake = Fake {
            mem: mem.clone(),
            fail: fail.clone(),
            quiet_reads: Default::default(),
            quiet: false,
        };
        Target {
            mem,
            fail,
            debug: Arc::new(tokio::sync::Mutex::new(Box::new(fake))),
        }
    }

    fn put32(m: &mut [u8], at: u64, v: u32) {
        let a = (at - BASE) as usize;
        m[a..a + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn get32(m: &[u8], at: u64) -> u32 {
        le32(m, (at - BASE) as usize)
    }

    /// A block at `cb` with one up ring (size `us` at 0x2000_8000) and one down ring (size
    /// `ds` at 0x2000_9000).
    fn install(t: &Target, cb: u64, us: u32, ds: u32) {
        let mut m = t.mem.lock().unwrap();
        let a = (cb - BASE) as usize;
        m[a..a + 16].copy_from_slice(RTT_ID);
        put32(&mut m, cb + 16, 1);
        put32(&mut m, cb + 20, 1);
        put32(&mut m, cb + 28, 0x2000_8000);
        put32(&mut m, cb + 32, us);
        put32(&mut m, cb + 52, 0x2000_9000);
        put32(&mut m, cb + 56, ds);
    }

    /// The firmware's side: appends to the up ring (no wrap check beyond the ring's).
    fn target_write(t: &Target, cb: u64, bytes: &[u8]) {
        let mut m = t.mem.lock().unwrap();
        let size = get32(&m, cb + 32);
        let mut wr = get32(&m, cb + 36);
        for &b in bytes {
            m[(0x8000 + wr) as usize] = b;
            wr = (wr + 1) % size;
        }
        put32(&mut m, cb + 36, wr);
    }

    /// The firmware's side: takes what the down ring holds.
    fn target_read(t: &Target, cb: u64) -> Vec<u8> {
        let mut m = t.mem.lock().unwrap();
        let size = get32(&m, cb + 56);
        let wr = get32(&m, cb + 60);
        let mut rd = get32(&m, cb + 64);
        let mut out = Vec::new();
        while rd != wr {
            out.push(m[(0x9000 + rd) as usize]);
            rd = (rd + 1) % size;
        }
        put32(&mut m, cb + 64, rd);
        out
    }

    fn opts_scan() -> RttOptions {
        RttOptions {
            scan: vec![(BASE, 0x10000)],
            timeout: Duration::from_millis(300),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn finds_block_straddling_scan_chunks_and_moves_bytes_both_ways() {
        let t = target();
        // The id straddles the first two scan reads.
        let cb = BASE + SCAN_CHUNK as u64 - 7;
        install(&t, cb, 16, 8);
        let tr = Transcript::new();
        let mut c = open_console("rtt", t.debug.clone(), &opts_scan(), tr.clone())
            .await
            .expect("open");
        // Wraps: 12 bytes, then 10 more through the end of the 16-byte ring.
        target_write(&t, cb, b"hello world\n");
        let re = regex::bytes::Regex::new("world").unwrap();
        c.expect(&re, None, Duration::from_secs(5)).await.unwrap();
        target_write(&t, cb, b"wrap-around!");
        let re = regex::bytes::Regex::new("around!").unwrap();
        c.expect(&re, None, Duration::from_secs(5)).await.unwrap();
        // Down: 20 bytes through an 8-byte ring (7 free at a time).
        c.send(
            b"0123456789abcdefghij",
            "0123456789abcdefghij",
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < 20 && Instant::now() < deadline {
            got.extend(target_read(&t, cb));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(got, b"0123456789abcdefghij");
        let text = tr.render(&crate::secret::Redactor::default());
        assert!(
            text.contains(&format!("RTT control block at {cb:#010x}")),
            "{text}"
        );

        // The target goes away: the console reports closed, the transcript says why.
        t.fail.store(true, std::sync::atomic::Ordering::SeqCst);
        let never = regex::bytes::Regex::new("never").unwrap();
        let e = c
            .expect(&never, None, Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(matches!(e, LinkError::Closed(_)), "{e}");
        assert!(c.is_closed());
        let text = tr.render(&crate::secret::Redactor::default());
        assert!(text.contains("RTT console closed"), "{text}");
    }

    #[tokio::test]
    async fn invalid_blocks_are_refused() {
        for (what, us, ds, counts) in [
            ("size 0", 0u32, 8u32, 1u32),
            ("too big", MAX_BUFFER + 1, 8, 1),
            ("counts", 16, 8, 17),
        ] {
            let t = target();
            let cb = BASE + 0x100;
            install(&t, cb, us, ds);
            put32(&mut t.mem.lock().unwrap(), cb + 16, counts);
            let e = open_console("rtt", t.debug.clone(), &opts_scan(), Transcript::new())
                .await
                .err()
                .unwrap_or_else(|| panic!("{what}: opened"));
            assert!(
                e.to_string().contains("not a valid RTT control block"),
                "{what}: {e}"
            );
        }
        // Offsets beyond the size, at a declared address.
        let t = target();
        let cb = BASE + 0x100;
        install(&t, cb, 16, 8);
        put32(&mut t.mem.lock().unwrap(), cb + 36, 16);
        let o = RttOptions {
            control_block: Some(cb),
            ..opts_scan()
        };
        let e = open_console("rtt", t.debug.clone(), &o, Transcript::new())
            .await
            .err()
            .expect("offsets");
        assert!(e.to_string().contains("not below its size"), "{e}");
    }

    #[tokio::test]
    async fn missing_block_is_an_open_error() {
        let t = target();
        let e = open_console("rtt", t.debug.clone(), &opts_scan(), Transcript::new())
            .await
            .err()
            .expect("nothing to find");
        let s = e.to_string();
        assert!(matches!(e, LinkError::Open { .. }), "{s}");
        assert!(
            s.contains("0x20000000..0x20010000") && s.contains("control_block"),
            "{s}"
        );
        let e = open_console(
            "rtt",
            t.debug.clone(),
            &RttOptions::default(),
            Transcript::new(),
        )
        .await
        .err()
        .expect("nothing to search");
        assert!(matches!(e, LinkError::Open { .. }), "{e}");
    }

    #[tokio::test]
    async fn unread_console_fills_the_pipe_not_memory() {
        let t = target();
        let cb = BASE + 0x40;
        install(&t, cb, 1024, 8);
        let c = open_console("rtt", t.debug.clone(), &opts_scan(), Transcript::new())
            .await
            .unwrap();
        // Keep the ring full: far more than the pipe holds. Once the pipe is full the pump
        // stops reading and the ring stays full.
        let full = |m: &[u8]| (get32(m, cb + 36) + 1) % 1024 == get32(m, cb + 40);
        let mut written = 0usize;
        let mut stuck = 0;
        for _ in 0..2000 {
            while !full(&t.mem.lock().unwrap()) {
                target_write(&t, cb, b"x");
                written += 1;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            stuck = if full(&t.mem.lock().unwrap()) {
                stuck + 1
            } else {
                0
            };
            if stuck >= 10 {
                break;
            }
        }
        assert!(written > PIPE_BYTES, "only {written} bytes written");
        let (wr, rd) = {
            let m = t.mem.lock().unwrap();
            (get32(&m, cb + 36), get32(&m, cb + 40))
        };
        assert_eq!((wr + 1) % 1024, rd, "ring full while nobody reads");
        drop(c);
    }
}
