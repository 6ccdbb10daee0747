//! The Renode monitor client against faithful transcripts of Renode's monitor socket, and the
//! script and command line written for Renode.
//!
//! Each transcript in `tests/data/renode/*.txt` is replayed by a loopback TCP server, byte by
//! byte (Renode's socket writer sends the shell's output one byte at a time), and checks
//! byte for byte what the client sends. The transcripts were derived from Renode's sources;
//! every line names the source file it comes from. Format, one directive per line:
//!
//! - `# ...` a comment;
//! - `< BYTES` the server sends BYTES;
//! - `> BYTES` the server reads exactly that many bytes and they must be BYTES;
//! - `= close` the server closes the connection;
//! - `= hold` the server sends nothing more and waits until the client goes away;
//! - `= flood N` the server sends N bytes of log-like text without a prompt.
//!
//! In BYTES, `\e` is ESC, `\r`, `\n`, `\s` (space), `\\` and `\xHH` are escapes; everything
//! else is literal.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hilsec_core::emulator::renode::{
    command_line, monitor_path, script, BinaryLoad, Monitor, MonitorError, Platform, RenodeSetup,
    SetupError, DEFAULT_UART, STM32F4_DISCOVERY,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

const T: Duration = Duration::from_secs(5);

#[derive(Debug)]
enum Step {
    Send(Vec<u8>),
    Expect(Vec<u8>),
    Close,
    Hold,
    Flood(usize),
}

fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let c = *b.get(i + 1).expect("dangling backslash in transcript");
        i += 2;
        match c {
            b'e' => out.push(0x1b),
            b'r' => out.push(b'\r'),
            b'n' => out.push(b'\n'),
            b's' => out.push(b' '),
            b'\\' => out.push(b'\\'),
            b'x' => {
                let hex = std::str::from_utf8(&b[i..i + 2]).expect("hex");
                out.push(u8::from_str_radix(hex, 16).expect("hex escape"));
                i += 2;
            }
            other => panic!("unknown escape \\{} in transcript", other as char),
        }
    }
    out
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/renode")
}

fn transcript(name: &str) -> Vec<Step> {
    let path = data_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut steps = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("< ") {
            steps.push(Step::Send(unescape(rest)));
        } else if let Some(rest) = line.strip_prefix("> ") {
            steps.push(Step::Expect(unescape(rest)));
        } else if line == "= close" {
            steps.push(Step::Close);
        } else if line == "= hold" {
            steps.push(Step::Hold);
        } else if let Some(n) = line.strip_prefix("= flood ") {
            steps.push(Step::Flood(n.parse().expect("flood size")));
        } else {
            panic!("{name}: cannot read transcript line {line:?}");
        }
    }
    steps
}

fn show(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

/// A loopback server replaying a transcript to one client; its result says whether the
/// client sent exactly what the transcript expects.
async fn replay(name: &str) -> (SocketAddr, JoinHandle<Result<(), String>>) {
    let steps = transcript(name);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let name = name.to_string();
    let task = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.map_err(|e| e.to_string())?;
        sock.set_nodelay(true).map_err(|e| e.to_string())?;
        for step in steps {
            match step {
                Step::Send(bytes) => {
                    // One byte per write, as Renode's SocketServerProvider writer thread does.
                    for b in bytes {
                        if sock.write_all(&[b]).await.is_err() {
                            return Err(format!(
                                "{name}: client went away while the server was sending"
                            ));
                        }
                    }
                }
                Step::Expect(want) => {
                    let mut got = vec![0u8; want.len()];
                    match tokio::time::timeout(T, sock.read_exact(&mut got)).await {
                        Ok(Ok(_)) if got == want => {}
                        Ok(Ok(_)) => {
                            return Err(format!(
                                "{name}: client sent {} where the transcript has {}",
                                show(&got),
                                show(&want)
                            ))
                        }
                        Ok(Err(e)) => return Err(format!("{name}: expected {}: {e}", show(&want))),
                        Err(_) => return Err(format!("{name}: client never sent {}", show(&want))),
                    }
                }
                Step::Close => {
                    let _ = sock.shutdown().await;
                    return Ok(());
                }
                Step::Hold => {
                    let mut buf = [0u8; 256];
                    loop {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return Ok(()),
                            Ok(_) => {}
                        }
                    }
                }
                Step::Flood(n) => {
                    let line = b"14:02:11.1234 [DEBUG] cpu: noisy log line without a prompt\r\n";
                    let mut sent = 0;
                    while sent < n {
                        if sock.write_all(line).await.is_err() {
                            return Ok(()); // the client gave up: that is what is tested
                        }
                        sent += line.len();
                    }
                }
            }
        }
        Ok(())
    });
    (addr, task)
}

async fn server_ok(task: JoinHandle<Result<(), String>>) {
    match tokio::time::timeout(T, task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => panic!("transcript server: {e}"),
        Ok(Err(e)) => panic!("transcript server panicked: {e}"),
        Err(_) => panic!("transcript server did not finish"),
    }
}

#[tokio::test]
async fn banner_prompt_commands_errors_and_quit() {
    let (addr, server) = replay("session.txt").await;
    let mut m = Monitor::connect(addr, T).await.expect("connect");
    assert_eq!(m.prompt(), Some("(monitor) "));
    let greeting = m.take_unsolicited();
    assert!(
        greeting.contains("Renode, version 1.16.1"),
        "greeting without banner: {greeting:?}"
    );
    assert!(
        !greeting.contains('\u{1b}') && !greeting.contains('\u{ff}'),
        "{greeting:?}"
    );

    let out = m
        .command("mach create \"hilsec-1\"", T)
        .await
        .expect("mach create");
    assert_eq!(out, "");
    assert_eq!(m.prompt(), Some("(hilsec-1) "));

    m.reset(T).await.expect("machine Reset");

    match m.command("nosuch", T).await {
        Err(MonitorError::Command {
            command, message, ..
        }) => {
            assert_eq!(command, "nosuch");
            assert_eq!(message, "No such command or device: nosuch");
        }
        other => panic!("expected a command error, got {other:?}"),
    }

    match m.command("machine StartGdbServer 3333", T).await {
        Err(e @ MonitorError::Command { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("There was an error executing command"),
                "{text}"
            );
            assert!(
                text.contains("Cannot start GDB server with no CPUs"),
                "{text}"
            );
        }
        other => panic!("expected a command error, got {other:?}"),
    }

    // The session goes on after errors.
    m.pause(T).await.expect("pause");
    let out = m.command("start", T).await.expect("start");
    assert_eq!(out, "Starting emulation...");

    let t0 = Instant::now();
    m.quit(T).await.expect("quit closes the socket");
    assert!(t0.elapsed() < Duration::from_secs(2));
    server_ok(server).await;
}

#[tokio::test]
async fn startup_script_output_before_the_first_command_is_skipped() {
    let (addr, server) = replay("startup_script.txt").await;
    let mut m = Monitor::connect(addr, T).await.expect("connect");
    // The first command's answer comes after the echo of the injected `include` and the
    // script's output; only its own output is returned.
    let out = m.command("machine Reset", T).await.expect("machine Reset");
    assert_eq!(out, "");
    assert_eq!(m.prompt(), Some("(hilsec-1) "));
    let seen = m.take_unsolicited();
    assert!(
        seen.contains("include @/tmp/hilsec\\ unit/renode.resc"),
        "{seen:?}"
    );
    assert!(seen.contains("Starting emulation..."), "{seen:?}");
    m.quit(T).await.expect("quit");
    server_ok(server).await;
}

#[tokio::test]
async fn a_second_connection_asks_for_the_prompt_with_an_empty_line() {
    let (addr, server) = replay("reconnect.txt").await;
    let t0 = Instant::now();
    let mut m = Monitor::connect(addr, T).await.expect("connect");
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t0.elapsed()
    );
    assert_eq!(m.prompt(), Some("(hilsec-1) "));
    m.reset(T).await.expect("machine Reset");
    drop(m);
    server_ok(server).await;
}

#[tokio::test]
async fn plain_mode_errors_are_recognised_by_their_text() {
    let (addr, server) = replay("plain_session.txt").await;
    let mut m = Monitor::connect(addr, T).await.expect("connect");
    assert_eq!(m.prompt(), Some("(monitor) "));
    m.command("mach create \"hilsec-1\"", T)
        .await
        .expect("mach create");
    match m.command("nosuch", T).await {
        Err(MonitorError::Command { message, .. }) => {
            assert_eq!(message, "No such command or device: nosuch")
        }
        other => panic!("expected a command error, got {other:?}"),
    }
    m.reset(T).await.expect("machine Reset");
    drop(m);
    server_ok(server).await;
}

#[tokio::test]
async fn a_silent_server_times_out_quickly_and_says_so() {
    let (addr, server) = replay("silent.txt").await;
    let t0 = Instant::now();
    let err = match Monitor::connect(addr, Duration::from_millis(300)).await {
        Err(e) => e,
        Ok(_) => panic!("connect to a silent server succeeded"),
    };
    assert!(
        t0.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t0.elapsed()
    );
    match &err {
        MonitorError::Timeout {
            command, received, ..
        } => {
            assert_eq!(command, "<connect>");
            assert_eq!(received, "");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(err.to_string().contains("<connect>"), "{err}");
    server_ok(server).await;
}

#[tokio::test]
async fn a_flood_without_prompt_is_bounded() {
    let (addr, server) = replay("flood.txt").await;
    let mut m = Monitor::connect(addr, T).await.expect("connect");
    let t0 = Instant::now();
    match m.command("machine Reset", Duration::from_secs(10)).await {
        Err(MonitorError::Overflow {
            command,
            limit,
            received,
        }) => {
            assert_eq!(command, "machine Reset");
            assert_eq!(limit, 64 * 1024);
            assert!(received.contains("noisy log line"), "{received:?}");
            assert!(received.len() < 1000);
        }
        other => panic!("expected an overflow, got {other:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(5));
    drop(m);
    server_ok(server).await;
}

#[tokio::test]
async fn a_connection_closed_mid_command_is_reported_with_what_came() {
    let (addr, server) = replay("closed_mid_command.txt").await;
    let mut m = Monitor::connect(addr, T).await.expect("connect");
    match m.command("machine Reset", T).await {
        Err(e @ MonitorError::Closed { .. }) => {
            let text = e.to_string();
            assert!(text.contains("machine Reset"), "{text}");
            if let MonitorError::Closed { received, .. } = e {
                assert_eq!(received, "machine Re");
            }
        }
        other => panic!("expected closed, got {other:?}"),
    }
    server_ok(server).await;
}

#[tokio::test]
async fn nothing_listening_is_a_connect_error_within_the_timeout() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = free.local_addr().expect("addr");
    drop(free);
    let t0 = Instant::now();
    match Monitor::connect(addr, Duration::from_millis(500)).await {
        Err(MonitorError::Connect { addr: a, .. }) => assert_eq!(a, addr),
        Err(other) => panic!("expected a connect error, got {other:?}"),
        Ok(_) => panic!("connected to nothing"),
    }
    assert!(t0.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_telnet_escaped_ff_and_split_sequences_are_decoded() {
    // IAC IAC is a data byte 0xFF (SocketServerProvider.ProcessWriteTelnet doubles it); a
    // subnegotiation is dropped. Sent byte by byte, so every sequence is split.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        let bytes: &[u8] =
            b"\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0\x1b[0mx\xff\xffy\n\r\n\r\x1b[91m(monitor) \x1b[0m";
        for b in bytes {
            s.write_all(&[*b]).await.expect("write");
        }
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf).await;
    });
    let mut m = Monitor::connect(addr, T).await.expect("connect");
    assert_eq!(m.prompt(), Some("(monitor) "));
    let g = m.take_unsolicited();
    assert_eq!(g, "x\u{fffd}y\n\n", "0xFF alone is not UTF-8: {g:?}");
    drop(m);
    let _ = server.await;
}

#[tokio::test]
async fn commands_that_would_break_the_line_discipline_are_refused_before_sending() {
    let (addr, server) = replay("session.txt").await;
    let mut m = Monitor::connect(addr, T).await.expect("connect");
    for bad in ["machine Reset\nquit", "mach\tcreate", "", "quit"] {
        match m.command(bad, T).await {
            Err(MonitorError::InvalidCommand { .. }) => {}
            other => panic!("{bad:?}: expected InvalidCommand, got {other:?}"),
        }
    }
    drop(m);
    // The server saw nothing from the client, and then the client going away.
    let r = tokio::time::timeout(T, server)
        .await
        .expect("server ends")
        .expect("no panic");
    assert!(
        r.is_err(),
        "the server should have been left waiting for `mach create`"
    );
}

// ---- script() and command_line() ----

fn setup() -> RenodeSetup {
    let mut s = RenodeSetup::new(
        "hilsec-1",
        Platform::parse("@platforms/boards/stm32f4_discovery-kit.repl"),
        "/opt/fw/secure.elf",
        41001,
        41002,
    );
    s.binaries.push(BinaryLoad {
        path: PathBuf::from("/tmp/hilsec/unit 1.bin"),
        address: 0x2001_f000,
    });
    s.gdb_port = Some(41003);
    s
}

#[test]
fn script_builds_the_machine_wires_the_uart_and_starts() {
    let s = script(&setup()).expect("script");
    let want = "\
# Written by hilsec for unit hilsec-1.
mach create \"hilsec-1\"
machine LoadPlatformDescription @platforms/boards/stm32f4_discovery-kit.repl
macro reset
\"\"\"
    sysbus LoadELF @/opt/fw/secure.elf
    sysbus LoadBinary @/tmp/hilsec/unit\\ 1.bin 0x2001f000
\"\"\"
runMacro $reset
emulation CreateServerSocketTerminal 41001 \"uart\" false
connector Connect sysbus.usart1 uart
machine StartGdbServer 41003 false
start
";
    assert_eq!(s, want);
}

#[test]
fn script_without_reload_or_gdb_loads_once() {
    let mut st = setup();
    st.reload_on_reset = false;
    st.gdb_port = None;
    st.platform = Platform::parse("/boards/my board.repl");
    let s = script(&st).expect("script");
    assert!(
        s.contains("machine LoadPlatformDescription @/boards/my\\ board.repl\n"),
        "{s}"
    );
    assert!(s.contains("\nsysbus LoadELF @/opt/fw/secure.elf\nsysbus LoadBinary @/tmp/hilsec/unit\\ 1.bin 0x2001f000\n"), "{s}");
    assert!(
        !s.contains("macro reset") && !s.contains("StartGdbServer"),
        "{s}"
    );
    assert!(
        s.ends_with("connector Connect sysbus.usart1 uart\nstart\n"),
        "{s}"
    );
}

#[test]
fn the_defaults_are_the_stm32f4_discovery_and_its_usart1() {
    assert_eq!(
        STM32F4_DISCOVERY,
        "platforms/boards/stm32f4_discovery-kit.repl"
    );
    assert_eq!(DEFAULT_UART, "sysbus.usart1");
    assert_eq!(
        Platform::parse("@platforms/boards/stm32f4_discovery-kit.repl"),
        Platform::Builtin(STM32F4_DISCOVERY.into())
    );
    assert_eq!(Platform::parse("x.repl"), Platform::File("x.repl".into()));
}

#[test]
fn unwritable_names_and_paths_are_errors() {
    let mut st = setup();
    st.machine = "bad name".into();
    assert!(matches!(script(&st), Err(SetupError::MachineName(_))));
    let mut st = setup();
    st.machine = "q\"uote".into();
    assert!(matches!(script(&st), Err(SetupError::MachineName(_))));
    let mut st = setup();
    st.uart = "sysbus.usart1; quit".into();
    assert!(matches!(script(&st), Err(SetupError::Peripheral(_))));
    let mut st = setup();
    st.firmware = "/tmp/a;quit.elf".into();
    assert!(matches!(script(&st), Err(SetupError::Path { .. })));
    let mut st = setup();
    st.binaries[0].path = "/tmp/new\nline".into();
    assert!(matches!(script(&st), Err(SetupError::Path { .. })));
    assert!(monitor_path(Path::new("/a b/c")).is_ok());
}

#[test]
fn command_line_is_headless_with_the_monitor_on_its_port() {
    let st = setup();
    let args = command_line(&st, Path::new("/tmp/hilsec run/unit.resc")).expect("args");
    assert_eq!(
        args,
        vec![
            "--disable-xwt",
            "--port",
            "41002",
            "-e",
            "include @/tmp/hilsec\\ run/unit.resc"
        ]
    );
    let mut st = setup();
    st.hide_log = true;
    let args = command_line(&st, Path::new("/s.resc")).expect("args");
    assert!(args.contains(&"--hide-log".to_string()));
}
