//! The evidence of one test: every byte exchanged with the unit, timestamped, bounded in size.
//!
//! Interfaces append what they send and receive; suites append notes (what they concluded and
//! why). Rendering escapes non-printable bytes and applies the redactor, so the text written to
//! disk never contains a known secret.
//!
//! Received bytes carry the instant they arrived (stamped by the interface's reader, not when
//! the harness got round to reading them). Consecutive received chunks are shown as one entry
//! only when they arrived within [`MERGE_WINDOW`] of the entry's first chunk, so every stamp is
//! within that window of the truth. Bytes that were already waiting when the test began are
//! recorded as *before test* with their own (negative) time.
//!
//! Memory per transcript is bounded by [`SPILL_AT`], not by what the device says: past it,
//! recorded entries move to an unnamed temporary file (in the folder [`spill_into`] names, the
//! run's output folder for `hilsec run`; deleted by the system when closed, even after a
//! kill) and are read back once, when the evidence is rendered. A fleet of units in a login
//! sweep at the same time otherwise held every unit's whole sweep in memory.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::secret::Redactor;

/// Most bytes of device traffic kept per test; the rest is counted, not stored.
pub const TRANSCRIPT_CAP: usize = 1 << 20;

/// Bytes of entries a transcript holds in memory before it moves them to its file.
pub const SPILL_AT: usize = 16 * 1024;

/// Where transcripts put the entries they move out of memory (default: the system's
/// temporary folder). Set once, before the run starts; later calls are ignored.
pub fn spill_into(dir: &std::path::Path) {
    let _ = SPILL_DIR.set(dir.to_path_buf());
}

static SPILL_DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Received chunks that arrived within this time of an entry's first chunk join that entry.
pub const MERGE_WINDOW: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Harness to device.
    Tx,
    /// Device to harness.
    Rx,
    /// A note from the harness or a suite.
    Note,
}

/// One entry. Its bytes live in [`Inner::bytes`], one buffer for the whole transcript: a
/// login sweep records thousands of short entries per unit, and a separate allocation (and a
/// copy of the interface name) for each cost more than the bytes themselves.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Milliseconds since the transcript started; negative for bytes that arrived before.
    at_ms: f64,
    /// Where the entry's bytes start in [`Inner::bytes`]; they run to the next entry's start.
    start: u32,
    /// Index into [`Inner::ifaces`]; notes use index 0, the empty name.
    iface: u16,
    dir: Direction,
    /// Left over from before the test began (drained by `Device::begin_test`).
    before_test: bool,
}

#[derive(Debug)]
struct Inner {
    start: Instant,
    entries: Vec<Entry>,
    /// The bytes of every entry, in the order entries were recorded.
    bytes: Vec<u8>,
    /// Interface names, each stored once.
    ifaces: Vec<Box<str>>,
    /// Entries moved out of memory, oldest first; see [`SPILL_AT`].
    spill: Spill,
    /// Device traffic stored (notes are not counted against the cap).
    stored: usize,
    dropped: usize,
}

impl Inner {
    fn iface_index(&mut self, name: &str) -> u16 {
        if let Some(i) = self.ifaces.iter().position(|n| &**n == name) {
            return i as u16;
        }
        // A unit has a handful of interfaces; past u16 range, names share the last slot.
        if self.ifaces.len() >= usize::from(u16::MAX) {
            return u16::MAX - 1;
        }
        self.ifaces.push(name.into());
        (self.ifaces.len() - 1) as u16
    }

    /// The bytes of entry `i`.
    fn bytes_of(&self, i: usize) -> &[u8] {
        let from = self.entries[i].start as usize;
        let to = self
            .entries
            .get(i + 1)
            .map_or(self.bytes.len(), |e| e.start as usize);
        self.bytes.get(from..to).unwrap_or_default()
    }

    fn push_entry(&mut self, at_ms: f64, dir: Direction, iface: u16, bytes: &[u8], before: bool) {
        self.entries.push(Entry {
            at_ms,
            // Bounded: device traffic by TRANSCRIPT_CAP, notes by what the harness writes.
            start: u32::try_from(self.bytes.len()).unwrap_or(u32::MAX),
            iface,
            dir,
            before_test: before,
        });
        self.bytes.extend_from_slice(bytes);
    }
}

/// The file entries move to. Each record: `at_ms` (f64), byte count (u32), interface index
/// (u16), direction (u8), before-test flag (u8), then the bytes; all little-endian.
#[derive(Debug, Default)]
struct Spill {
    file: Option<std::fs::File>,
    /// Set when the file could not be made or written: entries then stay in memory (bounded
    /// by the traffic cap as before) and the evidence says so.
    failed: Option<String>,
}

const RECORD_HEADER: usize = 16;

fn direction_code(d: Direction) -> u8 {
    match d {
        Direction::Tx => 0,
        Direction::Rx => 1,
        Direction::Note => 2,
    }
}

fn direction_of(code: u8) -> Direction {
    match code {
        0 => Direction::Tx,
        1 => Direction::Rx,
        _ => Direction::Note,
    }
}

impl Inner {
    /// Moves every entry but the last (which later chunks may still join) to the spill file
    /// once the entries in memory hold more than [`SPILL_AT`] bytes.
    fn maybe_spill(&mut self) {
        use std::io::Write as _;
        if self.bytes.len() <= SPILL_AT || self.entries.len() < 2 || self.spill.failed.is_some() {
            return;
        }
        let keep_from = self.entries.len() - 1;
        let cut = self.entries[keep_from].start as usize;
        let mut out = Vec::with_capacity(cut + keep_from * RECORD_HEADER);
        for i in 0..keep_from {
            let e = self.entries[i];
            let bytes = self.bytes_of(i);
            out.extend_from_slice(&e.at_ms.to_le_bytes());
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            out.extend_from_slice(&e.iface.to_le_bytes());
            out.push(direction_code(e.dir));
            out.push(u8::from(e.before_test));
            out.extend_from_slice(bytes);
        }
        let written = match self.spill.file.as_mut() {
            Some(f) => {
                // All or nothing: a record cut by a failed write (disk full) is taken back, so
                // the entries still in memory are not shown twice.
                let before = f.metadata().map(|m| m.len());
                f.write_all(&out).inspect_err(|_| {
                    if let Ok(len) = before {
                        let _ = f.set_len(len);
                    }
                })
            }
            None => {
                let made = match SPILL_DIR.get() {
                    Some(dir) => tempfile::tempfile_in(dir),
                    None => tempfile::tempfile(),
                };
                made.and_then(|mut f| {
                    f.write_all(&out)?;
                    self.spill.file = Some(f);
                    Ok(())
                })
            }
        };
        if let Err(e) = written {
            self.spill.failed = Some(e.to_string());
            return;
        }
        self.entries.drain(..keep_from);
        self.bytes.drain(..cut);
        self.entries[0].start = 0;
        // Give back what a burst grew: memory stays near SPILL_AT per transcript, without a
        // reallocation at every spill.
        if self.bytes.capacity() > 2 * SPILL_AT {
            self.bytes.shrink_to(SPILL_AT);
        }
        if self.entries.capacity() > 1024 {
            self.entries.shrink_to(256);
        }
    }

    /// Every entry with its bytes: those in the spill file, then those in memory.
    fn all_entries(&self) -> AllEntries {
        let mut data = Vec::new();
        let mut problem = self.spill.failed.as_ref().map(|e| {
            format!("could not move entries to a temporary file ({e}); they were kept in memory")
        });
        if let Some(f) = self.spill.file.as_ref() {
            // Read at offsets: the file position, where the next spill appends, never moves.
            use std::os::unix::fs::FileExt as _;
            let read = f.metadata().and_then(|m| {
                data = vec![0; usize::try_from(m.len()).unwrap_or(0)];
                f.read_exact_at(&mut data, 0)
            });
            if let Err(e) = read {
                problem = Some(format!(
                    "entries kept in a temporary file could not be read back ({e}); earlier entries are missing"
                ));
                data.clear();
            }
        }
        let mut list = Vec::new();
        let mut at = 0usize;
        while at + RECORD_HEADER <= data.len() {
            let h = &data[at..at + RECORD_HEADER];
            let at_ms = f64::from_le_bytes(h[0..8].try_into().unwrap_or_default());
            let len = u32::from_le_bytes(h[8..12].try_into().unwrap_or_default()) as usize;
            let iface = u16::from_le_bytes(h[12..14].try_into().unwrap_or_default());
            let body = at + RECORD_HEADER;
            if body + len > data.len() {
                problem = Some(
                    "the temporary file of earlier entries was cut short; some are missing".into(),
                );
                break;
            }
            let e = Entry {
                at_ms,
                start: 0,
                iface,
                dir: direction_of(h[14]),
                before_test: h[15] != 0,
            };
            list.push((e, body..body + len));
            at = body + len;
        }
        let base = data.len();
        for i in 0..self.entries.len() {
            let from = self.entries[i].start as usize;
            let to = from + self.bytes_of(i).len();
            list.push((self.entries[i], base + from..base + to));
        }
        data.extend_from_slice(&self.bytes);
        (list, data, problem)
    }
}

/// Every entry with the range of its bytes in one buffer, that buffer, and what went wrong
/// with the spill file, if anything.
type AllEntries = (
    Vec<(Entry, std::ops::Range<usize>)>,
    Vec<u8>,
    Option<String>,
);

/// A shared, append-only transcript.
#[derive(Debug, Clone)]
pub struct Transcript {
    inner: Arc<Mutex<Inner>>,
}

impl Default for Transcript {
    fn default() -> Self {
        Self::new()
    }
}

impl Transcript {
    pub fn new() -> Self {
        Transcript {
            inner: Arc::new(Mutex::new(Inner {
                start: Instant::now(),
                entries: Vec::new(),
                bytes: Vec::new(),
                ifaces: vec!["".into()],
                spill: Spill::default(),
                stored: 0,
                dropped: 0,
            })),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        let mut g = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut g)
    }

    /// Records bytes on an interface, stamped now.
    pub fn record(&self, dir: Direction, iface: &str, bytes: &[u8]) {
        self.push(dir, iface, bytes, Instant::now(), false);
    }

    /// Records bytes that arrived at `at` (the reader's stamp).
    pub fn record_at(&self, dir: Direction, iface: &str, bytes: &[u8], at: Instant) {
        self.push(dir, iface, bytes, at, false);
    }

    /// Records bytes that were waiting on a link when the test began: shown as *before test*,
    /// never merged with the test's own traffic.
    pub fn record_before_test(&self, dir: Direction, iface: &str, bytes: &[u8], at: Instant) {
        self.push(dir, iface, bytes, at, true);
    }

    fn push(&self, dir: Direction, iface: &str, bytes: &[u8], at: Instant, before_test: bool) {
        self.with(|t| {
            let room = TRANSCRIPT_CAP.saturating_sub(t.stored);
            let keep = bytes.len().min(room);
            t.dropped += bytes.len() - keep;
            if keep == 0 {
                return;
            }
            t.stored += keep;
            let at_ms = ms_since(t.start, at);
            let iface = t.iface_index(iface);
            if let Some(last) = t.entries.last() {
                if last.dir == dir
                    && dir == Direction::Rx
                    && last.iface == iface
                    && last.before_test == before_test
                    && (at_ms - last.at_ms).abs() <= MERGE_WINDOW.as_secs_f64() * 1000.0
                {
                    // The last entry's bytes end the buffer: extending it extends the entry.
                    t.bytes.extend_from_slice(&bytes[..keep]);
                    t.maybe_spill();
                    return;
                }
            }
            t.push_entry(at_ms, dir, iface, &bytes[..keep], before_test);
            t.maybe_spill();
        })
    }

    /// Adds a note (always kept, even past the cap).
    pub fn note(&self, text: impl AsRef<str>) {
        self.with(|t| {
            let at_ms = t.start.elapsed().as_secs_f64() * 1000.0;
            t.push_entry(at_ms, Direction::Note, 0, text.as_ref().as_bytes(), false);
            t.maybe_spill();
        })
    }

    /// Bytes of device traffic not stored because of the cap.
    pub fn dropped(&self) -> usize {
        self.with(|t| t.dropped)
    }

    /// The transcript as text: one entry per line in order of time, non-printable bytes
    /// escaped, secrets redacted.
    pub fn render(&self, redactor: &Redactor) -> String {
        self.with(|t| {
            let mut out = String::new();
            // In order of time: bytes a reader received while the harness was busy elsewhere
            // (e.g. during a `wait`) are recorded late but shown where they happened.
            let (entries, data, problem) = t.all_entries();
            let mut order: Vec<usize> = (0..entries.len()).collect();
            order.sort_by(|&a, &b| entries[a].0.at_ms.total_cmp(&entries[b].0.at_ms));
            let mut rows: Vec<(&Entry, String)> = order
                .iter()
                .map(|&i| {
                    let (e, range) = &entries[i];
                    let bytes = data.get(range.clone()).unwrap_or_default();
                    let body = match e.dir {
                        Direction::Note => String::from_utf8_lossy(bytes).into_owned(),
                        _ => escape(bytes),
                    };
                    (e, body)
                })
                .collect();
            // A secret a device echoed back in two reads: each piece alone may be too short
            // to be recognised, so consecutive pieces of one link are looked at together.
            for i in 1..rows.len() {
                let (prev, cur) = (rows[i - 1].0, rows[i].0);
                if prev.dir == Direction::Note || prev.dir != cur.dir || prev.iface != cur.iface {
                    continue;
                }
                if let Some((a, b)) = redactor.split_across(&rows[i - 1].1, &rows[i].1) {
                    let p = &mut rows[i - 1].1;
                    p.truncate(p.len() - a);
                    p.push_str(crate::secret::REDACTED);
                    let c = &mut rows[i].1;
                    c.replace_range(..b, crate::secret::REDACTED);
                }
            }
            for (e, body) in rows {
                let arrow = match e.dir {
                    Direction::Tx => "->",
                    Direction::Rx => "<-",
                    Direction::Note => "##",
                };
                let iface = t.ifaces.get(usize::from(e.iface)).map_or("", |n| &**n);
                let _ = writeln!(
                    out,
                    "[{:>10.3} ms] {:<8} {}{} {}",
                    e.at_ms,
                    iface,
                    arrow,
                    if e.before_test { " (before test)" } else { "" },
                    redactor.redact(&body)
                );
            }
            if let Some(p) = problem {
                let _ = writeln!(out, "## {p}");
            }
            if t.dropped > 0 {
                let _ = writeln!(
                    out,
                    "## {} further bytes of device traffic were not kept (cap {} bytes per test)",
                    t.dropped, TRANSCRIPT_CAP
                );
            }
            out
        })
    }
}

/// Signed milliseconds from `start` to `at`.
fn ms_since(start: Instant, at: Instant) -> f64 {
    if at >= start {
        at.duration_since(start).as_secs_f64() * 1000.0
    } else {
        -(start.duration_since(at).as_secs_f64() * 1000.0)
    }
}

/// Printable text stays as is; everything else is escaped (`\r`, `\n`, `\xNN`).
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_and_invalid_bytes() {
        assert_eq!(escape(b"ok\r\n\x00\xff"), "ok\\r\\n\\u{0}\\xff");
    }

    #[test]
    fn caps_traffic() {
        let t = Transcript::new();
        let chunk = vec![b'A'; 4096];
        for _ in 0..(TRANSCRIPT_CAP / 4096 + 10) {
            t.record(Direction::Rx, "console", &chunk);
        }
        assert_eq!(t.dropped(), 10 * 4096);
        assert!(t.render(&Redactor::default()).len() < TRANSCRIPT_CAP + 1000);
    }

    /// The stamp of a rendered line, in ms.
    fn stamps(rendered: &str) -> Vec<f64> {
        rendered
            .lines()
            .filter_map(|l| {
                let inner = l.strip_prefix('[')?.split(" ms]").next()?;
                inner.trim().parse().ok()
            })
            .collect()
    }

    #[test]
    fn chunks_keep_their_arrival_time() {
        let t = Transcript::new();
        let t0 = Instant::now();
        t.record_at(Direction::Rx, "console", b"Pass", t0);
        // Within the window: one entry.
        t.record_at(
            Direction::Rx,
            "console",
            b"word: ",
            t0 + Duration::from_micros(400),
        );
        // 200 ms later: its own entry with its own time, even though recorded together.
        t.record_at(
            Direction::Rx,
            "console",
            b"Login incorrect",
            t0 + Duration::from_millis(200),
        );
        let s = t.render(&Redactor::default());
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 2, "{s}");
        assert!(lines[0].ends_with("Password: "), "{s}");
        assert!(lines[1].ends_with("Login incorrect"), "{s}");
        let st = stamps(&s);
        assert!(st[1] - st[0] >= 199.0 && st[1] - st[0] <= 201.0, "{s}");
    }

    #[test]
    fn entries_are_shown_in_order_of_arrival() {
        let t = Transcript::new();
        let t0 = Instant::now();
        // Received during a wait, recorded after the note that followed it.
        t.note("waited");
        t.record_at(Direction::Rx, "console", b"early", t0);
        let s = t.render(&Redactor::default());
        let lines: Vec<&str> = s.lines().collect();
        assert!(lines[0].ends_with("<- early"), "{s}");
        assert!(lines[1].ends_with("## waited"), "{s}");
    }

    #[test]
    fn before_test_bytes_are_marked_and_kept_apart() {
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_millis(5));
        let t = Transcript::new();
        t.record_before_test(Direction::Rx, "console", b"late prompt", t0);
        t.record_at(Direction::Rx, "console", b"fresh", t0);
        let s = t.render(&Redactor::default());
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines.len(), 2, "{s}");
        assert!(lines[0].contains("<- (before test) late prompt"), "{s}");
        assert!(!lines[1].contains("before test"), "{s}");
        assert!(stamps(&s)[0] < 0.0, "{s}");
    }

    #[test]
    fn redacts_rendered_text() {
        let t = Transcript::new();
        t.record(Direction::Rx, "console", b"your password is hunter22\r\n");
        let mut r = Redactor::default();
        r.add("hunter22");
        let s = t.render(&r);
        assert!(!s.contains("hunter22"), "{s}");
    }

    #[test]
    fn long_transcripts_move_to_a_file_and_render_whole() {
        let t = Transcript::new();
        let start = Instant::now();
        for i in 0..5000u32 {
            let at = start + Duration::from_millis(u64::from(i) * 2);
            t.record_at(
                Direction::Rx,
                "console",
                format!("line {i}\n").as_bytes(),
                at,
            );
            t.record(Direction::Tx, "web", format!("GET /{i}\n").as_bytes());
            if i % 100 == 0 {
                t.note(format!("note {i}"));
            }
        }
        let (held, spilled) = t.with(|i| (i.bytes.capacity(), i.spill.file.is_some()));
        assert!(spilled, "entries past SPILL_AT went to the file");
        assert!(
            held <= 2 * SPILL_AT,
            "memory held stays near SPILL_AT: {held}"
        );
        let text = t.render(&Redactor::default());
        assert_eq!(
            text.lines().count(),
            5000 * 2 + 50,
            "every entry is rendered"
        );
        assert!(text.contains("console  <- line 0\\n"), "{}", &text[..200]);
        assert!(text.contains("console  <- line 4999\\n"));
        assert!(text.contains("web      -> GET /4999\\n"));
        assert!(text.contains("## note 4900"));
        assert!(
            !text.contains("temporary file"),
            "no spill problem is reported"
        );
        // Rendering twice gives the same text (the file is read from its start each time).
        assert_eq!(text, t.render(&Redactor::default()));
    }
}
