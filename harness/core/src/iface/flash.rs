//! Firmware images written to a unit through its debug port: the image formats a flash step
//! accepts (ELF, Intel HEX, raw binary at an address), and, for debug ports with no flash
//! algorithm of their own (a GDB stub), loading through memory writes with verification.
//!
//! Two halves:
//! - [`read_image`] turns a file into an [`Image`]: sorted, non-overlapping [`Segment`]s of
//!   bytes at addresses. ELF: the `PT_LOAD` program headers with file contents, at their
//!   physical (load) addresses `p_paddr`, so initialised data goes where the startup code
//!   copies it from (its flash copy), not to RAM; `.bss`-like segments (no file contents) are
//!   skipped. Intel HEX: data records placed by extended segment (type 02) and extended linear
//!   (type 04) address records. BIN: the whole file at the address given. Segments that touch
//!   are merged (so [`FlashReport::regions`] lists contiguous regions); segments that overlap
//!   are refused, since which copy would win is undefined. Files (and images) larger than
//!   [`MAX_IMAGE`] bytes are refused before they are read. Every [`ImageError`] names the file,
//!   what is wrong and what to do about it.
//! - [`load_via_memory`] writes an image through [`DebugAccess::write_memory`], in chunks of at
//!   most [`CHUNK`] bytes, and reads it back to compare when the request asks for
//!   verification. The core is halted first (code must not be rewritten under a running CPU)
//!   and is left halted: the caller resets the unit next, so it boots the new image.
//!
//! Loading through memory writes works where the debug port's memory writes reach the image's
//! memory: RAM, and the flash of an emulator whose GDB stub writes its ROM (QEMU's does, and
//! what it wrote survives `system_reset`). Real
//! flash needs a flash algorithm (erase, program): there the writes do not stick, and
//! verification reports the first address that differs and says so.
//!
//! Verify unless there is a reason not to: some stubs accept writes that go nowhere. QEMU's
//! (7.2) answers `OK` to writes at unmapped addresses and to peripheral registers and drops
//! them; only reading back shows it (an unmapped address is then refused, a register reads
//! back its own value).
//!
//! Evidence: every chunk written or read is noted in the transcript by the debug link itself
//! (`debug <iface>: wrote N bytes at 0xADDR: …`); the caller notes the [`FlashReport`] as the
//! summary.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object::read::elf::{FileHeader, ProgramHeader};
use object::Endianness;

use crate::iface::debug::{DebugAccess, MAX_ACCESS};
use crate::iface::LinkError;

/// How an image file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// ELF: its loadable segments at their physical (load) addresses.
    Elf,
    /// Intel HEX: its data records at their addresses.
    Hex,
    /// Raw bytes, written from `base`.
    Bin { base: u64 },
}

/// What a flash step asks for: a file in a format, verified after writing.
#[derive(Debug, Clone)]
pub struct FlashRequest {
    pub path: PathBuf,
    pub format: ImageFormat,
    /// Read back what was written and compare (on by default in board files).
    pub verify: bool,
}

/// Where a flash is at, for progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashProgress {
    /// Writing starts: `total` bytes in all.
    Started {
        total: u64,
    },
    /// `done` of `total` bytes written.
    Written {
        done: u64,
        total: u64,
    },
    /// Reading back `total` bytes to compare.
    Verifying {
        total: u64,
    },
    Finished,
}

/// Receives progress; called from whatever thread does the work, so it must be cheap.
pub type ProgressSink = Arc<dyn Fn(FlashProgress) + Send + Sync>;

/// What a flash did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlashReport {
    /// Bytes of image data written.
    pub bytes: u64,
    /// Contiguous regions written (address, length).
    pub regions: Vec<(u64, u64)>,
    /// Whether the written data was read back and matched.
    pub verified: bool,
}

/// Largest image file, and largest total of image data, [`read_image`] accepts: 64 MiB, far
/// more than any microcontroller's flash, small enough to hold in memory.
pub const MAX_IMAGE: u64 = 64 * 1024 * 1024;

/// Most bytes [`load_via_memory`] moves per `write_memory`/`read_memory` call. Chunks are
/// aligned to this size in the address space (the first and last of a segment may be shorter),
/// so they never straddle a 4 KiB boundary.
pub const CHUNK: usize = if MAX_ACCESS < 4096 { MAX_ACCESS } else { 4096 };
const _: () = assert!(CHUNK > 0 && CHUNK <= MAX_ACCESS && CHUNK <= 4096);

/// Bytes shown on each side of a verification mismatch.
const MISMATCH_SHOWN: usize = 8;

/// A firmware image: what goes where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Sorted by address; never empty, none empty, none overlapping or touching another (such
    /// segments are merged).
    pub segments: Vec<Segment>,
}

/// Bytes at an address. `address + data.len()` does not run past the end of the 64-bit
/// address space (nor past 4 GiB for a 32-bit ELF or Intel HEX).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub address: u64,
    pub data: Vec<u8>,
}

impl Segment {
    /// One past the last address, as `u128` so a segment ending at the top of the 64-bit
    /// address space has an end.
    fn end(&self) -> u128 {
        u128::from(self.address) + self.data.len() as u128
    }
}

impl Image {
    /// Bytes of image data in all segments.
    pub fn total_len(&self) -> u64 {
        self.segments.iter().map(|s| s.data.len() as u64).sum()
    }

    /// The contiguous regions, `(address, length)`, as [`FlashReport::regions`] lists them.
    pub fn regions(&self) -> Vec<(u64, u64)> {
        self.segments
            .iter()
            .map(|s| (s.address, s.data.len() as u64))
            .collect()
    }
}

/// Why an image file cannot be loaded. Each message starts with the file's path, says what is
/// wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{}: cannot read the image file: {detail}; check the flash step's path and the file's permissions", path.display())]
    Read { path: PathBuf, detail: String },
    #[error("{}: {what} is {size} bytes, more than the {MAX_IMAGE} bytes (64 MiB) an image may have; is this the right file?", path.display())]
    TooLarge {
        path: PathBuf,
        /// "the file" or "its loadable data".
        what: &'static str,
        size: u64,
    },
    #[error("{}: the file is empty; give the firmware image to write", path.display())]
    Empty { path: PathBuf },
    #[error("{}: not an ELF file (magic 7f 45 4c 46 missing); for Intel HEX use format = \"hex\", for a raw binary use format = \"bin\" with an address", path.display())]
    NotElf { path: PathBuf },
    #[error("{}: malformed ELF file: {detail}; rebuild it, or convert it with `objcopy -O ihex` and use format = \"hex\"", path.display())]
    BadElf { path: PathBuf, detail: String },
    #[error("{}: the ELF file has no loadable data (no PT_LOAD program header with file contents); link the firmware as an executable (not an object file or a debug-only ELF)", path.display())]
    NoLoadableData { path: PathBuf },
    #[error("{}: not an Intel HEX file ({detail}); for an ELF use format = \"elf\", for a raw binary use format = \"bin\" with an address", path.display())]
    NotHex { path: PathBuf, detail: String },
    #[error("{}: line {line}: {detail}; the file is damaged: regenerate it (e.g. `objcopy -O ihex`)", path.display())]
    Hex {
        path: PathBuf,
        line: usize,
        detail: String,
    },
    #[error("{}: {len} bytes at {address:#010x} run past the end of the {bits}-bit address space; check the image's addresses (or the address given for a raw binary)", path.display())]
    AddressOverflow {
        path: PathBuf,
        address: u64,
        len: u64,
        bits: u32,
    },
    #[error("{}: data at {first} overlaps data at {second}; which would be written last is undefined: fix the image (linker script, or the tool that merged it)", path.display())]
    Overlap {
        path: PathBuf,
        first: String,
        second: String,
    },
}

impl From<ImageError> for LinkError {
    /// An image that cannot be loaded fails the flash step as a protocol error carrying the
    /// image error's text; nothing was sent to the target.
    fn from(e: ImageError) -> LinkError {
        LinkError::Protocol(e.to_string())
    }
}

/// Reads the image `req` names in its format. Refuses files larger than [`MAX_IMAGE`] before
/// reading them (by their size on disk, and again while reading, for files whose size is not
/// known in advance). Blocking file I/O: from async code call it on a blocking thread, as
/// [`load_via_memory`] does.
pub fn read_image(req: &FlashRequest) -> Result<Image, ImageError> {
    let path = req.path.as_path();
    let bytes = read_bounded(path)?;
    if bytes.is_empty() {
        return Err(ImageError::Empty {
            path: path.to_path_buf(),
        });
    }
    let segments = match req.format {
        ImageFormat::Elf => elf_segments(path, &bytes)?,
        ImageFormat::Hex => hex_segments(path, &bytes)?,
        ImageFormat::Bin { base } => {
            check_span(path, base, bytes.len(), 64)?;
            vec![Segment {
                address: base,
                data: bytes,
            }]
        }
    };
    let image = normalise(path, segments)?;
    let total = image.total_len();
    if total > MAX_IMAGE {
        return Err(ImageError::TooLarge {
            path: path.to_path_buf(),
            what: "its loadable data",
            size: total,
        });
    }
    Ok(image)
}

/// The file's bytes, if it has at most [`MAX_IMAGE`] of them; refused by its metadata first,
/// so an oversized file is never read.
fn read_bounded(path: &Path) -> Result<Vec<u8>, ImageError> {
    let read_err = |e: std::io::Error| ImageError::Read {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    let too_large = |size| ImageError::TooLarge {
        path: path.to_path_buf(),
        what: "the file",
        size,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if meta.is_dir() {
        return Err(ImageError::Read {
            path: path.to_path_buf(),
            detail: "it is a directory".into(),
        });
    }
    if meta.len() > MAX_IMAGE {
        return Err(too_large(meta.len()));
    }
    // The size on disk is a hint (0 for a pipe or a device); the bound holds while reading.
    let hint = usize::try_from(meta.len()).unwrap_or(0);
    let mut bytes = Vec::with_capacity(hint);
    file.take(MAX_IMAGE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_IMAGE {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Checks that `len` bytes at `address` end within a `bits`-bit address space.
fn check_span(path: &Path, address: u64, len: usize, bits: u32) -> Result<(), ImageError> {
    let end = u128::from(address) + len as u128;
    if end > 1u128 << bits {
        return Err(ImageError::AddressOverflow {
            path: path.to_path_buf(),
            address,
            len: len as u64,
            bits,
        });
    }
    Ok(())
}

/// Sorts segments, drops empty ones, merges touching ones and refuses overlapping ones.
fn normalise(path: &Path, mut segments: Vec<Segment>) -> Result<Image, ImageError> {
    segments.retain(|s| !s.data.is_empty());
    segments.sort_by_key(|s| s.address);
    let mut out: Vec<Segment> = Vec::with_capacity(segments.len());
    for seg in segments {
        if let Some(last) = out.last_mut() {
            let last_end = last.end();
            if u128::from(seg.address) < last_end {
                return Err(ImageError::Overlap {
                    path: path.to_path_buf(),
                    first: range(last),
                    second: range(&seg),
                });
            }
            if u128::from(seg.address) == last_end {
                last.data.extend_from_slice(&seg.data);
                continue;
            }
        }
        out.push(seg);
    }
    if out.is_empty() {
        return Err(ImageError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(Image { segments: out })
}

/// `0xSTART..0xEND` (end exclusive) for messages.
fn range(seg: &Segment) -> String {
    format!("{:#010x}..{:#010x}", seg.address, seg.end())
}

// ---------------------------------------------------------------------------------------------
// ELF

fn elf_segments(path: &Path, bytes: &[u8]) -> Result<Vec<Segment>, ImageError> {
    if !bytes.starts_with(&object::elf::ELFMAG) {
        return Err(ImageError::NotElf {
            path: path.to_path_buf(),
        });
    }
    // e_ident[EI_CLASS], right after the magic.
    match bytes.get(4).copied() {
        Some(object::elf::ELFCLASS32) => {
            elf_loadable::<object::elf::FileHeader32<Endianness>>(path, bytes, 32)
        }
        Some(object::elf::ELFCLASS64) => {
            elf_loadable::<object::elf::FileHeader64<Endianness>>(path, bytes, 64)
        }
        other => Err(ImageError::BadElf {
            path: path.to_path_buf(),
            detail: match other {
                Some(c) => format!("unknown ELF class {c} (neither 32- nor 64-bit)"),
                None => "truncated header".into(),
            },
        }),
    }
}

/// The `PT_LOAD` segments with file contents of an ELF of class `Elf`, at `p_paddr`.
fn elf_loadable<Elf: FileHeader<Endian = Endianness>>(
    path: &Path,
    bytes: &[u8],
    bits: u32,
) -> Result<Vec<Segment>, ImageError> {
    let bad = |detail: String| ImageError::BadElf {
        path: path.to_path_buf(),
        detail,
    };
    let header = Elf::parse(bytes).map_err(|e| bad(format!("file header: {e}")))?;
    let endian = header
        .endian()
        .map_err(|e| bad(format!("file header: {e}")))?;
    let headers = header
        .program_headers(endian, bytes)
        .map_err(|e| bad(format!("program headers: {e}")))?;
    // First the sizes, so an image that is too large is refused before anything is copied.
    let mut loadable = Vec::new();
    let mut total: u64 = 0;
    for (index, ph) in headers.iter().enumerate() {
        if ph.p_type(endian) != object::elf::PT_LOAD {
            continue;
        }
        let filesz: u64 = ph.p_filesz(endian).into();
        if filesz == 0 {
            continue;
        }
        let address: u64 = ph.p_paddr(endian).into();
        let data = ph.data(endian, bytes).map_err(|()| {
            let offset: u64 = ph.p_offset(endian).into();
            bad(format!(
                "program header {index}: its {filesz} bytes at file offset {offset:#x} lie outside the file"
            ))
        })?;
        check_span(path, address, data.len(), bits)?;
        total = total.saturating_add(filesz);
        loadable.push((address, data));
    }
    if total > MAX_IMAGE {
        return Err(ImageError::TooLarge {
            path: path.to_path_buf(),
            what: "its loadable data",
            size: total,
        });
    }
    if loadable.is_empty() {
        return Err(ImageError::NoLoadableData {
            path: path.to_path_buf(),
        });
    }
    Ok(loadable
        .into_iter()
        .map(|(address, data)| Segment {
            address,
            data: data.to_vec(),
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// Intel HEX

/// How data record offsets become addresses: the last extended address record seen.
#[derive(Clone, Copy)]
enum HexBase {
    /// Extended segment address (type 02): base = value × 16; a record's offset wraps at 64 KiB.
    Segment(u64),
    /// Extended linear address (type 04): base = value × 65536; addresses run on linearly.
    Linear(u64),
}

fn hex_segments(path: &Path, bytes: &[u8]) -> Result<Vec<Segment>, ImageError> {
    let mut segments = Vec::new();
    let mut base = HexBase::Linear(0);
    let mut seen_record = false;
    let mut ended = false;
    let mut last_line = 0;
    for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = index + 1;
        let hex_err = |detail: String| ImageError::Hex {
            path: path.to_path_buf(),
            line,
            detail,
        };
        let Ok(text) = std::str::from_utf8(raw) else {
            if !seen_record {
                return Err(ImageError::NotHex {
                    path: path.to_path_buf(),
                    detail: format!("line {line} is not text"),
                });
            }
            return Err(hex_err("not text".into()));
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        if !text.starts_with(':') {
            if !seen_record {
                return Err(ImageError::NotHex {
                    path: path.to_path_buf(),
                    detail: format!("line {line} does not start with ':'"),
                });
            }
            return Err(hex_err("a record must start with ':'".into()));
        }
        seen_record = true;
        last_line = line;
        let record = ihex::Record::from_record_string(text)
            .map_err(|e| hex_err(format!("bad record: {e}")))?;
        match record {
            ihex::Record::Data { offset, value } => {
                place_hex_data(path, line, base, offset, value, &mut segments)?
            }
            ihex::Record::ExtendedSegmentAddress(v) => base = HexBase::Segment(u64::from(v) << 4),
            ihex::Record::ExtendedLinearAddress(v) => base = HexBase::Linear(u64::from(v) << 16),
            // Entry points: the reset vector decides where a microcontroller starts.
            ihex::Record::StartSegmentAddress { .. } | ihex::Record::StartLinearAddress(_) => {}
            ihex::Record::EndOfFile => {
                ended = true;
                break;
            }
        }
    }
    if !seen_record {
        return Err(ImageError::NotHex {
            path: path.to_path_buf(),
            detail: "no records".into(),
        });
    }
    if !ended {
        return Err(ImageError::Hex {
            path: path.to_path_buf(),
            line: last_line,
            detail: "no end-of-file record (:00000001FF): the file may be truncated".into(),
        });
    }
    Ok(segments)
}

/// Places one data record's bytes.
fn place_hex_data(
    path: &Path,
    line: usize,
    base: HexBase,
    offset: u16,
    value: Vec<u8>,
    segments: &mut Vec<Segment>,
) -> Result<(), ImageError> {
    if value.is_empty() {
        return Ok(());
    }
    match base {
        HexBase::Linear(base) => {
            let address = base + u64::from(offset);
            if u128::from(address) + value.len() as u128 > 1u128 << 32 {
                return Err(ImageError::Hex {
                    path: path.to_path_buf(),
                    line,
                    detail: format!(
                        "{} bytes at {address:#010x} run past the end of the 32-bit address space",
                        value.len()
                    ),
                });
            }
            segments.push(Segment {
                address,
                data: value,
            });
        }
        HexBase::Segment(base) => {
            // The offset wraps within the 64 KiB segment (Intel's I16HEX rule).
            let fits = (0x1_0000 - usize::from(offset)).min(value.len());
            let (head, tail) = value.split_at(fits);
            segments.push(Segment {
                address: base + u64::from(offset),
                data: head.to_vec(),
            });
            if !tail.is_empty() {
                segments.push(Segment {
                    address: base,
                    data: tail.to_vec(),
                });
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Loading through memory writes

/// The image's chunks: `(address, bytes)`, at most [`CHUNK`] bytes each, aligned to `CHUNK`.
fn chunks(image: &Image) -> impl Iterator<Item = (u64, &[u8])> {
    image.segments.iter().flat_map(|seg| {
        let mut offset = 0usize;
        std::iter::from_fn(move || {
            if offset >= seg.data.len() {
                return None;
            }
            // No overflow: read_image checked that every segment ends within the address space.
            let at = seg.address.wrapping_add(offset as u64);
            let into = (at % CHUNK as u64) as usize;
            let n = (CHUNK - into).min(seg.data.len() - offset);
            let part = &seg.data[offset..offset + n];
            offset += n;
            Some((at, part))
        })
    })
}

/// Bytes as `01 02 03` for a mismatch message.
fn spaced_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Compares what was read back at `at` with what was written; the message for the first
/// difference.
fn compare(path: &Path, at: u64, expected: &[u8], found: &[u8]) -> Result<(), LinkError> {
    if found.len() != expected.len() {
        return Err(LinkError::Protocol(format!(
            "verifying {}: reading back {} bytes at {at:#010x} returned {} bytes",
            path.display(),
            expected.len(),
            found.len()
        )));
    }
    let Some(first) = expected.iter().zip(found).position(|(e, f)| e != f) else {
        return Ok(());
    };
    let differing = expected.iter().zip(found).filter(|(e, f)| e != f).count();
    let shown = first..(first + MISMATCH_SHOWN).min(expected.len());
    Err(LinkError::Protocol(format!(
        "verifying {}: the target does not hold the image: at {:#010x} expected {} but found {} \
         ({differing} of the {} bytes at {at:#010x} differ); writes there do not stick: the \
         region may be read-only, or it is flash that needs a flash algorithm to program \
         (use a debug probe, e.g. a probe-rs port, rather than a GDB stub's memory writes)",
        path.display(),
        at + first as u64,
        spaced_hex(&expected[shown.clone()]),
        spaced_hex(&found[shown]),
        expected.len(),
    )))
}

/// Loads `req` through `debug`'s memory writes (for ports without a flash algorithm, e.g. a
/// GDB stub in front of an emulator), then verifies by reading back when asked.
///
/// In order: reads the image ([`read_image`], on a blocking thread; an [`ImageError`] becomes
/// `LinkError::Protocol` with its text, and nothing is sent to the target); halts the core
/// (rewriting code under a running CPU could execute half-written instructions); reports
/// [`FlashProgress::Started`], writes every chunk ([`CHUNK`] bytes at most, a
/// [`FlashProgress::Written`] after each); if `req.verify`, reports
/// [`FlashProgress::Verifying`] and reads every chunk back, failing with `LinkError::Protocol`
/// naming the first differing address, expected and found bytes; then reports
/// [`FlashProgress::Finished`].
///
/// **The core is left halted**, also when writing or verifying fails: the caller resets the
/// unit next so it starts from the new image's reset vector (a resumed core would run on with
/// stale state into new code). The debug link's own errors pass through unchanged (e.g.
/// `LinkError::Refused` for an address the target refuses, `LinkError::Closed`).
pub async fn load_via_memory<D: DebugAccess + ?Sized>(
    debug: &mut D,
    req: &FlashRequest,
    progress: &ProgressSink,
) -> Result<FlashReport, LinkError> {
    let owned = req.clone();
    let image = tokio::task::spawn_blocking(move || read_image(&owned))
        .await
        .map_err(|e| {
            LinkError::Protocol(format!(
                "reading the image {} failed: {e}",
                req.path.display()
            ))
        })??;
    let total = image.total_len();

    debug.halt().await?;
    progress(FlashProgress::Started { total });
    let mut done = 0u64;
    for (at, part) in chunks(&image) {
        debug.write_memory(at, part).await?;
        done += part.len() as u64;
        progress(FlashProgress::Written { done, total });
    }
    if req.verify {
        progress(FlashProgress::Verifying { total });
        for (at, part) in chunks(&image) {
            let found = debug.read_memory(at, part.len()).await?;
            compare(&req.path, at, part, &found)?;
        }
    }
    progress(FlashProgress::Finished);
    Ok(FlashReport {
        bytes: total,
        regions: image.regions(),
        verified: req.verify,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iface::debug::Register;
    use crate::transcript::Transcript;
    use std::collections::BTreeMap;
    use std::io::Write as _;
    use std::sync::Mutex;

    fn file(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(bytes).expect("write temp file");
        f
    }

    fn req(f: &tempfile::NamedTempFile, format: ImageFormat) -> FlashRequest {
        FlashRequest {
            path: f.path().to_path_buf(),
            format,
            verify: true,
        }
    }

    fn read(bytes: &[u8], format: ImageFormat) -> Result<Image, ImageError> {
        let f = file(bytes);
        read_image(&req(&f, format))
    }

    fn seg(address: u64, data: &[u8]) -> Segment {
        Segment {
            address,
            data: data.to_vec(),
        }
    }

    /// An Intel HEX record line with its checksum.
    fn record(kind: u8, offset: u16, data: &[u8]) -> String {
        let mut raw = vec![data.len() as u8, (offset >> 8) as u8, offset as u8, kind];
        raw.extend_from_slice(data);
        let sum = raw.iter().fold(0u8, |a, b| a.wrapping_add(*b));
        raw.push(sum.wrapping_neg());
        let hex: String = raw.iter().map(|b| format!("{b:02X}")).collect();
        format!(":{hex}\n")
    }

    const EOF: &str = ":00000001FF\n";

    /// One program header for [`elf`]: type, paddr, vaddr, file data, memsz.
    struct Ph<'a> {
        kind: u32,
        paddr: u64,
        vaddr: u64,
        data: &'a [u8],
        memsz: u64,
    }

    fn load(paddr: u64, data: &[u8]) -> Ph<'_> {
        Ph {
            kind: object::elf::PT_LOAD,
            paddr,
            vaddr: paddr,
            data,
            memsz: data.len() as u64,
        }
    }

    /// A little-endian ARM (32-bit) or x86-64 (64-bit) executable with these program headers
    /// and no sections.
    fn elf(bits64: bool, phs: &[Ph]) -> Vec<u8> {
        let (ehsize, phentsize) = if bits64 { (64usize, 56usize) } else { (52, 32) };
        let mut v = vec![0x7f, b'E', b'L', b'F', if bits64 { 2 } else { 1 }, 1, 1];
        v.resize(16, 0);
        let word = |v: &mut Vec<u8>, x: u64| {
            if bits64 {
                v.extend_from_slice(&x.to_le_bytes())
            } else {
                v.extend_from_slice(&(x as u32).to_le_bytes())
            }
        };
        v.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        v.extend_from_slice(&(if bits64 { 62u16 } else { 40u16 }).to_le_bytes());
        v.extend_from_slice(&1u32.to_le_bytes()); // version
        word(&mut v, 0x0800_0001); // entry
        word(&mut v, ehsize as u64); // phoff
        word(&mut v, 0); // shoff
        v.extend_from_slice(&0u32.to_le_bytes()); // flags
        v.extend_from_slice(&(ehsize as u16).to_le_bytes());
        v.extend_from_slice(&(phentsize as u16).to_le_bytes());
        v.extend_from_slice(&(phs.len() as u16).to_le_bytes());
        v.extend_from_slice(&(if bits64 { 64u16 } else { 40u16 }).to_le_bytes());
        v.extend_from_slice(&0u16.to_le_bytes());
        v.extend_from_slice(&0u16.to_le_bytes());
        assert_eq!(v.len(), ehsize);
        let mut offset = (ehsize + phentsize * phs.len()) as u64;
        for ph in phs {
            let filesz = ph.data.len() as u64;
            v.extend_from_slice(&ph.kind.to_le_bytes());
            if bits64 {
                v.extend_from_slice(&4u32.to_le_bytes()); // flags
            }
            word(&mut v, offset);
            word(&mut v, ph.vaddr);
            word(&mut v, ph.paddr);
            word(&mut v, filesz);
            word(&mut v, ph.memsz);
            if !bits64 {
                v.extend_from_slice(&4u32.to_le_bytes()); // flags
            }
            word(&mut v, 4); // align
            offset += filesz;
        }
        for ph in phs {
            v.extend_from_slice(ph.data);
        }
        v
    }

    #[test]
    fn hex_records_extended_linear_and_merging() {
        let hex = [
            record(4, 0, &[0x08, 0x00]),
            record(0, 0x0000, &[1, 2, 3, 4]),
            record(0, 0x0004, &[5, 6]),
            "\r\n".to_string(),
            record(0, 0x0100, &[7]),
            record(4, 0, &[0x20, 0x00]),
            record(0, 0x0010, &[9, 9]),
            record(5, 0, &[0x08, 0, 0, 1]),
            EOF.to_string(),
            "trailing junk after EOF is ignored\n".to_string(),
        ]
        .concat();
        let image = read(hex.as_bytes(), ImageFormat::Hex).unwrap();
        assert_eq!(
            image.segments,
            [
                seg(0x0800_0000, &[1, 2, 3, 4, 5, 6]),
                seg(0x0800_0100, &[7]),
                seg(0x2000_0010, &[9, 9]),
            ]
        );
        assert_eq!(image.total_len(), 9);
        assert_eq!(
            image.regions(),
            [(0x0800_0000, 6), (0x0800_0100, 1), (0x2000_0010, 2)]
        );
    }

    #[test]
    fn hex_records_out_of_order_are_sorted_and_merged() {
        let hex = [
            record(0, 0x0010, &[3, 4]),
            record(0, 0x0000, &[0; 16]),
            record(0, 0x0012, &[5]),
            EOF.to_string(),
        ]
        .concat();
        let image = read(hex.as_bytes(), ImageFormat::Hex).unwrap();
        let mut want = vec![0u8; 16];
        want.extend_from_slice(&[3, 4, 5]);
        assert_eq!(image.segments, [seg(0, &want)]);
    }

    #[test]
    fn hex_extended_segment_address_wraps_within_64k() {
        let hex = [
            record(2, 0, &[0x10, 0x00]), // base 0x10000
            record(0, 0xfffe, &[1, 2, 3, 4]),
            EOF.to_string(),
        ]
        .concat();
        let image = read(hex.as_bytes(), ImageFormat::Hex).unwrap();
        assert_eq!(
            image.segments,
            [seg(0x1_0000, &[3, 4]), seg(0x1_fffe, &[1, 2])]
        );
    }

    #[test]
    fn hex_bad_checksum_names_the_line() {
        let good = record(0, 0, &[1, 2, 3, 4]);
        let mut bad = record(0, 4, &[5, 6, 7, 8]);
        // Damage one data digit: the checksum no longer matches.
        bad.replace_range(10..11, if &bad[10..11] == "0" { "1" } else { "0" });
        let hex = [good, "\n".into(), bad, EOF.into()].concat();
        let f = file(hex.as_bytes());
        let e = read_image(&req(&f, ImageFormat::Hex)).unwrap_err();
        let m = e.to_string();
        assert!(matches!(e, ImageError::Hex { line: 3, .. }), "{e:?}");
        assert!(m.contains("line 3"), "{m}");
        assert!(m.contains("checksum"), "{m}");
        assert!(m.contains(&f.path().display().to_string()), "{m}");
        assert!(m.contains("regenerate"), "{m}");
    }

    #[test]
    fn hex_refusals() {
        let e = read(b"hello\n", ImageFormat::Hex).unwrap_err();
        assert!(matches!(e, ImageError::NotHex { .. }), "{e:?}");
        assert!(e.to_string().contains("format = \"bin\""), "{e}");
        let e = read(record(0, 0, &[1]).as_bytes(), ImageFormat::Hex).unwrap_err();
        assert!(e.to_string().contains("no end-of-file record"), "{e}");
        assert!(matches!(e, ImageError::Hex { line: 1, .. }), "{e:?}");
        let e = read(
            [record(0, 0, &[1]), ":zz\n".into(), EOF.into()]
                .concat()
                .as_bytes(),
            ImageFormat::Hex,
        )
        .unwrap_err();
        assert!(matches!(e, ImageError::Hex { line: 2, .. }), "{e:?}");
        // Past 4 GiB with a linear base.
        let e = read(
            [
                record(4, 0, &[0xff, 0xff]),
                record(0, 0xfffe, &[1, 2, 3]),
                EOF.into(),
            ]
            .concat()
            .as_bytes(),
            ImageFormat::Hex,
        )
        .unwrap_err();
        assert!(e.to_string().contains("32-bit address space"), "{e}");
        // Only an end record: nothing to write.
        let e = read(EOF.as_bytes(), ImageFormat::Hex).unwrap_err();
        assert!(matches!(e, ImageError::Empty { .. }), "{e:?}");
    }

    #[test]
    fn overlap_is_refused() {
        let hex = [
            record(0, 0x0000, &[1, 2, 3, 4]),
            record(0, 0x0002, &[9, 9]),
            EOF.to_string(),
        ]
        .concat();
        let e = read(hex.as_bytes(), ImageFormat::Hex).unwrap_err();
        let m = e.to_string();
        assert!(matches!(e, ImageError::Overlap { .. }), "{e:?}");
        assert!(m.contains("0x00000000..0x00000004"), "{m}");
        assert!(m.contains("0x00000002..0x00000004"), "{m}");
        let e = read(
            &elf(
                false,
                &[load(0x0800_0000, &[1; 16]), load(0x0800_000f, &[2; 4])],
            ),
            ImageFormat::Elf,
        )
        .unwrap_err();
        assert!(matches!(e, ImageError::Overlap { .. }), "{e:?}");
    }

    #[test]
    fn bin_at_base() {
        let image = read(&[1, 2, 3], ImageFormat::Bin { base: 0x0800_4000 }).unwrap();
        assert_eq!(image.segments, [seg(0x0800_4000, &[1, 2, 3])]);
        let e = read(&[1, 2, 3], ImageFormat::Bin { base: u64::MAX - 1 }).unwrap_err();
        assert!(matches!(e, ImageError::AddressOverflow { .. }), "{e:?}");
        assert!(e.to_string().contains("64-bit address space"), "{e}");
        // Ending exactly at the top of the address space is fine.
        let image = read(&[1, 2], ImageFormat::Bin { base: u64::MAX - 1 }).unwrap();
        assert_eq!(image.total_len(), 2);
        let e = read(&[], ImageFormat::Bin { base: 0 }).unwrap_err();
        assert!(matches!(e, ImageError::Empty { .. }), "{e:?}");
    }

    #[test]
    fn elf_loadable_segments_at_physical_addresses() {
        let bytes = elf(
            false,
            &[
                load(0x0800_0000, &[1, 2, 3, 4]),
                load(0x0800_0004, &[5, 6]),
                // .data: runs at 0x20000000, loaded from flash right after the code.
                Ph {
                    kind: object::elf::PT_LOAD,
                    paddr: 0x0800_0100,
                    vaddr: 0x2000_0000,
                    data: &[7, 8],
                    memsz: 2,
                },
                // .bss: no file contents.
                Ph {
                    kind: object::elf::PT_LOAD,
                    paddr: 0x2000_0002,
                    vaddr: 0x2000_0002,
                    data: &[],
                    memsz: 0x100,
                },
                // Not loadable.
                Ph {
                    kind: object::elf::PT_NOTE,
                    paddr: 0,
                    vaddr: 0,
                    data: &[0xee; 4],
                    memsz: 4,
                },
            ],
        );
        let image = read(&bytes, ImageFormat::Elf).unwrap();
        assert_eq!(
            image.segments,
            [
                seg(0x0800_0000, &[1, 2, 3, 4, 5, 6]),
                seg(0x0800_0100, &[7, 8])
            ]
        );
        // 64-bit ELF too.
        let image = read(
            &elf(true, &[load(0x1_0000_0000, &[1, 2])]),
            ImageFormat::Elf,
        )
        .unwrap();
        assert_eq!(image.segments, [seg(0x1_0000_0000, &[1, 2])]);
    }

    #[test]
    fn elf_refusals() {
        let e = read(b"\x00\x01\x02\x03 plain bytes", ImageFormat::Elf).unwrap_err();
        let m = e.to_string();
        assert!(matches!(e, ImageError::NotElf { .. }), "{e:?}");
        assert!(
            m.contains("not an ELF file (magic 7f 45 4c 46 missing)"),
            "{m}"
        );
        assert!(m.contains("format = \"bin\" with an address"), "{m}");

        let e = read(
            &elf(
                false,
                &[Ph {
                    kind: object::elf::PT_LOAD,
                    paddr: 0x2000_0000,
                    vaddr: 0x2000_0000,
                    data: &[],
                    memsz: 64,
                }],
            ),
            ImageFormat::Elf,
        )
        .unwrap_err();
        assert!(matches!(e, ImageError::NoLoadableData { .. }), "{e:?}");
        assert!(e.to_string().contains("no loadable data"), "{e}");

        let e = read(
            &elf(true, &[load(u64::MAX - 2, &[1, 2, 3, 4])]),
            ImageFormat::Elf,
        )
        .unwrap_err();
        assert!(
            matches!(e, ImageError::AddressOverflow { bits: 64, .. }),
            "{e:?}"
        );
        let e = read(
            &elf(false, &[load(0xffff_fffe, &[1, 2, 3, 4])]),
            ImageFormat::Elf,
        )
        .unwrap_err();
        assert!(
            matches!(e, ImageError::AddressOverflow { bits: 32, .. }),
            "{e:?}"
        );

        // Segment data past the end of the file.
        let mut bytes = elf(false, &[load(0x0800_0000, &[1; 64])]);
        bytes.truncate(bytes.len() - 10);
        let e = read(&bytes, ImageFormat::Elf).unwrap_err();
        assert!(matches!(e, ImageError::BadElf { .. }), "{e:?}");
        assert!(e.to_string().contains("outside the file"), "{e}");

        // A truncated header.
        let e = read(b"\x7fELF\x01", ImageFormat::Elf).unwrap_err();
        assert!(matches!(e, ImageError::BadElf { .. }), "{e:?}");
    }

    #[test]
    fn size_bound_is_checked_before_reading() {
        // A sparse file: its size is past the bound, but nothing is allocated or read.
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(MAX_IMAGE + 1).unwrap();
        for format in [
            ImageFormat::Elf,
            ImageFormat::Hex,
            ImageFormat::Bin { base: 0 },
        ] {
            let e = read_image(&req(&f, format)).unwrap_err();
            assert!(
                matches!(e, ImageError::TooLarge { size, .. } if size == MAX_IMAGE + 1),
                "{e:?}"
            );
            assert!(e.to_string().contains("64 MiB"), "{e}");
        }
        // A device with no size on disk is bounded while reading; /dev/null reads empty.
        let e = read_image(&FlashRequest {
            path: "/dev/null".into(),
            format: ImageFormat::Bin { base: 0 },
            verify: false,
        })
        .unwrap_err();
        assert!(matches!(e, ImageError::Empty { .. }), "{e:?}");
        let e = read_image(&FlashRequest {
            path: "/no/such/image.elf".into(),
            format: ImageFormat::Elf,
            verify: false,
        })
        .unwrap_err();
        assert!(matches!(e, ImageError::Read { .. }), "{e:?}");
        assert!(e.to_string().starts_with("/no/such/image.elf: "), "{e}");
    }

    #[test]
    fn chunks_are_aligned_and_bounded() {
        let image = Image {
            segments: vec![seg(0x0800_0ff0, &[0; 0x2020]), seg(0x2000_0000, &[1; 3])],
        };
        let parts: Vec<(u64, usize)> = chunks(&image).map(|(a, p)| (a, p.len())).collect();
        assert_eq!(
            parts,
            [
                (0x0800_0ff0, 0x10),
                (0x0800_1000, 0x1000),
                (0x0800_2000, 0x1000),
                (0x0800_3000, 0x10),
                (0x2000_0000, 3),
            ]
        );
    }

    /// Memory as a map; addresses in `sticky_not` ignore writes (read back as 0); addresses at
    /// or past `unmapped` are refused.
    #[derive(Default)]
    struct FakeDebug {
        memory: BTreeMap<u64, u8>,
        read_only: std::ops::Range<u64>,
        unmapped: u64,
        halted: bool,
        calls: Vec<String>,
    }

    #[async_trait::async_trait]
    impl DebugAccess for FakeDebug {
        async fn halt(&mut self) -> Result<(), LinkError> {
            self.halted = true;
            self.calls.push("halt".into());
            Ok(())
        }
        async fn resume(&mut self) -> Result<(), LinkError> {
            self.halted = false;
            self.calls.push("resume".into());
            Ok(())
        }
        async fn read_memory(&mut self, address: u64, len: usize) -> Result<Vec<u8>, LinkError> {
            assert!(len <= CHUNK);
            self.calls.push(format!("read {address:#x} {len}"));
            Ok((0..len as u64)
                .map(|i| self.memory.get(&(address + i)).copied().unwrap_or(0))
                .collect())
        }
        async fn write_memory(&mut self, address: u64, data: &[u8]) -> Result<(), LinkError> {
            assert!(data.len() <= CHUNK);
            assert!(self.halted, "written while running");
            self.calls
                .push(format!("write {address:#x} {}", data.len()));
            if address + data.len() as u64 > self.unmapped {
                return Err(LinkError::Refused(format!("write at {address:#x}: E14")));
            }
            for (i, b) in data.iter().enumerate() {
                let a = address + i as u64;
                if !self.read_only.contains(&a) {
                    self.memory.insert(a, *b);
                }
            }
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
            req: &FlashRequest,
            progress: &ProgressSink,
        ) -> Result<FlashReport, LinkError> {
            load_via_memory(self, req, progress).await
        }
        fn is_closed(&self) -> bool {
            false
        }
        fn set_transcript(&mut self, _t: Transcript) {}
        fn set_quiet(&mut self, _quiet: bool) {}
    }

    fn recorder() -> (ProgressSink, Arc<Mutex<Vec<FlashProgress>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        (Arc::new(move |p| log.lock().unwrap().push(p)), seen)
    }

    #[tokio::test]
    async fn loads_verifies_and_reports_progress() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let f = file(&data);
        let mut debug = FakeDebug {
            unmapped: u64::MAX,
            ..FakeDebug::default()
        };
        let (sink, seen) = recorder();
        let report = debug
            .flash(&req(&f, ImageFormat::Bin { base: 0x2000_0000 }), &sink)
            .await
            .unwrap();
        assert_eq!(
            report,
            FlashReport {
                bytes: 10_000,
                regions: vec![(0x2000_0000, 10_000)],
                verified: true
            }
        );
        assert!(debug.halted, "left halted");
        assert_eq!(debug.calls[0], "halt");
        assert!(!debug.calls.iter().any(|c| c == "resume"));
        let seen = seen.lock().unwrap().clone();
        assert_eq!(
            seen,
            [
                FlashProgress::Started { total: 10_000 },
                FlashProgress::Written {
                    done: 4096,
                    total: 10_000
                },
                FlashProgress::Written {
                    done: 8192,
                    total: 10_000
                },
                FlashProgress::Written {
                    done: 10_000,
                    total: 10_000
                },
                FlashProgress::Verifying { total: 10_000 },
                FlashProgress::Finished,
            ]
        );
        assert_eq!(
            debug.calls.iter().filter(|c| c.starts_with("read")).count(),
            3
        );
    }

    #[tokio::test]
    async fn mismatch_names_address_and_bytes() {
        let data: Vec<u8> = (1..=64u8).collect();
        let f = file(&data);
        let mut debug = FakeDebug {
            read_only: 0x1000_0010..0x1000_0020,
            unmapped: u64::MAX,
            ..FakeDebug::default()
        };
        let (sink, seen) = recorder();
        let e = debug
            .flash(&req(&f, ImageFormat::Bin { base: 0x1000_0000 }), &sink)
            .await
            .unwrap_err();
        let LinkError::Protocol(m) = &e else {
            panic!("{e:?}")
        };
        assert!(
            m.contains(
                "at 0x10000010 expected 11 12 13 14 15 16 17 18 but found 00 00 00 00 00 00 00 00"
            ),
            "{m}"
        );
        assert!(m.contains("16 of the 64 bytes at 0x10000000 differ"), "{m}");
        assert!(
            m.contains("read-only") && m.contains("flash algorithm"),
            "{m}"
        );
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.last(), Some(&FlashProgress::Verifying { total: 64 }));
        assert!(debug.halted);

        // Without verification the same load "succeeds", unverified.
        let mut r = req(&f, ImageFormat::Bin { base: 0x1000_0000 });
        r.verify = false;
        let (sink, seen) = recorder();
        let report = debug.flash(&r, &sink).await.unwrap();
        assert!(!report.verified);
        assert_eq!(seen.lock().unwrap().last(), Some(&FlashProgress::Finished));
    }

    #[tokio::test]
    async fn errors_pass_through_and_bad_images_send_nothing() {
        let f = file(&[1; 100]);
        let mut debug = FakeDebug {
            unmapped: 0x6000_0000,
            ..FakeDebug::default()
        };
        let (sink, _) = recorder();
        let e = debug
            .flash(&req(&f, ImageFormat::Bin { base: 0x6000_0000 }), &sink)
            .await
            .unwrap_err();
        assert!(matches!(e, LinkError::Refused(_)), "{e:?}");

        let mut debug = FakeDebug::default();
        let e = debug
            .flash(&req(&f, ImageFormat::Elf), &sink)
            .await
            .unwrap_err();
        assert!(
            matches!(e, LinkError::Protocol(ref m) if m.contains("not an ELF file")),
            "{e:?}"
        );
        assert!(debug.calls.is_empty(), "nothing sent: {:?}", debug.calls);
    }
}
