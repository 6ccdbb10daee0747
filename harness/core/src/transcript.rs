//! The evidence of one test: every byte exchanged with the unit, timestamped, bounded in size.
//!
//! Interfaces append what they send and receive; suites append notes (what they concluded and
//! why). Rendering escapes non-printable bytes and applies the redactor, so the text written to
//! disk never contains a known secret.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::secret::Redactor;

/// Most bytes of device traffic kept per test; the rest is counted, not stored.
pub const TRANSCRIPT_CAP: usize = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Harness to device.
    Tx,
    /// Device to harness.
    Rx,
    /// A note from the harness or a suite.
    Note,
}

#[derive(Debug, Clone)]
struct Entry {
    at_ms: f64,
    dir: Direction,
    iface: String,
    bytes: Vec<u8>,
}

#[derive(Debug)]
struct Inner {
    start: Instant,
    entries: Vec<Entry>,
    stored: usize,
    dropped: usize,
}

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

    /// Records bytes on an interface. Consecutive chunks in one direction are merged.
    pub fn record(&self, dir: Direction, iface: &str, bytes: &[u8]) {
        self.with(|t| {
            let room = TRANSCRIPT_CAP.saturating_sub(t.stored);
            let keep = bytes.len().min(room);
            t.dropped += bytes.len() - keep;
            if keep == 0 {
                return;
            }
            t.stored += keep;
            let at_ms = t.start.elapsed().as_secs_f64() * 1000.0;
            if let Some(last) = t.entries.last_mut() {
                if last.dir == dir && dir == Direction::Rx && last.iface == iface {
                    last.bytes.extend_from_slice(&bytes[..keep]);
                    return;
                }
            }
            t.entries.push(Entry {
                at_ms,
                dir,
                iface: iface.to_string(),
                bytes: bytes[..keep].to_vec(),
            });
        })
    }

    /// Adds a note (always kept, even past the cap).
    pub fn note(&self, text: impl AsRef<str>) {
        self.with(|t| {
            let at_ms = t.start.elapsed().as_secs_f64() * 1000.0;
            t.entries.push(Entry {
                at_ms,
                dir: Direction::Note,
                iface: String::new(),
                bytes: text.as_ref().as_bytes().to_vec(),
            });
        })
    }

    /// Bytes of device traffic not stored because of the cap.
    pub fn dropped(&self) -> usize {
        self.with(|t| t.dropped)
    }

    /// The transcript as text: one entry per line, non-printable bytes escaped, secrets redacted.
    pub fn render(&self, redactor: &Redactor) -> String {
        self.with(|t| {
            let mut out = String::new();
            for e in &t.entries {
                let arrow = match e.dir {
                    Direction::Tx => "->",
                    Direction::Rx => "<-",
                    Direction::Note => "##",
                };
                let body = match e.dir {
                    Direction::Note => String::from_utf8_lossy(&e.bytes).into_owned(),
                    _ => escape(&e.bytes),
                };
                let _ = writeln!(
                    out,
                    "[{:>10.3} ms] {:<8} {} {}",
                    e.at_ms,
                    e.iface,
                    arrow,
                    redactor.redact(&body)
                );
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

    #[test]
    fn redacts_rendered_text() {
        let t = Transcript::new();
        t.record(Direction::Rx, "console", b"your password is hunter22\r\n");
        let mut r = Redactor::default();
        r.add("hunter22");
        let s = t.render(&r);
        assert!(!s.contains("hunter22"), "{s}");
    }
}
