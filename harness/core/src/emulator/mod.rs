//! Starting, controlling and stopping emulated units (the simulated device, QEMU, Renode, any
//! process).
//!
//! The process is started in its own process group with its standard input held by the harness
//! (a child can watch for EOF) and, on Linux, a parent-death signal, so no unit outlives the
//! harness even when it is killed. A unit is *ready* when every condition its board gives
//! holds: a line of its output matches `ready` (the named captures become `{emulator.NAME}`),
//! `ready_tcp` accepts a connection, its `console` accepts a connection (kept: the console of
//! the unit, so boot output is evidence). A process that exits first is reported at once with
//! its last output. Output is drained into a bounded tail kept for error messages.
//!
//! For `qemu` with a `machine` and `renode` with a `platform`, hilsec writes the command line
//! (QEMU) or the script (Renode, [`renode`]) itself: the UART on `{port.serial}`, the GDB stub on
//! `{port.gdb}`, QMP ([`qmp`]) or the Renode monitor on `{port.qmp}`/`{port.monitor}`, and the
//! board's per-unit data placed in memory from files only the harness's user can read.
//! Those control channels give the `reset` (warm) action; `power_cycle` restarts the process
//! with the same ports and data, for any kind.
//!
//! Secrets reach the process through its environment (`[emulator] env`) or a load file, never
//! its arguments: arguments are readable by every user of the machine (`ps`,
//! /proc/PID/cmdline), the environment and a 0600 file only by the process's owner.

pub mod qmp;
pub mod renode;
mod renode_glue;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::board::{EmulatedSystem, Emulator, EmulatorKind, LoadData};
use crate::iface::serial::Console;
use crate::template::Vars;
use crate::transcript::Transcript;

const TAIL_LINES: usize = 40;
const MAX_LINE: usize = 4096;
/// How often readiness by TCP is tried, and the process checked for an exit.
const POLL: Duration = Duration::from_millis(50);

/// A unit's emulator, shared by the runner (start, exit checks, stop) and the unit's
/// `Device` (reset and power-cycle steps, the console connected at start).
pub type EmulatorHandle = Arc<tokio::sync::Mutex<RunningEmulator>>;

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("cannot start emulator `{command}`: {detail}")]
    Spawn { command: String, detail: String },
    #[error("emulator `{command}` was not ready within {waited:?} ({missing}); its last output:\n{tail}")]
    NotReady {
        command: String,
        missing: String,
        waited: Duration,
        tail: String,
    },
    #[error(
        "emulator `{command}` exited before it was ready ({status}); its last output:\n{tail}"
    )]
    Exited {
        command: String,
        status: String,
        tail: String,
    },
    #[error("emulator argument: {0}")]
    Template(String),
    #[error("cannot write the emulator's files: {0}")]
    Files(String),
    #[error("cannot find a free loopback port: {0}")]
    Ports(String),
    /// A control request (reset, quit) the emulator refused or did not answer.
    #[error("{0}")]
    Control(String),
    #[error("emulator kind {kind} has no warm reset; use `emulator = \"power_cycle\"`, or reset the unit through a debug port or its console")]
    NoReset { kind: String },
}

/// A unit brought up: its device, and its emulator when it has one.
pub struct StartedUnit {
    pub device: crate::device::Device,
    pub emulator: Option<EmulatorHandle>,
}

/// Brings a unit up the way `hilsec run` does: chooses its ports, starts its emulator (if its
/// model has one) and wait until it is ready, and gives the device its ports, the emulator's
/// captures, the emulator itself and the console connected at start. On failure: the device
/// (without emulator, for its redactor) and the error.
pub async fn start_unit(
    unit: crate::board::Unit,
    model: std::sync::Arc<crate::board::Model>,
    env: &crate::device::RunEnv,
) -> Result<StartedUnit, (crate::device::Device, EmulatorError)> {
    use crate::device::Device;
    let Some(e) = model.emulator.clone() else {
        let device = Device::new(unit, model, &BTreeMap::new(), env);
        return Ok(StartedUnit {
            device,
            emulator: None,
        });
    };
    // An emulated unit without a declared address gets a loopback address of its own, where
    // its network services listen as a real unit's do on its IP address.
    let mut unit = unit;
    let pick_address = unit.address.is_none();
    // A port another program took between choosing and binding: choose again (twice at most).
    let mut attempt = 0;
    let (em, ports) = loop {
        attempt += 1;
        if pick_address {
            unit.address = Some(allocate_loopback_address().to_string());
        }
        let mut probe = Device::new(unit.clone(), model.clone(), &BTreeMap::new(), env);
        let ports = match allocate_ports(&e.ports) {
            Ok(p) => p,
            Err(err) => return Err((probe, err)),
        };
        probe.set_ports(&ports);
        let console = e.console.as_deref().and_then(|c| probe.tcp_address(c));
        match start(&e, probe.globals(), console).await {
            Ok(em) => break (em, ports),
            Err(EmulatorError::Exited { tail, .. })
                if attempt < 3
                    && (!e.ports.is_empty() || pick_address)
                    && (tail.contains("in use")
                        // QEMU's -netdev hostfwd on a taken address:port
                        || tail.contains("could not set up host forwarding rule")) => {}
            Err(err) => return Err((probe, err)),
        }
    };
    let mut device = Device::new(unit, model, &em.vars, env);
    device.set_ports(&ports);
    let handle = Arc::new(tokio::sync::Mutex::new(em));
    device.attach_emulator(handle.clone());
    Ok(StartedUnit {
        device,
        emulator: Some(handle),
    })
}

/// A loopback address for one emulated unit: 127.A.B.C drawn at random for each unit (A in
/// 32..=223, C in 1..=254: clear of 127.0.x.x and of the control addresses scans use), never
/// the same twice in a process; two runs at once meet with a chance of about one in 12 million
/// per pair of units, and a start that then finds a port taken is retried with another address.
/// Linux routes all of 127/8 to the loopback interface, so a unit's services bound there are
/// reachable, and a port scan of the address sees only that unit's (plus services bound to
/// every address, which the scan tells apart).
pub fn allocate_loopback_address() -> std::net::Ipv4Addr {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::{Mutex, OnceLock};
    static USED: OnceLock<Mutex<std::collections::HashSet<std::net::Ipv4Addr>>> = OnceLock::new();
    let used = USED.get_or_init(Default::default);
    let mut used = used.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        // RandomState is seeded randomly per instance: a fresh one per draw.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(used.len());
        let r = h.finish();
        let a = 32 + (r % 192) as u8;
        let b = ((r >> 8) & 0xff) as u8;
        let c = 1 + ((r >> 16) % 254) as u8;
        let ip = std::net::Ipv4Addr::new(127, a, b, c);
        if used.insert(ip) {
            return ip;
        }
    }
}

/// One free loopback TCP port per name.
///
/// Not the kernel's ephemeral ports (binding port 0): those are also the source ports of every
/// outgoing connection, and the harness connects to many consoles while emulators start, so an
/// emulator that binds its port a moment later (QEMU opens its GDB stub only once its console is
/// connected) found it taken. The ports come from below the ephemeral range instead, are checked
/// free by binding them, and are never handed to two units of this process.
pub fn allocate_ports(
    names: &std::collections::BTreeSet<String>,
) -> Result<BTreeMap<String, u16>, EmulatorError> {
    static GIVEN: Mutex<Option<std::collections::HashSet<u16>>> = Mutex::new(None);
    let (low, high) = port_range();
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    let given = given.get_or_insert_with(Default::default);
    let mut rng = PortRng::seeded();
    let mut ports = BTreeMap::new();
    for n in names {
        let found = pick_free_port((low, high), given, &mut rng, |p| {
            std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
        });
        let p = found.ok_or_else(|| {
            EmulatorError::Ports(format!(
                "no free port found in {low}-{high} after 1000 tries"
            ))
        })?;
        given.insert(p);
        ports.insert(n.clone(), p);
    }
    Ok(ports)
}

/// A random port of `range` that was not `given` before and that `is_free` accepts, within
/// 1000 tries.
fn pick_free_port(
    (low, high): (u16, u16),
    given: &std::collections::HashSet<u16>,
    rng: &mut PortRng,
    is_free: impl Fn(u16) -> bool,
) -> Option<u16> {
    let span = u32::from(high - low) + 1;
    (0..1000)
        .map(|_| low + (rng.next() % u64::from(span)) as u16)
        .find(|p| !given.contains(p) && is_free(*p))
}

/// Where unit ports are chosen: from 10000 up to just below the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`, 32768 by default).
fn port_range() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    if ephemeral_low > 11_000 {
        (10_000, ephemeral_low - 1)
    } else {
        // An unusual configuration: above the ephemeral range instead.
        (61_000, 65_000)
    }
}

/// A small non-cryptographic generator (xorshift64*) for picking ports.
struct PortRng(u64);

impl PortRng {
    fn seeded() -> PortRng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        PortRng((t ^ (u64::from(std::process::id()) << 32)) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// What was rendered to start the process, kept to start it again on a power cycle.
struct Launch {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Address that must accept before the unit is ready (`ready_tcp`).
    ready_tcp: Option<String>,
    /// The console interface connected at start, and its address.
    console: Option<(String, String)>,
    /// QMP or Renode monitor address.
    control: Option<String>,
    /// The unit's name (Renode's machine).
    machine: String,
    /// Load files and the Renode script; removed when the unit is stopped.
    _files: Option<tempfile::TempDir>,
}

/// A running emulated unit. Dropping it kills the process.
pub struct RunningEmulator {
    spec: Emulator,
    launch: Launch,
    child: Child,
    pub vars: BTreeMap<String, String>,
    tail: Arc<Mutex<Vec<String>>>,
    console: Option<(String, Console)>,
    /// Powered off by a `power` step (the process is gone on purpose).
    powered_off: bool,
}

impl RunningEmulator {
    /// Last lines the emulator printed (for diagnosing a unit that died).
    pub fn tail(&self) -> String {
        join_tail(&self.tail)
    }

    /// The process id of the emulator (the leader of its process group), while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Whether the process has exited, and how. A unit a `power` step switched off has not
    /// exited: it is off, and its links fail to open until it is on again.
    pub fn exited(&mut self) -> Option<String> {
        if self.powered_off {
            return None;
        }
        match self.child.try_wait() {
            Ok(Some(st)) => Some(st.to_string()),
            _ => None,
        }
    }

    /// The console connected at start, for the interface `iface` (taken once).
    pub fn take_console(&mut self, iface: &str) -> Option<Console> {
        match &self.console {
            Some((name, _)) if name == iface => self.console.take().map(|(_, c)| c),
            _ => None,
        }
    }

    /// What a warm reset is for this kind, for evidence.
    pub fn reset_method(&self) -> &'static str {
        match self.spec.kind {
            EmulatorKind::Qemu => "QMP system_reset",
            EmulatorKind::Renode => "Renode monitor `machine Reset`",
            _ => "none",
        }
    }

    /// Warm reset: the CPU and devices restart, memory is kept.
    pub async fn reset(&mut self, timeout: Duration) -> Result<(), EmulatorError> {
        let Some(addr) = self.launch.control.clone() else {
            return Err(EmulatorError::NoReset {
                kind: format!("{:?}", self.spec.kind).to_lowercase(),
            });
        };
        match self.spec.kind {
            EmulatorKind::Qemu => qmp::execute(&addr, "system_reset", timeout)
                .await
                .map(|_| ())
                .map_err(|e| EmulatorError::Control(e.to_string())),
            EmulatorKind::Renode => renode_glue::reset(&addr, &self.launch.machine, timeout).await,
            _ => Err(EmulatorError::NoReset {
                kind: format!("{:?}", self.spec.kind).to_lowercase(),
            }),
        }
    }

    /// Cold power cycle: the process is stopped and started again with the same command line,
    /// ports and data; it must become ready again within its ready timeout.
    pub async fn power_cycle(&mut self) -> Result<(), EmulatorError> {
        self.power_off().await;
        self.power_on().await
    }

    /// Power off: the process is stopped (its memory is gone, as a board's RAM would be).
    pub async fn power_off(&mut self) {
        self.kill().await;
        self.console = None;
        self.powered_off = true;
    }

    /// Power on after [`RunningEmulator::power_off`]: started again with the same command
    /// line, ports and data, ready within its ready timeout. Nothing to do when it runs.
    pub async fn power_on(&mut self) -> Result<(), EmulatorError> {
        if !self.powered_off && self.exited().is_none() {
            return Ok(());
        }
        let (child, vars, tail, console) = spawn_until_ready(&self.spec, &self.launch).await?;
        self.child = child;
        self.vars = vars;
        self.tail = tail;
        self.console = console;
        self.powered_off = false;
        Ok(())
    }

    /// Whether the unit was powered off by the harness (and not on again).
    pub fn is_powered_off(&self) -> bool {
        self.powered_off
    }

    async fn kill(&mut self) {
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

    /// Stops the unit: Renode is asked to quit first (briefly), then the process group is
    /// killed and the process reaped.
    pub async fn stop(&mut self) {
        if self.spec.kind == EmulatorKind::Renode && self.exited().is_none() {
            if let Some(addr) = self.launch.control.clone() {
                renode_glue::quit(&addr, Duration::from_secs(2)).await;
            }
        }
        self.console = None;
        self.kill().await;
    }
}

fn join_tail(tail: &Mutex<Vec<String>>) -> String {
    match tail.lock() {
        Ok(t) => t.join("\n"),
        Err(p) => p.into_inner().join("\n"),
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

fn port(vars: &Vars, name: &str) -> Result<String, EmulatorError> {
    vars.get(&format!("port.{name}"))
        .map(|v| v.expose().to_string())
        .ok_or_else(|| EmulatorError::Ports(format!("{{port.{name}}} was not chosen")))
}

/// QEMU's option syntax: a comma in a value is written twice.
fn qemu_escape(s: &str) -> String {
    s.replace(',', ",,")
}

/// Renders what starts the unit: program, arguments, environment, the files of a machine
/// hilsec starts itself, and the addresses readiness and control use.
fn prepare(
    e: &Emulator,
    vars: &Vars,
    console_addr: Option<String>,
) -> Result<Launch, EmulatorError> {
    let machine = vars
        .get("unit.name")
        .map_or_else(|| "unit".to_string(), |v| v.expose().to_string());
    let render = |t: &crate::template::Template, what: &str| {
        t.render(vars)
            .map(|r| r.text)
            .map_err(|m| EmulatorError::Template(format!("{what}: {m}")))
    };
    let program = resolve_command(e);
    let mut args = Vec::new();
    let mut files = None;
    let mut control = None;
    // Load files: rendered text (which may carry the unit's password) or a file's bytes, in a
    // private folder.
    let mut loads = Vec::new();
    if !e.load.is_empty() || e.system.is_some() {
        let dir = tempfile::Builder::new()
            .prefix("hilsec-unit-")
            .tempdir()
            .map_err(|err| EmulatorError::Files(err.to_string()))?;
        for (i, l) in e.load.iter().enumerate() {
            let bytes = match &l.data {
                LoadData::Text(t) => {
                    let mut b = render(t, "load text")?.into_bytes();
                    b.push(0);
                    b
                }
                LoadData::File(t) => {
                    let path = render(t, "load file")?;
                    std::fs::read(&path)
                        .map_err(|err| EmulatorError::Files(format!("{path}: {err}")))?
                }
            };
            let path = dir.path().join(format!("load-{i}.bin"));
            write_private(&path, &bytes)?;
            loads.push((l.address, path));
        }
        files = Some(dir);
    }
    match &e.system {
        Some(EmulatedSystem::Qemu { machine, firmware }) => {
            let fw = render(firmware, "firmware")?;
            if !std::path::Path::new(&fw).is_file() {
                return Err(EmulatorError::Files(format!(
                    "firmware {fw} does not exist (the reference firmware is built by fixtures/firmware/build)"
                )));
            }
            let serial = port(vars, "serial")?;
            let qmp_port = port(vars, "qmp")?;
            args.extend(
                [
                    "-M",
                    machine,
                    "-nographic",
                    "-monitor",
                    "none",
                    "-serial",
                    &format!("tcp:127.0.0.1:{serial},server=on,wait=on,nodelay=on"),
                    "-gdb",
                    &format!("tcp:127.0.0.1:{}", port(vars, "gdb")?),
                    "-qmp",
                    &format!("tcp:127.0.0.1:{qmp_port},server=on,wait=off"),
                    "-kernel",
                    &fw,
                ]
                .map(str::to_string),
            );
            for (addr, path) in &loads {
                args.push("-device".into());
                args.push(format!(
                    "loader,file={},addr={addr:#x}",
                    qemu_escape(&path.display().to_string())
                ));
            }
            control = Some(format!("127.0.0.1:{qmp_port}"));
        }
        Some(EmulatedSystem::Renode {
            platform,
            firmware,
            uart,
        }) => {
            let monitor = port(vars, "monitor")?;
            let number = |name: &str| -> Result<u16, EmulatorError> {
                port(vars, name)?
                    .parse()
                    .map_err(|_| EmulatorError::Ports(format!("{{port.{name}}}")))
            };
            let setup = renode_glue::Setup {
                machine: machine.clone(),
                platform: render(platform, "platform")?,
                firmware: PathBuf::from(render(firmware, "firmware")?),
                loads: loads.clone(),
                uart: uart.clone(),
                serial: number("serial")?,
                gdb: number("gdb")?,
                monitor: number("monitor")?,
            };
            let dir = files
                .as_ref()
                .ok_or_else(|| EmulatorError::Files("no folder for the Renode script".into()))?;
            args.extend(renode_glue::prepare(&setup, dir.path())?);
            control = Some(format!("127.0.0.1:{monitor}"));
        }
        None => {}
    }
    for a in &e.args {
        args.push(render(a, "argument")?);
    }
    let mut env = Vec::new();
    for (k, t) in &e.env {
        env.push((k.clone(), render(t, &format!("env {k}"))?));
    }
    let ready_tcp = match &e.ready_tcp {
        Some(t) => Some(render(t, "ready_tcp")?),
        None => None,
    };
    let console = match (&e.console, console_addr) {
        (Some(name), Some(addr)) => Some((name.clone(), addr)),
        _ => None,
    };
    Ok(Launch {
        program,
        args,
        env,
        ready_tcp,
        console,
        control,
        machine,
        _files: files,
    })
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> Result<(), EmulatorError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| EmulatorError::Files(format!("{}: {e}", path.display())))?;
    f.write_all(bytes)
        .map_err(|e| EmulatorError::Files(format!("{}: {e}", path.display())))
}

/// Starts the unit's emulator and waits until it is ready. `console_addr` is the rendered
/// address of the board's `console` interface, when it has one.
pub async fn start(
    e: &Emulator,
    vars: &Vars,
    console_addr: Option<String>,
) -> Result<RunningEmulator, EmulatorError> {
    let launch = prepare(e, vars, console_addr)?;
    let (child, vars, tail, console) = spawn_until_ready(e, &launch).await?;
    Ok(RunningEmulator {
        spec: e.clone(),
        launch,
        child,
        vars,
        tail,
        console,
        powered_off: false,
    })
}

type Started = (
    Child,
    BTreeMap<String, String>,
    Arc<Mutex<Vec<String>>>,
    Option<(String, Console)>,
);

async fn spawn_until_ready(e: &Emulator, launch: &Launch) -> Result<Started, EmulatorError> {
    let command = launch.program.display().to_string();
    let mut cmd = Command::new(&launch.program);
    cmd.args(&launch.args)
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
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
        detail: if err.kind() == std::io::ErrorKind::NotFound {
            match e.kind {
                EmulatorKind::Sim => format!("{err}; build it with `cargo build --release` (it is the hilsec-simdev binary), or set HILSEC_SIMDEV"),
                EmulatorKind::Qemu => format!("{err}; install QEMU (Debian: apt-get install --no-install-recommends qemu-system-arm) or set `command`"),
                EmulatorKind::Renode => format!("{err}; install Renode and put `renode` on PATH, or set `command` (see README: Emulation)"),
                EmulatorKind::Process => err.to_string(),
            }
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
                // At EOF a last line without a newline is kept too.
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

    let deadline = Instant::now() + e.ready_timeout;
    let mut captures: Option<BTreeMap<String, String>> = match &e.ready {
        Some(_) => None,
        None => Some(BTreeMap::new()),
    };
    let mut output_open = true;
    let mut tcp_ok = launch.ready_tcp.is_none();
    let mut console: Option<(String, Console)> = None;
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let failure = loop {
        if captures.is_some() && tcp_ok && (launch.console.is_none() || console.is_some()) {
            let vars = captures.unwrap_or_default();
            return Ok((child, vars, tail, console));
        }
        if Instant::now() >= deadline {
            let mut missing = Vec::new();
            if captures.is_none() {
                if let Some(r) = &e.ready {
                    missing.push(format!("no line matched /{}/", r.as_str()));
                }
            }
            if let (false, Some(a)) = (tcp_ok, &launch.ready_tcp) {
                missing.push(format!("{a} did not accept"));
            }
            if let (None, Some((name, a))) = (&console, &launch.console) {
                missing.push(format!("console {name:?} at {a} did not accept"));
            }
            break EmulatorError::NotReady {
                command: command.clone(),
                missing: missing.join("; "),
                waited: e.ready_timeout,
                tail: String::new(),
            };
        }
        tokio::select! {
            line = rx.recv(), if output_open => match line {
                Some(line) => {
                    if captures.is_none() {
                        if let Some(r) = &e.ready {
                            if let Some(c) = r.captures(&line) {
                                let mut vars = BTreeMap::new();
                                for name in r.capture_names().flatten() {
                                    if let Some(m) = c.name(name) {
                                        vars.insert(name.to_string(), m.as_str().to_string());
                                    }
                                }
                                captures = Some(vars);
                            }
                        }
                    }
                }
                None => output_open = false,
            },
            _ = tick.tick() => {
                if let Ok(Some(status)) = child.try_wait() {
                    // Let the readers take the last bytes (a last line without a newline).
                    let _ = tokio::time::timeout(Duration::from_millis(500), async {
                        while rx.recv().await.is_some() {}
                    })
                    .await;
                    break EmulatorError::Exited {
                        command: command.clone(),
                        status: status.to_string(),
                        tail: String::new(),
                    };
                }
                if !tcp_ok {
                    if let Some(a) = &launch.ready_tcp {
                        tcp_ok = try_connect(a).await.is_some();
                    }
                }
                if console.is_none() {
                    if let Some((name, a)) = &launch.console {
                        if let Some(stream) = try_connect(a).await {
                            let _ = stream.set_nodelay(true);
                            // Read from now on: boot output is kept for the first test's
                            // evidence ("before test").
                            console = Some((name.clone(), Console::from_stream(name, stream, Transcript::new())));
                        }
                    }
                }
            }
        }
    };
    let tail_text = join_tail(&tail);
    let mut child = child;
    if let Some(pid) = child
        .id()
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    Err(match failure {
        EmulatorError::NotReady {
            command,
            missing,
            waited,
            ..
        } => EmulatorError::NotReady {
            command,
            missing,
            waited,
            tail: tail_text,
        },
        EmulatorError::Exited {
            command, status, ..
        } => EmulatorError::Exited {
            command,
            status,
            tail: tail_text,
        },
        other => other,
    })
}

async fn try_connect(addr: &str) -> Option<tokio::net::TcpStream> {
    tokio::time::timeout(POLL * 4, tokio::net::TcpStream::connect(addr))
        .await
        .ok()?
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ports come from below the kernel's ephemeral range (never a source port of an outgoing
    /// connection) and are never handed out twice by one process.
    #[test]
    fn ports_are_distinct_free_and_outside_the_ephemeral_range() {
        let names: std::collections::BTreeSet<String> =
            ["serial", "gdb", "qmp"].map(str::to_string).into();
        let (low, high) = port_range();
        let mut all = std::collections::HashSet::new();
        for _ in 0..20 {
            let ports = allocate_ports(&names).expect("ports");
            assert_eq!(ports.len(), 3);
            for p in ports.values() {
                assert!((low..=high).contains(p), "{p} outside {low}-{high}");
                assert!(all.insert(*p), "{p} handed out twice");
            }
        }
    }

    /// Ports in use or handed out before are passed over (judged here by a given `is_free`, as
    /// another test may take any real port between a check and an assertion).
    #[test]
    fn ports_in_use_or_given_are_passed_over() {
        let given: std::collections::HashSet<u16> = [20_001].into();
        let mut rng = PortRng::seeded();
        let free = |p: u16| p == 20_001 || p == 20_005;
        for _ in 0..10 {
            assert_eq!(
                pick_free_port((20_000, 20_009), &given, &mut rng, free),
                Some(20_005)
            );
        }
        assert_eq!(
            pick_free_port((20_000, 20_009), &given, &mut rng, |_| false),
            None
        );
    }
}
