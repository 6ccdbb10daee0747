//! The update suite's verdict rules against a scripted unit: no processes, no sockets. Each
//! test opens `tokio::io::duplex`, gives one end to `Console::from_stream` and
//! `Device::with_console`, and plays a unit on the other end that speaks the console update
//! protocol of the simulated fleet (`version`; `update begin N`, `update data OFF BASE64`,
//! `update end`), checks each image like MCUboot (or deliberately less), and misbehaves on cue.
//! The suite's tests run as the runner runs them: `begin_test`, `run_unit`, then
//! `hilsec_core::test::settle` with the device's end state.
//!
//! Time is paused (`start_paused`): a unit that stays silent costs no wall-clock time, however
//! generous the board's timeouts, and no assertion depends on how long anything took.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use hilsec_core::board::{load_boards, LoadMode};
use hilsec_core::device::Device;
use hilsec_core::iface::serial::Console;
use hilsec_core::test::{settle, Outcome, Test, Verdict};
use hilsec_core::transcript::Transcript;
use hilsec_image::{
    sign, verify, Image, PublicKey, SignOptions, SigningKey, VerifyOptions, Version,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// Memo key under which the suite keeps the positive control's verdict for the unit.
const GENUINE: &str = "update.accepts-genuine";

/// The board: console-only, the simulated fleet's update recipe (base64 chunks). The `tcp`
/// address is never dialled while the link is open; a link the unit closes cannot be opened
/// again (nothing listens there), as with a unit that is gone.
fn board_text(update: &str) -> String {
    format!(
        r#"
[model]
name = "Scripted U0"
manufacturer = "Tests Ltd"

[declarations]
password_mechanism = "unique-per-unit"

{update}

[interfaces.console]
kind = "serial"
tcp = "127.0.0.1:9"
timeout = "30s"

[actions.read_version]
steps = [
  {{ send = "version\n" }},
  {{ expect = 'firmware=(?P<version>[^\r\n]*)\r?\n' }},
]

[actions.push_update]
params = ["image"]
steps = [
  {{ send = "update begin {{image.size}}\n" }},
  {{ expect = 'update: ready\n' }},
  {{ chunks = "image", size = 576, encoding = "base64", steps = [
      {{ send = "update data {{offset}} {{chunk}}\n" }},
      {{ expect = 'update: ok \d+\n', reject = 'update: error[^\n]*' }},
  ] }},
  {{ send = "update end\n" }},
  {{ expect = 'update: accepted version=(?P<installed>\S+)', reject = 'update: rejected[^\n]*' }},
]

[[unit]]
name = "scripted-u1"
serial = "U0-1"
password = {{ value = "Scr1pted#Pass-7" }}
"#
    )
}

/// How the scripted unit checks an image.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Check {
    /// Like MCUboot with downgrade prevention: the lab key's signature, then not below the
    /// running version.
    Mcuboot,
    /// Any image that parses is installed (no hash or signature check).
    NoSignature,
    /// Signature checked, version not: older images are installed.
    NoRollback,
    /// Every image is refused, genuine ones too.
    RefuseAll,
    /// Every image is acknowledged as accepted, none installed.
    AckOnly,
}

/// What goes wrong, once, at the push selected by [`At`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// No answer to `update end`, and none to anything after.
    MuteAtEnd,
    /// No answer to `update end` (the decision is applied silently); later commands answered.
    QuietAtEnd,
    /// Closes the link at `update end`.
    HangUpAtEnd,
    /// Answers `update end` as decided, then nothing to anything after.
    MuteAfter,
    /// Answers `update end` as decided, then closes the link at the next command.
    HangUpAfter,
    /// Answers `update end` as decided, then reports a version that is not X.Y.Z.
    GarbageAfter,
    /// Says `accepted` (with the running version) and installs nothing, whatever it decided.
    LieAccepted,
    /// Says `rejected` and keeps reporting the running version, but writes the image into its
    /// slot: only a read below the firmware (`read_installed_image`) can tell.
    SlotWritten,
}

/// Which push the fault hits.
#[derive(Debug, Clone, Copy, PartialEq)]
enum At {
    /// The first image that MCUboot would refuse (tampered, or a rollback).
    FirstTampered,
    /// The n-th push (from 1).
    Push(usize),
}

struct Spec {
    running: Version,
    check: Check,
    fault: Fault,
    at: At,
    /// The version is reported as garbage from the start.
    garbage: bool,
    /// The board reads the unit's slot (`read_installed_image`, here the console's `slot`
    /// command standing in for a debug-port read).
    slot: bool,
}

impl Spec {
    fn new(check: Check) -> Spec {
        Spec {
            running: Version::new(1, 4, 2, 0),
            check,
            fault: Fault::None,
            at: At::FirstTampered,
            garbage: false,
            slot: false,
        }
    }
    fn with_slot(mut self) -> Spec {
        self.slot = true;
        self
    }
    fn fault(mut self, fault: Fault, at: At) -> Spec {
        self.fault = fault;
        self.at = at;
        self
    }
}

/// What the scripted unit did, for assertions on the device's side of the story.
#[derive(Debug, Default)]
struct UnitLog {
    /// Versions installed, in order.
    installed: Vec<Version>,
    /// Images pushed to the end (`update end` received).
    pushes: usize,
    /// Reasons of refusals, in order.
    refused: Vec<String>,
}

/// Plays the unit on `io` until the harness closes the console (or the unit hangs up).
async fn play(mut io: DuplexStream, spec: Spec, key: PublicKey, log: Arc<Mutex<UnitLog>>) {
    let mut running = spec.running;
    let mut garbage = spec.garbage;
    let mut mute = false;
    let mut hang_up_next = false;
    let mut faulted = false;
    let mut staging: Vec<u8> = Vec::new();
    // The first 32 bytes of the installed image (a factory image's header before any update).
    let mut slot: Vec<u8> = vec![0x3d; 32];
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = match io.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(i) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            let line = String::from_utf8_lossy(&line).trim().to_string();
            if hang_up_next {
                return;
            }
            if mute {
                continue;
            }
            let mut words = line.split(' ');
            let reply = match (words.next(), words.next()) {
                (Some("version"), None) => {
                    if garbage {
                        "firmware=banana\n".to_string()
                    } else {
                        format!(
                            "firmware={}.{}.{}\n",
                            running.major, running.minor, running.revision
                        )
                    }
                }
                (Some("slot"), None) => {
                    let hex: String = slot.iter().map(|b| format!("{b:02x}")).collect();
                    format!("slot={hex}\n")
                }
                (Some("update"), Some("begin")) => {
                    staging.clear();
                    "update: ready\n".to_string()
                }
                (Some("update"), Some("data")) => {
                    let off: usize = words.next().and_then(|w| w.parse().ok()).unwrap_or(0);
                    let bytes = base64_decode(words.next().unwrap_or(""));
                    if staging.len() < off + bytes.len() {
                        staging.resize(off + bytes.len(), 0);
                    }
                    staging[off..off + bytes.len()].copy_from_slice(&bytes);
                    format!("update: ok {}\n", off + bytes.len())
                }
                (Some("update"), Some("end")) => {
                    let mut l = log.lock().unwrap();
                    l.pushes += 1;
                    let opts = VerifyOptions {
                        min_version: Some(running),
                    };
                    let tampered = !verify(&staging, &key, &opts).is_accepted();
                    let fault = match spec.at {
                        At::FirstTampered if tampered && !faulted => spec.fault,
                        At::Push(n) if n == l.pushes && !faulted => spec.fault,
                        _ => Fault::None,
                    };
                    if fault != Fault::None {
                        faulted = true;
                    }
                    let decision = decide(spec.check, &staging, &key, running);
                    let answer = match &decision {
                        Ok(v) => format!("update: accepted version={v}\n"),
                        Err(why) => format!("update: rejected {why}\n"),
                    };
                    let header = staging[..staging.len().min(32)].to_vec();
                    let install = |l: &mut UnitLog, running: &mut Version, slot: &mut Vec<u8>| {
                        match &decision {
                            Ok(v) => {
                                l.installed.push(*v);
                                *running = *v;
                                *slot = header.clone();
                            }
                            Err(why) => l.refused.push(why.clone()),
                        }
                    };
                    match fault {
                        Fault::None => {
                            install(&mut l, &mut running, &mut slot);
                            answer
                        }
                        Fault::MuteAtEnd => {
                            mute = true;
                            continue;
                        }
                        Fault::QuietAtEnd => {
                            install(&mut l, &mut running, &mut slot);
                            continue;
                        }
                        Fault::HangUpAtEnd => return,
                        Fault::MuteAfter => {
                            install(&mut l, &mut running, &mut slot);
                            mute = true;
                            answer
                        }
                        Fault::HangUpAfter => {
                            install(&mut l, &mut running, &mut slot);
                            hang_up_next = true;
                            answer
                        }
                        Fault::GarbageAfter => {
                            install(&mut l, &mut running, &mut slot);
                            garbage = true;
                            answer
                        }
                        Fault::LieAccepted => format!("update: accepted version={running}\n"),
                        Fault::SlotWritten => {
                            slot = header.clone();
                            "update: rejected image refused\n".to_string()
                        }
                    }
                }
                _ => "?\n".to_string(),
            };
            if io.write_all(reply.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

/// The unit's decision on an image: `Ok(version to install)` or `Err(reason)`.
fn decide(
    check: Check,
    image: &[u8],
    key: &PublicKey,
    running: Version,
) -> Result<Version, String> {
    let parsed = Image::parse(image).map_err(|e| format!("malformed: {e}"))?;
    let v = parsed.header.version;
    let checked =
        |min: Option<Version>| match verify(image, key, &VerifyOptions { min_version: min })
            .rejection()
        {
            None => Ok(v),
            Some(r) => Err(r.to_string()),
        };
    match check {
        Check::Mcuboot => checked(Some(running)),
        Check::NoRollback => checked(None),
        Check::NoSignature => Ok(v),
        Check::RefuseAll => Err("updates are disabled".into()),
        Check::AckOnly => Ok(running),
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let digits: Vec<u32> = s.bytes().filter_map(val).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for group in digits.chunks(4) {
        let mut n = 0u32;
        for (i, d) in group.iter().enumerate() {
            n |= d << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..group.len()]);
    }
    out
}

/// A folder for one bench's board file and keys, removed when the bench goes.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hilsec-update-decisions-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A device wired to a scripted unit, and what the unit did.
struct Bench {
    dev: Device,
    log: Arc<Mutex<UnitLog>>,
    _dir: TempDir,
}

/// How the lab's board declares its genuine images.
enum Lab {
    /// `signing_key`: the lab holds the private test key the unit trusts.
    Key,
    /// `genuine_image` only: a manufacturer's image of this version.
    Image(Version),
    /// No `[declarations.update]` at all.
    Nothing,
    /// `signing_key` names a public key: the lab cannot sign anything.
    PublicKeyOnly,
}

fn bench_with(spec: Spec, lab: Lab) -> Bench {
    let dir = TempDir::new();
    let key = SigningKey::generate_ed25519().expect("a key");
    std::fs::write(dir.path().join("lab.pem"), key.to_pem().expect("pem")).unwrap();
    let update = match lab {
        Lab::Key => "[declarations.update]\nsigning_key = \"lab.pem\"\npayload_size = 2048\n",
        Lab::Image(v) => {
            let img = sign(&[0x5au8; 2048], &key, &SignOptions::new(v)).expect("signed");
            std::fs::write(dir.path().join("fw.bin"), img).unwrap();
            "[declarations.update]\ngenuine_image = \"fw.bin\"\npayload_size = 2048\n"
        }
        Lab::Nothing => "",
        Lab::PublicKeyOnly => {
            let pem = key.public_key().to_pem().expect("public pem");
            std::fs::write(dir.path().join("lab.pub.pem"), pem).unwrap();
            "[declarations.update]\nsigning_key = \"lab.pub.pem\"\npayload_size = 2048\n"
        }
    };
    let slot_action = if spec.slot {
        "\n[actions.read_installed_image]\nsteps = [\n  { send = \"slot\\n\" },\n  { expect = 'slot=(?P<header>[0-9a-f]+)\\r?\\n' },\n]\n"
    } else {
        ""
    };
    let file = dir.path().join("scripted.toml");
    std::fs::write(&file, board_text(&format!("{update}{slot_action}"))).unwrap();
    let boards = load_boards(&[file], LoadMode::Run).unwrap_or_else(|e| panic!("{e:?}"));
    let b = boards.into_iter().next().expect("one board");
    let unit = b.units.into_iter().next().expect("one unit");
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let console = Console::from_stream("console", ours, Transcript::new());
    let dev = Device::with_console(unit, b.model, "console", console);
    let log = Arc::new(Mutex::new(UnitLog::default()));
    tokio::spawn(play(theirs, spec, key.public_key(), log.clone()));
    Bench {
        dev,
        log,
        _dir: dir,
    }
}

fn bench(spec: Spec) -> Bench {
    bench_with(spec, Lab::Key)
}

fn test_named(id: &str) -> Arc<dyn Test> {
    hilsec_suites::update::suite()
        .tests
        .into_iter()
        .find(|t| t.info().id == id)
        .unwrap_or_else(|| panic!("no test {id}"))
}

/// Every test id of the suite, in its order.
fn ids() -> Vec<&'static str> {
    hilsec_suites::update::suite()
        .tests
        .iter()
        .map(|t| t.info().id)
        .collect()
}

const REJECTIONS: [&str; 9] = [
    "update.rejects-payload-bitflip",
    "update.rejects-header-bitflip",
    "update.rejects-signature-bitflip",
    "update.rejects-truncate",
    "update.rejects-unsigned",
    "update.rejects-wrong-key",
    "update.rejects-transplant-signature",
    "update.rejects-bad-magic",
    "update.rejects-rollback",
];

impl Bench {
    /// Runs one test as the runner does (fresh transcript, body, settle) and returns the
    /// settled outcome.
    async fn run(&mut self, id: &str) -> Outcome {
        let test = test_named(id);
        if let Some(why) = test.not_applicable(&self.dev.model) {
            return Outcome::not_applicable(why);
        }
        self.dev.begin_test();
        let o = test.run_unit(&mut self.dev).await;
        let end = self.dev.take_end_state();
        settle(o, &end)
    }

    /// The evidence of the test that ran last.
    fn evidence(&self) -> String {
        self.dev.transcript().render(self.dev.redactor())
    }

    fn installed(&self) -> Vec<Version> {
        self.log.lock().unwrap().installed.clone()
    }

    fn pushes(&self) -> usize {
        self.log.lock().unwrap().pushes
    }
}

fn v(major: u8, minor: u8, revision: u16) -> Version {
    Version::new(major, minor, revision, 0)
}

#[track_caller]
fn expect(o: &Outcome, verdict: Verdict, fragments: &[&str]) {
    assert_eq!(o.verdict, verdict, "{}", o.message);
    for f in fragments {
        assert!(o.message.contains(f), "{f:?} not in: {}", o.message);
    }
}

// --- the positive control (update.accepts-genuine) ------------------------------------------

#[tokio::test(start_paused = true)]
async fn suite_has_the_control_first_and_one_test_per_rejected_kind() {
    let got = ids();
    assert_eq!(got[0], GENUINE);
    assert_eq!(
        &got[1..],
        &REJECTIONS[..],
        "append-data is information only"
    );
}

#[tokio::test(start_paused = true)]
async fn a_genuine_image_that_takes_effect_passes_the_control() {
    let mut b = bench(Spec::new(Check::Mcuboot));
    let o = b.run(GENUINE).await;
    expect(
        &o,
        Verdict::Pass,
        &[
            "genuine image 1.4.3+0 accepted",
            "now runs 1.4.3",
            "was 1.4.2",
            // The information-only push is reported, not judged.
            "Information",
            "appended data was accepted",
        ],
    );
    // The genuine image, then the genuine image with appended data (MCUboot ignores it).
    assert_eq!(b.installed(), vec![v(1, 4, 3), v(1, 4, 4)]);
    assert_eq!(b.dev.memo().get(GENUINE).map(String::as_str), Some("pass"));
    let ev = b.evidence();
    assert!(ev.contains("signed with the lab's test key"), "{ev}");
    assert!(!ev.contains("PRIVATE KEY"), "{ev}");
}

#[tokio::test(start_paused = true)]
async fn a_refused_genuine_image_leaves_everything_inconclusive() {
    let mut b = bench(Spec::new(Check::RefuseAll));
    let o = b.run(GENUINE).await;
    // Not `fail`: a unit that takes no image at all cannot be judged by these tests, and the
    // README defines the positive control not working as inconclusive.
    expect(
        &o,
        Verdict::Inconclusive,
        &[
            "refused a genuine, validly signed image of version 1.4.3",
            "updates are disabled",
        ],
    );
    assert_eq!(b.pushes(), 1);
    for id in REJECTIONS {
        let o = b.run(id).await;
        expect(
            &o,
            Verdict::Inconclusive,
            &["positive control (update.accepts-genuine) was inconclusive"],
        );
    }
    assert_eq!(
        b.pushes(),
        1,
        "no tampered image was pushed: a refusal would prove nothing"
    );
    assert!(b.installed().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_genuine_image_acknowledged_without_effect_is_inconclusive() {
    let mut b = bench(Spec::new(Check::AckOnly));
    let o = b.run(GENUINE).await;
    expect(
        &o,
        Verdict::Inconclusive,
        &[
            "acknowledged the genuine image 1.4.3",
            "still runs 1.4.2",
            "did not take effect",
        ],
    );
    let o = b.run("update.rejects-unsigned").await;
    expect(&o, Verdict::Inconclusive, &["was inconclusive"]);
    assert_eq!(b.pushes(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_version_that_is_not_x_y_z_is_inconclusive() {
    let mut spec = Spec::new(Check::Mcuboot);
    spec.garbage = true;
    let mut b = bench(spec);
    let o = b.run(GENUINE).await;
    expect(&o, Verdict::Inconclusive, &["\"banana\"", "not X.Y.Z"]);
    assert_eq!(b.pushes(), 0, "nothing pushed without a running version");
}

#[tokio::test(start_paused = true)]
async fn silence_after_the_genuine_image_is_error_and_the_rejections_inconclusive() {
    let mut b = bench(Spec::new(Check::Mcuboot).fault(Fault::MuteAtEnd, At::Push(1)));
    let o = b.run(GENUINE).await;
    expect(&o, Verdict::Error, &["no usable answer from the device"]);
    assert_eq!(b.dev.memo().get(GENUINE).map(String::as_str), Some("error"));
    let o = b.run("update.rejects-unsigned").await;
    expect(
        &o,
        Verdict::Inconclusive,
        &["positive control (update.accepts-genuine) was error"],
    );
}

#[tokio::test(start_paused = true)]
async fn a_link_closed_by_the_genuine_image_is_error() {
    let mut b = bench(Spec::new(Check::Mcuboot).fault(Fault::HangUpAtEnd, At::Push(1)));
    let o = b.run(GENUINE).await;
    expect(
        &o,
        Verdict::Error,
        &["no usable answer from the device", "closed"],
    );
    assert!(b.installed().is_empty());
}

#[tokio::test(start_paused = true)]
async fn silence_after_the_information_push_voids_the_controls_pass() {
    // The genuine image took effect (seen), then the unit went silent after the information-only
    // appended-data push: the test's last exchange was silence, so its `pass` becomes `error`,
    // saying what it would have concluded.
    let mut b = bench(Spec::new(Check::Mcuboot).fault(Fault::MuteAfter, At::Push(2)));
    let o = b.run(GENUINE).await;
    expect(
        &o,
        Verdict::Error,
        &[
            "went silent",
            "the test would have said: genuine image 1.4.3+0 accepted",
        ],
    );
}

// --- a rejection test run alone establishes the control itself --------------------------------

#[tokio::test(start_paused = true)]
async fn a_rejection_test_run_alone_runs_the_control_first() {
    let mut b = bench(Spec::new(Check::Mcuboot));
    let o = b.run("update.rejects-unsigned").await;
    expect(
        &o,
        Verdict::Pass,
        &["refused", "still runs 1.4.4+0 and answers"],
    );
    // Genuine, appended-data (information), unsigned.
    assert_eq!(b.pushes(), 3);
    assert_eq!(b.dev.memo().get(GENUINE).map(String::as_str), Some("pass"));
    let o = b.run("update.rejects-wrong-key").await;
    expect(&o, Verdict::Pass, &["refused"]);
    assert_eq!(b.pushes(), 4, "the control ran once");
}

#[tokio::test(start_paused = true)]
async fn a_rejection_test_run_alone_whose_control_breaks_is_error_then_inconclusive() {
    let mut b = bench(Spec::new(Check::Mcuboot).fault(Fault::MuteAtEnd, At::Push(1)));
    let o = b.run("update.rejects-unsigned").await;
    expect(&o, Verdict::Error, &["no usable answer from the device"]);
    let o = b.run("update.rejects-truncate").await;
    expect(&o, Verdict::Inconclusive, &["was error"]);
    assert_eq!(
        b.pushes(),
        1,
        "a broken control is not retried on every test"
    );
}

// --- the rejection tests -----------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_unit_that_checks_like_mcuboot_passes_the_whole_suite() {
    let mut b = bench(Spec::new(Check::Mcuboot));
    for id in ids() {
        let o = b.run(id).await;
        assert_eq!(o.verdict, Verdict::Pass, "{id}: {}", o.message);
        if id != GENUINE {
            assert!(
                o.message.starts_with("refused (\"update: rejected"),
                "{id}: {}",
                o.message
            );
            assert!(
                o.message.contains("still runs 1.4.4"),
                "{id}: {}",
                o.message
            );
        }
    }
    // Only the control's two genuine images were ever installed.
    assert_eq!(b.installed(), vec![v(1, 4, 3), v(1, 4, 4)]);
    assert_eq!(b.pushes(), 2 + REJECTIONS.len());
}

#[tokio::test(start_paused = true)]
async fn tampered_images_installed_fail_with_the_versions() {
    // Installs anything that parses: bit flips, unsigned, wrong key, transplanted signature and
    // rollback get in; a bad magic or a truncated image does not parse.
    let mut b = bench(Spec::new(Check::NoSignature));
    expect(&b.run(GENUINE).await, Verdict::Pass, &[]);
    for id in REJECTIONS {
        let o = b.run(id).await;
        match id {
            "update.rejects-bad-magic" | "update.rejects-truncate" => {
                expect(&o, Verdict::Pass, &["refused", "malformed"])
            }
            "update.rejects-rollback" => expect(
                &o,
                Verdict::Fail,
                &["installed the rollback image", "now runs"],
            ),
            _ => expect(
                &o,
                Verdict::Fail,
                &["the unit installed the", "image: it ran"],
            ),
        }
        if o.verdict == Verdict::Fail {
            assert!(
                b.evidence().contains("## finding: the unit"),
                "{id}: {}",
                b.evidence()
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_unit_without_downgrade_protection_fails_rollback_only() {
    let mut b = bench(Spec::new(Check::NoRollback));
    for id in ids() {
        let o = b.run(id).await;
        if id == "update.rejects-rollback" {
            // Ran 1.4.4 after the control; the rollback image carries the next lower version.
            expect(
                &o,
                Verdict::Fail,
                &["installed the rollback image: it ran 1.4.4+0 and now runs 1.4.3+0"],
            );
        } else {
            assert_eq!(o.verdict, Verdict::Pass, "{id}: {}", o.message);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_tampered_image_acknowledged_fails_even_with_the_version_unchanged() {
    let mut b = bench(Spec::new(Check::Mcuboot).fault(Fault::LieAccepted, At::FirstTampered));
    expect(&b.run(GENUINE).await, Verdict::Pass, &[]);
    let o = b.run("update.rejects-unsigned").await;
    expect(
        &o,
        Verdict::Fail,
        &[
            "acknowledged the unsigned image as accepted",
            "1.4.4+0 is unchanged",
        ],
    );
    assert_eq!(
        b.installed(),
        vec![v(1, 4, 3), v(1, 4, 4)],
        "nothing installed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_refusal_without_any_answer_passes_when_the_unit_still_runs_its_version() {
    // No answer to the end of the push, but the unit answers afterwards and still runs the
    // same version: not installed, and seen alive.
    let mut b = bench(Spec::new(Check::Mcuboot).fault(Fault::QuietAtEnd, At::FirstTampered));
    expect(&b.run(GENUINE).await, Verdict::Pass, &[]);
    let o = b.run("update.rejects-payload-bitflip").await;
    expect(
        &o,
        Verdict::Pass,
        &[
            "no acknowledgement of the payload-bitflip image",
            "still runs 1.4.4",
        ],
    );
    assert!(
        b.evidence().contains("no answer to the push"),
        "{}",
        b.evidence()
    );
}

#[tokio::test(start_paused = true)]
async fn a_silent_install_fails() {
    let mut b = bench(Spec::new(Check::NoSignature).fault(Fault::QuietAtEnd, At::FirstTampered));
    expect(&b.run(GENUINE).await, Verdict::Pass, &[]);
    let o = b.run("update.rejects-unsigned").await;
    expect(
        &o,
        Verdict::Fail,
        &["installed the unsigned image: it ran 1.4.4+0 and now runs 1.4.5+0"],
    );
}

#[tokio::test(start_paused = true)]
async fn silence_after_a_tampered_image_is_error_never_fail() {
    let mut b = bench(Spec::new(Check::Mcuboot).fault(Fault::MuteAtEnd, At::FirstTampered));
    expect(&b.run(GENUINE).await, Verdict::Pass, &[]);
    let o = b.run("update.rejects-unsigned").await;
    expect(
        &o,
        Verdict::Error,
        &[
            "reported version 1.4.4+0",
            "has not answered since the unsigned image",
            "it gave no answer to the push",
            "may have been bricked",
            "no verdict from silence",
        ],
    );
    // The unit stays mute: the next test cannot read a version either, and says so.
    let o = b.run("update.rejects-truncate").await;
    expect(&o, Verdict::Error, &["no usable answer from the device"]);
}

#[tokio::test(start_paused = true)]
async fn a_link_closed_by_a_tampered_image_is_error_never_fail() {
    let mut b = bench(Spec::new(Check::Mcuboot).fault(Fault::HangUpAtEnd, At::FirstTampered));
    expect(&b.run(GENUINE).await, Verdict::Pass, &[]);
    let o = b.run("update.rejects-wrong-key").await;
    expect(
        &o,
        Verdict::Error,
        &[
            "has not answered since the wrong-key image",
            "it gave no answer to the push",
            "no verdict from silence",
        ],
    );
    assert!(
        b.dev.unreachable().is_some(),
        "the link could not be opened again"
    );
}

#[tokio::test(start_paused = true)]
async fn silence_after_a_refusal_is_error_saying_it_refused() {
    let mut b = bench(Spec::new(Check::Mcuboot).fault(Fault::MuteAfter, At::FirstTampered));
    expect(&b.run(GENUINE).await, Verdict::Pass, &[]);
    let o = b.run("update.rejects-signature-bitflip").await;
    expect(
        &o,
        Verdict::Error,
        &[
            "it refused the image (\"update: rejected",
            "has not answered since the signature-bitflip image",
            "no verdict from silence",
        ],
    );
}

#[tokio::test(start_paused = true)]
async fn a_hang_up_after_a_refusal_is_error_saying_it_refused() {
    let mut b = bench(Spec::new(Check::Mcuboot).fault(Fault::HangUpAfter, At::FirstTampered));
    expect(&b.run(GENUINE).await, Verdict::Pass, &[]);
    let o = b.run("update.rejects-bad-magic").await;
    expect(
        &o,
        Verdict::Error,
        &[
            "it refused the image",
            "has not answered since the bad-magic image",
            "no verdict from silence",
        ],
    );
}

#[tokio::test(start_paused = true)]
async fn an_acknowledged_tampered_image_stands_when_the_unit_then_goes_silent() {
    // The unit says it accepted the unsigned image (a usable answer), then never answers again:
    // the acknowledgement is a confirmed finding, so the verdict is `fail`, not `error`.
    let mut b = bench(Spec::new(Check::NoSignature).fault(Fault::MuteAfter, At::FirstTampered));
    expect(&b.run(GENUINE).await, Verdict::Pass, &[]);
    let o = b.run("update.rejects-unsigned").await;
    expect(
        &o,
        Verdict::Fail,
        &[
            "the unit acknowledged the unsigned image as accepted",
            "the test could not complete after that",
            "has not answered since the unsigned image",
        ],
    );
}

#[tokio::test(start_paused = true)]
async fn a_version_garbled_after_a_refusal_is_inconclusive() {
    let mut b = bench(Spec::new(Check::Mcuboot).fault(Fault::GarbageAfter, At::FirstTampered));
    expect(&b.run(GENUINE).await, Verdict::Pass, &[]);
    let o = b.run("update.rejects-unsigned").await;
    expect(&o, Verdict::Inconclusive, &["\"banana\"", "not X.Y.Z"]);
}

#[tokio::test(start_paused = true)]
async fn a_version_garbled_after_an_acknowledged_tampered_image_still_fails() {
    let mut b = bench(Spec::new(Check::NoSignature).fault(Fault::GarbageAfter, At::FirstTampered));
    expect(&b.run(GENUINE).await, Verdict::Pass, &[]);
    let o = b.run("update.rejects-unsigned").await;
    expect(
        &o,
        Verdict::Fail,
        &["acknowledged the unsigned image as accepted", "not X.Y.Z"],
    );
}

#[tokio::test(start_paused = true)]
async fn rollback_from_version_zero_is_inconclusive() {
    // A unit running 0.0.0 (e.g. it came back on its factory image after the control) has no
    // lower version: a "rollback" image would carry 0.0.0 itself, which downgrade protection
    // rightly takes, so there is nothing to judge (before the fix this was a false `fail`).
    let mut spec = Spec::new(Check::Mcuboot);
    spec.running = v(0, 0, 0);
    let mut b = bench(spec);
    b.dev.memo().insert(GENUINE.into(), "pass".into());
    let o = b.run("update.rejects-rollback").await;
    expect(
        &o,
        Verdict::Inconclusive,
        &["runs 0.0.0+0", "no lower version"],
    );
    assert_eq!(b.pushes(), 0);
}

// --- what the board declares -------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn without_update_declarations_every_test_is_not_applicable() {
    let b = bench_with(Spec::new(Check::Mcuboot), Lab::Nothing);
    for t in hilsec_suites::update::suite().tests {
        let why = t.not_applicable(&b.dev.model);
        assert!(
            why.as_deref()
                .is_some_and(|w| w.contains("[declarations.update]")),
            "{}: {why:?}",
            t.info().id
        );
    }
}

#[tokio::test(start_paused = true)]
async fn with_only_a_genuine_image_the_control_works_and_nothing_is_misjudged() {
    let mut b = bench_with(Spec::new(Check::Mcuboot), Lab::Image(v(2, 0, 0)));
    let o = b.run(GENUINE).await;
    // The appended-data probe needs a newer image than the one now running: not tried.
    expect(
        &o,
        Verdict::Pass,
        &[
            "genuine image 2.0.0+0 accepted",
            "now runs 2.0.0",
            "not tried",
        ],
    );
    assert!(b
        .evidence()
        .contains("the manufacturer's image of version 2.0.0"));
    for id in REJECTIONS {
        let o = b.run(id).await;
        match id {
            "update.rejects-rollback" | "update.rejects-transplant-signature" => {
                expect(&o, Verdict::NotApplicable, &["needs the test signing key"])
            }
            // The one genuine image is now the running version: no newer image to tamper
            // with, so no verdict (a known limit of boards without the test key).
            _ => expect(
                &o,
                Verdict::Inconclusive,
                &["not newer than the running 2.0.0"],
            ),
        }
    }
    assert_eq!(b.installed(), vec![v(2, 0, 0)]);
}

#[tokio::test(start_paused = true)]
async fn a_genuine_image_older_than_the_running_version_is_inconclusive() {
    let mut b = bench_with(Spec::new(Check::Mcuboot), Lab::Image(v(1, 0, 0)));
    let o = b.run(GENUINE).await;
    expect(
        &o,
        Verdict::Inconclusive,
        &["version 1.0.0+0, not newer than the running 1.4.2+0"],
    );
    assert_eq!(b.pushes(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_declared_public_key_is_a_lab_error_not_a_device_verdict() {
    let mut b = bench_with(Spec::new(Check::Mcuboot), Lab::PublicKeyOnly);
    let o = b.run(GENUINE).await;
    expect(
        &o,
        Verdict::Error,
        &["is a public key", "needs the private test key"],
    );
    assert_eq!(b.pushes(), 0);
}

#[tokio::test(start_paused = true)]
async fn key_only_kinds_are_not_applicable_even_when_run_directly() {
    // The runner asks `not_applicable` first; a caller that runs the body anyway gets the same
    // answer, with nothing read or pushed.
    let mut b = bench_with(Spec::new(Check::Mcuboot), Lab::Image(v(2, 0, 0)));
    for id in [
        "update.rejects-rollback",
        "update.rejects-transplant-signature",
    ] {
        b.dev.begin_test();
        let o = test_named(id).run_unit(&mut b.dev).await;
        expect(&o, Verdict::NotApplicable, &["needs the test signing key"]);
    }
    assert_eq!(b.pushes(), 0);
    assert!(
        b.dev.memo().is_empty(),
        "the control was not run for nothing"
    );
}

// --- what the unit holds, not what it says (read_installed_image) ----------------------------

/// A unit that refuses in words but writes the image into its slot fails, though the version it
/// reports never changes; the refusal alone would have passed.
#[tokio::test(start_paused = true)]
async fn a_refusal_in_words_with_the_image_in_the_slot_fails() {
    let mut b = bench(
        Spec::new(Check::Mcuboot)
            .with_slot()
            .fault(Fault::SlotWritten, At::FirstTampered),
    );
    expect(&b.run(GENUINE).await, Verdict::Pass, &[]);
    let o = b.run("update.rejects-payload-bitflip").await;
    expect(
        &o,
        Verdict::Fail,
        &["installed image changed", "read_installed_image"],
    );
    assert!(b.evidence().contains("slot="), "{}", b.evidence());
}

/// A unit whose slot is unchanged after a refusal passes, and the message says it was checked.
#[tokio::test(start_paused = true)]
async fn an_unchanged_slot_confirms_a_refusal() {
    let mut b = bench(Spec::new(Check::Mcuboot).with_slot());
    expect(&b.run(GENUINE).await, Verdict::Pass, &[]);
    for id in REJECTIONS {
        expect(
            &b.run(id).await,
            Verdict::Pass,
            &["installed image", "unchanged"],
        );
    }
}
