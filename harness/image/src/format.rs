//! MCUboot's image format: the 32-byte header, the payload, and the TLV areas, as MCUboot's
//! `bootutil` reads them and `imgtool` writes them (little-endian, the default of both).
//!
//! Exists so that every other module works on one bounds-checked view of an image. Parsing never
//! panics and never allocates more than a small multiple of the input's own length: every length
//! read from the file is checked against the file before it is used, in `u64` so nothing
//! overflows.
//!
//! Layout (offsets from the start of the file):
//!
//! ```text
//! 0               header (32 bytes) + padding up to ih_hdr_size
//! hdr_size        payload (ih_img_size bytes)
//! hdr+img         protected TLV area, if ih_protect_tlv_size > 0:
//!                   info {magic 0x6908, tlv_tot = ih_protect_tlv_size} + TLVs
//! ...             TLV area: info {magic 0x6907, tlv_tot} + TLVs (SHA256, KEYHASH, signature)
//! ...             anything after: ignored by MCUboot (slot padding, appended data)
//! ```
//!
//! The SHA-256 in the TLV area covers everything from byte 0 to the end of the protected TLV area.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::error::{Error, ParseError};

/// MCUboot's image magic (`IMAGE_MAGIC`).
pub const IMAGE_MAGIC: u32 = 0x96f3_b83d;
/// Size of the fixed image header (`IMAGE_HEADER_SIZE`).
pub const HEADER_LEN: usize = 32;
/// Magic of the (unprotected) TLV info header.
pub const TLV_INFO_MAGIC: u16 = 0x6907;
/// Magic of the protected TLV info header.
pub const TLV_PROT_INFO_MAGIC: u16 = 0x6908;
/// Size of a TLV info header and of a TLV entry header.
pub const TLV_HEADER_LEN: usize = 4;

/// Header flag bits (`IMAGE_F_*`), with the names imgtool uses.
pub const FLAG_NAMES: &[(u32, &str)] = &[
    (0x0000_0001, "PIC"),
    (0x0000_0004, "ENCRYPTED_AES128"),
    (0x0000_0008, "ENCRYPTED_AES256"),
    (0x0000_0010, "NON_BOOTABLE"),
    (0x0000_0020, "RAM_LOAD"),
    (0x0000_0100, "ROM_FIXED"),
    (0x0000_0200, "COMPRESSED_LZMA1"),
    (0x0000_0400, "COMPRESSED_LZMA2"),
    (0x0000_0800, "COMPRESSED_ARM_THUMB"),
];

/// Both encryption flag bits.
pub const FLAGS_ENCRYPTED: u32 = 0x0000_000c;

/// TLV type numbers (`IMAGE_TLV_*`).
pub mod tlv {
    /// SHA-256 of the public key (DER as imgtool embeds it).
    pub const KEYHASH: u16 = 0x01;
    /// The whole public key (imgtool `--public-key-format full`).
    pub const PUBKEY: u16 = 0x02;
    /// SHA-256 of header + payload + protected TLVs.
    pub const SHA256: u16 = 0x10;
    /// SHA-384 image hash.
    pub const SHA384: u16 = 0x11;
    /// SHA-512 image hash.
    pub const SHA512: u16 = 0x12;
    /// RSA-2048 PSS signature.
    pub const RSA2048_PSS: u16 = 0x20;
    /// ECDSA signature (ASN.1 DER); `ECDSA256` in older MCUboot.
    pub const ECDSA_SIG: u16 = 0x22;
    /// RSA-3072 PSS signature.
    pub const RSA3072_PSS: u16 = 0x23;
    /// Ed25519 signature.
    pub const ED25519: u16 = 0x24;
    /// Marks a "pure" signature over the whole image instead of its hash.
    pub const SIG_PURE: u16 = 0x25;
    /// Security counter (protected).
    pub const SEC_CNT: u16 = 0x50;
}

/// Name of a TLV type, as imgtool's `TLV_VALUES` spells it, or `None` when unknown.
pub fn tlv_name(kind: u16) -> Option<&'static str> {
    Some(match kind {
        0x01 => "KEYHASH",
        0x02 => "PUBKEY",
        0x10 => "SHA256",
        0x11 => "SHA384",
        0x12 => "SHA512",
        0x20 => "RSA2048",
        0x22 => "ECDSASIG",
        0x23 => "RSA3072",
        0x24 => "ED25519",
        0x25 => "SIG_PURE",
        0x30 => "ENCRSA2048",
        0x31 => "ENCKW",
        0x32 => "ENCEC256",
        0x33 => "ENCX25519",
        0x34 => "ENCX25519_SHA512",
        0x40 => "DEPENDENCY",
        0x50 => "SEC_CNT",
        0x60 => "BOOT_RECORD",
        0x70 => "DECOMP_SIZE",
        0x71 => "DECOMP_SHA",
        0x72 => "DECOMP_SIGNATURE",
        0x73 => "COMP_DEC_SIZE",
        0x74 => "UUID_VID",
        0x75 => "UUID_CID",
        _ => return None,
    })
}

/// Whether a TLV type holds a signature.
pub fn is_signature_tlv(kind: u16) -> bool {
    matches!(
        kind,
        tlv::RSA2048_PSS | tlv::ECDSA_SIG | tlv::RSA3072_PSS | tlv::ED25519
    )
}

/// An image version, `major.minor.revision+build` (`struct image_version`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Version {
    /// `iv_major`.
    pub major: u8,
    /// `iv_minor`.
    pub minor: u8,
    /// `iv_revision`.
    pub revision: u16,
    /// `iv_build_num`.
    pub build: u32,
}

impl Version {
    /// A version from its four parts.
    pub const fn new(major: u8, minor: u8, revision: u16, build: u32) -> Self {
        Version {
            major,
            minor,
            revision,
            build,
        }
    }

    /// Compares like MCUboot's downgrade prevention does by default: major, minor and revision;
    /// the build number is ignored (it counts only with `MCUBOOT_VERSION_CMP_USE_BUILD_NUMBER`).
    pub fn cmp_without_build(&self, other: &Version) -> std::cmp::Ordering {
        (self.major, self.minor, self.revision).cmp(&(other.major, other.minor, other.revision))
    }

    /// The next lower version ignoring the build number (revision, then minor, then major is
    /// decremented), or `None` for 0.0.0.
    pub fn next_lower(&self) -> Option<Version> {
        if self.revision > 0 {
            Some(Version::new(self.major, self.minor, self.revision - 1, 0))
        } else if self.minor > 0 {
            Some(Version::new(self.major, self.minor - 1, u16::MAX, 0))
        } else if self.major > 0 {
            Some(Version::new(self.major - 1, u8::MAX, u16::MAX, 0))
        } else {
            None
        }
    }

    fn parse_part<T: FromStr>(input: &str, part: &str, name: &str) -> Result<T, Error> {
        let bad = |reason: String| Error::Version {
            input: input.to_string(),
            reason,
        };
        if part.is_empty() {
            return Err(bad(format!("the {name} part is empty")));
        }
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(format!(
                "the {name} part {part:?} is not a decimal number"
            )));
        }
        if part.len() > 1 && part.starts_with('0') {
            // imgtool's version regex rejects leading zeros; so do we, to stay interchangeable.
            return Err(bad(format!("the {name} part {part:?} has a leading zero")));
        }
        part.parse::<T>()
            .map_err(|_| bad(format!("the {name} part {part} is too large")))
    }
}

impl FromStr for Version {
    type Err = Error;

    /// Parses `MAJOR[.MINOR[.REVISION[+BUILD]]]`, the syntax `imgtool sign --version` takes.
    fn from_str(s: &str) -> Result<Self, Error> {
        let (main, build) = match s.split_once('+') {
            Some((m, b)) => (m, Some(b)),
            None => (s, None),
        };
        let parts: Vec<&str> = main.split('.').collect();
        if parts.len() > 3 {
            return Err(Error::Version {
                input: s.to_string(),
                reason: "it has more than three dot-separated parts".into(),
            });
        }
        if build.is_some() && parts.len() != 3 {
            return Err(Error::Version {
                input: s.to_string(),
                reason: "a +BUILD part needs all of MAJOR.MINOR.REVISION before it".into(),
            });
        }
        let major = Self::parse_part::<u8>(s, parts[0], "major")?;
        let minor = match parts.get(1) {
            Some(p) => Self::parse_part::<u8>(s, p, "minor")?,
            None => 0,
        };
        let revision = match parts.get(2) {
            Some(p) => Self::parse_part::<u16>(s, p, "revision")?,
            None => 0,
        };
        let build = match build {
            Some(b) => Self::parse_part::<u32>(s, b, "build")?,
            None => 0,
        };
        Ok(Version::new(major, minor, revision, build))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}+{}",
            self.major, self.minor, self.revision, self.build
        )
    }
}

impl Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The fixed 32-byte image header (`struct image_header`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Header {
    /// `ih_magic`.
    pub magic: u32,
    /// `ih_load_addr`.
    pub load_addr: u32,
    /// `ih_hdr_size`: bytes before the payload (header plus padding).
    pub hdr_size: u16,
    /// `ih_protect_tlv_size`: bytes of the protected TLV area, info header included.
    pub protect_tlv_size: u16,
    /// `ih_img_size`: payload bytes.
    pub img_size: u32,
    /// `ih_flags`.
    pub flags: u32,
    /// `ih_ver`.
    pub version: Version,
    /// `_pad1`.
    pub pad1: u32,
}

/// Byte offsets of the header fields, for error messages and mutations.
pub mod field {
    /// `ih_magic`.
    pub const MAGIC: usize = 0;
    /// `ih_load_addr`.
    pub const LOAD_ADDR: usize = 4;
    /// `ih_hdr_size`.
    pub const HDR_SIZE: usize = 8;
    /// `ih_protect_tlv_size`.
    pub const PROTECT_TLV_SIZE: usize = 10;
    /// `ih_img_size`.
    pub const IMG_SIZE: usize = 12;
    /// `ih_flags`.
    pub const FLAGS: usize = 16;
    /// `ih_ver`.
    pub const VERSION: usize = 20;
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Header {
    /// Decodes the first 32 bytes. Checks only that they are there; see [`Image::parse`] for the
    /// rest.
    pub fn decode(bytes: &[u8]) -> Result<Header, ParseError> {
        if bytes.len() < HEADER_LEN {
            return Err(ParseError::Truncated {
                what: "image header",
                offset: 0,
                need: HEADER_LEN as u64,
                available: bytes.len() as u64,
            });
        }
        Ok(Header {
            magic: le32(bytes, 0),
            load_addr: le32(bytes, 4),
            hdr_size: le16(bytes, 8),
            protect_tlv_size: le16(bytes, 10),
            img_size: le32(bytes, 12),
            flags: le32(bytes, 16),
            version: Version {
                major: bytes[20],
                minor: bytes[21],
                revision: le16(bytes, 22),
                build: le32(bytes, 24),
            },
            pad1: le32(bytes, 28),
        })
    }

    /// Encodes the header into its 32 bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&self.magic.to_le_bytes());
        b[4..8].copy_from_slice(&self.load_addr.to_le_bytes());
        b[8..10].copy_from_slice(&self.hdr_size.to_le_bytes());
        b[10..12].copy_from_slice(&self.protect_tlv_size.to_le_bytes());
        b[12..16].copy_from_slice(&self.img_size.to_le_bytes());
        b[16..20].copy_from_slice(&self.flags.to_le_bytes());
        b[20] = self.version.major;
        b[21] = self.version.minor;
        b[22..24].copy_from_slice(&self.version.revision.to_le_bytes());
        b[24..28].copy_from_slice(&self.version.build.to_le_bytes());
        b[28..32].copy_from_slice(&self.pad1.to_le_bytes());
        b
    }

    /// Names of the set flag bits (unknown bits as hex).
    pub fn flag_names(&self) -> Vec<String> {
        let mut names = Vec::new();
        let mut rest = self.flags;
        for &(bit, name) in FLAG_NAMES {
            if self.flags & bit != 0 {
                names.push(name.to_string());
                rest &= !bit;
            }
        }
        if rest != 0 {
            names.push(format!("0x{rest:08x}"));
        }
        names
    }
}

/// One TLV entry: where it is and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv {
    /// `it_type` (a `u16` in current MCUboot; imgtool writes type and a zero pad byte).
    pub kind: u16,
    /// Whether it is in the protected (hashed) TLV area.
    pub protected: bool,
    /// Byte offset of the entry's 4-byte header.
    pub offset: usize,
    /// `it_len`: value length in bytes.
    pub len: u16,
}

impl Tlv {
    /// Byte offset of the value.
    pub fn value_offset(&self) -> usize {
        self.offset + TLV_HEADER_LEN
    }

    /// Byte range of the whole entry (header and value).
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.value_offset() + self.len as usize
    }

    /// Byte range of the value.
    pub fn value_range(&self) -> std::ops::Range<usize> {
        self.value_offset()..self.value_offset() + self.len as usize
    }

    /// imgtool's name for the type, or `0xNNNN`.
    pub fn name(&self) -> String {
        tlv_name(self.kind)
            .map(str::to_string)
            .unwrap_or_else(|| format!("0x{:04x}", self.kind))
    }
}

/// A parsed, bounds-checked view of an image. Borrowing the bytes keeps parsing allocation-free
/// but for the TLV list (at most one entry per 4 bytes of input).
#[derive(Debug, Clone)]
pub struct Image<'a> {
    bytes: &'a [u8],
    /// The decoded header.
    pub header: Header,
    /// Entries of the protected and then the unprotected TLV area, in file order.
    pub tlvs: Vec<Tlv>,
    /// Byte offset where the payload ends (`hdr_size + img_size`).
    pub payload_end: usize,
    /// Byte offset where the protected TLV area ends (== `payload_end` when there is none):
    /// the end of the hashed region.
    pub protected_end: usize,
    /// Byte offset where the TLV area ends; bytes after it are ignored by MCUboot.
    pub tlv_end: usize,
}

impl<'a> Image<'a> {
    /// Parses and bounds-checks an image.
    pub fn parse(bytes: &'a [u8]) -> Result<Image<'a>, ParseError> {
        let header = Header::decode(bytes)?;
        if header.magic != IMAGE_MAGIC {
            return Err(ParseError::BadMagic {
                found: header.magic,
            });
        }
        if (header.hdr_size as usize) < HEADER_LEN {
            return Err(ParseError::HeaderTooSmall {
                hdr_size: header.hdr_size,
            });
        }
        let file_len = bytes.len() as u64;
        let payload_end = header.hdr_size as u64 + header.img_size as u64;
        if payload_end > file_len {
            return Err(ParseError::PastEnd {
                what: "payload (ih_hdr_size + ih_img_size)",
                field_offset: field::IMG_SIZE as u64,
                start: header.hdr_size as u64,
                end: payload_end,
                file_len,
            });
        }
        // Fits in usize: bounded by the slice length.
        let payload_end = payload_end as usize;
        let mut tlvs = Vec::new();

        let info_at = |offset: usize, what: &'static str| -> Result<(u16, u16), ParseError> {
            if bytes.len() - offset < TLV_HEADER_LEN {
                return Err(ParseError::Truncated {
                    what,
                    offset: offset as u64,
                    need: TLV_HEADER_LEN as u64,
                    available: (bytes.len() - offset) as u64,
                });
            }
            Ok((le16(bytes, offset), le16(bytes, offset + 2)))
        };

        let (magic, tot) = info_at(payload_end, "TLV info header")?;
        let protected_end = if magic == TLV_PROT_INFO_MAGIC {
            if tot != header.protect_tlv_size {
                return Err(ParseError::ProtectedSizeMismatch {
                    offset: payload_end as u64,
                    header_len: header.protect_tlv_size,
                    info_len: tot,
                });
            }
            Self::walk(bytes, payload_end, tot, true, &mut tlvs)?
        } else if header.protect_tlv_size != 0 {
            return Err(ParseError::BadTlvInfoMagic {
                what: "protected TLV info (ih_protect_tlv_size is not 0)",
                offset: payload_end as u64,
                found: magic,
                expected: TLV_PROT_INFO_MAGIC,
            });
        } else {
            payload_end
        };

        let (magic, tot) = info_at(protected_end, "TLV info header")?;
        if magic != TLV_INFO_MAGIC {
            return Err(ParseError::BadTlvInfoMagic {
                what: "TLV info",
                offset: protected_end as u64,
                found: magic,
                expected: TLV_INFO_MAGIC,
            });
        }
        let tlv_end = Self::walk(bytes, protected_end, tot, false, &mut tlvs)?;

        Ok(Image {
            bytes,
            header,
            tlvs,
            payload_end,
            protected_end,
            tlv_end,
        })
    }

    /// Walks the TLV entries of one area starting with its info header at `start`; returns the
    /// area's end.
    fn walk(
        bytes: &[u8],
        start: usize,
        tot: u16,
        protected: bool,
        out: &mut Vec<Tlv>,
    ) -> Result<usize, ParseError> {
        let what = if protected {
            "protected TLV area"
        } else {
            "TLV area"
        };
        if (tot as usize) < TLV_HEADER_LEN {
            return Err(ParseError::TlvAreaTooSmall {
                what,
                offset: start as u64,
                len: tot,
            });
        }
        let end = start as u64 + tot as u64;
        if end > bytes.len() as u64 {
            return Err(ParseError::PastEnd {
                what,
                field_offset: start as u64 + 2,
                start: start as u64,
                end,
                file_len: bytes.len() as u64,
            });
        }
        let end = end as usize;
        let mut off = start + TLV_HEADER_LEN;
        while off < end {
            if end - off < TLV_HEADER_LEN {
                return Err(ParseError::TlvPastArea {
                    offset: off as u64,
                    kind: if end - off >= 2 { le16(bytes, off) } else { 0 },
                    len: 0,
                    area_end: end as u64,
                });
            }
            let kind = le16(bytes, off);
            let len = le16(bytes, off + 2);
            let value_end = off + TLV_HEADER_LEN + len as usize;
            if value_end > end {
                return Err(ParseError::TlvPastArea {
                    offset: off as u64,
                    kind,
                    len,
                    area_end: end as u64,
                });
            }
            out.push(Tlv {
                kind,
                protected,
                offset: off,
                len,
            });
            off = value_end;
        }
        Ok(end)
    }

    /// The whole input.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The payload (firmware) bytes.
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[self.header.hdr_size as usize..self.payload_end]
    }

    /// The region covered by the image hash: header, payload and protected TLV area.
    pub fn hashed_region(&self) -> &'a [u8] {
        &self.bytes[..self.protected_end]
    }

    /// The protected TLV area, info header included (empty when there is none).
    pub fn protected_area(&self) -> &'a [u8] {
        &self.bytes[self.payload_end..self.protected_end]
    }

    /// The value bytes of a TLV entry of this image.
    pub fn value(&self, tlv: &Tlv) -> &'a [u8] {
        &self.bytes[tlv.value_range()]
    }

    /// The first TLV of a type, searching the unprotected area only when `protected` is false.
    pub fn find(&self, kind: u16, protected: bool) -> Option<&Tlv> {
        self.tlvs
            .iter()
            .find(|t| t.kind == kind && t.protected == protected)
    }

    /// Bytes after the TLV area, which MCUboot ignores.
    pub fn trailing(&self) -> &'a [u8] {
        &self.bytes[self.tlv_end..]
    }
}

/// Builds one TLV area (info header + entries) as imgtool lays it out.
#[derive(Debug, Clone)]
pub struct TlvAreaBuilder {
    magic: u16,
    buf: Vec<u8>,
}

impl TlvAreaBuilder {
    /// An empty unprotected area.
    pub fn unprotected() -> Self {
        TlvAreaBuilder {
            magic: TLV_INFO_MAGIC,
            buf: Vec::new(),
        }
    }

    /// An empty protected area.
    pub fn protected() -> Self {
        TlvAreaBuilder {
            magic: TLV_PROT_INFO_MAGIC,
            buf: Vec::new(),
        }
    }

    /// Appends an entry. Fails when the value or the area would exceed 65535 bytes.
    pub fn push(&mut self, kind: u16, value: &[u8]) -> Result<(), Error> {
        let len = u16::try_from(value.len()).map_err(|_| {
            Error::Sign(format!(
                "TLV 0x{kind:04x} value is {} bytes, more than a TLV can hold (65535)",
                value.len()
            ))
        })?;
        if TLV_HEADER_LEN + self.buf.len() + TLV_HEADER_LEN + value.len() > u16::MAX as usize {
            return Err(Error::Sign(
                "TLV area would exceed 65535 bytes, more than its length field can hold".into(),
            ));
        }
        self.buf.extend_from_slice(&kind.to_le_bytes());
        self.buf.extend_from_slice(&len.to_le_bytes());
        self.buf.extend_from_slice(value);
        Ok(())
    }

    /// Whether no entry was pushed.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Encoded length, info header included (0 for an empty protected area, which imgtool omits).
    pub fn encoded_len(&self) -> usize {
        if self.buf.is_empty() && self.magic == TLV_PROT_INFO_MAGIC {
            0
        } else {
            TLV_HEADER_LEN + self.buf.len()
        }
    }

    /// The encoded area. An empty protected area encodes to nothing (imgtool omits it).
    pub fn encode(&self) -> Vec<u8> {
        let len = self.encoded_len();
        if len == 0 {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&self.magic.to_le_bytes());
        // push() keeps the total within u16.
        out.extend_from_slice(&(len as u16).to_le_bytes());
        out.extend_from_slice(&self.buf);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_syntax_matches_imgtool() {
        assert_eq!("1".parse::<Version>().unwrap(), Version::new(1, 0, 0, 0));
        assert_eq!("1.2".parse::<Version>().unwrap(), Version::new(1, 2, 0, 0));
        assert_eq!(
            "1.2.3+4".parse::<Version>().unwrap(),
            Version::new(1, 2, 3, 4)
        );
        assert_eq!(
            "255.255.65535+4294967295".parse::<Version>().unwrap(),
            Version::new(255, 255, 65535, u32::MAX)
        );
        for bad in [
            "",
            "1.",
            "01.2.3",
            "1.2.3.4",
            "1.2+3",
            "256.0.0",
            "1.2.65536",
            "a.b.c",
            "1.2.3+",
            "-1",
            "1.2.3+4+5",
        ] {
            assert!(
                bad.parse::<Version>().is_err(),
                "{bad:?} should be rejected"
            );
        }
        assert_eq!(Version::new(1, 2, 3, 4).to_string(), "1.2.3+4");
    }

    #[test]
    fn next_lower() {
        assert_eq!(
            Version::new(1, 2, 3, 9).next_lower(),
            Some(Version::new(1, 2, 2, 0))
        );
        assert_eq!(
            Version::new(1, 2, 0, 0).next_lower(),
            Some(Version::new(1, 1, 65535, 0))
        );
        assert_eq!(
            Version::new(1, 0, 0, 0).next_lower(),
            Some(Version::new(0, 255, 65535, 0))
        );
        assert_eq!(Version::new(0, 0, 0, 7).next_lower(), None);
    }

    #[test]
    fn header_round_trip() {
        let h = Header {
            magic: IMAGE_MAGIC,
            load_addr: 0x1234_5678,
            hdr_size: 0x200,
            protect_tlv_size: 12,
            img_size: 999,
            flags: 0x20,
            version: Version::new(1, 2, 3, 4),
            pad1: 0,
        };
        assert_eq!(Header::decode(&h.encode()).unwrap(), h);
        assert_eq!(h.flag_names(), vec!["RAM_LOAD".to_string()]);
    }
}
