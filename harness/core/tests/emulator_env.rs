//! Secrets reach an emulated unit through its environment, never its command line: another
//! user of the machine can read `/proc/PID/cmdline` (and `ps`), not `/proc/PID/environ`.

use std::collections::BTreeMap;

use hilsec_core::board::{load_boards, LoadMode};
use hilsec_core::device::{Device, RunEnv};

const SECRET: &str = "Env-Only-Secret-42";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawned_emulator_gets_the_password_in_its_environment_only() {
    let dir = std::env::temp_dir().join(format!("hilsec-emulator-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("board.toml");
    let board = format!(
        r#"
[model]
name = "Env Test"

[emulator]
kind = "process"
command = "sh"
args = ["-c", "echo ready pid=$$; sleep 30", "{{unit.name}}"]
env = {{ HILSEC_SIM_PASSWORD = "{{secret.password}}", HILSEC_SIM_UNIT = "{{unit.name}}" }}
ready = 'ready pid=(?P<pid>\d+)'
ready_timeout = "20s"

[[unit]]
name = "env-1"
password = {{ value = "{SECRET}" }}
"#
    );
    std::fs::write(&file, board).expect("write board");
    let mut boards = load_boards(std::slice::from_ref(&file), LoadMode::Run)
        .unwrap_or_else(|e| panic!("board loads: {e:?}"));
    let board = boards.remove(0);
    let unit = board.units[0].clone();
    let emulator = board.model.emulator.clone().expect("emulator");
    let dev = Device::new(unit, board.model, &BTreeMap::new(), &RunEnv::default());
    let mut running = hilsec_core::emulator::start(&emulator, dev.globals(), None)
        .await
        .expect("emulator starts");
    let pid = running.vars.get("pid").cloned().expect("pid capture");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("environ");
    running.stop().await;
    let _ = std::fs::remove_dir_all(&dir);

    let cmdline = String::from_utf8_lossy(&cmdline).into_owned();
    let environ = String::from_utf8_lossy(&environ).into_owned();
    // The arguments are there for anyone to read (the unit's name among them) ...
    assert!(cmdline.contains("env-1"), "{cmdline:?}");
    // ... the password is not.
    assert!(
        !cmdline.contains(SECRET),
        "the password is in argv: {cmdline:?}"
    );
    let vars: Vec<&str> = environ.split('\0').collect();
    assert!(
        vars.contains(&format!("HILSEC_SIM_PASSWORD={SECRET}").as_str()),
        "not in the environment: {vars:?}"
    );
    assert!(vars.contains(&"HILSEC_SIM_UNIT=env-1"), "{vars:?}");
}
