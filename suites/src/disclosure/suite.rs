//! The disclosure suite: vulnerability disclosure policy, security.txt, CSAF provider metadata,
//! the support period (published with an end date, not shortened since a baseline run), and
//! the model designation the unit reports about itself.
//!
//! Manufacturer pages are fetched from the URLs the board declares (`[declarations.disclosure]`),
//! with the exchanges kept as evidence; the judgements are the pure analyses of the sibling
//! modules. The model designation is read from the unit through its own actions
//! (`read_identity` over console/MQTT/HTTP, `read_device_id` over Modbus).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hilsec_core::board::{DisclosureDeclarations, Model, Unit};
use hilsec_core::device::{Device, RunEnv};
use hilsec_core::iface::http::HttpExchange;
use hilsec_core::results::ResultsFile;
use hilsec_core::template::Template;
use hilsec_core::test::{Outcome, Scope, Suite, Test, TestInfo, Verdict};

use super::{
    analyse_policy, analyse_support, check_provider_metadata, compare_support_end,
    read_support_data, support_data, PeriodChange,
};

const SUITE: &str = "disclosure";

pub fn suite() -> Suite {
    Suite {
        name: SUITE,
        description: "a published disclosure policy and security.txt; a support period with an end date, not shortened; the model designation as the unit reports it",
        tests: vec![
            Arc::new(PolicyPublished),
            Arc::new(SecurityTxt),
            Arc::new(CsafProvider),
            Arc::new(PeriodPublished),
            Arc::new(PeriodNotShortened),
            Arc::new(ModelDesignation),
        ],
    }
}

const fn info(
    id: &'static str,
    title: &'static str,
    provisions: &'static [&'static str],
) -> TestInfo {
    TestInfo {
        id,
        suite: SUITE,
        title,
        provisions,
        scope: Scope::Unit,
        timeout: Duration::from_secs(60),
        actions: &[],
    }
}

static POLICY: TestInfo = info(
    "disclosure.policy-published",
    "the vulnerability disclosure policy is public (no sign-in) and names a contact and timelines",
    &[
        "EN 303 645 5.2-1",
        "TS 103 701 5.2-1-1",
        "PSTI Sch.1 para 2",
    ],
);
static SECURITY_TXT: TestInfo = info(
    "disclosure.security-txt",
    "security.txt at /.well-known/ is valid (RFC 9116)",
    &["RFC 9116"],
);
static CSAF: TestInfo = info(
    "disclosure.csaf-provider",
    "CSAF 2.0 provider metadata is valid and served at the well-known URL; a provider role lists its distributions (requirements 7 and 9, section 7.2.2)",
    &["CSAF 2.0 7.1.7", "CSAF 2.0 7.1.9", "CSAF 2.0 7.2.2"],
);
static PERIOD: TestInfo = info(
    "support.period-published",
    "the support period is published with an end date",
    &[
        "EN 303 645 5.3-13",
        "TS 103 701 5.3-13-1",
        "PSTI Sch.1 para 3",
    ],
);
static NOT_SHORTENED: TestInfo = info(
    "support.period-not-shortened",
    "the published support period ends no earlier than in the baseline run",
    &["PSTI Sch.1 para 3"],
);
static MODEL: TestInfo = info(
    "identity.model-designation",
    "the model designation the unit reports matches the declared one",
    &["EN 303 645 5.3-16", "TS 103 701 5.3-16-1"],
);

/// A `[declarations.disclosure]` entry the board does not declare.
#[derive(Debug)]
struct NotDeclared(&'static str);

impl std::fmt::Display for NotDeclared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the board declares no {} in [declarations.disclosure]",
            self.0
        )
    }
}

impl std::error::Error for NotDeclared {}

fn declared<'a>(
    model: &'a Model,
    pick: fn(&DisclosureDeclarations) -> &Option<Template>,
    what: &'static str,
) -> Result<&'a Template, NotDeclared> {
    model
        .declarations
        .disclosure
        .as_ref()
        .and_then(|d| pick(d).as_ref())
        .ok_or(NotDeclared(what))
}

/// Fetches a declared URL; `Err(outcome)` when it could not be fetched at all.
async fn fetch(dev: &mut Device, t: &Template) -> Result<(String, HttpExchange), Outcome> {
    let url = dev
        .render(t)
        .map_err(|e| Outcome::error(format!("cannot build the declared URL: {e}")))?;
    match dev.http_get(&url, None).await {
        Ok(x) => Ok((url, x)),
        Err(e) => Err(Outcome::error(format!("no answer from {url}: {e}"))),
    }
}

fn redirects(x: &HttpExchange) -> String {
    if x.redirects.is_empty() {
        String::new()
    } else {
        format!(
            " (after {} redirect{} to {})",
            x.redirects.len(),
            if x.redirects.len() == 1 { "" } else { "s" },
            x.final_url
        )
    }
}

struct PolicyPublished;

#[async_trait]
impl Test for PolicyPublished {
    fn info(&self) -> &TestInfo {
        &POLICY
    }
    fn not_applicable(&self, model: &Model) -> Option<String> {
        declared(model, |d| &d.policy_url, "policy_url")
            .err()
            .map(|e| e.to_string())
    }
    async fn run_unit(&self, dev: &mut Device) -> Outcome {
        let t = match declared(&dev.model, |d| &d.policy_url, "policy_url") {
            Ok(t) => t.clone(),
            Err(e) => return Outcome::not_applicable(e.to_string()),
        };
        let (url, x) = match fetch(dev, &t).await {
            Ok(v) => v,
            Err(o) => return o,
        };
        if x.status != 200 {
            return Outcome::fail(format!(
                "the declared policy {url} answers HTTP {}{}: the policy is not published there",
                x.status,
                redirects(&x)
            ));
        }
        let findings = analyse_policy(&x.body, &x.final_url);
        let v = findings.verdict();
        let msg = format!("{url}{}: {}", redirects(&x), v.message());
        if v.is_complete() {
            Outcome::pass(msg)
        } else {
            Outcome::fail(msg)
        }
    }
}

struct SecurityTxt;

#[async_trait]
impl Test for SecurityTxt {
    fn info(&self) -> &TestInfo {
        &SECURITY_TXT
    }
    fn not_applicable(&self, model: &Model) -> Option<String> {
        declared(model, |d| &d.security_txt, "security_txt")
            .err()
            .map(|e| e.to_string())
    }
    async fn run_unit(&self, dev: &mut Device) -> Outcome {
        let t = match declared(&dev.model, |d| &d.security_txt, "security_txt") {
            Ok(t) => t.clone(),
            Err(e) => return Outcome::not_applicable(e.to_string()),
        };
        let base = match dev.render(&t) {
            Ok(u) => u,
            Err(e) => return Outcome::error(format!("cannot build the declared URL: {e}")),
        };
        let mut tried = Vec::new();
        for url in hilsec_securitytxt::candidate_urls(&base) {
            let x = match dev.http_get(&url, None).await {
                Ok(x) => x,
                Err(e) => return Outcome::error(format!("no answer from {url}: {e}")),
            };
            if x.status != 200 {
                tried.push(format!("{url}: HTTP {}", x.status));
                continue;
            }
            let ctx = hilsec_securitytxt::Context::new()
                .with_url(x.final_url.clone())
                .with_content_type(x.content_type.clone().unwrap_or_default());
            let report = hilsec_securitytxt::check_bytes(&x.body, &ctx);
            let list = |fs: &[hilsec_securitytxt::Finding]| {
                fs.iter()
                    .map(|f| match f.line {
                        Some(l) => format!("{} (line {l}): {}", f.code, f.message),
                        None => format!("{}: {}", f.code, f.message),
                    })
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let recs = if report.recommendations.is_empty() {
                String::new()
            } else {
                format!(" Recommendations: {}", list(&report.recommendations))
            };
            return if report.valid {
                Outcome::pass(format!("{} is valid.{recs}", x.final_url))
            } else {
                let codes: Vec<&str> = report.errors.iter().map(|f| f.code.as_str()).collect();
                Outcome::fail(format!(
                    "{} is invalid [{}]: {}.{recs}",
                    x.final_url,
                    codes.join(", "),
                    list(&report.errors)
                ))
            };
        }
        Outcome::fail(format!(
            "no security.txt is published ({})",
            tried.join("; ")
        ))
    }
}

/// CSAF provider metadata, fetched from the declared `csaf_provider` URL and judged by
/// [`check_provider_metadata`]: the schema (requirement 7), the well-known HTTPS location
/// without redirect (requirement 9) and a provider role's distributions (section 7.2.2).
/// Requirement 8 (a `CSAF` field in security.txt) is not part of this verdict: CSAF 2.0 asks
/// a provider for one of requirements 8 to 10, and this test holds it to 9.
struct CsafProvider;

#[async_trait]
impl Test for CsafProvider {
    fn info(&self) -> &TestInfo {
        &CSAF
    }
    fn not_applicable(&self, model: &Model) -> Option<String> {
        declared(model, |d| &d.csaf_provider, "csaf_provider")
            .err()
            .map(|e| format!("{e} (CSAF is optional)"))
    }
    async fn run_unit(&self, dev: &mut Device) -> Outcome {
        let t = match declared(&dev.model, |d| &d.csaf_provider, "csaf_provider") {
            Ok(t) => t.clone(),
            Err(e) => return Outcome::not_applicable(e.to_string()),
        };
        let (url, x) = match fetch(dev, &t).await {
            Ok(v) => v,
            Err(o) => return o,
        };
        if x.status != 200 {
            return Outcome::fail(format!("{url} answers HTTP {}{}", x.status, redirects(&x)));
        }
        let f = check_provider_metadata(&x.body, &url, &x.final_url);
        if f.is_valid() {
            Outcome::pass(f.summary())
        } else {
            Outcome::fail(f.summary())
        }
    }
}

/// Memo key: the end date the support page stated in this run.
const END_MEMO: &str = "support.end-date";

const ISO_DATE: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

/// Why the support page gave no findings.
enum SupportPage {
    /// The page answered, but not with 200: nothing is published there.
    NotPublished { url: String, status: String },
    /// The test cannot judge (not declared, no answer): the outcome says why.
    Unjudged(Outcome),
}

async fn support_findings(
    dev: &mut Device,
) -> Result<(String, super::SupportFindings), SupportPage> {
    let t = declared(&dev.model, |d| &d.support_url, "support_url")
        .map_err(|e| SupportPage::Unjudged(Outcome::not_applicable(e.to_string())))?
        .clone();
    let (url, x) = fetch(dev, &t).await.map_err(SupportPage::Unjudged)?;
    if x.status != 200 {
        return Err(SupportPage::NotPublished {
            status: format!("HTTP {}{}", x.status, redirects(&x)),
            url,
        });
    }
    Ok((url, analyse_support(&x.body)))
}

struct PeriodPublished;

#[async_trait]
impl Test for PeriodPublished {
    fn info(&self) -> &TestInfo {
        &PERIOD
    }
    fn not_applicable(&self, model: &Model) -> Option<String> {
        declared(model, |d| &d.support_url, "support_url")
            .err()
            .map(|e| e.to_string())
    }
    async fn run_unit(&self, dev: &mut Device) -> Outcome {
        let (url, f) = match support_findings(dev).await {
            Ok(v) => v,
            Err(SupportPage::Unjudged(o)) => return o,
            Err(SupportPage::NotPublished { url, status }) => {
                return Outcome::fail(format!(
                    "the declared support page {url} answers {status}: no support period is published there"
                ))
                .with_data(support_data(None))
            }
        };
        let data = support_data(f.end_date);
        match f.end_date {
            Some(d) => {
                if let Ok(text) = d.format(ISO_DATE) {
                    dev.memo().insert(END_MEMO.into(), text);
                }
                Outcome::pass(format!("{url}: {}", f.message())).with_data(data)
            }
            None => Outcome::fail(format!("{url}: {}", f.message())).with_data(data),
        }
    }
}

/// The end date the baseline run found for the unit `board`, read from the `data` its
/// `support.period-published` record carries (see [`support_data`]). `Ok(None)`: that run read
/// the page and found no end date. `Err(outcome)`: there is nothing to compare with, and the
/// outcome (`not_applicable` or `inconclusive`) says why.
fn baseline_end(
    baseline: &serde_json::Value,
    board: &str,
) -> Result<(Option<time::Date>, String), Outcome> {
    let file = ResultsFile::from_value(baseline).map_err(|e| {
        Outcome::inconclusive(format!("cannot compare: the baseline cannot be read: {e}"))
    })?;
    let Some(rec) = file.record(board, PERIOD.id) else {
        return Err(Outcome::not_applicable(format!(
            "the baseline run has no {} record for {board}: there is nothing to compare with",
            PERIOD.id
        )));
    };
    match &rec.data {
        Some(data) => read_support_data(data)
            .map(|d| (d, rec.message.clone()))
            .map_err(|e| {
                Outcome::inconclusive(format!(
                    "cannot compare: the baseline's {} record for {board} carries data this version does not understand ({e})",
                    PERIOD.id
                ))
            }),
        None if file.run.schema < 2 => Err(Outcome::inconclusive(format!(
            "cannot compare: the baseline was written by hilsec {} in the old results.json format (schema {}), whose records carry no structured end date; its message text is not read as data. Re-run the baseline with this version. The baseline's {} record for {board} was {}: {}",
            file.run.version, file.run.schema, PERIOD.id, rec.verdict, rec.message
        ))),
        None => Err(Outcome::inconclusive(format!(
            "cannot compare: the baseline run did not read the support page of {board} ({} was {}: {})",
            PERIOD.id, rec.verdict, rec.message
        ))),
    }
}

struct PeriodNotShortened;

const NO_BASELINE: &str = "no baseline: run with --baseline FILE (an earlier run's results.json)";

/// Why there is nothing to compare with when the baseline run found no end date.
fn no_earlier_end(said: &str) -> String {
    format!(
        "the baseline run found no end date of the support period (it said: {said}), so there is no earlier end date to compare with"
    )
}

#[async_trait]
impl Test for PeriodNotShortened {
    fn info(&self) -> &TestInfo {
        &NOT_SHORTENED
    }
    fn not_applicable(&self, model: &Model) -> Option<String> {
        declared(model, |d| &d.support_url, "support_url")
            .err()
            .map(|e| e.to_string())
    }
    /// Not applicable without a baseline, when the baseline has no record of the unit, or when
    /// it found no end date; a baseline that cannot be compared with is `inconclusive`, decided
    /// by the test itself.
    fn not_applicable_in(&self, model: &Model, unit: &Unit, env: &RunEnv) -> Option<String> {
        if let Some(reason) = self.not_applicable(model) {
            return Some(reason);
        }
        let Some(baseline) = env.baseline.as_deref() else {
            return Some(NO_BASELINE.into());
        };
        match baseline_end(baseline, &unit.name) {
            Err(o) if o.verdict == Verdict::NotApplicable => Some(o.message),
            Ok((None, said)) => Some(no_earlier_end(&said)),
            _ => None,
        }
    }
    async fn run_unit(&self, dev: &mut Device) -> Outcome {
        let Some(baseline) = dev.env().baseline.clone() else {
            return Outcome::not_applicable(NO_BASELINE);
        };
        let earlier = match baseline_end(&baseline, &dev.unit.name) {
            Ok((Some(d), _)) => d,
            Ok((None, said)) => return Outcome::not_applicable(no_earlier_end(&said)),
            Err(o) => return o,
        };
        let memo = dev
            .memo()
            .get(END_MEMO)
            .and_then(|d| time::Date::parse(d, ISO_DATE).ok());
        let current = match memo {
            Some(d) => Some(d),
            None => match support_findings(dev).await {
                Ok((_, f)) => f.end_date,
                Err(SupportPage::Unjudged(o)) => return o,
                Err(SupportPage::NotPublished { url, status }) => {
                    return Outcome::fail(format!(
                        "an earlier run found the support period ending on {earlier}, but the declared support page {url} now answers {status}: the end date was withdrawn"
                    ))
                }
            },
        };
        let change = compare_support_end(earlier, current);
        let verdict = match change {
            PeriodChange::Shortened(_) | PeriodChange::Withdrawn(_) => Verdict::Fail,
            PeriodChange::Unchanged(_) | PeriodChange::Extended(_) => Verdict::Pass,
        };
        // {"support_end": now, or null, "baseline_support_end": the earlier run's}.
        let mut data = support_data(current);
        if let Some(obj) = data.as_object_mut() {
            let e = earlier
                .format(ISO_DATE)
                .unwrap_or_else(|_| earlier.to_string());
            obj.insert("baseline_support_end".into(), e.into());
        }
        Outcome::new(verdict, change.message()).with_data(data)
    }
}

struct ModelDesignation;

/// Actions that read the unit's identity, and the captures that carry a model designation.
const IDENTITY_ACTIONS: [&str; 2] = ["read_identity", "read_device_id"];
const MODEL_CAPTURES: [&str; 3] = ["model", "model_name", "product_name"];

#[async_trait]
impl Test for ModelDesignation {
    fn info(&self) -> &TestInfo {
        &MODEL
    }
    fn actions(&self, model: &Model) -> Vec<String> {
        IDENTITY_ACTIONS
            .iter()
            .filter(|a| model.has_action(a))
            .map(|a| a.to_string())
            .collect()
    }
    fn not_applicable(&self, model: &Model) -> Option<String> {
        if IDENTITY_ACTIONS.iter().any(|a| model.has_action(a)) {
            None
        } else {
            Some("the board defines neither read_identity nor read_device_id".into())
        }
    }
    async fn run_unit(&self, dev: &mut Device) -> Outcome {
        let declared = dev.model.name.clone();
        let norm = |s: &str| {
            s.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase()
        };
        let mut seen = Vec::new();
        let mut mismatches = Vec::new();
        for action in IDENTITY_ACTIONS {
            if !dev.has_action(action) {
                continue;
            }
            let out = match dev.run_action(action, &[]).await {
                Ok(o) => o,
                Err(e) => return Outcome::from(e),
            };
            for cap in MODEL_CAPTURES {
                if let Some(v) = out.captures.get(cap) {
                    let entry = format!("{action}: {cap} = {v:?}");
                    if norm(v) == norm(&declared) {
                        seen.push(entry);
                    } else {
                        mismatches.push(entry);
                    }
                }
            }
        }
        if !mismatches.is_empty() {
            Outcome::fail(format!(
                "the unit reports a model other than the declared {declared:?}: {}",
                mismatches.join("; ")
            ))
        } else if seen.is_empty() {
            Outcome::inconclusive(format!(
                "the identity actions captured no model designation (expected a capture named {})",
                MODEL_CAPTURES.join(", ")
            ))
        } else {
            Outcome::pass(format!(
                "matches the declared {declared:?}: {}",
                seen.join("; ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hilsec_core::test::Verdict;
    use time::macros::date;

    /// A results.json with one support.period-published record for `sim-plug-1`.
    fn baseline(
        schema: Option<u32>,
        verdict: &str,
        data: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let mut rec = serde_json::json!({
            "board": "sim-plug-1", "model": "SimPlug S1", "suite": "disclosure",
            "test": PERIOD.id, "verdict": verdict, "provisions": [],
            "message": "https://x.test/support: the support period ends on 2031-06-30",
            "duration_ms": 4, "evidence": null
        });
        if let Some(d) = data {
            rec["data"] = d;
        }
        let mut run = serde_json::json!({
            "tool": "hilsec", "version": "0.1.0", "started": "2026-01-01T00:00:00.000Z",
            "finished": "2026-01-01T00:00:01.000Z", "duration_ms": 1000, "interrupted": false,
            "units": [],
            "counts": {"pass": 1, "fail": 0, "inconclusive": 0, "not_applicable": 0, "error": 0}
        });
        if let Some(s) = schema {
            run["schema"] = s.into();
        }
        serde_json::json!({"run": run, "tests": [rec]})
    }

    fn refused(r: Result<(Option<time::Date>, String), Outcome>) -> Outcome {
        match r {
            Ok(v) => panic!("expected no comparison, got {v:?}"),
            Err(o) => o,
        }
    }

    #[test]
    fn baseline_end_date_is_read_from_typed_data() {
        let b = baseline(
            Some(2),
            "pass",
            Some(serde_json::json!({"support_end": "2031-06-30"})),
        );
        let (d, _) = baseline_end(&b, "sim-plug-1").expect("comparable");
        assert_eq!(d, Some(date!(2031 - 06 - 30)));
        let b = baseline(
            Some(2),
            "fail",
            Some(serde_json::json!({"support_end": null})),
        );
        let (d, said) = baseline_end(&b, "sim-plug-1").expect("read");
        assert_eq!(d, None);
        assert!(said.contains("https://x.test/support"), "{said}");
    }

    #[test]
    fn the_message_text_is_not_read_as_data() {
        // Old format: the message says "ends on 2031-06-30", but there is no data.
        let o = refused(baseline_end(&baseline(None, "pass", None), "sim-plug-1"));
        assert_eq!(o.verdict, Verdict::Inconclusive);
        assert!(
            o.message.contains("old results.json format (schema 1)")
                && o.message.contains("Re-run the baseline"),
            "{}",
            o.message
        );
    }

    #[test]
    fn baselines_that_cannot_be_compared_say_why() {
        let o = refused(baseline_end(
            &baseline(Some(2), "error", None),
            "sim-plug-1",
        ));
        assert_eq!(o.verdict, Verdict::Inconclusive);
        assert!(
            o.message.contains("did not read the support page"),
            "{}",
            o.message
        );
        let o = refused(baseline_end(
            &baseline(Some(2), "pass", Some(serde_json::json!({"end": "2031"}))),
            "sim-plug-1",
        ));
        assert_eq!(o.verdict, Verdict::Inconclusive);
        assert!(o.message.contains("support_end"), "{}", o.message);
        let o = refused(baseline_end(
            &baseline(
                Some(2),
                "pass",
                Some(serde_json::json!({"support_end": "2031-06-30"})),
            ),
            "sim-plug-2",
        ));
        assert_eq!(o.verdict, Verdict::NotApplicable);
        assert!(o.message.contains("sim-plug-2"), "{}", o.message);
        let o = refused(baseline_end(
            &serde_json::json!({"tests": []}),
            "sim-plug-1",
        ));
        assert_eq!(o.verdict, Verdict::Inconclusive);
        assert!(o.message.contains("missing field `run`"), "{}", o.message);
    }

    /// The CSAF test cites exactly the sections whose errors can fail it: every cited
    /// section is produced as an error by some document, and no error cites a section the
    /// test does not (warnings do not decide the verdict, so they are not cited).
    #[test]
    fn csaf_provisions_are_the_sections_checked() {
        const WK: &str = "https://example.com/.well-known/csaf/provider-metadata.json";
        let good = r#"{"canonical_url": "https://example.com/.well-known/csaf/provider-metadata.json",
            "distributions": [{"directory_url": "https://example.com/.well-known/csaf/"}],
            "last_updated": "2024-01-24T20:20:56Z", "list_on_CSAF_aggregators": true,
            "metadata_version": "2.0", "mirror_on_CSAF_aggregators": true,
            "publisher": {"category": "vendor", "name": "Example", "namespace": "https://example.com"},
            "role": "csaf_provider"}"#;
        let no_distributions = good.replace(
            r#""distributions": [{"directory_url": "https://example.com/.well-known/csaf/"}],"#,
            "",
        );
        let cases = [
            (good.replace("2.0", "1.0"), WK.to_string()),
            (
                good.to_string(),
                "http://example.com/csaf/provider-metadata.json".into(),
            ),
            (no_distributions, WK.to_string()),
        ];
        let mut sections = std::collections::BTreeSet::new();
        for (doc, served) in &cases {
            let f = check_provider_metadata(doc.as_bytes(), WK, served);
            sections.extend(f.errors().map(|p| format!("CSAF 2.0 {}", p.section)));
        }
        let cited: std::collections::BTreeSet<String> =
            CSAF.provisions.iter().map(|p| p.to_string()).collect();
        assert_eq!(sections, cited);
        assert!(check_provider_metadata(good.as_bytes(), WK, WK).is_valid());
    }
}
