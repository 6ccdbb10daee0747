//! Benchmark: pushing a 256 KiB update image to a simulated unit over MQTT (SimPlug, through the
//! embedded broker) and over Modbus TCP (SimHub, a 240-byte register window), against a raw
//! loopback TCP copy of the same bytes. Run with `ci/bench` (it builds the release binaries).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hilsec_core::board::{load_boards, LoadMode};
use hilsec_core::device::{Data, Device, RunEnv};
use hilsec_image::{sign, Key, SignOptions, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SIZE: usize = 256 * 1024;
const ROUNDS: u16 = 3;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn mbps(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

async fn raw_loopback(bytes: &[u8]) -> Duration {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let reader = tokio::spawn(async move {
        let (mut s, _) = l.accept().await.expect("accept");
        let mut buf = Vec::with_capacity(SIZE);
        s.read_to_end(&mut buf).await.expect("read");
        buf.len()
    });
    let t0 = Instant::now();
    let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
    c.write_all(bytes).await.expect("write");
    c.shutdown().await.expect("shutdown");
    let n = reader.await.expect("reader");
    assert_eq!(n, bytes.len());
    t0.elapsed()
}

/// Pushes genuine images of increasing versions to the first unit of `board`; best of ROUNDS.
async fn push_to(board: &str, env: &RunEnv, key: &hilsec_image::SigningKey) -> (String, Duration) {
    let boards = load_boards(&[repo().join(board)], LoadMode::Run).expect("board loads");
    let b = &boards[0];
    let unit = b.units[0].clone();
    let model = b.model.clone();
    let probe = Device::new(unit.clone(), model.clone(), &BTreeMap::new(), env);
    let mut em = hilsec_core::emulator::start(
        model.emulator.as_ref().expect("emulated"),
        probe.globals(),
        None,
    )
    .await
    .expect("unit starts (run ci/bench, which builds hilsec-simdev)");
    let mut dev = Device::new(unit.clone(), model.clone(), &em.vars, env);
    let running: Version = unit
        .firmware
        .as_deref()
        .unwrap_or("1.0.0")
        .parse()
        .expect("version");
    let mut best = Duration::MAX;
    for round in 1..=ROUNDS {
        let v = Version::new(running.major, running.minor, running.revision + round, 0);
        let payload: Vec<u8> = (0..SIZE - 0x200 - 0x100)
            .map(|i| (i * 7 + round as usize) as u8)
            .collect();
        let image = sign(&payload, key, &SignOptions::new(v)).expect("sign");
        let mut data = Data::new();
        data.insert("image".into(), Arc::new(image));
        let _t = dev.begin_test();
        let t0 = Instant::now();
        let out = dev
            .run_action_with_data("push_update", &[], &data)
            .await
            .expect("push works");
        let took = t0.elapsed();
        assert!(
            out.accepted(),
            "{board}: the genuine image was refused: {:?}",
            out.rejected
        );
        best = best.min(took);
    }
    em.stop().await;
    (model.name.clone(), best)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("transfer: bench");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let key = Key::load(&repo().join("fixtures/keys/sim-update-ed25519.pem")).expect("test key");
        let key = key.signing_key().expect("private key").clone();
        let broker = hilsec_core::broker::start_embedded().expect("embedded broker");
        let env = RunEnv {
            broker: Some(broker.addr),
            ..Default::default()
        };
        let sample = vec![0x5au8; SIZE];
        let mut raw = Duration::MAX;
        for _ in 0..ROUNDS {
            raw = raw.min(raw_loopback(&sample).await);
        }
        println!("update image transfer, {} KiB, best of {ROUNDS}", SIZE / 1024);
        println!("  raw loopback TCP copy        {:>9.2} ms  {:>8.1} MB/s", raw.as_secs_f64() * 1e3, mbps(SIZE, raw));
        for (board, channel) in [
            ("boards/sim/simplug-s1.toml", "MQTT, 4 KiB chunks, QoS 1"),
            ("boards/sim/simhub-h2.toml", "Modbus TCP, 240-byte window"),
        ] {
            let (model, took) = push_to(board, &env, &key).await;
            println!(
                "  {model:<11} over {channel:<28} {:>9.1} ms  {:>8.2} MB/s  ({:.0}x the raw copy's time)",
                took.as_secs_f64() * 1e3,
                mbps(SIZE, took),
                took.as_secs_f64() / raw.as_secs_f64()
            );
        }
    });
}
