//! Fuzzes everything that reads untrusted image bytes: parse, inspect, verify (with a fixed
//! ed25519 key) and the mutations that need no key. None may panic, and a parse must stay within
//! the input's bounds.
#![no_main]

use std::sync::OnceLock;

use hilsec_image::format::Image;
use hilsec_image::{
    inspect, mutate, verify, MutationInputs, MutationKind, PublicKey, SigningKey, VerifyOptions,
};
use libfuzzer_sys::fuzz_target;

fn key() -> &'static PublicKey {
    static KEY: OnceLock<PublicKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::ed25519_from_seed([7; 32]).public_key())
}

fuzz_target!(|data: &[u8]| {
    let parsed = Image::parse(data);
    if let Ok(image) = &parsed {
        assert!(image.tlv_end <= data.len());
        assert!(image.payload_end <= image.protected_end && image.protected_end <= image.tlv_end);
        for t in &image.tlvs {
            assert!(t.value_range().end <= image.tlv_end);
        }
    }
    assert_eq!(parsed.is_ok(), inspect(data).is_ok());
    let opts = VerifyOptions {
        min_version: Some(hilsec_image::Version::new(1, 0, 0, 0)),
    };
    let _ = verify(data, key(), &opts);
    for kind in MutationKind::ALL {
        if matches!(kind, MutationKind::WrongKey | MutationKind::Rollback) {
            continue; // they sign: slow, and covered by the unit tests
        }
        let inputs = MutationInputs {
            key: None,
            donor: Some(data),
            version: None,
        };
        if let Ok(out) = mutate(kind, data, &inputs) {
            let _ = Image::parse(&out);
        }
    }
});
