//! Does a fetched page publish a vulnerability disclosure policy? For the test
//! `disclosure.policy-published`: EN 303 645 provision 5.2-1 (a public vulnerability disclosure
//! policy that includes at least contact information for reporting issues and information on
//! timelines for initial acknowledgement of receipt and status updates until resolution) and
//! PSTI Schedule 1 paragraph 2.
//!
//! The heuristic, as cited in evidence ([`analyse_policy`]):
//!
//! 1. **Text.** The first 2 MiB of the body are read as UTF-8 (invalid bytes replaced). HTML is
//!    reduced to visible text: tags, comments, `<script>`, `<style>` and `<template>` dropped,
//!    entities decoded, block elements on their own lines, headings joined to the line under
//!    them; plain text has its wrapped lines joined. The text is split into sentences.
//! 2. **Contact.** Any of: an email address in the text (also written `name [at] domain [dot]
//!    tld`) or in a `mailto:` link, except no-reply addresses, file names such as
//!    `logo@2x.png` and strings longer than an address can be (254 characters); an `https` URL
//!    (a link, resolved against the final URL, or written in the text) that looks like a report
//!    form: not the page itself and not a document (`.pdf`, `.txt`, `.asc`, images, …), and
//!    either on a known bug-bounty platform (HackerOne, Bugcrowd, Intigriti, YesWeHack, …) or
//!    both form-like (its URL names a report, submission, form, intake, ticket or bounty, or
//!    its link text says "report" or "submit") and on topic (its URL or link text names
//!    security, vulnerabilities, bugs, PSIRT/CSIRT/CERT, disclosure, bounties or incidents).
//!    Only when neither is found: a sentence that says where to report ("report … to",
//!    "contact", "email us", "reach us", "get in touch", "write to") and mentions
//!    vulnerabilities, security, bugs, flaws, weaknesses, exploits or PSIRT/CSIRT, so a footer's
//!    "Contact us" does not count.
//! 3. **Timelines.** In each sentence, every *duration* is found: a number (digits, a range such
//!    as "2-3", or words such as "five", "forty-eight") with a unit (hours, days, business or
//!    working or calendar days, weeks, fortnights, months, "48h", "72-hour"); "within/in/every a
//!    day/week"; "every week"; "daily", "weekly", "fortnightly", "monthly". Every duration
//!    belongs to the nearest *timeline wording* before it in the same sentence (within 160
//!    bytes), or, when there is none, to the nearest after it. Timeline wording is of three
//!    kinds: acknowledgement ("acknowledge…", "receipt", "confirm receipt", "initial/first
//!    response", "respond", "reply to you", "hear from us"; "publicly acknowledge" is credit, not
//!    receipt), status updates ("status update(s)", "update you", "updates every", "regular
//!    updates", "keep you informed/updated", "progress", "inform/notify you of", "follow-up",
//!    "provide/send updates") and other steps that own their own deadlines ("fix", "resolve",
//!    "remediate", "patch", "release", "disclose", "publish", "triage", "assess", "verify",
//!    "investigate", "embargo", "bounty", …). The first sentence holding a duration that belongs
//!    to acknowledgement wording is the acknowledgement timeline; likewise for status updates.
//!    So "we acknowledge reports within 2 business days and fix them within 90 days" gives an
//!    acknowledgement timeline but no status-update timeline.
//! 4. **Sign-in wall.** Signals: a password field; the final URL's host or a path segment naming
//!    a sign-in endpoint (`login`, `signin`, `sign-in`, `logon`, `auth`, `sso`, `oauth`, `saml`,
//!    `authorize`, …); a form posting to such an endpoint; text asking the reader to sign in
//!    ("sign in to continue", "please log in", "you must be logged in", "login required",
//!    "forgot your password", "enter your password", "remember me", "session expired"). The page
//!    is a sign-in wall when at least one signal is present and the page does not itself carry
//!    the policy (a contact and at least one timeline): a real policy page with a "Sign in" link
//!    in its header stays a policy.
//!
//! It is a heuristic: it says what the page states, not whether the manufacturer keeps to it.

use std::sync::LazyLock;

use regex::Regex;

use super::text::{self, re, sentences, snippet, Page, WORD_NUMBER};
use super::url;

/// What the policy page states, as far as the heuristic can tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyFindings {
    /// The page is a sign-in page rather than the policy.
    pub login_wall: bool,
    /// Why the page looks like a sign-in page (present even when [`Self::login_wall`] is false
    /// because the page also carries the policy).
    pub login_signals: Vec<String>,
    /// Contacts for reporting, each prefixed with its kind: `email: …`, `form: …`, `phrase: “…”`.
    pub contacts: Vec<String>,
    /// The sentence stating when receipt of a report is acknowledged.
    pub acknowledgement: Option<String>,
    /// The sentence stating how often or when the reporter gets status updates.
    pub status_updates: Option<String>,
}

/// The conclusion to draw from [`PolicyFindings`], with a sentence for the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyVerdict {
    /// The URL leads to a sign-in page: the policy is not public.
    LoginWall(String),
    /// The page is public but lacks a contact or a timeline.
    Incomplete(String),
    /// The page names a contact and both timelines.
    Complete(String),
}

impl PolicyVerdict {
    pub fn message(&self) -> &str {
        match self {
            Self::LoginWall(m) | Self::Incomplete(m) | Self::Complete(m) => m,
        }
    }

    pub fn is_complete(&self) -> bool {
        matches!(self, Self::Complete(_))
    }
}

impl PolicyFindings {
    /// What the policy lacks, in words; empty when it names a contact and both timelines.
    pub fn missing(&self) -> Vec<&'static str> {
        let mut m = Vec::new();
        if self.contacts.is_empty() {
            m.push("a contact for reporting vulnerabilities");
        }
        if self.acknowledgement.is_none() {
            m.push("a timeline for acknowledging receipt of a report");
        }
        if self.status_updates.is_none() {
            m.push("a timeline for status updates");
        }
        m
    }

    pub fn verdict(&self) -> PolicyVerdict {
        if self.login_wall {
            return PolicyVerdict::LoginWall(format!(
                "the policy URL leads to a sign-in page, not to a policy ({}): a vulnerability disclosure policy must be readable without an account",
                self.login_signals.join("; ")
            ));
        }
        let missing = self.missing();
        let mut found = Vec::new();
        if let Some(c) = self.contacts.first() {
            let more = match self.contacts.len() {
                1 => String::new(),
                n => format!(" and {} more", n - 1),
            };
            found.push(format!("a contact ({c}{more})"));
        }
        if let Some(a) = &self.acknowledgement {
            found.push(format!("an acknowledgement timeline (“{a}”)"));
        }
        if let Some(s) = &self.status_updates {
            found.push(format!("a status-update timeline (“{s}”)"));
        }
        if missing.is_empty() {
            PolicyVerdict::Complete(format!("the policy names {}", join_and(&found)))
        } else if found.is_empty() {
            PolicyVerdict::Incomplete(format!("the policy page lacks {}", join_and(&missing)))
        } else {
            PolicyVerdict::Incomplete(format!(
                "the policy page lacks {}; it does name {}",
                join_and(&missing),
                join_and(&found)
            ))
        }
    }
}

fn join_and<S: AsRef<str>>(items: &[S]) -> String {
    match items {
        [] => String::new(),
        [one] => one.as_ref().to_string(),
        [init @ .., last] => format!(
            "{} and {}",
            init.iter()
                .map(AsRef::as_ref)
                .collect::<Vec<_>>()
                .join(", "),
            last.as_ref()
        ),
    }
}

/// Reads a policy page (HTML or plain text) fetched from `final_url` (the URL after redirects).
pub fn analyse_policy(body: impl AsRef<[u8]>, final_url: &str) -> PolicyFindings {
    let page = text::page_from_bytes(body.as_ref());
    let sentences = sentences(&page.text);
    let contacts = contacts(&page, &sentences, final_url);
    let (acknowledgement, status_updates) = timelines(&sentences);
    let login_signals = login_signals(&page, final_url);
    let carries_policy =
        !contacts.is_empty() && (acknowledgement.is_some() || status_updates.is_some());
    PolicyFindings {
        login_wall: !login_signals.is_empty() && !carries_policy,
        login_signals,
        contacts,
        acknowledgement,
        status_updates,
    }
}

// ---------------------------------------------------------------------------------------------
// Contacts

/// Most contacts reported.
const MAX_CONTACTS: usize = 20;
/// Longest snippet quoted in a finding.
const SNIPPET_CHARS: usize = 200;

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b[a-z0-9][a-z0-9._%+-]{0,63}@[a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63}){0,8}\.[a-z]{2,24}\b",
    )
});

static OBFUSCATED_EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b([a-z0-9][a-z0-9._+-]{0,63})\s*[\[({<]\s*at\s*[\])}>]\s*([a-z0-9-]{1,63}(?:(?:\s*[\[({<]\s*dot\s*[\])}>]\s*|\.)[a-z0-9-]{1,63}){1,8})",
    )
});

static DOT_WORD: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)\s*[\[({<]\s*dot\s*[\])}>]\s*"));

static TEXT_URL: LazyLock<Regex> =
    LazyLock::new(|| re(r#"(?i)\bhttps://[^\s<>"'()\[\]{}|\\^`]{3,2000}"#));

static SECURITY_WORDS: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)vulnerab|secur|\bpsirt|\bcsirt|\bcert\b|\bbugs?\b|\bflaws?\b|\bweakness|\bexploit")
});

static REPORT_PHRASE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\breport(?:s|ed|ing)?\b.{0,80}?\bto\b|\bcontact(?:s|ed|ing)?\b|\be-?mail\s+(?:us|our)\b|\breach\s+(?:us|our)\b|\bget\s+in\s+touch\b|\bwrite\s+to\b",
    )
});

static REPORT_LINK_TEXT: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)\b(?:report|submit)(?:s|ting|ted)?\b"));

/// Hosts of bug-bounty and disclosure platforms: any https link there is a report channel.
const PLATFORMS: &[&str] = &[
    "hackerone.com",
    "bugcrowd.com",
    "intigriti.com",
    "yeswehack.com",
    "zerocopter.com",
    "openbugbounty.org",
    "hackenproof.com",
    "responsibledisclosure.com",
];

fn contacts(page: &Page, sentences: &[String], final_url: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut push = |c: String| {
        if out.len() < MAX_CONTACTS && !out.contains(&c) {
            out.push(c);
        }
    };
    for m in EMAIL.find_iter(&page.text) {
        if let Some(e) = usable_email(m.as_str()) {
            push(format!("email: {e}"));
        }
    }
    for c in OBFUSCATED_EMAIL.captures_iter(&page.text) {
        let (Some(local), Some(domain)) = (c.get(1), c.get(2)) else {
            continue;
        };
        let domain = DOT_WORD.replace_all(domain.as_str(), ".");
        if let Some(e) = usable_email(&format!("{}@{domain}", local.as_str())) {
            push(format!("email: {e}"));
        }
    }
    for link in &page.links {
        let Some(target) = link
            .href
            .get(..7)
            .filter(|s| s.eq_ignore_ascii_case("mailto:"))
        else {
            continue;
        };
        let address = link.href[target.len()..].split('?').next().unwrap_or("");
        let address = address
            .replace("%40", "@")
            .replace("%2E", ".")
            .replace("%2e", ".");
        if let Some(e) = EMAIL.find(&address).and_then(|m| usable_email(m.as_str())) {
            push(format!("email: {e}"));
        }
    }
    let here = url::comparable(final_url);
    for link in &page.links {
        if let Some(u) = url::resolve(final_url, &link.href) {
            if report_form(&u, &link.text, &here) {
                push(format!("form: {}", shorten(&u)));
            }
        }
    }
    for m in TEXT_URL.find_iter(&page.text) {
        let u = m.as_str().trim_end_matches(['.', ',', ';', ':', '!', '?']);
        if report_form(u, "", &here) {
            push(format!("form: {}", shorten(u)));
        }
    }
    if out.is_empty() {
        for s in sentences {
            if let Some(m) = REPORT_PHRASE.find(s) {
                if SECURITY_WORDS.is_match(s) && out.len() < 3 {
                    out.push(format!(
                        "phrase: “{}”",
                        snippet(s, m.range(), SNIPPET_CHARS)
                    ));
                }
            }
        }
    }
    out
}

/// A URL as quoted in a finding: at most [`SNIPPET_CHARS`] characters.
fn shorten(u: &str) -> String {
    if u.chars().count() <= SNIPPET_CHARS {
        return u.to_string();
    }
    let mut s: String = u.chars().take(SNIPPET_CHARS).collect();
    s.push('…');
    s
}

/// The address, lowercased, unless it is longer than an address can be (254 characters, RFC
/// 5321), a no-reply address or a file name such as `logo@2x.png`.
fn usable_email(address: &str) -> Option<String> {
    if address.len() > 254 {
        return None;
    }
    let e = address.to_ascii_lowercase();
    let (local, domain) = e.split_once('@')?;
    let no_reply = [
        "noreply",
        "no-reply",
        "no_reply",
        "donotreply",
        "do-not-reply",
    ]
    .iter()
    .any(|n| local.contains(n));
    let file = [
        ".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp", ".css", ".js",
    ]
    .iter()
    .any(|x| domain.ends_with(x));
    (!no_reply && !file).then_some(e)
}

/// Whether an `https` URL (with the text of the link to it, if any) looks like a report form.
fn report_form(u: &str, link_text: &str, here: &str) -> bool {
    if u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some(parts) = url::split(u) else {
        return false;
    };
    if parts.scheme != "https" || url::comparable(u) == here {
        return false;
    }
    let path = parts.path.to_ascii_lowercase();
    const DOCUMENTS: &[&str] = &[
        ".pdf", ".txt", ".asc", ".pgp", ".key", ".png", ".jpg", ".svg", ".css", ".js", ".xml",
        ".json",
    ];
    if DOCUMENTS.iter().any(|x| path.ends_with(x)) {
        return false;
    }
    let platform = PLATFORMS
        .iter()
        .any(|p| parts.host == *p || parts.host.ends_with(&format!(".{p}")));
    if platform {
        return true;
    }
    let lower = u.to_ascii_lowercase();
    let text = link_text.to_ascii_lowercase();
    const FORM_WORDS: &[&str] = &[
        "report", "submit", "/form", "form.", "forms", "intake", "ticket", "bounty",
    ];
    const TOPIC_WORDS: &[&str] = &[
        "secur", "vulnerab", "psirt", "csirt", "cert", "disclos", "bug", "bounty", "incident",
    ];
    let form_like =
        FORM_WORDS.iter().any(|w| lower.contains(w)) || REPORT_LINK_TEXT.is_match(&text);
    let on_topic = TOPIC_WORDS
        .iter()
        .any(|w| lower.contains(w) || text.contains(w));
    form_like && on_topic
}

// ---------------------------------------------------------------------------------------------
// Timelines

/// Longest distance, in bytes, between a duration and the wording it belongs to.
const MAX_GAP: usize = 160;

const UNIT: &str = r"(?:(?:business|working|calendar|work)[\s-]+days?|hours?|hrs?|days?|weeks?|fortnights?|months?)";
const UNIT_ONE: &str = r"(?:(?:business|working|calendar)[\s-]+day|hour|day|week|fortnight|month)";

static DURATION: LazyLock<Regex> = LazyLock::new(|| {
    let digits =
        r"[0-9]{1,3}(?:\s*\(\s*[a-z]+(?:[- ][a-z]+)?\s*\))?(?:\s*(?:-|–|to|or)\s*[0-9]{1,3})?";
    let words = format!(
        r"{WORD_NUMBER}(?:\s*\(\s*[0-9]{{1,3}}\s*\))?(?:\s*(?:-|–|to|or)\s*{WORD_NUMBER})?"
    );
    re(&format!(
        r"(?i)\b(?:(?:{digits}|{words})[\s-]*{UNIT}|[0-9]{{1,3}}\s?h|(?:within|in|every|after|once)\s+(?:a|an|one)\s+(?:single\s+)?{UNIT_ONE}|every\s+(?:other\s+)?(?:business\s+|working\s+)?(?:day|week|fortnight|month)|daily|weekly|bi-?weekly|fortnightly|monthly)\b"
    ))
});

static WORDING: LazyLock<Regex> = LazyLock::new(|| {
    re(concat!(
        r"(?i)\b(?:",
        r"(?P<ack>acknowledg\w*|confirm\w*\s+(?:the\s+)?receipt|confirmation\s+of\s+receipt|receipt|initial\s+(?:response|reply)|first\s+(?:response|reply)|respond(?:s|ed|ing)?\b|reply\s+to\s+(?:you|your|the|all|each|every)\b|hear\s+(?:back\s+)?from\s+us)",
        r"|(?P<status>status\s+(?:updates?|reports?)|updates?\s+on\s+(?:the\s+)?(?:status|progress)|update\s+(?:you|reporters?|researchers?|the\s+reporter)\b|updates?\s+(?:at\s+least\s+)?every\b|regular\s+updates?|(?:provide|send|give)\s+(?:you\s+)?(?:with\s+)?(?:an?\s+)?updates?|keep\s+(?:you|reporters?|researchers?|the\s+reporter)\s+(?:informed|updated|up[\s-]to[\s-]date|posted|in\s+the\s+loop)|progress|(?:inform|notify)\s+you\s+(?:of|about|on|regularly)\b|follow[\s-]?ups?)",
        r"|(?P<other>fix\w*|resolv\w*|resolution|remediat\w*|patch\w*|mitigat\w*|releas\w*|disclos\w*|publish\w*|triag\w*|assess\w*|investigat\w*|validat\w*|verif\w*|embargo\w*|correct\w*|deploy\w*|grace\s+period|bount\w*|reward\w*|payouts?)",
        r")"
    ))
});

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ack,
    Status,
    Other,
}

/// The acknowledgement and status-update sentences, as described in the module doc.
fn timelines(sentences: &[String]) -> (Option<String>, Option<String>) {
    let mut ack = None;
    let mut status = None;
    for s in sentences {
        if ack.is_some() && status.is_some() {
            break;
        }
        let durations: Vec<_> = DURATION.find_iter(s).map(|m| m.range()).collect();
        if durations.is_empty() {
            continue;
        }
        let wording = wording(s);
        for d in durations {
            let owner = owner(&wording, d.clone());
            match owner {
                Some(Kind::Ack) if ack.is_none() => ack = Some(snippet(s, d, SNIPPET_CHARS)),
                Some(Kind::Status) if status.is_none() => {
                    status = Some(snippet(s, d, SNIPPET_CHARS))
                }
                _ => {}
            }
        }
    }
    (ack, status)
}

/// Timeline wording in a sentence, in order: (start, end, kind).
fn wording(s: &str) -> Vec<(usize, usize, Kind)> {
    WORDING
        .captures_iter(s)
        .filter_map(|c| {
            let (m, mut kind) = if let Some(m) = c.name("ack") {
                (m, Kind::Ack)
            } else if let Some(m) = c.name("status") {
                (m, Kind::Status)
            } else {
                (c.name("other")?, Kind::Other)
            };
            if kind == Kind::Ack && credit(s, m.start()) {
                kind = Kind::Other;
            }
            Some((m.start(), m.end(), kind))
        })
        .collect()
}

/// "publicly acknowledge" is credit to the reporter, not acknowledgement of receipt.
fn credit(s: &str, at: usize) -> bool {
    let mut from = at.saturating_sub(12);
    while !s.is_char_boundary(from) {
        from -= 1;
    }
    s[from..at].to_ascii_lowercase().contains("public")
}

/// The kind of the wording a duration belongs to: the nearest starting before it (touching or
/// overlapping it counts as nearest), else the nearest after it, within [`MAX_GAP`].
fn owner(wording: &[(usize, usize, Kind)], d: std::ops::Range<usize>) -> Option<Kind> {
    // Wording is in document order and does not overlap itself.
    let before = wording.partition_point(|w| w.0 < d.start);
    if let Some(w) = before.checked_sub(1).and_then(|i| wording.get(i)) {
        if d.start.saturating_sub(w.1) <= MAX_GAP {
            return Some(w.2);
        }
    }
    wording
        .get(before)
        .filter(|w| w.0.saturating_sub(d.end) <= MAX_GAP)
        .map(|w| w.2)
}

// ---------------------------------------------------------------------------------------------
// Sign-in wall

/// Path segments (without extension) and host labels that name a sign-in endpoint.
const SIGN_IN: &[&str] = &[
    "login",
    "log-in",
    "log_in",
    "logon",
    "signin",
    "sign-in",
    "sign_in",
    "signon",
    "sign-on",
    "auth",
    "authenticate",
    "authentication",
    "authorize",
    "authorise",
    "oauth",
    "oauth2",
    "sso",
    "saml",
    "saml2",
    "idp",
    "cas",
];

static LOGIN_PROMPT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\b(?:(?:sign|log)\s*(?:in|on)\s+to\s+(?:continue|access|view|see|read|proceed|your\s+account)|please\s+(?:sign|log)\s*(?:in|on)\b|you\s+(?:must|need\s+to|have\s+to)\s+(?:be\s+)?(?:signed|logged|sign|log)\s*(?:in|on)\b|(?:login|log-in|sign-in|signin|authentication)\s+(?:is\s+)?required|forgot(?:ten)?\s+(?:your\s+)?password|enter\s+your\s+(?:password|username|user\s+name)|remember\s+me\b|session\s+(?:has\s+)?expired)",
    )
});

fn login_signals(page: &Page, final_url: &str) -> Vec<String> {
    let mut out = Vec::new();
    if page.input_types.iter().any(|t| t == "password") {
        out.push("the page has a password field".to_string());
    }
    if let Some(why) = sign_in_endpoint(final_url) {
        out.push(format!("the final URL {final_url} {why}"));
    }
    for action in &page.form_actions {
        let target = url::resolve(final_url, action).unwrap_or_else(|| action.clone());
        if sign_in_endpoint(&target).is_some() || sign_in_path(action).is_some() {
            out.push(format!("a form posts to a sign-in endpoint ({action})"));
            break;
        }
    }
    if let Some(m) = LOGIN_PROMPT.find(&page.text) {
        out.push(format!(
            "the page asks the reader to sign in (“{}”)",
            m.as_str()
        ));
    }
    out
}

/// Why a URL names a sign-in endpoint, if it does.
fn sign_in_endpoint(u: &str) -> Option<String> {
    let parts = url::split(u)?;
    let first_label = parts.host.split('.').next().unwrap_or("");
    if parts.host.contains('.') && (SIGN_IN.contains(&first_label) || first_label == "accounts") {
        return Some(format!("is on a sign-in host ({})", parts.host));
    }
    sign_in_path(&parts.path).map(|seg| format!("names a sign-in endpoint (`{seg}`)"))
}

fn sign_in_path(path: &str) -> Option<String> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    path.split('/')
        .map(|seg| {
            let seg = seg.to_ascii_lowercase();
            match seg.rsplit_once('.') {
                Some((stem, _)) if !stem.is_empty() => stem.to_string(),
                _ => seg,
            }
        })
        .find(|stem| {
            SIGN_IN.contains(&stem.as_str())
                || stem.starts_with("login")
                || stem.starts_with("signin")
                || stem.starts_with("sign-in")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://example.com/security/vulnerability-disclosure";

    fn analyse(s: &str) -> PolicyFindings {
        analyse_policy(s, URL)
    }

    #[test]
    fn complete_plain_policy() {
        let f = analyse(
            "Report vulnerabilities to security@example.com. We will acknowledge receipt within 3 business days \
             and send you status updates at least every 14 days until the issue is resolved.",
        );
        assert_eq!(f.contacts, vec!["email: security@example.com"]);
        assert!(f.acknowledgement.is_some());
        assert!(f.status_updates.is_some());
        assert!(f.verdict().is_complete(), "{}", f.verdict().message());
    }

    #[test]
    fn fix_deadline_is_not_a_status_update() {
        let f = analyse(
            "Email psirt@example.com. We acknowledge reports within 2 business days and fix them within 90 days.",
        );
        assert!(f.acknowledgement.is_some());
        assert_eq!(f.status_updates, None);
        let v = f.verdict();
        assert!(matches!(v, PolicyVerdict::Incomplete(_)));
        assert!(v.message().contains("status updates"), "{}", v.message());
    }

    #[test]
    fn durations_in_words_and_before_the_wording() {
        let (a, s) = timelines(&sentences(
            "Within five working days we will acknowledge your report. Keep you informed? We provide updates on progress every ten working days.",
        ));
        assert!(a.is_some_and(|a| a.contains("five working days")));
        assert!(s.is_some_and(|s| s.contains("ten working days")));
        let (a, _) = timelines(&sentences("Initial response: forty-eight hours (48h)."));
        assert!(a.is_some());
    }

    #[test]
    fn public_acknowledgement_is_credit() {
        let (a, _) = timelines(&sentences(
            "We will publicly acknowledge your contribution within 30 days of the fix.",
        ));
        assert_eq!(a, None);
    }

    #[test]
    fn weekly_status_updates() {
        let (_, s) = timelines(&sentences("You will receive weekly status updates."));
        assert!(s.is_some());
        let (_, s) = timelines(&sentences("We send updates every week."));
        assert!(s.is_some());
    }

    #[test]
    fn obfuscated_and_mailto_contacts() {
        let f = analyse(
            "<p>Write to psirt [at] example [dot] com or <a href=\"mailto:Sec%40Example.com?subject=vuln\">us</a>.</p>\
             <p>Do not use noreply@example.com or logo@2x.png.</p>",
        );
        assert_eq!(
            f.contacts,
            vec!["email: psirt@example.com", "email: sec@example.com"]
        );
    }

    #[test]
    fn report_forms() {
        let here = url::comparable(URL);
        assert!(report_form(
            "https://example.com/security/report",
            "",
            &here
        ));
        assert!(report_form("https://hackerone.com/example", "", &here));
        assert!(report_form(
            "https://example.com/forms/x",
            "Report a vulnerability",
            &here
        ));
        assert!(!report_form(
            "http://example.com/security/report",
            "",
            &here
        ));
        assert!(!report_form(
            "https://example.com/contact",
            "Contact us",
            &here
        ));
        assert!(!report_form(
            "https://example.com/security/report.pdf",
            "",
            &here
        ));
        assert!(!report_form(URL, "Report", &here));
    }

    #[test]
    fn phrase_contact_needs_security_wording() {
        let f = analyse("Contact us for sales questions.");
        assert!(f.contacts.is_empty());
        let f = analyse("Please report security issues to our PSIRT team.");
        assert_eq!(f.contacts.len(), 1);
        assert!(f.contacts[0].starts_with("phrase: "));
    }

    #[test]
    fn login_wall() {
        let f = analyse_policy(
            "<html><body><h1>Sign in</h1><form action=\"/session\"><input type=\"email\">\
             <input type=\"password\"><button>Sign in</button></form>\
             <a href=\"/forgot\">Forgot your password?</a></body></html>",
            "https://portal.example.com/login?next=%2Fsecurity",
        );
        assert!(f.login_wall);
        assert_eq!(f.login_signals.len(), 3, "{:?}", f.login_signals);
        assert!(matches!(f.verdict(), PolicyVerdict::LoginWall(_)));
    }

    #[test]
    fn policy_with_header_sign_in_link_is_not_a_wall() {
        let f = analyse_policy(
            "<html><body><nav><a href=\"/login\">Sign in</a> Forgot your password?</nav>\
             <p>Report to security@example.com; we acknowledge receipt within 2 days.</p></body></html>",
            URL,
        );
        assert!(!f.login_signals.is_empty());
        assert!(!f.login_wall);
    }

    #[test]
    fn sign_in_urls() {
        assert!(sign_in_endpoint("https://example.com/u/login.php").is_some());
        assert!(sign_in_endpoint("https://sso.example.com/x").is_some());
        assert!(sign_in_endpoint("https://example.com/oauth2/authorize?c=1").is_some());
        assert!(sign_in_endpoint("https://example.com/blog/authors/security").is_none());
        assert!(sign_in_endpoint(URL).is_none());
    }

    #[test]
    fn empty_page_lacks_everything() {
        let v = analyse("").verdict();
        assert_eq!(
            v.message(),
            "the policy page lacks a contact for reporting vulnerabilities, a timeline for acknowledging receipt of a report and a timeline for status updates"
        );
    }
}
