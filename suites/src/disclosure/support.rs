//! When does the published support period end? For the tests `support.period-published`
//! (EN 303 645 provision 5.3-13: the manufacturer publishes the defined support period; PSTI
//! Schedule 1 paragraph 3: the minimum security update period, stated as a period with an end
//! date) and `support.period-not-shortened` (PSTI Schedule 1 paragraph 3: the period may be
//! extended but not shortened).
//!
//! The heuristic, as cited in evidence ([`analyse_support`]):
//!
//! 1. The page is reduced to sentences as for the disclosure policy (first 2 MiB, HTML
//!    stripped, headings joined to the line under them).
//! 2. Only sentences with *support wording* count: "support(ed)", "security updates/patches/
//!    fixes", "software/firmware updates", "update(s)", "end of life/support/service", "EoL",
//!    "EoS", "maintain…", "maintenance", "patch(es)".
//! 3. In those, dates are found in this order, a later form never overlapping an earlier one:
//!    day month year ("31 December 2030", "1st of March 2031"); month day, year ("December 31,
//!    2030"); year-month-day ("2030-12-31", "2030/12/31"); numeric day/month/year ("31/12/2030",
//!    "31.12.2030"; when both of the first two numbers could be the month, the day comes first,
//!    as in the UK; "12/31/2030" is read as month/day because 31 cannot be a month); month year
//!    ("December 2030", "Dec. 2030"); quarter ("Q4 2030"); numeric month/year ("12/2030",
//!    "2030-12"); a year alone ("2030"). Month forms resolve to the month's last day, quarters
//!    to the quarter's last day, a year to 31 December.
//! 4. A date is an *end* date when the words just before it mark an end ("until", "till",
//!    "through", "to", "by", "before", "end(s) (on)", "expires", "end of", "end of life/support",
//!    "EoL", "end date", optionally followed by "at least", "the end of", ":"). Otherwise a full
//!    or month date still counts unless the words just before it mark another kind of date
//!    ("last updated", "published", "released", "launched", "since", "from", "start", "end of
//!    sale", "purchased", "effective", "©", …). A year alone counts only after an end marker.
//! 5. The end date is the latest accepted date on the page; the snippet is its sentence.
//! 6. A sentence with support wording and no accepted date that states a duration ("5 years",
//!    "twenty-four months") or an open end ("for the lifetime of the product", "as long as",
//!    "indefinitely", "for the foreseeable future") is reported as a period without an end
//!    date. It is never turned into a date.
//!
//! Known limit: a date in a table row whose support wording is only in the column header is
//! not found; such pages need the wording in the row (or a heading above the table's text).

use std::ops::Range;
use std::sync::LazyLock;

use regex::{Captures, Regex};
use time::{Date, Month};

use super::text::{self, re, sentences, snippet, WORD_NUMBER};

/// What a support page states about the end of the support period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SupportFindings {
    /// The latest end date near support wording. Month-only forms resolve to the last day of
    /// the month, year-only forms to 31 December.
    pub end_date: Option<Date>,
    /// The sentence the end date was read from.
    pub snippet: Option<String>,
    /// A sentence stating a support period without an end date ("5 years from purchase", "for
    /// the lifetime of the product"), if any.
    pub period_without_end: Option<String>,
}

impl SupportFindings {
    /// A sentence for the evidence of `support.period-published`.
    pub fn message(&self) -> String {
        match (&self.end_date, &self.snippet, &self.period_without_end) {
            (Some(d), Some(s), _) => format!("the support period ends on {d} (“{s}”)"),
            (Some(d), None, _) => format!("the support period ends on {d}"),
            (None, _, Some(p)) => format!(
                "the page states a support period but no end date (“{p}”): a duration or an open end does not tell a buyer when updates stop"
            ),
            (None, _, None) => {
                "the page states no end date for the support period".to_string()
            }
        }
    }
}

/// Longest snippet quoted.
const SNIPPET_CHARS: usize = 200;
/// How far back, in bytes, the words before a date are read.
const LOOKBACK: usize = 60;

/// Reads a support page (HTML or plain text).
pub fn analyse_support(body: impl AsRef<[u8]>) -> SupportFindings {
    let page = text::page_from_bytes(body.as_ref());
    let mut best: Option<(Date, String)> = None;
    let mut period_without_end = None;
    for s in sentences(&page.text) {
        if !SUPPORT_WORDS.is_match(&s) {
            continue;
        }
        let accepted: Vec<Candidate> = candidates(&s)
            .into_iter()
            .filter(|c| accepted(&s, c))
            .collect();
        for c in &accepted {
            if best.as_ref().is_none_or(|(d, _)| c.date > *d) {
                best = Some((c.date, snippet(&s, c.range.clone(), SNIPPET_CHARS)));
            }
        }
        if accepted.is_empty() && period_without_end.is_none() {
            if let Some(m) = OPEN_PERIOD.find(&s) {
                period_without_end = Some(snippet(&s, m.range(), SNIPPET_CHARS));
            }
        }
    }
    let (end_date, snippet) = match best {
        Some((d, s)) => (Some(d), Some(s)),
        None => (None, None),
    };
    SupportFindings {
        end_date,
        snippet,
        period_without_end,
    }
}

// ---------------------------------------------------------------------------------------------
// Comparison between runs

/// How the published end date changed since an earlier run that found one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeriodChange {
    /// The end date moved earlier: the period was shortened.
    Shortened(String),
    /// The end date is no longer stated at all.
    Withdrawn(String),
    Unchanged(String),
    Extended(String),
}

impl PeriodChange {
    pub fn message(&self) -> &str {
        match self {
            Self::Shortened(m) | Self::Withdrawn(m) | Self::Unchanged(m) | Self::Extended(m) => m,
        }
    }

    /// Shortened in the PSTI sense: the new end date is before the old one, or no end date is
    /// published any more (a period without an end can end at any time).
    pub fn is_shortened(&self) -> bool {
        matches!(self, Self::Shortened(_) | Self::Withdrawn(_))
    }
}

/// Compares the end date an earlier run found with the one found now
/// (`support.period-not-shortened`): shortened means `current < earlier`, or no current end
/// date. Without an earlier end date there is nothing to compare, so this takes one.
pub fn compare_support_end(earlier: Date, current: Option<Date>) -> PeriodChange {
    let e = earlier;
    match current {
        Some(c) if c < e => PeriodChange::Shortened(format!(
            "the published end of the support period moved earlier, from {e} to {c} ({} days shorter): a support period may be extended but not shortened",
            (e - c).whole_days()
        )),
        Some(c) if c > e => PeriodChange::Extended(format!(
            "the published end of the support period moved later, from {e} to {c}"
        )),
        Some(_) => PeriodChange::Unchanged(format!(
            "the published end of the support period is unchanged ({e})"
        )),
        None => PeriodChange::Withdrawn(format!(
            "an earlier run found the support period ending on {e}, but the page no longer states an end date: the end date was withdrawn, so the period is no longer assured until {e}"
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Structured data between runs

/// The key of the end date in `support.period-published`'s `data` (results.json).
pub const SUPPORT_END_KEY: &str = "support_end";

const ISO_DATE: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

/// The `data` that `support.period-published` attaches to its verdict:
/// `{"support_end": "YYYY-MM-DD"}`, or `{"support_end": null}` when the page states no end date.
pub fn support_data(end: Option<Date>) -> serde_json::Value {
    let end = end
        .map(|d| d.format(ISO_DATE).unwrap_or_else(|_| d.to_string()))
        .map_or(serde_json::Value::Null, serde_json::Value::String);
    let mut data = serde_json::Map::new();
    data.insert(SUPPORT_END_KEY.to_string(), end);
    serde_json::Value::Object(data)
}

/// Reads [`support_data`] back (from a baseline's record): `Ok(None)` when it says the page
/// stated no end date; `Err` when it is not that shape.
pub fn read_support_data(data: &serde_json::Value) -> Result<Option<Date>, String> {
    let Some(obj) = data.as_object() else {
        return Err(format!("the data is not an object but {data}"));
    };
    match obj.get(SUPPORT_END_KEY) {
        None => Err(format!("the data has no {SUPPORT_END_KEY:?}")),
        Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Date::parse(s, ISO_DATE)
            .map(Some)
            .map_err(|e| format!("{SUPPORT_END_KEY} {s:?} is not a date YYYY-MM-DD: {e}")),
        Some(other) => Err(format!(
            "{SUPPORT_END_KEY} is {other}, not a date YYYY-MM-DD or null"
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Dates

static SUPPORT_WORDS: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)\bsupport(?:s|ed|ing)?\b|\bsecurity\s+(?:updates?|patch(?:es)?|fix(?:es)?)\b|\b(?:software|firmware)\s+updates?\b|\bupdates?\b|\bend[- ]of[- ](?:life|support|service)\b|\beol\b|\beos\b|\bmaintain\w*|\bmaintenance\b|\bpatch(?:es|ed)?\b",
    )
});

const MON: &str = r"(jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?";

/// How a date form's captures become a date.
#[derive(Debug, Clone, Copy)]
enum Form {
    /// day, month name, year
    DayMonthYear,
    /// month name, day, year
    MonthDayYear,
    /// year, month, day
    Iso,
    /// day or month, month or day, year
    Numeric,
    /// month name, year
    MonthYear,
    /// quarter, year
    Quarter,
    /// month number, year
    NumericMonthYear,
    /// year, month number
    IsoMonth,
    /// year
    Year,
}

static FORMS: LazyLock<Vec<(Form, Regex)>> = LazyLock::new(|| {
    vec![
        (
            Form::DayMonthYear,
            re(&format!(
                r"(?i)\b([0-9]{{1,2}})(?:st|nd|rd|th)?\s*(?:of\s+)?{MON},?\s+([0-9]{{4}})\b"
            )),
        ),
        (
            Form::MonthDayYear,
            re(&format!(
                r"(?i)\b{MON}\s+([0-9]{{1,2}})(?:st|nd|rd|th)?,?\s+([0-9]{{4}})\b"
            )),
        ),
        (
            Form::Iso,
            re(r"\b([0-9]{4})[-/.]([0-9]{1,2})[-/.]([0-9]{1,2})\b"),
        ),
        (
            Form::Numeric,
            re(r"\b([0-9]{1,2})[-/.]([0-9]{1,2})[-/.]([0-9]{4})\b"),
        ),
        (
            Form::MonthYear,
            re(&format!(r"(?i)\b{MON},?\s+(?:of\s+)?([0-9]{{4}})\b")),
        ),
        (
            Form::Quarter,
            re(r"(?i)\bQ([1-4])\s*(?:of\s+)?([0-9]{4})\b"),
        ),
        (
            Form::NumericMonthYear,
            re(r"\b([0-9]{1,2})[-/.]([0-9]{4})\b"),
        ),
        (Form::IsoMonth, re(r"\b([0-9]{4})-([0-9]{1,2})\b")),
        (Form::Year, re(r"\b((?:19|20|21)[0-9]{2})\b")),
    ]
});

/// Words just before a date that make it an end date (the pattern is anchored at the date).
static END_MARKER: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:\buntil|\btill|\bthrough|\bthru|\bto|\bby|\bbefore|\bends?|\bending|\bexpir\w*|\bend\s+of|\bend[- ]of[- ](?:life|support|service|maintenance|security\s+updates?|updates?)|\beol|\beos|\blast\s+(?:day|date)\s+of\s+(?:support|security\s+updates?|updates?)|\bend\s+date)(?:\s+on)?(?:\s+at\s+least)?(?:\s+the\s+end\s+of)?(?:\s+the\s+year)?\s*[:\-–|]?\s*$",
    )
});

/// Words just before a date that make it some other kind of date.
static OTHER_DATE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:\blast\s+(?:updated|modified|reviewed|revised|changed)|\bupdated|\bpublished|\bposted|\breleased?|\brelease\s+date|\blaunch\w*|\bmanufactur\w*|\bproduced|\bcopyright|©|\beffective|\bissued|\bsince|\bfrom|\bstart\w*|\bbegin\w*|\bbegan|\bintroduced|\bfirst\s+(?:sold|available|shipped|placed)|\bplaced\s+on\s+the\s+market|\bon\s+sale|\bend[- ]of[- ]sale|\bdiscontinu\w*|\bpurchase\w*|\bbought|\bsold)(?:\s+(?:on|in|at|of|date|dated))?\s*[:\-–|]?\s*$",
    )
});

/// A stated duration or an open end.
static OPEN_PERIOD: LazyLock<Regex> = LazyLock::new(|| {
    re(&format!(
        r"(?i)\b(?:(?:[0-9]{{1,2}}|{WORD_NUMBER})(?:\s*\(\s*[0-9]{{1,2}}\s*\))?[\s-]+(?:years?|months?)\b|life\s*time\b|life[\s-]?span\b|useful\s+life\b|as\s+long\s+as\b|indefinite(?:ly)?\b|foreseeable\s+future\b|for\s+life\b)"
    ))
});

#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    range: Range<usize>,
    date: Date,
    year_only: bool,
}

/// Every date in a sentence, each span claimed by the first form that reads it. A match that
/// is not a real date ("31 February 2030") still claims its span, so no later form reads a
/// piece of it.
fn candidates(s: &str) -> Vec<Candidate> {
    // One flag per byte: linear however many dates a sentence holds.
    let mut claimed = vec![false; s.len()];
    let mut out: Vec<Candidate> = Vec::new();
    for (form, regex) in FORMS.iter() {
        for c in regex.captures_iter(s) {
            let Some(whole) = c.get(0) else { continue };
            let r = whole.range();
            let Some(span) = claimed.get_mut(r.clone()) else {
                continue;
            };
            if span.iter().any(|c| *c) {
                continue;
            }
            span.fill(true);
            if let Some(date) = read_date(*form, &c) {
                out.push(Candidate {
                    range: r,
                    date,
                    year_only: matches!(form, Form::Year),
                });
            }
        }
    }
    out.sort_by_key(|c| c.range.start);
    out
}

fn num(c: &Captures<'_>, i: usize) -> Option<u32> {
    c.get(i)?.as_str().parse().ok()
}

fn month_name(c: &Captures<'_>, i: usize) -> Option<Month> {
    let name = c.get(i)?.as_str().to_ascii_lowercase();
    let n = match name.get(..3)? {
        "jan" => 1,
        "feb" => 2,
        "mar" => 3,
        "apr" => 4,
        "may" => 5,
        "jun" => 6,
        "jul" => 7,
        "aug" => 8,
        "sep" => 9,
        "oct" => 10,
        "nov" => 11,
        "dec" => 12,
        _ => return None,
    };
    Month::try_from(n).ok()
}

fn month(n: u32) -> Option<Month> {
    Month::try_from(u8::try_from(n).ok()?).ok()
}

fn year(n: u32) -> Option<i32> {
    if (1970..=2199).contains(&n) {
        i32::try_from(n).ok()
    } else {
        None
    }
}

fn ymd(y: u32, m: Month, d: u32) -> Option<Date> {
    Date::from_calendar_date(year(y)?, m, u8::try_from(d).ok()?).ok()
}

fn last_day(y: u32, m: Month) -> Option<Date> {
    let y = year(y)?;
    Date::from_calendar_date(y, m, m.length(y)).ok()
}

fn read_date(form: Form, c: &Captures<'_>) -> Option<Date> {
    match form {
        Form::DayMonthYear => ymd(num(c, 3)?, month_name(c, 2)?, num(c, 1)?),
        Form::MonthDayYear => ymd(num(c, 3)?, month_name(c, 1)?, num(c, 2)?),
        Form::Iso => ymd(num(c, 1)?, month(num(c, 2)?)?, num(c, 3)?),
        Form::Numeric => {
            let (a, b, y) = (num(c, 1)?, num(c, 2)?, num(c, 3)?);
            // Day first (UK), unless only month-first makes sense.
            let (d, m) = if a <= 12 && b > 12 { (b, a) } else { (a, b) };
            ymd(y, month(m)?, d)
        }
        Form::MonthYear => last_day(num(c, 2)?, month_name(c, 1)?),
        Form::Quarter => last_day(num(c, 2)?, month(num(c, 1)? * 3)?),
        Form::NumericMonthYear => last_day(num(c, 2)?, month(num(c, 1)?)?),
        Form::IsoMonth => last_day(num(c, 1)?, month(num(c, 2)?)?),
        Form::Year => last_day(num(c, 1)?, Month::December),
    }
}

/// Whether a date in sentence `s` is an end date (module doc, step 4).
fn accepted(s: &str, c: &Candidate) -> bool {
    let mut from = c.range.start.saturating_sub(LOOKBACK);
    while !s.is_char_boundary(from) {
        from -= 1;
    }
    let before = &s[from..c.range.start];
    if END_MARKER.is_match(before) {
        return true;
    }
    !c.year_only && !OTHER_DATE.is_match(before)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn end(s: &str) -> Option<Date> {
        analyse_support(s).end_date
    }

    #[test]
    fn date_forms() {
        let cases = [
            (
                "Security updates until 31 December 2030.",
                date!(2030 - 12 - 31),
            ),
            ("Supported until 2030-12-31.", date!(2030 - 12 - 31)),
            ("End of support: 12/2030", date!(2030 - 12 - 31)),
            (
                "Firmware updates until December 2030.",
                date!(2030 - 12 - 31),
            ),
            (
                "The minimum security update period ends on 1 March 2031.",
                date!(2031 - 03 - 01),
            ),
            (
                "Security updates through March 1st, 2031.",
                date!(2031 - 03 - 01),
            ),
            ("Supported until 28.02.2029.", date!(2029 - 02 - 28)),
            ("Supported until 02/28/2029.", date!(2029 - 02 - 28)),
            ("Supported until 03/04/2029.", date!(2029 - 04 - 03)),
            (
                "Security patches until the end of Q2 2029.",
                date!(2029 - 06 - 30),
            ),
            ("Updates until at least 2029.", date!(2029 - 12 - 31)),
            ("End of life: 2030-02", date!(2030 - 02 - 28)),
            ("Support ends Feb. 2028.", date!(2028 - 02 - 29)),
        ];
        for (text, want) in cases {
            assert_eq!(end(text), Some(want), "{text}");
        }
    }

    #[test]
    fn other_dates_are_not_end_dates() {
        assert_eq!(
            end("Last updated: 3 March 2024. Security updates are provided."),
            None
        );
        assert_eq!(end("Support page published 2024-03-03."), None);
        assert_eq!(end("Security updates since 2019."), None);
        assert_eq!(end("Updates are released for 2030 models."), None);
        // A date without support wording is ignored.
        assert_eq!(end("Our office moves on 31 December 2030."), None);
        assert_eq!(end("Support was 31 February 2030."), None);
    }

    #[test]
    fn latest_date_near_support_wording() {
        let f = analyse_support(
            "<p>Model A receives security updates until 30 June 2028.</p>\
             <p>Model B receives security updates until 31 December 2030.</p>\
             <p>Last updated 1 January 2031.</p>",
        );
        assert_eq!(f.end_date, Some(date!(2030 - 12 - 31)));
        assert!(f.snippet.is_some_and(|s| s.contains("Model B")));
    }

    #[test]
    fn durations_and_open_ends_have_no_end_date() {
        let f = analyse_support("Support period: 5 years from 1 March 2024.");
        assert_eq!(f.end_date, None);
        assert!(f.period_without_end.is_some_and(|p| p.contains("5 years")));
        let f = analyse_support("We provide security updates for the lifetime of the product.");
        assert_eq!(f.end_date, None);
        assert!(f.period_without_end.is_some());
        assert!(f.message().contains("no end date"), "{}", f.message());
        let f = analyse_support("Updates as long as the product is sold.");
        assert!(f.period_without_end.is_some());
    }

    #[test]
    fn comparison() {
        let a = date!(2030 - 12 - 31);
        let b = date!(2029 - 12 - 31);
        let c = compare_support_end(a, Some(b));
        assert!(matches!(c, PeriodChange::Shortened(_)));
        assert!(c.is_shortened());
        assert!(c.message().contains("365 days shorter"), "{}", c.message());
        let c = compare_support_end(b, Some(a));
        assert!(matches!(c, PeriodChange::Extended(_)));
        assert!(!c.is_shortened());
        let c = compare_support_end(a, Some(a));
        assert!(matches!(c, PeriodChange::Unchanged(_)));
        assert!(!c.is_shortened());
        let c = compare_support_end(a, None);
        assert!(matches!(c, PeriodChange::Withdrawn(_)));
        assert!(
            c.is_shortened(),
            "a withdrawn end date is a shortened period"
        );
        assert!(c.message().contains("2030-12-31"), "{}", c.message());
    }

    #[test]
    fn support_data_round_trips() {
        let d = date!(2030 - 12 - 31);
        let v = support_data(Some(d));
        assert_eq!(v, serde_json::json!({"support_end": "2030-12-31"}));
        assert_eq!(read_support_data(&v), Ok(Some(d)));
        let none = support_data(None);
        assert_eq!(none, serde_json::json!({"support_end": null}));
        assert_eq!(read_support_data(&none), Ok(None));
        for bad in [
            serde_json::json!({}),
            serde_json::json!({"support_end": "31 December 2030"}),
            serde_json::json!({"support_end": 2030}),
            serde_json::json!("2030-12-31"),
        ] {
            assert!(read_support_data(&bad).is_err(), "{bad}");
        }
    }
}
