//! The `hilsec` command line: parses arguments (contract: README.md, "Using it"), loads board
//! files, wires the runner's event stream to the reporters, and maps results to exit codes.
//!
//! Exit codes (the list in README.md is the contract): 0 no fail and no error; 1 at least one
//! `fail`; 2 usage, board-file, `--baseline` or output-folder error (nothing run); 3 at least
//! one `error` and no `fail`, or the run could not start (runtime, embedded broker) or a
//! reporter could not write; 130 interrupted (Ctrl-C, SIGTERM), whatever the verdicts so far.

mod lease_cmd;
mod merge_cmd;
mod report_cmd;
mod shard;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use hilsec_core::board::{load_boards, Board, BoardError, Interface, LoadMode, MqttBroker};
use hilsec_core::device::RunEnv;
use hilsec_core::runner::{self, RunConfig};
use hilsec_core::test::{Scope, Suite};
use hilsec_core::CancellationToken;
use hilsec_report::{
    EvidenceReporter, Fanout, JournalReporter, Reporter, ResultsReporter, TerminalReporter,
};

/// The folder `hilsec run` uses when no `--board` is given.
const DEFAULT_BOARDS: &str = "boards/sim";
/// The folder results go to when no `--out` is given.
const DEFAULT_OUT: &str = "results";

#[derive(Debug, Parser)]
#[command(
    name = "hilsec",
    version,
    about = "Checks IoT devices for the 'secure by default' baseline (EN 303 645, PSTI) over their real interfaces",
    propagate_version = false
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run conformance suites on the units described by board files.
    #[command(after_help = RUN_EXIT_STATUS)]
    Run(RunArgs),
    /// List tests, their provisions and whether each applies to each board's model.
    List(ListArgs),
    /// Validate board files without running anything; errors name file:line:col. Warns about
    /// what `run` would still refuse (unset `env` secrets).
    CheckBoard {
        /// Board files or folders of them.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
    },
    /// MCUboot-format update images: inspect, sign, verify, mutate, keygen.
    #[command(subcommand)]
    Image(hilsec_image::cli::ImageCommand),
    /// security.txt (RFC 9116) validation.
    #[command(subcommand)]
    Securitytxt(hilsec_securitytxt::cli::Command),
    /// Debug probes (SWD/JTAG) attached to this machine.
    #[command(subcommand)]
    Probe(ProbeCommand),
    /// Merge the output folders of several runs (e.g. the shards of one run) into one:
    /// junit.xml, results.json, journal.jsonl, evidence/ and report.html.
    Merge {
        /// The runs' output folders (each with a results.json).
        #[arg(required = true, value_name = "DIR")]
        dirs: Vec<PathBuf>,
        /// Where the merged results go (created; must not be one of the inputs).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// (Re)write DIR/report.html, the provision report, from DIR/results.json.
    Report {
        /// An output folder of `hilsec run` or `hilsec merge`.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Leases on shared benches: which run holds which unit.
    #[command(subcommand)]
    Lease(lease_cmd::LeaseCommand),
}

#[derive(Debug, Subcommand)]
enum ProbeCommand {
    /// List the attached probes with the `probe = "VID:PID:SERIAL"` a board file uses to select
    /// each.
    List {
        /// One JSON object per probe instead of the table.
        #[arg(long)]
        json: bool,
    },
}

const RUN_EXIT_STATUS: &str = "Exit status: 0 no fail and no error; 1 at least one fail; \
2 usage or board-file error (nothing run); 3 at least one error and no fail; 130 interrupted \
(Ctrl-C or SIGTERM; finished tests are still written).";

#[derive(Debug, clap::Args)]
struct ListArgs {
    /// Board file or folder of board files (repeatable; default boards/sim if present).
    #[arg(long = "board", value_name = "PATH")]
    boards: Vec<PathBuf>,
    /// List only this suite (repeatable; default all).
    #[arg(long = "suite", value_name = "NAME")]
    suites: Vec<String>,
    /// List only tests whose id matches this glob, e.g. 'support.*' (repeatable).
    #[arg(long = "test", value_name = "GLOB")]
    tests: Vec<String>,
    /// An earlier run's results.json, as `run --baseline` takes it: applicability is shown as
    /// a run with it decides (support.period-not-shortened needs one).
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Board file or folder of board files (repeatable; default boards/sim).
    #[arg(long = "board", value_name = "PATH")]
    boards: Vec<PathBuf>,
    /// Run only this suite (repeatable; default all).
    #[arg(long = "suite", value_name = "NAME")]
    suites: Vec<String>,
    /// Run only tests whose id matches this glob, e.g. 'support.*' or
    /// 'password.universal-default-rejected' (repeatable; with --suite: tests of those suites
    /// that match).
    #[arg(long = "test", value_name = "GLOB")]
    tests: Vec<String>,
    /// Folder for junit.xml, results.json, journal.jsonl and evidence/.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_OUT)]
    out: PathBuf,
    /// Most units driven at once (default: all of them).
    #[arg(long, value_name = "N", default_value_t = 0)]
    jobs: usize,
    /// An earlier run's results.json, for tests that compare with it
    /// (support.period-not-shortened).
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    /// Use this MQTT broker (host:port) wherever a board says `broker = "embedded"`, instead
    /// of starting the embedded one (e.g. the lab's mosquitto).
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_broker)]
    mqtt_broker: Option<std::net::SocketAddr>,
    /// Override every test's own timeout, e.g. "30s" (for benches with slow devices).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    test_timeout: Option<std::time::Duration>,
    /// Run only shard I of N (1-based), e.g. 2/4: models are split over the shards, a model's
    /// units staying together; the same board files always give the same split.
    #[arg(long, value_name = "I/N", value_parser = shard::Shard::parse)]
    shard: Option<shard::Shard>,
    #[command(flatten)]
    lease: lease_cmd::LeaseArgs,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration ({e}); write e.g. 30s, 1500ms or 2m"))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // Help and version are not errors; everything else is a usage error (2).
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let code = match cli.command {
        Command::Run(args) => cmd_run(args),
        Command::List(args) => cmd_list(args),
        Command::CheckBoard { paths } => cmd_check_board(&paths),
        Command::Probe(ProbeCommand::List { json }) => cmd_probe_list(json),
        Command::Merge { dirs, out } => merge_cmd::run(&dirs, &out),
        Command::Report { dir } => report_cmd::run(&dir),
        Command::Lease(cmd) => lease_cmd::run(cmd),
        Command::Image(cmd) => hilsec_image::cli::run(&cmd).unwrap_or_else(|e| {
            eprintln!("hilsec image: {e}");
            2
        }),
        Command::Securitytxt(hilsec_securitytxt::cli::Command::Check(args)) if args.is_url() => {
            check_security_txt_url(&args)
        }
        Command::Securitytxt(hilsec_securitytxt::cli::Command::Check(args)) => {
            hilsec_securitytxt::cli::run(&args).unwrap_or_else(|e| {
                eprintln!("hilsec securitytxt: {e}");
                e.exit_code()
            })
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(2))
}

/// `hilsec securitytxt check URL`: fetches like a researcher would (the URL as given; for a
/// bare origin `/.well-known/security.txt`, then the legacy `/security.txt`), then validates
/// with what the fetch showed (final URL, Content-Type). Exit 2 when nothing could be fetched.
fn check_security_txt_url(args: &hilsec_securitytxt::cli::Args) -> i32 {
    use hilsec_core::iface::http::{HttpClient, HttpOptions};
    use hilsec_core::transcript::Transcript;
    let now = match hilsec_securitytxt::cli::parse_now(args.now.as_deref()) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("hilsec securitytxt: {e}");
            return 2;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hilsec securitytxt: cannot start the async runtime: {e}");
            return 2;
        }
    };
    let opts = HttpOptions {
        ca: args.ca.clone(),
        timeout: std::time::Duration::from_secs(15),
        max_body: hilsec_securitytxt::MAX_SIZE + 1,
        ..Default::default()
    };
    let client = match HttpClient::new(&opts) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hilsec securitytxt: {e}");
            return 2;
        }
    };
    let candidates = hilsec_securitytxt::candidate_urls(&args.target);
    let t = Transcript::new();
    let mut last_problem = String::new();
    for url in &candidates {
        match rt.block_on(client.get(url, None, &t, "http")) {
            Ok(x) if x.status == 200 => {
                let ctx = hilsec_securitytxt::Context::new()
                    .with_url(x.final_url.clone())
                    .with_now(now);
                let ctx = match &x.content_type {
                    Some(ct) => ctx.with_content_type(ct.clone()),
                    None => ctx.with_content_type(""),
                };
                return hilsec_securitytxt::cli::run_check_bytes(
                    &x.final_url,
                    &x.body,
                    &ctx,
                    args.json,
                );
            }
            Ok(x) => last_problem = format!("{url}: HTTP {}", x.status),
            Err(e) => last_problem = e.to_string(),
        }
    }
    eprintln!(
        "hilsec securitytxt: no security.txt could be fetched ({last_problem}); tried {}",
        candidates.join(", ")
    );
    2
}

/// Board paths to use: the given ones, else the built-in fleet.
fn board_paths(given: Vec<PathBuf>) -> Vec<PathBuf> {
    if given.is_empty() {
        vec![PathBuf::from(DEFAULT_BOARDS)]
    } else {
        given
    }
}

/// The one board loader of `run`, `list` and `check-board`: loads the files and forms models
/// the same way for all three (see [`by_model`]). Problems are printed; `Err` is the exit code.
fn load(paths: &[PathBuf], mode: LoadMode) -> Result<Vec<Board>, i32> {
    load_boards(paths, mode).map(by_model).map_err(|errs| {
        eprintln!("{errs}");
        let n = errs.0.len();
        eprintln!(
            "hilsec: {n} problem{} in board files; nothing was run",
            if n == 1 { "" } else { "s" }
        );
        2
    })
}

/// One board per model: the units of every file that defines or extends the same model file
/// are merged, in the order read. So a folder of a model file (a template without units) and
/// unit files that `extends` it is one model with all their units, whatever the file names'
/// order, and per-model tests judge all those units together.
fn by_model(boards: Vec<Board>) -> Vec<Board> {
    let mut merged: Vec<(PathBuf, Board)> = Vec::new();
    for b in boards {
        let key = b
            .model
            .source
            .canonicalize()
            .unwrap_or_else(|_| b.model.source.clone());
        match merged
            .iter_mut()
            .find(|(k, m)| *k == key || std::sync::Arc::ptr_eq(&m.model, &b.model))
        {
            Some((_, m)) => m.units.extend(b.units),
            None => merged.push((key, b)),
        }
    }
    merged.into_iter().map(|(_, b)| b).collect()
}

/// The suites and tests to run: `--suite` names (default all), then, with `--test` globs, only
/// the tests whose id matches one of them. Suites left without tests are dropped. A name or
/// glob that selects nothing is an error (a typo must not silently run nothing).
fn select(suite_names: &[String], test_globs: &[String]) -> Result<Vec<Suite>, String> {
    let all = hilsec_suites::all();
    let mut chosen = Vec::new();
    if suite_names.is_empty() {
        chosen = all.clone();
    }
    for n in suite_names {
        match all.iter().find(|s| s.name == n) {
            Some(s) => chosen.push(s.clone()),
            None => {
                return Err(format!(
                    "unknown suite {n:?}; known suites: {}",
                    hilsec_suites::names().join(", ")
                ))
            }
        }
    }
    if test_globs.is_empty() {
        return Ok(chosen);
    }
    let mut matchers = Vec::new();
    for g in test_globs {
        let m = globset::Glob::new(g)
            .map_err(|e| format!("--test {g:?} is not a valid glob: {e}"))?
            .compile_matcher();
        matchers.push((g, m));
    }
    for (g, m) in &matchers {
        if !chosen
            .iter()
            .any(|s| s.tests.iter().any(|t| m.is_match(t.info().id)))
        {
            let within = if suite_names.is_empty() {
                String::new()
            } else {
                format!(" of suite {}", suite_names.join(", "))
            };
            return Err(format!(
                "--test {g:?} matches no test{within}; known test ids: {}",
                brief_ids(&all)
            ));
        }
    }
    for s in &mut chosen {
        s.tests
            .retain(|t| matchers.iter().any(|(_, m)| m.is_match(t.info().id)));
    }
    chosen.retain(|s| !s.tests.is_empty());
    Ok(chosen)
}

/// Every test id, grouped by the part before the dot: `password.{a, b}, support.{c, d}`.
fn brief_ids(suites: &[Suite]) -> String {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for t in suites.iter().flat_map(|s| s.tests.iter()) {
        let id = t.info().id;
        let (head, tail) = id.split_once('.').unwrap_or((id, ""));
        match groups.iter_mut().find(|(h, _)| *h == head) {
            Some((_, tails)) => tails.push(tail),
            None => groups.push((head, vec![tail])),
        }
    }
    groups
        .iter()
        .map(|(h, tails)| format!("{h}.{{{}}}", tails.join(", ")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn cmd_run(args: RunArgs) -> i32 {
    let paths = board_paths(args.boards);
    let suites = match select(&args.suites, &args.tests) {
        Ok(s) => s,
        Err(msg) => {
            eprintln!("hilsec run: {msg}");
            return 2;
        }
    };
    let boards = match args.shard {
        None => match load(&paths, LoadMode::Run) {
            Ok(b) => b,
            Err(code) => return code,
        },
        Some(shard) => match load_shard(&paths, shard) {
            Ok(b) => b,
            Err(code) => return code,
        },
    };
    if let Err(msg) = distinct_lease_keys(&boards) {
        eprintln!("hilsec run: {msg}");
        return 2;
    }
    let baseline = match args.baseline.as_deref().map(read_baseline).transpose() {
        Ok(b) => b,
        Err(msg) => {
            eprintln!("hilsec run: {msg}");
            return 2;
        }
    };
    let reporters = match open_reporters(&args.out, args.shard.map(|s| s.to_string())) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hilsec run: {e:#}");
            return 2;
        }
    };
    // Long transcripts wait on the output folder's disk, not in memory (unnamed files: nothing
    // is left there, even if the run is killed).
    hilsec_core::transcript::spill_into(&args.out);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hilsec run: cannot start the async runtime: {e}");
            return 3;
        }
    };
    let (mut env, broker) = match start_services(&boards, args.mqtt_broker) {
        Ok(started) => started,
        Err(e) => {
            eprintln!("hilsec run: {e}");
            return 3;
        }
    };
    env.baseline = baseline.map(std::sync::Arc::new);
    let cfg = RunConfig {
        jobs: args.jobs,
        test_timeout: args.test_timeout,
        env,
        leases: args.lease.settings(&args.out),
    };
    let code = rt.block_on(run_with_reporters(boards, suites, cfg, reporters));
    if let Some(why) = broker.as_ref().and_then(|b| b.failure()) {
        // MQTT tests of the units that lost it are already `error`; say why once.
        eprintln!("hilsec run: the embedded MQTT broker stopped during the run: {why}");
    }
    code
}

/// `run --shard I/N`: every file is loaded and checked as `check-board` does (so a broken file
/// fails every shard alike, and every shard computes the same split), then only this shard's
/// unit files are loaded for the run: a CI runner per bench needs only its own units' `env`
/// secrets. Lease keys are checked across all shards.
fn load_shard(paths: &[PathBuf], shard: shard::Shard) -> Result<Vec<Board>, i32> {
    let all: Vec<Board> = load(paths, LoadMode::Check)?
        .into_iter()
        .filter(|b| !b.units.is_empty())
        .collect();
    if let Err(msg) = distinct_lease_keys(&all) {
        eprintln!("hilsec run: {msg}");
        return Err(2);
    }
    let (models, units) = (all.len(), all.iter().map(|b| b.units.len()).sum::<usize>());
    let mine = shard.select(all);
    let mut files: Vec<PathBuf> = Vec::new();
    for b in &mine {
        for u in &b.units {
            if !files.contains(&u.source) {
                files.push(u.source.clone());
            }
        }
    }
    let boards = if files.is_empty() {
        Vec::new()
    } else {
        load(&files, LoadMode::Run)?
    };
    eprintln!(
        "hilsec: shard {shard}: {} of {models} models ({} of {units} units)",
        boards.len(),
        boards.iter().map(|b| b.units.len()).sum::<usize>()
    );
    Ok(boards)
}

/// Two units of one run under one lease key would block each other (the second "held by" this
/// very run): refused before anything starts.
fn distinct_lease_keys(boards: &[Board]) -> Result<(), String> {
    let mut seen: std::collections::HashMap<String, (&str, &Path)> = Default::default();
    for b in boards {
        for u in &b.units {
            if let Some(key) = hilsec_core::lease::unit_key(u, &b.model) {
                if let Some((other, file)) = seen.insert(key.clone(), (&u.name, &u.source)) {
                    return Err(format!(
                        "units {other} ({}) and {} ({}) take the same lease {key:?}; give each \
                         unit its own `lease` (one physical unit per key)",
                        file.display(),
                        u.name,
                        u.source.display()
                    ));
                }
            }
        }
    }
    Ok(())
}

/// `--mqtt-broker HOST:PORT`: a host name is resolved once, before anything starts (an IPv4
/// address preferred).
fn parse_broker(s: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if !s.contains(':') {
        return Err(format!(
            "{s:?} has no port; write HOST:PORT, e.g. broker.lab:1883"
        ));
    }
    let addrs: Vec<_> = s
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {s:?}: {e}; write HOST:PORT, e.g. broker.lab:1883"))?
        .collect();
    // IPv4 first: units are handed `{broker.host}`, and device firmware is likelier to take it.
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

/// Reads `--baseline`: a results.json of an earlier run.
fn read_baseline(path: &Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--baseline {}: cannot read it: {e}", path.display()))?;
    // Checked against the typed schema (the same types results.json is written with), so a
    // file that is not an earlier run's results is refused before anything starts.
    hilsec_core::results::ResultsFile::from_json_str(&text).map_err(|e| {
        format!(
            "--baseline {}:{e}; pass the results.json of an earlier run",
            path.display()
        )
    })?;
    serde_json::from_str(&text).map_err(|e| format!("--baseline {}: {e}", path.display()))
}

/// Starts what the boards need from the harness itself: the embedded MQTT broker when an MQTT
/// interface does not name a broker of its own. The broker is returned so the run can say if it
/// failed.
fn start_services(
    boards: &[Board],
    lab_broker: Option<std::net::SocketAddr>,
) -> Result<(RunEnv, Option<hilsec_core::broker::EmbeddedBroker>), hilsec_core::broker::BrokerError>
{
    let needs_broker = boards.iter().any(|b| {
        b.model
            .interfaces
            .values()
            .any(|i| matches!(i, Interface::Mqtt(m) if matches!(m.broker, MqttBroker::Embedded)))
    });
    let mut env = RunEnv::default();
    let mut embedded = None;
    if let Some(addr) = lab_broker {
        env.broker = Some(addr);
    } else if needs_broker {
        let broker = hilsec_core::broker::start_embedded()?;
        eprintln!("hilsec: embedded MQTT broker on {}", broker.addr);
        env.broker = Some(broker.addr);
        embedded = Some(broker);
    }
    Ok((env, embedded))
}

/// Prepares the output folder and the reporters writing into it.
fn open_reporters(out: &Path, shard: Option<String>) -> anyhow::Result<Vec<Box<dyn Reporter>>> {
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create output folder {}", out.display()))?;
    let evidence = out.join("evidence");
    if evidence.is_dir() {
        // Evidence of an earlier run must not be mistaken for this run's.
        std::fs::remove_dir_all(&evidence)
            .with_context(|| format!("cannot clear old evidence in {}", evidence.display()))?;
    }
    let journal = JournalReporter::create(out)?;
    Ok(vec![
        Box::new(journal),
        Box::new(EvidenceReporter::new(out)),
        Box::new(TerminalReporter::new(out.to_path_buf())),
        Box::new(ResultsReporter::new(out).with_shard(shard)),
    ])
}

async fn run_with_reporters(
    boards: Vec<Board>,
    suites: Vec<Suite>,
    cfg: RunConfig,
    reporters: Vec<Box<dyn Reporter>>,
) -> i32 {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let cancel = CancellationToken::new();

    // Ctrl-C / SIGTERM: stop cleanly (emulators are stopped, finished results written). A second
    // Ctrl-C exits at once; spawned units still die with us (process group, parent-death signal).
    let c = cancel.clone();
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let first = async {
            match term.as_mut() {
                Some(t) => {
                    tokio::select! { _ = tokio::signal::ctrl_c() => {}, _ = t.recv() => {} }
                }
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        first.await;
        eprintln!(
            "hilsec: interrupted; stopping units and writing results (Ctrl-C again to quit now)"
        );
        c.cancel();
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(130);
    });

    let report = tokio::task::spawn_blocking(move || {
        let mut fanout = Fanout::new(reporters);
        while let Some(ev) = rx.blocking_recv() {
            fanout.on_event(&ev);
        }
        fanout.errors()
    });
    let summary = runner::run(boards, suites, cfg, tx, cancel).await;
    let errors = report.await.unwrap_or_default();
    for e in &errors {
        eprintln!("hilsec: reporting failed: {e}");
    }
    if summary.interrupted {
        eprintln!("hilsec: run interrupted; results hold the tests that finished");
    }
    let code = summary.exit_code();
    if code == 0 && !errors.is_empty() {
        3
    } else {
        code
    }
}

/// `check-board`: validates every file (model files alone too) without needing secrets, forms
/// models with the same loader as `run`, and warns about what `run` would still refuse.
fn cmd_check_board(paths: &[PathBuf]) -> i32 {
    let boards = match load(paths, LoadMode::Check) {
        Ok(b) => b,
        Err(code) => return code,
    };
    // The files are valid; loading them as `run` does shows what a run would still refuse:
    // `env` secrets unset on this machine, a model file given alone.
    let refusals = match load_boards(paths, LoadMode::Run) {
        Ok(_) => Vec::new(),
        Err(errs) => errs.0,
    };
    for e in &refusals {
        eprintln!("{}", run_refusal_warning(e));
    }
    let units: usize = boards.iter().map(|b| b.units.len()).sum();
    let models: Vec<&str> = boards.iter().map(|b| b.model.name.as_str()).collect();
    let warnings = match refusals.len() {
        0 => String::new(),
        1 => "; 1 warning".to_string(),
        n => format!("; {n} warnings"),
    };
    println!(
        "ok: {} model{} ({}), {units} unit{}{warnings}",
        models.len(),
        if models.len() == 1 { "" } else { "s" },
        models.join(", "),
        if units == 1 { "" } else { "s" }
    );
    0
}

/// A problem `run` would refuse a valid board for, worded as a `check-board` warning.
fn run_refusal_warning(e: &BoardError) -> String {
    let place = if e.line > 0 {
        format!("{}:{}:{}", e.path.display(), e.line, e.col)
    } else {
        e.path.display().to_string()
    };
    let consequence = if e.message.ends_with(" is not set") {
        "run will refuse this board until it is"
    } else {
        "run will refuse this board as given"
    };
    let mut w = format!("warning: {place}: {}; {consequence}", e.message);
    if let Some(help) = &e.help {
        w.push_str("\n  help: ");
        w.push_str(help);
    }
    w
}

fn cmd_list(args: ListArgs) -> i32 {
    let suites = match select(&args.suites, &args.tests) {
        Ok(s) => s,
        Err(msg) => {
            eprintln!("hilsec list: {msg}");
            return 2;
        }
    };
    // Applicability as a run with the same --baseline decides it.
    let env = match args.baseline.as_deref().map(read_baseline).transpose() {
        Ok(baseline) => RunEnv {
            baseline: baseline.map(std::sync::Arc::new),
            ..RunEnv::default()
        },
        Err(msg) => {
            eprintln!("hilsec list: {msg}");
            return 2;
        }
    };
    let explicit = !args.boards.is_empty();
    let paths = board_paths(args.boards);
    let boards = if explicit || paths.iter().all(|p| p.exists()) {
        // `list` starts nothing: like `check-board`, it works without the units' secrets.
        match load(&paths, LoadMode::Check) {
            Ok(b) => b,
            Err(code) => return code,
        }
    } else {
        Vec::new()
    };
    match list(&suites, &boards, &env) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("hilsec list: {e:#}");
            3
        }
    }
}

fn list(suites: &[Suite], boards: &[Board], env: &RunEnv) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    for suite in suites {
        writeln!(out, "{} — {}", suite.name, suite.description)?;
        for t in &suite.tests {
            let info = t.info();
            let scope = match info.scope {
                Scope::Unit => "per unit",
                Scope::Model => "per model",
            };
            writeln!(out, "  {}  ({scope})", info.id)?;
            writeln!(out, "      {}", info.title)?;
            writeln!(out, "      provisions: {}", info.provisions.join("; "))?;
            for b in boards {
                // Units with the same answer share a line, in the order of the board files.
                let mut lines: Vec<(String, Vec<&str>)> = Vec::new();
                for u in &b.units {
                    let reason = match info.scope {
                        Scope::Unit => t.not_applicable_in(&b.model, u, env),
                        Scope::Model => t.not_applicable(&b.model),
                    };
                    let status = match reason {
                        None => "applies".to_string(),
                        Some(reason) => format!("not applicable: {reason}"),
                    };
                    match lines.iter_mut().find(|(s, _)| *s == status) {
                        Some((_, units)) => units.push(&u.name),
                        None => lines.push((status, vec![&u.name])),
                    }
                }
                for (status, units) in lines {
                    writeln!(
                        out,
                        "      {} [{}]: {status}",
                        b.model.name,
                        units.join(", ")
                    )?;
                }
                // What the test would ask of this model's units, and what the board lacks.
                let actions: Vec<String> = t
                    .actions(&b.model)
                    .into_iter()
                    .map(|a| {
                        if b.model.has_action(&a) {
                            a
                        } else {
                            format!("{a} (not defined)")
                        }
                    })
                    .collect();
                if !actions.is_empty() {
                    writeln!(out, "        actions: {}", actions.join(", "))?;
                }
            }
        }
    }
    if boards.is_empty() {
        writeln!(
            out,
            "(no board files given: pass --board PATH to see applicability)"
        )?;
    }
    out.flush()?;
    Ok(())
}

/// `hilsec probe list`: the probes probe-rs finds over USB (no system library involved).
fn cmd_probe_list(json: bool) -> i32 {
    let probes = hilsec_core::iface::probe::list_probes();
    if json {
        for p in &probes {
            let v = serde_json::json!({
                "name": p.name,
                "vendor_id": format!("{:04x}", p.vendor_id),
                "product_id": format!("{:04x}", p.product_id),
                "serial": p.serial,
                "driver": p.driver,
                "selector": p.selector,
                "note": p.note,
            });
            println!("{v}");
        }
        return 0;
    }
    if probes.is_empty() {
        println!("no probes found");
        println!(
            "(looked for USB debug probes: CMSIS-DAP v2, ST-Link, J-Link, ...; on Linux a probe \
             that is attached but not listed usually lacks a udev rule giving your user access)"
        );
        return 0;
    }
    println!("{} probe(s) found:", probes.len());
    for p in &probes {
        println!(
            "  {} ({}, {:04x}:{:04x}{})",
            p.name,
            p.driver,
            p.vendor_id,
            p.product_id,
            p.serial
                .as_deref()
                .map(|s| format!(", serial {s}"))
                .unwrap_or_default()
        );
        println!("    board file: probe = \"{}\"", p.selector);
        if let Some(n) = &p.note {
            println!("    note: {n}");
        }
    }
    0
}
