//! labgrid places: a unit's console reached through a lab's existing labgrid coordinator.
//!
//! Labs that already share their boards through labgrid keep doing so: a board file names the
//! unit's *place* (`kind = "labgrid"`), and hilsec takes it the way a person would, with
//! `labgrid-client`: `acquire` before the first exchange, `release` when the unit is done. While
//! the place is held, its serial port (a `NetworkSerialPort`: ser2net on the exporter, RFC 2217
//! or raw TCP) becomes the unit's console; an RFC 2217 port is a telnet console in COM-PORT
//! mode (`iface/telnet.rs`, which sets the baud rate), a raw one a raw-TCP console.
//!
//! Why `labgrid-client` and not the coordinator's gRPC API: the client is what every labgrid lab
//! already has and trusts, it knows the lab's identity (`LG_HOSTNAME`, `LG_USERNAME`) and
//! coordinator (`LG_COORDINATOR`), and its messages (who holds a place) are the ones the lab's
//! people know. Its `show` output is the one form that names a held place's resources with their
//! parameters (labgrid has no machine-readable listing short of `export`, which needs a labgrid
//! environment and then waits for Ctrl-C); each resource is printed there as a Python literal
//! (`pprint`), which [`parse_show`] reads with a small literal parser of its own.
//!
//! Lifetime: a [`PlaceLease`] is the held place. The device keeps it among its links for the
//! whole unit (a console reconnected after a power cycle keeps the place) once a console was
//! opened on it (a place whose port cannot be found or connected is given back at once), and
//! gives it back with [`PlaceLease::release`] (`labgrid-client release`, awaited, bounded by
//! [`RELEASE_TIMEOUT`]) when the unit's group ends; a failed release is a warning on stderr
//! (there is no test left whose evidence could carry it). A lease dropped unreleased (an acquire
//! cut short, which the coordinator may have granted; cancellation; a panic) is released by its
//! drop, off the runtime's worker threads (see [`PlaceLease`]'s `Drop`). One run never takes one
//! place twice ([`LabgridError::InUse`]).
//!
//! Every `labgrid-client` call runs in its own process group (a Ctrl-C at the terminal does not
//! cut a release short), dies with the harness (parent-death signal), is killed with its group
//! at its timeout, and has at most [`OUTPUT_CAP`] bytes of each output stream read.

use std::collections::BTreeSet;
use std::io::{Read as _, Seek as _};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::iface::serial::Console;
use crate::iface::telnet::{open_telnet, ComPort, TelnetOptions};
use crate::iface::LinkError;
use crate::transcript::Transcript;

/// Longest a `labgrid-client` acquire or show may take (a Python start and a round trip to the
/// coordinator take about a second).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a release may take.
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(15);
/// Bytes read of each output stream of a `labgrid-client` call; the rest is discarded.
pub const OUTPUT_CAP: usize = 64 * 1024;
/// Longest a held place's serial port may take to be served (the exporter starts ser2net when
/// the place is acquired), unless the interface's timeout is longer.
pub const PORT_WAIT: Duration = Duration::from_secs(10);
/// Pause between two `show` calls while the exporter starts the port.
const PORT_POLL: Duration = Duration::from_millis(300);
/// Characters of labgrid-client's message kept in an error.
const MESSAGE_CAP: usize = 600;

/// Why a labgrid place could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LabgridError {
    #[error("cannot run {client}: {source} (install labgrid, or set the interface's `client` to labgrid-client's path)")]
    Spawn {
        client: String,
        source: std::io::Error,
    },
    #[error("`{command}` did not finish within {waited:?}")]
    Timeout { command: String, waited: Duration },
    #[error("`{command}` failed ({status}): {message}")]
    Failed {
        command: String,
        status: String,
        message: String,
    },
    /// labgrid-client's own words, which name the holder.
    #[error("place {place:?} cannot be acquired: {message}")]
    Held { place: String, message: String },
    #[error("place {place:?} is already held by another unit of this run")]
    InUse { place: String },
    #[error("cannot read the output of `labgrid-client show`: {0}")]
    Parse(String),
    #[error("place {place:?} has no serial port (NetworkSerialPort) among its resources ({have})")]
    NoSerialPort { place: String, have: String },
    #[error("place {place:?} has several serial ports ({names}); name one with `resource`")]
    Ambiguous { place: String, names: String },
    #[error("place {place:?} has no serial port named {name:?} (it has: {names})")]
    NoSuchResource {
        place: String,
        name: String,
        names: String,
    },
    #[error("the serial port {name:?} of place {place:?} is not served: {why}")]
    Unavailable {
        place: String,
        name: String,
        why: String,
    },
    #[error("the serial port {name:?} of place {place:?} is reachable only through the exporter's SSH proxy {proxy:?}, which hilsec does not use; connect the exporter's network to this host")]
    ProxyRequired {
        place: String,
        name: String,
        proxy: String,
    },
    #[error("the serial port {name:?} of place {place:?} speaks {protocol:?}; hilsec takes \"rfc2217\" and \"raw\"")]
    Protocol {
        place: String,
        name: String,
        protocol: String,
    },
}

/// How to run `labgrid-client`: the executable and the coordinator (`None`: its own default,
/// `LG_COORDINATOR` first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabgridClient {
    pub client: String,
    pub coordinator: Option<String>,
}

/// Environment variables of labgrid-client that would change what `-p PLACE CMD` does (an
/// environment file makes it look for the place there, a state makes it drive a strategy).
const CLEARED_ENV: &[&str] = &["LG_ENV", "LG_PLACE", "LG_STATE", "LG_INITIAL_STATE"];

/// What a finished `labgrid-client` call printed.
#[derive(Debug, Default)]
struct CallOutput {
    success: bool,
    status: String,
    stdout: String,
    stderr: String,
}

impl LabgridClient {
    /// The arguments of `labgrid-client [-x COORDINATOR] -p PLACE ARGS...`.
    fn args(&self, place: &str, args: &[&str]) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(c) = &self.coordinator {
            v.push("-x".to_string());
            v.push(c.clone());
        }
        v.push("-p".to_string());
        v.push(place.to_string());
        v.extend(args.iter().map(|a| a.to_string()));
        v
    }

    /// The command as a person would type it, for messages.
    fn describe(&self, place: &str, args: &[&str]) -> String {
        let mut s = self.client.clone();
        for a in self.args(place, args) {
            s.push(' ');
            s.push_str(&a);
        }
        s
    }

    /// Runs `labgrid-client -p PLACE ARGS` within `timeout` (its process group killed then).
    async fn run(
        &self,
        place: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<CallOutput, LabgridError> {
        let mut cmd = tokio::process::Command::new(&self.client);
        cmd.args(self.args(place, args))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        for v in CLEARED_ENV {
            cmd.env_remove(v);
        }
        // SAFETY: only an async-signal-safe prctl between fork and exec: the client dies with
        // the harness, even one killed with SIGKILL.
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))?;
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|source| LabgridError::Spawn {
            client: self.client.clone(),
            source,
        })?;
        let group = GroupKill(child.id());
        let out = child.stdout.take();
        let err = child.stderr.take();
        let finished = tokio::time::timeout(timeout, async {
            let (o, e, status) = tokio::join!(read_capped(out), read_capped(err), child.wait());
            (o, e, status)
        })
        .await;
        match finished {
            Ok((stdout, stderr, Ok(status))) => {
                drop(group);
                Ok(CallOutput {
                    success: status.success(),
                    status: status.to_string(),
                    stdout,
                    stderr,
                })
            }
            Ok((_, _, Err(e))) => Err(LabgridError::Failed {
                command: self.describe(place, args),
                status: "not waited for".into(),
                message: e.to_string(),
            }),
            Err(_) => {
                group.kill();
                let _ = child.start_kill();
                Err(LabgridError::Timeout {
                    command: self.describe(place, args),
                    waited: timeout,
                })
            }
        }
    }

    /// `labgrid-client -p PLACE release`, from synchronous code (a lease's `drop`, on a thread
    /// that may block), within `timeout`: `Ok` when released, else labgrid-client's message.
    fn release_blocking(&self, place: &str, timeout: Duration) -> Result<(), String> {
        // stderr goes to an unnamed file, read (bounded) once the client ended: no pipe to
        // drain while waiting, and nothing to block on after a kill.
        let mut errfile = tempfile::tempfile().map_err(|e| format!("no temporary file: {e}"))?;
        let errout = errfile
            .try_clone()
            .map_err(|e| format!("no temporary file: {e}"))?;
        let mut cmd = std::process::Command::new(&self.client);
        cmd.args(self.args(place, &["release"]))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(errout));
        for v in CLEARED_ENV {
            cmd.env_remove(v);
        }
        use std::os::unix::process::CommandExt as _;
        cmd.process_group(0);
        // SAFETY: as in `run`.
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))?;
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.client))?;
        let group = GroupKill(Some(child.id()));
        let deadline = Instant::now() + timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break Ok(s),
                Ok(None) if Instant::now() >= deadline => {
                    group.kill();
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(format!(
                        "`{}` did not finish within {timeout:?}",
                        self.describe(place, &["release"])
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => break Err(format!("waiting for labgrid-client: {e}")),
            }
        };
        drop(group);
        let status = status?;
        if status.success() {
            return Ok(());
        }
        let mut text = Vec::new();
        let _ = errfile.rewind();
        let _ = (&mut errfile)
            .take(OUTPUT_CAP as u64)
            .read_to_end(&mut text);
        Err(format!(
            "`{}` failed ({status}): {}",
            self.describe(place, &["release"]),
            message(&String::from_utf8_lossy(&text))
        ))
    }
}

/// Kills a command's process group when dropped (or on [`GroupKill::kill`]): whatever the
/// client left behind ends with it.
struct GroupKill(Option<u32>);

impl GroupKill {
    fn kill(&self) {
        if let Some(pid) = self
            .0
            .and_then(|p| i32::try_from(p).ok())
            .and_then(rustix::process::Pid::from_raw)
        {
            // ESRCH (nothing left of the group) is the usual, good case.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reads a pipe to its end, keeping at most [`OUTPUT_CAP`] bytes.
async fn read_capped<R: AsyncRead + Unpin>(pipe: Option<R>) -> String {
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = OUTPUT_CAP.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// labgrid-client's message: its error lines (without a traceback's frames), bounded.
fn message(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("File \"") && !l.starts_with("Traceback"))
        .collect();
    let mut m = lines.join(" / ");
    if m.is_empty() {
        m = "(no message)".into();
    }
    if m.chars().count() > MESSAGE_CAP {
        m = m.chars().take(MESSAGE_CAP).collect::<String>() + "...";
    }
    m
}

/// Places held by this process, as `coordinator/place`: a second unit naming a place another
/// one holds is refused, and an acquire cut short may release only its own place.
static HELD: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fn held() -> std::sync::MutexGuard<'static, BTreeSet<String>> {
    // A panic while holding this lock left a plain set behind: still usable.
    HELD.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where a lease stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeaseState {
    /// `acquire` runs (or was cut short): the coordinator may have granted the place.
    Acquiring,
    /// Acquired: released by [`PlaceLease::release`], else on drop.
    Held,
    /// Nothing to release.
    Free,
}

/// A labgrid place held by this process; given back with [`PlaceLease::release`], or when
/// dropped (see the module's doc).
#[derive(Debug)]
pub struct PlaceLease {
    client: LabgridClient,
    place: String,
    key: String,
    state: LeaseState,
}

impl PlaceLease {
    /// `labgrid-client -p PLACE acquire`. A place held by someone else is
    /// [`LabgridError::Held`] with labgrid-client's message, which names the holder.
    pub async fn acquire(client: LabgridClient, place: &str) -> Result<PlaceLease, LabgridError> {
        let key = format!("{}/{place}", client.coordinator.as_deref().unwrap_or(""));
        if !held().insert(key.clone()) {
            return Err(LabgridError::InUse {
                place: place.to_string(),
            });
        }
        // From here on, dropping the lease (an error below, or this future dropped) releases
        // what may have been granted and forgets the key.
        let mut lease = PlaceLease {
            client,
            place: place.to_string(),
            key,
            state: LeaseState::Acquiring,
        };
        let out = match lease.client.run(place, &["acquire"], COMMAND_TIMEOUT).await {
            Ok(out) => out,
            Err(e) => {
                if matches!(e, LabgridError::Spawn { .. }) {
                    // Nothing ran, nothing was granted.
                    lease.state = LeaseState::Free;
                }
                return Err(e);
            }
        };
        if out.success {
            lease.state = LeaseState::Held;
            return Ok(lease);
        }
        // Refused by the coordinator or the client: nothing was granted.
        lease.state = LeaseState::Free;
        let mut msg = message(&out.stderr);
        let stdout = message(&out.stdout);
        if stdout != "(no message)" {
            // e.g. "Matching resource ... already acquired by place ..."
            msg.push_str(&format!(" ({stdout})"));
        }
        if msg.contains("already acquired") {
            return Err(LabgridError::Held {
                place: place.to_string(),
                message: msg,
            });
        }
        Err(LabgridError::Failed {
            command: lease.client.describe(place, &["acquire"]),
            status: out.status,
            message: msg,
        })
    }

    /// The place's name as the board file gave it.
    pub fn place(&self) -> &str {
        &self.place
    }

    /// How labgrid-client is run for this place.
    pub fn client(&self) -> &LabgridClient {
        &self.client
    }
}

impl PlaceLease {
    /// `labgrid-client -p PLACE release`, awaited (bounded by [`RELEASE_TIMEOUT`]): how a
    /// unit's places are given back at its end ([`crate::device::Device::release_places`]) and
    /// when no console could be opened on a place just acquired. `Err`: labgrid-client's
    /// message (the place may still be acquired). Cut short (this future dropped), the lease's
    /// drop releases the place instead.
    pub async fn release(mut self) -> Result<(), LabgridError> {
        if self.state == LeaseState::Free {
            return Ok(());
        }
        let r = self
            .client
            .run(&self.place, &["release"], RELEASE_TIMEOUT)
            .await;
        // Done, whatever came of it: nothing is left for the drop (which forgets the key).
        self.state = LeaseState::Free;
        let out = r?;
        if out.success {
            Ok(())
        } else {
            Err(LabgridError::Failed {
                command: self.client.describe(&self.place, &["release"]),
                status: out.status,
                message: message(&out.stderr),
            })
        }
    }
}

impl Drop for PlaceLease {
    /// The fallback for a lease not released by [`PlaceLease::release`] (an acquire or an
    /// opening cut short, a panic): the release runs off the async runtime's worker threads,
    /// on its blocking pool when there is a runtime (whose shutdown waits for it), else on a
    /// thread of its own; the place's key is forgotten once it ended.
    fn drop(&mut self) {
        let state = std::mem::replace(&mut self.state, LeaseState::Free);
        if state == LeaseState::Free {
            held().remove(&self.key);
            return;
        }
        let job = ReleaseJob(Some(ReleaseWork {
            client: self.client.clone(),
            place: self.place.clone(),
            key: std::mem::take(&mut self.key),
            acquiring: state == LeaseState::Acquiring,
        }));
        match tokio::runtime::Handle::try_current() {
            // A runtime shutting down drops the job unrun: its drop then starts a thread.
            Ok(rt) => drop(rt.spawn_blocking(move || job.run())),
            Err(_) => drop(job),
        }
    }
}

/// A release left to a lease's drop (see there).
struct ReleaseWork {
    client: LabgridClient,
    place: String,
    key: String,
    /// Cut short while acquiring: the coordinator may not have granted anything.
    acquiring: bool,
}

impl ReleaseWork {
    /// Releases (blocking, bounded), warns on stderr when that failed, forgets the key.
    fn run(self) {
        match self.client.release_blocking(&self.place, RELEASE_TIMEOUT) {
            Ok(()) => {}
            // An acquire cut short before the coordinator granted anything.
            Err(m) if self.acquiring && m.contains("not acquired") => {}
            Err(m) => {
                // No test is left whose evidence could carry this: tell the operator, who
                // must release the place by hand before the next run can take it.
                eprintln!(
                    "hilsec: warning: labgrid place {:?} may still be acquired: {m}",
                    self.place
                );
            }
        }
        held().remove(&self.key);
    }
}

/// A [`ReleaseWork`] handed to the runtime's blocking pool; dropped unrun (the runtime shuts
/// down), it runs on a thread of its own.
struct ReleaseJob(Option<ReleaseWork>);

impl ReleaseJob {
    fn run(mut self) {
        if let Some(w) = self.0.take() {
            w.run();
        }
    }
}

impl Drop for ReleaseJob {
    fn drop(&mut self) {
        if let Some(w) = self.0.take() {
            let place = w.place.clone();
            let spawned = std::thread::Builder::new()
                .name("labgrid-release".into())
                .spawn(move || w.run());
            if let Err(e) = spawned {
                eprintln!(
                    "hilsec: warning: labgrid place {place:?} may still be acquired: no thread \
                     to release it: {e}"
                );
            }
        }
    }
}

/// How a serial port of a place is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortProtocol {
    /// Telnet with COM-PORT-OPTION (ser2net's `telnet(rfc2217)`), labgrid's default.
    Rfc2217,
    /// Plain TCP.
    Raw,
}

/// A place's serial port as the coordinator describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialPortInfo {
    /// Its name in the place (a match's rename, else the resource's name).
    pub name: String,
    /// `exporter/group/class/name`.
    pub path: String,
    pub host: String,
    pub port: u16,
    pub protocol: PortProtocol,
    /// The port's configured speed.
    pub speed: Option<u32>,
}

impl SerialPortInfo {
    /// `host:port`, brackets around an IPv6 address.
    pub fn address(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// One resource of `labgrid-client show`.
#[derive(Debug, Clone, PartialEq)]
pub struct ShownResource {
    /// Its name in the place.
    pub name: String,
    /// `exporter/group/class/name`.
    pub path: String,
    /// `Acquired resource` (held by the place) rather than `Matching resource`.
    pub acquired: bool,
    /// Its `asdict()`: `cls`, `params`, `acquired`, `avail`.
    pub data: serde_json::Value,
}

/// A resource of `labgrid-client show` whose dictionary could not be read.
#[derive(Debug, Clone, PartialEq)]
pub struct UnreadableResource {
    /// Its name in the place (the whole header line when that could not be read either).
    pub name: String,
    /// `exporter/group/class/name` (empty when the header could not be read).
    pub path: String,
    pub acquired: bool,
    /// What the parser found wrong.
    pub why: String,
}

impl UnreadableResource {
    /// Its path says it is a serial port (its class, the path's third part, is
    /// `NetworkSerialPort`).
    fn is_serial_port(&self) -> bool {
        self.path.split('/').nth(2) == Some("NetworkSerialPort")
    }

    /// For messages: `name (why)`.
    fn describe(&self) -> String {
        format!("{} ({})", self.name, self.why)
    }
}

/// What `labgrid-client -p PLACE show` says about the place.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PlaceShow {
    /// `host/user` holding the place, if any.
    pub acquired_by: Option<String>,
    pub resources: Vec<ShownResource>,
    /// Resources whose dictionary could not be read (a labgrid release printing something this
    /// parser does not know): only a serial port among them matters (see [`pick_serial_port`]).
    pub unreadable: Vec<UnreadableResource>,
}

/// Reads `labgrid-client show` output (checked against labgrid 26.0.1): the place's `acquired:`
/// line and each `Acquired resource 'NAME' (PATH):` / `Matching resource ...` header with the
/// Python literal of the resource's dictionary indented below it. A resource that cannot be read
/// is kept aside in [`PlaceShow::unreadable`] rather than failing the whole output: the place's
/// other resources (a power switch, a USB device) need not be readable for its serial port to be.
pub fn parse_show(text: &str) -> PlaceShow {
    let mut show = PlaceShow::default();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        i += 1;
        if let Some(who) = line.strip_prefix("  acquired: ") {
            let who = who.trim();
            if who != "None" && !who.is_empty() {
                show.acquired_by = Some(who.to_string());
            }
            continue;
        }
        let (acquired, rest) = if let Some(r) = line.strip_prefix("Acquired resource '") {
            (true, r)
        } else if let Some(r) = line.strip_prefix("Matching resource '") {
            (false, r)
        } else {
            continue;
        };
        let header = rest
            .rsplit_once("' (")
            .and_then(|(n, p)| p.strip_suffix("):").map(|p| (n, p)));
        // The dictionary: the indented lines that follow.
        let mut literal = String::new();
        while i < lines.len() && lines[i].starts_with("  ") {
            literal.push_str(lines[i]);
            literal.push('\n');
            i += 1;
        }
        let Some((name, path)) = header else {
            show.unreadable.push(UnreadableResource {
                name: line.trim().to_string(),
                path: String::new(),
                acquired,
                why: "unexpected resource line".into(),
            });
            continue;
        };
        match parse_python_literal(&literal) {
            Ok(data) => show.resources.push(ShownResource {
                name: name.to_string(),
                path: path.to_string(),
                acquired,
                data,
            }),
            Err(why) => show.unreadable.push(UnreadableResource {
                name: name.to_string(),
                path: path.to_string(),
                acquired,
                why,
            }),
        }
    }
    show
}

/// The serial port `resource` (or the only one) among the place's acquired resources.
/// `Ok(None)`: the port is not served yet (no TCP port published, or not available).
///
/// Unreadable resources ([`PlaceShow::unreadable`]) are passed over, except that one whose path
/// says it is a serial port still counts as one: it is named in the error when the port cannot
/// be chosen without it (it was asked for by name, or no `resource` is named and the place has
/// another serial port, or no readable one).
pub fn pick_serial_port(
    place: &str,
    show: &PlaceShow,
    resource: Option<&str>,
) -> Result<Option<SerialPortInfo>, LabgridError> {
    let ports: Vec<&ShownResource> = show
        .resources
        .iter()
        .filter(|r| r.acquired && r.data["cls"] == "NetworkSerialPort")
        .collect();
    let unreadable: Vec<&UnreadableResource> =
        show.unreadable.iter().filter(|r| r.acquired).collect();
    let unreadable_ports: Vec<&UnreadableResource> = unreadable
        .iter()
        .copied()
        .filter(|r| r.is_serial_port())
        .collect();
    // `; unreadable: a (why), b (why)` when some resources could not be read.
    let unreadable_note = |list: &[&UnreadableResource]| {
        if list.is_empty() {
            String::new()
        } else {
            format!(
                "; unreadable in `labgrid-client show`: {}",
                list.iter()
                    .map(|r| r.describe())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    };
    let names = || {
        ports
            .iter()
            .map(|r| r.name.as_str())
            .chain(unreadable_ports.iter().map(|r| r.name.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let is = |name: &str, path: &str, want: &str| {
        name == want || path == want || path.rsplit('/').next() == Some(want)
    };
    let chosen = match resource {
        Some(want) => match ports.iter().find(|r| is(&r.name, &r.path, want)) {
            Some(r) => r,
            None => {
                if let Some(u) = unreadable.iter().find(|r| is(&r.name, &r.path, want)) {
                    return Err(LabgridError::Parse(format!(
                        "the serial port {want:?} of place {place:?}: {}",
                        u.why
                    )));
                }
                let mut names = if ports.is_empty() && unreadable_ports.is_empty() {
                    "none".to_string()
                } else {
                    names()
                };
                names.push_str(&unreadable_note(&unreadable));
                return Err(LabgridError::NoSuchResource {
                    place: place.to_string(),
                    name: want.to_string(),
                    names,
                });
            }
        },
        None => match (ports.as_slice(), unreadable_ports.as_slice()) {
            ([one], []) => one,
            ([], []) => {
                let have: Vec<String> = show
                    .resources
                    .iter()
                    .filter(|r| r.acquired)
                    .map(|r| r.path.clone())
                    .collect();
                let mut have = if have.is_empty() {
                    "it holds none".to_string()
                } else {
                    have.join(", ")
                };
                have.push_str(&unreadable_note(&unreadable));
                return Err(LabgridError::NoSerialPort {
                    place: place.to_string(),
                    have,
                });
            }
            ([], [u]) => {
                return Err(LabgridError::Parse(format!(
                    "the serial port {:?} of place {place:?}: {}",
                    u.name, u.why
                )))
            }
            _ => {
                return Err(LabgridError::Ambiguous {
                    place: place.to_string(),
                    names: names() + &unreadable_note(&unreadable_ports),
                })
            }
        },
    };
    let params = &chosen.data["params"];
    let unavailable = |why: String| LabgridError::Unavailable {
        place: place.to_string(),
        name: chosen.name.clone(),
        why,
    };
    if let Some(b) = params["extra"]["broken"].as_str() {
        return Err(unavailable(format!("the exporter marked it broken ({b})")));
    }
    if params["extra"]["proxy_required"] == true {
        return Err(LabgridError::ProxyRequired {
            place: place.to_string(),
            name: chosen.name.clone(),
            proxy: params["extra"]["proxy"]
                .as_str()
                .unwrap_or("(unnamed)")
                .to_string(),
        });
    }
    if chosen.data["avail"] != true {
        return Ok(None);
    }
    let Some(port) = params["port"].as_u64() else {
        return Ok(None);
    };
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| unavailable(format!("TCP port {port} is out of range")))?;
    let host = params["host"]
        .as_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| unavailable("no host published".into()))?
        .to_string();
    let protocol = match params["protocol"].as_str().unwrap_or("rfc2217") {
        "rfc2217" => PortProtocol::Rfc2217,
        "raw" => PortProtocol::Raw,
        other => {
            return Err(LabgridError::Protocol {
                place: place.to_string(),
                name: chosen.name.clone(),
                protocol: other.to_string(),
            })
        }
    };
    Ok(Some(SerialPortInfo {
        name: chosen.name.clone(),
        path: chosen.path.clone(),
        host,
        port,
        protocol,
        speed: params["speed"].as_u64().and_then(|s| u32::try_from(s).ok()),
    }))
}

/// The serial port of a held place, asking `labgrid-client show` until the exporter serves it
/// (it starts ser2net when the place is acquired) or `wait` passes.
pub async fn serial_port(
    client: &LabgridClient,
    place: &str,
    resource: Option<&str>,
    wait: Duration,
) -> Result<SerialPortInfo, LabgridError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let out = client.run(place, &["show"], COMMAND_TIMEOUT).await?;
        if !out.success {
            return Err(LabgridError::Failed {
                command: client.describe(place, &["show"]),
                status: out.status,
                message: message(&out.stderr),
            });
        }
        let show = parse_show(&out.stdout);
        if let Some(p) = pick_serial_port(place, &show, resource)? {
            return Ok(p);
        }
        if tokio::time::Instant::now() + PORT_POLL > deadline {
            return Err(LabgridError::Unavailable {
                place: place.to_string(),
                name: resource.unwrap_or("(the only serial port)").to_string(),
                why: format!(
                    "the exporter published no TCP port within {wait:?} (is its serial device \
                     present?)"
                ),
            });
        }
        tokio::time::sleep(PORT_POLL).await;
    }
}

/// Connects to a place's serial port as a console: RFC 2217 as telnet in COM-PORT mode with
/// `baud` (else the port's speed), raw as plain TCP. A refused connection is tried again until
/// `timeout` (ser2net may still be starting).
pub async fn open_console(
    name: &str,
    port: &SerialPortInfo,
    baud: Option<u32>,
    timeout: Duration,
    transcript: Transcript,
) -> Result<Console, LinkError> {
    let addr = port.address();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let r = match port.protocol {
            PortProtocol::Rfc2217 => {
                let opts = TelnetOptions {
                    com_port: Some(ComPort {
                        baud: baud.or(port.speed),
                    }),
                    ..TelnetOptions::default()
                };
                open_telnet(name, &addr, timeout, &opts, transcript.clone()).await
            }
            PortProtocol::Raw => Console::open_tcp(name, &addr, timeout, transcript.clone()).await,
        };
        match r {
            Err(LinkError::Open { detail, .. })
                if detail.contains("refused") && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => return other,
        }
    }
}

/// Parses the Python literal `pprint` prints for a resource (dicts, lists, tuples, strings with
/// their escapes and adjacent-literal concatenation, numbers, True/False/None) into JSON.
pub fn parse_python_literal(text: &str) -> Result<serde_json::Value, String> {
    let mut p = PyParser {
        s: text.as_bytes(),
        i: 0,
        depth: 0,
    };
    let v = p.value()?;
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("unexpected text at byte {}", p.i));
    }
    Ok(v)
}

/// Deepest nesting accepted.
const MAX_DEPTH: usize = 32;

struct PyParser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl PyParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Result<serde_json::Value, String> {
        use serde_json::Value;
        let at = self.i;
        match self.peek() {
            None => Err("unexpected end".into()),
            Some(b'{') => self.nested(|p| {
                p.i += 1;
                let mut map = serde_json::Map::new();
                loop {
                    if p.eat(b'}') {
                        return Ok(Value::Object(map));
                    }
                    let k = match p.value()? {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    if !p.eat(b':') {
                        return Err(format!("expected ':' at byte {}", p.i));
                    }
                    let v = p.value()?;
                    map.insert(k, v);
                    if !p.eat(b',') && p.peek() != Some(b'}') {
                        return Err(format!("expected ',' or '}}' at byte {}", p.i));
                    }
                }
            }),
            Some(open @ (b'[' | b'(')) => self.nested(|p| {
                let close = if open == b'[' { b']' } else { b')' };
                p.i += 1;
                let mut items = Vec::new();
                let mut commas = 0;
                loop {
                    if p.eat(close) {
                        // `('a' 'b')` is a string in parentheses, `('a',)` a tuple.
                        if open == b'(' && items.len() == 1 && commas == 0 {
                            return Ok(items.remove(0));
                        }
                        return Ok(Value::Array(items));
                    }
                    items.push(p.value()?);
                    if p.eat(b',') {
                        commas += 1;
                    } else if p.peek() != Some(close) {
                        return Err(format!("expected ',' at byte {}", p.i));
                    }
                }
            }),
            Some(b'\'' | b'"') => {
                // Adjacent literals are one string (pprint splits long strings so).
                let mut s = String::new();
                while matches!(self.peek(), Some(b'\'' | b'"')) {
                    s.push_str(&self.string()?);
                }
                Ok(Value::String(s))
            }
            Some(_) => {
                let start = self.i;
                while self.i < self.s.len()
                    && (self.s[self.i].is_ascii_alphanumeric()
                        || matches!(self.s[self.i], b'_' | b'.' | b'-' | b'+'))
                {
                    self.i += 1;
                }
                let word = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                match word {
                    "True" => Ok(Value::Bool(true)),
                    "False" => Ok(Value::Bool(false)),
                    "None" => Ok(Value::Null),
                    "" => Err(format!("unexpected character at byte {at}")),
                    w => {
                        if let Ok(n) = w.parse::<i64>() {
                            Ok(Value::from(n))
                        } else if let Ok(f) = w.parse::<f64>() {
                            Ok(serde_json::Number::from_f64(f)
                                .map(Value::Number)
                                .unwrap_or(Value::Null))
                        } else {
                            // A value pprint shows by its repr (an object): kept as text.
                            Ok(Value::String(w.to_string()))
                        }
                    }
                }
            }
        }
    }

    fn nested(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<serde_json::Value, String>,
    ) -> Result<serde_json::Value, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("nested too deeply".into());
        }
        let r = f(self);
        self.depth -= 1;
        r
    }

    /// One quoted string literal (with an optional `b`/`r` prefix not supported: pprint of a
    /// resource has none).
    fn string(&mut self) -> Result<String, String> {
        let quote = self.s[self.i];
        self.i += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&b) = self.s.get(self.i) else {
                return Err("unterminated string".into());
            };
            self.i += 1;
            if b == quote {
                return Ok(String::from_utf8_lossy(&out).into_owned());
            }
            if b != b'\\' {
                out.push(b);
                continue;
            }
            let Some(&e) = self.s.get(self.i) else {
                return Err("unterminated escape".into());
            };
            self.i += 1;
            let mut hex = |n: usize| -> Result<u32, String> {
                let h = self
                    .s
                    .get(self.i..self.i + n)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .ok_or("bad escape")?;
                self.i += n;
                Ok(h)
            };
            let c: char = match e {
                b'n' => '\n',
                b't' => '\t',
                b'r' => '\r',
                b'0' => '\0',
                b'\\' => '\\',
                b'\'' => '\'',
                b'"' => '"',
                b'x' => char::from_u32(hex(2)?).ok_or("bad escape")?,
                b'u' => char::from_u32(hex(4)?).ok_or("bad escape")?,
                b'U' => char::from_u32(hex(8)?).ok_or("bad escape")?,
                b'\n' => continue,
                other => {
                    out.push(b'\\');
                    out.push(other);
                    continue;
                }
            };
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `labgrid-client -p p1 show` of labgrid 26.0.1 with the place acquired (an exporter
    /// serving a pseudo-terminal as `RawSerialPort`).
    const SHOW_ACQUIRED: &str = "Place 'p1':
  matches:
    exp/sim/NetworkSerialPort
  acquired: vm/root
  acquired resources:
    exp/sim/NetworkSerialPort/RawSerialPort
  created: 2026-12-03 00:45:03.027914
  changed: 2026-12-03 00:45:04.557978
Acquired resource 'RawSerialPort' (exp/sim/NetworkSerialPort/RawSerialPort):
  {'acquired': 'p1',
   'avail': True,
   'cls': 'NetworkSerialPort',
   'params': {'extra': {'path': '/dev/pts/0',
                        'proxy': 'localhost',
                        'proxy_required': False},
              'host': '127.0.0.1',
              'port': 34471,
              'speed': 115200}}
";

    /// The same place before it was acquired: a matching resource, no port yet.
    const SHOW_FREE: &str = "Place 'p1':
  matches:
    exp/sim/NetworkSerialPort
  acquired: None
  acquired resources:
  created: 2026-12-03 00:45:03.027914
  changed: 2026-12-03 00:45:03.368693
Matching resource 'RawSerialPort' (exp/sim/NetworkSerialPort/RawSerialPort):
  {'acquired': None,
   'avail': True,
   'cls': 'NetworkSerialPort',
   'params': {'extra': {'path': '/dev/pts/0',
                        'proxy': 'localhost',
                        'proxy_required': False},
              'host': '127.0.0.1',
              'port': None,
              'speed': 115200}}
";

    #[test]
    fn show_of_an_acquired_place() {
        let show = parse_show(SHOW_ACQUIRED);
        assert_eq!(show.acquired_by.as_deref(), Some("vm/root"));
        assert_eq!(show.resources.len(), 1);
        let p = pick_serial_port("p1", &show, None)
            .expect("picks")
            .expect("served");
        assert_eq!(
            p,
            SerialPortInfo {
                name: "RawSerialPort".into(),
                path: "exp/sim/NetworkSerialPort/RawSerialPort".into(),
                host: "127.0.0.1".into(),
                port: 34471,
                protocol: PortProtocol::Rfc2217,
                speed: Some(115_200),
            }
        );
        assert_eq!(p.address(), "127.0.0.1:34471");
        assert!(pick_serial_port("p1", &show, Some("RawSerialPort"))
            .expect("by name")
            .is_some());
        let e = pick_serial_port("p1", &show, Some("uart1")).unwrap_err();
        assert!(
            e.to_string()
                .contains("no serial port named \"uart1\" (it has: RawSerialPort)"),
            "{e}"
        );
    }

    #[test]
    fn show_of_a_free_place_has_no_acquired_port() {
        let show = parse_show(SHOW_FREE);
        assert_eq!(show.acquired_by, None);
        assert!(!show.resources[0].acquired);
        let e = pick_serial_port("p1", &show, None).unwrap_err();
        assert!(matches!(e, LabgridError::NoSerialPort { .. }), "{e}");
    }

    #[test]
    fn a_port_not_yet_served_raw_and_proxied_ports() {
        let not_yet = SHOW_ACQUIRED.replace("'port': 34471", "'port': None");
        let show = parse_show(&not_yet);
        assert_eq!(pick_serial_port("p1", &show, None).expect("ok"), None);
        let raw = SHOW_ACQUIRED.replace(
            "'port': 34471,",
            "'port': 34471,\n              'protocol': 'raw',",
        );
        let show = parse_show(&raw);
        let p = pick_serial_port("p1", &show, None)
            .expect("ok")
            .expect("served");
        assert_eq!(p.protocol, PortProtocol::Raw);
        let proxied = SHOW_ACQUIRED.replace("'proxy_required': False", "'proxy_required': True");
        let show = parse_show(&proxied);
        let e = pick_serial_port("p1", &show, None).unwrap_err();
        assert!(e.to_string().contains("SSH proxy \"localhost\""), "{e}");
        let two = format!(
            "{SHOW_ACQUIRED}{}",
            SHOW_ACQUIRED
                .split_once("Acquired resource")
                .map(|(_, r)| format!("Acquired resource{r}"))
                .unwrap_or_default()
                .replace("'RawSerialPort'", "'uart2'")
        );
        let show = parse_show(&two);
        let e = pick_serial_port("p1", &show, None).unwrap_err();
        assert!(e.to_string().contains("RawSerialPort, uart2"), "{e}");
    }

    #[test]
    fn unreadable_resources_are_passed_over_unless_they_are_serial_ports() {
        // A power switch whose dictionary this parser cannot read (a set literal, say).
        let power = "Acquired resource 'power' (exp/sim/NetworkPowerPort/power):
  {'acquired': 'p1', 'avail': True, 'cls': 'NetworkPowerPort',
   'params': {'model': 'gude', 'index': {1, 2}}}
";
        let with_power = format!("{SHOW_ACQUIRED}{power}");
        let show = parse_show(&with_power);
        assert_eq!(show.resources.len(), 1);
        assert_eq!(show.unreadable.len(), 1);
        assert_eq!(show.unreadable[0].name, "power");
        let p = pick_serial_port("p1", &show, None)
            .expect("the serial port is readable")
            .expect("served");
        assert_eq!(p.port, 34471);
        assert!(pick_serial_port("p1", &show, Some("RawSerialPort"))
            .expect("by name")
            .is_some());
        // Only the power switch: no serial port, and the error says what could not be read.
        let only_power = format!(
            "{}{power}",
            SHOW_ACQUIRED
                .split("Acquired resource")
                .next()
                .unwrap_or("")
        );
        let e = pick_serial_port("p1", &parse_show(&only_power), None).unwrap_err();
        assert!(matches!(e, LabgridError::NoSerialPort { .. }), "{e}");
        assert!(
            e.to_string()
                .contains("unreadable in `labgrid-client show`: power (expected"),
            "{e}"
        );
        let e = pick_serial_port("p1", &parse_show(&only_power), Some("uart")).unwrap_err();
        assert!(e.to_string().contains("unreadable"), "{e}");
        // A serial port that cannot be read is not passed over: alone, it is the error; beside
        // another one, the choice is ambiguous; asked for by name, its own error.
        let broken_port = "Acquired resource 'uart2' (exp/sim/NetworkSerialPort/uart2):
  {'acquired': 'p1', 'cls': 'NetworkSerialPort', 'params': {'port': <object>}}
";
        let show = parse_show(&format!("{SHOW_ACQUIRED}{broken_port}"));
        let e = pick_serial_port("p1", &show, None).unwrap_err();
        assert!(matches!(e, LabgridError::Ambiguous { .. }), "{e}");
        assert!(e.to_string().contains("RawSerialPort, uart2"), "{e}");
        assert!(e.to_string().contains("uart2 (unexpected character"), "{e}");
        let e = pick_serial_port("p1", &show, Some("uart2")).unwrap_err();
        assert!(matches!(e, LabgridError::Parse(_)), "{e}");
        assert!(pick_serial_port("p1", &show, Some("RawSerialPort"))
            .expect("the readable one by name")
            .is_some());
        let alone = format!(
            "{}{broken_port}",
            SHOW_ACQUIRED
                .split("Acquired resource")
                .next()
                .unwrap_or("")
        );
        let e = pick_serial_port("p1", &parse_show(&alone), None).unwrap_err();
        assert!(
            matches!(e, LabgridError::Parse(_)) && e.to_string().contains("\"uart2\""),
            "{e}"
        );
        // A header this parser does not know is passed over too.
        let odd = format!("{SHOW_ACQUIRED}Acquired resource 'x' weird\n  {{}}\n");
        let show = parse_show(&odd);
        assert_eq!(show.unreadable.len(), 1);
        assert!(pick_serial_port("p1", &show, None).expect("ok").is_some());
    }

    #[test]
    fn python_literals() {
        let v = parse_python_literal(
            "{'a': ('long ' 'string'), \"b\": [1, -2, 3.5, None, True], 'c': ('x',), \
             'd': 'it\\'s \\x41\\u00e9\\n', 'e': {}, 'f': ()}",
        )
        .expect("parses");
        assert_eq!(
            v,
            serde_json::json!({
                "a": "long string", "b": [1, -2, 3.5, null, true], "c": ["x"],
                "d": "it's A\u{e9}\n", "e": {}, "f": []
            })
        );
        for bad in [
            "{'a': 1",
            "{'a' 1}",
            "'open",
            "[1 2]",
            "{}}",
            &"[".repeat(100),
        ] {
            assert!(parse_python_literal(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn messages_are_bounded_and_tracebacks_trimmed() {
        let m = message(
            "Traceback (most recent call last):\n  File \"x.py\", line 1\nlabgrid-client: Place p1 is already acquired by host/alice.\n",
        );
        assert_eq!(
            m,
            "labgrid-client: Place p1 is already acquired by host/alice."
        );
        assert!(message(&"x".repeat(10_000)).len() <= MESSAGE_CAP + 3);
        assert_eq!(message(""), "(no message)");
    }

    #[test]
    fn client_arguments() {
        let c = LabgridClient {
            client: "labgrid-client".into(),
            coordinator: Some("lab:20408".into()),
        };
        assert_eq!(
            c.describe("rack1", &["acquire"]),
            "labgrid-client -x lab:20408 -p rack1 acquire"
        );
        let c = LabgridClient {
            coordinator: None,
            ..c
        };
        assert_eq!(c.args("p", &["show"]), ["-p", "p", "show"]);
    }

    /// A stand-in for labgrid-client: a shell script that logs its arguments, refuses to
    /// acquire while `held` exists, and shows the place without a port the first time.
    fn fake_client(dir: &std::path::Path) -> LabgridClient {
        use std::os::unix::fs::PermissionsExt as _;
        let show_none = SHOW_ACQUIRED.replace("'port': 34471", "'port': None");
        std::fs::write(dir.join("show-none"), show_none).expect("write");
        std::fs::write(dir.join("show-port"), SHOW_ACQUIRED).expect("write");
        let script = format!(
            "#!/bin/sh\ncd '{}'\necho \"$*\" >> log\ncase \"$*\" in\n\
             *' acquire') if [ -f slow ]; then sleep 5; fi; if [ -f held ]; then echo 'labgrid-client: Error: Place p is already acquired by bench/alice.' >&2; exit 1; fi; echo acquired;;\n\
             *' show') if [ -f shown ]; then cat show-port; else touch shown; cat show-none; fi;;\n\
             *' release') if [ -f slow-release ]; then sleep 1; fi; if [ -f release-fails ]; then echo 'labgrid-client: Error: place fake is not acquired by you' >&2; exit 1; fi; echo released;;\n\
             esac\n",
            dir.display()
        );
        let path = dir.join("labgrid-client");
        std::fs::write(&path, script).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        LabgridClient {
            client: path.display().to_string(),
            coordinator: Some("127.0.0.1:1".into()),
        }
    }

    fn log(dir: &std::path::Path) -> String {
        std::fs::read_to_string(dir.join("log")).unwrap_or_default()
    }

    #[tokio::test]
    async fn acquire_show_until_served_and_release() {
        let dir = tempfile::tempdir().expect("tempdir");
        let client = fake_client(dir.path());
        let lease = PlaceLease::acquire(client.clone(), "fake-1")
            .await
            .expect("acquired");
        // A second lease of the same place in this process is refused without asking.
        let again = PlaceLease::acquire(client.clone(), "fake-1").await;
        assert!(
            matches!(again, Err(LabgridError::InUse { .. })),
            "{again:?}"
        );
        let port = serial_port(&client, "fake-1", None, Duration::from_secs(5))
            .await
            .expect("served on the second show");
        assert_eq!(port.port, 34471);
        assert!(!log(dir.path()).contains("release"));
        lease.release().await.expect("released");
        assert_eq!(
            log(dir.path()),
            "-x 127.0.0.1:1 -p fake-1 acquire\n-x 127.0.0.1:1 -p fake-1 show\n\
             -x 127.0.0.1:1 -p fake-1 show\n-x 127.0.0.1:1 -p fake-1 release\n"
        );
        // Released: the place may be taken again.
        let lease = PlaceLease::acquire(client, "fake-1").await.expect("again");
        lease.release().await.expect("released");
        assert_eq!(log(dir.path()).matches("release").count(), 2);
    }

    /// Waits (bounded) until `check` holds.
    async fn eventually(mut check: impl FnMut() -> bool) -> bool {
        for _ in 0..250 {
            if check() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        check()
    }

    /// A lease dropped unreleased is released all the same, without blocking the thread that
    /// dropped it: on a one-thread runtime, a task keeps running while the release (a client
    /// that takes a second) goes on.
    #[tokio::test(flavor = "current_thread")]
    async fn a_dropped_lease_is_released_off_the_runtime() {
        let dir = tempfile::tempdir().expect("tempdir");
        let client = fake_client(dir.path());
        let lease = PlaceLease::acquire(client.clone(), "fake-5")
            .await
            .expect("acquired");
        std::fs::write(dir.path().join("slow-release"), "").expect("write");
        let t0 = Instant::now();
        drop(lease);
        assert!(
            t0.elapsed() < Duration::from_millis(500),
            "drop blocked {:?}",
            t0.elapsed()
        );
        // The runtime's only thread is free: a timer fires while the release runs.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            held().contains("127.0.0.1:1/fake-5"),
            "still being released"
        );
        assert!(
            eventually(|| log(dir.path()).ends_with("-p fake-5 release\n")
                && !held().contains("127.0.0.1:1/fake-5"))
            .await,
            "{}",
            log(dir.path())
        );
        // A lease released explicitly is not released again by its drop.
        std::fs::remove_file(dir.path().join("slow-release")).expect("rm");
        let lease = PlaceLease::acquire(client, "fake-5").await.expect("again");
        lease.release().await.expect("released");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(log(dir.path()).matches("release").count(), 2);
    }

    #[tokio::test]
    async fn a_failed_release_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let client = fake_client(dir.path());
        let lease = PlaceLease::acquire(client.clone(), "fake-6")
            .await
            .expect("acquired");
        std::fs::write(dir.path().join("release-fails"), "").expect("write");
        let e = lease.release().await.unwrap_err();
        assert!(e.to_string().contains("is not acquired by you"), "{e}");
        // Not tried again by the drop; the key is forgotten.
        assert_eq!(log(dir.path()).matches("release").count(), 1);
        assert!(!held().contains("127.0.0.1:1/fake-6"));
    }

    #[tokio::test]
    async fn a_place_held_elsewhere_names_the_holder_and_is_not_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let client = fake_client(dir.path());
        std::fs::write(dir.path().join("held"), "").expect("write");
        let e = PlaceLease::acquire(client, "fake-2").await.unwrap_err();
        assert!(
            e.to_string().contains("already acquired by bench/alice"),
            "{e}"
        );
        assert!(matches!(e, LabgridError::Held { .. }));
        assert!(!log(dir.path()).contains("release"), "someone else's place");
    }

    #[tokio::test]
    async fn an_acquire_cut_short_releases_what_may_have_been_granted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let client = fake_client(dir.path());
        std::fs::write(dir.path().join("slow"), "").expect("write");
        let r = tokio::time::timeout(
            Duration::from_millis(300),
            PlaceLease::acquire(client, "fake-4"),
        )
        .await;
        assert!(r.is_err(), "cut short");
        // Released from the lease's drop, on the runtime's blocking pool.
        assert!(
            eventually(|| log(dir.path()).ends_with("-p fake-4 release\n")
                && !held().contains("127.0.0.1:1/fake-4"))
            .await,
            "{}",
            log(dir.path())
        );
    }

    #[tokio::test]
    async fn a_missing_client_is_named() {
        let client = LabgridClient {
            client: "/nonexistent/labgrid-client".into(),
            coordinator: None,
        };
        let e = PlaceLease::acquire(client, "fake-3").await.unwrap_err();
        assert!(matches!(e, LabgridError::Spawn { .. }), "{e}");
        assert!(e.to_string().contains("install labgrid"), "{e}");
        // The failed attempt did not keep the place marked as held.
        assert!(!held().contains("/fake-3"));
    }
}
