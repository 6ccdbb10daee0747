//! Secrets (unit passwords, keys) and their redaction.
//!
//! A `SecretValue` remembers whether it is secret; the `Redactor` replaces every known secret in
//! text bound for evidence, logs and reports. `Debug` never prints a secret.

use std::fmt;

/// How every secret is shown wherever the harness prints it (evidence, messages, reports,
/// `Debug`): one form, so a reader never wonders whether two markers hide different things.
pub const REDACTED: &str = "«secret»";

/// A string that may be secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue {
    value: String,
    secret: bool,
}

impl SecretValue {
    pub fn plain(v: impl Into<String>) -> Self {
        SecretValue {
            value: v.into(),
            secret: false,
        }
    }
    pub fn secret(v: impl Into<String>) -> Self {
        SecretValue {
            value: v.into(),
            secret: true,
        }
    }
    pub fn expose(&self) -> &str {
        &self.value
    }
    pub fn is_secret(&self) -> bool {
        self.secret
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.secret {
            write!(f, "SecretValue({REDACTED})")
        } else {
            write!(f, "SecretValue({:?})", self.value)
        }
    }
}

/// Replaces known secret strings with a marker.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
    /// Every secret's hex form (see [`Redactor::hex_form`]) in one pattern, compiled at the
    /// first redaction after a secret was added (evidence is redacted entry by entry: one
    /// search each).
    hex: std::sync::OnceLock<Option<regex::Regex>>,
    /// Values known to be public (e.g. a universal default password a unit also uses): a value
    /// printed in public lists is no secret, and redacting it would hide what the evidence shows.
    public: Vec<String>,
}

/// Secrets shorter than this are only redacted where the harness itself sends them (it knows
/// the exact place); redacting every "1234" a device prints would make evidence unreadable.
pub const MIN_REDACT_LEN: usize = 4;

/// The shortest beginning of a secret that is redacted on its own (see [`Redactor::redact`]).
pub const MIN_PARTIAL_LEN: usize = 6;

impl Redactor {
    pub fn add(&mut self, secret: &str) {
        if secret.len() >= MIN_REDACT_LEN
            && !self.secrets.iter().any(|s| s == secret)
            && !self.public.iter().any(|s| s == secret)
        {
            self.secrets.push(secret.to_string());
            // Longest first, so a secret containing another is replaced whole.
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
            self.hex = std::sync::OnceLock::new();
        }
    }

    /// Declares a value public: it is never redacted.
    pub fn add_public(&mut self, value: &str) {
        self.secrets.retain(|s| s != value);
        self.hex = std::sync::OnceLock::new();
        if !self.public.iter().any(|s| s == value) {
            self.public.push(value.to_string());
        }
    }

    /// Whether `value` was declared public (see [`Redactor::add_public`]).
    pub fn is_public(&self, value: &str) -> bool {
        self.public.iter().any(|p| p == value)
    }

    /// Adds every secret another redactor knows.
    pub fn merge(&mut self, other: &Redactor) {
        for p in &other.public {
            self.add_public(p);
        }
        for s in &other.secrets {
            self.add(s);
        }
    }

    /// The secrets' bytes as hex, as debug-port evidence shows memory: two digits per byte, any
    /// case, with an optional space between bytes (a preview groups four bytes, a GDB reply
    /// packet none), so a password read from or written to a unit's memory is hidden too.
    fn hex_form(secrets: &[String]) -> Option<regex::Regex> {
        if secrets.is_empty() {
            return None;
        }
        // Longest first (as `secrets` is kept), so a secret containing another goes whole.
        let forms: Vec<String> = secrets
            .iter()
            .map(|s| {
                let bytes: Vec<String> = s.bytes().map(|b| format!("{b:02x}")).collect();
                bytes.join(" ?")
            })
            .collect();
        regex::RegexBuilder::new(&forms.join("|"))
            .case_insensitive(true)
            .size_limit(64 << 20)
            .build()
            .ok()
    }

    /// Replaces every secret, every long beginning of one, and its hex form, with the marker.
    ///
    /// The beginnings: a device that echoes what is typed until its login program turns echo
    /// off echoes the first characters of a password sent at once after the prompt (seen with
    /// BusyBox `login` on a QEMU serial console: 9 of 10 characters). A beginning of at least
    /// [`MIN_PARTIAL_LEN`] characters and half the secret is redacted as well; shorter ones are
    /// left, as they cannot be told from ordinary text.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), REDACTED);
            }
        }
        if let Some(re) = self.hex.get_or_init(|| Self::hex_form(&self.secrets)) {
            if re.is_match(&out) {
                out = re.replace_all(&out, REDACTED).into_owned();
            }
        }
        for s in &self.secrets {
            let min = MIN_PARTIAL_LEN.max(s.len().div_ceil(2));
            let ends: Vec<usize> = s
                .char_indices()
                .map(|(i, _)| i)
                .filter(|&i| i >= min)
                .rev()
                .collect();
            for end in ends {
                let prefix = &s[..end];
                if out.contains(prefix) {
                    out = out.replace(prefix, REDACTED);
                }
            }
        }
        out
    }
}

impl Redactor {
    /// A secret split over two consecutive pieces of text (a device's echo that arrived in two
    /// reads): how many bytes at the end of `a` and at the start of `b` together spell a
    /// secret, if any do. Each piece alone may be too short to be recognised.
    pub fn split_across(&self, a: &str, b: &str) -> Option<(usize, usize)> {
        for s in &self.secrets {
            for (k, _) in s.char_indices().skip(1) {
                let (head, tail) = s.split_at(k);
                if a.ends_with(head) && b.starts_with(tail) {
                    return Some((head.len(), tail.len()));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_split_over_two_reads_is_found() {
        let mut r = Redactor::default();
        r.add("Qx7-lab-Passw0rd");
        assert_eq!(
            r.split_across("Password: Q", "x7-lab-Passw0rd\\r\\n"),
            Some((1, 15))
        );
        assert_eq!(r.split_across("login: ", "admin"), None);
    }

    #[test]
    fn debug_hides_secret() {
        let s = SecretValue::secret("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn a_secret_shown_as_memory_hex_is_redacted_too() {
        let mut r = Redactor::default();
        r.add("Vz7!kQ2#");
        // "Vz7!kQ2#" = 56 7a 37 21 6b 51 32 23, in a GDB reply and in a grouped preview.
        let got =
            r.redact("<- $00ff567a37216b513223ff#aa\nread 12 bytes: 00ff567a 37216B51 3223ff00");
        assert!(!got.contains("567a3721"), "{got}");
        assert!(!got.contains("37216B51"), "{got}");
        assert_eq!(got.matches(REDACTED).count(), 2, "{got}");
    }

    #[test]
    fn an_echoed_beginning_of_a_secret_is_redacted_too() {
        let mut r = Redactor::default();
        r.add("Lab#Pass42");
        // BusyBox login on a QEMU serial console echoed all but the last character.
        assert_eq!(
            r.redact("Password: Lab#Pass4\r\n"),
            "Password: «secret»\r\n"
        );
        assert_eq!(r.redact("Lab#Pa"), "«secret»");
        // Short beginnings cannot be told from ordinary text.
        assert_eq!(r.redact("Lab#P and Lab"), "Lab#P and Lab");
    }

    #[test]
    fn redacts_longest_first() {
        let mut r = Redactor::default();
        r.add("abcd");
        r.add("abcdefgh");
        assert_eq!(r.redact("x abcdefgh y abcd"), "x «secret» y «secret»");
    }

    #[test]
    fn one_form_everywhere() {
        // The redactor, a rendered template and Debug all print the same marker.
        let mut r = Redactor::default();
        r.add("hunter22");
        let mut v = crate::template::Vars::new();
        v.insert("secret.password".into(), SecretValue::secret("hunter22"));
        let t = crate::template::Template::parse("pw {secret.password}").expect("template");
        let rendered = t.render(&v).expect("render");
        assert_eq!(rendered.redacted, format!("pw {REDACTED}"));
        assert_eq!(r.redact(&rendered.text), rendered.redacted);
        assert_eq!(
            format!("{:?}", SecretValue::secret("hunter22")),
            format!("SecretValue({REDACTED})")
        );
    }
}
