//! Pure analyses of passwords: derivation from identifiers, counter patterns, common lists,
//! complexity. No I/O, so each rule is unit-tested on its own. Descriptions returned never
//! contain the password itself.

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Public identifiers of one unit.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    pub serial: Option<String>,
    pub mac: Option<String>,
    pub model: Option<String>,
    pub manufacturer: Option<String>,
    pub others: Vec<String>,
}

/// Shortest identifier fragment that counts as a derivation source.
const MIN_TOKEN: usize = 4;
/// Shortest slice of a hash a password may equal before it counts as derived from the hash.
const MIN_HASH_SLICE: usize = 6;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Forms a MAC address is commonly written in, and its tails (labels often use the last digits).
fn mac_forms(mac: &str) -> Vec<(String, String)> {
    let digits: String = mac
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect::<String>()
        .to_lowercase();
    let mut out = vec![(digits.clone(), "the MAC address (hex digits)".to_string())];
    for n in [4usize, 6, 8] {
        if digits.len() > n {
            out.push((
                digits[digits.len() - n..].to_string(),
                format!("the last {n} hex digits of the MAC address"),
            ));
        }
    }
    // As decimal, e.g. a label printing the NIC-specific part as a number.
    if let Ok(v) = u64::from_str_radix(&digits, 16) {
        out.push((v.to_string(), "the MAC address as a decimal number".into()));
    }
    if digits.len() >= 6 {
        if let Ok(v) = u64::from_str_radix(&digits[digits.len() - 6..], 16) {
            out.push((
                v.to_string(),
                "the last 3 bytes of the MAC address as a decimal number".into(),
            ));
        }
    }
    out
}

/// Fragments of free-text identifiers: the whole, without separators, and each part.
fn text_forms(s: &str, what: &str) -> Vec<(String, String)> {
    let lower = s.to_lowercase();
    let compact: String = lower
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let mut out = vec![
        (lower.clone(), what.to_string()),
        (compact.clone(), format!("{what} without separators")),
    ];
    for part in lower.split(|c: char| !c.is_ascii_alphanumeric()) {
        out.push((part.to_string(), format!("a part of {what}")));
    }
    let digits: String = lower.chars().filter(|c| c.is_ascii_digit()).collect();
    out.push((digits, format!("the digits of {what}")));
    out
}

/// How `password` is derived from the unit's identifiers; empty when no relation is found.
pub fn derivations(password: &str, id: &Identity) -> Vec<String> {
    let p = password.to_lowercase();
    let mut sources: Vec<(String, String)> = Vec::new();
    if let Some(s) = &id.serial {
        sources.extend(text_forms(s, "the serial number"));
    }
    if let Some(m) = &id.mac {
        sources.extend(mac_forms(m));
    }
    if let Some(m) = &id.model {
        sources.extend(text_forms(m, "the model name"));
    }
    if let Some(m) = &id.manufacturer {
        sources.extend(text_forms(m, "the manufacturer name"));
    }
    for o in &id.others {
        sources.extend(text_forms(o, "a declared public identifier"));
    }
    sources.retain(|(t, _)| t.len() >= MIN_TOKEN);

    let mut found = Vec::new();
    let mut push = |s: String| {
        if !found.contains(&s) {
            found.push(s);
        }
    };
    for (tok, what) in &sources {
        let rev: String = tok.chars().rev().collect();
        if p == *tok {
            push(format!("equals {what}"));
        } else if p.contains(tok.as_str()) {
            push(format!("contains {what}"));
        } else if p.len() >= MIN_TOKEN && tok.contains(p.as_str()) {
            push(format!("is contained in {what}"));
        } else if p.contains(rev.as_str()) {
            push(format!("contains {what}, reversed"));
        }
    }
    // Unkeyed hashes of the identifiers (a keyed hash is acceptable practice; these are not).
    let mut hash_inputs: Vec<(String, String)> = Vec::new();
    if let Some(s) = &id.serial {
        hash_inputs.push((s.clone(), "the serial number".into()));
    }
    if let Some(m) = &id.mac {
        hash_inputs.push((m.clone(), "the MAC address".into()));
        hash_inputs.push((m.to_uppercase(), "the MAC address".into()));
        let digits: String = m.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        hash_inputs.push((digits.to_lowercase(), "the MAC address".into()));
        hash_inputs.push((digits.to_uppercase(), "the MAC address".into()));
    }
    if p.len() >= MIN_HASH_SLICE {
        for (input, what) in &hash_inputs {
            let hashes = [
                ("MD5", hex(&Md5::digest(input.as_bytes()))),
                ("SHA-1", hex(&Sha1::digest(input.as_bytes()))),
                ("SHA-256", hex(&Sha256::digest(input.as_bytes()))),
            ];
            for (alg, h) in hashes {
                if h.contains(p.as_str()) {
                    push(format!("is a slice of the unkeyed {alg} hash of {what}"));
                }
            }
        }
    }
    found
}

/// A description of a counter-like or near-identical pattern across passwords in production
/// order, if there is one. Identical passwords are left to the uniqueness test.
pub fn counter_pattern(passwords: &[&str]) -> Option<String> {
    let distinct: Vec<&str> = {
        let mut v: Vec<&str> = Vec::new();
        for p in passwords {
            if !v.contains(p) {
                v.push(p);
            }
        }
        v
    };
    if distinct.len() < 2 {
        return None;
    }
    // Strip what all passwords share at both ends; what is left must not be a counter.
    let prefix = common_prefix(&distinct);
    let rest: Vec<&str> = distinct.iter().map(|p| &p[prefix..]).collect();
    let suffix = common_suffix(&rest);
    let middles: Vec<&str> = rest.iter().map(|p| &p[..p.len() - suffix]).collect();
    let numeric = |radix: u32| -> Option<Vec<u128>> {
        middles
            .iter()
            .map(|m| {
                if m.is_empty() || m.len() > 30 {
                    None
                } else {
                    u128::from_str_radix(m, radix).ok()
                }
            })
            .collect()
    };
    for (radix, name) in [(10, "decimal"), (16, "hexadecimal")] {
        if let Some(vals) = numeric(radix) {
            let mut sorted = vals.clone();
            sorted.sort();
            let gaps: Vec<u128> = sorted.windows(2).map(|w| w[1] - w[0]).collect();
            let constant = gaps.len() >= 2 && gaps.iter().all(|g| *g == gaps[0]);
            let small = gaps.iter().all(|g| *g <= 16);
            if constant || small {
                let shared = if prefix + suffix > 0 {
                    format!("share {} fixed characters and ", prefix + suffix)
                } else {
                    String::new()
                };
                return Some(format!(
                    "{shared}differ only in a {name} number that steps by {} between units (a counter)",
                    gaps.iter().max().copied().unwrap_or(0)
                ));
            }
        }
    }
    // Near-identical: equal length, differing in at most two positions.
    for (i, a) in distinct.iter().enumerate() {
        for b in &distinct[i + 1..] {
            if a.len() == b.len() && a.len() >= 6 {
                let diff = a.chars().zip(b.chars()).filter(|(x, y)| x != y).count();
                if diff <= 2 {
                    return Some(format!(
                        "are near-identical: two of them differ in only {diff} of {} characters",
                        a.len()
                    ));
                }
            }
        }
    }
    None
}

fn common_prefix(v: &[&str]) -> usize {
    let first = v[0].as_bytes();
    let mut n = 0;
    'outer: while n < first.len() {
        for s in &v[1..] {
            if s.as_bytes().get(n) != Some(&first[n]) {
                break 'outer;
            }
        }
        n += 1;
    }
    while !v[0].is_char_boundary(n) {
        n -= 1;
    }
    n
}

fn common_suffix(v: &[&str]) -> usize {
    let min = v.iter().map(|s| s.len()).min().unwrap_or(0);
    let mut n = 0;
    while n < min {
        let c = v[0].as_bytes()[v[0].len() - 1 - n];
        if v.iter().any(|s| s.as_bytes()[s.len() - 1 - n] != c) {
            break;
        }
        n += 1;
    }
    while n > 0 && v.iter().any(|s| !s.is_char_boundary(s.len() - n)) {
        n -= 1;
    }
    n
}

fn common_list() -> &'static std::collections::HashSet<String> {
    static SET: std::sync::OnceLock<std::collections::HashSet<String>> = std::sync::OnceLock::new();
    SET.get_or_init(|| {
        let mut s: std::collections::HashSet<String> =
            include_str!("../../data/common-passwords.txt")
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
                .map(|l| l.trim().to_lowercase())
                .collect();
        for (_, p) in super::universal_credentials() {
            if !p.is_empty() {
                s.insert(p.to_lowercase());
            }
        }
        s
    })
}

/// Why the password counts as common, if it does.
pub fn is_common(password: &str) -> Option<String> {
    let list = common_list();
    let lower = password.to_lowercase();
    if list.contains(&lower) {
        return Some("is in the common-password list".into());
    }
    let stripped = lower.trim_end_matches(|c: char| c.is_ascii_digit() || c.is_ascii_punctuation());
    if stripped.len() >= 4 && stripped != lower && list.contains(stripped) {
        return Some("is a common password with digits or symbols appended".into());
    }
    let unleet: String = lower
        .chars()
        .map(|c| match c {
            '0' => 'o',
            '1' => 'i',
            '3' => 'e',
            '4' | '@' => 'a',
            '5' | '$' => 's',
            '7' => 't',
            c => c,
        })
        .collect();
    if unleet != lower
        && (list.contains(&unleet) || list.contains(unleet.replace('i', "l").as_str()))
    {
        return Some(
            "is a common password with letters swapped for look-alike digits or symbols".into(),
        );
    }
    None
}

/// Thresholds of `password.complexity`, in log10 of the guesses zxcvbn estimates an attacker
/// needs (its model of guessing: dictionaries, keyboard patterns, sequences, dates, repeats,
/// identifiers of the unit; brute force otherwise).
#[derive(Debug, Clone, PartialEq)]
pub struct StrengthRule {
    /// The model's median unit must reach this (10: zxcvbn's top score, "very unguessable").
    pub model_min_log10: f64,
    /// No unit may be below this (8: zxcvbn's score 3, "safely unguessable" online).
    pub unit_min_log10: f64,
}

impl Default for StrengthRule {
    fn default() -> Self {
        StrengthRule {
            model_min_log10: 10.0,
            unit_min_log10: 8.0,
        }
    }
}

/// zxcvbn's estimate for one unit's password.
#[derive(Debug, Clone, PartialEq)]
pub struct Strength {
    pub name: String,
    pub length: usize,
    pub log10_guesses: f64,
}

/// The complexity judgement over a model's units.
#[derive(Debug, Clone)]
pub struct ComplexityJudgement {
    pub units: Vec<Strength>,
    pub median_log10: f64,
    /// Why the model fails; empty when it passes.
    pub problems: Vec<String>,
    /// Units the problems concern.
    pub concerned: Vec<String>,
    /// One sentence with the figures and thresholds.
    pub summary: String,
}

impl ComplexityJudgement {
    pub fn weakest(&self) -> Option<&Strength> {
        self.units
            .iter()
            .min_by(|a, b| a.log10_guesses.total_cmp(&b.log10_guesses))
    }
}

/// Longest prefix given to zxcvbn (its cost grows fast with length; longer is only stronger).
const ZXCVBN_MAX_CHARS: usize = 64;

/// zxcvbn's log10 of the guesses needed for `password`, with `hints` (the unit's public
/// identifiers, in the forms a label shows them) as words an attacker knows.
pub fn strength_log10(password: &str, hints: &[String]) -> f64 {
    if password.is_empty() {
        return 0.0;
    }
    let p: String = password.chars().take(ZXCVBN_MAX_CHARS).collect();
    let mut words: Vec<String> = Vec::new();
    for h in hints {
        for (form, _) in text_forms(h, "") {
            if form.len() >= 3 && !words.contains(&form) {
                words.push(form);
            }
        }
        if h.contains(':') {
            for (form, _) in mac_forms(h) {
                if !words.contains(&form) {
                    words.push(form);
                }
            }
        }
    }
    let refs: Vec<&str> = words.iter().map(String::as_str).collect();
    zxcvbn::zxcvbn(&p, &refs).guesses_log10()
}

/// Judges the passwords of a model's units `(name, password, hints)`: every unit at least
/// `min_len` characters (the manufacturer's declaration) and at least `rule.unit_min_log10`,
/// and the median unit at least `rule.model_min_log10`. Judging the median makes the test one
/// of the generator, not of chance: a generator of random passwords occasionally produces one
/// that happens to contain a word or a sequence, and must not fail for it.
pub fn complexity_judgement(
    units: &[(String, String, Vec<String>)],
    min_len: usize,
    rule: &StrengthRule,
) -> ComplexityJudgement {
    let strengths: Vec<Strength> = units
        .iter()
        .map(|(name, p, hints)| Strength {
            name: name.clone(),
            length: p.chars().count(),
            log10_guesses: strength_log10(p, hints),
        })
        .collect();
    let mut logs: Vec<f64> = strengths.iter().map(|s| s.log10_guesses).collect();
    logs.sort_by(f64::total_cmp);
    let median_log10 = match logs.len() {
        0 => 0.0,
        n if n % 2 == 1 => logs[n / 2],
        n => (logs[n / 2 - 1] + logs[n / 2]) / 2.0,
    };
    let mut problems = Vec::new();
    let mut concerned: Vec<String> = Vec::new();
    for s in &strengths {
        let mut why = Vec::new();
        if s.length < min_len {
            why.push(format!(
                "has {} characters, fewer than the declared minimum of {min_len}",
                s.length
            ));
        }
        if s.log10_guesses < rule.unit_min_log10 {
            why.push(format!(
                "would be guessed in about 10^{:.1} attempts, below the floor of 10^{:.0} for any unit",
                s.log10_guesses, rule.unit_min_log10
            ));
        }
        if !why.is_empty() {
            problems.push(format!("{}: the password {}", s.name, why.join(" and ")));
            concerned.push(s.name.clone());
        }
    }
    if !strengths.is_empty() && median_log10 < rule.model_min_log10 {
        problems.push(format!(
            "the median estimate over the {} units is 10^{median_log10:.1} guesses, below 10^{:.0}",
            strengths.len(),
            rule.model_min_log10
        ));
        concerned = strengths.iter().map(|s| s.name.clone()).collect();
    }
    let weakest = strengths
        .iter()
        .min_by(|a, b| a.log10_guesses.total_cmp(&b.log10_guesses));
    let summary = match weakest {
        Some(w) => format!(
            "zxcvbn estimates over {} passwords: weakest {} at 10^{:.1} guesses, median 10^{median_log10:.1} (thresholds: median at least 10^{:.0}, every unit at least 10^{:.0} and {min_len} characters)",
            strengths.len(),
            w.name,
            w.log10_guesses,
            rule.model_min_log10,
            rule.unit_min_log10
        ),
        None => "no passwords to judge".into(),
    };
    ComplexityJudgement {
        units: strengths,
        median_log10,
        problems,
        concerned,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(serial: &str, mac: &str) -> Identity {
        Identity {
            serial: Some(serial.into()),
            mac: Some(mac.into()),
            model: Some("SimHub H2".into()),
            manufacturer: Some("Simulated Hubs Ltd".into()),
            others: vec![],
        }
    }

    #[test]
    fn mac_tail_is_derived() {
        let f = derivations("00010a", &id("HB2-24-000101", "02:1a:2b:00:01:0a"));
        assert!(f.iter().any(|s| s.contains("MAC")), "{f:?}");
    }

    #[test]
    fn serial_inside_is_derived() {
        let f = derivations("X-HB224000101!", &id("HB2-24-000101", "02:1a:2b:00:01:0a"));
        assert!(f.iter().any(|s| s.contains("serial")), "{f:?}");
    }

    #[test]
    fn hash_slice_is_derived() {
        let h = hex(&Md5::digest(b"HB2-24-000101"));
        let f = derivations(&h[..8], &id("HB2-24-000101", "02:1a:2b:00:01:0a"));
        assert!(f.iter().any(|s| s.contains("MD5")), "{f:?}");
    }

    #[test]
    fn random_password_is_not_derived() {
        let f = derivations("Vq7#mZ2p!Lk9", &id("SP1-24-000101", "02:53:50:00:01:01"));
        assert!(f.is_empty(), "{f:?}");
    }

    #[test]
    fn counters_are_found() {
        assert!(counter_pattern(&["Plug-0001", "Plug-0002", "Plug-0003"]).is_some());
        assert!(counter_pattern(&["00010a", "00010b"]).is_some());
        assert!(counter_pattern(&["xK9#abcdef", "xK9#abcdeg"]).is_some());
        assert!(counter_pattern(&["Vq7#mZ2p!Lk9", "Rt4%wB8n?Jd2"]).is_none());
        assert!(counter_pattern(&["admin", "admin"]).is_none());
        // Two random PINs far apart are not a counter.
        assert!(counter_pattern(&["48213977", "90317422"]).is_none());
    }

    #[test]
    fn common_passwords_are_found() {
        assert!(is_common("admin").is_some());
        assert!(is_common("Password123").is_some());
        assert!(is_common("p4ssw0rd").is_some());
        assert!(is_common("Vq7#mZ2p!Lk9").is_none());
    }

    fn model(passwords: &[String]) -> Vec<(String, String, Vec<String>)> {
        passwords
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    format!("unit-{i}"),
                    p.clone(),
                    vec![
                        "SimHub H2".to_string(),
                        format!("HB2-24-{:06}", 101 + i),
                        format!("02:1a:2b:00:01:{:02x}", 10 + i),
                    ],
                )
            })
            .collect()
    }

    #[test]
    fn random_alphanumerics_pass_for_every_seed() {
        for seed in 0..100u64 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let pw: Vec<String> = (0..3)
                .map(|_| (0..12).map(|_| rng.alphanumeric()).collect())
                .collect();
            let j = complexity_judgement(&model(&pw), 10, &StrengthRule::default());
            assert!(j.problems.is_empty(), "seed {seed}: {:?}", j.problems);
        }
    }

    #[test]
    fn weak_schemes_fail() {
        let schemes: Vec<(&str, Vec<String>)> = vec![
            (
                "MAC-derived",
                (0..3).map(|i| format!("00010{:x}", 10 + i)).collect(),
            ),
            (
                "counter",
                (1..=3).map(|i| format!("SimHub-{i:04}")).collect(),
            ),
            (
                "common words",
                vec![
                    "Sunshine2024".into(),
                    "Dragon12345!".into(),
                    "Password1234".into(),
                ],
            ),
            ("universal", vec!["admin".into(), "admin".into()]),
        ];
        for (what, pw) in schemes {
            let j = complexity_judgement(&model(&pw), 6, &StrengthRule::default());
            assert!(!j.problems.is_empty(), "{what}: {}", j.summary);
            assert!(!j.concerned.is_empty(), "{what}");
        }
    }

    #[test]
    fn the_message_names_the_estimate_and_thresholds() {
        let j = complexity_judgement(
            &model(&["Vq7#mZ2p!Lk9".into(), "Rt4%wB8n?Jd2".into()]),
            10,
            &StrengthRule::default(),
        );
        assert!(j.problems.is_empty(), "{:?}", j.problems);
        assert!(j.summary.contains("weakest unit-"), "{}", j.summary);
        assert!(j.summary.contains("10^10"), "{}", j.summary);
        let j = complexity_judgement(
            &model(&["Vq7#mZ2p!Lk9".into()]),
            16,
            &StrengthRule::default(),
        );
        assert!(j.problems[0].contains("fewer than the declared minimum of 16"));
    }
}
