//! Renode backend: the script that builds an emulated unit, the command line that starts
//! Renode headless, and a client of Renode's monitor socket.
//!
//! Why this exists: QEMU is driven through its own machine-readable protocol (QMP), but Renode
//! offers only its interactive monitor, a shell meant for people. Started with
//! `--disable-xwt --port N` it serves that shell on a TCP port as a telnet-style terminal
//! (Renode `SocketServerProvider`/`SocketIOSource`, AntShell `NavigableTerminalEmulator`):
//! telnet negotiation first, then everything the shell has written so far (banner, prompt,
//! the echo of the script it is running), colour codes around prompts and errors, and an echo
//! of every character typed. Resetting a unit between tests, pausing it and quitting Renode
//! all go through that shell, so [`Monitor`] turns it into request/response: it sends one
//! line, finds its echo, reads until the next prompt, strips telnet and ANSI sequences, and
//! reports error output (written in red by Renode) as [`MonitorError::Command`]. Every
//! exchange has a timeout and a bound on what it buffers, so a hung or chatty Renode fails a
//! test with a message instead of hanging the harness.
//!
//! Facts about Renode 1.16.1 this module relies on (source paths are in Renode's repositories):
//! - the monitor port sends `IAC DO BINARY, IAC DO NAWS, IAC WILL ECHO, IAC WILL SGA,
//!   IAC WONT LINEMODE` on accept and doubles 0xFF in data
//!   (renode-infrastructure `src/Emulator/Main/Utilities/SocketServerProvider.cs`); it
//!   ignores the client's replies, so the client sends none (and without a NAWS answer the
//!   terminal width stays 0, which keeps AntShell from inserting line-wrap sequences);
//! - output written before a client connects is queued and delivered on connect (same file);
//! - the prompt is `(monitor) ` in red (`ESC[91m`) or `(<machine>) ` in dark yellow
//!   (`ESC[33m`), each followed by `ESC[0m` (renode-infrastructure
//!   `src/Emulator/Extensions/UserInterface/ShellProvider.cs`, `src/UI/CommandLineInterface.cs`,
//!   AntShell `AntShell/Prompt.cs`, `AntShell/Terminal/NavigableTerminalEmulator.cs`);
//! - a typed line is echoed character by character and Enter (`\r` or `\n`; so the client
//!   sends `\n` alone, `\r\n` would be two Enters) answers `\n\r` before the command runs
//!   (AntShell `AntShell/CommandLine.cs`);
//! - errors are written with `WriteError`, in red, ending in `\r\n` (AntShell
//!   `AntShell/CommandInteraction.cs`; renode-infrastructure
//!   `src/Emulator/Extensions/UserInterface/Monitor.cs`: "No such command or device: ...",
//!   "There was an error executing command '...': ");
//! - `quit` prints "Renode is quitting", stops the shell and closes the socket
//!   (`src/Emulator/Extensions/UserInterface/Commands/QuitCommand.cs`).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The STM32F4 Discovery board shipped with Renode (`platforms/boards/`); it includes
/// `platforms/cpus/stm32f4.repl`, where `usart1` is `UART.STM32_UART @ sysbus <0x40011000,
/// +0x100>` and SRAM is 0x20000000..0x20040000.
pub const STM32F4_DISCOVERY: &str = "platforms/boards/stm32f4_discovery-kit.repl";
/// The UART of [`STM32F4_DISCOVERY`] at 0x40011000.
pub const DEFAULT_UART: &str = "sysbus.usart1";
/// Name of the socket terminal the UART is connected to, in Renode's emulation.
pub const UART_TERMINAL: &str = "uart";
/// Default bound on what one monitor exchange may buffer.
pub const DEFAULT_MAX_BUFFER: usize = 64 * 1024;

/// Where the platform description comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Platform {
    /// A description shipped with Renode, relative to its installation, e.g.
    /// [`STM32F4_DISCOVERY`]. Written as `@platforms/...`.
    Builtin(String),
    /// The user's own `.repl` file (made absolute: Renode changes its working directory to
    /// its installation directory).
    File(PathBuf),
}

impl Platform {
    /// A board file's `platform`: `@platforms/...` is Renode's own, anything else a file.
    pub fn parse(s: &str) -> Platform {
        match s.strip_prefix('@') {
            Some(rest) => Platform::Builtin(rest.to_string()),
            None => Platform::File(PathBuf::from(s)),
        }
    }
}

/// A file whose bytes are placed in memory at `address` (`sysbus LoadBinary`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryLoad {
    pub path: PathBuf,
    pub address: u64,
}

/// Everything the Renode script and command line are written from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenodeSetup {
    /// Machine name (`mach create "NAME"`); also the monitor prompt `(NAME) `.
    /// Letters, digits, `_`, `-` and `.`.
    pub machine: String,
    pub platform: Platform,
    /// Firmware ELF (`sysbus LoadELF`).
    pub firmware: PathBuf,
    /// Per-unit data placed in memory after the firmware.
    pub binaries: Vec<BinaryLoad>,
    /// UART peripheral wired to the TCP port, e.g. [`DEFAULT_UART`].
    pub uart: String,
    /// TCP port of the UART (raw bytes, no telnet).
    pub uart_port: u16,
    /// GDB server port, if any.
    pub gdb_port: Option<u16>,
    /// TCP port of the monitor.
    pub monitor_port: u16,
    /// Load the firmware and binaries again on every `machine Reset` (Renode's `reset` macro,
    /// as its own scripts do), so a reset returns the unit to its initial memory. When false
    /// they are loaded once and a reset keeps whatever the firmware wrote to memory.
    pub reload_on_reset: bool,
    /// Pass `--hide-log` (Renode's log, including UART lines, is otherwise on its stdout).
    pub hide_log: bool,
}

impl RenodeSetup {
    /// A setup with [`DEFAULT_UART`], no GDB server and no binaries, reloading on reset.
    pub fn new(
        machine: impl Into<String>,
        platform: Platform,
        firmware: impl Into<PathBuf>,
        uart_port: u16,
        monitor_port: u16,
    ) -> RenodeSetup {
        RenodeSetup {
            machine: machine.into(),
            platform,
            firmware: firmware.into(),
            binaries: Vec::new(),
            uart: DEFAULT_UART.to_string(),
            uart_port,
            gdb_port: None,
            monitor_port,
            reload_on_reset: true,
            hide_log: false,
        }
    }
}

/// A setup that cannot be written as a Renode script.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SetupError {
    #[error("Renode machine name {0:?}: use 1 to 64 letters, digits, `_`, `-` or `.`")]
    MachineName(String),
    #[error("Renode peripheral name {0:?}: use letters, digits, `_`, `-` and `.` (e.g. \"sysbus.usart1\")")]
    Peripheral(String),
    #[error("path {path:?} cannot be written in a Renode script: {reason}")]
    Path { path: String, reason: String },
}

/// A literal Renode's monitor reads as one token (`[\w.\-?][\w.\-?:]*`), restricted to ASCII
/// letters, digits, `_`, `-` and `.`.
pub fn is_monitor_literal(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn check_machine(name: &str) -> Result<(), SetupError> {
    if is_monitor_literal(name) && name.len() <= 64 {
        Ok(())
    } else {
        Err(SetupError::MachineName(name.to_string()))
    }
}

fn check_peripheral(name: &str) -> Result<(), SetupError> {
    if is_monitor_literal(name) {
        Ok(())
    } else {
        Err(SetupError::Peripheral(name.to_string()))
    }
}

/// `@path` as Renode's monitor reads it: the tokenizer takes `@` followed by non-blank
/// characters other than `;`, where `\ ` stands for a space (renode-infrastructure
/// `src/Emulator/Extensions/UserInterface/Tokenizer/Tokenizer.cs` and `PathToken.cs`).
/// Other whitespace, `;` and control characters cannot be written; relative paths are made
/// absolute (Renode runs in its installation directory).
pub fn monitor_path(path: &Path) -> Result<String, SetupError> {
    let bad = |reason: &str| SetupError::Path {
        path: path.display().to_string(),
        reason: reason.to_string(),
    };
    let abs = std::path::absolute(path).map_err(|e| bad(&e.to_string()))?;
    let text = abs.to_str().ok_or_else(|| bad("it is not valid UTF-8"))?;
    relative_monitor_path(text).map_err(|reason| SetupError::Path {
        path: path.display().to_string(),
        reason,
    })
}

fn relative_monitor_path(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("it is empty".into());
    }
    let mut out = String::with_capacity(text.len() + 1);
    out.push('@');
    for c in text.chars() {
        match c {
            ';' => return Err("Renode's monitor ends a path at `;`".into()),
            ' ' => out.push_str("\\ "),
            c if c.is_control() => return Err("it contains a control character".into()),
            c if c.is_whitespace() => return Err("it contains whitespace other than spaces".into()),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn platform_path(p: &Platform) -> Result<String, SetupError> {
    match p {
        Platform::Builtin(rel) => relative_monitor_path(rel).map_err(|reason| SetupError::Path {
            path: rel.clone(),
            reason,
        }),
        Platform::File(path) => monitor_path(path),
    }
}

/// The `.resc` script that builds the unit: machine, platform, firmware and per-unit data,
/// the UART on a raw TCP port, the optional GDB server, then `start`.
pub fn script(setup: &RenodeSetup) -> Result<String, SetupError> {
    check_machine(&setup.machine)?;
    check_peripheral(&setup.uart)?;
    let platform = platform_path(&setup.platform)?;
    let firmware = monitor_path(&setup.firmware)?;
    let mut loads = vec![format!("sysbus LoadELF {firmware}")];
    for b in &setup.binaries {
        loads.push(format!(
            "sysbus LoadBinary {} 0x{:x}",
            monitor_path(&b.path)?,
            b.address
        ));
    }

    let mut s = String::new();
    let _ = writeln!(s, "# Written by hilsec for unit {}.", setup.machine);
    let _ = writeln!(s, "mach create \"{}\"", setup.machine);
    let _ = writeln!(s, "machine LoadPlatformDescription {platform}");
    if setup.reload_on_reset {
        // Renode runs the machine's `reset` macro on every `machine Reset` (Monitor.cs
        // ResetMachine), with the machine paused, as LoadELF requires.
        let _ = writeln!(s, "macro reset");
        let _ = writeln!(s, "\"\"\"");
        for l in &loads {
            let _ = writeln!(s, "    {l}");
        }
        let _ = writeln!(s, "\"\"\"");
        let _ = writeln!(s, "runMacro $reset");
    } else {
        for l in &loads {
            let _ = writeln!(s, "{l}");
        }
    }
    // CreateServerSocketTerminal(int port, string name, bool telnetMode = true, ...): false
    // means raw bytes, no telnet negotiation. Output before a client connects is queued.
    let _ = writeln!(
        s,
        "emulation CreateServerSocketTerminal {} \"{UART_TERMINAL}\" false",
        setup.uart_port
    );
    let _ = writeln!(s, "connector Connect {} {UART_TERMINAL}", setup.uart);
    if let Some(port) = setup.gdb_port {
        // StartGdbServer(int port, bool autostartEmulation = true, ...): with true a GDB
        // connection would start a paused emulation; the script starts it itself.
        let _ = writeln!(s, "machine StartGdbServer {port} false");
    }
    let _ = writeln!(s, "start");
    Ok(s)
}

/// Arguments for `renode`: no GUI (`--disable-xwt`, which also hides the monitor window),
/// the monitor on TCP `monitor_port` (`--port`), and the script included with `-e` (the
/// positional script argument is not escaped by Renode, so a path with spaces would break).
/// Options from renode-infrastructure `src/UI/Options.cs`.
pub fn command_line(setup: &RenodeSetup, script_path: &Path) -> Result<Vec<String>, SetupError> {
    let script = monitor_path(script_path)?;
    let mut args = vec![
        "--disable-xwt".to_string(),
        "--port".to_string(),
        setup.monitor_port.to_string(),
    ];
    if setup.hide_log {
        args.push("--hide-log".to_string());
    }
    args.push("-e".to_string());
    args.push(format!("include {script}"));
    Ok(args)
}

/// What went wrong talking to Renode's monitor.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("cannot connect to Renode's monitor at {addr} within {waited:?}: {detail}")]
    Connect {
        addr: SocketAddr,
        waited: Duration,
        detail: String,
    },
    #[error("Renode's monitor did not answer `{command}` with a prompt within {waited:?}; last received: {received:?}")]
    Timeout {
        command: String,
        waited: Duration,
        received: String,
    },
    #[error("Renode's monitor sent more than {limit} bytes for `{command}` without a prompt; last received: {received:?}")]
    Overflow {
        command: String,
        limit: usize,
        received: String,
    },
    #[error(
        "Renode's monitor closed the connection during `{command}`; last received: {received:?}"
    )]
    Closed { command: String, received: String },
    #[error("Renode's monitor reported an error for `{command}`: {message}")]
    Command {
        command: String,
        message: String,
        output: String,
    },
    #[error(
        "Renode's monitor did not close the connection after `quit`; it answered: {received:?}"
    )]
    NotClosed { received: String },
    #[error("cannot send {command:?} to Renode's monitor: {reason}")]
    InvalidCommand { command: String, reason: String },
    #[error("Renode's monitor connection failed during `{command}`: {source}")]
    Io {
        command: String,
        #[source]
        source: std::io::Error,
    },
}

const CONNECT_LABEL: &str = "<connect>";
/// Quiet time after which `connect` asks for a prompt with an empty line.
const NUDGE_AFTER: Duration = Duration::from_millis(500);
const TAIL_CHARS: usize = 300;

/// Telnet decoding state kept across reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Telnet {
    Data,
    Iac,
    Option,
    Sub,
    SubIac,
}

const IAC: u8 = 255;
const SB: u8 = 250;
const SE: u8 = 240;

/// A connected client of Renode's monitor.
pub struct Monitor {
    stream: TcpStream,
    telnet: Telnet,
    /// Decoded bytes not yet consumed.
    pending: Vec<u8>,
    /// Text received outside any response (banner, script echo), bounded.
    unsolicited: String,
    max_buffer: usize,
    prompt: Option<String>,
}

/// Bytes with their foreground colour (SGR number), escape sequences removed.
struct Styled {
    chars: Vec<(u8, Option<u16>)>,
    /// Colour in effect after the last byte.
    colour_at_end: Option<u16>,
    /// The bytes end inside an escape sequence.
    partial_escape: bool,
    /// Any escape sequence was seen (Renode without `--plain`).
    any_escape: bool,
}

fn styled(bytes: &[u8]) -> Styled {
    let mut chars = Vec::with_capacity(bytes.len());
    let mut colour: Option<u16> = None;
    let mut any_escape = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != 0x1b {
            chars.push((b, colour));
            i += 1;
            continue;
        }
        any_escape = true;
        let Some(&next) = bytes.get(i + 1) else {
            return Styled {
                chars,
                colour_at_end: colour,
                partial_escape: true,
                any_escape,
            };
        };
        if next != b'[' {
            // Two-byte escape (ESC 7, ESC c, ...).
            i += 2;
            continue;
        }
        let Some(rel) = bytes[i + 2..]
            .iter()
            .position(|c| (0x40..=0x7e).contains(c))
        else {
            return Styled {
                chars,
                colour_at_end: colour,
                partial_escape: true,
                any_escape,
            };
        };
        let end = i + 2 + rel;
        if bytes[end] == b'm' {
            let params = String::from_utf8_lossy(&bytes[i + 2..end]);
            for p in params.split(';') {
                match p.parse::<u16>() {
                    Err(_) if p.is_empty() => colour = None,
                    Ok(0) | Ok(39) => colour = None,
                    Ok(n @ (30..=37 | 90..=97)) => colour = Some(n),
                    _ => {}
                }
            }
        }
        i = end + 1;
    }
    Styled {
        chars,
        colour_at_end: colour,
        partial_escape: false,
        any_escape,
    }
}

/// Red (ConsoleColor.Red): errors and the `(monitor) ` prompt.
const RED: u16 = 91;
/// Dark yellow (ConsoleColor.DarkYellow): the `(machine) ` prompt.
const DARK_YELLOW: u16 = 33;

/// Where a complete prompt starts, if `s` ends with one.
fn prompt_start(s: &Styled) -> Option<usize> {
    if s.partial_escape || s.colour_at_end.is_some() {
        return None;
    }
    let c = &s.chars;
    let n = c.len();
    if n < 4 || c[n - 1].0 != b' ' || c[n - 2].0 != b')' {
        return None;
    }
    let open = c[..n - 2].iter().rposition(|&(b, _)| b == b'(')?;
    if open + 1 == n - 2 {
        return None;
    }
    let name_ok = c[open + 1..n - 2]
        .iter()
        .all(|&(b, _)| b.is_ascii_graphic() && b != b'(' && b != b')');
    let line_start = open == 0 || matches!(c[open - 1].0, b'\r' | b'\n');
    let colour = c[open].1;
    let uniform = c[open..].iter().all(|&(_, k)| k == colour);
    let colour_ok = match colour {
        None => !s.any_escape,
        Some(k) => k == RED || k == DARK_YELLOW,
    };
    (name_ok && line_start && uniform && colour_ok).then_some(open)
}

fn text_of(chars: &[(u8, Option<u16>)]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .map(|&(b, _)| b)
        .filter(|&b| b != b'\r')
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn tail(text: &str) -> String {
    let n = text.chars().count();
    if n <= TAIL_CHARS {
        text.to_string()
    } else {
        let skip = n - TAIL_CHARS;
        format!("...{}", text.chars().skip(skip).collect::<String>())
    }
}

/// What Renode writes in plain mode (`--plain`, no colours) at the start of an error line.
const PLAIN_ERROR_PREFIXES: &[&str] = &[
    "There was an error executing command",
    "No such command or device:",
    "Could not tokenize here:",
    "Errors during compilation or loading:",
    "Could not find file",
    "No such variable:",
];

/// Cheap test before parsing everything received: a prompt ends with `) ` and, unless
/// Renode runs with `--plain`, the colour reset `ESC[0m`.
fn may_end_with_prompt(p: &[u8]) -> bool {
    p.ends_with(b"\x1b[0m") || p.ends_with(b") ")
}

fn find_subslice(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn is_closed(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | NotConnected
    )
}

impl Monitor {
    /// Connects to the monitor at `addr`, retrying while nothing listens yet (Renode opens
    /// the port a few seconds after it starts), and reads what it sends first (telnet
    /// negotiation, the banner) up to the first prompt, all within `timeout`.
    pub async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Monitor, MonitorError> {
        let started = Instant::now();
        let deadline = started + timeout;
        let stream = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let attempt = tokio::time::timeout(left, TcpStream::connect(addr)).await;
            match attempt {
                Ok(Ok(s)) => break s,
                Ok(Err(e)) => {
                    if Instant::now() + Duration::from_millis(100) >= deadline {
                        return Err(MonitorError::Connect {
                            addr,
                            waited: started.elapsed(),
                            detail: e.to_string(),
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(_) => {
                    return Err(MonitorError::Connect {
                        addr,
                        waited: started.elapsed(),
                        detail: "connection attempt timed out".into(),
                    })
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let mut m = Monitor {
            stream,
            telnet: Telnet::Data,
            pending: Vec::new(),
            unsolicited: String::new(),
            max_buffer: DEFAULT_MAX_BUFFER,
            prompt: None,
        };
        // A first connection gets the banner and prompt Renode queued; a later one gets
        // nothing after the negotiation (the shell is idle at its prompt). If nothing more
        // comes for a moment, an empty line (Enter) makes the shell print its prompt again.
        let mut nudged = false;
        loop {
            if may_end_with_prompt(&m.pending) {
                let s = styled(&m.pending);
                if let Some(open) = prompt_start(&s) {
                    m.prompt = Some(text_of(&s.chars[open..]));
                    let greeting = text_of(&s.chars[..open]);
                    m.note_unsolicited(&greeting);
                    m.pending.clear();
                    return Ok(m);
                }
            }
            let quiet = Instant::now() + NUDGE_AFTER;
            let until = if nudged {
                deadline
            } else {
                quiet.min(deadline)
            };
            match m.read_more(CONNECT_LABEL, until, started).await {
                Ok(()) => {}
                Err(MonitorError::Timeout { .. }) if !nudged && until < deadline => {
                    nudged = true;
                    m.send_line("", CONNECT_LABEL, started, deadline).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Bounds what one exchange may buffer (default [`DEFAULT_MAX_BUFFER`]).
    pub fn set_max_buffer(&mut self, bytes: usize) {
        self.max_buffer = bytes.max(1024);
    }

    /// The last prompt seen, e.g. `(monitor) ` or `(unit-1) `.
    pub fn prompt(&self) -> Option<&str> {
        self.prompt.as_deref()
    }

    /// Text received outside command responses (the banner, the echo and output of the
    /// startup script), escape sequences removed; cleared by this call.
    pub fn take_unsolicited(&mut self) -> String {
        std::mem::take(&mut self.unsolicited)
    }

    fn note_unsolicited(&mut self, text: &str) {
        self.unsolicited.push_str(text);
        if self.unsolicited.len() > self.max_buffer {
            let cut = self.unsolicited.len() - self.max_buffer;
            let cut = (cut..self.unsolicited.len())
                .find(|&i| self.unsolicited.is_char_boundary(i))
                .unwrap_or(self.unsolicited.len());
            self.unsolicited.drain(..cut);
        }
    }

    fn received_tail(&self) -> String {
        tail(&text_of(&styled(&self.pending).chars))
    }

    /// Reads once (until `deadline`), decoding telnet into `pending`.
    async fn read_more(
        &mut self,
        command: &str,
        deadline: Instant,
        started: Instant,
    ) -> Result<(), MonitorError> {
        let mut buf = [0u8; 4096];
        let left = deadline.saturating_duration_since(Instant::now());
        let n = match tokio::time::timeout(left, self.stream.read(&mut buf)).await {
            Err(_) => {
                return Err(MonitorError::Timeout {
                    command: command.to_string(),
                    waited: started.elapsed(),
                    received: self.received_tail(),
                })
            }
            Ok(Err(e)) if is_closed(&e) => 0,
            Ok(Err(e)) => {
                return Err(MonitorError::Io {
                    command: command.to_string(),
                    source: e,
                })
            }
            Ok(Ok(n)) => n,
        };
        if n == 0 {
            return Err(MonitorError::Closed {
                command: command.to_string(),
                received: self.received_tail(),
            });
        }
        self.decode(&buf[..n]);
        if self.pending.len() > self.max_buffer {
            let received = self.received_tail();
            // Dropped, so that a later command can still find its own answer.
            self.pending.clear();
            return Err(MonitorError::Overflow {
                command: command.to_string(),
                limit: self.max_buffer,
                received,
            });
        }
        Ok(())
    }

    /// Removes telnet commands (RFC 854): IAC IAC is a data 0xFF, IAC WILL/WONT/DO/DONT
    /// take one option byte, IAC SB ... IAC SE is dropped, other IAC commands are 2 bytes.
    fn decode(&mut self, input: &[u8]) {
        for &b in input {
            self.telnet = match (self.telnet, b) {
                (Telnet::Data, IAC) => Telnet::Iac,
                (Telnet::Data, _) => {
                    self.pending.push(b);
                    Telnet::Data
                }
                (Telnet::Iac, IAC) => {
                    self.pending.push(IAC);
                    Telnet::Data
                }
                (Telnet::Iac, 251..=254) => Telnet::Option,
                (Telnet::Iac, SB) => Telnet::Sub,
                (Telnet::Iac, _) => Telnet::Data,
                (Telnet::Option, _) => Telnet::Data,
                (Telnet::Sub, IAC) => Telnet::SubIac,
                (Telnet::Sub, _) => Telnet::Sub,
                (Telnet::SubIac, SE) => Telnet::Data,
                (Telnet::SubIac, _) => Telnet::Sub,
            };
        }
    }

    async fn send(
        &mut self,
        command: &str,
        started: Instant,
        deadline: Instant,
    ) -> Result<(), MonitorError> {
        self.send_line(command, command, started, deadline).await
    }

    /// Writes `text` and a `\n` (Enter), naming `label` in errors.
    async fn send_line(
        &mut self,
        text: &str,
        label: &str,
        started: Instant,
        deadline: Instant,
    ) -> Result<(), MonitorError> {
        let command = label;
        let mut line = Vec::with_capacity(text.len() + 1);
        line.extend_from_slice(text.as_bytes());
        line.push(b'\n');
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.stream.write_all(&line)).await {
            Err(_) => Err(MonitorError::Timeout {
                command: command.to_string(),
                waited: started.elapsed(),
                received: self.received_tail(),
            }),
            Ok(Err(e)) if is_closed(&e) => Err(MonitorError::Closed {
                command: command.to_string(),
                received: self.received_tail(),
            }),
            Ok(Err(e)) => Err(MonitorError::Io {
                command: command.to_string(),
                source: e,
            }),
            Ok(Ok(())) => Ok(()),
        }
    }

    fn check_command(command: &str) -> Result<(), MonitorError> {
        let bad = |reason: &str| {
            Err(MonitorError::InvalidCommand {
                command: command.to_string(),
                reason: reason.to_string(),
            })
        };
        if command.trim().is_empty() {
            return bad("it is empty");
        }
        if command.chars().any(|c| c.is_control()) {
            // \r and \n end the line; tab completes; ESC and ^C.. are editing keys.
            return bad("it contains a control character (newline, tab, escape, ...)");
        }
        if command.trim_start() != command {
            return bad("it starts with whitespace");
        }
        if matches!(command.split_whitespace().next(), Some("quit" | "q")) {
            return bad("use Monitor::quit, which expects the connection to close");
        }
        Ok(())
    }

    /// Sends `command` and returns its output (escape sequences and `\r` removed, without
    /// the echo, the prompt and trailing newlines). Output written in red by Renode (its
    /// errors) is [`MonitorError::Command`].
    pub async fn command(
        &mut self,
        command: &str,
        timeout: Duration,
    ) -> Result<String, MonitorError> {
        Self::check_command(command)?;
        let started = Instant::now();
        let deadline = started + timeout;
        self.send(command, started, deadline).await?;
        let mut echo = command.as_bytes().to_vec();
        echo.extend_from_slice(b"\n\r");
        // The echo of this line, after anything still on its way from before.
        let mut searched: usize = 0;
        loop {
            let from = searched.saturating_sub(echo.len());
            if let Some(rel) = find_subslice(&self.pending[from..], &echo) {
                let at = from + rel;
                let before: Vec<u8> = self.pending.drain(..at + echo.len()).collect();
                let stale = text_of(&styled(&before[..at]).chars);
                self.note_unsolicited(&stale);
                break;
            }
            searched = self.pending.len();
            self.read_more(command, deadline, started).await?;
        }
        // Its output, up to the next prompt.
        loop {
            if !may_end_with_prompt(&self.pending) {
                self.read_more(command, deadline, started).await?;
                continue;
            }
            let s = styled(&self.pending);
            if let Some(open) = prompt_start(&s) {
                let body = &s.chars[..open];
                self.prompt = Some(text_of(&s.chars[open..]));
                let output = text_of(body).trim_end_matches('\n').to_string();
                let red: Vec<(u8, Option<u16>)> = body
                    .iter()
                    .copied()
                    .filter(|&(_, k)| k == Some(RED))
                    .collect();
                let mut message = text_of(&red).trim().to_string();
                if message.is_empty() && !s.any_escape {
                    message = output
                        .lines()
                        .filter(|l| PLAIN_ERROR_PREFIXES.iter().any(|p| l.starts_with(p)))
                        .collect::<Vec<_>>()
                        .join("\n");
                }
                self.pending.clear();
                if !message.is_empty() {
                    return Err(MonitorError::Command {
                        command: command.to_string(),
                        message: message.replace('\n', " / "),
                        output,
                    });
                }
                return Ok(output);
            }
            self.read_more(command, deadline, started).await?;
        }
    }

    /// `machine Reset`: resets the current machine (and runs its `reset` macro).
    pub async fn reset(&mut self, timeout: Duration) -> Result<(), MonitorError> {
        self.command("machine Reset", timeout).await.map(|_| ())
    }

    /// `pause`: pauses the whole emulation.
    pub async fn pause(&mut self, timeout: Duration) -> Result<(), MonitorError> {
        self.command("pause", timeout).await.map(|_| ())
    }

    /// `start`: starts (resumes) the whole emulation.
    pub async fn start(&mut self, timeout: Duration) -> Result<(), MonitorError> {
        self.command("start", timeout).await.map(|_| ())
    }

    /// `mach set "NAME"`: makes `name` the current machine (the one `machine` refers to).
    pub async fn select_machine(
        &mut self,
        name: &str,
        timeout: Duration,
    ) -> Result<(), MonitorError> {
        check_machine(name).map_err(|e| MonitorError::InvalidCommand {
            command: format!("mach set \"{name}\""),
            reason: e.to_string(),
        })?;
        self.command(&format!("mach set \"{name}\""), timeout)
            .await
            .map(|_| ())
    }

    /// `quit`: Renode stops its monitor, closes the socket and exits. Success is the socket
    /// closing within `timeout`; a prompt instead is [`MonitorError::NotClosed`].
    pub async fn quit(mut self, timeout: Duration) -> Result<(), MonitorError> {
        let started = Instant::now();
        let deadline = started + timeout;
        match self.send("quit", started, deadline).await {
            Ok(()) => {}
            Err(MonitorError::Closed { .. }) => return Ok(()),
            Err(e) => return Err(e),
        }
        let echo = b"quit\n\r";
        loop {
            if !may_end_with_prompt(&self.pending) {
                // Nothing to check yet.
            } else if let Some(at) = find_subslice(&self.pending, echo) {
                let rest = &self.pending[at + echo.len()..];
                if prompt_start(&styled(rest)).is_some() {
                    return Err(MonitorError::NotClosed {
                        received: tail(&text_of(&styled(rest).chars)),
                    });
                }
            }
            match self.read_more("quit", deadline, started).await {
                Ok(()) => {}
                Err(MonitorError::Closed { .. }) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn styled_tracks_colour_and_partial_escapes() {
        let s = styled(b"a\x1b[91mb\x1b[0mc");
        assert_eq!(s.chars, vec![(b'a', None), (b'b', Some(91)), (b'c', None)]);
        assert!(s.any_escape && !s.partial_escape);
        assert!(styled(b"x\x1b[9").partial_escape);
        assert!(styled(b"x\x1b").partial_escape);
    }

    #[test]
    fn prompt_needs_its_reset_and_a_line_start() {
        assert_eq!(prompt_start(&styled(b"\x1b[91m(monitor) \x1b[0m")), Some(0));
        assert_eq!(prompt_start(&styled(b"\x1b[91m(monitor) ")), None);
        assert_eq!(
            prompt_start(&styled(b"ok\r\n\r\x1b[33m(u-1) \x1b[0m")),
            Some(5)
        );
        assert_eq!(prompt_start(&styled(b"x(u-1) ")), None);
        assert_eq!(prompt_start(&styled(b"done\n\r(monitor) ")), Some(6));
        // A green (not a prompt colour) "(x) " is output.
        assert_eq!(prompt_start(&styled(b"\x1b[92m(x) \x1b[0m")), None);
    }

    #[test]
    fn paths_escape_spaces_and_refuse_semicolons() {
        assert_eq!(
            monitor_path(Path::new("/tmp/a b/fw.elf")).unwrap(),
            "@/tmp/a\\ b/fw.elf"
        );
        assert!(monitor_path(Path::new("/tmp/a;b")).is_err());
        assert!(monitor_path(Path::new("/tmp/a\tb")).is_err());
        assert!(monitor_path(Path::new("rel.elf"))
            .unwrap()
            .starts_with("@/"));
    }

    #[test]
    fn commands_with_control_characters_are_refused() {
        assert!(Monitor::check_command("machine Reset\n").is_err());
        assert!(Monitor::check_command("mach\tcreate").is_err());
        assert!(Monitor::check_command("").is_err());
        assert!(Monitor::check_command("quit").is_err());
        assert!(Monitor::check_command("machine Reset").is_ok());
    }
}
