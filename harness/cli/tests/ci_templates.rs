//! The CI templates in `ci/` run as written. Both are parsed; the shard job's `hilsec run` line
//! and the merge job's `hilsec merge` line are taken from their scripts and run by bash with the
//! variables each CI would give them (GitLab: the pipeline's `variables` and CI_NODE_INDEX /
//! CI_NODE_TOTAL from `parallel:`; GitHub: the workflow's and the job's `env` with
//! `${{ matrix.shard }}`, `${{ strategy.job-total }}` and `${{ vars.X || 'default' }}`
//! evaluated), `hilsec` found on PATH as the templates' setup steps put it there. Each shard runs
//! in a checkout of its own (a folder with the repository's `boards` and `fixtures`); its
//! artifacts are carried to the merge job's checkout as the template's artifact settings say
//! (GitLab: `artifacts: paths` restored at the same paths; GitHub: upload `path` under `name`,
//! download by `pattern` into `path/<name>/`). The merged folder must then hold what one
//! unsharded run of the simulated fleet finds.
//!
//! Only HILSEC_ARGS (a variable both templates expose for extra `run` arguments) is set by the
//! test, to a quick selection of tests; the command lines are the templates'.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use common::*;
use yaml_serde::Value;

/// Quick tests of every suite, per unit and per model (uniqueness, derivation, complexity are
/// judged across a model's units), with passes and fails on every model: the runs stay short on
/// a loaded machine while the merge still meets per-model findings, evidence and both verdicts.
const HILSEC_ARGS: &str = "--test password.unique-across-units \
     --test password.not-derived-from-identity --test password.complexity \
     --test update.accepts-genuine --test update.rejects-unsigned \
     --test disclosure.policy-published --test support.period-published";

/// Generous: a run of these tests takes seconds; the deadline only turns a hang into a failure.
const DEADLINE: Duration = Duration::from_secs(300);

/// One fleet at a time: the runs share the machine with the rest of the suite.
static FLEET: Mutex<()> = Mutex::new(());

type Env = Vec<(String, String)>;

/// What one CI run of a template does, for the test to replay.
struct Plan {
    name: &'static str,
    shards: usize,
    shard_line: String,
    /// The shard job's environment, for shard I at index I-1.
    shard_env: Vec<Env>,
    merge_line: String,
    merge_env: Env,
    /// Artifacts of shard I: (path in the shard's checkout, path in the merge job's checkout).
    transport: Vec<Vec<(String, String)>>,
    /// Files the merge job publishes (paths in its checkout, after the merge).
    published: Vec<String>,
    /// JUnit report patterns of the shard job (matched against its checkout after the run).
    shard_junit: Option<String>,
    /// A step of the merge job to run after the merge (GitHub: the summary), as a script.
    summary: Option<String>,
}

fn load(name: &str) -> Value {
    let path = repo_root().join("ci").join(name);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    yaml_serde::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A scalar as text (strings, numbers, booleans).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn text(v: &Value, what: &str) -> String {
    scalar(v).unwrap_or_else(|| panic!("{what}: a scalar expected, got {v:?}"))
}

/// A script's lines: a string (GitHub `run`) or a list of them (GitLab `script`).
fn lines(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => s.lines().map(|l| l.trim().to_string()).collect(),
        Value::Sequence(seq) => seq.iter().flat_map(lines).collect(),
        _ => Vec::new(),
    }
}

/// A list of scalars, or one scalar as a list.
fn list(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(seq) => seq.iter().filter_map(scalar).collect(),
        Value::Null => Vec::new(),
        other => scalar(other).into_iter().collect(),
    }
}

/// Key/value pairs of a mapping of scalars (`variables:`, `env:`).
fn pairs(v: &Value) -> Env {
    match v {
        Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| (text(k, "variable name"), scalar(v).unwrap_or_default()))
            .collect(),
        _ => Vec::new(),
    }
}

/// The one line among `lines` that starts with `prefix`.
fn the_line(lines: &[String], prefix: &str, what: &str) -> String {
    let found: Vec<&String> = lines.iter().filter(|l| l.starts_with(prefix)).collect();
    assert_eq!(
        found.len(),
        1,
        "{what}: one line starting with {prefix:?}, found {found:?}"
    );
    found[0].clone()
}

/// `*` within one path component, as artifact and report patterns use it.
fn glob_match(pattern: &str, path: &str) -> bool {
    let (p, s): (Vec<char>, Vec<char>) = (pattern.chars().collect(), path.chars().collect());
    fn go(p: &[char], s: &[char]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some('*') => (0..=s.len())
                .take_while(|&i| i == 0 || s[i - 1] != '/')
                .any(|i| go(&p[1..], &s[i..])),
            Some(c) => s.first() == Some(c) && go(&p[1..], &s[1..]),
        }
    }
    go(&p, &s)
}

fn with_env(base: &Env, more: &Env) -> Env {
    let mut out = base.clone();
    for (k, v) in more {
        out.retain(|(x, _)| x != k);
        out.push((k.clone(), v.clone()));
    }
    out
}

/// The variables the test sets itself: the simulated fleet and the quick selection.
fn test_vars(env: &Env) -> Env {
    for k in ["HILSEC_BOARDS", "HILSEC_ARGS"] {
        assert!(
            env.iter().any(|(x, _)| x == k),
            "the template defines {k} (the test sets it)"
        );
    }
    with_env(
        env,
        &vec![
            ("HILSEC_BOARDS".into(), "boards/sim".into()),
            ("HILSEC_ARGS".into(), HILSEC_ARGS.into()),
        ],
    )
}

fn gitlab_plan() -> Plan {
    let doc = load("gitlab-ci.yml");
    let root = doc.as_mapping().expect("gitlab-ci.yml: a mapping");
    let globals = pairs(&doc["variables"]);
    let stages = list(&doc["stages"]);
    let jobs: Vec<(String, &Value)> = root
        .iter()
        .filter_map(|(k, v)| {
            let name = scalar(k)?;
            (v.get("script").is_some() && !name.starts_with('.')).then_some((name, v))
        })
        .collect();
    let find = |prefix: &str| -> (String, &Value, String) {
        let found: Vec<_> = jobs
            .iter()
            .filter_map(|(n, j)| {
                let l = lines(&j["script"]);
                l.iter()
                    .any(|x| x.starts_with(prefix))
                    .then(|| (n.clone(), *j, the_line(&l, prefix, n)))
            })
            .collect();
        assert_eq!(found.len(), 1, "one job runs `{prefix}`");
        found.into_iter().next().expect("one job")
    };
    let (shard_name, shard, shard_line) = find("hilsec run ");
    let (merge_name, merge, merge_line) = find("hilsec merge ");

    let n = shard["parallel"]
        .as_u64()
        .expect("the shard job has `parallel: N`") as usize;
    assert_eq!(n, 4, "parallel: 4");
    assert!(
        !list(&shard["tags"]).is_empty(),
        "the shard job picks its runners by tags"
    );
    for v in ["${CI_NODE_INDEX}", "${CI_NODE_TOTAL}", "--shard"] {
        assert!(shard_line.contains(v), "{shard_line}: uses {v}");
    }
    let art = &shard["artifacts"];
    assert_eq!(
        art["when"].as_str(),
        Some("always"),
        "a failed shard's results are uploaded too"
    );
    let paths = list(&art["paths"]);
    assert!(!paths.is_empty(), "the shard job keeps its results");
    let shard_junit = art["reports"]["junit"]
        .as_str()
        .expect("the shard job's reports: junit")
        .to_string();

    let needs: Vec<String> = match &merge["needs"] {
        Value::Sequence(seq) => seq
            .iter()
            .map(|x| scalar(x).unwrap_or_else(|| text(&x["job"], "needs: job")))
            .collect(),
        _ => panic!("{merge_name}: needs: the shard job"),
    };
    assert!(
        needs.contains(&shard_name),
        "{merge_name} needs {shard_name}"
    );
    assert_eq!(
        merge["when"].as_str(),
        Some("always"),
        "the merge runs after failed shards too"
    );
    let stage_of = |j: &Value| {
        let s = text(&j["stage"], "stage");
        stages
            .iter()
            .position(|x| *x == s)
            .unwrap_or_else(|| panic!("stage {s} is not in `stages`"))
    };
    assert!(
        stage_of(merge) > stage_of(shard),
        "the merge is in a later stage"
    );
    let mart = &merge["artifacts"];
    assert_eq!(mart["when"].as_str(), Some("always"));
    let merged_junit = text(&mart["reports"]["junit"], "the merge job's reports: junit");
    let mut published = list(&mart["paths"]);
    published.push(merged_junit);

    let job_vars = |j: &Value| with_env(&globals, &pairs(&j["variables"]));
    let shard_env = (1..=n)
        .map(|i| {
            with_env(
                &test_vars(&job_vars(shard)),
                &vec![
                    ("CI_NODE_INDEX".into(), i.to_string()),
                    ("CI_NODE_TOTAL".into(), n.to_string()),
                ],
            )
        })
        .collect();
    // GitLab restores every artifact path of every needed job at the same path.
    for p in &paths {
        assert!(
            !p.contains('*') && !p.contains('$'),
            "artifact path {p:?}: the test carries plain paths only"
        );
    }
    let transport = (1..=n)
        .map(|_| paths.iter().map(|p| (p.clone(), p.clone())).collect())
        .collect();
    Plan {
        name: "gitlab",
        shards: n,
        shard_line,
        shard_env,
        merge_line,
        merge_env: test_vars(&job_vars(merge)),
        transport,
        published,
        shard_junit: Some(shard_junit),
        summary: None,
    }
}

/// `${{ ... }}` expressions the templates may use, for shard `index` of `total`.
fn eval_expressions(s: &str, index: Option<usize>, total: usize) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .expect("an expression ends with }}")
            + start;
        let expr = rest[start + 3..end].trim();
        let value = match expr {
            "matrix.shard" => index.expect("matrix.shard in a matrix job").to_string(),
            "strategy.job-total" => total.to_string(),
            _ => {
                // `vars.NAME || 'default'`: no repository variable set, so the default.
                let (var, default) = expr
                    .split_once("||")
                    .unwrap_or_else(|| panic!("unknown expression {expr:?}"));
                assert!(
                    var.trim().starts_with("vars."),
                    "unknown expression {expr:?}"
                );
                default.trim().trim_matches('\'').to_string()
            }
        };
        out.push_str(&value);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

fn github_plan() -> Plan {
    let doc = load("github-actions.yml");
    let globals = pairs(&doc["env"]);
    let jobs = doc["jobs"].as_mapping().expect("jobs");
    let steps = |j: &Value| j["steps"].as_sequence().cloned().unwrap_or_default();
    let find = |prefix: &str| -> (String, &Value, String) {
        let found: Vec<_> = jobs
            .iter()
            .filter_map(|(k, j)| {
                let l: Vec<String> = steps(j).iter().flat_map(|s| lines(&s["run"])).collect();
                let name = scalar(k)?;
                l.iter()
                    .any(|x| x.starts_with(prefix))
                    .then(|| (name.clone(), j, the_line(&l, prefix, &name)))
            })
            .collect();
        assert_eq!(found.len(), 1, "one job runs `{prefix}`");
        found.into_iter().next().expect("one job")
    };
    let (shard_name, shard, shard_line) = find("hilsec run ");
    let (merge_name, merge, merge_line) = find("hilsec merge ");
    for l in [&shard_line, &merge_line] {
        assert!(
            !l.contains("${{"),
            "{l}: the command line uses environment variables only"
        );
    }
    let strategy = &shard["strategy"];
    assert_eq!(
        strategy["fail-fast"].as_bool(),
        Some(false),
        "fail-fast: false"
    );
    let matrix: Vec<String> = list(&strategy["matrix"]["shard"]);
    assert_eq!(matrix, ["1", "2", "3", "4"], "a matrix over shard 1..4");
    let n = matrix.len();
    assert!(
        list(&shard["runs-on"]).contains(&"self-hosted".to_string()),
        "runs-on: [self-hosted, <bench label>]"
    );
    assert!(shard_line.contains("--shard"), "{shard_line}");

    let uses = |s: &Value, action: &str| {
        s["uses"]
            .as_str()
            .is_some_and(|u| u.starts_with(&format!("actions/{action}@")))
    };
    let always = |s: &Value| s["if"].as_str().is_some_and(|c| c.contains("always()"));
    let uploads: Vec<Value> = steps(shard)
        .into_iter()
        .filter(|s| uses(s, "upload-artifact"))
        .collect();
    assert_eq!(uploads.len(), 1, "the shard job uploads its results");
    let upload = &uploads[0];
    assert!(always(upload), "a failed shard's results are uploaded too");

    let needs = list(&merge["needs"]);
    assert!(
        needs.contains(&shard_name),
        "{merge_name} needs {shard_name}"
    );
    let cond = merge["if"].as_str().unwrap_or_default();
    assert!(
        cond.contains("always()") || cond.contains("!cancelled()"),
        "the merge runs after failed shards too: if: {cond:?}"
    );
    let downloads: Vec<Value> = steps(merge)
        .into_iter()
        .filter(|s| uses(s, "download-artifact") && s["with"]["pattern"].is_string())
        .collect();
    assert_eq!(downloads.len(), 1, "the merge job downloads the shards");
    let pattern = text(&downloads[0]["with"]["pattern"], "pattern");
    let into = text(&downloads[0]["with"]["path"], "download path");

    let env_of = |j: &Value, i: Option<usize>| -> Env {
        with_env(&globals, &pairs(&j["env"]))
            .into_iter()
            .map(|(k, v)| (k, eval_expressions(&v, i, n)))
            .collect()
    };
    let shard_env = (1..=n)
        .map(|i| test_vars(&env_of(shard, Some(i))))
        .collect();
    // An artifact's files sit at the root of its `path`; a download by pattern puts each
    // artifact into `path/<name>/`.
    let transport = (1..=n)
        .map(|i| {
            let name = eval_expressions(&text(&upload["with"]["name"], "name"), Some(i), n);
            let path = eval_expressions(&text(&upload["with"]["path"], "path"), Some(i), n);
            assert!(
                glob_match(&pattern, &name),
                "artifact {name} is downloaded by pattern {pattern}"
            );
            vec![(
                path.trim_end_matches('/').to_string(),
                format!("{}/{name}", into.trim_end_matches('/')),
            )]
        })
        .collect();
    let mut published = Vec::new();
    let mut summary = None;
    for s in steps(merge) {
        if uses(&s, "upload-artifact") {
            assert!(always(&s), "merged results are uploaded even after a fail");
            published.extend(lines(&s["with"]["path"]));
        }
        let run = s["run"].as_str().unwrap_or_default();
        if run.contains("GITHUB_STEP_SUMMARY") {
            summary = Some(run.to_string());
        }
    }
    assert!(
        !published.is_empty(),
        "the merge job uploads the merged results"
    );
    Plan {
        name: "github",
        shards: n,
        shard_line,
        shard_env,
        merge_line,
        merge_env: test_vars(&env_of(merge, None)),
        transport,
        published,
        shard_junit: None,
        summary: Some(summary.expect("the merge job writes a summary")),
    }
}

/// A folder that looks like the repository's checkout to the command lines.
fn checkout(dir: &Path) -> PathBuf {
    fs::create_dir_all(dir).expect("checkout dir");
    for d in ["boards", "fixtures"] {
        std::os::unix::fs::symlink(repo_root().join(d), dir.join(d)).expect("symlink");
    }
    dir.to_path_buf()
}

/// Runs a template's line with bash in `cwd`, `hilsec` on PATH.
fn sh(line: &str, env: &Env, cwd: &Path, logs: &Path) -> Finished {
    fs::create_dir_all(logs).expect("logs dir");
    let bin = hilsec_bin();
    let path = format!(
        "{}:{}",
        bin.parent().expect("bin dir").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let stdout = logs.join("stdout.txt");
    let stderr = logs.join("stderr.txt");
    let child = Command::new("bash")
        .args(["-eo", "pipefail", "-c", line])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("PATH", path)
        .env("CI", "1")
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&stdout).expect("stdout file"))
        .stderr(fs::File::create(&stderr).expect("stderr file"))
        .spawn()
        .expect("spawn bash");
    Run {
        child,
        stdout,
        stderr,
    }
    .finish(DEADLINE)
}

/// Files named `name` under `dir`, not following symbolic links (the checkout's boards).
fn find_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let Ok(meta) = fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() && e.file_name() == name {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn copy_tree(from: &Path, to: &Path) {
    let meta =
        fs::symlink_metadata(from).unwrap_or_else(|e| panic!("artifact {}: {e}", from.display()));
    if meta.is_dir() {
        fs::create_dir_all(to).expect("artifact dir");
        for e in fs::read_dir(from).expect("read artifact dir").flatten() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        }
    } else {
        fs::create_dir_all(to.parent().expect("parent")).expect("artifact dir");
        fs::copy(from, to).expect("copy artifact");
    }
}

/// (board, test, verdict) of every record.
fn verdicts(r: &serde_json::Value) -> BTreeSet<(String, String, String)> {
    r["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .map(|t| {
            let f = |k: &str| t[k].as_str().expect("a string").to_string();
            (f("board"), f("test"), f("verdict"))
        })
        .collect()
}

/// (model, test, verdict) of every per-model finding.
fn findings(r: &serde_json::Value) -> BTreeSet<(String, String, String)> {
    r["model_findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| {
                    let f = |k: &str| t[k].as_str().expect("a string").to_string();
                    (f("model"), f("test"), f("verdict"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn units(r: &serde_json::Value) -> BTreeSet<String> {
    r["run"]["units"]
        .as_array()
        .expect("run.units")
        .iter()
        .map(|u| u["name"].as_str().expect("unit name").to_string())
        .collect()
}

fn testcases(junit: &Path) -> usize {
    let text = fs::read_to_string(junit).unwrap_or_else(|e| panic!("{}: {e}", junit.display()));
    let doc = roxmltree::Document::parse(&text).expect("junit.xml parses");
    doc.descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .count()
}

/// The `--out` argument of a command line without variables.
fn out_arg(line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == "--out")
        .unwrap_or_else(|| panic!("{line}: --out DIR"));
    words[at + 1].trim_matches('"').to_string()
}

/// The unsharded run the shards must add up to.
fn unsharded(tmp: &Path) -> serde_json::Value {
    let out = tmp.join("unsharded");
    let boards = repo_root().join("boards/sim");
    let mut args = vec![
        "run",
        "--board",
        boards.to_str().expect("utf-8"),
        "--out",
        out.to_str().expect("utf-8"),
    ];
    args.extend(HILSEC_ARGS.split_whitespace());
    let logs = tmp.join("unsharded-logs");
    fs::create_dir_all(&logs).expect("logs");
    let run = hilsec(&args, &logs, DEADLINE);
    assert_eq!(
        run.code(),
        1,
        "the weak simulated models fail; stderr:\n{}",
        run.stderr
    );
    let r = results(&out);
    assert_eq!(
        testcases(&out.join("junit.xml")),
        r["tests"].as_array().expect("tests").len()
    );
    r
}

fn replay(plan: &Plan) {
    require_simdev();
    let _fleet = FLEET.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().expect("tempdir");
    let tmp = tmp.path();
    let whole = unsharded(tmp);
    let whole_units = units(&whole);
    assert_eq!(whole_units.len(), 6, "the simulated fleet");

    let merge_ws = checkout(&tmp.join("merge-job"));
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut first_with_units = None;
    for i in 1..=plan.shards {
        let ws = checkout(&tmp.join(format!("shard-job-{i}")));
        let run = sh(
            &plan.shard_line,
            &plan.shard_env[i - 1],
            &ws,
            &tmp.join(format!("shard-logs-{i}")),
        );
        let found = find_named(&ws, "results.json");
        assert_eq!(
            found.len(),
            1,
            "{} shard {i}: one results.json, found {found:?}; stderr:\n{}",
            plan.name,
            run.stderr
        );
        let r: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&found[0]).expect("results.json"))
                .expect("results.json is JSON");
        let failed = verdicts(&r).iter().any(|(_, _, v)| v == "fail");
        assert_eq!(
            run.code(),
            if failed { 1 } else { 0 },
            "{} shard {i}: exit 1 when a device failed, else 0 (a healthy fleet has no error); \
             stderr:\n{}",
            plan.name,
            run.stderr
        );
        assert_eq!(r["run"]["shard"], format!("{i}/{}", plan.shards));
        for u in units(&r) {
            assert!(
                seen.insert(u.clone()),
                "{} shard {i}: {u} is in two shards",
                plan.name
            );
        }
        if !units(&r).is_empty() && first_with_units.is_none() {
            first_with_units = Some(found[0].parent().expect("out dir").to_path_buf());
        }
        if let Some(pattern) = &plan.shard_junit {
            let junit = find_named(&ws, "junit.xml");
            assert!(
                junit.iter().any(|j| {
                    let rel = j.strip_prefix(&ws).expect("in checkout");
                    glob_match(pattern, rel.to_str().expect("utf-8"))
                }),
                "{} shard {i}: the junit report pattern {pattern} finds {junit:?}",
                plan.name
            );
        }
        for (from, to) in &plan.transport[i - 1] {
            copy_tree(&ws.join(from), &merge_ws.join(to));
        }
    }
    assert_eq!(seen, whole_units, "every unit in exactly one shard");

    let merge = sh(
        &plan.merge_line,
        &plan.merge_env,
        &merge_ws,
        &tmp.join("merge-logs"),
    );
    // `merge` exits as `run` would on the merged verdicts: 1, a device failed.
    assert_eq!(
        merge.code(),
        1,
        "{}: {}; stderr:\n{}",
        plan.name,
        plan.merge_line,
        merge.stderr
    );
    let merged = merge_ws.join(out_arg(&plan.merge_line));
    let m = results(&merged);
    assert_eq!(
        verdicts(&m),
        verdicts(&whole),
        "{}: the merged shards find what one run finds",
        plan.name
    );
    assert_eq!(
        findings(&m),
        findings(&whole),
        "{}: per-model findings",
        plan.name
    );
    assert_eq!(units(&m), whole_units, "{}: merged run.units", plan.name);
    let tests = m["tests"].as_array().expect("tests");
    assert_eq!(
        testcases(&merged.join("junit.xml")),
        testcases(&tmp.join("unsharded/junit.xml")),
        "{}: merged junit.xml has every test case",
        plan.name
    );
    assert_eq!(
        journal(&merged).len(),
        tests.len(),
        "{}: a journal line per test",
        plan.name
    );
    for t in tests {
        if let Some(ev) = t["evidence"].as_str() {
            assert!(
                merged.join(ev).is_file(),
                "{}: evidence {ev} of {} {} is in the merged folder",
                plan.name,
                t["board"],
                t["test"]
            );
        }
    }
    assert!(
        merged.join("report.html").is_file(),
        "{}: merged report.html",
        plan.name
    );
    for p in &plan.published {
        assert!(
            merge_ws.join(p).exists(),
            "{}: the merge job publishes {p}, which exists",
            plan.name
        );
    }

    if let Some(script) = &plan.summary {
        let summary = tmp.join("step-summary.md");
        let mut env = plan.merge_env.clone();
        env.push((
            "GITHUB_STEP_SUMMARY".into(),
            summary.to_str().expect("utf-8").into(),
        ));
        let run = sh(script, &env, &merge_ws, &tmp.join("summary-logs"));
        assert_eq!(run.code(), 0, "the summary step: {}", run.stderr);
        let md = fs::read_to_string(&summary).expect("summary written");
        let fails = verdicts(&whole).iter().filter(|t| t.2 == "fail").count();
        assert!(
            md.contains(&format!("| fail | {fails} |")),
            "the summary counts {fails} fails:\n{md}"
        );
        assert!(
            md.contains("| sim-cam-1 | password.unique-across-units | fail |"),
            "the summary lists the failed tests:\n{md}"
        );
    }

    // Overlapping inputs (a shard merged with itself) are refused, and nothing is written.
    let shard = first_with_units.expect("a shard with units");
    let dup = tmp.join("dup");
    let refused = hilsec(
        &[
            "merge",
            shard.to_str().expect("utf-8"),
            shard.to_str().expect("utf-8"),
            "--out",
            dup.to_str().expect("utf-8"),
        ],
        tmp,
        DEADLINE,
    );
    assert_eq!(
        refused.code(),
        2,
        "merging a shard with itself is refused; stderr:\n{}",
        refused.stderr
    );
    assert!(
        !dup.join("results.json").exists(),
        "a refused merge writes no results"
    );
}

#[test]
fn gitlab_template_shards_merge_to_the_unsharded_results() {
    replay(&gitlab_plan());
}

#[test]
fn github_template_shards_merge_to_the_unsharded_results() {
    replay(&github_plan());
}

#[test]
fn glob_patterns_stay_within_a_path_component() {
    assert!(glob_match(
        "results/shard-*/junit.xml",
        "results/shard-1/junit.xml"
    ));
    assert!(!glob_match(
        "results/shard-*/junit.xml",
        "results/shard-1/x/junit.xml"
    ));
    assert!(glob_match("hilsec-shard-*", "hilsec-shard-4"));
    assert!(!glob_match("hilsec-shard-*", "hilsec-bin"));
}
