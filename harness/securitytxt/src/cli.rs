//! `hilsec securitytxt check FILE|URL [--now RFC3339] [--json]`.
//!
//! This module exists so that the `hilsec` binary only has to mount these arguments and,
//! for a URL, do the HTTP fetch: reading a file without reading unbounded input, parsing
//! `--now`, printing the human or JSON report and choosing the exit status all live here,
//! next to the validator they describe.
//!
//! Exit status: 0 valid, 1 invalid, 2 the file could not be read or `--now` is not
//! RFC 3339 (see [`Error::exit_code`]).
//!
//! The JSON output is exactly `{"valid": bool, "errors": [...], "recommendations": [...]}`,
//! each entry `{"code": ..., "line": ... or null, "message": ...}`; scripts depend on it.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::{check_bytes, Context, Finding, Report, MAX_SIZE};

/// `hilsec securitytxt <COMMAND>`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum Command {
    /// Validate a security.txt (RFC 9116) file or URL.
    Check(Args),
}

/// Arguments of `hilsec securitytxt check`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct Args {
    /// A security.txt file, or an http(s) URL to fetch it from.
    #[arg(value_name = "FILE|URL")]
    pub target: String,

    /// Judge `Expires` as of this time instead of now (RFC 3339, e.g. 2025-06-01T00:00:00Z).
    #[arg(long, value_name = "RFC3339")]
    pub now: Option<String>,

    /// Print `{"valid", "errors", "recommendations"}` as JSON instead of a human report.
    #[arg(long)]
    pub json: bool,

    /// For a URL: also trust this CA certificate (PEM), e.g. a lab CA (repeatable).
    #[arg(long, value_name = "PEM")]
    pub ca: Vec<PathBuf>,
}

impl Args {
    /// Whether the target is a URL (to be fetched by the caller) rather than a file.
    pub fn is_url(&self) -> bool {
        is_url(&self.target)
    }
}

/// Whether `target` is an `http://` or `https://` URL.
pub fn is_url(target: &str) -> bool {
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// Why `check` could not produce a verdict (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened or read.
    #[error("cannot read {}: {source}; check the path and permissions", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// `--now` is not an RFC 3339 date-time.
    #[error("--now {value:?} is not an RFC 3339 date-time; write e.g. --now 2025-06-01T00:00:00Z")]
    BadNow {
        /// The value given.
        value: String,
    },
    /// A URL was given where only files are handled.
    #[error("{url}: fetching URLs is not available here; download the file and pass its path")]
    UrlNotSupported {
        /// The URL given.
        url: String,
    },
}

impl Error {
    /// The process exit status for this error: always 2.
    pub fn exit_code(&self) -> i32 {
        2
    }
}

/// Parses `--now`; `None` means the current time.
pub fn parse_now(now: Option<&str>) -> Result<OffsetDateTime, Error> {
    match now {
        None => Ok(OffsetDateTime::now_utc()),
        Some(s) => crate::fields::parse_expiry(s).ok_or_else(|| Error::BadNow {
            value: s.to_string(),
        }),
    }
}

/// Reads at most [`MAX_SIZE`] + 1 bytes of `path`: enough for the validator to see that a
/// file is too large, without ever reading an unbounded file into memory.
pub fn read_capped(path: &Path) -> Result<Vec<u8>, Error> {
    let err = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(err)?;
    let mut bytes = Vec::new();
    file.take(MAX_SIZE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(err)?;
    Ok(bytes)
}

/// Runs `check` for `args`. A URL target is an [`Error::UrlNotSupported`]: the harness
/// fetches URLs itself and calls [`run_check_bytes`].
pub fn run(args: &Args) -> Result<i32, Error> {
    if args.is_url() {
        return Err(Error::UrlNotSupported {
            url: args.target.clone(),
        });
    }
    run_check_file(Path::new(&args.target), args.now.as_deref(), args.json)
}

/// Checks a file and prints the report to stdout. Returns the exit status (0 valid,
/// 1 invalid); an unreadable file or bad `now` is an `Err` (exit status 2).
pub fn run_check_file(path: &Path, now: Option<&str>, json: bool) -> Result<i32, Error> {
    run_check_file_to(&mut io::stdout().lock(), path, now, json)
}

/// [`run_check_file`], writing the report to `w` instead of stdout.
pub fn run_check_file_to(
    w: &mut dyn Write,
    path: &Path,
    now: Option<&str>,
    json: bool,
) -> Result<i32, Error> {
    let now = parse_now(now)?;
    let bytes = read_capped(path)?;
    let ctx = Context::new().with_now(now);
    Ok(run_check_bytes_to(
        w,
        &path.display().to_string(),
        &bytes,
        &ctx,
        json,
    ))
}

/// Checks already-fetched bytes and prints the report to stdout; `source` names them in
/// the human report (a path or the URL). Returns the exit status: 0 valid, 1 invalid.
pub fn run_check_bytes(source: &str, bytes: &[u8], ctx: &Context, json: bool) -> i32 {
    run_check_bytes_to(&mut io::stdout().lock(), source, bytes, ctx, json)
}

/// [`run_check_bytes`], writing the report to `w` instead of stdout.
pub fn run_check_bytes_to(
    w: &mut dyn Write,
    source: &str,
    bytes: &[u8],
    ctx: &Context,
    json: bool,
) -> i32 {
    let report = check_bytes(bytes, ctx);
    // A closed stdout (e.g. piped into `head`) must not turn a verdict into a panic.
    let _ = write_report(w, source, &report, json).and_then(|()| w.flush());
    exit_code(&report)
}

/// 0 for a valid report, 1 otherwise.
pub fn exit_code(report: &Report) -> i32 {
    if report.valid {
        0
    } else {
        1
    }
}

/// Writes the report, as JSON or for a human.
pub fn write_report(
    w: &mut dyn Write,
    source: &str,
    report: &Report,
    json: bool,
) -> io::Result<()> {
    if json {
        writeln!(w, "{}", render_json(report))
    } else {
        w.write_all(render_human(source, report).as_bytes())
    }
}

#[derive(Serialize)]
struct JsonReport<'a> {
    valid: bool,
    errors: &'a [Finding],
    recommendations: &'a [Finding],
}

/// `{"valid": bool, "errors": [...], "recommendations": [...]}`, pretty-printed.
pub fn render_json(report: &Report) -> String {
    let j = JsonReport {
        valid: report.valid,
        errors: &report.errors,
        recommendations: &report.recommendations,
    };
    // Serialising plain strings, numbers and bools cannot fail.
    serde_json::to_string_pretty(&j).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// One line per finding, `SOURCE:LINE: kind[code]: message`, then a summary line.
pub fn render_human(source: &str, report: &Report) -> String {
    let mut s = String::new();
    let mut push = |kind: &str, f: &Finding| {
        let at = match f.line {
            Some(n) => format!("{source}:{n}"),
            None => source.to_string(),
        };
        s.push_str(&format!("{at}: {kind}[{}]: {}\n", f.code, f.message));
    };
    for f in &report.errors {
        push("error", f);
    }
    for f in &report.recommendations {
        push("recommendation", f);
    }
    for f in &report.notes {
        push("note", f);
    }
    let verdict = if report.valid { "valid" } else { "INVALID" };
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let (e, r) = (report.errors.len(), report.recommendations.len());
    s.push_str(&format!(
        "{source}: {verdict} security.txt ({e} error{}, {r} recommendation{})\n",
        plural(e),
        plural(r)
    ));
    if let Some(at) = report.fields.expires_at {
        if let Ok(t) = at.format(&Rfc3339) {
            s.push_str(&format!("  expires: {t}\n"));
        }
    }
    for c in &report.fields.contacts {
        s.push_str(&format!("  contact: {c}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Top {
        #[command(subcommand)]
        cmd: Command,
    }

    #[test]
    fn parses_the_documented_command_line() {
        let t = Top::try_parse_from([
            "x",
            "check",
            "f.txt",
            "--now",
            "2025-06-01T00:00:00Z",
            "--json",
        ])
        .unwrap();
        let Command::Check(a) = t.cmd;
        assert_eq!(a.target, "f.txt");
        assert_eq!(a.now.as_deref(), Some("2025-06-01T00:00:00Z"));
        assert!(a.json);
        assert!(!a.is_url());
    }

    #[test]
    fn urls_are_recognised() {
        assert!(is_url("https://example.com/.well-known/security.txt"));
        assert!(is_url("HTTP://x"));
        assert!(!is_url("./https.txt"));
        assert!(!is_url("é"));
    }

    #[test]
    fn bad_now_is_exit_2() {
        let e = parse_now(Some("tomorrow")).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn json_has_exactly_three_keys() {
        let r = check_bytes(b"Contact: http://x.example\n", &Context::new());
        let v: serde_json::Value = serde_json::from_str(&render_json(&r)).unwrap();
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, vec!["errors", "recommendations", "valid"]);
        assert_eq!(v["valid"], false);
        let first = &v["errors"][0];
        assert_eq!(first["code"], "no_https");
        assert_eq!(first["line"], 1);
        assert!(first["message"].is_string());
    }
}
