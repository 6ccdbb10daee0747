//! Tampered variants of a genuine image: what the update suite pushes to a device to check that
//! it refuses unauthenticated firmware (EN 303 645 5.3-2/-7/-9/-10).
//!
//! Exists so each variant is made one well-defined way and is known to be rejected by a correct
//! MCUboot for exactly the intended reason (checked by the unit tests with [`crate::verify`]),
//! except `append-data`, which MCUboot ignores and the suite reports as information only.
//!
//! | kind | what changes | needs |
//! | --- | --- | --- |
//! | `payload-bitflip` | bit 0 of the payload's middle byte | — |
//! | `header-bitflip` | the top bit of `ih_load_addr` (hashed; not the magic, no size) | — |
//! | `signature-bitflip` | bit 0 of the signature's last byte | — |
//! | `truncate` | cut in the middle of the payload; TLVs gone | — |
//! | `unsigned` | KEYHASH/PUBKEY and signature TLVs removed; SHA256 kept and correct | — |
//! | `wrong-key` | re-signed (same version, payload, protected TLVs) with another key | key |
//! | `transplant-signature` | key and signature TLVs replaced by a donor image's | donor |
//! | `bad-magic` | magic 0x96f3b83d → 0x96f3b83c (bit 0 of byte 0) | — |
//! | `rollback` | re-signed with the genuine key and a lower version | genuine key, optional version |
//! | `append-data` | 1024 bytes (0xa5) appended after the TLV area | — |

use std::fmt;
use std::str::FromStr;

use crate::error::Error;
use crate::format::{field, is_signature_tlv, tlv, Image, TlvAreaBuilder, Version};
use crate::keys::SigningKey;
use crate::sign::{auto_security_counter, resign, PublicKeyFormat, SignOptions};

/// The kinds of tampered image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MutationKind {
    /// A bit of the payload flipped.
    PayloadBitflip,
    /// A bit of a hashed header field flipped (the load address).
    HeaderBitflip,
    /// A bit of the signature flipped.
    SignatureBitflip,
    /// The image cut short in the middle of the payload.
    Truncate,
    /// Signature and key TLVs removed, hash kept.
    Unsigned,
    /// Re-signed with another key.
    WrongKey,
    /// The signature of another genuine image of the same key.
    TransplantSignature,
    /// The image magic altered.
    BadMagic,
    /// Validly signed with the genuine key, but a lower version.
    Rollback,
    /// Data appended after the TLV area (MCUboot ignores it).
    AppendData,
}

/// What MCUboot should do with a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expectation {
    /// A secure device must refuse it.
    Reject,
    /// MCUboot ignores the change; whatever the device does is information only.
    Informational,
}

impl MutationKind {
    /// Every kind, in the catalogue's order.
    pub const ALL: [MutationKind; 10] = [
        MutationKind::PayloadBitflip,
        MutationKind::HeaderBitflip,
        MutationKind::SignatureBitflip,
        MutationKind::Truncate,
        MutationKind::Unsigned,
        MutationKind::WrongKey,
        MutationKind::TransplantSignature,
        MutationKind::BadMagic,
        MutationKind::Rollback,
        MutationKind::AppendData,
    ];

    /// The CLI name (`--kind`).
    pub fn name(self) -> &'static str {
        match self {
            MutationKind::PayloadBitflip => "payload-bitflip",
            MutationKind::HeaderBitflip => "header-bitflip",
            MutationKind::SignatureBitflip => "signature-bitflip",
            MutationKind::Truncate => "truncate",
            MutationKind::Unsigned => "unsigned",
            MutationKind::WrongKey => "wrong-key",
            MutationKind::TransplantSignature => "transplant-signature",
            MutationKind::BadMagic => "bad-magic",
            MutationKind::Rollback => "rollback",
            MutationKind::AppendData => "append-data",
        }
    }

    /// One line saying what the variant is.
    pub fn description(self) -> &'static str {
        match self {
            MutationKind::PayloadBitflip => "one bit of the payload flipped",
            MutationKind::HeaderBitflip => "one bit of the header's load address flipped",
            MutationKind::SignatureBitflip => "one bit of the signature flipped",
            MutationKind::Truncate => "image cut in the middle of the payload",
            MutationKind::Unsigned => "signature and key TLVs removed, hash kept",
            MutationKind::WrongKey => "re-signed with another key",
            MutationKind::TransplantSignature => "signature taken from another genuine image",
            MutationKind::BadMagic => "image magic altered",
            MutationKind::Rollback => "validly signed with a lower version",
            MutationKind::AppendData => "data appended after the TLV area",
        }
    }

    /// What MCUboot does with it.
    pub fn expectation(self) -> Expectation {
        match self {
            MutationKind::AppendData => Expectation::Informational,
            _ => Expectation::Reject,
        }
    }

    /// The inputs beyond the image that the kind needs, for help texts.
    pub fn needs(self) -> &'static str {
        match self {
            MutationKind::WrongKey => {
                "--key OTHER_KEY (a private key that did not sign the image, e.g. one from \
                 `hilsec image keygen attacker.pem`)"
            }
            MutationKind::TransplantSignature => {
                "--donor IMAGE (another genuine image signed by the same key)"
            }
            MutationKind::Rollback => {
                "--key GENUINE_KEY (the signing key) and optionally --version V (lower than the image's)"
            }
            _ => "nothing",
        }
    }

    /// All CLI names, comma-separated.
    pub fn names() -> String {
        MutationKind::ALL
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for MutationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for MutationKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        MutationKind::ALL
            .iter()
            .copied()
            .find(|k| k.name() == s)
            .ok_or_else(|| Error::UnknownMutation(s.to_string(), MutationKind::names()))
    }
}

/// Inputs some kinds need; see the table in the module documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct MutationInputs<'a> {
    /// `wrong-key`: the other key. `rollback`: the genuine signing key.
    pub key: Option<&'a SigningKey>,
    /// `transplant-signature`: another genuine image signed by the same key.
    pub donor: Option<&'a [u8]>,
    /// `rollback`: the lower version (default: the next lower one, see
    /// [`Version::next_lower`]).
    pub version: Option<Version>,
}

/// Bytes appended by `append-data`.
pub const APPEND_LEN: usize = 1024;

/// Makes the tampered variant `kind` of the genuine `image`.
pub fn mutate(
    kind: MutationKind,
    image: &[u8],
    inputs: &MutationInputs<'_>,
) -> Result<Vec<u8>, Error> {
    let fail = |reason: String| Error::Mutate {
        kind: kind.name(),
        reason,
    };
    let parsed = Image::parse(image).map_err(|e| {
        fail(format!(
            "the input must be a well-formed MCUboot image to tamper with: {e}"
        ))
    })?;
    let mut out = image.to_vec();
    match kind {
        MutationKind::PayloadBitflip => {
            if parsed.header.img_size == 0 {
                return Err(fail("the image has an empty payload".into()));
            }
            let at = parsed.header.hdr_size as usize + parsed.header.img_size as usize / 2;
            out[at] ^= 0x01;
        }
        MutationKind::HeaderBitflip => {
            out[field::LOAD_ADDR + 3] ^= 0x80;
        }
        MutationKind::SignatureBitflip => {
            let sig = parsed
                .tlvs
                .iter()
                .rev()
                .find(|t| !t.protected && is_signature_tlv(t.kind) && t.len > 0)
                .ok_or_else(|| fail("the image has no signature TLV to alter".into()))?;
            out[sig.value_range().end - 1] ^= 0x01;
        }
        MutationKind::Truncate => {
            let cut = parsed.header.hdr_size as usize + parsed.header.img_size as usize / 2;
            let cut = if parsed.header.img_size == 0 {
                parsed.tlv_end - 1
            } else {
                cut
            };
            out.truncate(cut);
        }
        MutationKind::Unsigned => {
            let mut area = TlvAreaBuilder::unprotected();
            let mut removed = 0;
            for t in parsed.tlvs.iter().filter(|t| !t.protected) {
                if is_signature_tlv(t.kind) || t.kind == tlv::KEYHASH || t.kind == tlv::PUBKEY {
                    removed += 1;
                    continue;
                }
                area.push(t.kind, parsed.value(t))?;
            }
            if removed == 0 {
                return Err(fail("the image is already unsigned".into()));
            }
            out.truncate(parsed.protected_end);
            out.extend_from_slice(&area.encode());
            out.extend_from_slice(parsed.trailing());
        }
        MutationKind::WrongKey => {
            let key = inputs
                .key
                .ok_or_else(|| fail(format!("it needs {}", kind.needs())))?;
            let kh = key.public_key().key_hash();
            if parsed
                .find(tlv::KEYHASH, false)
                .is_some_and(|t| parsed.value(t) == kh)
            {
                return Err(fail(
                    "the key given is the one that signed the image; pass a different key \
                     (e.g. a freshly generated attacker key)"
                        .into(),
                ));
            }
            out = resign(
                &parsed,
                key,
                parsed.header.version,
                None,
                &resign_options(&parsed),
            )?;
        }
        MutationKind::TransplantSignature => {
            let donor_bytes = inputs
                .donor
                .ok_or_else(|| fail(format!("it needs {}", kind.needs())))?;
            let donor = Image::parse(donor_bytes)
                .map_err(|e| fail(format!("the donor image is malformed: {e}")))?;
            let donor_sig_tlvs: Vec<_> = donor
                .tlvs
                .iter()
                .filter(|t| {
                    !t.protected
                        && (is_signature_tlv(t.kind)
                            || t.kind == tlv::KEYHASH
                            || t.kind == tlv::PUBKEY)
                })
                .collect();
            if !donor_sig_tlvs.iter().any(|t| is_signature_tlv(t.kind)) {
                return Err(fail("the donor image has no signature TLV".into()));
            }
            if donor.hashed_region() == parsed.hashed_region() {
                return Err(fail(
                    "the donor is the same image (same hashed contents): its signature would be \
                     valid here; use another genuine image (e.g. another version)"
                        .into(),
                ));
            }
            let mut area = TlvAreaBuilder::unprotected();
            // Keep this image's own hash (correct for its contents), then the donor's key and
            // signature: only the signature check can fail.
            for t in parsed.tlvs.iter().filter(|t| !t.protected) {
                if !(is_signature_tlv(t.kind) || t.kind == tlv::KEYHASH || t.kind == tlv::PUBKEY) {
                    area.push(t.kind, parsed.value(t))?;
                }
            }
            for t in donor_sig_tlvs {
                area.push(t.kind, donor.value(t))?;
            }
            out.truncate(parsed.protected_end);
            out.extend_from_slice(&area.encode());
            out.extend_from_slice(parsed.trailing());
        }
        MutationKind::BadMagic => {
            out[field::MAGIC] ^= 0x01;
        }
        MutationKind::Rollback => {
            let key = inputs
                .key
                .ok_or_else(|| fail(format!("it needs {}", kind.needs())))?;
            let current = parsed.header.version;
            let version = match inputs.version {
                Some(v) => {
                    if v.cmp_without_build(&current) != std::cmp::Ordering::Less {
                        return Err(fail(format!(
                            "version {v} is not lower than the image's {current} (compared as \
                             major.minor.revision)"
                        )));
                    }
                    v
                }
                None => current.next_lower().ok_or_else(|| {
                    fail(format!(
                        "the image's version {current} has no lower version; give a genuine \
                         image with a higher version"
                    ))
                })?,
            };
            // Lower a security counter too, so counter-based rollback protection sees a rollback.
            let counter = parsed.find(tlv::SEC_CNT, true).and_then(|t| {
                let v = parsed.value(t);
                let old = u32::from_le_bytes(v.try_into().ok()?);
                Some(if old == auto_security_counter(&current) {
                    auto_security_counter(&version)
                } else {
                    old.saturating_sub(1)
                })
            });
            out = resign(&parsed, key, version, counter, &resign_options(&parsed))?;
        }
        MutationKind::AppendData => {
            out.extend(std::iter::repeat_n(0xa5u8, APPEND_LEN));
        }
    }
    Ok(out)
}

/// Re-signing keeps the image's key identification format.
fn resign_options(image: &Image<'_>) -> SignOptions {
    let mut opts = SignOptions::new(image.header.version);
    if image.find(tlv::PUBKEY, false).is_some() && image.find(tlv::KEYHASH, false).is_none() {
        opts.public_key_format = PublicKeyFormat::Full;
    }
    opts
}
