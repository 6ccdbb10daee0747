//! The `hilsec image ...` commands: clap argument structs and the functions that run them.
//!
//! Exists so the harness binary wires the image commands in a few lines (flatten
//! [`ImageCommand`] as a subcommand and call [`run`], or call each `run_*`), while this crate
//! owns their wording. Every `run_*` prints its result to stdout and returns the exit code:
//! `verify` returns 0 when accepted and 1 when rejected (the reason printed); the others return
//! 0. Failures to run at all (unreadable files, bad keys, malformed input to `inspect`, `sign`
//! or `mutate`) come back as [`Error`], whose message says what to do next.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::builder::PossibleValue;

use crate::error::Error;
use crate::format::Version;
use crate::inspect::inspect;
use crate::keys::{Key, KeyKind, SigningKey};
use crate::mutate::{mutate, Expectation, MutationInputs, MutationKind};
use crate::sign::{auto_security_counter, sign, PublicKeyFormat, SignOptions};
use crate::verify::{hex, verify, VerifyOptions};

/// The image subcommands, ready to be nested under `hilsec image`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ImageCommand {
    /// Show an MCUboot image's header, TLVs, hash status and signature kind.
    Inspect(InspectArgs),
    /// Sign a raw binary (or re-sign an image) as `imgtool sign --pad-header` does.
    #[command(disable_version_flag = true)]
    Sign(SignArgs),
    /// Check an image against a key as MCUboot would: exit 0 accepted, 1 rejected.
    Verify(VerifyArgs),
    /// Make a tampered variant of a genuine image.
    #[command(disable_version_flag = true)]
    Mutate(MutateArgs),
    /// Generate a private key (PKCS#8 PEM, as `imgtool keygen` writes); never overwrites an
    /// existing file unless --force is given.
    Keygen(KeygenArgs),
}

/// Runs one image subcommand.
pub fn run(cmd: &ImageCommand) -> Result<i32, Error> {
    match cmd {
        ImageCommand::Inspect(a) => run_inspect(a),
        ImageCommand::Sign(a) => run_sign(a),
        ImageCommand::Verify(a) => run_verify(a),
        ImageCommand::Mutate(a) => run_mutate(a),
        ImageCommand::Keygen(a) => run_keygen(a),
    }
}

/// `hilsec image inspect IMAGE [--json]`.
#[derive(Debug, Clone, clap::Args)]
pub struct InspectArgs {
    /// The MCUboot image file.
    pub image: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `hilsec image sign --key KEY --version X.Y.Z[+B] IN OUT`.
#[derive(Debug, Clone, clap::Args)]
pub struct SignArgs {
    /// Private key, PEM as `imgtool keygen` writes it (ed25519, ecdsa-p256, rsa-2048, rsa-3072).
    #[arg(short = 'k', long)]
    pub key: PathBuf,
    /// Image version MAJOR.MINOR.REVISION[+BUILD].
    #[arg(long, value_parser = parse_version)]
    pub version: Version,
    /// Header size (imgtool --header-size), decimal or 0x-hex.
    #[arg(long, default_value = "0x200", value_parser = parse_u16)]
    pub header_size: u16,
    /// Do not prepend the header: IN must start with header-size zero bytes (imgtool without
    /// --pad-header). Ignored when IN is already an MCUboot image, which is re-signed.
    #[arg(long)]
    pub no_pad_header: bool,
    /// Slot size to check the image (plus MCUboot's trailer) fits, decimal or 0x-hex.
    #[arg(long, value_parser = parse_u32)]
    pub slot_size: Option<u32>,
    /// Load address (sets the RAM_LOAD flag when non-zero), decimal or 0x-hex.
    #[arg(long, default_value = "0", value_parser = parse_u32)]
    pub load_addr: u32,
    /// Security counter for a protected SEC_CNT TLV: a number or `auto` (from the version).
    #[arg(long)]
    pub security_counter: Option<String>,
    /// Identify the key by its hash (KEYHASH, default) or embed it whole (PUBKEY).
    #[arg(long, value_enum, default_value_t = PublicKeyFormat::Hash)]
    pub public_key_format: PublicKeyFormat,
    /// Input: a raw binary, or an MCUboot image to re-sign.
    pub input: PathBuf,
    /// Output image file.
    pub output: PathBuf,
}

/// `hilsec image verify --key KEY IMAGE`.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// Key, PEM as imgtool writes it, public or private.
    #[arg(short = 'k', long)]
    pub key: PathBuf,
    /// The MCUboot image file.
    pub image: PathBuf,
    /// Reject images below this version (the running one), as MCUboot's downgrade prevention.
    #[arg(long, value_parser = parse_version)]
    pub min_version: Option<Version>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `hilsec image mutate --kind KIND IN OUT [--key K] [--donor IMG] [--version V]`.
#[derive(Debug, Clone, clap::Args)]
pub struct MutateArgs {
    /// Which tampered variant to make.
    #[arg(long)]
    pub kind: MutationKind,
    /// wrong-key: the other (attacker) private key. rollback: the genuine signing key.
    #[arg(short = 'k', long)]
    pub key: Option<PathBuf>,
    /// transplant-signature: another genuine image signed by the same key.
    #[arg(long)]
    pub donor: Option<PathBuf>,
    /// rollback: the lower version (default: the next lower one).
    #[arg(long, value_parser = parse_version)]
    pub version: Option<Version>,
    /// The genuine image.
    pub input: PathBuf,
    /// Output file for the tampered image.
    pub output: PathBuf,
}

/// Key algorithms `keygen` can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeygenType {
    /// Ed25519 (the harness's per-run attacker key).
    Ed25519,
    /// ECDSA P-256.
    EcdsaP256,
}

/// `hilsec image keygen [--type ed25519] OUT [--public PUB] [--force]`.
#[derive(Debug, Clone, clap::Args)]
pub struct KeygenArgs {
    /// Key algorithm.
    #[arg(short = 't', long = "type", value_enum, default_value_t = KeygenType::Ed25519)]
    pub key_type: KeygenType,
    /// Also write the public key (SubjectPublicKeyInfo PEM) here.
    #[arg(long)]
    pub public: Option<PathBuf>,
    /// Overwrite OUT (and PUB) when they exist. Without it keygen refuses: the file may hold a
    /// key that devices already trust.
    #[arg(long)]
    pub force: bool,
    /// Output file for the private key (PKCS#8 PEM, mode 0600).
    pub output: PathBuf,
}

impl clap::ValueEnum for MutationKind {
    fn value_variants<'a>() -> &'a [Self] {
        &MutationKind::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()).help(self.description()))
    }
}

fn parse_version(s: &str) -> Result<Version, String> {
    s.parse::<Version>().map_err(|e| e.to_string())
}

fn parse_int(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let r = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(h, 16)
    } else {
        t.parse::<u64>()
    };
    r.map_err(|_| format!("{s:?} is not a number (decimal or 0x-hex)"))
}

fn parse_u16(s: &str) -> Result<u16, String> {
    u16::try_from(parse_int(s)?).map_err(|_| format!("{s} does not fit in 16 bits"))
}

fn parse_u32(s: &str) -> Result<u32, String> {
    u32::try_from(parse_int(s)?).map_err(|_| format!("{s} does not fit in 32 bits"))
}

fn read(path: &Path, action: &'static str) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Io {
        action,
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, data: &[u8]) -> Result<(), Error> {
    std::fs::write(path, data).map_err(|source| Error::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    })
}

fn out_err(source: std::io::Error) -> Error {
    Error::Io {
        action: "write to",
        path: PathBuf::from("<stdout>"),
        source,
    }
}

fn signing_key(path: &Path, purpose: &str) -> Result<SigningKey, Error> {
    match Key::load(path)? {
        Key::Private(k) => Ok(k),
        Key::Public(_) => Err(Error::Key(format!(
            "key file {} holds only a public key; {purpose} needs the private key (the PEM \
             `imgtool keygen` wrote, 'BEGIN PRIVATE KEY')",
            path.display()
        ))),
    }
}

/// Runs `inspect`, printing to stdout.
pub fn run_inspect(args: &InspectArgs) -> Result<i32, Error> {
    run_inspect_to(args, &mut std::io::stdout().lock())
}

/// Runs `inspect`, printing to `out`.
pub fn run_inspect_to(args: &InspectArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let bytes = read(&args.image, "read image")?;
    let info = inspect(&bytes).map_err(|e| Error::parse(args.image.display().to_string(), e))?;
    if args.json {
        let text = serde_json::to_string_pretty(&info).map_err(|e| out_err(e.into()))?;
        writeln!(out, "{text}").map_err(out_err)?;
    } else {
        write!(out, "{}: {info}", args.image.display()).map_err(out_err)?;
    }
    Ok(0)
}

/// Runs `sign`, printing to stdout.
pub fn run_sign(args: &SignArgs) -> Result<i32, Error> {
    run_sign_to(args, &mut std::io::stdout().lock())
}

/// Runs `sign`, printing to `out`.
pub fn run_sign_to(args: &SignArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let key = signing_key(&args.key, "signing")?;
    let input = read(&args.input, "read input")?;
    let security_counter = match args.security_counter.as_deref() {
        None => None,
        Some("auto") => Some(auto_security_counter(&args.version)),
        Some(s) => Some(parse_u32(s).map_err(|e| Error::Sign(format!("--security-counter: {e}")))?),
    };
    let opts = SignOptions {
        version: args.version,
        header_size: args.header_size,
        pad_header: !args.no_pad_header,
        slot_size: args.slot_size,
        load_addr: args.load_addr,
        security_counter,
        public_key_format: args.public_key_format,
    };
    let image = sign(&input, &key, &opts)?;
    write(&args.output, &image)?;
    writeln!(
        out,
        "signed {} -> {}: version {}, {} key, {} bytes",
        args.input.display(),
        args.output.display(),
        args.version,
        key.kind(),
        image.len()
    )
    .map_err(out_err)?;
    Ok(0)
}

/// Runs `verify`, printing to stdout.
pub fn run_verify(args: &VerifyArgs) -> Result<i32, Error> {
    run_verify_to(args, &mut std::io::stdout().lock())
}

/// Runs `verify`, printing to `out`: 0 accepted, 1 rejected.
pub fn run_verify_to(args: &VerifyArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let key = Key::load(&args.key)?.public_key();
    let bytes = read(&args.image, "read image")?;
    let opts = VerifyOptions {
        min_version: args.min_version,
    };
    let verdict = verify(&bytes, &key, &opts);
    let version = crate::format::Header::decode(&bytes)
        .ok()
        .map(|h| h.version);
    if args.json {
        let v = serde_json::json!({
            "image": args.image.display().to_string(),
            "key_kind": key.kind(),
            "key_hash": hex(&key.key_hash()),
            "version": version.map(|v| v.to_string()),
            "accepted": verdict.is_accepted(),
            "reason": verdict.rejection().map(|r| r.to_string()),
            "warnings": verdict.warnings(),
        });
        let text = serde_json::to_string_pretty(&v).map_err(|e| out_err(e.into()))?;
        writeln!(out, "{text}").map_err(out_err)?;
    } else {
        match verdict.rejection() {
            None => writeln!(
                out,
                "accepted: {} (version {}, {} signature by key {})",
                args.image.display(),
                version.unwrap_or_default(),
                key.kind(),
                hex(&key.key_hash()[..8])
            ),
            Some(r) => writeln!(out, "rejected: {}: {r}", args.image.display()),
        }
        .map_err(out_err)?;
        for w in verdict.warnings() {
            writeln!(out, "warning: {w}").map_err(out_err)?;
        }
    }
    Ok(if verdict.is_accepted() { 0 } else { 1 })
}

/// Runs `mutate`, printing to stdout.
pub fn run_mutate(args: &MutateArgs) -> Result<i32, Error> {
    run_mutate_to(args, &mut std::io::stdout().lock())
}

/// Runs `mutate`, printing to `out`.
pub fn run_mutate_to(args: &MutateArgs, out: &mut dyn Write) -> Result<i32, Error> {
    let input = read(&args.input, "read image")?;
    let key = match &args.key {
        Some(p) => Some(signing_key(p, &format!("the {} variant", args.kind))?),
        None => None,
    };
    let donor = match &args.donor {
        Some(p) => Some(read(p, "read donor image")?),
        None => None,
    };
    let inputs = MutationInputs {
        key: key.as_ref(),
        donor: donor.as_deref(),
        version: args.version,
    };
    let image = mutate(args.kind, &input, &inputs)?;
    write(&args.output, &image)?;
    let expectation = match args.kind.expectation() {
        Expectation::Reject => "a secure device must reject it",
        Expectation::Informational => {
            "MCUboot ignores this change: the device's answer is information only"
        }
    };
    writeln!(
        out,
        "wrote {} ({}: {}, {} bytes); {expectation}",
        args.output.display(),
        args.kind,
        args.kind.description(),
        image.len()
    )
    .map_err(out_err)?;
    Ok(0)
}

/// Runs `keygen`, printing to stdout.
pub fn run_keygen(args: &KeygenArgs) -> Result<i32, Error> {
    run_keygen_to(args, &mut std::io::stdout().lock())
}

/// Runs `keygen`, printing to `out`. Refuses (before generating anything) when the key file
/// or the public key file exists, unless `force` is set.
pub fn run_keygen_to(args: &KeygenArgs, out: &mut dyn Write) -> Result<i32, Error> {
    if !args.force {
        let outputs = [Some(&args.output), args.public.as_ref()];
        for path in outputs.into_iter().flatten() {
            refuse_existing(path)?;
        }
    }
    let key = match args.key_type {
        KeygenType::Ed25519 => SigningKey::generate_ed25519()?,
        KeygenType::EcdsaP256 => generate_p256()?,
    };
    key.save(&args.output)?;
    if let Some(p) = &args.public {
        write(p, key.public_key().to_pem()?.as_bytes())?;
    }
    writeln!(
        out,
        "wrote {} key {} (key hash {})",
        KeyKind::name(key.kind()),
        args.output.display(),
        hex(&key.public_key().key_hash())
    )
    .map_err(out_err)?;
    Ok(0)
}

/// An error when `path` exists (as a file, a link or anything else): keygen never replaces a
/// key silently.
fn refuse_existing(path: &Path) -> Result<(), Error> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Io {
            action: "check key file",
            path: path.to_path_buf(),
            source,
        }),
        Ok(_) => Err(Error::Io {
            action: "write key file",
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "it already exists and may hold a key in use; pass --force to overwrite it",
            ),
        }),
    }
}

fn generate_p256() -> Result<SigningKey, Error> {
    // A uniformly random 32-byte string is a valid scalar with overwhelming probability.
    for _ in 0..16 {
        let mut b = [0u8; 32];
        getrandom::fill(&mut b)
            .map_err(|e| Error::Key(format!("cannot get random bytes from the OS: {e}")))?;
        if let Ok(k) = SigningKey::ecdsa_p256_from_bytes(b) {
            return Ok(k);
        }
    }
    Err(Error::Key("could not generate a P-256 key".into()))
}
