//! Verification: would MCUboot, holding this key, boot this image?
//!
//! Exists so the harness can tell a genuine image from a tampered one without a device, and so
//! each tampered variant it pushes is known to be rejected by a correct bootloader for the
//! reason intended. The checks follow MCUboot's `bootutil_img_validate` for a bootloader built
//! with one key, SHA-256, and KEYHASH key identification:
//!
//! 1. the image parses (magic, sizes, TLV areas in bounds; protected area size agrees with the
//!    header) — else rejected as malformed;
//! 2. TLVs are walked in order; in the unprotected area only hash, key, signature and
//!    encryption-key TLVs are allowed (`MCUBOOT_USE_TLV_ALLOW_LIST`);
//! 3. the SHA256 TLV must be present, 32 bytes, and equal to SHA-256(header + payload + protected
//!    TLVs);
//! 4. a signature TLV counts only when a KEYHASH (SHA-256 of the key's DER) or PUBKEY TLV matching
//!    the key precedes it; the last such signature decides (as in MCUboot);
//! 5. optionally (`min_version`), the version must not be lower than the running one, ignoring
//!    the build number, as MCUboot's downgrade prevention compares by default.
//!
//! Bytes after the TLV area are ignored, as MCUboot ignores them, and reported as a warning.

use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::ParseError;
use crate::format::{is_signature_tlv, tlv, tlv_name, Image, Version, FLAGS_ENCRYPTED};
use crate::keys::{KeyKind, PublicKey, SignatureCheck};

/// What to check beyond the image itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyOptions {
    /// The running version: images below it (ignoring the build number) are rejected as a
    /// rollback, as with `MCUBOOT_DOWNGRADE_PREVENTION`. `None`: no version check.
    pub min_version: Option<Version>,
}

/// Why an image is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// It does not parse.
    #[error("malformed image: {0}")]
    Malformed(ParseError),
    /// Encrypted images are hashed over the plaintext, which needs the decryption key.
    #[error(
        "image is encrypted (flags 0x{flags:08x}); its hash covers the plaintext, which hilsec \
         cannot decrypt: verify the unencrypted image instead"
    )]
    Encrypted {
        /// The header flags.
        flags: u32,
    },
    /// A "pure" signature over the whole image (SIG_PURE TLV).
    #[error(
        "image carries a SIG_PURE TLV at byte offset {offset} (a signature over the whole image, \
         imgtool --pure); hilsec verifies hash signatures only"
    )]
    PureSignature {
        /// Offset of the SIG_PURE TLV.
        offset: usize,
    },
    /// A TLV MCUboot does not allow outside the protected area.
    #[error(
        "TLV {name} at byte offset {offset} is in the unprotected TLV area, where MCUboot allows \
         only hash, key, signature and encryption-key TLVs: it is not covered by the signature"
    )]
    UnprotectedTlv {
        /// Its name.
        name: String,
        /// Its offset.
        offset: usize,
    },
    /// No SHA256 TLV.
    #[error("no SHA256 TLV: the image carries no hash MCUboot could check")]
    NoHash,
    /// A SHA256 TLV of the wrong length.
    #[error("SHA256 TLV at byte offset {offset} is {len} bytes long, not 32")]
    HashLength {
        /// Its offset.
        offset: usize,
        /// Its length.
        len: usize,
    },
    /// The hash does not match.
    #[error(
        "image hash mismatch: the SHA256 TLV at byte offset {offset} holds {stored} but header, \
         payload and protected TLVs (bytes 0..{hashed_len}) hash to {computed}: the image was \
         changed after it was hashed"
    )]
    HashMismatch {
        /// Offset of the SHA256 TLV.
        offset: usize,
        /// Hex of the stored hash.
        stored: String,
        /// Hex of the computed hash.
        computed: String,
        /// Length of the hashed region.
        hashed_len: usize,
    },
    /// No signature TLV at all.
    #[error(
        "image is not signed: it has no signature TLV (ED25519, ECDSASIG, RSA2048 or RSA3072)"
    )]
    Unsigned,
    /// Signatures exist, but only of another algorithm.
    #[error("image is signed with {found}, but the key is {key}: not signed by this key")]
    OtherAlgorithm {
        /// Algorithms found.
        found: String,
        /// The key's algorithm.
        key: KeyKind,
    },
    /// A signature of the key's algorithm exists, but no key TLV before it matches the key.
    #[error(
        "image is signed by another key: no KEYHASH/PUBKEY TLV matches the given key (key hash \
         {key_hash}; the image has {image_keys})"
    )]
    KeyMismatch {
        /// Hex of the given key's hash.
        key_hash: String,
        /// What key TLVs the image has.
        image_keys: String,
    },
    /// The signature has a length MCUboot refuses.
    #[error(
        "signature TLV {name} at byte offset {offset} is {len} bytes long; MCUboot accepts \
         {expected}"
    )]
    SignatureLength {
        /// TLV name.
        name: String,
        /// Its offset.
        offset: usize,
        /// Its length.
        len: usize,
        /// Accepted lengths.
        expected: &'static str,
    },
    /// The signature is not well-formed.
    #[error("signature TLV {name} at byte offset {offset} is malformed: {detail}")]
    SignatureMalformed {
        /// TLV name.
        name: String,
        /// Its offset.
        offset: usize,
        /// What is wrong.
        detail: String,
    },
    /// The signature does not verify.
    #[error(
        "signature TLV {name} at byte offset {offset} does not verify with the given {key} key \
         over the image hash: the signature was altered or made for other contents"
    )]
    SignatureInvalid {
        /// TLV name.
        name: String,
        /// Its offset.
        offset: usize,
        /// The key's algorithm.
        key: KeyKind,
    },
    /// Validly signed, but older than allowed.
    #[error(
        "rollback: image version {image} is lower than the minimum {min} (compared as \
         major.minor.revision, as MCUboot's downgrade prevention does)"
    )]
    Downgrade {
        /// The image's version.
        image: Version,
        /// The minimum.
        min: Version,
    },
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// MCUboot would boot it. Warnings note what it ignores (e.g. appended data).
    Accepted {
        /// Things MCUboot ignores but a reader should know.
        warnings: Vec<String>,
    },
    /// MCUboot would refuse it.
    Rejected {
        /// Why.
        reason: Rejection,
        /// Things noticed on the way.
        warnings: Vec<String>,
    },
}

impl Verdict {
    /// Whether the image is accepted.
    pub fn is_accepted(&self) -> bool {
        matches!(self, Verdict::Accepted { .. })
    }

    /// The warnings, whatever the outcome.
    pub fn warnings(&self) -> &[String] {
        match self {
            Verdict::Accepted { warnings } | Verdict::Rejected { warnings, .. } => warnings,
        }
    }

    /// The rejection reason, if rejected.
    pub fn rejection(&self) -> Option<&Rejection> {
        match self {
            Verdict::Accepted { .. } => None,
            Verdict::Rejected { reason, .. } => Some(reason),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Accepted { .. } => write!(f, "accepted")?,
            Verdict::Rejected { reason, .. } => write!(f, "rejected: {reason}")?,
        }
        for w in self.warnings() {
            write!(f, "\nwarning: {w}")?;
        }
        Ok(())
    }
}

impl Serialize for Verdict {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Repr<'a> {
            accepted: bool,
            reason: Option<String>,
            warnings: &'a [String],
        }
        Repr {
            accepted: self.is_accepted(),
            reason: self.rejection().map(|r| r.to_string()),
            warnings: self.warnings(),
        }
        .serialize(s)
    }
}

/// Whether MCUboot's TLV allow list admits a type in the unprotected area.
fn allowed_unprotected(kind: u16) -> bool {
    matches!(
        kind,
        tlv::KEYHASH | tlv::PUBKEY | tlv::SHA256 | tlv::SHA384 | tlv::SHA512 | tlv::SIG_PURE
    ) || is_signature_tlv(kind)
        || (0x30..=0x34).contains(&kind)
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Describes bytes after the TLV area (MCUboot ignores them).
pub(crate) fn trailing_warning(trailing: &[u8], tlv_end: usize) -> Option<String> {
    if trailing.is_empty() {
        return None;
    }
    const BOOT_MAGIC: [u8; 16] = [
        0x77, 0xc2, 0x95, 0xf3, 0x60, 0xd2, 0xef, 0x7f, 0x35, 0x52, 0x50, 0x0f, 0x2c, 0xb6, 0x79,
        0x80,
    ];
    let note = if trailing.ends_with(&BOOT_MAGIC) {
        " (they end with MCUboot's boot magic: slot padding from `imgtool sign --pad`)"
    } else {
        ""
    };
    Some(format!(
        "{} bytes after the TLV area (from byte offset {tlv_end}) are ignored by MCUboot{note}",
        trailing.len()
    ))
}

/// Verifies an image with a key. Never fails: a malformed image is a rejected one.
pub fn verify(bytes: &[u8], key: &PublicKey, opts: &VerifyOptions) -> Verdict {
    let mut warnings = Vec::new();
    let image = match Image::parse(bytes) {
        Ok(i) => i,
        Err(e) => {
            return Verdict::Rejected {
                reason: Rejection::Malformed(e),
                warnings,
            }
        }
    };
    if let Some(w) = trailing_warning(image.trailing(), image.tlv_end) {
        warnings.push(w);
    }
    match check(&image, key, opts, &mut warnings) {
        Ok(()) => Verdict::Accepted { warnings },
        Err(reason) => Verdict::Rejected { reason, warnings },
    }
}

fn check(
    image: &Image<'_>,
    key: &PublicKey,
    opts: &VerifyOptions,
    warnings: &mut Vec<String>,
) -> Result<(), Rejection> {
    if image.header.flags & FLAGS_ENCRYPTED != 0 {
        return Err(Rejection::Encrypted {
            flags: image.header.flags,
        });
    }
    let digest: [u8; 32] = Sha256::digest(image.hashed_region()).into();
    let key_kind = key.kind();
    let key_sig_tlv = key_kind.signature_tlv();
    let key_hash = key.key_hash();
    let key_der = key.mcuboot_der();

    let mut hash_valid = false;
    let mut key_matches = false;
    // The last signature preceded by a matching key decides, as in MCUboot.
    let mut decided: Option<(SignatureCheck, usize)> = None;
    let mut sigs_of_key_kind = 0usize;
    let mut other_algorithms: Vec<&'static str> = Vec::new();
    let mut image_keys: Vec<String> = Vec::new();

    for t in &image.tlvs {
        if !t.protected && !allowed_unprotected(t.kind) {
            return Err(Rejection::UnprotectedTlv {
                name: t.name(),
                offset: t.offset,
            });
        }
        let value = image.value(t);
        match t.kind {
            tlv::SIG_PURE => return Err(Rejection::PureSignature { offset: t.offset }),
            tlv::SHA256 if !t.protected => {
                if value.len() != 32 {
                    return Err(Rejection::HashLength {
                        offset: t.offset,
                        len: value.len(),
                    });
                }
                if value != digest {
                    return Err(Rejection::HashMismatch {
                        offset: t.offset,
                        stored: hex(value),
                        computed: hex(&digest),
                        hashed_len: image.protected_end,
                    });
                }
                hash_valid = true;
            }
            tlv::SHA384 | tlv::SHA512 if !t.protected => warnings.push(format!(
                "{} TLV at byte offset {} ignored (hilsec, like a SHA-256 MCUboot, checks SHA256)",
                t.name(),
                t.offset
            )),
            tlv::KEYHASH if !t.protected => {
                key_matches = value == key_hash;
                image_keys.push(format!("KEYHASH {}", hex(value)));
            }
            tlv::PUBKEY if !t.protected => {
                key_matches = value == key_der.as_slice();
                image_keys.push(format!("PUBKEY with hash {}", hex(&Sha256::digest(value))));
            }
            k if k == key_sig_tlv && !t.protected => {
                sigs_of_key_kind += 1;
                if !key_matches {
                    continue;
                }
                key_matches = false;
                let check = key.verify_digest(&digest, value);
                if let (KeyKind::EcdsaP256, SignatureCheck::Valid) = (key_kind, &check) {
                    if value.last() == Some(&0)
                        && value.len() > 2
                        && value[1] as usize + 2 < value.len()
                    {
                        warnings.push(format!(
                            "ECDSA signature at byte offset {} carries zero padding \
                             (imgtool --pad-sig); current MCUboot accepts it",
                            t.offset
                        ));
                    }
                }
                decided = Some((check, t.offset));
            }
            k if is_signature_tlv(k) && !t.protected => {
                if let Some(kind) = KeyKind::from_signature_tlv(k) {
                    if !other_algorithms.contains(&kind.name()) {
                        other_algorithms.push(kind.name());
                    }
                }
            }
            _ => {}
        }
    }

    if !hash_valid {
        return Err(Rejection::NoHash);
    }
    let sig_name = tlv_name(key_sig_tlv).unwrap_or("signature").to_string();
    match decided {
        Some((SignatureCheck::Valid, _)) => {}
        Some((SignatureCheck::Invalid, offset)) => {
            return Err(Rejection::SignatureInvalid {
                name: sig_name,
                offset,
                key: key_kind,
            })
        }
        Some((SignatureCheck::BadLength { len, expected }, offset)) => {
            return Err(Rejection::SignatureLength {
                name: sig_name,
                offset,
                len,
                expected,
            })
        }
        Some((SignatureCheck::Malformed(detail), offset)) => {
            return Err(Rejection::SignatureMalformed {
                name: sig_name,
                offset,
                detail,
            })
        }
        None => {
            return Err(if sigs_of_key_kind > 0 {
                Rejection::KeyMismatch {
                    key_hash: hex(&key_hash),
                    image_keys: if image_keys.is_empty() {
                        "no KEYHASH or PUBKEY TLV".into()
                    } else {
                        image_keys.join(", ")
                    },
                }
            } else if !other_algorithms.is_empty() {
                Rejection::OtherAlgorithm {
                    found: other_algorithms.join(", "),
                    key: key_kind,
                }
            } else {
                Rejection::Unsigned
            })
        }
    }
    if !other_algorithms.is_empty() {
        warnings.push(format!(
            "signature TLVs of other algorithms ({}) ignored",
            other_algorithms.join(", ")
        ));
    }
    if let Some(min) = opts.min_version {
        if image.header.version.cmp_without_build(&min) == std::cmp::Ordering::Less {
            return Err(Rejection::Downgrade {
                image: image.header.version,
                min,
            });
        }
    }
    Ok(())
}
