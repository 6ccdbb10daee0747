//! Interoperability with MCUboot's own `imgtool` (PyPI package `imgtool`).
//!
//! imgtool is found through `HILSEC_IMGTOOL` (path to the `imgtool` executable) or else installed
//! once into a venv at `<target dir>/imgtool-venv` with `python3 -m venv` and `pip install imgtool`.
//! If neither works the tests FAIL, saying why: they never skip silently.
//!
//! Checked: imgtool-made keys load; imgtool-signed images verify here; images signed here verify
//! with `imgtool verify` (and are byte-identical for ed25519); every tampered variant that
//! imgtool can judge (all but rollback, which needs a version policy) is refused by
//! `imgtool verify`, and append-data is accepted by it, as MCUboot ignores it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use hilsec_image::{
    mutate, sign, verify, Expectation, Key, KeyKind, MutationInputs, MutationKind, SignOptions,
    SigningKey, VerifyOptions, Version,
};

/// The pinned imgtool version installed into the venv (the one this crate was checked against).
const IMGTOOL_SPEC: &str = "imgtool==2.5.0";

fn target_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is <target dir>/tmp.
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().map(Path::to_path_buf).unwrap_or(tmp)
}

fn run_checked(cmd: &mut Command, what: &str) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what} ({cmd:?}): {e}"));
    if !out.status.success() {
        panic!(
            "{what} failed ({cmd:?}, {}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// The imgtool executable, installing it on first use.
fn imgtool() -> &'static Path {
    static IMGTOOL: OnceLock<PathBuf> = OnceLock::new();
    IMGTOOL.get_or_init(|| {
        if let Some(p) = std::env::var_os("HILSEC_IMGTOOL") {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "HILSEC_IMGTOOL={} is not a file; point it at an `imgtool` executable or unset it \
                 to let this test install imgtool into a venv",
                p.display()
            );
            return p;
        }
        let venv = target_dir().join("imgtool-venv");
        let exe = venv.join("bin").join("imgtool");
        std::fs::create_dir_all(target_dir()).expect("create target dir");
        // Other test processes (nextest) may install at the same time: take a file lock.
        let lock = File::create(target_dir().join("imgtool-venv.lock")).expect("create lock file");
        lock.lock().expect("lock imgtool-venv.lock");
        if !exe.is_file() {
            let help = "imgtool is needed for the interop tests: set HILSEC_IMGTOOL to an imgtool \
                        executable, or make `python3 -m venv` and PyPI (pip install imgtool) \
                        reachable";
            let _ = std::fs::remove_dir_all(&venv);
            let out = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .output()
                .unwrap_or_else(|e| {
                    panic!(
                        "cannot run python3 to create {}: {e}; {help}",
                        venv.display()
                    )
                });
            assert!(
                out.status.success(),
                "python3 -m venv {} failed: {}; {help}",
                venv.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            let out = Command::new(venv.join("bin").join("pip"))
                .args([
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    IMGTOOL_SPEC,
                ])
                .output()
                .unwrap_or_else(|e| panic!("cannot run pip in {}: {e}; {help}", venv.display()));
            if !out.status.success() {
                let _ = std::fs::remove_dir_all(&venv);
                panic!(
                    "pip install {IMGTOOL_SPEC} failed: {}; {help}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            assert!(
                exe.is_file(),
                "pip installed imgtool but {} is missing",
                exe.display()
            );
        }
        drop(lock);
        exe
    })
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("imgtool-interop")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn keygen(dir: &Path, kind: &str) -> PathBuf {
    let path = dir.join(format!("{kind}.pem"));
    run_checked(
        Command::new(imgtool())
            .args(["keygen", "-t", kind, "-k"])
            .arg(&path),
        "imgtool keygen",
    );
    path
}

fn imgtool_verify(key: &Path, image: &Path) -> (bool, String) {
    let out = Command::new(imgtool())
        .args(["verify", "-k"])
        .arg(key)
        .arg(image)
        .output()
        .expect("run imgtool verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = out.status.success() && text.contains("Image was correctly validated");
    (ok, text)
}

fn firmware(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 256) as u8).collect()
}

fn imgtool_sign(key: &Path, version: &str, input: &Path, output: &Path, extra: &[&str]) {
    run_checked(
        Command::new(imgtool())
            .args(["sign", "-k"])
            .arg(key)
            .args([
                "--version",
                version,
                "--header-size",
                "0x200",
                "--pad-header",
                "--slot-size",
                "0x20000",
            ])
            .args(extra)
            .arg(input)
            .arg(output),
        "imgtool sign",
    );
}

/// Runs the whole round for one key type.
fn round(kind: &str, expect: KeyKind, all_mutations: bool) {
    let dir = scratch(kind);
    let key_path = keygen(&dir, kind);
    let key = Key::load(&key_path).expect("load imgtool key");
    assert_eq!(key.kind(), expect);
    let signing = key
        .signing_key()
        .expect("imgtool keygen writes private keys")
        .clone();

    // imgtool getpub -e pem: the public half loads too and has the same hash.
    let out = run_checked(
        Command::new(imgtool())
            .args(["getpub", "-e", "pem", "-k"])
            .arg(&key_path),
        "imgtool getpub",
    );
    let pub_path = dir.join("pub.pem");
    std::fs::write(&pub_path, &out.stdout).unwrap();
    let public = Key::load(&pub_path)
        .expect("load imgtool public key")
        .public_key();
    assert_eq!(public.key_hash(), key.public_key().key_hash());

    // imgtool sign -> hilsec verify.
    let fw = dir.join("fw.bin");
    std::fs::write(&fw, firmware(5000)).unwrap();
    let theirs = dir.join("theirs.bin");
    imgtool_sign(&key_path, "1.2.3+4", &fw, &theirs, &[]);
    let theirs_bytes = std::fs::read(&theirs).unwrap();
    let verdict = verify(&theirs_bytes, &public, &VerifyOptions::default());
    assert!(
        verdict.is_accepted(),
        "{kind}: imgtool-signed image: {verdict}"
    );

    // imgtool sign with a security counter, full public key and slot padding -> hilsec verify.
    let padded = dir.join("padded.bin");
    imgtool_sign(
        &key_path,
        "1.2.3",
        &fw,
        &padded,
        &[
            "--security-counter",
            "auto",
            "--public-key-format",
            "full",
            "--pad",
        ],
    );
    let verdict = verify(
        &std::fs::read(&padded).unwrap(),
        &public,
        &VerifyOptions::default(),
    );
    assert!(verdict.is_accepted(), "{kind}: padded image: {verdict}");
    assert!(
        verdict.warnings().iter().any(|w| w.contains("boot magic")),
        "{kind}: {verdict}"
    );

    // hilsec sign -> imgtool verify.
    let version: Version = "1.2.3+4".parse().unwrap();
    let mut opts = SignOptions::new(version);
    opts.slot_size = Some(0x20000);
    let ours_bytes = sign(&firmware(5000), &signing, &opts).unwrap();
    let ours = dir.join("ours.bin");
    std::fs::write(&ours, &ours_bytes).unwrap();
    let (ok, text) = imgtool_verify(&key_path, &ours);
    assert!(ok, "{kind}: imgtool verify of hilsec-signed image: {text}");
    if expect == KeyKind::Ed25519 {
        assert_eq!(
            ours_bytes, theirs_bytes,
            "ed25519 images must be byte-identical to imgtool's"
        );
    }

    // hilsec mutations -> imgtool verify refuses them.
    let attacker = SigningKey::ed25519_from_seed([0x42; 32]);
    let donor = sign(
        &firmware(1000),
        &signing,
        &SignOptions::new("1.0.0".parse().unwrap()),
    )
    .unwrap();
    let kinds: Vec<MutationKind> = if all_mutations {
        MutationKind::ALL.to_vec()
    } else {
        vec![
            MutationKind::PayloadBitflip,
            MutationKind::SignatureBitflip,
            MutationKind::TransplantSignature,
        ]
    };
    for m in kinds {
        let inputs = MutationInputs {
            key: Some(match m {
                MutationKind::WrongKey => &attacker,
                _ => &signing,
            }),
            donor: Some(&donor),
            version: None,
        };
        let bad = mutate(m, &ours_bytes, &inputs).unwrap();
        let path = dir.join(format!("{m}.bin"));
        std::fs::write(&path, &bad).unwrap();
        let (ok, text) = imgtool_verify(&key_path, &path);
        match (m, m.expectation()) {
            // imgtool has no version policy: a validly signed older image passes its verify.
            (MutationKind::Rollback, _) => assert!(ok, "{kind}/{m}: {text}"),
            (_, Expectation::Informational) => assert!(ok, "{kind}/{m}: {text}"),
            (_, Expectation::Reject) => assert!(!ok, "{kind}/{m}: imgtool accepted it: {text}"),
        }
    }
}

#[test]
fn ed25519_round_trip_with_imgtool() {
    round("ed25519", KeyKind::Ed25519, true);
}

#[test]
fn ecdsa_p256_round_trip_with_imgtool() {
    round("ecdsa-p256", KeyKind::EcdsaP256, true);
}

#[test]
fn rsa_2048_round_trip_with_imgtool() {
    round("rsa-2048", KeyKind::Rsa2048, false);
}

#[test]
fn imgtool_refuses_to_verify_with_the_attacker_key() {
    let dir = scratch("attacker");
    let key_path = keygen(&dir, "ed25519");
    let key = Key::load(&key_path).unwrap();
    let image = sign(
        &firmware(100),
        key.signing_key().unwrap(),
        &SignOptions::new("2.0.0".parse().unwrap()),
    )
    .unwrap();
    let attacker = SigningKey::generate_ed25519().unwrap();
    let attacker_path = dir.join("attacker.pem");
    attacker.save(&attacker_path).unwrap();
    let path = dir.join("image.bin");
    std::fs::write(&path, &image).unwrap();
    // imgtool reads our generated key, and refuses the genuine image with it.
    let (ok, text) = imgtool_verify(&attacker_path, &path);
    assert!(!ok, "{text}");
    let (ok, text) = imgtool_verify(&key_path, &path);
    assert!(ok, "{text}");
}

/// Keys written by `hilsec image keygen` are keys imgtool (and so OpenSSL) can use: imgtool signs
/// with one, hilsec verifies, and imgtool verifies what hilsec signed with it.
#[test]
fn hilsec_keygen_keys_work_with_imgtool() {
    for (kind, key) in [
        (
            "ed25519",
            SigningKey::generate_ed25519().expect("ed25519 key"),
        ),
        (
            "ecdsa-p256",
            SigningKey::ecdsa_p256_from_bytes([7; 32]).expect("p256 key"),
        ),
    ] {
        let dir = scratch(&format!("hilsec-keygen-{kind}"));
        let key_path = dir.join("key.pem");
        key.save(&key_path).expect("save key");
        let fw = dir.join("fw.bin");
        std::fs::write(&fw, firmware(3000)).unwrap();
        let by_imgtool = dir.join("imgtool.img");
        imgtool_sign(&key_path, "2.0.0", &fw, &by_imgtool, &[]);
        let bytes = std::fs::read(&by_imgtool).unwrap();
        assert!(
            verify(&bytes, &key.public_key(), &VerifyOptions::default()).is_accepted(),
            "{kind}: hilsec accepts imgtool's image signed with a hilsec key"
        );
        let by_hilsec = dir.join("hilsec.img");
        let signed = sign(
            &firmware(3000),
            &key,
            &SignOptions::new("2.0.0".parse().unwrap()),
        )
        .expect("sign");
        std::fs::write(&by_hilsec, signed).unwrap();
        let (ok, text) = imgtool_verify(&key_path, &by_hilsec);
        assert!(ok, "{kind}: imgtool verifies with a hilsec key: {text}");
    }
}
