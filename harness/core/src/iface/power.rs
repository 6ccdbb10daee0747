//! Power control of a unit: switching a board's supply on, off, or off and on again.
//!
//! A physical unit that hangs, or a test that needs a cold boot (a first-boot password, an
//! update that only takes effect after a power loss), needs its power switched by the harness.
//! Labs do it in one of three ways, each a [`PowerDriver`]: a shell command (USB relays, PDUs,
//! `uhubctl`), a coil of a Modbus TCP relay board, or a Tasmota smart plug reached over MQTT.
//! [`PowerLink`] gives them one interface whose every switch is *confirmed* (the command's exit
//! status, the coil read back, the plug's own state report) and noted in the transcript, so the
//! evidence says when the power changed and who said so. Emulated units are powered elsewhere
//! (`emulator::RunningEmulator::power_cycle`).
//!
//! The protocols are not re-implemented: Modbus goes through [`ModbusLink`], MQTT through
//! [`MqttLink`], so their traffic is recorded exactly as for any other interface. Every wait is
//! bounded by the link's timeout; a command that outlives it is killed with its whole process
//! group (it runs as the leader of its own group, so a relay tool it started goes too), and
//! whatever a finished command left running in its group is ended with it: a power switch
//! leaves no processes behind. A command's output is kept (the last [`OUTPUT_KEPT`] bytes of
//! each stream) and recorded; its stderr's end is quoted when it fails.

use std::process::Stdio;
use std::time::{Duration, Instant};

use regex::bytes::Regex;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::modbus::ModbusLink;
use super::mqtt::{split_address, MqttLink, MqttParams};
use super::LinkError;
use crate::board::ModbusTable;
use crate::transcript::{Direction, Transcript};

/// Bytes of a command's stdout and of its stderr kept (the last ones; the rest is counted).
pub const OUTPUT_KEPT: usize = 4096;
/// Bytes of a command's stderr quoted in an error message.
const STDERR_QUOTED: usize = 512;
/// How long a finished command's output pipes may stay open (held by a process it left
/// behind) before its process group is ended.
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// How a unit's power is switched. Every string is already rendered (templates expanded).
#[derive(Clone)]
pub enum PowerDriver {
    /// Shell commands, each run with `sh -c` with `HILSEC_POWER` set to `on`, `off` or `cycle`.
    /// Without `cycle`, a cycle is `off`, a wait, `on`; a `cycle` command also gets
    /// `HILSEC_POWER_OFF_MS`, how long the power should stay off.
    Command {
        on: String,
        off: String,
        cycle: Option<String>,
    },
    /// A coil of a Modbus TCP relay board: `address` "host:port", `unit_id`, `coil`. `on_value`
    /// is the coil's value that powers the unit: false for a relay wired normally-closed (coil
    /// set = power off).
    ModbusCoil {
        address: String,
        unit_id: u8,
        coil: u16,
        on_value: bool,
    },
    /// A Tasmota plug on the MQTT broker `broker` ("host:port"; optional user name and
    /// password). Switching publishes `cmnd/<topic>/POWER<relay>` `ON`/`OFF` (no number when
    /// `relay` is `None`) and waits for the plug's confirmation, `{"POWER":"ON"}` (or
    /// `{"POWER<n>":"OFF"}`) on `stat/<topic>/RESULT`, or `ON`/`OFF` on `stat/<topic>/POWER<n>`.
    /// `client_id` must be unique on the broker, which drops the older of two clients with the
    /// same id.
    Tasmota {
        broker: String,
        topic: String,
        relay: Option<u8>,
        client_id: String,
        credentials: Option<(String, String)>,
    },
}

impl std::fmt::Debug for PowerDriver {
    /// Shows everything but the MQTT password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PowerDriver::Command { on, off, cycle } => f
                .debug_struct("Command")
                .field("on", on)
                .field("off", off)
                .field("cycle", cycle)
                .finish(),
            PowerDriver::ModbusCoil {
                address,
                unit_id,
                coil,
                on_value,
            } => f
                .debug_struct("ModbusCoil")
                .field("address", address)
                .field("unit_id", unit_id)
                .field("coil", coil)
                .field("on_value", on_value)
                .finish(),
            PowerDriver::Tasmota {
                broker,
                topic,
                relay,
                client_id,
                credentials,
            } => f
                .debug_struct("Tasmota")
                .field("broker", broker)
                .field("topic", topic)
                .field("relay", relay)
                .field("client_id", client_id)
                .field("user", &credentials.as_ref().map(|(u, _)| u))
                .finish(),
        }
    }
}

/// The connection behind a [`PowerLink`].
enum Backend {
    Command {
        on: String,
        off: String,
        cycle: Option<String>,
    },
    Modbus {
        link: ModbusLink,
        coil: u16,
        on_value: bool,
    },
    Tasmota {
        link: MqttLink,
        topic: String,
        /// `POWER` or `POWER<n>`: the command, the result's key and the state topic's last level.
        command: String,
        /// Any message that could state the relay's state (see [`plug_state`]).
        answer: Regex,
    },
}

/// A unit's power switch, opened from a [`PowerDriver`].
pub struct PowerLink {
    name: String,
    timeout: Duration,
    transcript: Transcript,
    backend: Backend,
}

fn word(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

impl PowerLink {
    /// Opens the switch: connects to the relay board or the broker (a [`LinkError::Open`] when
    /// it cannot be reached within `timeout`) and, for a plug, subscribes to its state reports.
    /// A command driver opens nothing; its commands run on each switch.
    pub async fn open(
        name: &str,
        driver: PowerDriver,
        timeout: Duration,
        transcript: Transcript,
    ) -> Result<Self, LinkError> {
        let backend = match driver {
            PowerDriver::Command { on, off, cycle } => {
                transcript.note(format!("power {name}: switched by shell commands"));
                Backend::Command { on, off, cycle }
            }
            PowerDriver::ModbusCoil {
                address,
                unit_id,
                coil,
                on_value,
            } => {
                let link =
                    ModbusLink::connect_tcp(name, &address, unit_id, timeout, transcript.clone())
                        .await
                        .inspect_err(|e| transcript.note(format!("power {name}: {e}")))?;
                transcript.note(format!(
                    "power {name}: coil {coil} of Modbus TCP {address} unit {unit_id}, power on = coil {}{}",
                    u8::from(on_value),
                    if on_value { "" } else { " (normally closed)" }
                ));
                Backend::Modbus {
                    link,
                    coil,
                    on_value,
                }
            }
            PowerDriver::Tasmota {
                broker,
                topic,
                relay,
                client_id,
                credentials,
            } => {
                let (host, port) = split_address(&broker).map_err(|e| {
                    let e = LinkError::Open {
                        endpoint: broker.clone(),
                        detail: e.to_string(),
                    };
                    transcript.note(format!("power {name}: {e}"));
                    e
                })?;
                if topic.is_empty() || topic.contains(['+', '#']) {
                    let e = LinkError::Protocol(format!(
                        "{topic:?} is not a Tasmota topic (empty, or an MQTT wildcard)"
                    ));
                    transcript.note(format!("power {name}: {e}"));
                    return Err(e);
                }
                let user = credentials.as_ref().map(|(u, _)| u.clone());
                let params = MqttParams {
                    host,
                    port,
                    client_id,
                    credentials,
                };
                let mut link = MqttLink::connect(name, &params, timeout, transcript.clone())
                    .await
                    .inspect_err(|e| transcript.note(format!("power {name}: {e}")))?;
                let command = match relay {
                    Some(n) => format!("POWER{n}"),
                    None => "POWER".to_string(),
                };
                let filter = format!("stat/{topic}/+");
                link.subscribe(&filter, timeout)
                    .await
                    .inspect_err(|e| transcript.note(format!("power {name}: {e}")))?;
                // Retained state reports delivered with the subscription are not answers.
                link.flush();
                transcript.note(format!(
                    "power {name}: Tasmota plug {topic:?} relay {command} on broker {broker}{}",
                    user.map(|u| format!(" as user {u:?}")).unwrap_or_default()
                ));
                Backend::Tasmota {
                    answer: answer_pattern(&command),
                    link,
                    topic,
                    command,
                }
            }
        };
        Ok(PowerLink {
            name: name.to_string(),
            timeout,
            transcript,
            backend,
        })
    }

    /// Switches the power on or off and returns once the switch is confirmed: the command
    /// exited with status 0, the coil reads back as written, or the plug reported the new state.
    pub async fn set(&mut self, on: bool) -> Result<(), LinkError> {
        let result = self.set_inner(on).await;
        if let Err(e) = &result {
            self.note(format!("{} failed: {e}", word(on)));
        }
        result
    }

    async fn set_inner(&mut self, on: bool) -> Result<(), LinkError> {
        let timeout = self.timeout;
        match &mut self.backend {
            Backend::Command {
                on: on_cmd,
                off: off_cmd,
                ..
            } => {
                let cmd = if on { on_cmd.clone() } else { off_cmd.clone() };
                self.run_command(word(on), &cmd, timeout, &[]).await
            }
            Backend::Modbus {
                link,
                coil,
                on_value,
            } => {
                let value = on == *on_value;
                let coil = *coil;
                self.transcript.note(format!(
                    "power {}: {} (write coil {coil} = {})",
                    self.name,
                    word(on),
                    u8::from(value)
                ));
                link.write_coil(coil, value, timeout).await?;
                let read = read_coil(link, coil, timeout).await?;
                if read != value {
                    return Err(LinkError::Protocol(format!(
                        "coil {coil} reads {} after writing {}",
                        u8::from(read),
                        u8::from(value)
                    )));
                }
                note(
                    &self.transcript,
                    &self.name,
                    format!(
                        "{} confirmed by reading coil {coil} back (= {})",
                        word(on),
                        u8::from(read)
                    ),
                );
                Ok(())
            }
            Backend::Tasmota {
                link,
                topic,
                command,
                answer,
            } => {
                let cmnd = format!("cmnd/{topic}/{command}");
                self.transcript.note(format!(
                    "power {}: {} (publish {cmnd} {})",
                    self.name,
                    word(on),
                    if on { "ON" } else { "OFF" }
                ));
                // Reports that arrived before the command are not its answer.
                link.flush();
                let payload = if on { "ON" } else { "OFF" };
                link.publish(&cmnd, payload.as_bytes().to_vec(), 1, false, None)
                    .await?;
                let (state, text) =
                    await_plug(link, topic, command, answer, Some(on), timeout).await?;
                if state != on {
                    return Err(LinkError::Protocol(format!(
                        "the plug reports {} after {} (stat/{topic}/+ {text})",
                        word(state).to_uppercase(),
                        word(on).to_uppercase()
                    )));
                }
                note(
                    &self.transcript,
                    &self.name,
                    format!("{} confirmed by the plug (stat/{topic}/+ {text})", word(on)),
                );
                Ok(())
            }
        }
    }

    /// Switches the power off, waits `off_for`, and switches it on again (a command driver's
    /// `cycle` command instead, when it has one, given `timeout` plus `off_for` to finish).
    pub async fn cycle(&mut self, off_for: Duration) -> Result<(), LinkError> {
        if let Backend::Command {
            cycle: Some(cmd), ..
        } = &self.backend
        {
            let cmd = cmd.clone();
            let ms = off_for.as_millis().to_string();
            let result = self
                .run_command(
                    "cycle",
                    &cmd,
                    self.timeout.saturating_add(off_for),
                    &[("HILSEC_POWER_OFF_MS", &ms)],
                )
                .await;
            if let Err(e) = &result {
                self.note(format!("cycle failed: {e}"));
            }
            return result;
        }
        self.note(format!("cycle: off, {off_for:?} off, on"));
        self.set(false).await?;
        tokio::time::sleep(off_for).await;
        self.set(true).await
    }

    /// The power's present state: `Some(true)` when on. A coil is read; a plug is asked (an
    /// empty `cmnd/<topic>/POWER<n>`); a command driver cannot tell, so `None`.
    pub async fn state(&mut self) -> Result<Option<bool>, LinkError> {
        let result = self.state_inner().await;
        match &result {
            Ok(Some(_)) => {}
            Ok(None) => self.note("state unknown (switched by commands)"),
            Err(e) => self.note(format!("state query failed: {e}")),
        }
        result
    }

    async fn state_inner(&mut self) -> Result<Option<bool>, LinkError> {
        let timeout = self.timeout;
        match &mut self.backend {
            Backend::Command { .. } => Ok(None),
            Backend::Modbus {
                link,
                coil,
                on_value,
            } => {
                let read = read_coil(link, *coil, timeout).await?;
                let on = read == *on_value;
                note(
                    &self.transcript,
                    &self.name,
                    format!("{} (coil {coil} = {})", word(on), u8::from(read)),
                );
                Ok(Some(on))
            }
            Backend::Tasmota {
                link,
                topic,
                command,
                answer,
            } => {
                let cmnd = format!("cmnd/{topic}/{command}");
                link.flush();
                link.publish(&cmnd, Vec::new(), 1, false, Some("(empty: state query)"))
                    .await?;
                let (on, text) = await_plug(link, topic, command, answer, None, timeout).await?;
                note(
                    &self.transcript,
                    &self.name,
                    format!("{} reported by the plug (stat/{topic}/+ {text})", word(on)),
                );
                Ok(Some(on))
            }
        }
    }

    /// True once the connection to the relay board or broker has dropped (the link must be
    /// opened again). A command driver has no connection and is never closed.
    pub fn is_closed(&self) -> bool {
        match &self.backend {
            Backend::Command { .. } => false,
            Backend::Modbus { link, .. } => link.is_closed(),
            Backend::Tasmota { link, .. } => link.is_closed(),
        }
    }

    /// Records from now on into `t` (the next test's transcript).
    pub fn set_transcript(&mut self, t: Transcript) {
        match &mut self.backend {
            Backend::Command { .. } => {}
            Backend::Modbus { link, .. } => link.set_transcript(t.clone()),
            Backend::Tasmota { link, .. } => link.set_transcript(t.clone()),
        }
        self.transcript = t;
    }

    fn note(&self, text: impl AsRef<str>) {
        note(&self.transcript, &self.name, text);
    }

    /// Runs `cmd` with `sh -c` as the leader of its own process group, `HILSEC_POWER=what`;
    /// its output goes to the transcript; ends the group at `timeout`.
    async fn run_command(
        &mut self,
        what: &str,
        cmd: &str,
        timeout: Duration,
        env: &[(&str, &str)],
    ) -> Result<(), LinkError> {
        self.note(format!("{what} (command: {cmd})"));
        let started = Instant::now();
        let mut command = tokio::process::Command::new("sh");
        command
            .arg("-c")
            .arg(cmd)
            .env("HILSEC_POWER", what)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: only an async-signal-safe prctl between fork and exec: the command dies with
        // the harness, even one killed with SIGKILL.
        unsafe {
            command.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))?;
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|e| LinkError::Open {
            endpoint: format!("sh -c {cmd:?}"),
            detail: e.to_string(),
        })?;
        // Ends the whole group if this future is dropped or the command overruns.
        let group = GroupGuard(
            child
                .id()
                .and_then(|p| i32::try_from(p).ok())
                .and_then(rustix::process::Pid::from_raw),
        );
        let out = tokio::spawn(read_bounded(child.stdout.take()));
        let err = tokio::spawn(read_bounded(child.stderr.take()));
        let status = tokio::time::timeout(timeout, child.wait()).await;
        let status = match status {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => Err(LinkError::Closed(format!("waiting for the command: {e}"))),
            Err(_) => {
                group.kill();
                let _ = child.start_kill();
                let _ = tokio::time::timeout(PIPE_GRACE, child.wait()).await;
                Err(LinkError::Timeout {
                    pattern: format!("exit of power command `{cmd}`"),
                    waited: timeout,
                    tail: String::new(),
                })
            }
        };
        // A process the command left behind may hold the pipes open: wait a little, then end it.
        let grace = PIPE_GRACE.min(timeout);
        let collect = |h: tokio::task::JoinHandle<Output>| {
            let abort = h.abort_handle();
            async move {
                match tokio::time::timeout(grace, h).await {
                    Ok(Ok(o)) => (o, false),
                    _ => {
                        abort.abort();
                        (Output::default(), true)
                    }
                }
            }
        };
        let (stdout, late_out) = collect(out).await;
        let (stderr, late_err) = collect(err).await;
        let left_behind = late_out || late_err;
        if left_behind {
            group.kill();
        }
        drop(group);
        for (label, o) in [("stdout", &stdout), ("stderr", &stderr)] {
            if o.total > 0 {
                let mut text = format!("{label}: ").into_bytes();
                if o.total > o.kept.len() {
                    text.extend_from_slice(
                        format!("(last {} of {} bytes) ", o.kept.len(), o.total).as_bytes(),
                    );
                }
                text.extend_from_slice(&o.kept);
                if !text.ends_with(b"\n") {
                    text.push(b'\n');
                }
                self.transcript.record(Direction::Rx, &self.name, &text);
            }
        }
        if left_behind {
            self.note(format!(
                "{what}: the command left a process holding its output after it ended; its process group was ended"
            ));
        }
        let tail = stderr_tail(&stderr.kept);
        match status {
            Err(LinkError::Timeout {
                pattern, waited, ..
            }) => Err(LinkError::Timeout {
                pattern,
                waited,
                tail,
            }),
            Err(e) => Err(e),
            Ok(s) if s.success() => {
                self.note(format!(
                    "{what} done (command exited with status 0 after {:?})",
                    started.elapsed()
                ));
                Ok(())
            }
            Ok(s) => Err(LinkError::Protocol(format!(
                "power command `{cmd}` {}; stderr: \"{tail}\"",
                describe_exit(s)
            ))),
        }
    }
}

/// Notes `power <name>: <text>` in the transcript.
fn note(transcript: &Transcript, name: &str, text: impl AsRef<str>) {
    transcript.note(format!("power {name}: {}", text.as_ref()));
}

/// Ends a command's process group when dropped (or on [`GroupGuard::kill`]).
struct GroupGuard(Option<rustix::process::Pid>);

impl GroupGuard {
    fn kill(&self) {
        if let Some(pid) = self.0 {
            // ESRCH (nothing left of the group) is the usual, good case.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        // Only processes still in the group the command led: after a clean exit, none.
        self.kill();
    }
}

/// What one output pipe of a command delivered: its last [`OUTPUT_KEPT`] bytes and a count.
#[derive(Debug, Default)]
struct Output {
    kept: Vec<u8>,
    total: usize,
}

async fn read_bounded<R: AsyncRead + Unpin>(pipe: Option<R>) -> Output {
    let mut o = Output::default();
    let Some(mut pipe) = pipe else { return o };
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return o,
            Ok(n) => {
                o.total += n;
                o.kept.extend_from_slice(&buf[..n]);
                if o.kept.len() > OUTPUT_KEPT {
                    let cut = o.kept.len() - OUTPUT_KEPT;
                    o.kept.drain(..cut);
                }
            }
        }
    }
}

/// The end of a command's stderr for an error message: last line(s), at most
/// [`STDERR_QUOTED`] bytes, escaped.
fn stderr_tail(err: &[u8]) -> String {
    let trimmed = err.trim_ascii_end();
    let from = trimmed.len().saturating_sub(STDERR_QUOTED);
    let tail = String::from_utf8_lossy(&trimmed[from..]);
    tail.escape_debug().to_string()
}

fn describe_exit(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (None, Some(sig)) => format!("was ended by signal {sig}"),
        _ => format!("ended: {s}"),
    }
}

async fn read_coil(link: &mut ModbusLink, coil: u16, timeout: Duration) -> Result<bool, LinkError> {
    let values = link.read(ModbusTable::Coils, coil, 1, timeout).await?;
    match values.first() {
        Some(v) => Ok(*v != 0),
        None => Err(LinkError::Protocol(format!(
            "reading coil {coil} returned no value"
        ))),
    }
}

/// Messages that state the relay's state: the JSON result (`{"POWER1":"ON", ...}`) anywhere
/// under `stat/<topic>/`, or a bare `ON`/`OFF` (the `stat/<topic>/POWER<n>` report). A single
/// relay answers `POWER` to `POWER1`, so for relay 1 (or none) both keys count. The MQTT link
/// hands over payloads, not topics, so a bare report cannot be told from another relay's of the
/// same plug; Tasmota sends the JSON result first, and that names the relay.
fn answer_pattern(command: &str) -> Regex {
    let key = match command {
        "POWER" | "POWER1" => "POWER1?".to_string(),
        other => regex::escape(other),
    };
    let pattern = format!(r#"(?:"{key}"\s*:\s*"(?P<json>ON|OFF)")|(?:\A\s*(?P<bare>ON|OFF)\s*\z)"#);
    // The key is `POWER` and digits (escaped): no input of ours makes the pattern invalid.
    Regex::new(&pattern).expect("the answer pattern is valid")
}

/// The state a plug's message states, and whether it came as JSON (the result of a command,
/// never left over from an earlier one) rather than a bare report.
fn plug_state(answer: &Regex, payload: &str) -> Option<(bool, bool)> {
    let c = answer.captures(payload.as_bytes())?;
    if let Some(m) = c.name("json") {
        return Some((m.as_bytes() == b"ON", true));
    }
    c.name("bare").map(|m| (m.as_bytes() == b"ON", false))
}

/// Waits for the plug's report of its relay's state; returns the state and the payload that
/// stated it. The JSON result names the relay and comes first, so it ends the wait. A bare
/// report (`ON` on `stat/<topic>/POWER<n>`) cannot be told from another relay's, or from the
/// one that followed the previous command's result, so it only counts when no JSON result came
/// within `timeout` (the last one seen, then).
async fn await_plug(
    link: &mut MqttLink,
    topic: &str,
    command: &str,
    answer: &Regex,
    want: Option<bool>,
    timeout: Duration,
) -> Result<(bool, String), LinkError> {
    let filter = format!("stat/{topic}/+");
    let deadline = Instant::now() + timeout;
    let mut bare: Option<(bool, String)> = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let waited = match link.await_message(&filter, answer, None, left).await {
            Ok(m) => m,
            Err(LinkError::Timeout { tail, .. }) => {
                if let Some(report) = bare {
                    return Ok(report);
                }
                return Err(LinkError::Timeout {
                    pattern: format!(
                        "{command} {} confirmation on {filter}",
                        want.map(|w| if w { "ON" } else { "OFF" })
                            .unwrap_or("state")
                    ),
                    waited: timeout,
                    tail,
                });
            }
            Err(e) => return Err(e),
        };
        let text = waited.text;
        match plug_state(answer, &text) {
            Some((on, true)) => return Ok((on, text)),
            Some((on, false)) => bare = Some((on, text)),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_of_the_relay_are_recognised() {
        let one = answer_pattern("POWER");
        assert_eq!(plug_state(&one, r#"{"POWER":"ON"}"#), Some((true, true)));
        assert_eq!(plug_state(&one, r#"{"POWER1":"OFF"}"#), Some((false, true)));
        assert_eq!(plug_state(&one, "OFF"), Some((false, false)));
        assert_eq!(plug_state(&one, r#"{"POWER2":"ON"}"#), None);
        assert_eq!(plug_state(&one, r#"{"Status":{"Power":1}}"#), None);
        let two = answer_pattern("POWER2");
        assert_eq!(plug_state(&two, r#"{"POWER2":"ON"}"#), Some((true, true)));
        assert_eq!(plug_state(&two, r#"{"POWER":"ON"}"#), None);
        assert_eq!(plug_state(&two, r#"{"POWER1":"ON"}"#), None);
    }

    #[test]
    fn stderr_tail_is_bounded() {
        let long = vec![b'x'; 10_000];
        assert!(stderr_tail(&long).len() <= STDERR_QUOTED);
        assert_eq!(
            stderr_tail(b"relay: no such device\n"),
            "relay: no such device"
        );
    }

    /// Links live in the device's state and their operations run on the multi-threaded runtime.
    #[allow(dead_code)]
    fn operations_are_send(p: &mut PowerLink) {
        fn send<T: Send>(_: T) {}
        send(p.set(true));
        send(p.cycle(Duration::ZERO));
        send(p.state());
    }

    #[test]
    fn debug_hides_the_password() {
        let d = PowerDriver::Tasmota {
            broker: "b:1883".into(),
            topic: "plug".into(),
            relay: None,
            client_id: "c".into(),
            credentials: Some(("u".into(), "hunter2-secret".into())),
        };
        assert!(!format!("{d:?}").contains("hunter2"));
    }
}
