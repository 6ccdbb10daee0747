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
use hilsec_core::board::{DisclosureDeclarations, Model};
use hilsec_core::device::Device;
use hilsec_core::iface::http::HttpExchange;
use hilsec_core::template::Template;
use hilsec_core::test::{Outcome, Scope, Suite, Test, TestInfo};

use super::{analyse_policy, analyse_support, check_provider_metadata, compare_support_end};

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
    &["RFC 9116", "EN 303 645 5.2-1"],
);
static CSAF: TestInfo = info(
    "disclosure.csaf-provider",
    "CSAF 2.0 provider metadata is published and complete (requirements 7-9)",
    &["CSAF 2.0 7.1.7", "CSAF 2.0 7.1.8", "CSAF 2.0 7.1.9"],
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

fn declared<'a>(
    model: &'a Model,
    pick: fn(&DisclosureDeclarations) -> &Option<Template>,
    what: &str,
) -> Result<&'a Template, String> {
    model
        .declarations
        .disclosure
        .as_ref()
        .and_then(|d| pick(d).as_ref())
        .ok_or_else(|| format!("the board declares no {what} in [declarations.disclosure]"))
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
        declared(model, |d| &d.policy_url, "policy_url").err()
    }
    async fn run_unit(&self, dev: &mut Device) -> Outcome {
        let t = match declared(&dev.model, |d| &d.policy_url, "policy_url") {
            Ok(t) => t.clone(),
            Err(e) => return Outcome::not_applicable(e),
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
        declared(model, |d| &d.security_txt, "security_txt").err()
    }
    async fn run_unit(&self, dev: &mut Device) -> Outcome {
        let t = match declared(&dev.model, |d| &d.security_txt, "security_txt") {
            Ok(t) => t.clone(),
            Err(e) => return Outcome::not_applicable(e),
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
            Err(e) => return Outcome::not_applicable(e),
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

async fn support_findings(dev: &mut Device) -> Result<(String, super::SupportFindings), Outcome> {
    let t = declared(&dev.model, |d| &d.support_url, "support_url")
        .map_err(Outcome::not_applicable)?
        .clone();
    let (url, x) = fetch(dev, &t).await?;
    if x.status != 200 {
        return Err(Outcome::fail(format!(
            "the declared support page {url} answers HTTP {}{}",
            x.status,
            redirects(&x)
        )));
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
        declared(model, |d| &d.support_url, "support_url").err()
    }
    async fn run_unit(&self, dev: &mut Device) -> Outcome {
        let (url, f) = match support_findings(dev).await {
            Ok(v) => v,
            Err(o) => return o,
        };
        match f.end_date {
            Some(d) => {
                dev.memo().insert(END_MEMO.into(), d.to_string());
                Outcome::pass(format!("{url}: {}", f.message()))
            }
            None => Outcome::fail(format!("{url}: {}", f.message())),
        }
    }
}

/// The end date the baseline run recorded for `board`, from its support.period-published
/// message ("... ends on YYYY-MM-DD ...").
fn baseline_end(baseline: &serde_json::Value, board: &str) -> Result<Option<time::Date>, String> {
    let tests = baseline["tests"]
        .as_array()
        .ok_or("the baseline is not a hilsec results.json (no `tests`)")?;
    let Some(rec) = tests
        .iter()
        .find(|t| t["board"] == board && t["test"] == PERIOD.id)
    else {
        return Err(format!(
            "the baseline has no {} record for {board}",
            PERIOD.id
        ));
    };
    if rec["verdict"] != "pass" {
        return Ok(None);
    }
    let msg = rec["message"].as_str().unwrap_or("");
    let re = regex::Regex::new(r"ends on (\d{4}-\d{2}-\d{2})").map_err(|e| e.to_string())?;
    let Some(c) = re.captures(msg) else {
        return Ok(None);
    };
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(&c[1], &fmt)
        .map(Some)
        .map_err(|e| format!("the baseline's date {:?}: {e}", &c[1]))
}

struct PeriodNotShortened;

#[async_trait]
impl Test for PeriodNotShortened {
    fn info(&self) -> &TestInfo {
        &NOT_SHORTENED
    }
    fn not_applicable(&self, model: &Model) -> Option<String> {
        declared(model, |d| &d.support_url, "support_url").err()
    }
    async fn run_unit(&self, dev: &mut Device) -> Outcome {
        let Some(baseline) = dev.env().baseline.clone() else {
            return Outcome::not_applicable(
                "no baseline: run with --baseline FILE (an earlier run's results.json)",
            );
        };
        let earlier = match baseline_end(&baseline, &dev.unit.name) {
            Ok(d) => d,
            Err(e) => return Outcome::not_applicable(e),
        };
        let current = match dev.memo().get(END_MEMO).cloned() {
            Some(d) => {
                let fmt = time::macros::format_description!("[year]-[month]-[day]");
                time::Date::parse(&d, &fmt).ok()
            }
            None => match support_findings(dev).await {
                Ok((_, f)) => f.end_date,
                Err(o) => return o,
            },
        };
        let change = compare_support_end(earlier, current);
        if change.is_shortened() {
            Outcome::fail(change.message().to_string())
        } else {
            Outcome::pass(change.message().to_string())
        }
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
