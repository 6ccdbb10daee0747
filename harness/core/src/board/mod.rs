//! Board files: what hardware exists and how to drive it, validated into typed form.
//!
//! `model` is the file's shape as written; the loader reads files (following `extends`), checks
//! every reference, regex, duration and template, and produces the resolved types below. The
//! rest of the harness only ever sees resolved boards: nothing runs on a file that has errors.
//!
//! The loader's seams, in the order a file goes through them:
//!
//! | module | job |
//! | --- | --- |
//! | `load` | find files (folders, `*.toml`), resolve `extends`, one model per model file |
//! | `build` | `[model]`, `[declarations]` (defaults), `[emulator]`, `[actions]` into a [`Model`] |
//! | `interfaces` | `[interfaces.NAME]` per kind; the default interface of steps |
//! | `steps` | one recipe step: its verb, keys, interface, regexes, variables |
//! | `calls` | `call` steps as a graph: callees, arguments, cycles, callee captures |
//! | `units` | `[[unit]]`: names, `{unit.VAR}`, secrets |
//! | [`vars`] | the one list of template variables (also the README's table) |
//! | `values` | durations, templates and regexes checked at their span |
//! | [`diag`] | file:line:col diagnostics |

mod build;
mod calls;
pub mod diag;
mod hardware;
mod interfaces;
mod load;
pub mod model;
mod steps;
#[cfg(test)]
mod testutil;
mod units;
mod values;
pub mod vars;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use regex::bytes::Regex;

pub(crate) use build::parse_address;
pub use diag::{BoardError, BoardErrors};
pub use hardware::flash_start;
pub use load::{load_boards, LoadMode};
pub use model::PasswordMechanism;
pub use vars::{TemplateVar, VarScope, TEMPLATE_VARS};

use crate::template::Template;

/// The units of one model found in the given board files.
#[derive(Debug, Clone)]
pub struct Board {
    pub model: Arc<Model>,
    pub units: Vec<Unit>,
}

/// What all units of a model share.
#[derive(Debug)]
pub struct Model {
    pub name: String,
    pub manufacturer: Option<String>,
    /// The file the model was defined in.
    pub source: PathBuf,
    pub firmware: Option<String>,
    pub declarations: Declarations,
    pub emulator: Option<Emulator>,
    pub interfaces: BTreeMap<String, Interface>,
    pub actions: BTreeMap<String, Action>,
}

impl Model {
    pub fn has_action(&self, name: &str) -> bool {
        self.actions.contains_key(name)
    }
}

/// Default of `max_guess_rate`: 360 guesses per hour per login surface (one per 10 s). See
/// README.md, "Verdict rules", for why.
pub const DEFAULT_MAX_GUESS_RATE: u32 = 360;

/// The manufacturer's declarations with defaults applied.
#[derive(Debug, Clone)]
pub struct Declarations {
    pub password_mechanism: Option<PasswordMechanism>,
    pub login_user: String,
    pub min_password_length: usize,
    pub brute_force_attempts: usize,
    pub throttle_threshold: Duration,
    /// Consecutive failures before the unit locks out or throttles, when declared.
    pub lockout_after: Option<usize>,
    /// Declared length of a lockout.
    pub lockout_window: Option<Duration>,
    /// Guesses per hour per login surface above which brute force counts as practicable.
    pub max_guess_rate: u32,
    pub public_identifiers: Vec<String>,
    pub update: Option<UpdateDeclarations>,
    pub disclosure: Option<DisclosureDeclarations>,
    /// The units run production firmware: the debug port is expected locked.
    pub production_firmware: Option<bool>,
    pub broker: Option<BrokerDeclarations>,
    pub network: Option<NetworkDeclarations>,
}

/// `[declarations.broker]`, parsed: the MQTT broker the unit itself runs.
#[derive(Debug, Clone)]
pub struct BrokerDeclarations {
    /// `host:port`.
    pub address: Template,
    pub command_topics: Vec<Template>,
    pub listen: Duration,
}

/// `[declarations.network]`, parsed: what the surface scan tries.
#[derive(Debug, Clone)]
pub struct NetworkDeclarations {
    /// The one host scanned.
    pub address: Template,
    pub ports: Vec<u16>,
    /// Ports the manufacturer declares besides the interfaces' and the recipes' URLs.
    pub services: Vec<u16>,
    pub connect_timeout: Duration,
    pub banner_timeout: Duration,
}

impl BrokerDeclarations {
    pub fn templates(&self) -> Vec<&Template> {
        let mut v = vec![&self.address];
        v.extend(self.command_topics.iter());
        v
    }
}

/// `[declarations.disclosure]`, parsed (templates rendered per unit by the device).
#[derive(Debug, Clone, Default)]
pub struct DisclosureDeclarations {
    pub policy_url: Option<Template>,
    pub security_txt: Option<Template>,
    pub support_url: Option<Template>,
    pub csaf_provider: Option<Template>,
    pub ca: Vec<Template>,
}

impl DisclosureDeclarations {
    pub fn templates(&self) -> Vec<&Template> {
        let mut v: Vec<&Template> = [
            &self.policy_url,
            &self.security_txt,
            &self.support_url,
            &self.csaf_provider,
        ]
        .into_iter()
        .flatten()
        .collect();
        v.extend(self.ca.iter());
        v
    }
}

/// `[declarations.update]`, resolved (paths against the board file).
#[derive(Debug, Clone)]
pub struct UpdateDeclarations {
    pub action: String,
    pub version_action: String,
    pub signing_key: Option<PathBuf>,
    pub genuine_image: Option<PathBuf>,
    pub payload_size: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmulatorKind {
    Sim,
    Qemu,
    Renode,
    Process,
}

#[derive(Debug, Clone)]
pub struct Emulator {
    pub kind: EmulatorKind,
    pub command: String,
    pub args: Vec<Template>,
    /// Environment of the process (name, template), in file order; may carry secrets.
    pub env: Vec<(String, Template)>,
    /// A line of its output that says it is up (named captures become `{emulator.NAME}`).
    pub ready: Option<regex::Regex>,
    /// Up when this address accepts a TCP connection.
    pub ready_tcp: Option<Template>,
    /// A serial-over-TCP interface connected at start and kept (boot output is evidence).
    pub console: Option<String>,
    pub ready_timeout: Duration,
    /// What hilsec writes the command line from, for `qemu` and `renode` with a machine or
    /// platform; `None` when the board writes the command line itself (`args`).
    pub system: Option<EmulatedSystem>,
    /// Data placed in memory at start.
    pub load: Vec<MemoryLoad>,
    /// Every `{port.NAME}` the model uses (its emulator, interfaces, steps, declarations): one
    /// free loopback port per name and unit, chosen before the emulator starts.
    pub ports: std::collections::BTreeSet<String>,
}

/// An emulated machine hilsec starts itself (it writes the emulator's command line).
#[derive(Debug, Clone)]
pub enum EmulatedSystem {
    /// `qemu-system-*`: machine (`-M`) and firmware (`-kernel`).
    Qemu { machine: String, firmware: Template },
    /// Renode: platform description, firmware ELF and the UART on `{port.serial}`.
    Renode {
        platform: Template,
        firmware: Template,
        uart: String,
    },
}

/// Bytes placed at `address` when the emulated unit starts.
#[derive(Debug, Clone)]
pub struct MemoryLoad {
    pub address: u64,
    pub data: LoadData,
}

#[derive(Debug, Clone)]
pub enum LoadData {
    /// Rendered text plus a NUL byte (may carry secrets).
    Text(Template),
    /// A file's bytes (templated path).
    File(Template),
}

#[derive(Debug, Clone)]
pub enum Interface {
    Serial(SerialSpec),
    Mqtt(MqttSpec),
    ModbusTcp(ModbusTcpSpec),
    ModbusRtu(ModbusRtuSpec),
    Http(HttpSpec),
    Gdb(GdbSpec),
    ProbeRs(ProbeRsSpec),
    Rtt(RttSpec),
    Power(PowerSpec),
    Telnet(TelnetSpec),
    Ssh(SshSpec),
    Labgrid(LabgridSpec),
}

/// A console on a labgrid place: the place is acquired through `labgrid-client` when the
/// interface is first opened, its serial port (RFC 2217 or raw TCP, served by ser2net on the
/// exporter) becomes the console, and the place is released when the unit's device is dropped.
#[derive(Debug, Clone)]
pub struct LabgridSpec {
    /// The place's name (or alias), templated.
    pub place: Template,
    /// The coordinator's `host:port`, templated; `None`: `LG_COORDINATOR` or labgrid's default.
    pub coordinator: Option<Template>,
    /// The serial port's name in the place, when it has several.
    pub resource: Option<Template>,
    /// Baud rate set through RFC 2217 SET-BAUDRATE; `None`: the port's own `speed`.
    pub baud: Option<u32>,
    /// The `labgrid-client` executable.
    pub client: String,
    pub timeout: Duration,
}

/// A console over telnet (BusyBox telnetd, an embedded telnet server, ser2net in telnet mode).
#[derive(Debug, Clone)]
pub struct TelnetSpec {
    /// `host:port`, templated.
    pub address: Template,
    pub terminal: Option<String>,
    pub timeout: Duration,
}

/// An SSH server: `ssh_auth` steps log in (one connection per attempt), the shell of the last
/// accepted login is the interface's console.
#[derive(Debug, Clone)]
pub struct SshSpec {
    /// `host:port`, templated.
    pub address: Template,
    /// Pinned host key fingerprint ("SHA256:...").
    pub host_key: Option<String>,
    pub terminal: Option<String>,
    pub timeout: Duration,
}

/// What every debug port (GDB stub or probe) may declare besides how to reach it.
#[derive(Debug, Clone, Default)]
pub struct DebugPolicy {
    /// `flash` steps may write this unit.
    pub allow_flash: bool,
    /// Where the `debug.port-locked` test reads (an address an unlocked unit lets the port
    /// read).
    pub lock_test_address: Option<u64>,
}

/// A debug probe driven by probe-rs (SWD or JTAG).
#[derive(Debug, Clone)]
pub struct ProbeRsSpec {
    /// "VID:PID[:SERIAL]"; `None`: the only probe attached.
    pub probe: Option<Template>,
    pub chip: String,
    pub protocol: Option<crate::iface::probe::Protocol>,
    pub speed_khz: Option<u32>,
    pub connect_under_reset: bool,
    pub core: usize,
    pub running: bool,
    pub policy: DebugPolicy,
    pub timeout: Duration,
}

/// A console over RTT channels in the unit's memory, read through a debug interface.
#[derive(Debug, Clone)]
pub struct RttSpec {
    /// The debug interface.
    pub debug: String,
    pub control_block: Option<u64>,
    /// Ranges searched for the control block (start, length).
    pub scan: Vec<(u64, u64)>,
    pub up: u32,
    pub down: u32,
    pub poll: Duration,
    pub timeout: Duration,
}

/// How the unit's power is switched.
#[derive(Debug, Clone)]
pub struct PowerSpec {
    pub driver: PowerDriverSpec,
    /// How long a cycle keeps the unit off.
    pub off_time: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum PowerDriverSpec {
    /// Shell commands (templated).
    Command {
        on: Template,
        off: Template,
        cycle: Option<Template>,
    },
    /// A Modbus TCP relay coil.
    ModbusCoil {
        address: Template,
        unit_id: u8,
        coil: u16,
        on_value: bool,
    },
    /// A Tasmota plug on an MQTT broker.
    Tasmota {
        broker: MqttBroker,
        topic: Template,
        relay: Option<u8>,
        username: Option<Template>,
        password: Option<Template>,
    },
    /// The emulated unit's own power (the emulator process).
    Emulator,
}

/// A debug port speaking the GDB remote serial protocol (QEMU, Renode, OpenOCD, pyOCD,
/// J-Link GDB server, probe-rs).
#[derive(Debug, Clone)]
pub struct GdbSpec {
    /// `host:port` (templated), e.g. `127.0.0.1:{port.gdb}`.
    pub address: Template,
    /// The stub's monitor command that resets the target, if it has one.
    pub reset_command: Option<String>,
    /// The target runs when attached (resume it after attaching).
    pub running: bool,
    pub policy: DebugPolicy,
    pub timeout: Duration,
}

/// An HTTP(S) surface of the unit (web UI, REST API).
#[derive(Debug, Clone)]
pub struct HttpSpec {
    /// Extra CA certificate (PEM path, templated), e.g. the lab's or the emulator's.
    pub ca: Option<Template>,
    pub timeout: Duration,
}

impl Interface {
    pub fn default_timeout(&self) -> Duration {
        match self {
            Interface::Serial(s) => s.timeout,
            Interface::Mqtt(m) => m.timeout,
            Interface::ModbusTcp(m) => m.timeout,
            Interface::ModbusRtu(m) => m.timeout,
            Interface::Http(h) => h.timeout,
            Interface::Gdb(g) => g.timeout,
            Interface::ProbeRs(p) => p.timeout,
            Interface::Rtt(r) => r.timeout,
            Interface::Power(p) => p.timeout,
            Interface::Telnet(t) => t.timeout,
            Interface::Ssh(t) => t.timeout,
            Interface::Labgrid(l) => l.timeout,
        }
    }

    /// Whether the interface is a debug port (memory, halt, reset, flash).
    pub fn is_debug_port(&self) -> bool {
        matches!(self, Interface::Gdb(_) | Interface::ProbeRs(_))
    }

    /// The debug port's policy (flashing, lock test), if the interface is one.
    pub fn debug_policy(&self) -> Option<&DebugPolicy> {
        match self {
            Interface::Gdb(g) => Some(&g.policy),
            Interface::ProbeRs(p) => Some(&p.policy),
            _ => None,
        }
    }

    /// The kind as written in board files.
    pub fn kind(&self) -> &'static str {
        match self {
            Interface::Serial(_) => "serial",
            Interface::Mqtt(_) => "mqtt",
            Interface::ModbusTcp(_) => "modbus-tcp",
            Interface::ModbusRtu(_) => "modbus-rtu",
            Interface::Http(_) => "http",
            Interface::Gdb(_) => "gdb",
            Interface::ProbeRs(_) => "probe-rs",
            Interface::Rtt(_) => "rtt",
            Interface::Power(_) => "power",
            Interface::Telnet(_) => "telnet",
            Interface::Ssh(_) => "ssh",
            Interface::Labgrid(_) => "labgrid",
        }
    }

    /// Templates of the interface's endpoint (for variable checks).
    pub fn templates(&self) -> Vec<&Template> {
        match self {
            Interface::Serial(s) => vec![s.endpoint.template()],
            Interface::Mqtt(m) => {
                let mut v: Vec<&Template> = [&m.client_id, &m.username, &m.password]
                    .into_iter()
                    .flatten()
                    .collect();
                if let MqttBroker::Address(t) = &m.broker {
                    v.push(t);
                }
                v
            }
            Interface::ModbusTcp(m) => vec![&m.address],
            Interface::ModbusRtu(m) => vec![m.endpoint.template()],
            Interface::Http(h) => h.ca.iter().collect(),
            Interface::Gdb(g) => vec![&g.address],
            Interface::ProbeRs(p) => p.probe.iter().collect(),
            Interface::Rtt(_) => vec![],
            Interface::Telnet(t) => vec![&t.address],
            Interface::Ssh(t) => vec![&t.address],
            Interface::Labgrid(l) => {
                let mut v = vec![&l.place];
                v.extend(l.coordinator.iter().chain(l.resource.iter()));
                v
            }
            Interface::Power(p) => match &p.driver {
                PowerDriverSpec::Command { on, off, cycle } => {
                    let mut v = vec![on, off];
                    v.extend(cycle);
                    v
                }
                PowerDriverSpec::ModbusCoil { address, .. } => vec![address],
                PowerDriverSpec::Tasmota {
                    broker,
                    topic,
                    username,
                    password,
                    ..
                } => {
                    let mut v = vec![topic];
                    if let MqttBroker::Address(a) = broker {
                        v.push(a);
                    }
                    v.extend(username.iter().chain(password.iter()));
                    v
                }
                PowerDriverSpec::Emulator => vec![],
            },
        }
    }
}

/// Where an MQTT interface's broker is.
#[derive(Debug, Clone)]
pub enum MqttBroker {
    /// The broker `hilsec run` starts in-process on a free loopback port.
    Embedded,
    /// `host:port`.
    Address(Template),
}

/// TLS material for an MQTT connection (paths resolved against the board file).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct MqttSpec {
    pub broker: MqttBroker,
    pub client_id: Option<Template>,
    pub username: Option<Template>,
    pub password: Option<Template>,
    pub v5: bool,
    pub tls: Option<TlsFiles>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct ModbusTcpSpec {
    pub address: Template,
    pub unit_id: u8,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct ModbusRtuSpec {
    pub endpoint: SerialEndpoint,
    pub baud: u32,
    pub unit_id: u8,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct SerialSpec {
    pub endpoint: SerialEndpoint,
    pub baud: u32,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum SerialEndpoint {
    Tty(Template),
    Tcp(Template),
}

impl SerialEndpoint {
    pub fn template(&self) -> &Template {
        match self {
            SerialEndpoint::Tty(t) | SerialEndpoint::Tcp(t) => t,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Action {
    pub name: String,
    pub params: Vec<String>,
    pub secret_params: Vec<String>,
    pub steps: Vec<Step>,
    /// Run after `steps` whether the device accepted or refused (e.g. log out again).
    pub cleanup: Vec<Step>,
}

#[derive(Debug, Clone)]
pub enum Step {
    Send {
        on: String,
        text: Template,
        flush: bool,
        /// How long the device may take to take the bytes.
        timeout: Duration,
    },
    Expect {
        on: String,
        pattern: Regex,
        /// Matching first: the action is done and accepted; its remaining steps are skipped.
        accept: Option<Regex>,
        reject: Option<Regex>,
        timeout: Duration,
    },
    Wait(Duration),
    Call {
        action: String,
        args: BTreeMap<String, Template>,
    },
    /// Runs `steps` once per chunk of the data parameter `data`.
    Chunks {
        data: String,
        size: usize,
        encoding: ChunkEncoding,
        steps: Vec<Step>,
    },
    Publish {
        on: String,
        topic: Template,
        body: Body,
        qos: u8,
        retain: bool,
    },
    Await {
        on: String,
        filter: Template,
        pattern: Regex,
        accept: Option<Regex>,
        reject: Option<Regex>,
        timeout: Duration,
    },
    ModbusRead {
        on: String,
        table: ModbusTable,
        address: u16,
        count: u16,
        pattern: Option<Regex>,
        accept: Option<Regex>,
        reject: Option<Regex>,
        capture: Option<String>,
        timeout: Duration,
    },
    ModbusWrite {
        on: String,
        target: ModbusWriteTarget,
        address: u16,
        values: Body,
        timeout: Duration,
    },
    ModbusIdentify {
        on: String,
        regular: bool,
        capture: Option<String>,
        timeout: Duration,
    },
    /// `get` or `post`: one HTTP request (redirects followed), matched as
    /// `HTTP <status>`, one `Redirect: <status> <url>` line per redirect, an empty line, the body.
    Http {
        on: String,
        method: crate::iface::http::HttpMethod,
        url: Template,
        /// User and password, sent as `scheme` asks.
        auth: Option<(Template, Template)>,
        scheme: crate::iface::http::HttpAuthScheme,
        /// `post`: the form fields.
        form: Vec<(String, Template)>,
        pattern: Regex,
        accept: Option<Regex>,
        reject: Option<Regex>,
    },
    /// One SSH login attempt (a new connection): accepted, the shell becomes the interface's
    /// console; refused, the action is rejected.
    SshAuth {
        on: String,
        method: crate::iface::ssh::SshAuthMethod,
        user: Template,
        password: Template,
        timeout: Duration,
    },
    /// Debug port: read `length` bytes at `address`; their hex (or, with `encoding = "text"`,
    /// the text they hold) is matched and captured.
    ReadMemory {
        on: String,
        address: Template,
        length: usize,
        /// Match and capture the bytes as text (up to the first NUL or erased byte) rather
        /// than as hex.
        text: bool,
        pattern: Option<Regex>,
        reject: Option<Regex>,
        capture: Option<String>,
        timeout: Duration,
    },
    /// Debug port: write the bytes of the hex text `data` at `address`.
    WriteMemory {
        on: String,
        address: Template,
        data: Template,
        timeout: Duration,
    },
    /// Debug port: halt, resume or reset the processor.
    Debug {
        on: String,
        op: DebugOp,
        timeout: Duration,
    },
    /// The emulated unit: warm reset or power cycle.
    Emulator(EmulatorOp),
    /// Debug port: write a firmware image (the port allows flashing).
    Flash {
        on: String,
        file: Template,
        /// `None`: from the rendered file name's extension.
        format: Option<FlashFormat>,
        base: Option<u64>,
        verify: bool,
        timeout: Duration,
    },
    /// Power on, off or cycle, through power interface `on` (`None`: the emulated unit's own
    /// power).
    Power {
        on: Option<String>,
        op: PowerOp,
        timeout: Duration,
    },
}

/// An image format as a flash step names it (`bin` takes the step's `base`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashFormat {
    Elf,
    Hex,
    Bin,
}

impl FlashFormat {
    /// The format a file name's extension implies: `.hex`/`.ihex` Intel HEX, `.bin` raw,
    /// anything else ELF (`.elf`, `.axf`, `.out`, or none, as cargo writes them).
    pub fn from_path(path: &str) -> FlashFormat {
        let ext = std::path::Path::new(path)
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        match ext.as_deref() {
            Some("hex" | "ihex") => FlashFormat::Hex,
            Some("bin") => FlashFormat::Bin,
            _ => FlashFormat::Elf,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerOp {
    On,
    Off,
    Cycle,
}

/// Most bytes one `read_memory` step reads.
pub const MAX_DEBUG_ACCESS: usize = crate::iface::debug::MAX_ACCESS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebugOp {
    Halt,
    Resume,
    Reset,
    /// Reset and stay halted at the reset vector.
    ResetHalt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmulatorOp {
    /// Warm reset: the CPU and devices restart, memory is kept (QMP `system_reset`, Renode
    /// `machine Reset`).
    Reset,
    /// The emulator is stopped and started again: memory starts from zero.
    PowerCycle,
}

impl Step {
    /// The steps nested in this one (a `chunks` loop), for walks over a recipe.
    pub fn nested(&self) -> &[Step] {
        match self {
            Step::Chunks { steps, .. } => steps,
            _ => &[],
        }
    }

    /// This step and every step nested in it, depth first.
    pub fn walk(&self) -> Vec<&Step> {
        let mut out = vec![self];
        for s in self.nested() {
            out.extend(s.walk());
        }
        out
    }

    /// The templates this step renders (not those of nested steps).
    pub fn templates(&self) -> Vec<&Template> {
        match self {
            Step::Send { text, .. } => vec![text],
            Step::Call { args, .. } => args.values().collect(),
            Step::Publish { topic, body, .. } => {
                let mut v = vec![topic];
                if let Body::Text(ts) = body {
                    v.extend(ts.iter());
                }
                v
            }
            Step::Await { filter, .. } => vec![filter],
            Step::Http {
                url, auth, form, ..
            } => {
                let mut v = vec![url];
                if let Some((u, p)) = auth {
                    v.push(u);
                    v.push(p);
                }
                v.extend(form.iter().map(|(_, t)| t));
                v
            }
            Step::SshAuth { user, password, .. } => vec![user, password],
            Step::ModbusWrite {
                values: Body::Text(ts),
                ..
            } => ts.iter().collect(),
            Step::ReadMemory { address, .. } => vec![address],
            Step::WriteMemory { address, data, .. } => vec![address, data],
            Step::Flash { file, .. } => vec![file],
            _ => Vec::new(),
        }
    }
}

/// How `{chunk}` appears in templates inside a `chunks` loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkEncoding {
    Base64,
    Hex,
    /// Bytes only: usable as `data = "chunk"`, not in text.
    Raw,
}

/// What a publish or a register write carries.
#[derive(Debug, Clone)]
pub enum Body {
    /// Text templates (one for a publish; one per register or coil for a write).
    Text(Vec<Template>),
    /// A data parameter or the current raw chunk, by name.
    Data(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModbusTable {
    Holding,
    Input,
    Coils,
    Discrete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModbusWriteTarget {
    /// Function 0x06 (one value) or 0x10 (several).
    Registers,
    /// Function 0x05.
    Coil,
}

/// One physical or emulated unit.
#[derive(Debug, Clone)]
pub struct Unit {
    pub name: String,
    pub serial: Option<String>,
    pub mac: Option<String>,
    pub firmware: Option<String>,
    /// IP address or host name on the lab's device network.
    pub address: Option<String>,
    pub password: Option<SecretSpec>,
    pub vars: BTreeMap<String, String>,
    /// The file the unit was declared in.
    pub source: PathBuf,
    /// The key of the bench lease this unit is held under (`lease = "bench-3/cam-a"`); see
    /// [`crate::lease`] for which units take one.
    pub lease: Option<String>,
}

/// Where a unit's secret comes from, resolved as far as possible at load time.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSpec {
    /// Known now (a value in the board file or an environment variable).
    Known(String),
    /// Read from the device by running `action` and taking its capture `capture`.
    FromAction { action: String, capture: String },
    /// Read through debug port `on`: text of at most `length` bytes at `address`, up to the
    /// first NUL or erased (0xff) byte.
    FromMemory {
        on: String,
        address: u64,
        length: usize,
    },
}

impl std::fmt::Debug for SecretSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSpec::Known(_) => write!(f, "Known({})", crate::secret::REDACTED),
            SecretSpec::FromAction { action, capture } => {
                write!(f, "FromAction({action}.{capture})")
            }
            SecretSpec::FromMemory {
                on,
                address,
                length,
            } => write!(f, "FromMemory({on}: {length} bytes at {address:#010x})"),
        }
    }
}

/// Default timeout of a step when neither it nor its interface sets one.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest duration a board file may write (timeouts, waits, thresholds): longer ones are
/// typos, and would overflow deadlines at run time.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
