//! Inspection: what an image says about itself, without a key.
//!
//! Exists for `hilsec image inspect` (human text or `--json`) and for the harness's evidence:
//! header fields, version, sizes, every TLV with its offset, whether the stored SHA-256 matches,
//! and which signature (if any) it carries.

use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::ParseError;
use crate::format::{is_signature_tlv, tlv, Image, Version};
use crate::keys::KeyKind;
use crate::verify::{hex, trailing_warning};

/// Values longer than this are shown abbreviated in the human output.
const SHOW_FULL: usize = 40;

/// One TLV entry as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlvInfo {
    /// Type number.
    pub kind: u16,
    /// imgtool's name for it, or `0xNNNN`.
    pub name: String,
    /// In the protected (hashed) area?
    pub protected: bool,
    /// Byte offset of the entry header.
    pub offset: usize,
    /// Value length.
    pub len: u16,
    /// Value as hex.
    pub value_hex: String,
}

/// Everything [`inspect`] finds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Inspection {
    /// File length in bytes.
    pub file_len: usize,
    /// `ih_magic`.
    pub magic: u32,
    /// `ih_load_addr`.
    pub load_addr: u32,
    /// `ih_hdr_size`.
    pub hdr_size: u16,
    /// `ih_protect_tlv_size`.
    pub protect_tlv_size: u16,
    /// `ih_img_size`.
    pub img_size: u32,
    /// `ih_flags`.
    pub flags: u32,
    /// Names of the set flags.
    pub flag_names: Vec<String>,
    /// `ih_ver`.
    pub version: Version,
    /// Byte offset where the TLV area starts (after the protected TLVs).
    pub tlv_offset: usize,
    /// Byte offset where the TLV area ends.
    pub tlv_end: usize,
    /// Bytes after the TLV area (ignored by MCUboot).
    pub trailing_bytes: usize,
    /// All TLV entries, protected first.
    pub tlvs: Vec<TlvInfo>,
    /// SHA-256 over header, payload and protected TLVs, as computed.
    pub computed_hash: String,
    /// Whether a SHA256 TLV is present and equals the computed hash (`None`: no SHA256 TLV).
    pub hash_valid: Option<bool>,
    /// Algorithm of the (first) signature TLV, if any.
    pub signature_kind: Option<KeyKind>,
    /// Value of the KEYHASH TLV, if any.
    pub key_hash: Option<String>,
    /// Notes (e.g. ignored trailing bytes).
    pub warnings: Vec<String>,
}

/// Parses an image and reports what it holds.
pub fn inspect(bytes: &[u8]) -> Result<Inspection, ParseError> {
    let image = Image::parse(bytes)?;
    let computed: [u8; 32] = Sha256::digest(image.hashed_region()).into();
    let hash_valid = image
        .find(tlv::SHA256, false)
        .map(|t| image.value(t) == computed);
    let signature_kind = image
        .tlvs
        .iter()
        .filter(|t| !t.protected && is_signature_tlv(t.kind))
        .find_map(|t| KeyKind::from_signature_tlv(t.kind));
    let key_hash = image.find(tlv::KEYHASH, false).map(|t| hex(image.value(t)));
    let tlvs = image
        .tlvs
        .iter()
        .map(|t| TlvInfo {
            kind: t.kind,
            name: t.name(),
            protected: t.protected,
            offset: t.offset,
            len: t.len,
            value_hex: hex(image.value(t)),
        })
        .collect();
    let h = image.header;
    Ok(Inspection {
        file_len: bytes.len(),
        magic: h.magic,
        load_addr: h.load_addr,
        hdr_size: h.hdr_size,
        protect_tlv_size: h.protect_tlv_size,
        img_size: h.img_size,
        flags: h.flags,
        flag_names: h.flag_names(),
        version: h.version,
        tlv_offset: image.protected_end,
        tlv_end: image.tlv_end,
        trailing_bytes: image.trailing().len(),
        tlvs,
        computed_hash: hex(&computed),
        hash_valid,
        signature_kind,
        key_hash,
        warnings: trailing_warning(image.trailing(), image.tlv_end)
            .into_iter()
            .collect(),
    })
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "MCUboot image, {} bytes", self.file_len)?;
        writeln!(f, "  version         {}", self.version)?;
        writeln!(f, "  magic           0x{:08x}", self.magic)?;
        writeln!(f, "  load address    0x{:08x}", self.load_addr)?;
        writeln!(
            f,
            "  header size     0x{:x} ({})",
            self.hdr_size, self.hdr_size
        )?;
        writeln!(
            f,
            "  payload size    0x{:x} ({})",
            self.img_size, self.img_size
        )?;
        writeln!(
            f,
            "  protected TLVs  0x{:x} ({})",
            self.protect_tlv_size, self.protect_tlv_size
        )?;
        let flags = if self.flag_names.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.flag_names.join(", "))
        };
        writeln!(f, "  flags           0x{:08x}{flags}", self.flags)?;
        writeln!(
            f,
            "  TLV area        bytes {}..{}",
            self.tlv_offset, self.tlv_end
        )?;
        for (protected, title) in [(true, "protected TLVs (hashed):"), (false, "TLVs:")] {
            let mut entries = self
                .tlvs
                .iter()
                .filter(|t| t.protected == protected)
                .peekable();
            if entries.peek().is_none() {
                continue;
            }
            writeln!(f, "  {title}")?;
            for t in entries {
                let value = if t.value_hex.len() <= SHOW_FULL * 2 {
                    t.value_hex.clone()
                } else {
                    format!(
                        "{}...{}",
                        &t.value_hex[..32],
                        &t.value_hex[t.value_hex.len() - 16..]
                    )
                };
                writeln!(
                    f,
                    "    {:<10} at {:>8}  len {:>4}  {}",
                    t.name, t.offset, t.len, value
                )?;
            }
        }
        let hash = match self.hash_valid {
            Some(true) => "valid",
            Some(false) => "INVALID (does not match the SHA256 TLV)",
            None => "no SHA256 TLV",
        };
        writeln!(f, "  hash            {hash}")?;
        writeln!(f, "  computed SHA256 {}", self.computed_hash)?;
        match self.signature_kind {
            Some(k) => writeln!(f, "  signature       {k}")?,
            None => writeln!(f, "  signature       none (unsigned)")?,
        }
        if let Some(kh) = &self.key_hash {
            writeln!(f, "  key hash        {kh}")?;
        }
        for w in &self.warnings {
            writeln!(f, "  warning: {w}")?;
        }
        Ok(())
    }
}
