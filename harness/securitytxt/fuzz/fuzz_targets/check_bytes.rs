//! Fuzzes `check_bytes`: any bytes, under any of a few serving contexts, must give a
//! report (never a panic) whose invariants hold.
//!
//! The first input byte picks the context, the rest is the file. Seeds: the files in
//! `../tests/corpus/` (pass that folder as a second corpus directory).

#![no_main]

use hilsec_securitytxt::{check_bytes, Context, MAX_SIZE};
use libfuzzer_sys::fuzz_target;
use time::macros::datetime;

fuzz_target!(|data: &[u8]| {
    let (sel, body) = match data.split_first() {
        Some((s, b)) => (*s, b),
        None => (0, data),
    };
    let mut ctx = Context::new().with_now(datetime!(2025-06-01 00:00 UTC));
    if sel & 1 != 0 {
        ctx.url = Some(
            match sel & 6 {
                0 => "https://device.example/.well-known/security.txt",
                2 => "http://device.example/security.txt",
                4 => "not a url",
                _ => "https://[::1]:8443/.well-known/security.txt",
            }
            .to_string(),
        );
    }
    if sel & 8 != 0 {
        ctx.content_type = Some(
            if sel & 16 != 0 {
                "text/plain; charset=utf-8"
            } else {
                "text/html;;="
            }
            .to_string(),
        );
    }
    // Feed a file as-is sometimes, and sometimes one that starts with the first byte too.
    let input = if sel & 32 != 0 { data } else { body };

    let report = check_bytes(input, &ctx);

    assert_eq!(report.valid, report.errors.is_empty());
    let max_line = input
        .iter()
        .take(MAX_SIZE + 1)
        .filter(|b| **b == b'\n')
        .count()
        + 1;
    for f in report
        .errors
        .iter()
        .chain(&report.recommendations)
        .chain(&report.notes)
    {
        assert!(!f.code.is_empty());
        if let Some(n) = f.line {
            assert!(
                n >= 1 && n <= max_line,
                "line {n} out of range 1..={max_line}"
            );
        }
    }
    if input.len() > MAX_SIZE {
        assert!(report.has_error("too_large"));
    }
    serde_json::to_string(&report).expect("report serialises");
});
