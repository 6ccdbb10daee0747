//! The `run_*` entry points: exit codes and output, as the harness's `hilsec image ...` sees them.

use std::path::PathBuf;

use clap::Parser;
use hilsec_image::cli::{
    run_inspect_to, run_keygen_to, run_mutate_to, run_sign_to, run_verify_to, ImageCommand,
    InspectArgs, KeygenArgs, KeygenType, MutateArgs, SignArgs, VerifyArgs,
};
use hilsec_image::{MutationKind, PublicKeyFormat};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: ImageCommand,
}

/// A fresh, empty folder for one test (keygen refuses to overwrite what an earlier run left).
fn dir(test: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("hilsec-image-cli")
        .join(test);
    if d.exists() {
        std::fs::remove_dir_all(&d).unwrap();
    }
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn text(buf: Vec<u8>) -> String {
    String::from_utf8(buf).unwrap()
}

#[test]
fn keygen_sign_verify_mutate_inspect() {
    let d = dir("keygen_sign_verify_mutate_inspect");
    let key = d.join("key.pem");
    let public = d.join("key.pub.pem");
    let mut out = Vec::new();
    let code = run_keygen_to(
        &KeygenArgs {
            key_type: KeygenType::Ed25519,
            public: Some(public.clone()),
            force: false,
            output: key.clone(),
        },
        &mut out,
    )
    .unwrap();
    assert_eq!(code, 0);
    assert!(text(out).contains("ed25519"));

    let fw = d.join("fw.bin");
    std::fs::write(&fw, vec![0x5a; 1000]).unwrap();
    let signed = d.join("fw.signed.bin");
    let mut out = Vec::new();
    let sign = SignArgs {
        key: key.clone(),
        version: "1.2.3".parse().unwrap(),
        header_size: 0x200,
        no_pad_header: false,
        slot_size: Some(0x10000),
        load_addr: 0,
        security_counter: Some("auto".into()),
        public_key_format: PublicKeyFormat::Hash,
        input: fw.clone(),
        output: signed.clone(),
    };
    assert_eq!(run_sign_to(&sign, &mut out).unwrap(), 0);

    // Verify with the public key: accepted, exit 0.
    let mut out = Vec::new();
    let verify = VerifyArgs {
        key: public.clone(),
        image: signed.clone(),
        min_version: None,
        json: false,
    };
    assert_eq!(run_verify_to(&verify, &mut out).unwrap(), 0);
    assert!(text(out).starts_with("accepted:"));

    // Each rejected kind: exit 1 with the reason printed.
    let donor = d.join("donor.bin");
    let mut donor_sign = sign.clone();
    donor_sign.version = "1.0.0".parse().unwrap();
    donor_sign.output = donor.clone();
    run_sign_to(&donor_sign, &mut Vec::new()).unwrap();
    let attacker = d.join("attacker.pem");
    run_keygen_to(
        &KeygenArgs {
            key_type: KeygenType::EcdsaP256,
            public: None,
            force: false,
            output: attacker.clone(),
        },
        &mut Vec::new(),
    )
    .unwrap();
    for kind in MutationKind::ALL {
        let bad = d.join(format!("{kind}.bin"));
        let mut out = Vec::new();
        let args = MutateArgs {
            kind,
            key: match kind {
                MutationKind::WrongKey => Some(attacker.clone()),
                MutationKind::Rollback => Some(key.clone()),
                _ => None,
            },
            donor: Some(donor.clone()),
            version: None,
            input: signed.clone(),
            output: bad.clone(),
        };
        assert_eq!(run_mutate_to(&args, &mut out).unwrap(), 0, "{kind}");
        let mut out = Vec::new();
        let args = VerifyArgs {
            key: key.clone(),
            image: bad,
            min_version: Some("1.2.3".parse().unwrap()),
            json: true,
        };
        let code = run_verify_to(&args, &mut out).unwrap();
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        if kind == MutationKind::AppendData {
            assert_eq!(code, 0);
            assert_eq!(json["accepted"], true);
            assert_eq!(json["warnings"].as_array().unwrap().len(), 1);
        } else {
            assert_eq!(code, 1, "{kind}: {json}");
            assert_eq!(json["accepted"], false);
            assert!(json["reason"].as_str().unwrap().len() > 10);
        }
    }

    // Inspect, text and JSON.
    let mut out = Vec::new();
    let args = InspectArgs {
        image: signed.clone(),
        json: true,
    };
    assert_eq!(run_inspect_to(&args, &mut out).unwrap(), 0);
    let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(json["version"], "1.2.3+0");
    assert_eq!(json["hash_valid"], true);
    assert_eq!(json["signature_kind"], "ed25519");
    assert_eq!(json["tlvs"][0]["name"], "SEC_CNT");
    let mut out = Vec::new();
    let args = InspectArgs {
        image: signed,
        json: false,
    };
    run_inspect_to(&args, &mut out).unwrap();
    let t = text(out);
    assert!(
        t.contains("protected TLVs (hashed):") && t.contains("SEC_CNT"),
        "{t}"
    );

    // Inspecting a non-image is an error naming the file and offset.
    let mut out = Vec::new();
    let err = run_inspect_to(
        &InspectArgs {
            image: fw,
            json: false,
        },
        &mut out,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("fw.bin") && err.contains("byte offset 0"),
        "{err}"
    );
}

#[test]
fn keygen_refuses_to_overwrite_a_key_without_force() {
    let d = dir("keygen_refuses_to_overwrite_a_key_without_force");
    let key = d.join("lab.pem");
    let public = d.join("lab.pub.pem");
    let args = KeygenArgs {
        key_type: KeygenType::Ed25519,
        public: None,
        force: false,
        output: key.clone(),
    };
    assert_eq!(run_keygen_to(&args, &mut Vec::new()).unwrap(), 0);
    let first = std::fs::read(&key).unwrap();

    // A second keygen to the same file is refused and leaves the key alone.
    let err = run_keygen_to(&args, &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("lab.pem") && err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(&key).unwrap(), first, "the key was kept");

    // An existing public key file is refused too, before the private key is written.
    let fresh = d.join("fresh.pem");
    std::fs::write(&public, "not mine").unwrap();
    let err = run_keygen_to(
        &KeygenArgs {
            key_type: KeygenType::EcdsaP256,
            public: Some(public.clone()),
            force: false,
            output: fresh.clone(),
        },
        &mut Vec::new(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("lab.pub.pem") && err.contains("--force"),
        "{err}"
    );
    assert!(!fresh.exists(), "nothing written when refusing");

    // With --force both are replaced by a new key pair.
    let forced = KeygenArgs {
        public: Some(public.clone()),
        force: true,
        ..args
    };
    assert_eq!(run_keygen_to(&forced, &mut Vec::new()).unwrap(), 0);
    assert_ne!(std::fs::read(&key).unwrap(), first, "a new key");
    assert!(std::fs::read_to_string(&public)
        .unwrap()
        .contains("BEGIN PUBLIC KEY"));
}

#[test]
fn signing_with_a_public_key_says_what_to_do() {
    let d = dir("signing_with_a_public_key_says_what_to_do");
    let public = d.join("only.pub.pem");
    let k = hilsec_image::SigningKey::ed25519_from_seed([1; 32]);
    std::fs::write(&public, k.public_key().to_pem().unwrap()).unwrap();
    let fw = d.join("small.bin");
    std::fs::write(&fw, [1, 2, 3]).unwrap();
    let err = run_sign_to(
        &SignArgs {
            key: public,
            version: "1.0.0".parse().unwrap(),
            header_size: 0x200,
            no_pad_header: false,
            slot_size: None,
            load_addr: 0,
            security_counter: None,
            public_key_format: PublicKeyFormat::Hash,
            input: fw,
            output: d.join("never.bin"),
        },
        &mut Vec::new(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("only a public key") && err.contains("private key"),
        "{err}"
    );
}

#[test]
fn command_line_parses() {
    let cli = Cli::try_parse_from([
        "image",
        "sign",
        "--key",
        "k.pem",
        "--version",
        "1.2.3+4",
        "--header-size",
        "0x400",
        "in.bin",
        "out.bin",
    ])
    .unwrap();
    match cli.command {
        ImageCommand::Sign(a) => {
            assert_eq!(a.header_size, 0x400);
            assert_eq!(a.version, hilsec_image::Version::new(1, 2, 3, 4));
        }
        _ => panic!("not sign"),
    }
    let cli = Cli::try_parse_from([
        "image",
        "mutate",
        "--kind",
        "transplant-signature",
        "--donor",
        "d.bin",
        "in",
        "out",
    ])
    .unwrap();
    assert!(
        matches!(cli.command, ImageCommand::Mutate(ref a) if a.kind == MutationKind::TransplantSignature)
    );
    assert!(Cli::try_parse_from(["image", "mutate", "--kind", "nope", "a", "b"]).is_err());
    assert!(Cli::try_parse_from([
        "image",
        "sign",
        "--key",
        "k",
        "--version",
        "1.2.3.4",
        "a",
        "b"
    ])
    .is_err());
    let cli = Cli::try_parse_from([
        "image",
        "verify",
        "--key",
        "k.pem",
        "img",
        "--min-version",
        "2.0.0",
    ])
    .unwrap();
    assert!(matches!(cli.command, ImageCommand::Verify(ref a) if a.min_version.is_some()));
    let cli = Cli::try_parse_from(["image", "keygen", "k.pem"]).unwrap();
    assert!(matches!(cli.command, ImageCommand::Keygen(ref a) if !a.force));
    let cli = Cli::try_parse_from(["image", "keygen", "--force", "k.pem"]).unwrap();
    assert!(matches!(cli.command, ImageCommand::Keygen(ref a) if a.force));
}
