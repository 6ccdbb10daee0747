//! The GDB debug port (`iface::gdb`) against a real QEMU gdbstub, and against scripted stubs for
//! what QEMU cannot be made to do (corrupt packets, a stub that never answers, one that closes
//! mid-exchange, oversized replies).
//!
//! QEMU runs `-M netduinoplus2` (Cortex-M4) without `-kernel`: a 12-byte image given with
//! `-device loader` puts a vector table (SP 0x20001000, reset 0x08000009) and the loop
//! `adds r0, #1; b .-2` at 0x08000000, so the core runs and r0 counts while it runs. Without
//! an image the reset vector is 0 and the core locks up on the first instruction. If
//! `qemu-system-arm` is not on PATH the QEMU test says loudly that it was skipped and passes.

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hilsec_core::iface::debug::{register, DebugAccess, MAX_ACCESS};
use hilsec_core::iface::gdb::{encode_packet, Decoder, Frame, GdbLink, GdbOptions};
use hilsec_core::iface::LinkError;
use hilsec_core::transcript::Transcript;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use common::qemu::{qemu_available, skipped, Qemu};

const RAM_PATTERN_AT: u64 = 0x2000_0100;

/// The test image: vector table and a counting loop.
fn loop_image() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0x2000_1000u32.to_le_bytes()); // initial SP
    v.extend_from_slice(&0x0800_0009u32.to_le_bytes()); // reset vector (Thumb)
    v.extend_from_slice(&0x3001u16.to_le_bytes()); // adds r0, #1
    v.extend_from_slice(&0xe7fdu16.to_le_bytes()); // b .-2
    v
}

/// QEMU running the loop image, halted (`-S`), its gdbstub listening.
async fn start_ready() -> Qemu {
    Qemu::start(|dir| {
        let image = dir.join("loop.bin");
        std::fs::write(&image, loop_image()).expect("write image");
        vec![
            "-serial".into(),
            "null".into(),
            "-S".into(),
            "-device".into(),
            format!("loader,file={},addr=0x08000000", image.display()),
        ]
    })
    .await
}

async fn connect(qemu: &Qemu, options: GdbOptions, t: Transcript) -> GdbLink {
    GdbLink::connect("gdb", &qemu.address(), Duration::from_secs(3), t, options)
        .await
        .unwrap_or_else(|e| panic!("cannot attach to QEMU's gdbstub: {e}"))
}

async fn r0(link: &mut GdbLink) -> u64 {
    let regs = link.read_registers().await.expect("registers");
    register(&regs, "r0").expect("r0")
}

fn render(t: &Transcript) -> String {
    t.render(&hilsec_core::secret::Redactor::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_gdbstub() {
    if !qemu_available() {
        skipped(
            "gdb_qemu::qemu_gdbstub: qemu-system-arm is not on PATH; \
             install QEMU (Debian: qemu-system-arm) to run the GDB debug-port test",
        );
        return;
    }
    let mut qemu = start_ready().await;
    let t = Transcript::new();
    let options = GdbOptions {
        reset_command: Some("system_reset".into()),
        running: true,
    };
    let mut link = connect(&qemu, options.clone(), t.clone()).await;
    assert!(!link.is_halted(), "attach must leave the target running");
    assert!(
        link.packet_size() >= 1024,
        "QEMU offers PacketSize=1000 (hex)"
    );

    // Memory on a running target: the image, as loaded at 0x08000000 (aliased at 0).
    let image = loop_image();
    assert_eq!(link.read_memory(0x0800_0000, 12).await.unwrap(), image);
    assert_eq!(link.read_memory(0, 12).await.unwrap(), image);
    assert!(!link.is_halted(), "a read restores the run state");

    // The core keeps running between accesses: r0 counts.
    let a = r0(&mut link).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let b = r0(&mut link).await;
    assert_ne!(a, b, "r0 must count while the target runs");

    // Registers: the Cortex-M names, decoded from QEMU's 168-byte legacy layout.
    let regs = link.read_registers().await.unwrap();
    let pc = register(&regs, "pc").expect("pc");
    assert!((0x0800_0008..=0x0800_000a).contains(&pc), "pc {pc:#x}");
    assert_eq!(register(&regs, "sp"), Some(0x2000_1000));
    assert_eq!(register(&regs, "lr"), Some(0xffff_ffff));
    let xpsr = register(&regs, "xpsr").expect("xpsr");
    assert_ne!(xpsr & (1 << 24), 0, "Thumb bit set in xpsr {xpsr:#x}");

    // Write a pattern to RAM and read it back, short and across several packets.
    let pattern: Vec<u8> = (0..64u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
    link.write_memory(RAM_PATTERN_AT, &pattern).await.unwrap();
    assert_eq!(
        link.read_memory(RAM_PATTERN_AT, pattern.len())
            .await
            .unwrap(),
        pattern
    );
    let big: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + i / 256) as u8).collect();
    link.write_memory(0x2000_1000, &big).await.unwrap();
    assert_eq!(link.read_memory(0x2000_1000, big.len()).await.unwrap(), big);
    assert_eq!(
        link.read_memory(0x2000_0000, MAX_ACCESS)
            .await
            .unwrap()
            .len(),
        MAX_ACCESS
    );

    // Bounds and refusals.
    let e = link
        .read_memory(0x2000_0000, MAX_ACCESS + 1)
        .await
        .unwrap_err();
    assert!(
        matches!(e, LinkError::Protocol(ref m) if m.contains("at most 65536")),
        "{e}"
    );
    let e = link.read_memory(0x6000_0000, 4).await.unwrap_err();
    match &e {
        LinkError::Refused(m) => {
            assert!(m.contains("0x60000000"), "{m}");
            assert!(m.contains(&qemu.address()), "{m}");
            assert!(m.contains("E14"), "{m}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(!link.is_closed(), "a refused read leaves the link usable");
    assert!(
        !link.is_halted(),
        "a refused read on a running target resumes it"
    );

    // Halt and resume.
    link.halt().await.unwrap();
    assert!(link.is_halted());
    let a = r0(&mut link).await;
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(r0(&mut link).await, a, "r0 must not move while halted");
    link.halt().await.unwrap(); // halting a halted target is fine
    link.resume().await.unwrap();
    assert!(!link.is_halted());
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_ne!(r0(&mut link).await, a, "r0 counts again after resume");

    // Reset (QEMU: `monitor system_reset`): halted first so the reset state can be seen.
    link.halt().await.unwrap();
    link.reset().await.unwrap();
    assert!(link.is_halted(), "reset keeps the caller's run state");
    let regs = link.read_registers().await.unwrap();
    assert_eq!(register(&regs, "r0"), Some(0), "{regs:?}");
    assert_eq!(register(&regs, "pc"), Some(0x0800_0008), "{regs:?}");
    // The RAM pattern survives a system reset (QEMU does not clear RAM).
    assert_eq!(
        link.read_memory(RAM_PATTERN_AT, pattern.len())
            .await
            .unwrap(),
        pattern
    );
    // Reset on a running target: halts, resets, resumes.
    link.resume().await.unwrap();
    link.reset().await.unwrap();
    assert!(!link.is_halted());

    // close() detaches: the target runs on without the harness.
    link.halt().await.unwrap();
    let before = r0(&mut link).await;
    link.close().await.unwrap();
    assert!(link.is_closed());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let halted = GdbOptions {
        reset_command: None,
        running: false,
    };
    let mut link = connect(&qemu, halted.clone(), t.clone()).await;
    assert!(link.is_halted(), "running = false leaves the target halted");
    let after = r0(&mut link).await;
    assert_ne!(before, after, "the target ran after close()");
    // reset without a command is refused.
    let e = link.reset().await.unwrap_err();
    assert!(
        matches!(e, LinkError::Protocol(ref m) if m.contains("does not support reset")),
        "{e}"
    );

    // Dropping the link detaches too (best effort, halted target).
    drop(link);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut link = connect(&qemu, halted.clone(), t.clone()).await;
    assert_ne!(r0(&mut link).await, after, "the target ran after drop");
    // ... and a dropped link whose target was running (0x03 then D).
    link.resume().await.unwrap();
    drop(link);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut link = connect(&qemu, halted, t.clone()).await;
    let a = r0(&mut link).await;
    drop(link);
    tokio::time::sleep(Duration::from_millis(50)).await;

    // An unknown monitor command is an error even though QEMU answers OK.
    let mut link = connect(
        &qemu,
        GdbOptions {
            reset_command: Some("no_such_command".into()),
            running: true,
        },
        t.clone(),
    )
    .await;
    assert_ne!(r0(&mut link).await, a);
    let e = link.reset().await.unwrap_err();
    assert!(
        matches!(e, LinkError::Protocol(ref m) if m.contains("rejected")),
        "{e}"
    );

    // The stub going away mid-session: Closed, not a hang.
    qemu.child.start_kill().expect("kill qemu");
    let _ = qemu.child.wait().await;
    let started = Instant::now();
    let e = link.read_memory(RAM_PATTERN_AT, 4).await.unwrap_err();
    assert!(matches!(e, LinkError::Closed(_)), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(link.is_closed());
    let e = link.read_memory(RAM_PATTERN_AT, 4).await.unwrap_err();
    assert!(matches!(e, LinkError::Closed(_)), "{e:?}");

    let text = render(&t);
    for needle in [
        "debug gdb: attached to 127.0.0.1:",
        "debug gdb: read 12 bytes at 0x08000000",
        "00100020 09000008 0130fde7",
        "debug gdb: wrote 64 bytes at 0x20000100",
        "debug gdb: halted (T02)",
        "debug gdb: resumed",
        "debug gdb: reset (monitor system_reset)",
        "debug gdb: registers: r0=",
        "ms for the access)",
        "E14",
        "detached from",
    ] {
        assert!(
            text.contains(needle),
            "transcript lacks {needle:?}:\n{text}"
        );
    }
    if std::env::var_os("GDB_QEMU_SHOW").is_some() {
        eprintln!("{text}");
    }
}

// ---------------------------------------------------------------------------------------------
// Scripted stubs.

/// What a scripted stub does on one packet.
#[derive(Debug, Clone)]
enum Act {
    /// Bytes as they are.
    Raw(Vec<u8>),
    /// `+` then the framed packet.
    Reply(&'static str),
    /// `+` then the packet with a wrong checksum; a `-` from the client gets the good one.
    Corrupt(&'static str),
    /// `-`: asks for the packet again.
    Nak,
    /// Close the connection.
    Close,
    /// Say nothing.
    Silent,
}

/// A packet framed without escaping, so run-length markers go out as they are.
fn frame_unescaped(body: &[u8]) -> Vec<u8> {
    let sum = body.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    let mut v = b"$".to_vec();
    v.extend_from_slice(body);
    v.extend_from_slice(format!("#{sum:02x}").as_bytes());
    v
}

type Script = Box<dyn FnMut(&[u8]) -> Vec<Act> + Send>;

/// Answers the handshake (`PacketSize=100`, no no-ack mode; halted `S05`) and `D`; every other
/// packet goes to `script`. Returns the address and the packets the stub received.
async fn scripted_stub(mut script: Script) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let mut dec = Decoder::new(1 << 20);
        let mut last = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            dec.push(&buf[..n]);
            while let Ok(Some(f)) = dec.next_frame() {
                let acts = match f {
                    Frame::Ack => continue,
                    Frame::Nak => vec![Act::Raw(last.clone())],
                    Frame::Packet { raw, checksum_ok } => {
                        assert!(checksum_ok, "client sent a bad checksum");
                        let body = String::from_utf8_lossy(&raw).into_owned();
                        log.lock().unwrap().push(body.clone());
                        match body.as_str() {
                            b if b.starts_with("qSupported") => vec![Act::Reply("PacketSize=100")],
                            "?" => vec![Act::Reply("S05")],
                            "D" => vec![Act::Reply("OK")],
                            _ => script(&raw),
                        }
                    }
                };
                for act in acts {
                    match act {
                        Act::Raw(b) => {
                            let _ = sock.write_all(&b).await;
                        }
                        Act::Reply(body) => {
                            last = encode_packet(body.as_bytes());
                            let mut out = b"+".to_vec();
                            out.extend_from_slice(&last);
                            let _ = sock.write_all(&out).await;
                        }
                        Act::Corrupt(body) => {
                            last = encode_packet(body.as_bytes());
                            let mut bad = last.clone();
                            let n = bad.len();
                            bad[n - 1] = if bad[n - 1] == b'0' { b'1' } else { b'0' };
                            let mut out = b"+".to_vec();
                            out.extend_from_slice(&bad);
                            let _ = sock.write_all(&out).await;
                        }
                        Act::Nak => {
                            let _ = sock.write_all(b"-").await;
                        }
                        Act::Close => return,
                        Act::Silent => {}
                    }
                }
            }
        }
    });
    (addr, seen)
}

fn halted_options() -> GdbOptions {
    GdbOptions {
        reset_command: None,
        running: false,
    }
}

async fn connect_to(addr: &str, t: &Transcript) -> GdbLink {
    GdbLink::connect(
        "gdb",
        addr,
        Duration::from_millis(500),
        t.clone(),
        halted_options(),
    )
    .await
    .expect("connect to the scripted stub")
}

#[tokio::test]
async fn silent_stub_times_out_quickly() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let holder = tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
        drop(sock);
    });
    let started = Instant::now();
    let e = GdbLink::connect(
        "gdb",
        &addr,
        Duration::from_millis(300),
        Transcript::new(),
        GdbOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    match &e {
        LinkError::Open { endpoint, detail } => {
            assert_eq!(endpoint, &addr);
            assert!(
                detail.contains("qSupported") && detail.contains("300ms"),
                "{detail}"
            );
        }
        other => panic!("expected Open (the handshake timed out), got {other:?}"),
    }
    holder.abort();
}

#[tokio::test]
async fn stub_silent_mid_session_gives_timeout() {
    let (addr, _) = scripted_stub(Box::new(|_| vec![Act::Silent])).await;
    let mut link = connect_to(&addr, &Transcript::new()).await;
    let started = Instant::now();
    let e = link.read_memory(0x2000_0000, 4).await.unwrap_err();
    assert!(matches!(e, LinkError::Timeout { .. }), "{e:?}");
    assert!(e.to_string().contains("m20000000,4") || e.to_string().contains("0x20000000"));
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(link.is_closed(), "a link that timed out is out of step");
}

#[tokio::test]
async fn stub_closing_mid_exchange_gives_closed() {
    let (addr, _) = scripted_stub(Box::new(|_| vec![Act::Raw(b"+$00".to_vec()), Act::Close])).await;
    let mut link = connect_to(&addr, &Transcript::new()).await;
    let started = Instant::now();
    let e = link.read_memory(0x2000_0000, 4).await.unwrap_err();
    assert!(matches!(e, LinkError::Closed(_)), "{e:?}");
    assert!(started.elapsed() < Duration::from_millis(400));
    assert!(link.is_closed());
}

#[tokio::test]
async fn error_replies_name_the_address() {
    let (addr, _) = scripted_stub(Box::new(|p| {
        if p.starts_with(b"m2") {
            vec![Act::Reply("E14")]
        } else {
            vec![Act::Reply("01020304")]
        }
    }))
    .await;
    let t = Transcript::new();
    let mut link = connect_to(&addr, &t).await;
    let e = link.read_memory(0x2000_0000, 4).await.unwrap_err();
    match &e {
        LinkError::Refused(m) => {
            assert!(
                m.contains("0x20000000") && m.contains("E14") && m.contains(&addr),
                "{m}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(link.read_memory(0x1000, 4).await.unwrap(), [1, 2, 3, 4]);
    let text = render(&t);
    assert!(
        text.contains("read 4 bytes at 0x20000000: failed:"),
        "{text}"
    );
    assert!(
        text.contains("read 4 bytes at 0x00001000: 01020304"),
        "{text}"
    );
}

#[tokio::test]
async fn retransmits_rle_console_and_chunking() {
    let mut naks = 0;
    let (addr, seen) = scripted_stub(Box::new(move |p| {
        let p = String::from_utf8_lossy(p).into_owned();
        if p == "m3000,4" {
            // Asks once for the request again, then answers with run-length encoding.
            naks += 1;
            return if naks == 1 {
                vec![Act::Nak]
            } else {
                vec![
                    Act::Raw(b"+".to_vec()),
                    Act::Raw(frame_unescaped(b"ab0*\"")),
                ]
            };
        }
        if p == "m4000,2" {
            // A reply with a bad checksum: the client must answer `-` and get it again.
            return vec![Act::Corrupt("beef")];
        }
        if p == "g" {
            // Console output first, then OpenOCD's Cortex-M layout (r0-r15, xpsr).
            let mut regs = String::new();
            for i in 0..16u32 {
                regs.push_str(&format!("{:08x}", (0x1000 + i).swap_bytes()));
            }
            regs.push_str("00000001");
            return vec![
                Act::Raw(b"+".to_vec()),
                Act::Raw(encode_packet(b"O68656c6c6f0a")),
                Act::Raw(encode_packet(regs.as_bytes())),
            ];
        }
        if let Some(rest) = p.strip_prefix('m') {
            // Chunked reads: answer each with bytes equal to the address's low byte.
            let (a, n) = rest.split_once(',').unwrap();
            let a = u64::from_str_radix(a, 16).unwrap();
            let n = usize::from_str_radix(n, 16).unwrap();
            let hex: String = (0..n)
                .map(|i| format!("{:02x}", (a as usize + i) as u8))
                .collect();
            return vec![
                Act::Raw(b"+".to_vec()),
                Act::Raw(encode_packet(hex.as_bytes())),
            ];
        }
        if p.starts_with('M') {
            return vec![Act::Reply("OK")];
        }
        vec![Act::Reply("")]
    }))
    .await;
    let t = Transcript::new();
    let mut link = connect_to(&addr, &t).await;
    assert_eq!(link.packet_size(), 256);
    assert!(link.acks());

    assert_eq!(link.read_memory(0x3000, 4).await.unwrap(), [0xab, 0, 0, 0]);
    assert_eq!(link.read_memory(0x4000, 2).await.unwrap(), [0xbe, 0xef]);

    let regs = link.read_registers().await.unwrap();
    assert_eq!(register(&regs, "r0"), Some(0x1000));
    assert_eq!(register(&regs, "pc"), Some(0x100f));
    assert_eq!(register(&regs, "xpsr"), Some(0x0100_0000));

    let data = link.read_memory(0x5000, 1000).await.unwrap();
    assert_eq!(data.len(), 1000);
    assert!(data
        .iter()
        .enumerate()
        .all(|(i, b)| *b == (0x5000 + i) as u8));
    link.write_memory(0x6000, &[0x55; 500]).await.unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.iter().filter(|p| *p == "m3000,4").count(),
        2,
        "{seen:?}"
    );
    let reads = seen.iter().filter(|p| p.starts_with("m5")).count();
    let writes = seen.iter().filter(|p| p.starts_with("M6")).count();
    assert!(
        reads >= 8,
        "1000 bytes at packet size 256 take several reads: {seen:?}"
    );
    assert!(
        writes >= 4,
        "500 bytes at packet size 256 take several writes: {seen:?}"
    );
    assert!(
        seen.iter().all(|p| p.len() + 4 <= 256),
        "a packet exceeded PacketSize"
    );
    let text = render(&t);
    assert!(text.contains("console output: hello"), "{text}");
    assert!(text.contains("registers: r0=0x00001000"), "{text}");
}

#[tokio::test]
async fn oversized_reply_is_refused() {
    let (addr, _) = scripted_stub(Box::new(|_| {
        let mut junk = b"+$".to_vec();
        junk.extend(std::iter::repeat_n(b'0', 400 * 1024));
        vec![Act::Raw(junk)]
    }))
    .await;
    let mut link = connect_to(&addr, &Transcript::new()).await;
    let e = link.read_memory(0x2000_0000, 4).await.unwrap_err();
    assert!(
        matches!(e, LinkError::Protocol(ref m) if m.contains("longer than")),
        "{e:?}"
    );
    assert!(link.is_closed());
}

#[tokio::test]
async fn interrupted_exchange_closes_the_link() {
    let (addr, _) = scripted_stub(Box::new(|_| vec![Act::Silent])).await;
    let mut link = GdbLink::connect(
        "gdb",
        &addr,
        Duration::from_secs(5),
        Transcript::new(),
        halted_options(),
    )
    .await
    .unwrap();
    // The caller gives up before the link's own timeout: the reply may still come.
    let r =
        tokio::time::timeout(Duration::from_millis(100), link.read_memory(0x2000_0000, 4)).await;
    assert!(r.is_err());
    assert!(
        link.is_closed(),
        "an interrupted exchange leaves the link out of step"
    );
    let e = link.read_memory(0x2000_0000, 4).await.unwrap_err();
    assert!(
        matches!(e, LinkError::Closed(ref m) if m.contains("interrupted")),
        "{e:?}"
    );
    assert!(link.is_closed());
}

// ---------------------------------------------------------------------------------------------
// The reference firmware (built by someone else into target/firmware/secure.elf): attaching,
// reading and detaching must not freeze it. Ignored by default because it needs that build;
// run with `cargo test -p hilsec-core --test gdb_qemu -- --ignored`.

/// Reads from the console until `needle` appears or `within` passes.
async fn console_until(sock: &mut tokio::net::TcpStream, needle: &str, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, sock.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {
                seen.extend_from_slice(&buf[..n]);
                if String::from_utf8_lossy(&seen).contains(needle) {
                    return true;
                }
            }
            _ => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs target/firmware/secure.elf (fixtures/firmware/build)"]
async fn reference_firmware_keeps_running() {
    let elf =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/firmware/secure.elf");
    if !qemu_available() || !elf.exists() {
        skipped(&format!(
            "gdb_qemu::reference_firmware_keeps_running: needs qemu-system-arm and {}",
            elf.display()
        ));
        return;
    }
    let [serial, gdb] = [0, 0].map(|_| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    });
    let mut cmd = tokio::process::Command::new("qemu-system-arm");
    cmd.args(["-M", "netduinoplus2", "-nographic", "-monitor", "none"])
        .arg("-kernel")
        .arg(&elf)
        .arg("-serial")
        .arg(format!("tcp:127.0.0.1:{serial},server=on,wait=off"))
        .arg("-gdb")
        .arg(format!("tcp:127.0.0.1:{gdb}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .process_group(0);
    let _child = cmd.spawn().expect("start qemu");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut console = loop {
        match tokio::net::TcpStream::connect(("127.0.0.1", serial)).await {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("console: {e}"),
        }
    };
    console.write_all(b"\n").await.unwrap();
    assert!(
        console_until(&mut console, "login: ", Duration::from_secs(10)).await,
        "no login prompt"
    );

    let t = Transcript::new();
    let mut link = GdbLink::connect(
        "gdb",
        &format!("127.0.0.1:{gdb}"),
        Duration::from_secs(3),
        t.clone(),
        GdbOptions {
            reset_command: Some("system_reset".into()),
            running: true,
        },
    )
    .await
    .expect("attach");
    assert!(!link.is_halted());
    let vectors = link.read_memory(0x0800_0000, 8).await.unwrap();
    let sp = u32::from_le_bytes(vectors[..4].try_into().unwrap());
    assert_eq!(sp >> 24, 0x20, "initial SP in RAM: {sp:#x}");
    let ram = link.read_memory(0x2000_0000, 256).await.unwrap();
    assert_eq!(ram.len(), 256);
    let regs = link.read_registers().await.unwrap();
    let pc = register(&regs, "pc").unwrap();
    assert!((0x0800_0000..0x0810_0000).contains(&pc), "pc {pc:#x}");

    // Still answering on its console while attached.
    console.write_all(b"\n").await.unwrap();
    assert!(
        console_until(&mut console, "login: ", Duration::from_secs(3)).await,
        "firmware frozen after reads"
    );

    // Halted: silent; resumed: answers (what was typed meanwhile included).
    link.halt().await.unwrap();
    console.write_all(b"\n").await.unwrap();
    assert!(
        !console_until(&mut console, "login: ", Duration::from_millis(500)).await,
        "answered while halted"
    );
    link.resume().await.unwrap();
    assert!(
        console_until(&mut console, "login: ", Duration::from_secs(3)).await,
        "no answer after resume"
    );

    // Detached: runs on.
    link.close().await.unwrap();
    console.write_all(b"\n").await.unwrap();
    assert!(
        console_until(&mut console, "login: ", Duration::from_secs(3)).await,
        "frozen after detach"
    );
    if std::env::var_os("GDB_QEMU_SHOW").is_some() {
        eprintln!("{}", render(&t));
    }
}

/// A stub that offers no-ack mode and reports the target running on `?` after attach
/// (`T05`, resumed by the client): checks the exact sequence around an access on a running
/// target and that no acknowledgement is sent once no-ack mode is on.
#[tokio::test]
async fn no_ack_mode_and_access_on_running_target() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut dec = Decoder::new(1 << 20);
        let mut no_ack = false;
        let mut buf = [0u8; 4096];
        loop {
            let n = match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            // Bytes in order: packets before a 0x03 are answered before it.
            let chunk = buf[..n].to_vec();
            let mut parts = chunk.split(|&b| b == 0x03).peekable();
            while let Some(part) = parts.next() {
                dec.push(part);
                while let Ok(Some(f)) = dec.next_frame() {
                    let Frame::Packet { raw, .. } = f else {
                        if no_ack {
                            log.lock().unwrap().push(format!("{f:?}"));
                        }
                        continue;
                    };
                    let body = String::from_utf8_lossy(&raw).into_owned();
                    log.lock().unwrap().push(body.clone());
                    let ack: &[u8] = if no_ack { b"" } else { b"+" };
                    let reply: Option<&str> = match body.as_str() {
                        b if b.starts_with("qSupported") => {
                            Some("PacketSize=4000;QStartNoAckMode+")
                        }
                        "QStartNoAckMode" => Some("OK"),
                        "?" => Some("T05thread:01;"),
                        "c" => None,
                        "D" => Some("OK"),
                        b if b.starts_with('m') => Some("01020304"),
                        _ => Some(""),
                    };
                    let mut out = ack.to_vec();
                    if let Some(r) = reply {
                        out.extend_from_slice(&encode_packet(r.as_bytes()));
                    }
                    let _ = sock.write_all(&out).await;
                    if body == "QStartNoAckMode" {
                        no_ack = true;
                    }
                }
                if parts.peek().is_some() {
                    log.lock().unwrap().push("^C".into());
                    let _ = sock.write_all(&encode_packet(b"T02thread:01;")).await;
                }
            }
        }
    });
    let t = Transcript::new();
    let mut link = GdbLink::connect(
        "gdb",
        &addr,
        Duration::from_millis(500),
        t.clone(),
        GdbOptions::default(),
    )
    .await
    .unwrap();
    assert!(!link.acks());
    assert!(!link.is_halted());
    assert_eq!(
        link.read_memory(0x2000_0000, 4).await.unwrap(),
        [1, 2, 3, 4]
    );
    assert!(!link.is_halted());
    link.close().await.unwrap();
    let seen = seen.lock().unwrap().clone();
    // The client acknowledges the OK to QStartNoAckMode (as GDB does), then never again.
    let after: Vec<&str> = seen
        .iter()
        .map(String::as_str)
        .skip_while(|p| *p != "QStartNoAckMode")
        .skip(1)
        .collect();
    assert_eq!(
        after,
        ["Ack", "?", "c", "^C", "m20000000,4", "c", "^C", "D"],
        "{seen:?}"
    );
    let text = render(&t);
    assert!(text.contains("acknowledgements off"), "{text}");
    assert!(
        text.contains("read 4 bytes at 0x20000000 (halted"),
        "{text}"
    );
}
