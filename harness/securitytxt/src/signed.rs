//! OpenPGP cleartext-signature armour (RFC 4880 section 7, RFC 9116 sections 2.3 and 4).
//!
//! This module exists because a signed security.txt wraps the fields in armour that is not
//! itself security.txt syntax: it must be recognised, checked for structure, and peeled off
//! (undoing dash-escaping) before the fields can be validated, while keeping each inner
//! line's number in the original file. Only the armour's structure is checked: the
//! signature packet is base64-decoded, its CRC-24 checksum (if present) compared and its
//! packet tag checked, but it is not verified against any key.
//!
//! Lines outside the signed part (before the header or after the signature) are reported
//! and not validated: they are not covered by the signature, so trusting them would let
//! anyone prepend a `Contact:` to a signed file.

use base64::Engine as _;

use crate::lines::Line;
use crate::report::{codes, Collector, Signature};

const SIGNED_HEADER: &str = "-----BEGIN PGP SIGNED MESSAGE-----";
const SIG_BEGIN: &str = "-----BEGIN PGP SIGNATURE-----";
const SIG_END: &str = "-----END PGP SIGNATURE-----";

/// Hash algorithm names that OpenPGP defines for the `Hash:` header (RFC 4880 9.4,
/// RFC 9580 9.5).
const KNOWN_HASHES: &[&str] = &[
    "MD5",
    "SHA1",
    "RIPEMD160",
    "SHA224",
    "SHA256",
    "SHA384",
    "SHA512",
    "SHA3-256",
    "SHA3-512",
];

/// What remains to validate once any armour is removed.
pub(crate) struct Unwrapped {
    /// The security.txt lines (dash-escaping undone), with original line numbers.
    pub content: Vec<Line>,
    /// Present when the file is (or tries to be) cleartext-signed.
    pub signature: Option<Signature>,
}

/// Armour lines are compared without trailing whitespace (RFC 4880 7.1 ignores it).
fn bare(text: &str) -> &str {
    text.trim_end_matches([' ', '\t'])
}

fn is_blank(text: &str) -> bool {
    bare(text).is_empty()
}

/// Recognises and strips a cleartext signature; an unsigned file is returned unchanged.
pub(crate) fn unwrap(lines: Vec<Line>, out: &mut Collector) -> Unwrapped {
    let Some(header_idx) = lines.iter().position(|l| bare(&l.text) == SIGNED_HEADER) else {
        // Unsigned. A stray signature block is still armour that does not belong here.
        let mut content = lines;
        if let Some(pos) = content.iter().position(|l| bare(&l.text) == SIG_BEGIN) {
            out.error(
                codes::SIGNED_FORMAT_ISSUE,
                Some(content[pos].number),
                format!(
                    "`{SIG_BEGIN}` without a preceding `{SIGNED_HEADER}`; sign the file with \
                     `gpg --clearsign`"
                ),
            );
            content.truncate(pos);
        }
        return Unwrapped {
            content,
            signature: None,
        };
    };

    let mut ok = true;
    let mut issue = |out: &mut Collector, line: Option<usize>, msg: String| {
        ok = false;
        out.error(codes::SIGNED_FORMAT_ISSUE, line, msg);
    };

    if let Some(l) = lines[..header_idx].iter().find(|l| !is_blank(&l.text)) {
        issue(
            out,
            Some(l.number),
            format!(
                "text before `{SIGNED_HEADER}` is not covered by the signature and was ignored"
            ),
        );
    }

    // Armour headers of the signed message: one or more `Hash:` lines, then a blank line.
    let mut hashes = Vec::new();
    let mut i = header_idx + 1;
    while let Some(l) = lines.get(i) {
        let t = bare(&l.text);
        if t.is_empty() {
            i += 1;
            break;
        }
        let Some(list) = t.strip_prefix("Hash:") else {
            issue(
                out,
                Some(l.number),
                "expected a `Hash:` armour header or a blank line before the signed text"
                    .to_string(),
            );
            break;
        };
        if !list.starts_with(' ') {
            issue(
                out,
                Some(l.number),
                "`Hash:` must be followed by a space".to_string(),
            );
        }
        for alg in list.split(',').map(|a| a.trim_matches([' ', '\t'])) {
            if KNOWN_HASHES.contains(&alg) {
                hashes.push(alg.to_string());
            } else {
                issue(
                    out,
                    Some(l.number),
                    format!("unknown hash algorithm {alg:?} in `Hash:` header"),
                );
            }
        }
        i += 1;
    }
    if hashes.is_empty() {
        issue(
            out,
            Some(lines[header_idx].number),
            "no `Hash:` armour header after the signed-message header (RFC 9116 section 4 requires one)"
                .to_string(),
        );
    }

    // The signed text, dash-escaped, up to the signature block.
    let mut content = Vec::new();
    let mut sig_idx = None;
    while let Some(l) = lines.get(i) {
        if bare(&l.text) == SIG_BEGIN {
            sig_idx = Some(i);
            break;
        }
        if let Some(rest) = l.text.strip_prefix("- ") {
            content.push(Line {
                number: l.number,
                text: rest.to_string(),
            });
        } else {
            if l.text.starts_with('-') {
                issue(
                    out,
                    Some(l.number),
                    "a signed line starting with '-' must be dash-escaped as \"- -\" (RFC 4880 section 7.1)"
                        .to_string(),
                );
            }
            content.push(l.clone());
        }
        i += 1;
    }

    let Some(sig_idx) = sig_idx else {
        issue(
            out,
            lines.last().map(|l| l.number),
            format!("the signed message has no `{SIG_BEGIN}` block"),
        );
        return Unwrapped {
            content,
            signature: Some(Signature {
                hash_algorithms: hashes,
                armour_ok: false,
            }),
        };
    };

    let sig_ok = check_signature_block(&lines[sig_idx..], out);
    ok = ok && sig_ok;

    Unwrapped {
        content,
        signature: Some(Signature {
            hash_algorithms: hashes,
            armour_ok: ok,
        }),
    }
}

/// Checks `-----BEGIN PGP SIGNATURE-----` .. `-----END PGP SIGNATURE-----` and anything
/// after it. `block[0]` is the BEGIN line. Returns whether it was well formed.
fn check_signature_block(block: &[Line], out: &mut Collector) -> bool {
    let mut ok = true;
    let mut issue = |out: &mut Collector, line: Option<usize>, msg: String| {
        ok = false;
        out.error(codes::SIGNED_FORMAT_ISSUE, line, msg);
    };
    let begin_line = block.first().map(|l| l.number);

    // Armour headers (`Version: ...`, `Comment: ...`), then a blank line.
    let mut i = 1;
    while let Some(l) = block.get(i) {
        let t = bare(&l.text);
        if t.is_empty() {
            i += 1;
            break;
        }
        if t == SIG_END || !is_armour_header(t) {
            if t != SIG_END {
                issue(
                    out,
                    Some(l.number),
                    "a blank line must separate the signature's armour headers from its data"
                        .to_string(),
                );
            }
            break;
        }
        i += 1;
    }

    // Base64 data, an optional `=XXXX` CRC-24 checksum, the END line.
    let mut data = String::new();
    let mut checksum: Option<(usize, String)> = None;
    let mut end_idx = None;
    let mut bad_data = false;
    while let Some(l) = block.get(i) {
        let t = bare(&l.text);
        if t == SIG_END {
            end_idx = Some(i);
            break;
        }
        if let Some(c) = t.strip_prefix('=').filter(|c| c.len() == 4) {
            checksum = Some((l.number, c.to_string()));
        } else if t.is_empty() {
            issue(
                out,
                Some(l.number),
                "blank line inside the signature data".to_string(),
            );
        } else if checksum.is_some() {
            issue(
                out,
                Some(l.number),
                "signature data after the checksum line".to_string(),
            );
        } else if t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
        {
            data.push_str(t);
        } else {
            bad_data = true;
            issue(
                out,
                Some(l.number),
                "signature data must be base64 (A-Z a-z 0-9 + / =)".to_string(),
            );
        }
        i += 1;
    }

    let Some(end_idx) = end_idx else {
        issue(
            out,
            begin_line,
            format!("the signature block has no `{SIG_END}` line"),
        );
        return ok;
    };

    if data.is_empty() {
        issue(
            out,
            block.get(end_idx).map(|l| l.number),
            "the signature block holds no signature data".to_string(),
        );
    } else if !bad_data {
        // With a rejected line the data is known damaged: a checksum or packet finding
        // would only repeat that.
        match base64::engine::general_purpose::STANDARD.decode(data.as_bytes()) {
            Err(e) => issue(
                out,
                begin_line,
                format!("signature data is not valid base64: {e}"),
            ),
            Ok(packet) => {
                if let Some((line, sum)) = &checksum {
                    match base64::engine::general_purpose::STANDARD.decode(sum.as_bytes()) {
                        Ok(b) if b.len() == 3 => {
                            let want =
                                (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
                            if crc24(&packet) != want {
                                issue(
                                    out,
                                    Some(*line),
                                    "the armour checksum does not match the signature data (damaged in transit?)"
                                        .to_string(),
                                );
                            }
                        }
                        _ => issue(
                            out,
                            Some(*line),
                            "the armour checksum line is not 4 base64 characters".to_string(),
                        ),
                    }
                }
                if packet_tag(&packet) != Some(2) {
                    issue(
                        out,
                        begin_line,
                        "the signature data is not an OpenPGP signature packet".to_string(),
                    );
                }
            }
        }
    }

    if let Some(l) = block[end_idx + 1..].iter().find(|l| !is_blank(&l.text)) {
        issue(
            out,
            Some(l.number),
            format!("text after `{SIG_END}` is not covered by the signature and was ignored"),
        );
    }
    ok
}

/// `Key: value` with a token key (RFC 4880 6.2).
fn is_armour_header(t: &str) -> bool {
    match t.split_once(": ") {
        Some((k, _)) => !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
        None => false,
    }
}

/// The OpenPGP packet tag of the first packet (RFC 4880 4.2), if the header is well formed.
fn packet_tag(packet: &[u8]) -> Option<u8> {
    let first = *packet.first()?;
    if first & 0x80 == 0 {
        return None;
    }
    if first & 0x40 != 0 {
        Some(first & 0x3F)
    } else {
        Some((first >> 2) & 0x0F)
    }
}

/// CRC-24 as used by OpenPGP ASCII armour (RFC 4880 6.1).
fn crc24(data: &[u8]) -> u32 {
    const INIT: u32 = 0x00B7_04CE;
    const POLY: u32 = 0x0186_4CFB;
    let mut crc = INIT;
    for &b in data {
        crc ^= u32::from(b) << 16;
        for _ in 0..8 {
            crc <<= 1;
            if crc & 0x0100_0000 != 0 {
                crc ^= POLY;
            }
        }
    }
    crc & 0x00FF_FFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc24_of_empty_is_init() {
        assert_eq!(crc24(&[]), 0x00B7_04CE);
    }

    #[test]
    fn packet_tags() {
        assert_eq!(packet_tag(&[0xC2]), Some(2)); // new format, tag 2
        assert_eq!(packet_tag(&[0x88]), Some(2)); // old format, tag 2
        assert_eq!(packet_tag(&[0x99]), Some(6)); // old format public key
        assert_eq!(packet_tag(&[0x02]), None);
        assert_eq!(packet_tag(&[]), None);
    }

    #[test]
    fn armour_header_shape() {
        assert!(is_armour_header("Version: GnuPG v2"));
        assert!(is_armour_header("Comment: a: b"));
        assert!(!is_armour_header("iQIzBAEBCAAdFiEE"));
        assert!(!is_armour_header(": x"));
    }
}
