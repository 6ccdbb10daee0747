//! The board file's shape, as serde reads it.
//!
//! A board file describes one device *model* (what every unit shares: interfaces, actions,
//! declarations, how to start an emulated unit) and its *units* (identity and secrets only).
//! A unit file may instead `extends` a model file, so 64 units never mean 64 copies of a recipe.
//! Every table rejects unknown keys; values whose meaning is checked after parsing (regexes,
//! interface names, durations, templates, numbers with limits, paths) keep their byte span so
//! errors point at the value itself (file:line:col and the underlined snippet), not at the
//! table that holds it.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_spanned::Spanned;

/// One board file as written. Either a full model (`[model]` ...) or `extends` plus units.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawBoardFile {
    /// Path (relative to this file) of a model file whose model this file's units belong to.
    pub extends: Option<Spanned<String>>,
    pub model: Option<ModelSection>,
    #[serde(default)]
    pub declarations: Option<Declarations>,
    pub emulator: Option<Spanned<EmulatorSection>>,
    #[serde(default)]
    pub interfaces: BTreeMap<String, Spanned<InterfaceSection>>,
    #[serde(default)]
    pub actions: BTreeMap<String, Spanned<ActionSection>>,
    #[serde(default)]
    pub unit: Vec<Spanned<UnitSection>>,
}

/// What the device model is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// The model designation as the manufacturer declares it, e.g. "SimPlug S1".
    pub name: String,
    pub manufacturer: Option<String>,
    /// Default firmware version of units that do not state their own (`{unit.firmware}`);
    /// nothing compares it with what a unit reports.
    pub firmware: Option<String>,
}

/// How the lab logs in and what the manufacturer claims (the IXIT in machine form).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Declarations {
    /// `unique-per-unit` or `user-defined` (EN 303 645 5.1-1).
    pub password_mechanism: Option<Spanned<PasswordMechanism>>,
    /// The user name the unit's own password belongs to.
    pub login_user: Option<String>,
    /// Minimum length the manufacturer claims for per-unit passwords (default 8).
    pub min_password_length: Option<usize>,
    /// Wrong attempts the brute-force test makes before judging (default 8).
    pub brute_force_attempts: Option<usize>,
    /// Extra delay per attempt that counts as throttling (default "800ms").
    pub throttle_threshold: Option<Spanned<String>>,
    /// Consecutive failures after which the unit locks the account or starts throttling
    /// (the password suite resets the counter with the unit's own password before reaching it).
    pub lockout_after: Option<Spanned<usize>>,
    /// How long a lockout lasts, e.g. "60s". When it is at most 120 s the brute-force test
    /// waits it out and checks the unit accepts its own password again; a longer one is only
    /// used to compute the guess rate.
    pub lockout_window: Option<Spanned<String>>,
    /// Highest achievable guess rate per login surface, in attempts per hour, that still counts
    /// as impracticable brute force (default 360).
    pub max_guess_rate: Option<Spanned<u32>>,
    /// Further public identifiers of the product a password must not be derived from
    /// (e.g. the Wi-Fi SSID printed on the box).
    #[serde(default)]
    pub public_identifiers: Vec<String>,
    /// The update suite's inputs (EN 303 645 5.3): how updates reach the unit and what the lab
    /// holds to make a genuine image.
    pub update: Option<Spanned<UpdateDeclarations>>,
    /// The units run production firmware, as shipped: the debug port is expected disabled
    /// (EN 303 645 5.6-4), which the `debug.port-locked` test checks.
    pub production_firmware: Option<bool>,
    /// Where the manufacturer publishes its disclosure policy, security.txt, support period
    /// and CSAF metadata (EN 303 645 5.2-1, 5.3-13; PSTI Sch.1 paras 2-3).
    pub disclosure: Option<Spanned<DisclosureDeclarations>>,
    /// The unit runs an MQTT broker of its own (a hub, a gateway): the password suite checks
    /// who it lets in (EN 303 645 5.1-1, 5.5-5).
    pub broker: Option<Spanned<BrokerDeclarations>>,
    /// The unit's address on the lab's device network and the ports to scan for login
    /// services nobody declared (TS 103 701 5.1-1-2 a).
    pub network: Option<Spanned<NetworkDeclarations>>,
}

/// `[declarations.broker]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerDeclarations {
    /// `host:port` of the unit's broker (templated), e.g. "{unit.address}:1883".
    pub address: Spanned<String>,
    /// Topics that command the unit (templated): an anonymous client must not publish there.
    #[serde(default)]
    pub command_topics: Vec<Spanned<String>>,
    /// How long an anonymous client listens on `#` (default "3s").
    pub listen: Option<Spanned<String>>,
}

/// `[declarations.network]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NetworkDeclarations {
    /// The one host scanned (templated; default "{unit.address}"): never a range.
    pub address: Option<Spanned<String>>,
    /// Ports scanned (default: the well-known ports of IoT login services).
    pub ports: Option<Spanned<Vec<u16>>>,
    /// Ports of services the manufacturer declares beyond the board's interfaces and URLs
    /// (e.g. a web UI the board has no recipe for).
    #[serde(default)]
    pub services: Vec<Spanned<u16>>,
    /// Per connection attempt (default "1s").
    pub connect_timeout: Option<Spanned<String>>,
    /// How long an open port may take to show a banner (default "2s").
    pub banner_timeout: Option<Spanned<String>>,
}

/// `[declarations.disclosure]`: URLs (templated, so an emulated unit's port can be used).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DisclosureDeclarations {
    /// The vulnerability disclosure policy page.
    pub policy_url: Option<Spanned<String>>,
    /// Origin (`https://host`) whose `/.well-known/security.txt` is checked, or its full URL.
    pub security_txt: Option<Spanned<String>>,
    /// The page publishing the support period.
    pub support_url: Option<Spanned<String>>,
    /// CSAF provider metadata URL (optional provision).
    pub csaf_provider: Option<Spanned<String>>,
    /// Extra CA certificates (PEM paths, templated) trusted for these URLs, e.g. a lab CA.
    #[serde(default)]
    pub ca: Vec<Spanned<String>>,
}

/// `[declarations.update]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateDeclarations {
    /// Action that pushes an image (data parameter `image`); default `push_update`.
    pub action: Option<String>,
    /// Action that reads the running version (capture `version`); default `read_version`.
    pub version_action: Option<String>,
    /// The test signing key the unit trusts (PEM, relative to the board file): lets the lab
    /// sign genuine images of any version.
    pub signing_key: Option<Spanned<String>>,
    /// A genuine, newer image from the manufacturer, when the lab holds no key.
    pub genuine_image: Option<Spanned<String>>,
    /// Payload size of images the harness builds (default 32 KiB).
    pub payload_size: Option<usize>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PasswordMechanism {
    UniquePerUnit,
    UserDefined,
}

/// How to start an emulated unit. A physical unit has no such section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmulatorSection {
    /// `sim` (the project's simulated device), `qemu`, `renode` or `process`.
    pub kind: Spanned<String>,
    /// Program to start; defaults to `hilsec-simdev` for `sim`, `qemu-system-arm` for `qemu`,
    /// `renode` for `renode`.
    pub command: Option<String>,
    /// Arguments, templated with any unit-wide variable (`{unit.*}`, `{model.*}`,
    /// `{board.dir}`, `{broker.*}`, ...) except `{secret.*}` and `{emulator.*}`: every user of
    /// the machine can read a process's arguments (`ps`, /proc/PID/cmdline), and `{emulator.*}`
    /// only exists once the process is ready.
    #[serde(default)]
    pub args: Vec<Spanned<String>>,
    /// Environment variables of the process (templated; secrets allowed: a process's
    /// environment is readable only by its owner).
    #[serde(default)]
    pub env: BTreeMap<String, Spanned<String>>,
    /// Regex matched against the emulator's standard output and standard error; its named
    /// captures become `{emulator.NAME}` variables (e.g. the pseudo-terminal it created).
    /// Optional when `ready_tcp` or `console` says when the unit is up.
    pub ready: Option<Spanned<String>>,
    /// Ready when this `host:port` (templated, e.g. `127.0.0.1:{port.ssh}`) accepts a TCP
    /// connection (the probe connection is closed again).
    pub ready_tcp: Option<Spanned<String>>,
    /// A serial interface over TCP that is connected as soon as the emulator listens, and kept:
    /// the unit is ready when it accepts, and its boot output is in the evidence (QEMU with
    /// `server=on,wait=on` waits for this connection before the CPU starts).
    pub console: Option<Spanned<String>>,
    /// How long to wait until the unit is ready (default "20s").
    pub ready_timeout: Option<Spanned<String>>,
    /// qemu: the machine (`-M`), e.g. "netduinoplus2". With it, hilsec writes the command
    /// line: UART 0 on `{port.serial}`, GDB stub on `{port.gdb}`, QMP on `{port.qmp}`.
    pub machine: Option<Spanned<String>>,
    /// qemu and renode: the firmware image (ELF), templated, e.g. "{board.dir}/fw.elf".
    pub firmware: Option<Spanned<String>>,
    /// renode: the platform description: a Renode path (`@platforms/...`) or a .repl file.
    pub platform: Option<Spanned<String>>,
    /// renode: the UART peripheral wired to `{port.serial}` (default "sysbus.usart1").
    pub uart: Option<Spanned<String>>,
    /// qemu and renode: data placed in the emulated memory at start (per-unit identity,
    /// passwords): QEMU's generic loader, Renode's `sysbus LoadBinary`.
    #[serde(default)]
    pub load: Vec<Spanned<LoadSection>>,
}

/// Bytes placed in an emulated unit's memory when it starts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSection {
    /// Where, e.g. "0x2001f000".
    pub address: Spanned<String>,
    /// Text (templated; may use `{secret.password}`: it goes into a file only the harness's
    /// user can read, never on a command line); a NUL byte is appended.
    pub text: Option<Spanned<String>>,
    /// Or a file's bytes (templated path).
    pub file: Option<Spanned<String>>,
}

/// One connection to the unit. Fields not used by a kind are rejected at validation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceSection {
    /// `serial` (a tty or raw TCP), `mqtt`, `modbus-tcp`, `modbus-rtu` or `http`.
    pub kind: Spanned<String>,
    /// Serial: tty path (templated), e.g. `/dev/ttyUSB0` or `{emulator.console}`.
    pub path: Option<Spanned<String>>,
    /// Serial over raw TCP (ser2net, QEMU `-serial tcp:`, Renode): `host:port` (templated).
    pub tcp: Option<Spanned<String>>,
    /// Serial and modbus-rtu: baud rate (default 115200 for serial, 19200 for modbus-rtu;
    /// ignored by pseudo-terminals and TCP).
    pub baud: Option<Spanned<u32>>,
    /// Default timeout of steps on this interface (default "10s").
    pub timeout: Option<Spanned<String>>,
    /// mqtt: `"embedded"` (the harness's own broker) or `host:port` (templated).
    pub broker: Option<Spanned<String>>,
    /// mqtt: client id (templated; default `hilsec-<unit>`).
    pub client_id: Option<Spanned<String>>,
    /// mqtt: user name and password (templated; may use `{secret.password}`).
    pub username: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
    /// mqtt: 3 (3.1.1, the default); 5 is refused (not supported yet). probe-rs: "swd" or
    /// "jtag".
    pub protocol: Option<Spanned<ProtocolValue>>,
    /// http: an extra trusted CA (PEM path, templated). mqtt over TLS: CA bundle, client
    /// certificate and key (PEM, relative to the file), refused today (not supported yet).
    pub ca: Option<Spanned<String>>,
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    /// modbus-tcp: `host:port` (templated).
    pub address: Option<Spanned<String>>,
    /// modbus: unit (slave) id, default 1.
    pub unit_id: Option<Spanned<u8>>,
    /// gdb: the stub's monitor command that resets the target (`qRcmd`), e.g. "system_reset"
    /// (QEMU), "reset halt" (OpenOCD); without it the `reset` debug step is refused.
    pub reset_command: Option<Spanned<String>>,
    /// gdb: whether the target runs when the harness attaches (default true: it is resumed
    /// after attaching, since stubs halt the target on attach).
    pub running: Option<Spanned<bool>>,

    /// probe-rs: the target chip as probe-rs names it, e.g. "STM32F411RETx".
    pub chip: Option<Spanned<String>>,
    /// probe-rs: which probe, "VID:PID" or "VID:PID:SERIAL" (default: the only one attached).
    pub probe: Option<Spanned<String>>,
    /// probe-rs: SWD/JTAG clock in kHz.
    pub speed_khz: Option<Spanned<u32>>,
    /// probe-rs: hold the reset line while attaching (firmware that disables the debug pins
    /// early, or sleeps).
    pub connect_under_reset: Option<Spanned<bool>>,
    /// probe-rs: the core to debug (default 0).
    pub core: Option<Spanned<usize>>,
    /// Debug ports: whether `flash` steps may write this unit (default false).
    pub allow_flash: Option<Spanned<bool>>,
    /// Debug ports: an address an unlocked unit lets the port read (its flash, say), where
    /// the `debug.port-locked` test tries to read.
    pub lock_test_address: Option<Spanned<String>>,

    /// rtt: the debug interface whose memory carries the RTT channels.
    pub debug: Option<Spanned<String>>,
    /// rtt: the control block's address, when known (e.g. from the firmware's map file).
    pub control_block: Option<Spanned<String>>,
    /// rtt: where to search for the control block: "START..END" or "START+LENGTH".
    pub scan: Option<Spanned<String>>,
    /// rtt: channel numbers (default 0 and 0).
    pub up: Option<Spanned<u32>>,
    pub down: Option<Spanned<u32>>,
    /// rtt: polling interval (default "10ms").
    pub poll: Option<Spanned<String>>,

    /// power: "command", "modbus-coil", "tasmota" or "emulator".
    pub driver: Option<Spanned<String>>,
    /// power, driver "command": shell commands (templated).
    pub on_command: Option<Spanned<String>>,
    pub off_command: Option<Spanned<String>>,
    pub cycle_command: Option<Spanned<String>>,
    /// power, driver "modbus-coil": the relay's coil (with `address` and `unit_id`).
    pub coil: Option<Spanned<u16>>,
    /// power, driver "modbus-coil": coil value that means power on (default true).
    pub on_value: Option<Spanned<bool>>,
    /// power, driver "tasmota": the plug's topic (with `broker`, `username`, `password`).
    pub topic: Option<Spanned<String>>,
    /// power, driver "tasmota": relay number of a multi-relay plug (`POWER<n>`).
    pub relay: Option<Spanned<u8>>,
    /// power: how long a power cycle keeps the unit off (default "2s").
    pub off_time: Option<Spanned<String>>,

    /// telnet, ssh: terminal type announced to the server (default "vt100").
    pub terminal: Option<Spanned<String>>,
    /// ssh: the server's host key fingerprint ("SHA256:...", as `ssh-keygen -l` prints it);
    /// another key is an error. Without it any key is accepted and recorded in the evidence.
    pub host_key: Option<Spanned<String>>,

    /// labgrid: the place to acquire (templated, e.g. `{unit.place}`).
    pub place: Option<Spanned<String>>,
    /// labgrid: the coordinator's `host:port` (templated; default: `LG_COORDINATOR` or
    /// labgrid-client's own default).
    pub coordinator: Option<Spanned<String>>,
    /// labgrid: which of the place's serial ports (its name in the place; templated), when
    /// it has several.
    pub resource: Option<Spanned<String>>,
    /// labgrid: the `labgrid-client` executable (default "labgrid-client" on PATH).
    pub client: Option<Spanned<String>>,
}

/// `protocol` holds an MQTT version (a number) or a debug wire protocol (a name).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum ProtocolValue {
    Number(u8),
    Name(String),
}

/// A named device operation the suites rely on, as a recipe of steps.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSection {
    /// Parameters the caller passes (e.g. `login` takes `user` and `password`).
    #[serde(default)]
    pub params: Vec<String>,
    /// Parameters whose values are secrets and must be redacted wherever they appear.
    #[serde(default)]
    pub secret_params: Vec<Spanned<String>>,
    /// The interface steps use unless they name one (default: the only or first interface).
    pub on: Option<Spanned<String>>,
    pub steps: Vec<Spanned<StepSection>>,
    /// Steps run after `steps` whether the device accepted or refused (not after a link
    /// failure), e.g. logging out of a shell an update command was typed into.
    #[serde(default)]
    pub cleanup: Vec<Spanned<StepSection>>,
}

/// One step. Exactly one verb key (see `steps::VERBS`) must be present.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct StepSection {
    /// Bytes to send (templated). TOML escapes such as `\n` and `\u0003` work.
    pub send: Option<Spanned<String>>,
    /// Regex to wait for; named captures become variables of the action.
    pub expect: Option<Spanned<String>>,
    /// With `expect` (console), `await`, Modbus reads and `get`: a regex that, if it matches
    /// first, means the device refused.
    pub reject: Option<Spanned<String>>,
    /// With `expect` (console), `await`, Modbus reads and `get`: a regex that, if it matches
    /// first, means the device is already done (e.g. a shell right after the user name): the
    /// action's remaining steps are skipped and it counts as accepted.
    pub accept: Option<Spanned<String>>,
    /// Pause, e.g. "500ms".
    pub wait: Option<Spanned<String>>,
    /// Run another action of this board.
    pub call: Option<Spanned<String>>,
    /// With `call`: arguments (templated).
    #[serde(default)]
    pub args: BTreeMap<String, Spanned<String>>,
    /// Drop whatever the interface has received so far (before a `send`).
    pub flush: Option<bool>,
    /// The interface of this step (default: the action's).
    pub on: Option<Spanned<String>>,
    /// Step timeout (default: the interface's).
    pub timeout: Option<Spanned<String>>,

    /// Repeat `steps` over the chunks of a data parameter (e.g. an update image); inside,
    /// `{chunk}`, `{offset}`, `{offset_hi}`, `{offset_lo}`, `{length}`, `{end}`, `{index}`.
    pub chunks: Option<Spanned<String>>,
    /// Chunk size in bytes (default 256).
    pub size: Option<Spanned<usize>>,
    /// How `{chunk}` is rendered in text: `base64`, `hex`, or `raw` (bytes, for `data`).
    pub encoding: Option<Spanned<String>>,
    #[serde(default)]
    pub steps: Vec<Spanned<StepSection>>,

    /// MQTT: publish to this topic (templated) the text `payload` or the bytes `data`.
    pub publish: Option<Spanned<String>>,
    pub payload: Option<Spanned<String>>,
    /// Name of a data parameter, or `chunk` inside a raw `chunks` loop.
    pub data: Option<Spanned<String>>,
    pub qos: Option<Spanned<u8>>,
    pub retain: Option<bool>,
    /// MQTT: wait for a message on a topic matching this filter (templated) whose payload
    /// matches `expect` (or `reject`).
    #[serde(rename = "await")]
    pub await_topic: Option<Spanned<String>>,

    /// Modbus reads: start address and `count` (default 1); the values, space-separated,
    /// are matched against `expect`/`reject` (polling until the timeout) and captured.
    pub read_holding: Option<u16>,
    pub read_input: Option<u16>,
    pub read_coils: Option<u16>,
    pub read_discrete: Option<u16>,
    pub count: Option<Spanned<u16>>,
    /// Modbus writes: start address; `value` (one), `values` (several) or `data` (bytes,
    /// big-endian per register).
    pub write_register: Option<u16>,
    pub write_registers: Option<u16>,
    pub write_coil: Option<u16>,
    pub value: Option<Spanned<String>>,
    #[serde(default)]
    pub values: Vec<Spanned<String>>,
    /// Modbus Read Device Identification (0x2B/0x0E): `basic` or `regular`.
    pub identify: Option<Spanned<String>>,
    /// Name under which a read's values are captured (also `NAME.0`, `NAME.1`, ...).
    pub capture: Option<String>,

    /// HTTP: GET this URL (templated) on an `http` interface; `expect`/`reject` are matched
    /// against `HTTP <status>` followed by a newline and the body.
    pub get: Option<Spanned<String>>,
    /// Debug port: read `length` bytes at this address (templated, e.g. "0x20010000"); the
    /// bytes as hex are matched against `expect`/`reject` and captured as `capture`.
    pub read_memory: Option<Spanned<String>>,
    pub length: Option<Spanned<usize>>,
    /// Debug port: write `value` (hex bytes, templated) at this address.
    pub write_memory: Option<Spanned<String>>,
    /// Debug port: `halt`, `resume`, `reset` or `reset_halt`.
    pub debug: Option<Spanned<String>>,
    /// Debug port: write this firmware image (templated path) into the unit; the interface
    /// must say `allow_flash = true`. `format` is "elf", "hex" or "bin" (default: from the
    /// file name's extension); a "bin" image needs `base`, the address it goes to.
    pub flash: Option<Spanned<String>>,
    pub format: Option<Spanned<String>>,
    pub base: Option<Spanned<String>>,
    /// With `flash`: read back and compare (default true).
    pub verify: Option<Spanned<bool>>,
    /// Power control: `on`, `off` or `cycle`, on a `power` interface (or, without one, the
    /// emulated unit's own power).
    pub power: Option<Spanned<String>>,
    /// The emulated unit: `reset` (warm: QMP `system_reset`, Renode `machine Reset`) or
    /// `power_cycle` (the emulator is stopped and started again).
    pub emulator: Option<Spanned<String>>,
    /// HTTP basic auth user and password (templated) for `get`.
    pub user: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
    /// HTTP: POST to this URL (templated) on an `http` interface, `form` as the body.
    pub post: Option<Spanned<String>>,
    /// With `post`: the form fields (urlencoded), each value templated.
    pub form: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    /// With `get`/`post` and `user`/`password`: "basic" (default) or "digest".
    pub auth: Option<Spanned<String>>,
    /// SSH: log in on an `ssh` interface with "password" or "keyboard-interactive"
    /// authentication as `user` with `password`.
    pub ssh_auth: Option<Spanned<String>>,
}

/// One unit: identity and secrets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitSection {
    /// Unique name of the unit in the lab, used for result and evidence paths.
    pub name: Spanned<String>,
    pub serial: Option<String>,
    pub mac: Option<String>,
    pub firmware: Option<String>,
    /// The unit's IP address or host name on the lab's device network (`{unit.address}`).
    pub address: Option<Spanned<String>>,
    /// The unit's own password (from its label, an environment variable, or an action).
    pub password: Option<Spanned<SecretSource>>,
    /// Free variables for templates, as `{unit.NAME}` (e.g. which tty this unit is on).
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// The bench lease key the unit is held under while a run uses it (e.g. "bench-3/cam-a").
    pub lease: Option<Spanned<String>>,
}

/// Where the lab gets a secret from.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// The value itself (fine for a lab's private board files, not for shared ones).
    pub value: Option<String>,
    /// An environment variable holding it.
    pub env: Option<Spanned<String>>,
    /// An action whose capture named `capture` yields it.
    pub action: Option<Spanned<String>>,
    pub capture: Option<String>,
    /// Read through a debug port (`on`): at most `length` bytes of text at this address
    /// (an OTP or configuration region), up to the first NUL or erased (0xff) byte.
    pub memory: Option<Spanned<String>>,
    pub length: Option<Spanned<usize>>,
    pub on: Option<Spanned<String>>,
}
