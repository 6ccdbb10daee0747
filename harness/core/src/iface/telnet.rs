//! Telnet consoles: a unit's shell over TCP with telnet option negotiation (BusyBox `telnetd`,
//! the telnet servers of embedded stacks, ser2net in telnet mode), driven by the same
//! send/expect recipes as a serial console.
//!
//! This module exists because a raw-TCP console ([`Console::open_tcp`]) shows a telnet
//! server's negotiation bytes (`IAC DO ...`) to the recipes and the evidence, never answers
//! them (some servers wait for an answer before they print a prompt) and sends a recipe's
//! `"\n"` as a bare LF, which the telnet network virtual terminal does not define as Enter.
//! [`open_telnet`] connects and starts one pump task between the TCP stream and one end of a
//! `tokio::io::duplex` pipe, whose other end is an ordinary [`Console`] (as in `iface/rtt.rs`),
//! so expects, transcripts, timeouts and liveness are the serial console's.
//!
//! What the pump does:
//! - **Server to console**: telnet commands are answered and removed; `IAC IAC` becomes one
//!   0xff byte; `CR NUL` becomes `CR` and `CR LF` stays `CR LF`, i.e. the bytes a serial
//!   console would show. Sequences split across reads are handled (the decoder keeps its
//!   state); a subnegotiation is kept in a buffer of [`MAX_SUBNEGOTIATION`] bytes, the rest of
//!   a longer one is dropped.
//! - **Negotiation**, as common clients do: the server's `WILL ECHO` and `WILL SGA` are
//!   accepted (`DO`); `DO SGA` is answered `WILL SGA`; `DO NAWS` with `WILL NAWS` and the window
//!   size; `DO TTYPE` with `WILL TTYPE`, and `SB TTYPE SEND` with the terminal type; every other
//!   option is refused (`DO x` → `WONT x`, `WILL x` → `DONT x`). A request that would not change
//!   an option's state is not answered (RFC 854, RFC 1143 loop avoidance), a refusal is sent
//!   once per option, and at most [`MAX_REPLIES`] answers are sent per connection: a server
//!   that floods negotiation cannot make the harness flood back. Each answer is noted in the
//!   transcript (`telnet: server WILL ECHO -> DO ECHO`); ignored repeats are not.
//! - **Console to server**: 0xff is escaped as `IAC IAC`; a bare LF (a serial recipe's Enter)
//!   is sent as `CR LF`, what line-mode clients send and what BusyBox telnetd and embedded
//!   servers take as Enter; `CR LF` stays `CR LF`; a bare CR is sent as `CR NUL` (RFC 854). A CR
//!   at the end of a chunk waits up to [`CR_HOLD`] for the LF that may follow in the next one.
//!   Secrets sent are never recorded here: the console records what the step shows.
//! - **Bounded and timed**: the pipe holds [`PIPE_BYTES`] each way; while nobody reads the
//!   console the pump stops reading the socket (the server's output backs up, as on a UART).
//!   The pump ends when the server closes the connection (the console then reads end-of-file:
//!   `expect` fails with [`LinkError::Closed`], [`Console::is_closed`] turns true), when the
//!   console is dropped, on a socket error, or when the server takes none of the harness's
//!   bytes for [`WRITE_STALL`]; the reason is noted.
//! - **RFC 2217 serial ports** (ser2net's `telnet(rfc2217)` accepter, as labgrid exporters run
//!   it; see `iface/labgrid.rs`): with [`TelnetOptions::com_port`] set, the client offers
//!   `WILL COM-PORT-OPTION` at once, takes the server's `DO` as agreement and then sends
//!   `SET-BAUDRATE` (when a rate is given); the server's confirmation is noted. BINARY is
//!   accepted both ways; in each direction where it was agreed, data passes unchanged (only 0xff
//!   is escaped): a serial line gets the recipe's bytes exactly as a tty would. Where it was not
//!   (the server refused or never offered it), the NVT rules hold but nothing else is rewritten:
//!   a CR not followed by LF is sent as `CR NUL` (RFC 854) and the server's `CR NUL` read as CR,
//!   a bare LF stays LF. Without `com_port` nothing of this applies (COM-PORT-OPTION and BINARY
//!   are refused like any other option).

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use crate::iface::serial::Console;
use crate::iface::LinkError;
use crate::transcript::Transcript;

/// Bytes the console pipe holds in each direction.
pub const PIPE_BYTES: usize = 16 * 1024;
/// Longest subnegotiation (`IAC SB ... IAC SE`) kept; the rest of a longer one is dropped.
pub const MAX_SUBNEGOTIATION: usize = 512;
/// Most negotiation answers sent on one connection; later requests are ignored (noted once).
pub const MAX_REPLIES: usize = 256;
/// How long a CR ending a chunk of the console's bytes waits for a following LF before it is
/// sent as `CR NUL`.
pub const CR_HOLD: Duration = Duration::from_millis(20);
/// How long the server may take none of the harness's bytes before the link is closed.
pub const WRITE_STALL: Duration = Duration::from_secs(60);
/// Largest socket read.
const READ_CHUNK: usize = 4096;

// Telnet commands (RFC 854) and the options this client knows by name.
const IAC: u8 = 255;
const DONT: u8 = 254;
const DO: u8 = 253;
const WONT: u8 = 252;
const WILL: u8 = 251;
const SB: u8 = 250;
const SE: u8 = 240;
const OPT_BINARY: u8 = 0;
const OPT_ECHO: u8 = 1;
const OPT_SGA: u8 = 3;
const OPT_TIMING_MARK: u8 = 6;
const OPT_TTYPE: u8 = 24;
const OPT_NAWS: u8 = 31;
/// RFC 2217.
const OPT_COM_PORT: u8 = 44;
/// RFC 2217 client command SET-BAUDRATE; the server's answer is this plus 100.
const COM_SET_BAUDRATE: u8 = 1;
const COM_SERVER_OFFSET: u8 = 100;
const TTYPE_IS: u8 = 0;
const TTYPE_SEND: u8 = 1;

/// How the client presents itself when the server asks.
#[derive(Debug, Clone)]
pub struct TelnetOptions {
    /// Terminal type sent when the server asks (TTYPE), e.g. "vt100".
    pub terminal: String,
    /// Window size sent when the server asks for NAWS.
    pub columns: u16,
    pub rows: u16,
    /// The server is a serial port over RFC 2217 (COM-PORT-OPTION): offer the option, set the
    /// baud rate, and pass data unchanged (binary). `None` (the default): a login console.
    pub com_port: Option<ComPort>,
}

/// RFC 2217 settings of a serial port reached over telnet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComPort {
    /// Sent as SET-BAUDRATE once the server agreed to COM-PORT-OPTION; `None`: the port keeps
    /// the rate its server configured.
    pub baud: Option<u32>,
}

impl Default for TelnetOptions {
    /// "vt100", 80 columns, 24 rows, no RFC 2217.
    fn default() -> Self {
        TelnetOptions {
            terminal: "vt100".into(),
            columns: 80,
            rows: 24,
            com_port: None,
        }
    }
}

/// Connects to a telnet server at `addr` (host:port) within `timeout` and returns a console whose
/// reads carry only the data bytes (IAC sequences answered and removed; IAC IAC -> 0xff) and whose
/// writes are escaped (0xff -> IAC IAC) as telnet requires. Negotiations are noted into
/// `transcript` (e.g. "telnet: server WILL ECHO -> DO ECHO", prefixed by the console's name
/// unless that is "telnet": "console: telnet: server WILL ECHO -> DO ECHO").
pub async fn open_telnet(
    name: &str,
    addr: &str,
    timeout: Duration,
    opts: &TelnetOptions,
    transcript: Transcript,
) -> Result<Console, LinkError> {
    let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| LinkError::Open {
            endpoint: addr.to_string(),
            detail: format!("no connection within {timeout:?}"),
        })?
        .map_err(|e| LinkError::Open {
            endpoint: addr.to_string(),
            detail: e.to_string(),
        })?;
    let _ = stream.set_nodelay(true);
    transcript.note(format!("{}telnet: connected to {addr}", who(name)));
    let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
    let (tcp_r, tcp_w) = stream.into_split();
    let pump = Pump {
        name: name.to_string(),
        transcript: transcript.clone(),
        negotiator: Negotiator::new(opts),
        serial: opts.com_port.is_some(),
    };
    tokio::spawn(pump.run(tcp_r, tcp_w, ours));
    Ok(Console::from_stream(name, theirs, transcript))
}

/// What the notes of console `name` start with before "telnet: ": the console's name, unless
/// the console is called "telnet" (no "telnet: telnet: ...").
fn who(name: &str) -> String {
    if name == "telnet" {
        String::new()
    } else {
        format!("{name}: ")
    }
}

/// Where an option stands on one side of the connection.
#[derive(Debug, Clone, Copy, Default)]
struct OptState {
    /// The option is on.
    on: bool,
    /// A refusal was sent already; repeats of the request are ignored.
    refused: bool,
}

/// What the negotiation produced from one command: the bytes to send back and what to note.
#[derive(Debug, Default, PartialEq, Eq)]
struct Answer {
    reply: Vec<u8>,
    note: Option<String>,
}

/// The negotiation state of one connection: the options on the harness's side (`us`: DO/DONT
/// from the server) and on the server's (`him`: WILL/WONT).
struct Negotiator {
    us: [OptState; 256],
    him: [OptState; 256],
    replies: usize,
    /// The reply cap was reached (noted once).
    capped: bool,
    terminal: Vec<u8>,
    columns: u16,
    rows: u16,
    /// RFC 2217 mode (see [`TelnetOptions::com_port`]).
    com_port: Option<ComPort>,
    /// SET-BAUDRATE (or the decision not to send it) is done.
    com_port_set: bool,
}

/// The name of an option in notes.
fn option_name(opt: u8) -> String {
    let name = match opt {
        0 => "BINARY",
        1 => "ECHO",
        3 => "SGA",
        5 => "STATUS",
        6 => "TIMING-MARK",
        24 => "TTYPE",
        31 => "NAWS",
        32 => "TSPEED",
        33 => "LFLOW",
        34 => "LINEMODE",
        35 => "XDISPLOC",
        36 => "OLD-ENVIRON",
        37 => "AUTHENTICATION",
        38 => "ENCRYPT",
        39 => "NEW-ENVIRON",
        44 => "COM-PORT-OPTION",
        _ => return format!("option {opt}"),
    };
    name.to_string()
}

fn verb_name(verb: u8) -> &'static str {
    match verb {
        WILL => "WILL",
        WONT => "WONT",
        DO => "DO",
        _ => "DONT",
    }
}

/// Appends `bytes` to a subnegotiation, doubling 0xff as telnet requires.
fn push_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        out.push(b);
        if b == IAC {
            out.push(IAC);
        }
    }
}

impl Negotiator {
    fn new(opts: &TelnetOptions) -> Negotiator {
        // A terminal type is printable ASCII without spaces (RFC 1091); keep it bounded.
        let terminal: Vec<u8> = opts
            .terminal
            .bytes()
            .filter(|b| b.is_ascii_graphic())
            .take(40)
            .collect();
        Negotiator {
            us: [OptState::default(); 256],
            him: [OptState::default(); 256],
            replies: 0,
            capped: false,
            terminal: if terminal.is_empty() {
                b"UNKNOWN".to_vec()
            } else {
                terminal
            },
            columns: opts.columns,
            rows: opts.rows,
            com_port: opts.com_port.clone(),
            com_port_set: false,
        }
    }

    /// What the client sends before the server says anything: `WILL COM-PORT-OPTION` in RFC
    /// 2217 mode (RFC 2217: the client offers it), nothing otherwise.
    fn opening(&mut self) -> Answer {
        if self.com_port.is_none() {
            return Answer::default();
        }
        self.us[usize::from(OPT_COM_PORT)].on = true;
        self.answer(
            vec![IAC, WILL, OPT_COM_PORT],
            "telnet: WILL COM-PORT-OPTION (RFC 2217 serial port)".into(),
        )
    }

    /// RFC 2217 mode: the server's DO/DONT COM-PORT-OPTION (its agreement to our offer, or its
    /// own request, or a refusal). `None` when not in that mode or for other options.
    fn com_port_command(&mut self, verb: u8, opt: u8, heard: &str) -> Option<Answer> {
        let cfg = self.com_port.clone()?;
        if opt != OPT_COM_PORT || !matches!(verb, DO | DONT) {
            return None;
        }
        if verb == DONT {
            let was_on = std::mem::replace(&mut self.us[usize::from(opt)].on, false);
            if !was_on {
                return Some(Answer::default());
            }
            // Our offer refused (RFC 1143: no reply to a refusal of our own request).
            self.com_port_set = true;
            return Some(Answer {
                reply: Vec::new(),
                note: Some(format!(
                    "{heard}: the server does not take RFC 2217 commands; the port keeps its \
                     configured baud rate"
                )),
            });
        }
        // DO: our offer was already made (the opening), so this agrees; no WILL is sent again.
        self.us[usize::from(opt)].on = true;
        if self.com_port_set {
            return Some(Answer::default());
        }
        self.com_port_set = true;
        Some(match cfg.baud {
            Some(baud) => {
                let mut reply = vec![IAC, SB, OPT_COM_PORT, COM_SET_BAUDRATE];
                push_escaped(&mut reply, &baud.to_be_bytes());
                reply.extend_from_slice(&[IAC, SE]);
                self.answer(
                    reply,
                    format!("{heard} -> SB COM-PORT-OPTION SET-BAUDRATE {baud}"),
                )
            }
            None => Answer {
                reply: Vec::new(),
                note: Some(format!("{heard}: baud rate left as the port has it")),
            },
        })
    }

    /// The NAWS subnegotiation with the window size.
    fn naws(&self) -> Vec<u8> {
        let mut out = vec![IAC, SB, OPT_NAWS];
        push_escaped(&mut out, &self.columns.to_be_bytes());
        push_escaped(&mut out, &self.rows.to_be_bytes());
        out.extend_from_slice(&[IAC, SE]);
        out
    }

    /// Counts one answer against [`MAX_REPLIES`]; once the cap is reached, nothing is sent (a
    /// note says so the first time).
    fn answer(&mut self, reply: Vec<u8>, note: String) -> Answer {
        if self.replies >= MAX_REPLIES {
            if self.capped {
                return Answer::default();
            }
            self.capped = true;
            return Answer {
                reply: Vec::new(),
                note: Some(format!(
                    "telnet: the server keeps negotiating; {MAX_REPLIES} answers sent, further \
                     requests ignored"
                )),
            };
        }
        self.replies += 1;
        Answer {
            reply,
            note: Some(note),
        }
    }

    /// The answer to `IAC verb opt`.
    fn command(&mut self, verb: u8, opt: u8) -> Answer {
        let heard = format!("telnet: server {} {}", verb_name(verb), option_name(opt));
        if let Some(a) = self.com_port_command(verb, opt, &heard) {
            return a;
        }
        // RFC 2217 mode: BINARY both ways, so bytes reach the serial line unchanged.
        let binary = self.com_port.is_some() && opt == OPT_BINARY;
        match verb {
            DO | DONT => {
                let enable = verb == DO;
                if opt == OPT_TIMING_MARK && enable {
                    // A mark asks for an answer each time (a ping); it changes no state.
                    return self.answer(
                        vec![IAC, WONT, opt],
                        format!("{heard} -> WONT {}", option_name(opt)),
                    );
                }
                let st = self.us[usize::from(opt)];
                if st.on == enable {
                    return Answer::default();
                }
                if !enable {
                    self.us[usize::from(opt)].on = false;
                    return self.answer(
                        vec![IAC, WONT, opt],
                        format!("{heard} -> WONT {}", option_name(opt)),
                    );
                }
                match opt {
                    _ if binary => {
                        self.us[usize::from(opt)].on = true;
                        self.answer(
                            vec![IAC, WILL, opt],
                            format!("{heard} -> WILL {}", option_name(opt)),
                        )
                    }
                    OPT_SGA | OPT_NAWS | OPT_TTYPE => {
                        self.us[usize::from(opt)].on = true;
                        let mut reply = vec![IAC, WILL, opt];
                        let mut note = format!("{heard} -> WILL {}", option_name(opt));
                        if opt == OPT_NAWS {
                            reply.extend(self.naws());
                            note.push_str(&format!(", SB NAWS {}x{}", self.columns, self.rows));
                        }
                        self.answer(reply, note)
                    }
                    _ if st.refused => Answer::default(),
                    _ => {
                        self.us[usize::from(opt)].refused = true;
                        self.answer(
                            vec![IAC, WONT, opt],
                            format!("{heard} -> WONT {}", option_name(opt)),
                        )
                    }
                }
            }
            _ => {
                let enable = verb == WILL;
                let st = self.him[usize::from(opt)];
                if st.on == enable {
                    return Answer::default();
                }
                if !enable {
                    self.him[usize::from(opt)].on = false;
                    return self.answer(
                        vec![IAC, DONT, opt],
                        format!("{heard} -> DONT {}", option_name(opt)),
                    );
                }
                match opt {
                    _ if binary => {
                        self.him[usize::from(opt)].on = true;
                        self.answer(
                            vec![IAC, DO, opt],
                            format!("{heard} -> DO {}", option_name(opt)),
                        )
                    }
                    OPT_ECHO | OPT_SGA => {
                        self.him[usize::from(opt)].on = true;
                        self.answer(
                            vec![IAC, DO, opt],
                            format!("{heard} -> DO {}", option_name(opt)),
                        )
                    }
                    _ if st.refused => Answer::default(),
                    _ => {
                        self.him[usize::from(opt)].refused = true;
                        self.answer(
                            vec![IAC, DONT, opt],
                            format!("{heard} -> DONT {}", option_name(opt)),
                        )
                    }
                }
            }
        }
    }

    /// The answer to `IAC SB opt data IAC SE` (`data` already unescaped).
    fn subnegotiation(&mut self, opt: u8, data: &[u8]) -> Answer {
        if opt == OPT_TTYPE && data.first() == Some(&TTYPE_SEND) && self.us[usize::from(opt)].on {
            let mut reply = vec![IAC, SB, OPT_TTYPE, TTYPE_IS];
            push_escaped(&mut reply, &self.terminal);
            reply.extend_from_slice(&[IAC, SE]);
            let note = format!(
                "telnet: server SB TTYPE SEND -> SB TTYPE IS {}",
                String::from_utf8_lossy(&self.terminal)
            );
            return self.answer(reply, note);
        }
        if opt == OPT_COM_PORT
            && self.com_port.is_some()
            && data.first() == Some(&(COM_SET_BAUDRATE + COM_SERVER_OFFSET))
            && data.len() == 5
        {
            // The server's answer to SET-BAUDRATE: the rate now in effect. Other server
            // notifications (line and modem state, flow control) are not noted: they may come
            // often and carry nothing a recipe uses.
            let rate = u32::from_be_bytes([data[1], data[2], data[3], data[4]]);
            return Answer {
                reply: Vec::new(),
                note: Some(format!(
                    "telnet: server SB COM-PORT-OPTION SET-BAUDRATE {rate} (in effect)"
                )),
            };
        }
        Answer::default()
    }
}

/// Where the decoder is in the server's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Data,
    /// The last data byte was CR: a NUL now is dropped.
    Cr,
    Iac,
    /// `IAC verb`, waiting for the option.
    Verb(u8),
    /// `IAC SB`, waiting for the option.
    SbOption,
    Sb(u8),
    /// `IAC` inside a subnegotiation.
    SbIac(u8),
}

/// Splits the server's bytes into data and telnet commands, answering the commands.
struct Decoder {
    state: State,
    sb: Vec<u8>,
    /// The current subnegotiation outgrew [`MAX_SUBNEGOTIATION`].
    sb_overflow: bool,
}

impl Decoder {
    fn new() -> Decoder {
        Decoder {
            state: State::Data,
            sb: Vec::new(),
            sb_overflow: false,
        }
    }

    /// Decodes one chunk: appends data bytes to `data`, answers to `reply`, notes to `notes`.
    fn feed(
        &mut self,
        neg: &mut Negotiator,
        input: &[u8],
        data: &mut Vec<u8>,
        reply: &mut Vec<u8>,
        notes: &mut Vec<String>,
    ) {
        let mut take = |a: Answer| {
            reply.extend_from_slice(&a.reply);
            if let Some(n) = a.note {
                notes.push(n);
            }
        };
        for &b in input {
            // The server sends binary data (it said WILL BINARY, agreed in RFC 2217 mode): `CR
            // NUL` is not an NVT line end there, the NUL is data.
            let binary = neg.him[usize::from(OPT_BINARY)].on;
            self.state = match self.state {
                State::Data | State::Cr => match b {
                    IAC => State::Iac,
                    0 if self.state == State::Cr => State::Data,
                    b'\r' if !binary => {
                        data.push(b);
                        State::Cr
                    }
                    _ => {
                        data.push(b);
                        State::Data
                    }
                },
                State::Iac => match b {
                    IAC => {
                        data.push(IAC);
                        State::Data
                    }
                    WILL | WONT | DO | DONT => State::Verb(b),
                    SB => State::SbOption,
                    // NOP, data mark, break, go ahead, AYT, ...: nothing to show or answer.
                    _ => State::Data,
                },
                State::Verb(verb) => {
                    take(neg.command(verb, b));
                    State::Data
                }
                State::SbOption => {
                    self.sb.clear();
                    self.sb_overflow = false;
                    State::Sb(b)
                }
                State::Sb(opt) => {
                    if b == IAC {
                        State::SbIac(opt)
                    } else {
                        self.sb_push(b);
                        State::Sb(opt)
                    }
                }
                State::SbIac(opt) => match b {
                    IAC => {
                        self.sb_push(IAC);
                        State::Sb(opt)
                    }
                    SE => {
                        if self.sb_overflow {
                            take(Answer {
                                reply: Vec::new(),
                                note: Some(format!(
                                    "telnet: server SB {} longer than {MAX_SUBNEGOTIATION} \
                                     bytes ignored",
                                    option_name(opt)
                                )),
                            });
                        } else {
                            take(neg.subnegotiation(opt, &self.sb));
                        }
                        self.sb.clear();
                        State::Data
                    }
                    // A subnegotiation not ended by SE: drop it and read the command.
                    WILL | WONT | DO | DONT => State::Verb(b),
                    SB => State::SbOption,
                    _ => State::Data,
                },
            };
        }
    }

    fn sb_push(&mut self, b: u8) {
        if self.sb.len() < MAX_SUBNEGOTIATION {
            self.sb.push(b);
        } else {
            self.sb_overflow = true;
        }
    }
}

/// Turns the console's bytes into NVT bytes: `IAC IAC`, `CR LF` for a bare LF (a login
/// console; a serial port keeps a bare LF), `CR NUL` for a bare CR; in binary, only `IAC IAC`.
struct Encoder {
    /// The previous chunk ended with a CR not yet sent.
    pending_cr: bool,
    /// RFC 2217 mode (a serial port): a bare LF is sent as it is.
    serial: bool,
    /// BINARY agreed for what the harness sends (RFC 2217 mode, the server said DO BINARY):
    /// bytes pass unchanged, only 0xff is escaped.
    binary: bool,
}

impl Encoder {
    fn new(serial: bool) -> Encoder {
        Encoder {
            pending_cr: false,
            serial,
            binary: false,
        }
    }

    /// BINARY turned on or off for what the harness sends, after the answer that agreed to it
    /// (queued before anything encoded from now on).
    fn set_binary(&mut self, on: bool, out: &mut Vec<u8>) {
        if on && !self.binary {
            // A CR held for a LF that may follow: what it would have become without binary.
            out.extend_from_slice(self.flush());
        }
        self.binary = on;
    }

    fn encode(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if self.binary {
            for &b in input {
                out.push(b);
                if b == IAC {
                    out.push(IAC);
                }
            }
            return;
        }
        let mut rest = input;
        if self.pending_cr {
            self.pending_cr = false;
            if let Some((&b'\n', tail)) = rest.split_first() {
                out.extend_from_slice(b"\r\n");
                rest = tail;
            } else {
                out.extend_from_slice(b"\r\0");
            }
        }
        let mut i = 0;
        while i < rest.len() {
            match rest[i] {
                IAC => out.extend_from_slice(&[IAC, IAC]),
                b'\n' if self.serial => out.push(b'\n'),
                b'\n' => out.extend_from_slice(b"\r\n"),
                b'\r' => match rest.get(i + 1) {
                    Some(b'\n') => {
                        out.extend_from_slice(b"\r\n");
                        i += 1;
                    }
                    Some(_) => out.extend_from_slice(b"\r\0"),
                    None => self.pending_cr = true,
                },
                b => out.push(b),
            }
            i += 1;
        }
    }

    /// The held CR, once no LF followed in time.
    fn flush(&mut self) -> &'static [u8] {
        if std::mem::take(&mut self.pending_cr) {
            b"\r\0"
        } else {
            b""
        }
    }
}

/// Moves bytes between the TCP stream and the console's pipe.
struct Pump {
    name: String,
    transcript: Transcript,
    negotiator: Negotiator,
    /// RFC 2217 mode (a serial port): see [`Encoder::serial`].
    serial: bool,
}

/// Why the pump stopped.
enum End {
    /// The console was dropped, or the server closed the connection: the console says so.
    Quiet,
    /// Something worth a note.
    Failed(String),
}

impl Pump {
    async fn run(self, tcp_r: OwnedReadHalf, tcp_w: OwnedWriteHalf, io: DuplexStream) {
        let Pump {
            name,
            transcript,
            mut negotiator,
            serial,
        } = self;
        let (io_r, io_w) = tokio::io::split(io);
        // Answers go from the reading side to the writing side; a server that does not read
        // them fills this channel, and then the reading side waits too.
        let (replies_tx, replies_rx) = mpsc::channel::<Reply>(16);
        let opening = negotiator.opening();
        if let Some(n) = &opening.note {
            transcript.note(format!("{}{n}", who(&name)));
        }
        if !opening.reply.is_empty() {
            // The channel is empty: this cannot be full.
            let _ = replies_tx.try_send(Reply {
                bytes: opening.reply,
                binary: None,
            });
        }
        let down = downstream(tcp_r, io_w, negotiator, replies_tx, (&transcript, &name));
        let up = upstream(io_r, tcp_w, replies_rx, serial);
        let end = tokio::select! {
            e = down => e,
            e = up => e,
        };
        if let End::Failed(why) = end {
            transcript.note(format!("{}telnet: connection closed: {why}", who(&name)));
        }
        // Everything is dropped here: the socket closes and the console reads end-of-file.
    }
}

/// Negotiation answers on their way from the reading side to the writing side.
struct Reply {
    bytes: Vec<u8>,
    /// BINARY for what the harness sends turned on or off by these answers: the encoder
    /// switches once they are queued, not before.
    binary: Option<bool>,
}

/// Server to console: decodes, answers negotiation (through `replies`), forwards data.
async fn downstream(
    mut tcp: OwnedReadHalf,
    mut io: WriteHalf<DuplexStream>,
    mut neg: Negotiator,
    replies: mpsc::Sender<Reply>,
    (transcript, name): (&Transcript, &str),
) -> End {
    let mut dec = Decoder::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut data = Vec::with_capacity(READ_CHUNK);
    let mut reply = Vec::new();
    let mut notes = Vec::new();
    loop {
        let n = match tcp.read(&mut buf).await {
            Ok(0) => return End::Quiet,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return End::Failed(format!("read error: {e}")),
        };
        data.clear();
        reply.clear();
        notes.clear();
        let binary_before = neg.us[usize::from(OPT_BINARY)].on;
        dec.feed(&mut neg, &buf[..n], &mut data, &mut reply, &mut notes);
        for note in &notes {
            transcript.note(format!("{}{note}", who(name)));
        }
        let binary_now = neg.us[usize::from(OPT_BINARY)].on;
        let binary = (binary_now != binary_before).then_some(binary_now);
        if (!reply.is_empty() || binary.is_some())
            && replies
                .send(Reply {
                    bytes: std::mem::take(&mut reply),
                    binary,
                })
                .await
                .is_err()
        {
            return End::Quiet;
        }
        if !data.is_empty() && io.write_all(&data).await.is_err() {
            return End::Quiet;
        }
    }
}

/// Console to server: encodes the console's bytes and sends them with the negotiation answers.
async fn upstream(
    mut io: ReadHalf<DuplexStream>,
    mut tcp: OwnedWriteHalf,
    mut replies: mpsc::Receiver<Reply>,
    serial: bool,
) -> End {
    let mut enc = Encoder::new(serial);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut out = Vec::with_capacity(2 * READ_CHUNK);
    let mut console_open = true;
    loop {
        out.clear();
        let hold = enc.pending_cr;
        tokio::select! {
            r = replies.recv() => match r {
                Some(Reply { bytes, binary }) => {
                    if let Some(on) = binary {
                        // A held CR goes before the answer that turns binary on.
                        enc.set_binary(on, &mut out);
                    }
                    out.extend_from_slice(&bytes);
                }
                None => return End::Quiet,
            },
            r = io.read(&mut buf), if console_open => match r {
                Ok(0) | Err(_) => {
                    // The console was dropped: send what is held, then stop.
                    console_open = false;
                    out.extend_from_slice(enc.flush());
                }
                Ok(n) => enc.encode(&buf[..n], &mut out),
            },
            () = tokio::time::sleep(CR_HOLD), if hold => out.extend_from_slice(enc.flush()),
        }
        if !out.is_empty() {
            match tokio::time::timeout(WRITE_STALL, tcp.write_all(&out)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return End::Failed(format!("write error: {e}")),
                Err(_) => {
                    return End::Failed(format!("the server took no bytes for {WRITE_STALL:?}"))
                }
            }
        }
        if !console_open {
            return End::Quiet;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(
        neg: &mut Negotiator,
        dec: &mut Decoder,
        input: &[u8],
    ) -> (Vec<u8>, Vec<u8>, Vec<String>) {
        let (mut d, mut r, mut n) = (Vec::new(), Vec::new(), Vec::new());
        dec.feed(neg, input, &mut d, &mut r, &mut n);
        (d, r, n)
    }

    #[test]
    fn busybox_greeting_is_answered_and_removed() {
        let mut neg = Negotiator::new(&TelnetOptions::default());
        let mut dec = Decoder::new();
        let input = [
            IAC, WILL, OPT_ECHO, IAC, WILL, OPT_SGA, IAC, DO, OPT_NAWS, b'l', b'o', b'g', b'i',
            b'n', b':', b' ',
        ];
        let (d, r, n) = decode(&mut neg, &mut dec, &input);
        assert_eq!(d, b"login: ");
        assert_eq!(
            r,
            [
                IAC, DO, OPT_ECHO, IAC, DO, OPT_SGA, IAC, WILL, OPT_NAWS, IAC, SB, OPT_NAWS, 0, 80,
                0, 24, IAC, SE
            ]
        );
        assert_eq!(n[0], "telnet: server WILL ECHO -> DO ECHO");
        assert_eq!(n.len(), 3);
        // Repeats change nothing and are not answered.
        let (d, r, n) = decode(&mut neg, &mut dec, &input[..9]);
        assert!(d.is_empty() && r.is_empty() && n.is_empty());
    }

    #[test]
    fn split_sequences_iac_iac_and_line_ends() {
        let mut neg = Negotiator::new(&TelnetOptions::default());
        let mut dec = Decoder::new();
        let mut data = Vec::new();
        let mut reply = Vec::new();
        let stream = [
            b'a', IAC, IAC, b'b', b'\r', 0, b'c', b'\r', b'\n', IAC, DO, 99, b'd', IAC, SB,
            OPT_TTYPE, TTYPE_SEND, IAC, SE, b'e',
        ];
        // One byte at a time: every split point.
        for b in stream {
            let (d, r, _) = decode(&mut neg, &mut dec, &[b]);
            data.extend(d);
            reply.extend(r);
        }
        assert_eq!(
            data,
            [b'a', IAC, b'b', b'\r', b'c', b'\r', b'\n', b'd', b'e']
        );
        // DO 99 refused; TTYPE SEND ignored (TTYPE was never agreed).
        assert_eq!(reply, [IAC, WONT, 99]);
    }

    #[test]
    fn ttype_and_refusals_once() {
        let mut neg = Negotiator::new(&TelnetOptions {
            terminal: "xterm".into(),
            columns: 255,
            rows: 50,
            ..TelnetOptions::default()
        });
        let mut dec = Decoder::new();
        let (_, r, _) = decode(
            &mut neg,
            &mut dec,
            &[IAC, DO, OPT_TTYPE, IAC, SB, OPT_TTYPE, TTYPE_SEND, IAC, SE],
        );
        let mut want = vec![IAC, WILL, OPT_TTYPE, IAC, SB, OPT_TTYPE, TTYPE_IS];
        want.extend_from_slice(b"xterm");
        want.extend_from_slice(&[IAC, SE]);
        assert_eq!(r, want);
        // NAWS with a 255 column count doubles the byte.
        let (_, r, _) = decode(&mut neg, &mut dec, &[IAC, DO, OPT_NAWS]);
        assert_eq!(
            r,
            [IAC, WILL, OPT_NAWS, IAC, SB, OPT_NAWS, 0, IAC, IAC, 0, 50, IAC, SE]
        );
        let (_, r, _) = decode(
            &mut neg,
            &mut dec,
            &[IAC, WILL, 34, IAC, WILL, 34, IAC, DO, 0, IAC, DO, 0],
        );
        assert_eq!(r, [IAC, DONT, 34, IAC, WONT, 0]);
        // DONT for an option that is off: no answer; DONT SGA after DO SGA: acknowledged.
        let (_, r, _) = decode(
            &mut neg,
            &mut dec,
            &[IAC, DONT, 0, IAC, DO, OPT_SGA, IAC, DONT, OPT_SGA],
        );
        assert_eq!(r, [IAC, WILL, OPT_SGA, IAC, WONT, OPT_SGA]);
    }

    #[test]
    fn toggling_flood_is_capped() {
        let mut neg = Negotiator::new(&TelnetOptions::default());
        let mut dec = Decoder::new();
        let mut input = Vec::new();
        for _ in 0..10_000 {
            input.extend_from_slice(&[IAC, WILL, OPT_ECHO, IAC, WONT, OPT_ECHO]);
        }
        let (d, r, n) = decode(&mut neg, &mut dec, &input);
        assert!(d.is_empty());
        assert_eq!(r.len(), MAX_REPLIES * 3);
        assert_eq!(n.len(), MAX_REPLIES + 1);
    }

    #[test]
    fn long_subnegotiation_is_bounded() {
        let mut neg = Negotiator::new(&TelnetOptions::default());
        let mut dec = Decoder::new();
        let mut input = vec![IAC, SB, 77];
        input.extend(std::iter::repeat_n(b'x', 100_000));
        input.extend_from_slice(&[IAC, SE, b'o', b'k']);
        let (d, r, n) = decode(&mut neg, &mut dec, &input);
        assert_eq!(d, b"ok");
        assert!(r.is_empty());
        assert_eq!(n.len(), 1);
        assert!(dec.sb.capacity() <= 4 * MAX_SUBNEGOTIATION);
    }

    #[test]
    fn encoder_line_ends_and_escapes() {
        let mut enc = Encoder::new(false);
        let mut out = Vec::new();
        enc.encode(b"root\n", &mut out);
        enc.encode(b"a\r\nb\rc", &mut out);
        enc.encode(&[IAC, b'x', b'\r'], &mut out);
        assert!(enc.pending_cr);
        enc.encode(b"\nz\r", &mut out);
        out.extend_from_slice(enc.flush());
        assert_eq!(
            out,
            [
                b"root\r\n".as_slice(),
                b"a\r\nb\r\0c",
                &[IAC, IAC, b'x'],
                b"\r\nz\r\0"
            ]
            .concat()
        );
        assert!(enc.flush().is_empty());
    }

    #[test]
    fn rfc2217_offers_com_port_and_sets_the_baud_rate_once() {
        let opts = TelnetOptions {
            com_port: Some(ComPort {
                baud: Some(115_200),
            }),
            ..TelnetOptions::default()
        };
        let mut neg = Negotiator::new(&opts);
        let mut dec = Decoder::new();
        let open = neg.opening();
        assert_eq!(open.reply, [IAC, WILL, OPT_COM_PORT]);
        // ser2net's greeting: WILL SGA, DO SGA, WILL ECHO, DONT ECHO, DO BINARY, WILL BINARY,
        // DO COM-PORT-OPTION; then the server's confirmation of the rate, then data.
        let mut input = vec![
            IAC,
            WILL,
            OPT_SGA,
            IAC,
            DO,
            OPT_SGA,
            IAC,
            WILL,
            OPT_ECHO,
            IAC,
            DONT,
            OPT_ECHO,
            IAC,
            DO,
            OPT_BINARY,
            IAC,
            WILL,
            OPT_BINARY,
            IAC,
            DO,
            OPT_COM_PORT,
        ];
        input.extend_from_slice(&[IAC, SB, OPT_COM_PORT, 101, 0, 1, 0xc2, 0, IAC, SE]);
        input.extend_from_slice(b"a\r\0b\r\nlogin: ");
        let (d, r, n) = decode(&mut neg, &mut dec, &input);
        assert_eq!(d, b"a\r\0b\r\nlogin: ", "binary data passes unchanged");
        assert_eq!(
            r,
            [
                IAC,
                DO,
                OPT_SGA,
                IAC,
                WILL,
                OPT_SGA,
                IAC,
                DO,
                OPT_ECHO,
                IAC,
                WILL,
                OPT_BINARY,
                IAC,
                DO,
                OPT_BINARY,
                IAC,
                SB,
                OPT_COM_PORT,
                COM_SET_BAUDRATE,
                0,
                1,
                0xc2,
                0,
                IAC,
                SE
            ]
        );
        assert!(
            n.iter().any(|l| l.ends_with("SET-BAUDRATE 115200")),
            "{n:?}"
        );
        assert!(n.iter().any(|l| l.contains("115200 (in effect)")), "{n:?}");
        // A repeated DO changes nothing.
        let (_, r, _) = decode(&mut neg, &mut dec, &[IAC, DO, OPT_COM_PORT]);
        assert!(r.is_empty());
        // BINARY agreed (the DO BINARY above): the encoder passes bytes unchanged.
        assert!(neg.us[usize::from(OPT_BINARY)].on);
        let mut enc = Encoder::new(true);
        let mut out = Vec::new();
        enc.set_binary(true, &mut out);
        enc.encode(b"root\n\r", &mut out);
        enc.encode(&[IAC], &mut out);
        assert_eq!(out, [b"root\n\r".as_slice(), &[IAC, IAC]].concat());
        assert!(!enc.pending_cr);
    }

    #[test]
    fn rfc2217_without_binary_keeps_the_nvt_cr_rules() {
        let opts = TelnetOptions {
            com_port: Some(ComPort { baud: None }),
            ..TelnetOptions::default()
        };
        let mut neg = Negotiator::new(&opts);
        let mut dec = Decoder::new();
        neg.opening();
        // A server that offers no BINARY (and refuses it when asked about): `CR NUL` from it is
        // an NVT CR.
        let (d, r, _) = decode(
            &mut neg,
            &mut dec,
            &[
                IAC,
                DO,
                OPT_COM_PORT,
                IAC,
                WONT,
                OPT_BINARY,
                b'a',
                b'\r',
                0,
                b'b',
            ],
        );
        assert!(r.is_empty(), "{r:?}");
        assert_eq!(d, b"a\rb");
        assert!(!neg.us[usize::from(OPT_BINARY)].on);
        // What the harness sends: a bare CR becomes `CR NUL` (RFC 854), also one held at the end
        // of a chunk; `CR LF` and a bare LF pass as they are (a serial line's bytes).
        let mut enc = Encoder::new(true);
        let mut out = Vec::new();
        enc.encode(b"x\ry\r\nz\n\r", &mut out);
        assert!(enc.pending_cr);
        enc.encode(b"w", &mut out);
        enc.encode(b"\r", &mut out);
        out.extend_from_slice(enc.flush());
        assert_eq!(out, b"x\r\0y\r\nz\n\r\0w\r\0");
        // BINARY agreed later: a held CR is settled the NVT way first, then bytes pass unchanged;
        // refused again: back to the NVT rules.
        let mut out = Vec::new();
        enc.encode(b"q\r", &mut out);
        enc.set_binary(true, &mut out);
        enc.encode(b"\r!", &mut out);
        enc.set_binary(false, &mut out);
        enc.encode(b"\r!", &mut out);
        assert_eq!(out, b"q\r\0\r!\r\0!");
        // The server's DO BINARY switches the harness's side on, its DONT off.
        let (_, r, _) = decode(&mut neg, &mut dec, &[IAC, DO, OPT_BINARY]);
        assert_eq!(r, [IAC, WILL, OPT_BINARY]);
        assert!(neg.us[usize::from(OPT_BINARY)].on);
        let (_, r, _) = decode(&mut neg, &mut dec, &[IAC, DONT, OPT_BINARY]);
        assert_eq!(r, [IAC, WONT, OPT_BINARY]);
        assert!(!neg.us[usize::from(OPT_BINARY)].on);
    }

    #[test]
    fn rfc2217_refusal_and_plain_telnet_unchanged() {
        let opts = TelnetOptions {
            com_port: Some(ComPort { baud: None }),
            ..TelnetOptions::default()
        };
        let mut neg = Negotiator::new(&opts);
        let mut dec = Decoder::new();
        neg.opening();
        let (_, r, n) = decode(&mut neg, &mut dec, &[IAC, DONT, OPT_COM_PORT]);
        assert!(r.is_empty(), "no reply to a refusal of our offer");
        assert!(n[0].contains("keeps its configured baud rate"), "{n:?}");
        // Without com_port: no opening, COM-PORT-OPTION and BINARY refused as before.
        let mut neg = Negotiator::new(&TelnetOptions::default());
        assert_eq!(neg.opening(), Answer::default());
        let (_, r, _) = decode(
            &mut neg,
            &mut dec,
            &[
                IAC,
                DO,
                OPT_COM_PORT,
                IAC,
                DO,
                OPT_BINARY,
                IAC,
                WILL,
                OPT_BINARY,
            ],
        );
        assert_eq!(
            r,
            [
                IAC,
                WONT,
                OPT_COM_PORT,
                IAC,
                WONT,
                OPT_BINARY,
                IAC,
                DONT,
                OPT_BINARY
            ]
        );
    }
}
