//! Typed errors for the whole crate.
//!
//! Exists so that every failure names *what* is wrong and *where* (a byte offset for malformed
//! images, a path for files) and, where the caller can act on it, *what to do next*. Parsing
//! errors are kept in their own enum ([`ParseError`]) because verification reports them as a
//! rejection reason rather than as a failure of the tool.

use std::path::PathBuf;

/// An image could not be parsed. Every variant carries the byte offset of the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The file ends before a structure that must be there.
    #[error(
        "truncated {what} at byte offset {offset}: it needs {need} bytes but the file has only \
         {available} from there"
    )]
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// Where it starts.
        offset: u64,
        /// How many bytes it needs.
        need: u64,
        /// How many bytes the file has from `offset` on.
        available: u64,
    },

    /// The first four bytes are not MCUboot's image magic.
    #[error(
        "bad image magic 0x{found:08x} at byte offset 0 (expected 0x96f3b83d): this is not an \
         MCUboot image; sign a raw binary with `hilsec image sign` first"
    )]
    BadMagic {
        /// The value found.
        found: u32,
    },

    /// `ih_hdr_size` is smaller than the 32-byte header itself.
    #[error(
        "header size {hdr_size} (field at byte offset 8) is smaller than the 32-byte MCUboot image \
         header"
    )]
    HeaderTooSmall {
        /// The value found.
        hdr_size: u16,
    },

    /// A region declared by a length field extends past the end of the file.
    #[error(
        "{what} declared by the field at byte offset {field_offset} spans bytes {start}..{end}, \
         past the end of the file ({file_len} bytes)"
    )]
    PastEnd {
        /// The region.
        what: &'static str,
        /// Offset of the length field that declares it.
        field_offset: u64,
        /// Where the region starts.
        start: u64,
        /// Where it would end.
        end: u64,
        /// The file length.
        file_len: u64,
    },

    /// A TLV info header carries the wrong magic.
    #[error("bad {what} magic 0x{found:04x} at byte offset {offset} (expected 0x{expected:04x})")]
    BadTlvInfoMagic {
        /// "protected TLV info" or "TLV info".
        what: &'static str,
        /// Where the info header is.
        offset: u64,
        /// The value found.
        found: u16,
        /// The value expected.
        expected: u16,
    },

    /// The protected TLV area's own length disagrees with the header's `ih_protect_tlv_size`.
    #[error(
        "protected TLV area at byte offset {offset} says it is {info_len} bytes long, but the \
         header (field at byte offset 10) says {header_len}"
    )]
    ProtectedSizeMismatch {
        /// Where the protected TLV info header is.
        offset: u64,
        /// `ih_protect_tlv_size` from the header.
        header_len: u16,
        /// `it_tlv_tot` from the protected TLV info.
        info_len: u16,
    },

    /// A TLV area length is smaller than its own 4-byte info header.
    #[error("{what} length {len} at byte offset {offset} is smaller than its 4-byte info header")]
    TlvAreaTooSmall {
        /// Which area.
        what: &'static str,
        /// Where the info header is.
        offset: u64,
        /// The length found.
        len: u16,
    },

    /// A TLV entry (its 4-byte header or its value) runs past the end of its TLV area.
    #[error(
        "TLV entry at byte offset {offset} (type 0x{kind:04x}, length {len}) runs past the end of \
         its TLV area at byte {area_end}"
    )]
    TlvPastArea {
        /// Where the TLV entry header is.
        offset: u64,
        /// Its type (0 when even the type could not be read).
        kind: u16,
        /// Its declared value length.
        len: u16,
        /// Where the enclosing TLV area ends.
        area_end: u64,
    },
}

impl ParseError {
    /// The byte offset the error is about.
    pub fn offset(&self) -> u64 {
        match self {
            ParseError::Truncated { offset, .. } => *offset,
            ParseError::BadMagic { .. } => 0,
            ParseError::HeaderTooSmall { .. } => 8,
            ParseError::PastEnd { field_offset, .. } => *field_offset,
            ParseError::BadTlvInfoMagic { offset, .. } => *offset,
            ParseError::ProtectedSizeMismatch { offset, .. } => *offset,
            ParseError::TlvAreaTooSmall { offset, .. } => *offset,
            ParseError::TlvPastArea { offset, .. } => *offset,
        }
    }
}

/// Any failure of this crate's operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The image is malformed.
    #[error("{context}: {source}")]
    Parse {
        /// Which file or input.
        context: String,
        /// What is wrong.
        #[source]
        source: ParseError,
    },

    /// Reading or writing a file failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// "read" or "write".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A key file is not one of the PEM keys imgtool writes, or the key cannot do what was asked.
    #[error("{0}")]
    Key(String),

    /// A version string is not `X.Y.Z[+B]` within the header's field widths.
    #[error("invalid version {input:?}: {reason}; expected MAJOR.MINOR.REVISION[+BUILD] like 1.2.3 or 1.2.3+4 (major and minor 0-255, revision 0-65535, build 0-4294967295; later parts optional)")]
    Version {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Signing could not produce an image (too large, bad header size, ...).
    #[error("cannot sign: {0}")]
    Sign(String),

    /// A mutation could not be made from the inputs given.
    #[error("cannot make the {kind} variant: {reason}")]
    Mutate {
        /// The mutation kind's CLI name.
        kind: &'static str,
        /// What is missing or wrong.
        reason: String,
    },

    /// Unknown mutation kind name.
    #[error("unknown mutation kind {0:?}; known kinds: {1}")]
    UnknownMutation(String, String),
}

impl Error {
    pub(crate) fn parse(context: impl Into<String>, source: ParseError) -> Self {
        Error::Parse {
            context: context.into(),
            source,
        }
    }
}
