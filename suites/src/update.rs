//! Update signature rejection (EN 303 645 5.3-2, 5.3-7, 5.3-9, 5.3-10; TS 103 701 5.3-2-2,
//! 5.3-9-1): a validly signed newer image is accepted (positive control), and every tampered
//! variant is refused with the running version unchanged and the unit still answering.
//!
//! The suite builds images itself, in MCUboot's format (`hilsec-image`): genuine ones signed with
//! the test key the board declares the unit trusts (`[declarations.update] signing_key`), or the
//! manufacturer's genuine image when the lab holds no key (`genuine_image`). Each rejection test
//! reads the running version first and tampers with a genuine image *newer* than it, so a refusal
//! can only come from the check under test, never from the unit's downgrade protection (except
//! for `rollback`, whose image is validly signed and older). The attacker key is generated once
//! per run and never leaves memory. Images reach the unit only through the board's update
//! action (parameter `image`), over whatever interface its recipe uses.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use hilsec_core::board::Model;
use hilsec_core::device::{ActionError, Data, Device};
use hilsec_core::iface::LinkError;
use hilsec_core::test::{Outcome, Scope, Suite, Test, TestInfo, Verdict};
use hilsec_image::{mutate, sign, MutationInputs, MutationKind, SignOptions, SigningKey, Version};

const SUITE: &str = "update";

const PROVISIONS_GENUINE: &[&str] = &["EN 303 645 5.3-2", "TS 103 701 5.3-2-2"];
const PROVISIONS_REJECT: &[&str] = &[
    "EN 303 645 5.3-7",
    "EN 303 645 5.3-9",
    "EN 303 645 5.3-10",
    "TS 103 701 5.3-9-1",
];

/// Memo key: the positive control's outcome on this unit.
const GENUINE_MEMO: &str = "update.accepts-genuine";

pub fn suite() -> Suite {
    let mut tests: Vec<Arc<dyn Test>> = vec![Arc::new(AcceptsGenuine)];
    for (kind, info) in MutationKind::ALL.iter().zip(REJECT_INFOS.iter()) {
        if *kind == MutationKind::AppendData {
            // Information only, not a verdict: the positive control reports it.
            continue;
        }
        tests.push(Arc::new(RejectsMutation { kind: *kind, info }));
    }
    Suite {
        name: SUITE,
        description: "a genuine newer image is accepted; tampered, unsigned, wrong-key and rollback images are refused",
        tests,
    }
}

macro_rules! reject_info {
    ($id:literal, $title:literal) => {
        TestInfo {
            id: $id,
            suite: SUITE,
            title: $title,
            provisions: PROVISIONS_REJECT,
            scope: Scope::Unit,
            timeout: Duration::from_secs(180),
            actions: &[],
        }
    };
}

/// One per [`MutationKind::ALL`], in that order.
static REJECT_INFOS: [TestInfo; 10] = [
    reject_info!(
        "update.rejects-payload-bitflip",
        "an image with one payload bit flipped is refused"
    ),
    reject_info!(
        "update.rejects-header-bitflip",
        "an image with one header bit flipped is refused"
    ),
    reject_info!(
        "update.rejects-signature-bitflip",
        "an image with one signature bit flipped is refused"
    ),
    reject_info!("update.rejects-truncate", "a truncated image is refused"),
    reject_info!("update.rejects-unsigned", "an unsigned image is refused"),
    reject_info!(
        "update.rejects-wrong-key",
        "an image signed with another key is refused"
    ),
    reject_info!(
        "update.rejects-transplant-signature",
        "an image carrying another image's signature is refused"
    ),
    reject_info!(
        "update.rejects-bad-magic",
        "an image with a corrupted magic is refused"
    ),
    reject_info!(
        "update.rejects-rollback",
        "a validly signed older version is refused"
    ),
    reject_info!(
        "update.rejects-append-data",
        "unused: appended data is information only, reported by update.accepts-genuine"
    ),
];

static GENUINE_INFO: TestInfo = TestInfo {
    id: "update.accepts-genuine",
    suite: SUITE,
    title: "a validly signed newer image is accepted and the running version changes (positive control)",
    provisions: PROVISIONS_GENUINE,
    scope: Scope::Unit,
    timeout: Duration::from_secs(180),
    actions: &[],
};

/// The attacker's key: generated once per run, never written anywhere.
fn attacker_key() -> Result<&'static SigningKey, &'static hilsec_image::Error> {
    static KEY: OnceLock<Result<SigningKey, hilsec_image::Error>> = OnceLock::new();
    KEY.get_or_init(SigningKey::generate_ed25519).as_ref()
}

fn needs(model: &Model) -> Option<String> {
    let Some(u) = &model.declarations.update else {
        return Some("the board declares no [declarations.update]".into());
    };
    for a in [&u.action, &u.version_action] {
        if !model.has_action(a) {
            return Some(format!("the board defines no {a:?} action"));
        }
    }
    if u.signing_key.is_none() && u.genuine_image.is_none() {
        return Some("the board declares neither a test signing key nor a genuine image".into());
    }
    None
}

/// The update action and the version action the board declares.
fn update_actions(model: &Model) -> Vec<String> {
    match &model.declarations.update {
        Some(u) => vec![u.version_action.clone(), u.action.clone()],
        None => vec!["read_version".into(), "push_update".into()],
    }
}

/// What the lab can make genuine images from.
enum Genuine {
    Key(SigningKey),
    Image(Vec<u8>, Version),
}

/// Why the lab has nothing to make genuine images from.
#[derive(Debug)]
enum GenuineSourceError {
    NoDeclarations,
    Key(hilsec_image::Error),
    PublicKey(PathBuf),
    Read(PathBuf, std::io::Error),
    Image(PathBuf, hilsec_image::ParseError),
    NoSource,
}

impl fmt::Display for GenuineSourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDeclarations => f.write_str("no update declarations"),
            Self::Key(e) => write!(f, "{e}"),
            Self::PublicKey(k) => write!(
                f,
                "{} is a public key; the suite needs the private test key",
                k.display()
            ),
            Self::Read(p, e) => write!(f, "cannot read {}: {e}", p.display()),
            Self::Image(p, e) => write!(f, "{}: {e}", p.display()),
            Self::NoSource => f.write_str("no genuine image source"),
        }
    }
}

impl std::error::Error for GenuineSourceError {}

fn genuine_source(model: &Model) -> Result<Genuine, GenuineSourceError> {
    let u = model
        .declarations
        .update
        .as_ref()
        .ok_or(GenuineSourceError::NoDeclarations)?;
    if let Some(k) = &u.signing_key {
        let key = hilsec_image::Key::load(k).map_err(GenuineSourceError::Key)?;
        return key
            .signing_key()
            .cloned()
            .map(Genuine::Key)
            .ok_or_else(|| GenuineSourceError::PublicKey(k.clone()));
    }
    if let Some(p) = &u.genuine_image {
        let bytes = std::fs::read(p).map_err(|e| GenuineSourceError::Read(p.clone(), e))?;
        let img = hilsec_image::Image::parse(&bytes)
            .map_err(|e| GenuineSourceError::Image(p.clone(), e))?;
        let v = img.header.version;
        return Ok(Genuine::Image(bytes, v));
    }
    Err(GenuineSourceError::NoSource)
}

/// A deterministic pseudo-random payload: a stand-in firmware body.
fn payload(size: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..size).map(|_| rng.u8(..)).collect()
}

/// The version after `v` (revision + 1), as a newer genuine image carries.
fn bump(v: Version) -> Version {
    if v.revision < u16::MAX {
        Version::new(v.major, v.minor, v.revision + 1, 0)
    } else if v.minor < u8::MAX {
        Version::new(v.major, v.minor + 1, 0, 0)
    } else {
        Version::new(v.major.saturating_add(1), 0, 0, 0)
    }
}

/// Why the unit's running version is not known although the version action answered.
#[derive(Debug)]
enum VersionError {
    NotCaptured {
        action: String,
    },
    Unparsable {
        reported: String,
        error: hilsec_image::Error,
    },
}

impl fmt::Display for VersionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotCaptured { action } => write!(f, "action {action:?} captured no `version`"),
            Self::Unparsable { reported, error } => write!(
                f,
                "the unit reports version {reported:?}, which is not X.Y.Z[+B]: {error}"
            ),
        }
    }
}

impl std::error::Error for VersionError {}

async fn running_version(dev: &mut Device) -> Result<Result<Version, VersionError>, ActionError> {
    let action = dev
        .model
        .declarations
        .update
        .as_ref()
        .map(|u| u.version_action.clone())
        .unwrap_or_else(|| "read_version".into());
    let out = dev.run_action(&action, &[]).await?;
    let Some(v) = out.captures.get("version") else {
        return Ok(Err(VersionError::NotCaptured { action }));
    };
    Ok(v.parse::<Version>()
        .map_err(|error| VersionError::Unparsable {
            reported: v.clone(),
            error,
        }))
}

/// The action that reads the installed image below the firmware (through a debug port), when
/// the board defines it: what the unit holds, not what it says.
pub const INSTALLED_IMAGE_ACTION: &str = "read_installed_image";

/// What `read_installed_image` captured, as one comparable text (`None` when the board does
/// not define the action).
async fn installed_image(dev: &mut Device) -> Option<Result<String, ActionError>> {
    if !dev.has_action(INSTALLED_IMAGE_ACTION) {
        return None;
    }
    Some(
        dev.run_action(INSTALLED_IMAGE_ACTION, &[])
            .await
            .map(|out| {
                out.captures
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            }),
    )
}

/// What reading the installed image again after a push showed.
enum SlotCheck {
    /// The board reads no installed image.
    NotDeclared,
    Unchanged,
    /// It changed: the image was installed (the message says how).
    Changed(String),
    Unreadable(String),
}

/// Pushes an image; `Ok(None)` when accepted, `Ok(Some(answer))` when refused.
async fn push(dev: &mut Device, image: Vec<u8>) -> Result<Option<String>, ActionError> {
    let action = dev
        .model
        .declarations
        .update
        .as_ref()
        .map(|u| u.action.clone())
        .unwrap_or_else(|| "push_update".into());
    let mut data = Data::new();
    data.insert("image".into(), Arc::new(image));
    let out = dev.run_action_with_data(&action, &[], &data).await?;
    Ok(out.rejected)
}

fn size_of(model: &Model) -> usize {
    model
        .declarations
        .update
        .as_ref()
        .map(|u| u.payload_size)
        .unwrap_or(32 * 1024)
}

/// A genuine image newer than `running` (signed by the lab's test key, or the manufacturer's
/// image if it is newer).
fn genuine_newer(
    src: &Genuine,
    running: Version,
    size: usize,
    seed: u64,
) -> Result<(Vec<u8>, Version), String> {
    match src {
        Genuine::Key(k) => {
            let v = bump(running);
            let img =
                sign(&payload(size, seed), k, &SignOptions::new(v)).map_err(|e| e.to_string())?;
            Ok((img, v))
        }
        Genuine::Image(bytes, v) => {
            if v.cmp_without_build(&running).is_gt() {
                Ok((bytes.clone(), *v))
            } else {
                Err(format!("the declared genuine image is version {v}, not newer than the running {running}: the lab needs a newer image or the test signing key"))
            }
        }
    }
}

struct AcceptsGenuine;

#[async_trait]
impl Test for AcceptsGenuine {
    fn info(&self) -> &TestInfo {
        &GENUINE_INFO
    }

    fn actions(&self, model: &Model) -> Vec<String> {
        update_actions(model)
    }

    fn not_applicable(&self, model: &Model) -> Option<String> {
        needs(model)
    }

    async fn run_unit(&self, dev: &mut Device) -> Outcome {
        memoised_positive_control(dev).await
    }
}

/// Runs the positive control and leaves its verdict in the unit's memo for the rejection
/// tests (the same whether `update.accepts-genuine` runs it or a rejection test run alone).
async fn memoised_positive_control(dev: &mut Device) -> Outcome {
    let o = positive_control(dev).await.unwrap_or_else(Outcome::from);
    dev.memo()
        .insert(GENUINE_MEMO.into(), o.verdict.to_string());
    o
}

/// True when an action got no answer from a unit that answered before: it waited in vain, the
/// link closed, or the link the device closed could not be opened again.
fn no_answer(e: &ActionError) -> bool {
    e.is_device_silence()
        || matches!(
            e,
            ActionError::Link {
                source: LinkError::Open { .. },
                ..
            }
        )
}

async fn positive_control(dev: &mut Device) -> Result<Outcome, ActionError> {
    let src = match genuine_source(&dev.model) {
        Ok(s) => s,
        Err(e) => return Ok(Outcome::error(e.to_string())),
    };
    note_key(dev, &src);
    let before = match running_version(dev).await? {
        Ok(v) => v,
        Err(e) => return Ok(Outcome::inconclusive(e.to_string())),
    };
    let (image, v) = match genuine_newer(&src, before, size_of(&dev.model), 1) {
        Ok(x) => x,
        Err(e) => return Ok(Outcome::inconclusive(e)),
    };
    dev.note(format!(
        "running {before}; pushing a genuine image of version {v} ({} bytes)",
        image.len()
    ));
    if let Some(answer) = push(dev, image).await? {
        return Ok(Outcome::inconclusive(format!(
            "the unit refused a genuine, validly signed image of version {v} ({answer:?}): without a working positive control the rejection tests cannot be judged"
        )));
    }
    let after = match running_version(dev).await? {
        Ok(v) => v,
        Err(e) => return Ok(Outcome::inconclusive(e.to_string())),
    };
    if after.cmp_without_build(&v).is_eq() {
        let info = appended_data_answer(dev, &src, after).await;
        Ok(Outcome::pass(format!(
            "genuine image {v} accepted; the unit now runs {after} (was {before}). {info}"
        )))
    } else {
        Ok(Outcome::inconclusive(format!(
            "the unit acknowledged the genuine image {v} but still runs {after}: the positive control did not take effect"
        )))
    }
}

/// Says which genuine source the images come from: the lab key by the SHA-256 of its public
/// key (MCUboot's key hash), never the key itself; or the manufacturer's image by its version.
fn note_key(dev: &mut Device, src: &Genuine) {
    match src {
        Genuine::Key(k) => {
            let hash: String = k
                .public_key()
                .key_hash()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            dev.note(format!(
                "genuine images are signed with the lab's test key ({}, public key SHA-256 {hash})",
                k.kind().name()
            ));
        }
        Genuine::Image(_, v) => dev.note(format!(
            "genuine image: the manufacturer's image of version {v} declared by the board"
        )),
    }
}

/// Pushes a genuine newer image with data appended after its TLV area and describes the
/// answer. MCUboot ignores such data, so either answer is acceptable: information, not a verdict.
async fn appended_data_answer(dev: &mut Device, src: &Genuine, running: Version) -> String {
    let lead = "Information (MCUboot ignores data after the TLV area, so no verdict):";
    let (genuine, v) = match genuine_newer(src, running, size_of(&dev.model), 4) {
        Ok(x) => x,
        Err(e) => return format!("{lead} not tried ({e})."),
    };
    let image = match mutate(
        MutationKind::AppendData,
        &genuine,
        &MutationInputs::default(),
    ) {
        Ok(i) => i,
        Err(e) => return format!("{lead} not tried ({e})."),
    };
    dev.note(format!(
        "information only: pushing a genuine {v} image with data appended after the TLV area"
    ));
    let answer = push(dev, image).await;
    let runs = match running_version(dev).await {
        Ok(Ok(n)) => format!("runs {n}"),
        Ok(Err(e)) => e.to_string(),
        Err(e) => format!("gave no version: {e}"),
    };
    match answer {
        Ok(None) => {
            format!("{lead} a genuine {v} image with appended data was accepted; the unit {runs}.")
        }
        Ok(Some(a)) => format!(
            "{lead} a genuine {v} image with appended data was refused ({a:?}); the unit {runs}."
        ),
        Err(e) => format!(
            "{lead} pushing a genuine {v} image with appended data failed ({e}); the unit {runs}."
        ),
    }
}

struct RejectsMutation {
    kind: MutationKind,
    info: &'static TestInfo,
}

#[async_trait]
impl Test for RejectsMutation {
    fn info(&self) -> &TestInfo {
        self.info
    }

    fn actions(&self, model: &Model) -> Vec<String> {
        let mut a = update_actions(model);
        if model.actions.contains_key(INSTALLED_IMAGE_ACTION) {
            a.push(INSTALLED_IMAGE_ACTION.to_string());
        }
        a
    }

    fn not_applicable(&self, model: &Model) -> Option<String> {
        needs(model).or_else(|| {
            let key_declared = model
                .declarations
                .update
                .as_ref()
                .is_some_and(|u| u.signing_key.is_some());
            (self.needs_key() && !key_declared).then(|| self.needs_key_reason())
        })
    }

    async fn run_unit(&self, dev: &mut Device) -> Outcome {
        self.body(dev).await.unwrap_or_else(Outcome::from)
    }
}

impl RejectsMutation {
    /// Kinds whose image must be signed with the lab's key (not only a genuine image).
    fn needs_key(&self) -> bool {
        matches!(
            self.kind,
            MutationKind::Rollback | MutationKind::TransplantSignature
        )
    }

    fn needs_key_reason(&self) -> String {
        format!(
            "{} needs the test signing key (only a genuine image is declared)",
            self.kind
        )
    }

    async fn body(&self, dev: &mut Device) -> Result<Outcome, ActionError> {
        // The runner asks `not_applicable` first; a direct caller gets the same answer here,
        // before anything is pushed (e.g. rollback with only a genuine image declared).
        if let Some(why) = self.not_applicable(&dev.model) {
            return Ok(Outcome::not_applicable(why));
        }
        let control = dev.memo().get(GENUINE_MEMO).cloned();
        let control = match control {
            Some(v) => v,
            None => {
                // Run alone (e.g. a filtered run): establish the positive control first. If it
                // could not be carried out, that is this test's outcome too.
                let o = memoised_positive_control(dev).await;
                if o.verdict == Verdict::Error {
                    return Ok(o);
                }
                o.verdict.to_string()
            }
        };
        if control != Verdict::Pass.as_str() {
            return Ok(Outcome::inconclusive(format!(
                "the positive control (update.accepts-genuine) was {control}: without a genuine image taking effect, a refusal here proves nothing (a unit that takes no image refuses everything)"
            )));
        }
        let src = match genuine_source(&dev.model) {
            Ok(s) => s,
            Err(e) => return Ok(Outcome::error(e.to_string())),
        };
        let before = match running_version(dev).await? {
            Ok(v) => v,
            Err(e) => return Ok(Outcome::inconclusive(e.to_string())),
        };
        if self.kind == MutationKind::Rollback && before.next_lower().is_none() {
            // Without a lower version the image would carry the running one, which a unit
            // with downgrade protection rightly takes: nothing to judge.
            return Ok(Outcome::inconclusive(format!(
                "the unit runs {before}: there is no lower version to roll back to"
            )));
        }
        let size = size_of(&dev.model);
        let (genuine, newer) = match genuine_newer(&src, before, size, 2) {
            Ok(x) => x,
            Err(e) => return Ok(Outcome::inconclusive(e)),
        };
        let attacker = match attacker_key() {
            Ok(k) => k,
            Err(e) => {
                return Ok(Outcome::error(format!(
                    "cannot generate the attacker key: {e}"
                )))
            }
        };
        let donor = match &src {
            Genuine::Key(k) => sign(&payload(size, 3), k, &SignOptions::new(newer)).ok(),
            Genuine::Image(..) => None,
        };
        let lab_key = match &src {
            Genuine::Key(k) => Some(k),
            Genuine::Image(..) => None,
        };
        let inputs = match self.kind {
            MutationKind::WrongKey => MutationInputs {
                key: Some(attacker),
                ..Default::default()
            },
            MutationKind::TransplantSignature => MutationInputs {
                donor: donor.as_deref(),
                ..Default::default()
            },
            MutationKind::Rollback => MutationInputs {
                key: lab_key,
                version: before.next_lower(),
                ..Default::default()
            },
            _ => MutationInputs::default(),
        };
        let image = match mutate(self.kind, &genuine, &inputs) {
            Ok(i) => i,
            Err(e) => {
                return Ok(Outcome::error(format!(
                    "cannot build the {} image: {e}",
                    self.kind
                )))
            }
        };
        // Where the board reads the installed image below the firmware, read it before the
        // push: a refusal only counts if the image in the slot did not change.
        let slot_before = match installed_image(dev).await {
            None => None,
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => {
                return Ok(Outcome::error(format!(
                    "cannot read the installed image through {INSTALLED_IMAGE_ACTION} before the push: {e}"
                )))
            }
        };
        dev.note(format!(
            "running {before}; pushing a {} variant of a genuine {newer} image ({} bytes): {}",
            self.kind,
            image.len(),
            self.kind.description()
        ));
        let answer = match push(dev, image).await {
            Ok(a) => Some(a),
            Err(e) if no_answer(&e) => {
                dev.note(format!("no answer to the push: {e}"));
                None
            }
            Err(e) => return Err(e),
        };
        if matches!(answer, Some(None)) {
            // Seen in a usable answer: it stands even if the unit stops answering now.
            dev.confirm_finding(format!(
                "the unit acknowledged the {} image as accepted",
                self.kind
            ));
        }
        let after = match running_version(dev).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return Ok(Outcome::inconclusive(e.to_string())),
            Err(e) if no_answer(&e) => {
                // Silence earns no verdict: a unit bricked by the image cannot be told apart
                // from one frozen or unplugged at that moment. Say what was seen.
                let said = match &answer {
                    Some(None) => "it acknowledged the image as accepted".to_string(),
                    Some(Some(a)) => format!("it refused the image ({a:?})"),
                    None => "it gave no answer to the push".to_string(),
                };
                return Ok(Outcome::error(format!(
                    "the unit answered before the push (it reported version {before}) and has not answered since the {} image ({said}; the running version could not be read): it may have been bricked by the image, which would itself be a finding to confirm by hand, or it froze or lost power; no verdict from silence ({e})",
                    self.kind
                )));
            }
            Err(e) => return Err(e),
        };
        // The slot, read again below the firmware.
        let slot = match slot_before {
            None => SlotCheck::NotDeclared,
            Some(b) => match installed_image(dev).await {
                Some(Ok(a)) if a == b => SlotCheck::Unchanged,
                Some(Ok(a)) => {
                    let msg = format!(
                        "the installed image changed after the {} image was pushed (read through {INSTALLED_IMAGE_ACTION}, below the firmware): before {b}, after {a}",
                        self.kind
                    );
                    dev.confirm_finding(msg.clone());
                    SlotCheck::Changed(msg)
                }
                Some(Err(e)) => SlotCheck::Unreadable(e.to_string()),
                None => SlotCheck::NotDeclared,
            },
        };
        let changed = !after.cmp_without_build(&before).is_eq();
        if let SlotCheck::Changed(msg) = slot {
            return Ok(Outcome::fail(msg));
        }
        if let (SlotCheck::Unreadable(e), false, Some(Some(_)) | None) = (&slot, changed, &answer) {
            return Ok(Outcome::error(format!(
                "the unit refused the {} image, but the installed image could not be read again through {INSTALLED_IMAGE_ACTION} to confirm it was not installed: {e}",
                self.kind
            )));
        }
        let slot_note = match slot {
            SlotCheck::Unchanged => {
                "; the installed image, read again through read_installed_image (below the firmware), is unchanged"
            }
            _ => "",
        };
        if changed {
            dev.confirm_finding(format!(
                "the unit installed the {} image: it ran {before} and now runs {after}",
                self.kind
            ));
        }
        Ok(match (answer, changed) {
            (_, true) => Outcome::fail(format!(
                "the unit installed the {} image: it ran {before} and now runs {after}",
                self.kind
            )),
            (Some(None), false) => Outcome::fail(format!(
                "the unit acknowledged the {} image as accepted (the running version {after} is unchanged, but it did not refuse it)",
                self.kind
            )),
            (Some(Some(a)), false) => Outcome::pass(format!(
                "refused ({a:?}); still runs {after} and answers{slot_note}"
            )),
            (None, false) => Outcome::pass(format!(
                "no acknowledgement of the {} image; still runs {after} and answers{slot_note}",
                self.kind
            )),
        })
    }
}
