//! MCUboot-format firmware update images for hilsec: parse, inspect, sign, verify, and make the
//! tampered variants the update suite pushes to devices.
//!
//! Exists because the "Update signature rejection" checks (EN 303 645 5.3-2, -7, -9, -10) need
//! genuine and precisely tampered images in the format the devices' bootloader reads, and a way to
//! know, without a device, that each tampered image is one a correct bootloader refuses. Images
//! are byte-compatible with MCUboot's `imgtool` (ed25519 output is identical byte for byte), and
//! verification follows MCUboot's `bootutil_img_validate`.
//!
//! ```
//! use hilsec_image::{sign, verify, mutate, MutationKind, MutationInputs, SignOptions,
//!                    SigningKey, Version, VerifyOptions};
//!
//! let key = SigningKey::ed25519_from_seed([1; 32]);
//! let opts = SignOptions::new("1.2.3".parse::<Version>()?);
//! let image = sign(b"firmware", &key, &opts)?;
//! assert!(verify(&image, &key.public_key(), &VerifyOptions::default()).is_accepted());
//!
//! let bad = mutate(MutationKind::PayloadBitflip, &image, &MutationInputs::default())?;
//! assert!(!verify(&bad, &key.public_key(), &VerifyOptions::default()).is_accepted());
//! # Ok::<(), hilsec_image::Error>(())
//! ```

pub mod cli;
pub mod error;
pub mod format;
pub mod inspect;
pub mod keys;
pub mod mutate;
pub mod sign;
pub mod verify;

pub use error::{Error, ParseError};
pub use format::{Header, Image, Tlv, Version};
pub use inspect::{inspect, Inspection, TlvInfo};
pub use keys::{Key, KeyKind, PublicKey, SigningKey};
pub use mutate::{mutate, Expectation, MutationInputs, MutationKind};
pub use sign::{sign, PublicKeyFormat, SignOptions};
pub use verify::{verify, Rejection, Verdict, VerifyOptions};
