//! Malformed input: every truncation, lengths past the end, huge sizes. Parsing, inspecting,
//! verifying and mutating must return errors (or rejections), never panic.

use hilsec_image::format::{field, Image};
use hilsec_image::{
    inspect, mutate, sign, verify, MutationInputs, MutationKind, ParseError, Rejection,
    SignOptions, SigningKey, VerifyOptions,
};

fn key() -> SigningKey {
    SigningKey::ed25519_from_seed([5; 32])
}

fn small_image(security_counter: bool) -> Vec<u8> {
    let mut opts = SignOptions::new("1.0.0".parse().unwrap());
    opts.header_size = 32;
    if security_counter {
        opts.security_counter = Some(1);
    }
    sign(&[1, 2, 3, 4, 5, 6, 7, 8], &key(), &opts).unwrap()
}

fn everything(bytes: &[u8]) {
    let parsed = Image::parse(bytes);
    let inspected = inspect(bytes);
    assert_eq!(parsed.is_ok(), inspected.is_ok());
    let verdict = verify(bytes, &key().public_key(), &VerifyOptions::default());
    if let Err(e) = parsed {
        assert_eq!(verdict.rejection(), Some(&Rejection::Malformed(e.clone())));
        // The message names an offset.
        assert!(e.to_string().contains("offset"), "{e}");
    }
    let k = key();
    for kind in MutationKind::ALL {
        let inputs = MutationInputs {
            key: Some(&k),
            donor: Some(bytes),
            version: None,
        };
        let _ = mutate(kind, bytes, &inputs);
    }
}

#[test]
fn truncated_at_every_offset_is_an_error() {
    for sc in [false, true] {
        let image = small_image(sc);
        assert!(Image::parse(&image).is_ok());
        for len in 0..image.len() {
            let cut = &image[..len];
            let e = Image::parse(cut).expect_err("a truncated image must not parse");
            assert!(e.offset() <= image.len() as u64, "{e}");
            everything(cut);
        }
    }
}

#[test]
fn truncated_header_names_offset_zero() {
    let e = Image::parse(&[0x3d, 0xb8, 0xf3]).unwrap_err();
    assert!(matches!(
        e,
        ParseError::Truncated {
            offset: 0,
            need: 32,
            available: 3,
            ..
        }
    ));
    assert!(e.to_string().contains("byte offset 0"), "{e}");
}

fn set_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn set_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn huge_sizes_are_errors_without_allocation() {
    let image = small_image(false);
    for img_size in [u32::MAX, u32::MAX - 31, 0x8000_0000, image.len() as u32] {
        let mut b = image.clone();
        set_u32(&mut b, field::IMG_SIZE, img_size);
        let e = Image::parse(&b).unwrap_err();
        assert!(
            matches!(e, ParseError::PastEnd { .. } | ParseError::Truncated { .. }),
            "{e}"
        );
        everything(&b);
    }
    for hdr_size in [u16::MAX, 0x1000] {
        let mut b = image.clone();
        set_u16(&mut b, field::HDR_SIZE, hdr_size);
        assert!(matches!(
            Image::parse(&b).unwrap_err(),
            ParseError::PastEnd { .. }
        ));
        everything(&b);
    }
    for hdr_size in [0u16, 31] {
        let mut b = image.clone();
        set_u16(&mut b, field::HDR_SIZE, hdr_size);
        assert!(matches!(
            Image::parse(&b).unwrap_err(),
            ParseError::HeaderTooSmall { .. }
        ));
        everything(&b);
    }
}

#[test]
fn tlv_lengths_past_the_end_are_errors() {
    let image = small_image(false);
    let parsed = Image::parse(&image).unwrap();
    let info = parsed.protected_end;
    // TLV area total past the end of the file.
    for tot in [u16::MAX, (image.len() - info + 1) as u16] {
        let mut b = image.clone();
        set_u16(&mut b, info + 2, tot);
        let e = Image::parse(&b).unwrap_err();
        assert!(matches!(e, ParseError::PastEnd { .. }), "{e}");
        everything(&b);
    }
    // TLV area total smaller than its header.
    let mut b = image.clone();
    set_u16(&mut b, info + 2, 3);
    assert!(matches!(
        Image::parse(&b).unwrap_err(),
        ParseError::TlvAreaTooSmall { .. }
    ));
    everything(&b);
    // One entry's length running past its area.
    for t in &parsed.tlvs {
        for len in [u16::MAX, t.len + 1] {
            let mut b = image.clone();
            set_u16(&mut b, t.offset + 2, len);
            let e = Image::parse(&b).unwrap_err();
            assert!(matches!(e, ParseError::TlvPastArea { .. }), "{e}");
            if len == u16::MAX {
                assert_eq!(e.offset(), t.offset as u64);
            }
            everything(&b);
        }
    }
    // A TLV area total that ends inside an entry header.
    let mut b = image.clone();
    set_u16(&mut b, info + 2, 4 + 2);
    assert!(matches!(
        Image::parse(&b).unwrap_err(),
        ParseError::TlvPastArea { .. }
    ));
    everything(&b);
}

#[test]
fn protected_area_inconsistencies_are_errors() {
    let image = small_image(true);
    let parsed = Image::parse(&image).unwrap();
    // Header says a different protected size.
    for p in [0u16, 8, 16, u16::MAX] {
        let mut b = image.clone();
        set_u16(&mut b, field::PROTECT_TLV_SIZE, p);
        let e = Image::parse(&b).unwrap_err();
        assert!(
            matches!(
                e,
                ParseError::ProtectedSizeMismatch { .. } | ParseError::BadTlvInfoMagic { .. }
            ),
            "{p}: {e}"
        );
        everything(&b);
    }
    // Protected size claimed but no protected area.
    let unprot = small_image(false);
    let mut b = unprot.clone();
    set_u16(&mut b, field::PROTECT_TLV_SIZE, 12);
    assert!(matches!(
        Image::parse(&b).unwrap_err(),
        ParseError::BadTlvInfoMagic { .. }
    ));
    everything(&b);
    // Bad unprotected magic.
    let mut b = image.clone();
    set_u16(&mut b, parsed.protected_end, 0x1234);
    assert!(matches!(
        Image::parse(&b).unwrap_err(),
        ParseError::BadTlvInfoMagic { found: 0x1234, .. }
    ));
    everything(&b);
}

#[test]
fn every_single_byte_corruption_is_handled() {
    let image = small_image(true);
    for at in 0..image.len() {
        for x in [0x01u8, 0x80, 0xff] {
            let mut b = image.clone();
            b[at] ^= x;
            everything(&b);
            // Any change to a genuine image (but in ignored padding, none here) must be refused.
            assert!(
                !verify(&b, &key().public_key(), &VerifyOptions::default()).is_accepted(),
                "flip 0x{x:02x} at {at} accepted"
            );
        }
    }
}

#[test]
fn garbage_is_rejected() {
    everything(&[]);
    everything(&[0u8; 100]);
    everything(&[0xffu8; 100]);
    let mut b = vec![0u8; 64];
    b[..4].copy_from_slice(&0x96f3_b83du32.to_le_bytes());
    everything(&b);
}
