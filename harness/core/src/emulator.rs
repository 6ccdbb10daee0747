//! Starting and stopping emulated units (the simulated device, QEMU, Renode, any process).
//!
//! The process is started in its own process group with its standard input held by the harness
//! (a child can watch for EOF) and, on Linux, a parent-death signal, so no unit outlives the
//! harness even when it is killed. Its output is read until the board's `ready` regex matches;
//! the named captures become `{emulator.NAME}` variables (e.g. the pseudo-terminal it opened).
//! Output after that is drained into a bounded tail kept for error messages.
//!
//! Secrets reach the process through its environment (`[emulator] env`), never its arguments:
//! arguments are readable by every user of the machine (`ps`, /proc/PID/cmdline), the
//! environment only by the process's owner.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::board::{Emulator, EmulatorKind};
use crate::template::Vars;

const TAIL_LINES: usize = 40;
const MAX_LINE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("cannot start emulator `{command}`: {detail}")]
    Spawn { command: String, detail: String },
    #[error("emulator `{command}` did not print a line matching /{ready}/ within {waited:?}; its last output:\n{tail}")]
    NotReady {
        command: String,
        ready: String,
        waited: Duration,
        tail: String,
    },
    #[error("emulator argument: {0}")]
    Template(String),
}

/// A running emulated unit. Dropping it kills the process.
pub struct RunningEmulator {
    child: Child,
    pub vars: BTreeMap<String, String>,
    tail: Arc<Mutex<Vec<String>>>,
}

impl RunningEmulator {
    /// Last lines the emulator printed (for diagnosing a unit that died).
    pub fn tail(&self) -> String {
        match self.tail.lock() {
            Ok(t) => t.join("\n"),
            Err(p) => p.into_inner().join("\n"),
        }
    }

    /// Whether the process has exited, and how.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(st)) => Some(st.to_string()),
            _ => None,
        }
    }

    /// Kills the process group and reaps the process.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            // The emulator was started as leader of its own group; end the whole group.
            if let Some(pid) = i32::try_from(pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
        }
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

/// Where to find the program: `hilsec-simdev` next to the running executable first.
fn resolve_command(e: &Emulator) -> PathBuf {
    if e.kind == EmulatorKind::Sim && !e.command.contains('/') {
        if let Ok(v) = std::env::var("HILSEC_SIMDEV") {
            return PathBuf::from(v);
        }
        if let Ok(exe) = std::env::current_exe() {
            if let Some(dir) = exe.parent() {
                for cand in [dir.join(&e.command), dir.join("..").join(&e.command)] {
                    if cand.is_file() {
                        return cand;
                    }
                }
            }
        }
    }
    PathBuf::from(&e.command)
}

pub async fn start(e: &Emulator, vars: &Vars) -> Result<RunningEmulator, EmulatorError> {
    let program = resolve_command(e);
    let mut args = Vec::new();
    for a in &e.args {
        args.push(
            a.render(vars)
                .map_err(|e| EmulatorError::Template(e.to_string()))?
                .text,
        );
    }
    let mut env = Vec::new();
    for (k, t) in &e.env {
        let v = t
            .render(vars)
            .map_err(|m| EmulatorError::Template(format!("env {k}: {m}")))?;
        env.push((k.clone(), v.text));
    }
    let command = program.display().to_string();
    let mut cmd = Command::new(&program);
    cmd.args(&args)
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    #[cfg(target_os = "linux")]
    unsafe {
        cmd.pre_exec(|| {
            // A direct system call: safe between fork and exec.
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|err| EmulatorError::Spawn {
        command: command.clone(),
        detail: if err.kind() == std::io::ErrorKind::NotFound && e.kind == EmulatorKind::Sim {
            format!("{err}; build it with `cargo build --release` (it is the hilsec-simdev binary), or set HILSEC_SIMDEV")
        } else {
            err.to_string()
        },
    })?;

    let tail = Arc::new(Mutex::new(Vec::new()));
    let (tx, mut rx) = mpsc::channel::<String>(64);
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        let tail = tail.clone();
        tokio::spawn(async move {
            // Small: a device process says little once it is up, and a fleet has many.
            let mut r = BufReader::with_capacity(1024, stream);
            let mut line = Vec::new();
            loop {
                line.clear();
                // Bounded line reads: a process printing without newlines cannot grow memory.
                match (&mut r)
                    .take(MAX_LINE as u64)
                    .read_until(b'\n', &mut line)
                    .await
                {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let s = String::from_utf8_lossy(&line).trim_end().to_string();
                        if let Ok(mut t) = tail.lock() {
                            if t.len() >= TAIL_LINES {
                                t.remove(0);
                            }
                            t.push(s.clone());
                        }
                        // After start-up nobody listens; lines only go to the tail.
                        let _ = tx.try_send(s);
                    }
                }
            }
        });
    }
    drop(tx);

    let ready = tokio::time::timeout(e.ready_timeout, async {
        while let Some(line) = rx.recv().await {
            if let Some(c) = e.ready.captures(&line) {
                let mut vars = BTreeMap::new();
                for name in e.ready.capture_names().flatten() {
                    if let Some(m) = c.name(name) {
                        vars.insert(name.to_string(), m.as_str().to_string());
                    }
                }
                return Some(vars);
            }
        }
        None
    })
    .await;
    match ready {
        Ok(Some(vars)) => Ok(RunningEmulator { child, vars, tail }),
        _ => {
            let running = RunningEmulator {
                child,
                vars: BTreeMap::new(),
                tail,
            };
            let tail = running.tail();
            running.stop().await;
            Err(EmulatorError::NotReady {
                command,
                ready: e.ready.as_str().to_string(),
                waited: e.ready_timeout,
                tail,
            })
        }
    }
}

use tokio::io::AsyncReadExt as _;
