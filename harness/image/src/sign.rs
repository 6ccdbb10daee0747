//! Signing: wraps a raw firmware binary (or re-signs an existing image) into an MCUboot image
//! byte-for-byte as `imgtool sign` lays it out.
//!
//! Exists so the harness can make genuine images (the positive control) and re-signed variants
//! (rollback, wrong key) without Python. The layout mirrors the common invocation
//!
//! ```text
//! imgtool sign -k key.pem --version 1.2.3 --header-size 0x200 --pad-header --slot-size N in.bin out.bin
//! ```
//!
//! - `--pad-header` (our default): `header_size` bytes of the erased value 0xff are prepended and
//!   the 32-byte header written over their start. Without it (`pad_header: false`) the input must
//!   already start with `header_size` zero bytes (a Zephyr build with `CONFIG_ROM_START_OFFSET`),
//!   which the header overwrites.
//! - no protected TLVs unless a security counter is asked for (imgtool `-s`), then one `SEC_CNT`;
//! - unprotected TLVs in imgtool's order: SHA256, then KEYHASH (or PUBKEY with
//!   `--public-key-format full`), then the signature;
//! - `slot_size`, when given, is checked as imgtool does (image + a trailer of 0x1b0 bytes for the
//!   default `--align 1 --max-sectors 128` must fit); the image is not padded to the slot.
//!
//! Ed25519 signatures are deterministic, so for ed25519 the output equals imgtool's byte for
//! byte (the interop test checks this).

use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::format::{
    tlv, Header, Image, TlvAreaBuilder, Version, HEADER_LEN, IMAGE_MAGIC, TLV_HEADER_LEN,
};
use crate::keys::SigningKey;

/// How the public key is identified in the image (imgtool `--public-key-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PublicKeyFormat {
    /// A KEYHASH TLV: SHA-256 of the public key (imgtool's default).
    #[default]
    Hash,
    /// A PUBKEY TLV with the whole public key (for `MCUBOOT_HW_KEY`).
    Full,
}

/// Size of the MCUboot trailer imgtool reserves at the end of the slot for its defaults
/// (`--align 1`, `--max-sectors 128`, max-align 8): 128*3*1 + 8*4 + 16.
pub const DEFAULT_TRAILER_LEN: u32 = 128 * 3 + 8 * 4 + 16;

/// The default header size, as in the common `--header-size 0x200` invocation.
pub const DEFAULT_HEADER_SIZE: u16 = 0x200;

/// Signing options; see the module documentation for what each mirrors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignOptions {
    /// The image version (`--version`).
    pub version: Version,
    /// Header size (`--header-size`), at least 32. Ignored when re-signing an existing image,
    /// which keeps its own.
    pub header_size: u16,
    /// Prepend the header (`--pad-header`) rather than overwrite zero bytes at the input's start.
    pub pad_header: bool,
    /// Slot size (`--slot-size`) to check the image fits; `None` skips the check.
    pub slot_size: Option<u32>,
    /// Load address (`--load-addr`); non-zero sets the RAM_LOAD flag like imgtool.
    pub load_addr: u32,
    /// Security counter (`-s`); adds a protected `SEC_CNT` TLV.
    pub security_counter: Option<u32>,
    /// KEYHASH or PUBKEY.
    pub public_key_format: PublicKeyFormat,
}

impl SignOptions {
    /// Options for the common invocation: header 0x200, `--pad-header`, no slot check.
    pub fn new(version: Version) -> Self {
        SignOptions {
            version,
            header_size: DEFAULT_HEADER_SIZE,
            pad_header: true,
            slot_size: None,
            load_addr: 0,
            security_counter: None,
            public_key_format: PublicKeyFormat::Hash,
        }
    }
}

/// imgtool's automatic security counter for a version (`-s auto`): major<<24 | minor<<16 | revision.
pub fn auto_security_counter(v: &Version) -> u32 {
    ((v.major as u32) << 24) | ((v.minor as u32) << 16) | v.revision as u32
}

/// Signs `input`: a raw binary, or an existing MCUboot image (signed or not), which is re-signed
/// keeping its header size, load address, flags, header padding and protected TLVs (but for
/// `SEC_CNT` when `security_counter` is set) with the new version.
pub fn sign(input: &[u8], key: &SigningKey, opts: &SignOptions) -> Result<Vec<u8>, Error> {
    if input.len() >= 4 && input[..4] == IMAGE_MAGIC.to_le_bytes() {
        let image = Image::parse(input).map_err(|e| {
            Error::parse(
                "input starts with MCUboot's image magic but is not a valid image (to wrap it \
                 anyway as a raw payload, it must not start with 3d b8 f3 96)",
                e,
            )
        })?;
        return resign(&image, key, opts.version, opts.security_counter, opts);
    }
    sign_raw(input, key, opts)
}

fn sign_raw(input: &[u8], key: &SigningKey, opts: &SignOptions) -> Result<Vec<u8>, Error> {
    if (opts.header_size as usize) < HEADER_LEN {
        return Err(Error::Sign(format!(
            "header size {} is below the minimum of {HEADER_LEN}",
            opts.header_size
        )));
    }
    let hs = opts.header_size as usize;
    let mut hashed = Vec::with_capacity(input.len() + hs + 64);
    if opts.pad_header {
        hashed.resize(hs, 0xff);
        hashed.extend_from_slice(input);
    } else {
        if input.len() < hs || input[..hs].iter().any(|&b| b != 0) {
            return Err(Error::Sign(format!(
                "the input does not start with {hs} zero bytes to hold the header; prepend a \
                 header instead (`--pad-header`, the default)"
            )));
        }
        hashed.extend_from_slice(input);
    }
    let img_size = u32::try_from(hashed.len() - hs).map_err(|_| {
        Error::Sign(format!(
            "the payload is {} bytes, more than the header's 32-bit size field can hold",
            hashed.len() - hs
        ))
    })?;
    let mut prot = TlvAreaBuilder::protected();
    if let Some(sc) = opts.security_counter {
        prot.push(tlv::SEC_CNT, &sc.to_le_bytes())?;
    }
    let flags = if opts.load_addr != 0 { 0x20 } else { 0 };
    let header = Header {
        magic: IMAGE_MAGIC,
        load_addr: opts.load_addr,
        hdr_size: opts.header_size,
        protect_tlv_size: prot.encoded_len() as u16,
        img_size,
        flags,
        version: opts.version,
        pad1: 0,
    };
    hashed[..HEADER_LEN].copy_from_slice(&header.encode());
    hashed.extend_from_slice(&prot.encode());
    let out = append_signature_area(hashed, Some(key), opts.public_key_format)?;
    check_slot(out.len(), opts.slot_size)?;
    Ok(out)
}

/// Re-signs an image with `key`: keeps header padding, payload, load address, flags and protected
/// TLVs (replacing `SEC_CNT`'s value when `security_counter` is given), sets `version`, and
/// rebuilds the unprotected TLV area. Trailing bytes are dropped.
pub(crate) fn resign(
    image: &Image<'_>,
    key: &SigningKey,
    version: Version,
    security_counter: Option<u32>,
    opts: &SignOptions,
) -> Result<Vec<u8>, Error> {
    let mut prot = TlvAreaBuilder::protected();
    let mut have_counter = false;
    for t in image.tlvs.iter().filter(|t| t.protected) {
        if t.kind == tlv::SEC_CNT {
            if let Some(sc) = security_counter {
                prot.push(tlv::SEC_CNT, &sc.to_le_bytes())?;
                have_counter = true;
                continue;
            }
        }
        prot.push(t.kind, image.value(t))?;
    }
    if let (Some(sc), false) = (security_counter, have_counter) {
        prot.push(tlv::SEC_CNT, &sc.to_le_bytes())?;
    }
    let mut header = image.header;
    header.version = version;
    header.protect_tlv_size = u16::try_from(prot.encoded_len())
        .map_err(|_| Error::Sign("protected TLV area exceeds 65535 bytes".into()))?;
    let mut hashed = Vec::with_capacity(image.payload_end + prot.encoded_len() + 200);
    hashed.extend_from_slice(&image.bytes()[..image.payload_end]);
    hashed[..HEADER_LEN].copy_from_slice(&header.encode());
    hashed.extend_from_slice(&prot.encode());
    let out = append_signature_area(hashed, Some(key), opts.public_key_format)?;
    check_slot(out.len(), opts.slot_size)?;
    Ok(out)
}

/// Appends the unprotected TLV area to `hashed` (header + payload + protected TLVs): SHA256,
/// then, with a key, KEYHASH/PUBKEY and the signature.
pub(crate) fn append_signature_area(
    mut hashed: Vec<u8>,
    key: Option<&SigningKey>,
    format: PublicKeyFormat,
) -> Result<Vec<u8>, Error> {
    let digest: [u8; 32] = Sha256::digest(&hashed).into();
    let mut area = TlvAreaBuilder::unprotected();
    area.push(tlv::SHA256, &digest)?;
    if let Some(key) = key {
        let public = key.public_key();
        match format {
            PublicKeyFormat::Hash => area.push(tlv::KEYHASH, &public.key_hash())?,
            PublicKeyFormat::Full => area.push(tlv::PUBKEY, &public.mcuboot_der())?,
        }
        let sig = key.sign_digest(&digest)?;
        area.push(key.kind().signature_tlv(), &sig)?;
    }
    hashed.extend_from_slice(&area.encode());
    Ok(hashed)
}

fn check_slot(len: usize, slot_size: Option<u32>) -> Result<(), Error> {
    if let Some(slot) = slot_size {
        if len as u64 + DEFAULT_TRAILER_LEN as u64 > slot as u64 {
            return Err(Error::Sign(format!(
                "image size (0x{len:x}) + trailer (0x{DEFAULT_TRAILER_LEN:x}) exceeds the slot \
                 size 0x{slot:x}; use a larger --slot-size or a smaller payload"
            )));
        }
    }
    Ok(())
}

/// Bytes of an image's unprotected TLV area needed for its hash, key and signature TLVs
/// (useful to size slots): 4 + 36 + 36 + 4 + signature length.
pub fn signature_area_len(sig_len: usize) -> usize {
    TLV_HEADER_LEN + (TLV_HEADER_LEN + 32) * 2 + TLV_HEADER_LEN + sig_len
}
