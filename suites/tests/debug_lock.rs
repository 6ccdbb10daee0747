//! The debug-port lock test's verdict rules (`debug.port-locked`, EN 303 645 5.6-4) against a
//! GDB stub in front of a *locked* target, which nothing here can run for real: a loopback
//! stub that attaches like any GDB server and answers every memory read with an error, as
//! OpenOCD or a J-Link GDB server do on a read-protected chip. The open case runs against
//! QEMU's real GDB stub (harness/cli/tests/qemu_fleet.rs); the applicability rules need no
//! unit at all.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hilsec_core::board::{load_boards, LoadMode, Model};
use hilsec_core::device::{Device, RunEnv};
use hilsec_core::iface::gdb::{encode_packet, Decoder, Frame};
use hilsec_core::test::{settle, Test, Verdict};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn board(extra_decl: &str, interfaces: &str) -> String {
    format!(
        r#"
[model]
name = "Locked L1"

[declarations]
password_mechanism = "unique-per-unit"
{extra_decl}

{interfaces}

[[unit]]
name = "locked-1"
password = {{ value = "L0cked#Unit-1" }}
"#
    )
}

fn load(name: &str, text: &str) -> (Arc<Model>, hilsec_core::board::Unit) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(format!("{name}.toml"));
    std::fs::write(&path, text).expect("write board");
    let mut boards = load_boards(&[path], LoadMode::Run).expect("board loads");
    let b = boards.remove(0);
    let unit = b.units[0].clone();
    (b.model.clone(), unit)
}

fn gdb_iface(addr: &str) -> String {
    format!(
        "[interfaces.swd]\nkind = \"gdb\"\naddress = \"{addr}\"\nrunning = false\nlock_test_address = \"0x08000000\"\ntimeout = \"5s\"\n"
    )
}

/// A GDB server whose target refuses memory reads (`E01`); it logs the packets it got.
async fn locked_stub() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let mut dec = Decoder::new(1 << 16);
        let mut buf = [0u8; 4096];
        loop {
            let n = match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            dec.push(&buf[..n]);
            while let Ok(Some(f)) = dec.next_frame() {
                let Frame::Packet { raw, .. } = f else {
                    continue;
                };
                let body = String::from_utf8_lossy(&raw).into_owned();
                log.lock().expect("log").push(body.clone());
                let reply = match body.as_str() {
                    b if b.starts_with("qSupported") => "PacketSize=1000",
                    "?" => "S05",
                    "D" => "OK",
                    b if b.starts_with('m') || b.starts_with('M') || b.starts_with('X') => "E01",
                    _ => "",
                };
                let mut out = b"+".to_vec();
                out.extend_from_slice(&encode_packet(reply.as_bytes()));
                if sock.write_all(&out).await.is_err() {
                    return;
                }
            }
        }
    });
    (addr, seen)
}

fn port_locked() -> Arc<dyn Test> {
    hilsec_suites::debug::suite()
        .tests
        .into_iter()
        .find(|t| t.info().id == "debug.port-locked")
        .expect("the test exists")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_that_refuses_reads_passes_and_nothing_is_written() {
    let (addr, seen) = locked_stub().await;
    let text = board("production_firmware = true", &gdb_iface(&addr));
    let (model, unit) = load("locked", &text);
    let test = port_locked();
    assert_eq!(test.not_applicable(&model), None);
    let mut dev = Device::new(unit, model, &Default::default(), &RunEnv::default());
    let t = dev.begin_test();
    let o = tokio::time::timeout(Duration::from_secs(60), test.run_unit(&mut dev))
        .await
        .expect("the test ends");
    let o = settle(o, &dev.take_end_state());
    assert_eq!(o.verdict, Verdict::Pass, "{}", o.message);
    assert!(o.message.contains("refused"), "{}", o.message);
    assert!(o.message.contains("0x08000000"), "{}", o.message);
    let evidence = t.render(dev.redactor());
    assert!(evidence.contains("nothing is written"), "{evidence}");
    let packets = seen.lock().expect("log").clone();
    assert!(
        packets.iter().any(|p| p.starts_with("m8000000,")),
        "read at the declared address: {packets:?}"
    );
    assert!(
        !packets
            .iter()
            .any(|p| p.starts_with('M') || p.starts_with('X') || p.starts_with("qRcmd")),
        "the lock test never writes or resets: {packets:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_nobody_answers_on_is_not_a_pass() {
    // Nothing listens: the port cannot be reached, which proves nothing about a lock.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    drop(listener);
    let text = board("production_firmware = true", &gdb_iface(&addr));
    let (model, unit) = load("unreachable", &text);
    let test = port_locked();
    let mut dev = Device::new(unit, model, &Default::default(), &RunEnv::default());
    dev.begin_test();
    let o = tokio::time::timeout(Duration::from_secs(60), test.run_unit(&mut dev))
        .await
        .expect("the test ends");
    let o = settle(o, &dev.take_end_state());
    assert!(
        matches!(o.verdict, Verdict::Inconclusive | Verdict::Error),
        "{:?}: {}",
        o.verdict,
        o.message
    );
}

#[test]
fn without_a_debug_interface_or_a_production_declaration_it_does_not_apply() {
    let test = port_locked();
    let console = "[interfaces.console]\nkind = \"serial\"\npath = \"/dev/null\"\n";
    let (model, _) = load("no-debug", &board("production_firmware = true", console));
    let why = test.not_applicable(&model).expect("not applicable");
    assert!(why.contains("no debug interface"), "{why}");

    let (model, _) = load("development", &board("", &gdb_iface("127.0.0.1:9")));
    let why = test.not_applicable(&model).expect("not applicable");
    assert!(why.contains("production_firmware = true"), "{why}");

    let (model, _) = load(
        "declared-development",
        &board("production_firmware = false", &gdb_iface("127.0.0.1:9")),
    );
    assert!(test.not_applicable(&model).is_some());
}
