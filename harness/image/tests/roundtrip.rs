//! Round trips through the public API: sign → parse/inspect → verify, and every mutation kind
//! against verify.

use hilsec_image::format::{tlv, Image};
use hilsec_image::{
    inspect, mutate, sign, verify, Expectation, Key, KeyKind, MutationInputs, MutationKind,
    PublicKeyFormat, Rejection, SignOptions, SigningKey, Verdict, VerifyOptions, Version,
};

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

fn ed() -> SigningKey {
    SigningKey::ed25519_from_seed([0x11; 32])
}

fn p256() -> SigningKey {
    SigningKey::ecdsa_p256_from_bytes([0x22; 32]).unwrap()
}

fn v(s: &str) -> Version {
    s.parse().unwrap()
}

fn none() -> VerifyOptions {
    VerifyOptions::default()
}

#[test]
fn sign_parse_verify_ed25519_and_p256() {
    for key in [ed(), p256()] {
        let image = sign(&payload(3000), &key, &SignOptions::new(v("1.2.3+4"))).unwrap();
        let parsed = Image::parse(&image).unwrap();
        assert_eq!(parsed.header.hdr_size, 0x200);
        assert_eq!(parsed.header.img_size, 3000);
        assert_eq!(parsed.header.version, Version::new(1, 2, 3, 4));
        assert_eq!(parsed.payload(), payload(3000).as_slice());
        // imgtool pads the header with the erased value 0xff.
        assert!(image[32..0x200].iter().all(|&b| b == 0xff));
        let kinds: Vec<u16> = parsed.tlvs.iter().map(|t| t.kind).collect();
        assert_eq!(
            kinds,
            vec![tlv::SHA256, tlv::KEYHASH, key.kind().signature_tlv()]
        );
        assert_eq!(parsed.trailing().len(), 0);

        let info = inspect(&image).unwrap();
        assert_eq!(info.hash_valid, Some(true));
        assert_eq!(info.signature_kind, Some(key.kind()));
        let json = serde_json::to_string(&info).unwrap();
        assert!(json.contains("\"version\":\"1.2.3+4\""), "{json}");
        assert!(info.to_string().contains("hash            valid"));

        let verdict = verify(&image, &key.public_key(), &none());
        assert_eq!(verdict, Verdict::Accepted { warnings: vec![] }, "{verdict}");
        // A different key of the same kind is refused.
        let other = match key.kind() {
            KeyKind::Ed25519 => SigningKey::ed25519_from_seed([0x99; 32]),
            _ => SigningKey::ecdsa_p256_from_bytes([0x98; 32]).unwrap(),
        };
        assert!(matches!(
            verify(&image, &other.public_key(), &none()).rejection(),
            Some(Rejection::KeyMismatch { .. })
        ));
    }
}

#[test]
fn ed25519_signing_is_deterministic() {
    let opts = SignOptions::new(v("2.0.0"));
    assert_eq!(
        sign(&payload(100), &ed(), &opts).unwrap(),
        sign(&payload(100), &ed(), &opts).unwrap()
    );
}

#[test]
fn resigning_an_image_keeps_payload_and_changes_version() {
    let image = sign(&payload(500), &ed(), &SignOptions::new(v("1.0.0"))).unwrap();
    let again = sign(&image, &p256(), &SignOptions::new(v("1.0.1"))).unwrap();
    let parsed = Image::parse(&again).unwrap();
    assert_eq!(parsed.payload(), payload(500).as_slice());
    assert_eq!(parsed.header.version, v("1.0.1"));
    assert!(verify(&again, &p256().public_key(), &none()).is_accepted());
    assert!(!verify(&again, &ed().public_key(), &none()).is_accepted());
}

#[test]
fn no_pad_header_needs_zeroed_header_room() {
    let mut opts = SignOptions::new(v("1.0.0"));
    opts.pad_header = false;
    opts.header_size = 0x40;
    let mut input = vec![0u8; 0x40];
    input.extend_from_slice(&payload(64));
    let image = sign(&input, &ed(), &opts).unwrap();
    assert_eq!(Image::parse(&image).unwrap().header.img_size, 64);
    assert!(verify(&image, &ed().public_key(), &none()).is_accepted());
    let err = sign(&payload(200), &ed(), &opts).unwrap_err().to_string();
    assert!(err.contains("--pad-header"), "{err}");
}

#[test]
fn slot_size_is_checked_like_imgtool() {
    let mut opts = SignOptions::new(v("1.0.0"));
    opts.slot_size = Some(0x400);
    let err = sign(&payload(2000), &ed(), &opts).unwrap_err().to_string();
    assert!(err.contains("exceeds the slot size 0x400"), "{err}");
    opts.slot_size = Some(0x10000);
    assert!(sign(&payload(2000), &ed(), &opts).is_ok());
}

#[test]
fn security_counter_goes_in_protected_area_and_is_hashed() {
    let mut opts = SignOptions::new(v("1.2.3"));
    opts.security_counter = Some(7);
    let image = sign(&payload(100), &ed(), &opts).unwrap();
    let parsed = Image::parse(&image).unwrap();
    assert_eq!(parsed.header.protect_tlv_size, 12);
    let sc = parsed.find(tlv::SEC_CNT, true).unwrap();
    assert_eq!(parsed.value(sc), 7u32.to_le_bytes());
    assert!(verify(&image, &ed().public_key(), &none()).is_accepted());
    // Changing the protected TLV breaks the hash.
    let mut bad = image.clone();
    bad[sc.value_offset()] ^= 1;
    assert!(matches!(
        verify(&bad, &ed().public_key(), &none()).rejection(),
        Some(Rejection::HashMismatch { .. })
    ));
}

#[test]
fn full_public_key_format() {
    let mut opts = SignOptions::new(v("1.0.0"));
    opts.public_key_format = PublicKeyFormat::Full;
    let image = sign(&payload(10), &ed(), &opts).unwrap();
    let parsed = Image::parse(&image).unwrap();
    assert!(parsed.find(tlv::PUBKEY, false).is_some());
    assert!(verify(&image, &ed().public_key(), &none()).is_accepted());
    // Mutations that re-sign keep the format.
    let rb = mutate(
        MutationKind::Rollback,
        &image,
        &MutationInputs {
            key: Some(&ed()),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(Image::parse(&rb)
        .unwrap()
        .find(tlv::PUBKEY, false)
        .is_some());
}

#[test]
fn private_and_public_pem_verify_alike() {
    let image = sign(&payload(10), &p256(), &SignOptions::new(v("1.0.0"))).unwrap();
    let private = Key::from_pem(&p256().to_pem().unwrap(), "p").unwrap();
    let public = Key::from_pem(&p256().public_key().to_pem().unwrap(), "q").unwrap();
    assert!(verify(&image, &private.public_key(), &none()).is_accepted());
    assert!(verify(&image, &public.public_key(), &none()).is_accepted());
}

#[test]
fn generated_attacker_key_round_trips_through_pem_file() {
    let dir = std::env::temp_dir().join(format!("hilsec-image-keygen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("attacker.pem");
    let k = SigningKey::generate_ed25519().unwrap();
    k.save(&path).unwrap();
    let back = Key::load(&path).unwrap();
    assert_eq!(back.public_key(), k.public_key());
    assert_ne!(
        SigningKey::generate_ed25519().unwrap().public_key(),
        k.public_key()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn inputs_for<'a>(
    kind: MutationKind,
    genuine: &'a SigningKey,
    attacker: &'a SigningKey,
    donor: &'a [u8],
) -> MutationInputs<'a> {
    match kind {
        MutationKind::WrongKey => MutationInputs {
            key: Some(attacker),
            ..Default::default()
        },
        MutationKind::Rollback => MutationInputs {
            key: Some(genuine),
            ..Default::default()
        },
        MutationKind::TransplantSignature => MutationInputs {
            donor: Some(donor),
            ..Default::default()
        },
        _ => MutationInputs::default(),
    }
}

#[test]
fn every_mutation_is_rejected_but_append_data() {
    for (key, attacker) in [
        (ed(), SigningKey::ed25519_from_seed([0x77; 32])),
        (p256(), SigningKey::ed25519_from_seed([0x78; 32])),
        (
            p256(),
            SigningKey::ecdsa_p256_from_bytes([0x79; 32]).unwrap(),
        ),
    ] {
        let running = v("1.2.3");
        let genuine = sign(&payload(4096), &key, &SignOptions::new(running)).unwrap();
        let donor = sign(&payload(2048), &key, &SignOptions::new(v("1.2.2"))).unwrap();
        let opts = VerifyOptions {
            min_version: Some(running),
        };
        assert!(verify(&genuine, &key.public_key(), &opts).is_accepted());
        for kind in MutationKind::ALL {
            let inputs = inputs_for(kind, &key, &attacker, &donor);
            let bad = mutate(kind, &genuine, &inputs).unwrap();
            assert_ne!(bad, genuine, "{kind} changed nothing");
            let verdict = verify(&bad, &key.public_key(), &opts);
            match kind.expectation() {
                Expectation::Reject => {
                    let reason = verdict
                        .rejection()
                        .unwrap_or_else(|| panic!("{kind} was accepted"));
                    let ok = match kind {
                        MutationKind::PayloadBitflip | MutationKind::HeaderBitflip => {
                            matches!(reason, Rejection::HashMismatch { .. })
                        }
                        MutationKind::SignatureBitflip => matches!(
                            reason,
                            Rejection::SignatureInvalid { .. }
                                | Rejection::SignatureMalformed { .. }
                        ),
                        MutationKind::Truncate | MutationKind::BadMagic => {
                            matches!(reason, Rejection::Malformed(_))
                        }
                        MutationKind::Unsigned => matches!(reason, Rejection::Unsigned),
                        MutationKind::WrongKey => matches!(
                            reason,
                            Rejection::KeyMismatch { .. } | Rejection::OtherAlgorithm { .. }
                        ),
                        MutationKind::TransplantSignature => {
                            matches!(reason, Rejection::SignatureInvalid { .. })
                        }
                        MutationKind::Rollback => matches!(reason, Rejection::Downgrade { .. }),
                        MutationKind::AppendData => false,
                    };
                    assert!(ok, "{kind}: unexpected reason {reason}");
                }
                Expectation::Informational => {
                    assert!(verdict.is_accepted(), "{kind}: {verdict}");
                    assert!(
                        verdict.warnings()[0].contains("1024 bytes after the TLV area"),
                        "{verdict}"
                    );
                }
            }
        }
        // Rollback is validly signed: without a running version it is accepted.
        let rb = mutate(
            MutationKind::Rollback,
            &genuine,
            &inputs_for(MutationKind::Rollback, &key, &attacker, &donor),
        )
        .unwrap();
        assert!(verify(&rb, &key.public_key(), &none()).is_accepted());
        assert_eq!(Image::parse(&rb).unwrap().header.version, v("1.2.2"));
        // The unsigned variant keeps a correct hash.
        let uns = mutate(MutationKind::Unsigned, &genuine, &MutationInputs::default()).unwrap();
        assert_eq!(inspect(&uns).unwrap().hash_valid, Some(true));
        assert_eq!(inspect(&uns).unwrap().signature_kind, None);
    }
}

#[test]
fn mutation_names_round_trip_and_inputs_are_required() {
    for kind in MutationKind::ALL {
        assert_eq!(kind.name().parse::<MutationKind>().unwrap(), kind);
        assert_eq!(kind.to_string(), kind.name());
    }
    let err = "flip".parse::<MutationKind>().unwrap_err().to_string();
    assert!(err.contains("payload-bitflip"), "{err}");

    let genuine = sign(&payload(64), &ed(), &SignOptions::new(v("0.0.0"))).unwrap();
    let none = MutationInputs::default();
    for kind in [
        MutationKind::WrongKey,
        MutationKind::Rollback,
        MutationKind::TransplantSignature,
    ] {
        let err = mutate(kind, &genuine, &none).unwrap_err().to_string();
        assert!(err.contains("needs"), "{kind}: {err}");
    }
    // Wrong key must differ from the genuine one.
    let same = MutationInputs {
        key: Some(&ed()),
        ..Default::default()
    };
    assert!(mutate(MutationKind::WrongKey, &genuine, &same).is_err());
    // 0.0.0 has no lower version.
    let err = mutate(MutationKind::Rollback, &genuine, &same)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no lower version"), "{err}");
    // Explicit rollback versions must be lower.
    let g2 = sign(&payload(64), &ed(), &SignOptions::new(v("2.0.0"))).unwrap();
    let higher = MutationInputs {
        key: Some(&ed()),
        version: Some(v("2.0.0+9")),
        ..Default::default()
    };
    assert!(mutate(MutationKind::Rollback, &g2, &higher).is_err());
    // A donor identical to the image would carry a valid signature.
    let self_donor = MutationInputs {
        donor: Some(&genuine),
        ..Default::default()
    };
    assert!(mutate(MutationKind::TransplantSignature, &genuine, &self_donor).is_err());
    // Unsigned twice is refused.
    let uns = mutate(MutationKind::Unsigned, &genuine, &none).unwrap();
    assert!(mutate(MutationKind::Unsigned, &uns, &none).is_err());
}

#[test]
fn rollback_lowers_an_auto_security_counter() {
    let mut opts = SignOptions::new(v("1.2.3"));
    opts.security_counter = Some(hilsec_image::sign::auto_security_counter(&v("1.2.3")));
    let genuine = sign(&payload(64), &ed(), &opts).unwrap();
    let rb = mutate(
        MutationKind::Rollback,
        &genuine,
        &MutationInputs {
            key: Some(&ed()),
            version: Some(v("1.1.0")),
            ..Default::default()
        },
    )
    .unwrap();
    let parsed = Image::parse(&rb).unwrap();
    let sc = parsed.find(tlv::SEC_CNT, true).unwrap();
    assert_eq!(parsed.value(sc), 0x0101_0000u32.to_le_bytes());
    assert!(verify(&rb, &ed().public_key(), &none()).is_accepted());
}

#[test]
fn trailing_slot_padding_is_recognised() {
    let mut image = sign(&payload(64), &ed(), &SignOptions::new(v("1.0.0"))).unwrap();
    image.extend(std::iter::repeat_n(0xff, 100));
    image.extend_from_slice(&[
        0x77, 0xc2, 0x95, 0xf3, 0x60, 0xd2, 0xef, 0x7f, 0x35, 0x52, 0x50, 0x0f, 0x2c, 0xb6, 0x79,
        0x80,
    ]);
    let verdict = verify(&image, &ed().public_key(), &none());
    assert!(verdict.is_accepted());
    assert!(
        verdict.warnings()[0].contains("imgtool sign --pad"),
        "{verdict}"
    );
}

#[test]
fn unprotected_extra_tlv_is_refused() {
    let image = sign(&payload(64), &ed(), &SignOptions::new(v("1.0.0"))).unwrap();
    let parsed = Image::parse(&image).unwrap();
    // Append a SEC_CNT entry to the unprotected area (allowed only in the protected one).
    let mut bad = image[..parsed.tlv_end].to_vec();
    bad.extend_from_slice(&tlv::SEC_CNT.to_le_bytes());
    bad.extend_from_slice(&4u16.to_le_bytes());
    bad.extend_from_slice(&[9, 9, 9, 9]);
    let tot_at = parsed.protected_end + 2;
    let tot = u16::from_le_bytes([bad[tot_at], bad[tot_at + 1]]) + 8;
    bad[tot_at..tot_at + 2].copy_from_slice(&tot.to_le_bytes());
    assert!(matches!(
        verify(&bad, &ed().public_key(), &none()).rejection(),
        Some(Rejection::UnprotectedTlv { .. })
    ));
}
