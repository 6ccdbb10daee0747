//! Signing and verification keys in the PEM forms `imgtool keygen` and `imgtool getpub` write.
//!
//! Exists to hide four key types behind one enum and to compute what MCUboot compares: the
//! KEYHASH TLV is the SHA-256 of the public key's DER exactly as imgtool embeds it in the
//! bootloader (SubjectPublicKeyInfo for ed25519 and ECDSA P-256, PKCS#1 `RSAPublicKey` for RSA).
//!
//! Accepted PEM (private keys need no password):
//! - `BEGIN PRIVATE KEY` (PKCS#8): what `imgtool keygen -t ed25519|ecdsa-p256|rsa-2048|rsa-3072`
//!   writes;
//! - `BEGIN PUBLIC KEY` (SubjectPublicKeyInfo): what `imgtool getpub -e pem` writes;
//! - `BEGIN EC PRIVATE KEY` (SEC1) and `BEGIN RSA PRIVATE KEY` / `BEGIN RSA PUBLIC KEY` (PKCS#1),
//!   as OpenSSL writes them.

use std::fmt;
use std::path::Path;

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey, EncodeRsaPublicKey};
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::format::tlv;

/// The key algorithms MCUboot verifies (and imgtool `keygen -t` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyKind {
    /// Ed25519 over the image's SHA-256 (TLV 0x24).
    Ed25519,
    /// ECDSA P-256 with SHA-256, DER signature (TLV 0x22).
    EcdsaP256,
    /// RSA-2048 PSS, SHA-256, salt length 32 (TLV 0x20).
    Rsa2048,
    /// RSA-3072 PSS, SHA-256, salt length 32 (TLV 0x23).
    Rsa3072,
}

impl KeyKind {
    /// The TLV type the signature of this key kind is stored under.
    pub fn signature_tlv(self) -> u16 {
        match self {
            KeyKind::Ed25519 => tlv::ED25519,
            KeyKind::EcdsaP256 => tlv::ECDSA_SIG,
            KeyKind::Rsa2048 => tlv::RSA2048_PSS,
            KeyKind::Rsa3072 => tlv::RSA3072_PSS,
        }
    }

    /// The key kind whose signatures are stored under a TLV type.
    pub fn from_signature_tlv(kind: u16) -> Option<KeyKind> {
        Some(match kind {
            tlv::ED25519 => KeyKind::Ed25519,
            tlv::ECDSA_SIG => KeyKind::EcdsaP256,
            tlv::RSA2048_PSS => KeyKind::Rsa2048,
            tlv::RSA3072_PSS => KeyKind::Rsa3072,
            _ => return None,
        })
    }

    /// imgtool's `keygen -t` name.
    pub fn name(self) -> &'static str {
        match self {
            KeyKind::Ed25519 => "ed25519",
            KeyKind::EcdsaP256 => "ecdsa-p256",
            KeyKind::Rsa2048 => "rsa-2048",
            KeyKind::Rsa3072 => "rsa-3072",
        }
    }
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A public key that can check image signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// Ed25519.
    Ed25519(ed25519_dalek::VerifyingKey),
    /// ECDSA P-256.
    EcdsaP256(p256::ecdsa::VerifyingKey),
    /// RSA, 2048 or 3072 bits.
    Rsa(Box<rsa::PublicKey>),
}

/// A private key that can sign images.
#[derive(Debug, Clone)]
pub enum SigningKey {
    /// Ed25519.
    Ed25519(ed25519_dalek::SigningKey),
    /// ECDSA P-256.
    EcdsaP256(p256::ecdsa::SigningKey),
    /// RSA, 2048 or 3072 bits.
    Rsa(Box<rsa::PrivateKey>),
}

/// A key read from a PEM file: public, or private (from which the public key is derived).
#[derive(Debug, Clone)]
pub enum Key {
    /// Only the public half: verifies, cannot sign.
    Public(PublicKey),
    /// A private key: verifies and signs.
    Private(SigningKey),
}

fn rsa_kind(bits: usize) -> Option<KeyKind> {
    match bits {
        2048 => Some(KeyKind::Rsa2048),
        3072 => Some(KeyKind::Rsa3072),
        _ => None,
    }
}

fn pem_label(pem: &str) -> Option<&str> {
    let start = pem.find("-----BEGIN ")? + "-----BEGIN ".len();
    let rest = &pem[start..];
    let end = rest.find("-----")?;
    Some(&rest[..end])
}

const KEY_HELP: &str = "expected an ed25519, ecdsa-p256, rsa-2048 or rsa-3072 key as PEM: \
    'BEGIN PRIVATE KEY' (PKCS#8, written by `imgtool keygen -t ed25519 -k key.pem`) or \
    'BEGIN PUBLIC KEY' (written by `imgtool getpub -e pem -k key.pem`)";

impl Key {
    /// Reads a key from PEM text. `source` names it in error messages (a path, usually).
    pub fn from_pem(pem: &str, source: &str) -> Result<Key, Error> {
        let bad = |detail: &str| {
            Error::Key(format!(
                "key file {source} is not a PEM key imgtool writes: {detail}; {KEY_HELP}"
            ))
        };
        let label = pem_label(pem).ok_or_else(|| bad("no '-----BEGIN ...-----' line found"))?;
        match label {
            "PRIVATE KEY" => {
                if let Ok(k) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
                    return Ok(Key::Private(SigningKey::Ed25519(k)));
                }
                if let Ok(k) = p256::ecdsa::SigningKey::from_pkcs8_pem(pem) {
                    return Ok(Key::Private(SigningKey::EcdsaP256(k)));
                }
                if let Ok(k) = rsa::PrivateKey::from_pkcs8_pem(pem) {
                    return Key::private_rsa(k, source);
                }
                Err(bad("a PKCS#8 private key of an unsupported type (P-384, X25519 and encrypted keys are not supported) or a damaged one"))
            }
            "PUBLIC KEY" => {
                if let Ok(k) = ed25519_dalek::VerifyingKey::from_public_key_pem(pem) {
                    return Ok(Key::Public(PublicKey::Ed25519(k)));
                }
                if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_pem(pem) {
                    return Ok(Key::Public(PublicKey::EcdsaP256(k)));
                }
                if let Ok(k) = rsa::PublicKey::from_public_key_pem(pem) {
                    return Key::public_rsa(k, source);
                }
                Err(bad("a public key of an unsupported type (P-384 and X25519 are not supported) or a damaged one"))
            }
            "EC PRIVATE KEY" => p256::SecretKey::from_sec1_pem(pem)
                .map(|k| Key::Private(SigningKey::EcdsaP256(p256::ecdsa::SigningKey::from(k))))
                .map_err(|_| bad("a SEC1 EC private key that is not on curve P-256, or damaged")),
            "RSA PRIVATE KEY" => match rsa::PrivateKey::from_pkcs1_pem(pem) {
                Ok(k) => Key::private_rsa(k, source),
                Err(_) => Err(bad("a damaged PKCS#1 RSA private key")),
            },
            "RSA PUBLIC KEY" => match rsa::PublicKey::from_pkcs1_pem(pem) {
                Ok(k) => Key::public_rsa(k, source),
                Err(_) => Err(bad("a damaged PKCS#1 RSA public key")),
            },
            "ENCRYPTED PRIVATE KEY" => Err(Error::Key(format!(
                "key file {source} is password-protected; hilsec reads unencrypted keys only: \
                 decrypt it (`openssl pkcs8 -in {source} -out plain.pem`) or make one with \
                 `imgtool keygen` without -p"
            ))),
            other => Err(bad(&format!("its PEM label is '{other}'"))),
        }
    }

    fn private_rsa(k: rsa::PrivateKey, source: &str) -> Result<Key, Error> {
        let bits = k.size() * 8;
        if rsa_kind(bits).is_none() {
            return Err(Error::Key(format!(
                "key file {source} is an RSA-{bits} key; MCUboot supports RSA-2048 and RSA-3072 only"
            )));
        }
        Ok(Key::Private(SigningKey::Rsa(Box::new(k))))
    }

    fn public_rsa(k: rsa::PublicKey, source: &str) -> Result<Key, Error> {
        let bits = k.size() * 8;
        if rsa_kind(bits).is_none() {
            return Err(Error::Key(format!(
                "key file {source} is an RSA-{bits} key; MCUboot supports RSA-2048 and RSA-3072 only"
            )));
        }
        Ok(Key::Public(PublicKey::Rsa(Box::new(k))))
    }

    /// Reads a key from a PEM file.
    pub fn load(path: &Path) -> Result<Key, Error> {
        let text = std::fs::read(path).map_err(|source| Error::Io {
            action: "read key file",
            path: path.to_path_buf(),
            source,
        })?;
        let text = String::from_utf8(text).map_err(|_| {
            Error::Key(format!(
                "key file {} is not text (a DER file?); {KEY_HELP}",
                path.display()
            ))
        })?;
        Key::from_pem(&text, &path.display().to_string())
    }

    /// The public key (derived when this is a private key).
    pub fn public_key(&self) -> PublicKey {
        match self {
            Key::Public(p) => p.clone(),
            Key::Private(s) => s.public_key(),
        }
    }

    /// The private key, if this is one.
    pub fn signing_key(&self) -> Option<&SigningKey> {
        match self {
            Key::Public(_) => None,
            Key::Private(s) => Some(s),
        }
    }

    /// The key's algorithm.
    pub fn kind(&self) -> KeyKind {
        self.public_key().kind()
    }
}

impl PublicKey {
    /// The key's algorithm.
    pub fn kind(&self) -> KeyKind {
        match self {
            PublicKey::Ed25519(_) => KeyKind::Ed25519,
            PublicKey::EcdsaP256(_) => KeyKind::EcdsaP256,
            // Constructors only admit 2048 and 3072.
            PublicKey::Rsa(k) => rsa_kind(k.size() * 8).unwrap_or(KeyKind::Rsa2048),
        }
    }

    /// The public key DER as imgtool embeds it in MCUboot (and puts in a PUBKEY TLV):
    /// SubjectPublicKeyInfo for ed25519 and P-256, PKCS#1 for RSA.
    pub fn mcuboot_der(&self) -> Vec<u8> {
        // Encoding a valid in-memory key cannot fail; an empty vector would only make the key
        // hash mismatch, never panic.
        match self {
            PublicKey::Ed25519(k) => k
                .to_public_key_der()
                .map(|d| d.as_bytes().to_vec())
                .unwrap_or_default(),
            PublicKey::EcdsaP256(k) => k
                .to_public_key_der()
                .map(|d| d.as_bytes().to_vec())
                .unwrap_or_default(),
            PublicKey::Rsa(k) => k
                .to_pkcs1_der()
                .map(|d| d.as_bytes().to_vec())
                .unwrap_or_default(),
        }
    }

    /// The KEYHASH TLV value MCUboot compares: SHA-256 of [`PublicKey::mcuboot_der`].
    pub fn key_hash(&self) -> [u8; 32] {
        Sha256::digest(self.mcuboot_der()).into()
    }

    /// The public key as SubjectPublicKeyInfo PEM (`BEGIN PUBLIC KEY`), as `imgtool getpub -e pem`.
    pub fn to_pem(&self) -> Result<String, Error> {
        let le = ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF;
        let r = match self {
            PublicKey::Ed25519(k) => k.to_public_key_pem(le),
            PublicKey::EcdsaP256(k) => {
                use p256::pkcs8::EncodePublicKey as _;
                k.to_public_key_pem(le)
            }
            PublicKey::Rsa(k) => {
                use rsa::pkcs8::EncodePublicKey as _;
                k.to_public_key_pem(le)
            }
        };
        r.map_err(|e| Error::Key(format!("cannot encode public key as PEM: {e}")))
    }
}

impl SigningKey {
    /// A fresh random ed25519 key (the harness's per-run "attacker" key).
    pub fn generate_ed25519() -> Result<SigningKey, Error> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| Error::Key(format!("cannot get random bytes from the OS: {e}")))?;
        Ok(SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(
            &seed,
        )))
    }

    /// An ed25519 key from a 32-byte seed (deterministic; for tests and fuzzing).
    pub fn ed25519_from_seed(seed: [u8; 32]) -> SigningKey {
        SigningKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// An ECDSA P-256 key from a 32-byte scalar (deterministic; for tests). Fails for 0 or a
    /// value not below the curve order.
    pub fn ecdsa_p256_from_bytes(scalar: [u8; 32]) -> Result<SigningKey, Error> {
        p256::ecdsa::SigningKey::from_slice(&scalar)
            .map(SigningKey::EcdsaP256)
            .map_err(|_| Error::Key("not a valid P-256 private scalar".into()))
    }

    /// The key's algorithm.
    pub fn kind(&self) -> KeyKind {
        self.public_key().kind()
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        match self {
            SigningKey::Ed25519(k) => PublicKey::Ed25519(k.verifying_key()),
            SigningKey::EcdsaP256(k) => PublicKey::EcdsaP256(*k.verifying_key()),
            SigningKey::Rsa(k) => PublicKey::Rsa(Box::new(k.to_public_key())),
        }
    }

    /// The private key as unencrypted PKCS#8 PEM (`BEGIN PRIVATE KEY`), as `imgtool keygen`.
    pub fn to_pem(&self) -> Result<String, Error> {
        let le = ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF;
        let r = match self {
            SigningKey::Ed25519(k) => {
                // PKCS#8 v1 (RFC 8410 section 7), as `imgtool keygen` and OpenSSL write it: the
                // v2 form with the public key embedded is refused by OpenSSL 3.0.
                let mut der = vec![
                    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04,
                    0x22, 0x04, 0x20,
                ];
                der.extend_from_slice(&k.to_bytes());
                return ed25519_dalek::pkcs8::spki::der::pem::encode_string(
                    "PRIVATE KEY",
                    le,
                    &der,
                )
                .map_err(|e| Error::Key(format!("cannot encode private key as PEM: {e}")));
            }
            SigningKey::EcdsaP256(k) => {
                use p256::pkcs8::EncodePrivateKey as _;
                k.to_pkcs8_pem(le)
            }
            SigningKey::Rsa(k) => {
                use rsa::pkcs8::EncodePrivateKey as _;
                k.to_pkcs8_pem(le)
            }
        };
        r.map(|s| s.to_string())
            .map_err(|e| Error::Key(format!("cannot encode private key as PEM: {e}")))
    }

    /// Writes the private key as PKCS#8 PEM (mode 0600 on Unix).
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let pem = self.to_pem()?;
        write_private(path, pem.as_bytes()).map_err(|source| Error::Io {
            action: "write key file",
            path: path.to_path_buf(),
            source,
        })
    }

    /// Signs an image hash the way imgtool does for this key kind: ed25519 signs the 32-byte
    /// digest as its message; ECDSA signs it as a SHA-256 prehash (DER encoded, no padding);
    /// RSA signs it with PSS/MGF1-SHA-256 and a 32-byte salt.
    pub fn sign_digest(&self, digest: &[u8; 32]) -> Result<Vec<u8>, Error> {
        match self {
            SigningKey::Ed25519(k) => {
                use ed25519_dalek::Signer;
                Ok(k.sign(digest).to_bytes().to_vec())
            }
            SigningKey::EcdsaP256(k) => {
                use p256::ecdsa::signature::hazmat::PrehashSigner;
                let sig: p256::ecdsa::DerSignature = k
                    .sign_prehash(digest)
                    .map_err(|e| Error::Sign(format!("ECDSA signing failed: {e}")))?;
                Ok(sig.as_bytes().to_vec())
            }
            SigningKey::Rsa(k) => {
                let scheme = rsa::pss::Pss::<Sha256>::new_with_salt(32);
                k.sign_with_rng(&mut getrandom::SysRng, scheme, digest)
                    .map_err(|e| Error::Sign(format!("RSA-PSS signing failed: {e}")))
            }
        }
    }
}

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureCheck {
    /// It verifies.
    Valid,
    /// Its length is not what MCUboot accepts for the key kind.
    BadLength {
        /// What it is.
        len: usize,
        /// What is accepted.
        expected: &'static str,
    },
    /// It is not a valid encoding (e.g. ECDSA DER).
    Malformed(String),
    /// Well-formed but does not verify.
    Invalid,
}

impl PublicKey {
    /// Checks a signature TLV value over an image hash, as MCUboot does for this key kind.
    /// ECDSA signatures may carry the zero padding old imgtool's `--pad-sig` adds.
    pub fn verify_digest(&self, digest: &[u8; 32], sig: &[u8]) -> SignatureCheck {
        match self {
            PublicKey::Ed25519(k) => {
                use ed25519_dalek::Verifier;
                let Ok(bytes) = <[u8; 64]>::try_from(sig) else {
                    return SignatureCheck::BadLength {
                        len: sig.len(),
                        expected: "64",
                    };
                };
                let s = ed25519_dalek::Signature::from_bytes(&bytes);
                match k.verify(digest, &s) {
                    Ok(()) => SignatureCheck::Valid,
                    Err(_) => SignatureCheck::Invalid,
                }
            }
            PublicKey::EcdsaP256(k) => {
                use p256::ecdsa::signature::hazmat::PrehashVerifier;
                // MCUboot's buffer for ECDSA signatures is 128 bytes; ASN.1 checks the rest.
                if sig.len() > 128 || sig.len() < 8 {
                    return SignatureCheck::BadLength {
                        len: sig.len(),
                        expected: "8 to 128 (ASN.1 DER)",
                    };
                }
                let der = match der_sequence_len(sig) {
                    Some(n) if sig[n..].iter().all(|&b| b == 0) => &sig[..n],
                    Some(_) => {
                        return SignatureCheck::Malformed(
                            "non-zero bytes after the DER signature".into(),
                        )
                    }
                    None => return SignatureCheck::Malformed("not an ASN.1 DER SEQUENCE".into()),
                };
                let s = match p256::ecdsa::Signature::from_der(der) {
                    Ok(s) => s,
                    Err(e) => return SignatureCheck::Malformed(format!("bad DER signature: {e}")),
                };
                match k.verify_prehash(digest, &s) {
                    Ok(()) => SignatureCheck::Valid,
                    Err(_) => SignatureCheck::Invalid,
                }
            }
            PublicKey::Rsa(k) => {
                if sig.len() != k.size() {
                    return SignatureCheck::BadLength {
                        len: sig.len(),
                        expected: if k.size() == 256 { "256" } else { "384" },
                    };
                }
                let scheme = rsa::pss::Pss::<Sha256>::new_with_salt(32);
                match k.verify(scheme, digest, sig) {
                    Ok(()) => SignatureCheck::Valid,
                    Err(_) => SignatureCheck::Invalid,
                }
            }
        }
    }
}

/// Length of a DER SEQUENCE at the start of `b` (tag, length and contents), if it fits.
fn der_sequence_len(b: &[u8]) -> Option<usize> {
    if b.len() < 2 || b[0] != 0x30 {
        return None;
    }
    let (len, hdr) = match b[1] {
        n if n < 0x80 => (n as usize, 2),
        0x81 => (*b.get(2)? as usize, 3),
        _ => return None,
    };
    let total = hdr + len;
    (total <= b.len()).then_some(total)
}

#[cfg(unix)]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

#[cfg(not(unix))]
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_pem_round_trip_and_public_derivation() {
        let k = SigningKey::ed25519_from_seed([7; 32]);
        let pem = k.to_pem().unwrap();
        assert!(pem.contains("BEGIN PRIVATE KEY"));
        let back = Key::from_pem(&pem, "mem").unwrap();
        assert_eq!(back.public_key(), k.public_key());
        let pub_pem = k.public_key().to_pem().unwrap();
        let public = Key::from_pem(&pub_pem, "mem").unwrap();
        assert!(public.signing_key().is_none());
        assert_eq!(public.public_key().key_hash(), k.public_key().key_hash());
        // SubjectPublicKeyInfo of an ed25519 key is 44 bytes.
        assert_eq!(k.public_key().mcuboot_der().len(), 44);
    }

    #[test]
    fn ecdsa_pem_round_trip_and_signature() {
        let k = SigningKey::ecdsa_p256_from_bytes([3; 32]).unwrap();
        let back = Key::from_pem(&k.to_pem().unwrap(), "mem").unwrap();
        assert_eq!(back.kind(), KeyKind::EcdsaP256);
        let digest = [9u8; 32];
        let sig = k.sign_digest(&digest).unwrap();
        assert_eq!(
            back.public_key().verify_digest(&digest, &sig),
            SignatureCheck::Valid
        );
        // imgtool --pad-sig style zero padding is tolerated.
        let mut padded = sig.clone();
        padded.resize(72, 0);
        assert_eq!(
            back.public_key().verify_digest(&digest, &padded),
            SignatureCheck::Valid
        );
        assert_eq!(
            back.public_key().verify_digest(&[8u8; 32], &sig),
            SignatureCheck::Invalid
        );
    }

    #[test]
    fn bad_pem_errors_say_what_to_do() {
        let e = Key::from_pem("hello", "k.pem").unwrap_err().to_string();
        assert!(e.contains("k.pem") && e.contains("imgtool keygen"), "{e}");
        let e = Key::from_pem(
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
            "k.pem",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("password"), "{e}");
        let e = Key::from_pem(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "k.pem",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unsupported type"), "{e}");
    }
}
