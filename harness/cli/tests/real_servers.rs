//! Verdicts against servers nobody here wrote: `mosquitto` as a unit's own broker (with and
//! without `allow_anonymous`) and BusyBox `telnetd` as a unit's telnet login, each driven by
//! `hilsec run` through a board file only.
//!
//! The programs come from Debian packages (`mosquitto`, `busybox-static`), which the test
//! command installs; without them the tests say they are skipped, except in CI, where they
//! fail.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The first of `paths` that exists, else one on PATH; `None` (a loud skip) outside CI.
fn program(paths: &[&str], package: &str, check: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let name = Path::new(paths[0]).file_name().expect("a file name");
    let found = paths
        .iter()
        .map(PathBuf::from)
        .chain(on_path.iter().map(|d| d.join(name)))
        .find(|p| p.is_file() && check(p));
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{package} is missing in CI: the test command (ci/test) installs it"
        );
        eprintln!("SKIPPED: {package} is not installed (apt-get install {package})");
    }
    found
}

/// A child process killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_listening(port: u16, child: &mut Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("{what} exited at start ({st})");
        }
        assert!(Instant::now() < deadline, "{what} did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// mosquitto on a free port: anonymous clients allowed, or only the users of a password file.
fn mosquitto(dir: &Path, anonymous: bool) -> Option<(Server, u16)> {
    let exe = program(&["/usr/sbin/mosquitto"], "mosquitto", |_| true)?;
    let port = free_port();
    let mut conf = format!("listener {port} 127.0.0.1\npersistence false\n");
    if rustix_is_root() {
        conf.push_str("user root\n");
    }
    if anonymous {
        conf.push_str("allow_anonymous true\n");
    } else {
        let passwd = dir.join(format!("passwd-{port}"));
        let tool = program(&["/usr/bin/mosquitto_passwd"], "mosquitto", |_| true)?;
        let st = Command::new(tool)
            .args(["-b", "-c"])
            .arg(&passwd)
            .args(["hub", "Hz7-unit-broker-Qe4"])
            .stdout(Stdio::null())
            .status()
            .expect("mosquitto_passwd");
        assert!(st.success());
        conf.push_str(&format!(
            "allow_anonymous false\npassword_file {}\n",
            passwd.display()
        ));
    }
    let conf_path = dir.join(format!("mosquitto-{port}.conf"));
    std::fs::write(&conf_path, conf).expect("config");
    let mut child = Command::new(exe)
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto");
    wait_listening(port, &mut child, "mosquitto");
    Some((Server(child), port))
}

fn rustix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn mosquitto_as_a_units_own_broker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((_open, open_port)) = mosquitto(dir.path(), true) else {
        return;
    };
    let Some((_locked, locked_port)) = mosquitto(dir.path(), false) else {
        return;
    };
    let board = dir.path().join("broker.toml");
    std::fs::write(
        &board,
        format!(
            r#"[model]
name = "Mosquitto hub"

[declarations.broker]
address = "127.0.0.1:{{unit.port}}"
command_topics = ["home/{{unit.name}}/cmd/relay"]
listen = "1s"

[[unit]]
name = "open-broker"
vars = {{ port = "{open_port}" }}

[[unit]]
name = "locked-broker"
vars = {{ port = "{locked_port}" }}
"#
        ),
    )
    .expect("board");
    let out = dir.path().join("out");
    let run = hilsec(
        &[
            "run",
            "--board",
            board.to_str().expect("utf-8"),
            "--suite",
            "password",
            "--out",
            out.to_str().expect("utf-8"),
        ],
        dir.path(),
        Duration::from_secs(180),
    );
    assert_eq!(
        run.code(),
        1,
        "the open broker fails; stderr:\n{}",
        run.stderr
    );
    let results = results(&out);
    let open = record(&results, "open-broker", "password.broker-requires-auth");
    assert_eq!(open["verdict"], "fail", "{open}");
    let msg = open["message"].as_str().expect("message");
    assert!(
        msg.contains("home/open-broker/cmd/relay") && msg.contains("delivered"),
        "{msg}"
    );
    let locked = record(&results, "locked-broker", "password.broker-requires-auth");
    assert_eq!(locked["verdict"], "pass", "{locked}");
    let msg = locked["message"].as_str().expect("message");
    assert!(
        msg.contains("anonymous CONNECT refused")
            && msg.contains("universal default credentials refused"),
        "{msg}"
    );
    let ev = std::fs::read_to_string(
        out.join("evidence/locked-broker/password.broker-requires-auth.log"),
    )
    .expect("evidence");
    assert!(
        !ev.contains("Hz7-unit-broker-Qe4"),
        "the lab's broker password never appears"
    );
}

/// A login program for telnetd: BusyBox login's prompts, accepting `admin` with `password`
/// only; an empty user name shows the prompt again, a refusal ends the session (as login does
/// after its attempts).
fn login_script(dir: &Path, name: &str, password: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            r#"#!/bin/sh
while :; do
  printf 'login: '
  IFS= read -r user || exit 0
  user=$(printf '%s' "$user" | tr -d '\r')
  [ -n "$user" ] && break
done
printf 'Password: '
stty -echo 2>/dev/null
IFS= read -r pass || exit 0
stty echo 2>/dev/null
pass=$(printf '%s' "$pass" | tr -d '\r')
printf '\r\n'
if [ "$user" = admin ] && [ "$pass" = '{password}' ]; then
  while printf '$ ' && IFS= read -r cmd; do
    cmd=$(printf '%s' "$cmd" | tr -d '\r')
    [ "$cmd" = exit ] && exit 0
  done
fi
sleep 0.2
printf 'Login incorrect\r\n'
"#
        ),
    )
    .expect("script");
    let mut perm = std::fs::metadata(&path).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&path, perm).expect("chmod");
    path
}

fn has_telnetd(busybox: &Path) -> bool {
    Command::new(busybox)
        .arg("--list")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l == "telnetd")
        })
        .unwrap_or(false)
}

fn telnetd(busybox: &Path, script: &Path) -> (Server, u16) {
    let port = free_port();
    let mut child = Command::new(busybox)
        .args(["telnetd", "-F", "-b"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-l")
        .arg(script)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start telnetd");
    wait_listening(port, &mut child, "busybox telnetd");
    (Server(child), port)
}

#[test]
fn busybox_telnetd_logins_get_the_right_verdicts() {
    let Some(busybox) = program(
        &["/bin/busybox", "/usr/bin/busybox"],
        "busybox-static",
        has_telnetd,
    ) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let weak = login_script(dir.path(), "login-weak", "admin");
    let strong = login_script(dir.path(), "login-strong", "Kq8-unique-Zt3");
    let (_weak_server, weak_port) = telnetd(&busybox, &weak);
    let (_strong_server, strong_port) = telnetd(&busybox, &strong);
    let board = dir.path().join("telnet.toml");
    std::fs::write(
        &board,
        format!(
            r#"[model]
name = "Telnet unit"

[declarations]
login_user = "admin"

[interfaces.telnet]
kind = "telnet"
address = "127.0.0.1:{{unit.port}}"
timeout = "5s"

[actions.login]
params = ["user", "password"]
secret_params = ["password"]
steps = [
  {{ send = "\n" }},
  {{ expect = 'login: $' }},
  {{ send = "{{user}}\n" }},
  {{ expect = 'Password: $' }},
  {{ send = "{{password}}\n" }},
  {{ expect = '\$ $', reject = 'Login incorrect' }},
]

[actions.logout]
steps = [ {{ send = "exit\n" }} ]

[[unit]]
name = "telnet-weak"
password = {{ value = "admin" }}
vars = {{ port = "{weak_port}" }}

[[unit]]
name = "telnet-strong"
password = {{ value = "Kq8-unique-Zt3" }}
vars = {{ port = "{strong_port}" }}
"#
        ),
    )
    .expect("board");
    let out = dir.path().join("out");
    let run = hilsec(
        &[
            "run",
            "--board",
            board.to_str().expect("utf-8"),
            "--suite",
            "password",
            "--out",
            out.to_str().expect("utf-8"),
        ],
        dir.path(),
        Duration::from_secs(600),
    );
    assert_eq!(run.code(), 1, "stderr:\n{}", run.stderr);
    let results = results(&out);
    let weak = record(
        &results,
        "telnet-weak",
        "password.universal-default-rejected",
    );
    assert_eq!(weak["verdict"], "fail", "{weak}");
    assert!(
        weak["message"]
            .as_str()
            .expect("message")
            .contains("admin/admin"),
        "{weak}"
    );
    let strong = record(
        &results,
        "telnet-strong",
        "password.universal-default-rejected",
    );
    assert_eq!(strong["verdict"], "pass", "{strong}");
    for unit in ["telnet-weak", "telnet-strong"] {
        let r = record(&results, unit, "password.unit-password-accepted");
        assert_eq!(r["verdict"], "pass", "{unit}: {r}");
    }
    // The evidence is the unit's text: telnet's negotiation is noted, never shown as bytes.
    let ev = std::fs::read_to_string(
        out.join("evidence/telnet-strong/password.unit-password-accepted.log"),
    )
    .expect("evidence");
    assert!(ev.contains("login: "), "{ev}");
    assert!(!ev.contains("\\xff"), "no IAC byte in the evidence: {ev}");
    assert!(
        !ev.contains("Kq8-unique-Zt3"),
        "the password is redacted: {ev}"
    );
}
