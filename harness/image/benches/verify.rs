//! Verify throughput for a 4 MiB image, in MB/s (run: `cargo bench -p hilsec-image --bench
//! verify`). Plain `main` (no bench framework): it prints one line per key kind.

use std::hint::black_box;
use std::time::{Duration, Instant};

use hilsec_image::{inspect, sign, verify, SignOptions, SigningKey, VerifyOptions};

const SIZE: usize = 4 * 1024 * 1024;

fn measure(label: &str, len: usize, mut f: impl FnMut()) {
    f(); // warm up
    let mut runs = 0u32;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) || runs < 5 {
        f();
        runs += 1;
    }
    let per = start.elapsed() / runs;
    let mbps = len as f64 / per.as_secs_f64() / 1e6;
    println!(
        "{label:<28} {runs:>4} runs  {:>8.2} ms/run  {mbps:>8.1} MB/s",
        per.as_secs_f64() * 1e3
    );
}

fn main() {
    let payload: Vec<u8> = (0..SIZE).map(|i| (i * 131 % 251) as u8).collect();
    let opts = SignOptions::new("1.0.0".parse().expect("version"));
    println!("image: 4 MiB payload + 0x200 header");
    for (name, key) in [
        ("ed25519", SigningKey::ed25519_from_seed([1; 32])),
        (
            "ecdsa-p256",
            SigningKey::ecdsa_p256_from_bytes([2; 32]).expect("key"),
        ),
    ] {
        let image = sign(&payload, &key, &opts).expect("sign");
        let public = key.public_key();
        let vo = VerifyOptions::default();
        assert!(verify(&image, &public, &vo).is_accepted());
        measure(&format!("verify {name}"), image.len(), || {
            black_box(verify(black_box(&image), &public, &vo));
        });
        measure(&format!("sign {name}"), payload.len(), || {
            black_box(sign(black_box(&payload), &key, &opts).expect("sign"));
        });
        measure(&format!("inspect {name}"), image.len(), || {
            black_box(inspect(black_box(&image)).expect("inspect"));
        });
    }
}
