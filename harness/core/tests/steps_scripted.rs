//! The step interpreter against a scripted console: no processes, no sockets. Each test opens
//! `tokio::io::duplex`, gives one end to `Console::from_stream` and `Device::with_console`, and
//! plays the device on the other end from a script, so what a recipe does with each answer
//! (captures, refusals, early accepts, timeouts, a closed link, a flood, calls, cleanup) is
//! checked exactly and fast.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hilsec_core::board::{load_boards, LoadMode, Model, Unit};
use hilsec_core::device::{ActionError, ActionOutcome, Data, Device};
use hilsec_core::iface::serial::Console;
use hilsec_core::iface::LinkError;
use hilsec_core::secret::SecretValue;
use hilsec_core::test::Liveness;
use hilsec_core::transcript::{Transcript, TRANSCRIPT_CAP};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// The board every test runs against. The console's `tcp` address is never dialled: the link
/// is given to the device already open.
const BOARD: &str = r#"
[model]
name = "Scripted S0"
manufacturer = "Tests Ltd"

[declarations]
password_mechanism = "unique-per-unit"

[interfaces.console]
kind = "serial"
tcp = "127.0.0.1:9"
timeout = "2s"

[actions.login]
params = ["user", "password"]
secret_params = ["password"]
steps = [
  { send = "{user}\n" },
  { expect = 'Password: $', accept = '[#$] $' },
  { send = "{password}\n" },
  { expect = '(?P<prompt>[#$]) $', reject = 'Login incorrect' },
]

[actions.ident]
steps = [
  { send = "id\n" },
  { expect = 'uid=(?P<uid>\d+)' },
  { send = "echo {uid}\n" },
  { expect = 'echo=(?P<echoed>\d+)' },
]

[actions.slow]
steps = [{ send = "hello\n" }, { expect = 'never', timeout = "300ms" }]

[actions.flood]
steps = [{ send = "go\n" }, { expect = 'END', timeout = "500ms" }]

[actions.inner]
steps = [{ send = "a\n" }, { expect = 'A(?P<a>\d)' }]

[actions.middle]
steps = [{ call = "inner" }, { send = "b{a}\n" }, { expect = 'B(?P<b>\d)' }]

[actions.outer]
steps = [{ call = "middle" }, { send = "c{b}\n" }, { expect = 'C(?P<c>\d)' }]

[actions.shell]
steps = [
  { call = "login", args = { user = "root", password = "{secret.password}" } },
  { send = "ls\n" },
  { expect = 'files' },
]

[actions.update]
steps = [{ send = "update\n" }, { expect = 'ok', reject = 'denied' }]
cleanup = [{ send = "exit\n" }, { expect = 'bye' }]

[actions.push]
params = ["image"]
steps = [
  { chunks = "image", size = 4, encoding = "hex", steps = [
    { send = "w {offset} {chunk}\n" },
    { expect = 'ok', reject = 'bad' },
  ] },
  { send = "done {image.size}\n" },
  { expect = 'crc=(?P<crc>\w+)' },
]

[actions.d0]
steps = [{ call = "d1" }]
[actions.d1]
steps = [{ call = "d2" }]
[actions.d2]
steps = [{ call = "d3" }]
[actions.d3]
steps = [{ call = "d4" }]
[actions.d4]
steps = [{ call = "d5" }]
[actions.d5]
steps = [{ call = "d6" }]
[actions.d6]
steps = [{ call = "d7" }]
[actions.d7]
steps = [{ call = "d8" }]
[actions.d8]
steps = [{ call = "d9" }]
[actions.d9]
steps = [{ send = "deep\n" }]

[[unit]]
name = "scripted-1"
serial = "S0-1"
mac = "02:00:00:00:00:01"
password = { value = "Scr1pted#Pass-7" }
"#;

const PASSWORD: &str = "Scr1pted#Pass-7";

/// The model and unit of [`BOARD`], through the public loader.
fn board() -> (Arc<Model>, Unit) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "hilsec-steps-scripted-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("scripted.toml");
    std::fs::write(&file, BOARD).unwrap();
    let boards = load_boards(&[file], LoadMode::Run).unwrap_or_else(|e| panic!("{e:?}"));
    let _ = std::fs::remove_dir_all(&dir);
    let b = boards.into_iter().next().expect("one board");
    let unit = b.units.into_iter().next().expect("one unit");
    (b.model, unit)
}

/// One exchange of the scripted device: wait until the harness sent `wait_for` (after the
/// previous exchange's bytes), then answer `reply`.
type Exchange = (&'static str, &'static [u8]);

/// Plays `script` on `io`, then (unless `hang_up`) keeps reading until the harness closes the
/// console. Returns everything the harness sent.
async fn play(mut io: DuplexStream, script: Vec<Exchange>, hang_up: bool) -> String {
    let mut seen = Vec::new();
    let mut from = 0;
    let mut buf = [0u8; 1024];
    for (wait_for, reply) in script {
        loop {
            if let Some(i) = find(&seen[from..], wait_for.as_bytes()) {
                from += i + wait_for.len();
                break;
            }
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return String::from_utf8_lossy(&seen).into_owned(),
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        if io.write_all(reply).await.is_err() {
            break;
        }
    }
    if !hang_up {
        while let Ok(n) = io.read(&mut buf).await {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A device whose console is one end of a duplex pipe; the other end is returned.
fn scripted_device() -> (Device, DuplexStream) {
    let (model, unit) = board();
    let (ours, theirs) = tokio::io::duplex(4096);
    let console = Console::from_stream("console", ours, Transcript::new());
    (
        Device::with_console(unit, model, "console", console),
        theirs,
    )
}

/// Starts the scripted device on `theirs`.
fn spawn_peer(
    theirs: DuplexStream,
    script: Vec<Exchange>,
    hang_up: bool,
) -> tokio::task::JoinHandle<String> {
    tokio::spawn(play(theirs, script, hang_up))
}

/// Drops the device (closing its console) and returns what the scripted device received.
async fn finish(dev: Device, peer: tokio::task::JoinHandle<String>) -> String {
    drop(dev);
    tokio::time::timeout(Duration::from_secs(5), peer)
        .await
        .expect("the scripted device sees the console close")
        .expect("the scripted device does not panic")
}

fn args(user: &str, password: &str) -> Vec<(&'static str, SecretValue)> {
    vec![
        ("user", SecretValue::plain(user.to_string())),
        ("password", SecretValue::secret(password.to_string())),
    ]
}

/// The error an action failed with, which must be a link error (a device problem, not a
/// harness or board one), and its source.
fn link_error(r: Result<ActionOutcome, ActionError>) -> ActionError {
    let e = r.expect_err("the action fails");
    assert!(
        matches!(e, ActionError::Link { .. }),
        "not a link error: {e}"
    );
    e
}

fn source(e: &ActionError) -> &LinkError {
    match e {
        ActionError::Link { source, .. } => source,
        other => panic!("not a link error: {other}"),
    }
}

#[tokio::test]
async fn send_expect_and_captures_flow_into_later_steps() {
    let (mut dev, theirs) = scripted_device();
    dev.begin_test();
    let peer = spawn_peer(
        theirs,
        vec![
            ("id\n", b"uid=42 gid=0\n"),
            // Only an echo of the captured uid gets the second answer.
            ("echo 42\n", b"echo=42\n"),
        ],
        false,
    );
    let out = dev.run_action("ident", &[]).await.expect("ident runs");
    assert!(out.accepted());
    assert_eq!(out.shortcut, None);
    assert_eq!(out.captures.get("uid").map(String::as_str), Some("42"));
    assert_eq!(out.captures.get("echoed").map(String::as_str), Some("42"));
    assert_eq!(dev.liveness(), &Liveness::Answered);
    let got = finish(dev, peer).await;
    assert_eq!(got, "id\necho 42\n");
}

#[tokio::test]
async fn login_sends_the_password_and_keeps_it_out_of_evidence() {
    let (mut dev, theirs) = scripted_device();
    dev.begin_test();
    let peer = spawn_peer(
        theirs,
        vec![
            ("root\n", b"Password: "),
            ("hunter2-Secret\n", b"Welcome\n# "),
        ],
        false,
    );
    let out = dev
        .run_action("login", &args("root", "hunter2-Secret"))
        .await
        .expect("login runs");
    assert!(out.accepted());
    assert_eq!(out.shortcut, None);
    assert_eq!(out.captures.get("prompt").map(String::as_str), Some("#"));
    let evidence = dev.transcript().render(dev.redactor());
    assert!(!evidence.contains("hunter2-Secret"), "{evidence}");
    assert!(evidence.contains("root"), "{evidence}");
    let got = finish(dev, peer).await;
    assert_eq!(got, "root\nhunter2-Secret\n");
}

#[tokio::test]
async fn reject_is_a_refusal_not_an_error() {
    let (mut dev, theirs) = scripted_device();
    dev.begin_test();
    let peer = spawn_peer(
        theirs,
        vec![
            ("root\n", b"Password: "),
            ("wrong\n", b"\nLogin incorrect\nlogin: "),
        ],
        false,
    );
    let out = dev
        .run_action("login", &args("root", "wrong"))
        .await
        .expect("a refusal is an outcome");
    assert_eq!(out.rejected.as_deref(), Some("Login incorrect"));
    assert!(!out.accepted());
    assert_eq!(out.shortcut, None);
    assert_eq!(dev.liveness(), &Liveness::Answered);
    finish(dev, peer).await;
}

#[tokio::test]
async fn accept_skips_the_rest_of_the_action() {
    let (mut dev, theirs) = scripted_device();
    dev.begin_test();
    // A shell right after the user name: no password is asked.
    let peer = spawn_peer(theirs, vec![("root\n", b"# ")], false);
    let out = dev
        .run_action("login", &args("root", "never-sent"))
        .await
        .expect("login runs");
    assert!(out.accepted());
    assert_eq!(out.shortcut.as_deref(), Some("#"));
    let got = finish(dev, peer).await;
    assert_eq!(got, "root\n", "the password step was skipped");
}

#[tokio::test]
async fn accept_in_a_callee_ends_the_callee_only() {
    let (mut dev, theirs) = scripted_device();
    dev.begin_test();
    let peer = spawn_peer(theirs, vec![("root\n", b"$ "), ("ls\n", b"files\n")], false);
    let out = dev.run_action("shell", &[]).await.expect("shell runs");
    assert!(out.accepted());
    assert_eq!(out.shortcut.as_deref(), Some("$"));
    let got = finish(dev, peer).await;
    assert_eq!(
        got, "root\nls\n",
        "the caller's steps went on after the callee's accept"
    );
    assert!(!got.contains(PASSWORD));
}

#[tokio::test]
async fn silence_times_out_within_the_step_timeout() {
    let (mut dev, theirs) = scripted_device();
    dev.begin_test();
    let peer = spawn_peer(theirs, vec![("hello\n", b"something else\n")], false);
    let start = Instant::now();
    let r = dev.run_action("slow", &[]).await;
    let took = start.elapsed();
    let e = link_error(r);
    assert!(e.is_device_silence(), "{e}");
    match source(&e) {
        LinkError::Timeout { waited, tail, .. } => {
            assert_eq!(*waited, Duration::from_millis(300));
            assert!(tail.contains("something else"), "{tail}");
        }
        other => panic!("not a timeout: {other}"),
    }
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert!(
        matches!(dev.liveness(), Liveness::Silent(_)),
        "{:?}",
        dev.liveness()
    );
    assert_eq!(dev.unreachable(), None);
    finish(dev, peer).await;
}

#[tokio::test]
async fn a_peer_that_closes_gives_closed() {
    let (mut dev, theirs) = scripted_device();
    dev.begin_test();
    // Answers nothing and hangs up once it got the line.
    let peer = spawn_peer(theirs, vec![("hello\n", b"")], true);
    let start = Instant::now();
    let r = dev.run_action("slow", &[]).await;
    let e = link_error(r);
    // Closed is noticed at once, not at the step's timeout. The device answered nothing of
    // the action, so the harness connects again and starts over (a session the device ended
    // before the action); here nothing listens at the board's address, so that open fails.
    assert!(
        start.elapsed() < Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    assert!(matches!(source(&e), LinkError::Open { .. }), "{e}");
    let evidence = dev.transcript().render(dev.redactor());
    assert!(evidence.contains("link closed"), "{evidence}");
    assert!(evidence.contains("starting the action over"), "{evidence}");
    assert!(
        matches!(dev.liveness(), Liveness::Closed(_)),
        "{:?}",
        dev.liveness()
    );
    assert!(
        dev.unreachable().is_some(),
        "the reconnect could not open the link"
    );
    finish(dev, peer).await;
}

#[tokio::test]
async fn a_flood_is_bounded_by_time_and_memory() {
    let (mut dev, mut theirs) = scripted_device();
    dev.begin_test();
    let peer = tokio::spawn(async move {
        let mut line = [0u8; 3];
        theirs.read_exact(&mut line).await.unwrap();
        let junk = vec![b'x'; 8192];
        let mut sent = 0usize;
        while theirs.write_all(&junk).await.is_ok() {
            sent += junk.len();
        }
        sent
    });
    let start = Instant::now();
    let r = dev.run_action("flood", &[]).await;
    let took = start.elapsed();
    let e = link_error(r);
    match source(&e) {
        LinkError::Timeout { tail, .. } => assert!(tail.len() <= 80, "{}", tail.len()),
        other => panic!("not a timeout: {other}"),
    }
    assert!(took < Duration::from_millis(2500), "{took:?}");
    let evidence = dev.transcript().render(dev.redactor());
    drop(dev);
    let sent = tokio::time::timeout(Duration::from_secs(5), peer)
        .await
        .expect("the flooder stops when the console closes")
        .unwrap();
    assert!(sent > 64 * 1024, "the flood was read: {sent} bytes");
    assert!(
        evidence.len() < 4 * TRANSCRIPT_CAP,
        "{} bytes of evidence for {sent} bytes of flood",
        evidence.len()
    );
}

#[tokio::test]
async fn calls_nest_and_captures_flow_to_callers() {
    let (mut dev, theirs) = scripted_device();
    dev.begin_test();
    let peer = spawn_peer(
        theirs,
        vec![("a\n", b"A1\n"), ("b1\n", b"B2\n"), ("c2\n", b"C3\n")],
        false,
    );
    let out = dev.run_action("outer", &[]).await.expect("outer runs");
    assert!(out.accepted());
    for (k, v) in [("a", "1"), ("b", "2"), ("c", "3")] {
        assert_eq!(out.captures.get(k).map(String::as_str), Some(v), "{k}");
    }
    let got = finish(dev, peer).await;
    assert_eq!(got, "a\nb1\nc2\n");
}

#[tokio::test]
async fn calls_nest_at_most_eight_deep() {
    let (mut dev, theirs) = scripted_device();
    dev.begin_test();
    let peer = spawn_peer(theirs, vec![], false);
    match dev.run_action("d0", &[]).await {
        Err(ActionError::TooDeep { action }) => assert_eq!(action, "d9"),
        other => panic!("not TooDeep: {other:?}"),
    }
    let got = finish(dev, peer).await;
    assert_eq!(got, "", "nothing was sent");
}

#[tokio::test]
async fn cleanup_runs_after_a_refusal() {
    let (mut dev, theirs) = scripted_device();
    dev.begin_test();
    let peer = spawn_peer(
        theirs,
        vec![("update\n", b"denied\n"), ("exit\n", b"bye\n")],
        false,
    );
    let out = dev.run_action("update", &[]).await.expect("update runs");
    assert_eq!(out.rejected.as_deref(), Some("denied"));
    assert!(out.captures.is_empty());
    let got = finish(dev, peer).await;
    assert_eq!(got, "update\nexit\n");
}

#[tokio::test]
async fn cleanup_runs_after_success() {
    let (mut dev, theirs) = scripted_device();
    dev.begin_test();
    let peer = spawn_peer(
        theirs,
        vec![("update\n", b"ok\n"), ("exit\n", b"bye\n")],
        false,
    );
    let out = dev.run_action("update", &[]).await.expect("update runs");
    assert!(out.accepted());
    let evidence = dev.transcript().render(dev.redactor());
    assert!(evidence.contains("bye"), "{evidence}");
    let got = finish(dev, peer).await;
    assert_eq!(got, "update\nexit\n");
}

#[tokio::test]
async fn chunks_loop_over_data_with_offsets() {
    let (mut dev, theirs) = scripted_device();
    dev.begin_test();
    let peer = spawn_peer(
        theirs,
        vec![
            ("w 0 00010203\n", b"ok\n"),
            ("w 4 04050607\n", b"ok\n"),
            ("w 8 08\n", b"ok\n"),
            ("done 9\n", b"crc=abc\n"),
        ],
        false,
    );
    let mut data = Data::new();
    data.insert("image".into(), Arc::new((0u8..9).collect()));
    let out = dev
        .run_action_with_data("push", &[], &data)
        .await
        .expect("push runs");
    assert!(out.accepted());
    assert_eq!(out.captures.get("crc").map(String::as_str), Some("abc"));
    let got = finish(dev, peer).await;
    assert_eq!(got, "w 0 00010203\nw 4 04050607\nw 8 08\ndone 9\n");
}

#[tokio::test]
async fn a_refused_chunk_ends_the_loop() {
    let (mut dev, theirs) = scripted_device();
    dev.begin_test();
    let peer = spawn_peer(
        theirs,
        vec![("w 0 00010203\n", b"ok\n"), ("w 4 04050607\n", b"bad\n")],
        false,
    );
    let mut data = Data::new();
    data.insert("image".into(), Arc::new((0u8..9).collect()));
    let out = dev
        .run_action_with_data("push", &[], &data)
        .await
        .expect("push runs");
    assert_eq!(out.rejected.as_deref(), Some("bad"));
    let got = finish(dev, peer).await;
    assert_eq!(got, "w 0 00010203\nw 4 04050607\n");
}

#[tokio::test]
async fn missing_parameters_and_actions_are_harness_errors() {
    let (mut dev, theirs) = scripted_device();
    dev.begin_test();
    let peer = spawn_peer(theirs, vec![], false);
    assert!(matches!(
        dev.run_action("nope", &[]).await,
        Err(ActionError::NotDefined(_))
    ));
    assert!(matches!(
        dev.run_action("login", &[("user", SecretValue::plain("root".to_string()))])
            .await,
        Err(ActionError::MissingParam { .. })
    ));
    assert_eq!(dev.liveness(), &Liveness::NoExchange);
    let got = finish(dev, peer).await;
    assert_eq!(got, "");
}

#[tokio::test]
async fn the_unit_password_reaches_recipes_as_a_secret() {
    let (mut dev, theirs) = scripted_device();
    dev.begin_test();
    let peer = spawn_peer(
        theirs,
        vec![
            ("root\n", b"Password: "),
            ("Scr1pted#Pass-7\n", b"$ "),
            ("ls\n", b"files\n"),
        ],
        false,
    );
    let out = dev.run_action("shell", &[]).await.expect("shell runs");
    assert!(out.accepted());
    assert_eq!(out.shortcut, None);
    let evidence = dev.transcript().render(dev.redactor());
    assert!(!evidence.contains(PASSWORD), "{evidence}");
    let got = finish(dev, peer).await;
    assert_eq!(got, format!("root\n{PASSWORD}\nls\n"));
}
