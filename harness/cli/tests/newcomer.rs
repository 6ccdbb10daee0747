//! A newcomer's first hour: what `hilsec` says when a key file would be overwritten, when a board
//! needs a secret the machine does not hold, when tests are picked by id, and how a folder of a
//! model file and unit files forms one model for `check-board`, `list` and `run` alike.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const QUICK: Duration = Duration::from_secs(60);

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The SimPlug S1 board of the built-in fleet split into a model file (no units) and the text
/// of its two `[[unit]]` tables, with paths rebased so it can live in a temporary folder.
fn plug_model_and_units() -> (String, Vec<String>) {
    let text = fs::read_to_string(repo_root().join("boards/sim/simplug-s1.toml"))
        .expect("boards/sim/simplug-s1.toml");
    let text = rebase_fixture_paths(&text);
    let (model, units) = text
        .split_once("\n[[unit]]")
        .expect("simplug-s1.toml has [[unit]] tables");
    let units: Vec<String> = units
        .split("\n[[unit]]")
        .map(|u| format!("[[unit]]{u}\n"))
        .collect();
    assert_eq!(units.len(), 2, "SimPlug S1 has two units");
    (model.to_string() + "\n", units)
}

/// A unit file that extends `model` with one `[[unit]]` table.
fn unit_file(model: &str, unit: &str) -> String {
    format!("extends = \"{model}\"\n\n{unit}")
}

#[test]
fn keygen_refuses_to_overwrite_a_key_and_exits_2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let key = tmp.path().join("lab-signing.pem");
    let run = hilsec(&["image", "keygen", s(&key)], tmp.path(), QUICK);
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let first = fs::read(&key).expect("key written");

    let again = hilsec(
        &["image", "keygen", "--type", "ecdsa-p256", s(&key)],
        tmp.path(),
        QUICK,
    );
    assert_eq!(again.code(), 2, "refused: {}", again.stderr);
    assert!(
        again.stderr.contains(s(&key))
            && again.stderr.contains("already exists")
            && again.stderr.contains("--force"),
        "names the file and says to pass --force: {}",
        again.stderr
    );
    assert_eq!(fs::read(&key).expect("key"), first, "the key is untouched");

    let forced = hilsec(
        &[
            "image",
            "keygen",
            "--force",
            "--type",
            "ecdsa-p256",
            s(&key),
        ],
        tmp.path(),
        QUICK,
    );
    assert_eq!(forced.code(), 0, "{}", forced.stderr);
    assert_ne!(fs::read(&key).expect("key"), first, "replaced with --force");
}

#[test]
fn check_board_warns_about_env_secrets_that_run_would_refuse() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("boards");
    fs::create_dir_all(&dir).expect("boards dir");
    let var = format!("HILSEC_NEWCOMER_PW_{}", std::process::id());
    let (model, units) = plug_model_and_units();
    fs::write(dir.join("plug-model.toml"), model).expect("model file");
    // One unit reads its password from an environment variable nobody set.
    let unit = units[0].replace(
        "password = { value = \"Vq7#mZ2p!Lk9\" }",
        &format!("password = {{ env = \"{var}\" }}"),
    );
    assert!(
        unit.contains(&var),
        "the fixture's password line was replaced"
    );
    let unit_text = unit_file("plug-model.toml", &unit);
    let line = unit_text
        .lines()
        .position(|l| l.contains(&var))
        .expect("env line")
        + 1;
    let unit_path = dir.join("plug-unit.toml");
    fs::write(&unit_path, unit_text).expect("unit file");

    let check = hilsec(&["check-board", s(&dir)], tmp.path(), QUICK);
    assert_eq!(check.code(), 0, "valid, only a warning: {}", check.stderr);
    let expected_start = format!("warning: {}:{line}:", unit_path.display());
    let warning = check
        .stderr
        .lines()
        .find(|l| l.starts_with(&expected_start))
        .unwrap_or_else(|| panic!("a warning at {expected_start}: {}", check.stderr));
    assert!(
        warning.contains(&var)
            && warning.contains("is not set")
            && warning.ends_with("run will refuse this board until it is"),
        "{warning}"
    );
    assert!(
        check
            .stdout
            .contains("ok: 1 model (SimPlug S1), 1 unit; 1 warning"),
        "{}",
        check.stdout
    );

    // `run` does refuse it, naming the same variable, and starts nothing.
    let out = tmp.path().join("out");
    let run = hilsec(
        &["run", "--board", s(&dir), "--out", s(&out)],
        tmp.path(),
        QUICK,
    );
    assert_eq!(run.code(), 2, "{}", run.stderr);
    assert!(run.stderr.contains(&var), "{}", run.stderr);
    assert!(!out.join("journal.jsonl").exists());

    // With the variable set there is nothing to warn about.
    let set = spawn_env(
        &["check-board", s(&dir)],
        &[(&var, "Zq8#vN3m!Kp7")],
        tmp.path(),
    )
    .finish(QUICK);
    assert_eq!(set.code(), 0, "{}", set.stderr);
    assert!(!set.stderr.contains("warning"), "{}", set.stderr);
    assert!(
        set.stdout.contains("ok: 1 model (SimPlug S1), 1 unit") && !set.stdout.contains("warning"),
        "{}",
        set.stdout
    );
}

/// Test ids in `results.json`, sorted and deduplicated.
fn ids_run(out: &Path) -> Vec<String> {
    let r = results(out);
    let mut ids: Vec<String> = r["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .map(|t| t["test"].as_str().expect("test id").to_string())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Test ids `hilsec list` printed (the indented lines that start with an id).
fn ids_listed(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn test_globs_select_tests_in_run_and_list() {
    require_simdev();
    let tmp = tempfile::tempdir().expect("tempdir");

    let list = hilsec(&["list", "--test", "support.*"], tmp.path(), QUICK);
    assert_eq!(list.code(), 0, "{}", list.stderr);
    assert_eq!(
        ids_listed(&list.stdout),
        ["support.period-published", "support.period-not-shortened"],
        "{}",
        list.stdout
    );

    // Repeatable, and an exact id is a glob too; with --suite, the intersection.
    let list = hilsec(
        &[
            "list",
            "--suite",
            "password",
            "--test",
            "*unique*",
            "--test",
            "password.not-common",
        ],
        tmp.path(),
        QUICK,
    );
    assert_eq!(list.code(), 0, "{}", list.stderr);
    assert_eq!(
        ids_listed(&list.stdout),
        ["password.unique-across-units", "password.not-common"],
        "{}",
        list.stdout
    );

    let out = tmp.path().join("out");
    let run = hilsec(
        &[
            "run",
            "--board",
            "boards/sim/simplug-s1.toml",
            "--test",
            "support.*",
            "--out",
            s(&out),
        ],
        tmp.path(),
        Duration::from_secs(180),
    );
    assert!(
        run.code() == 0 || run.code() == 1,
        "ran: {}\n{}",
        run.code(),
        run.stderr
    );
    assert_eq!(
        ids_run(&out),
        ["support.period-not-shortened", "support.period-published"]
    );
    assert_eq!(
        results(&out)["tests"].as_array().expect("tests").len(),
        4,
        "two tests on each of the two units"
    );
}

#[test]
fn a_test_glob_that_selects_nothing_is_a_usage_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = tmp.path().join("out");
    for args in [
        vec!["run", "--test", "suport.*", "--out", s(&out)],
        // Known ids, but none in the chosen suite.
        vec![
            "run",
            "--suite",
            "password",
            "--test",
            "support.*",
            "--out",
            s(&out),
        ],
        vec!["list", "--test", "suport.*"],
    ] {
        let run = hilsec(&args, tmp.path(), QUICK);
        assert_eq!(run.code(), 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.contains("matches no test")
                && run.stderr.contains("known test ids")
                && run.stderr.contains("support.{period-published, ")
                && run.stderr.contains("password.{universal-default-rejected"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(run.stdout.is_empty(), "{args:?}: {}", run.stdout);
    }
    let bad = hilsec(&["list", "--test", "support.[x"], tmp.path(), QUICK);
    assert_eq!(bad.code(), 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("not a valid glob"), "{}", bad.stderr);
    assert!(!out.exists(), "nothing was run");
}

/// A folder holding a model file (no units) between two unit files that extend it, in the
/// order the loader reads them (plug-a, plug-model, plug-z): one model with two units for every
/// command, so per-model tests judge both units together.
#[test]
fn a_folder_of_a_model_file_and_two_unit_files_is_one_model_everywhere() {
    require_simdev();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir: PathBuf = tmp.path().join("plugs");
    fs::create_dir_all(&dir).expect("folder");
    let (model, units) = plug_model_and_units();
    fs::write(dir.join("plug-model.toml"), model).expect("model file");
    fs::write(
        dir.join("plug-a.toml"),
        unit_file("plug-model.toml", &units[0]),
    )
    .expect("unit a");
    fs::write(
        dir.join("plug-z.toml"),
        unit_file("plug-model.toml", &units[1]),
    )
    .expect("unit z");

    let check = hilsec(&["check-board", s(&dir)], tmp.path(), QUICK);
    assert_eq!(check.code(), 0, "{}", check.stderr);
    assert_eq!(
        check.stdout.trim(),
        "ok: 1 model (SimPlug S1), 2 units",
        "{}",
        check.stderr
    );

    let list = hilsec(
        &[
            "list",
            "--board",
            s(&dir),
            "--test",
            "password.unique-across-units",
        ],
        tmp.path(),
        QUICK,
    );
    assert_eq!(list.code(), 0, "{}", list.stderr);
    let lines: Vec<&str> = list
        .stdout
        .lines()
        .filter(|l| l.contains("SimPlug S1"))
        .collect();
    assert_eq!(
        lines,
        ["      SimPlug S1 [sim-plug-1, sim-plug-2]: applies"],
        "{}",
        list.stdout
    );

    let out = tmp.path().join("out");
    let run = hilsec(
        &[
            "run",
            "--board",
            s(&dir),
            "--test",
            "password.unique-across-units",
            "--out",
            s(&out),
        ],
        tmp.path(),
        Duration::from_secs(180),
    );
    assert_eq!(run.code(), 0, "{}", run.stderr);
    let r = results(&out);
    for unit in ["sim-plug-1", "sim-plug-2"] {
        let rec = record(&r, unit, "password.unique-across-units");
        assert_eq!(rec["verdict"], "pass", "{rec}");
        assert!(
            rec["message"]
                .as_str()
                .expect("message")
                .contains("all 2 units have different passwords"),
            "judged across both units: {rec}"
        );
    }
}
