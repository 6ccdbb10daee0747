//! Surface discovery: a bounded TCP connect scan of one unit's address, with banner grabbing.
//!
//! ETSI TS 103 701 5.1-1-2 (a) asks that a device expose no login service its maker did not
//! declare; `password.no-undeclared-surfaces` checks that by connecting to each port of a list
//! (the board file's, else [`DEFAULT_PORTS`], the usual IoT login services) on the unit's own
//! address and recording what answers. This module only discovers; the suite judges.
//!
//! It is deliberately small and refuses to be more than that: one host (an IP literal or a name
//! with exactly one address; never a range, CIDR block, list or wildcard), at most
//! [`MAX_PORTS`] ports, [`MAX_PARALLEL`] connections at once, every step under a timeout, and a
//! banner read capped at [`BANNER_CAP`] bytes, so a silent, flooding or early-closing service
//! costs a bounded time and memory. Plain connects only (no raw sockets, no privileges).
//!
//! On a loopback host (simulated units bind addresses such as 127.43.0.7), a port that accepts
//! may belong to the machine rather than the unit: a service bound to every local address
//! (`0.0.0.0:22`, a CI runner's sshd) accepts on every 127.x.y.z. Each open port is therefore
//! also tried on a control loopback address no unit uses, and marked
//! [`host_wide`](PortReport::host_wide) when it accepts there too.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::transcript::Transcript;

/// The well-known ports of IoT login services, scanned when a board lists none:
pub const DEFAULT_PORTS: &[u16] = &[
    21, 22, 23, 80, 443, 502, 554, 1883, 2222, 2323, 5000, 7547, 8000, 8080, 8081, 8443, 8554,
    8883, 9527,
];

/// Most ports one scan may try.
pub const MAX_PORTS: usize = 64;

/// Most connections one scan has open at once.
pub const MAX_PARALLEL: usize = 16;

/// Most banner bytes kept per port; a flooding service is read no further.
pub const BANNER_CAP: usize = 256;

/// What the scan sends to a connected service that said nothing: HTTP and RTSP servers answer
/// it, and a TLS server often answers it with an alert.
pub const NUDGE: &[u8] = b"HEAD / HTTP/1.0\r\n\r\n";

/// Once a banner has started, the read ends when nothing more came for this long (or the
/// banner timeout ran out, or the cap was reached, or the service closed).
const QUIET_GAP: Duration = Duration::from_millis(300);

/// Longest text [`describe_banner`] returns, in characters.
const DESCRIBE_MAX: usize = 100;

/// Loopback addresses used as the host-wide control, in order of preference; the first that is
/// not the scanned host is used. No unit is given these (127.255.255.255 is loopback's
/// broadcast address and is avoided).
const CONTROL_ADDRESSES: [Ipv4Addr; 2] = [
    Ipv4Addr::new(127, 255, 255, 254),
    Ipv4Addr::new(127, 255, 255, 253),
];

#[derive(Debug, Clone)]
pub struct ScanPlan {
    /// One host: an IP literal or a name resolving to one address (never a range, CIDR or
    /// wildcard: those are refused with ScanError::NotOneHost).
    pub host: String,
    pub ports: Vec<u16>,
    /// Per connection attempt.
    pub connect_timeout: Duration,
    /// How long to wait for a banner once connected. The nudge's wait, when a service said
    /// nothing, is this long again.
    pub banner_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortState {
    /// Accepted a connection. `banner`: the first bytes the service sent (at most 256),
    /// passively, or after a nudge (see below); `service`: a guess from the banner and port
    /// ("ssh", "telnet", "http", "mqtt", "rtsp", "ftp", "tls", "modbus", ...).
    Open {
        banner: Vec<u8>,
        service: Option<String>,
    },
    /// Refused (RST).
    Closed,
    /// No answer within connect_timeout (filtered). An ICMP "unreachable" answer to the
    /// connection attempt is counted here too: a filter's answer, not the service's.
    NoAnswer,
}

#[derive(Debug, Clone)]
pub struct PortReport {
    pub port: u16,
    pub state: PortState,
    /// For a loopback host only: the port also accepts on a control loopback address that no
    /// unit uses (a listener bound to every local address, i.e. the host's own service, not
    /// the unit's). Always false for other hosts.
    pub host_wide: bool,
    /// Open, but closed again at once without sending a byte: a port forwarder with nothing
    /// behind it (QEMU's user-mode `hostfwd` to a guest port nobody serves) or a service that
    /// turns this client away; not evidence of a login service by itself.
    pub closed_at_once: bool,
}

/// Why a scan was refused or could not be made. A unit's ports being closed, filtered or
/// misbehaving is never an error: that is the scan's result.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    /// The host is not one address: a range, CIDR block, list, wildcard, an unspecified,
    /// broadcast or multicast address, or not a well-formed name.
    #[error("{0:?} is not one host: name the unit's own address (one IP address or host name), never a range, network, list or wildcard")]
    NotOneHost(String),
    /// The name resolves to several addresses; which one is the unit's is not for the scanner
    /// to guess.
    #[error(
        "{host:?} resolves to several addresses ({}): name the unit's own address",
        list_addresses(addresses)
    )]
    Ambiguous {
        host: String,
        addresses: Vec<IpAddr>,
    },
    #[error("{count} ports to scan, at most {max} are allowed")]
    TooManyPorts { count: usize, max: usize },
    /// An empty port list would scan nothing and find nothing: a caller with no list of its
    /// own passes [`DEFAULT_PORTS`].
    #[error("no ports to scan")]
    NoPorts,
    #[error("port 0 cannot be scanned")]
    BadPort(u16),
    #[error("cannot resolve {host:?}: {detail}")]
    Resolve { host: String, detail: String },
    /// A connection attempt failed on this machine's side (no local address, no free source
    /// port, ...): the result would say nothing about the unit.
    #[error("cannot try port {port}: {detail}")]
    Connect { port: u16, detail: String },
}

fn list_addresses(addresses: &[IpAddr]) -> String {
    addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Scans `plan.ports` of `plan.host` with TCP connects (at most 16 at once), grabbing banners.
/// Records each open port and its banner (escaped, shortened) into `transcript`. Bounded:
/// <= MAX_PORTS ports, each port's whole probe within connect_timeout + banner_timeout (+ the
/// nudge's wait), a banner read capped at 256 bytes (a flooding service does not grow memory).
///
/// Reports come in ascending port order, one per distinct port. The whole scan ends within
/// [`scan_time_bound`].
pub async fn scan(plan: &ScanPlan, transcript: &Transcript) -> Result<Vec<PortReport>, ScanError> {
    let ports = check_ports(&plan.ports)?;
    let ip = resolve_one(&plan.host, resolve_timeout(plan)).await?;
    let control = control_address(ip);

    let port_list = ports
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    transcript.note(format!(
        "surface scan of {ip}{}: {} TCP port(s) ({port_list}); connect timeout {:?}, banner timeout {:?}{}",
        if plan.host == ip.to_string() {
            String::new()
        } else {
            format!(" ({})", plan.host)
        },
        ports.len(),
        plan.connect_timeout,
        plan.banner_timeout,
        match control {
            Some(c) => format!("; open ports are also tried on the control address {c}"),
            None => String::new(),
        }
    ));

    let results: Vec<Result<PortReport, ScanError>> = futures::stream::iter(ports.iter().copied())
        .map(|port| probe(ip, port, control, plan, transcript))
        .buffered(MAX_PARALLEL)
        .collect()
        .await;
    let reports = results.into_iter().collect::<Result<Vec<_>, _>>()?;

    let list = |want: fn(&PortState) -> bool| {
        let l: Vec<String> = reports
            .iter()
            .filter(|r| want(&r.state))
            .map(|r| r.port.to_string())
            .collect();
        if l.is_empty() {
            "none".to_string()
        } else {
            l.join(", ")
        }
    };
    transcript.note(format!(
        "surface scan of {ip} done: open {}; closed {}; no answer {}",
        list(|s| matches!(s, PortState::Open { .. })),
        list(|s| matches!(s, PortState::Closed)),
        list(|s| matches!(s, PortState::NoAnswer)),
    ));
    Ok(reports)
}

/// The longest [`scan`] may take for `plan` (before any slack for a loaded machine): name
/// resolution, then rounds of at most [`MAX_PARALLEL`] ports, each port within
/// connect_timeout + 2 × banner_timeout (the passive read and the nudge's wait; the host-wide
/// control runs alongside the banner read).
pub fn scan_time_bound(plan: &ScanPlan) -> Duration {
    let distinct = plan.ports.iter().collect::<BTreeSet<_>>().len();
    let rounds = u32::try_from(distinct.div_ceil(MAX_PARALLEL)).unwrap_or(u32::MAX);
    let per_port = plan
        .connect_timeout
        .saturating_add(plan.banner_timeout.saturating_mul(2));
    let resolve = if parse_literal(&plan.host).is_some() {
        Duration::ZERO
    } else {
        resolve_timeout(plan)
    };
    per_port.saturating_mul(rounds).saturating_add(resolve)
}

fn resolve_timeout(plan: &ScanPlan) -> Duration {
    plan.connect_timeout.max(Duration::from_secs(1))
}

/// Distinct ports in ascending order, or why the list is refused.
fn check_ports(ports: &[u16]) -> Result<Vec<u16>, ScanError> {
    if ports.contains(&0) {
        return Err(ScanError::BadPort(0));
    }
    let distinct: Vec<u16> = ports
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if distinct.is_empty() {
        return Err(ScanError::NoPorts);
    }
    if distinct.len() > MAX_PORTS {
        return Err(ScanError::TooManyPorts {
            count: distinct.len(),
            max: MAX_PORTS,
        });
    }
    Ok(distinct)
}

/// An IP literal (IPv6 possibly in brackets).
fn parse_literal(host: &str) -> Option<IpAddr> {
    let h = host.trim();
    let h = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    h.parse().ok()
}

/// Whether `ip` is one unicast address a unit can have.
fn is_one_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    }
}

/// A host name as DNS allows it (letters, digits, hyphens; labels of 1 to 63 characters, not
/// starting or ending with a hyphen; a trailing dot allowed), with at least one letter: a name
/// of digits, dots and hyphens only is a malformed address or a range ("127.0.0.1-5").
fn is_host_name(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.len() > 253 {
        return false;
    }
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    labels_ok && name.bytes().any(|b| b.is_ascii_alphabetic())
}

/// The one address `host` names, or why it is not one.
async fn resolve_one(host: &str, timeout: Duration) -> Result<IpAddr, ScanError> {
    if let Some(ip) = parse_literal(host) {
        return if is_one_address(ip) {
            Ok(ip)
        } else {
            Err(ScanError::NotOneHost(host.to_string()))
        };
    }
    // An IPv6 literal with a zone ("fe80::1%eth0") goes to the resolver, which knows zones.
    let zoned = host
        .split_once('%')
        .is_some_and(|(a, zone)| a.parse::<std::net::Ipv6Addr>().is_ok() && is_zone(zone));
    if !zoned && !is_host_name(host) {
        return Err(ScanError::NotOneHost(host.to_string()));
    }
    let found = tokio::time::timeout(timeout, tokio::net::lookup_host((host, 0u16)))
        .await
        .map_err(|_| ScanError::Resolve {
            host: host.to_string(),
            detail: format!("no answer within {timeout:?}"),
        })?
        .map_err(|e| ScanError::Resolve {
            host: host.to_string(),
            detail: e.to_string(),
        })?;
    let mut addresses: Vec<IpAddr> = Vec::new();
    for a in found {
        if !addresses.contains(&a.ip()) {
            addresses.push(a.ip());
        }
    }
    match addresses.as_slice() {
        [] => Err(ScanError::Resolve {
            host: host.to_string(),
            detail: "no address".to_string(),
        }),
        [one] if is_one_address(*one) => Ok(*one),
        [_] => Err(ScanError::NotOneHost(host.to_string())),
        _ => Err(ScanError::Ambiguous {
            host: host.to_string(),
            addresses,
        }),
    }
}

fn is_zone(zone: &str) -> bool {
    !zone.is_empty()
        && zone
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The control address for a loopback host, never the host itself; none for other hosts.
fn control_address(ip: IpAddr) -> Option<IpAddr> {
    if !ip.is_loopback() {
        return None;
    }
    CONTROL_ADDRESSES
        .iter()
        .map(|c| IpAddr::V4(*c))
        .find(|c| *c != ip)
}

/// How a connection attempt ended.
enum Connected {
    Yes(TcpStream),
    Refused,
    NoAnswer(String),
}

async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Connected, std::io::Error> {
    use std::io::ErrorKind;
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => Ok(Connected::NoAnswer(format!("no answer within {timeout:?}"))),
        Ok(Ok(s)) => Ok(Connected::Yes(s)),
        Ok(Err(e)) => match e.kind() {
            ErrorKind::ConnectionRefused | ErrorKind::ConnectionReset => Ok(Connected::Refused),
            ErrorKind::TimedOut | ErrorKind::HostUnreachable | ErrorKind::NetworkUnreachable => {
                Ok(Connected::NoAnswer(e.to_string()))
            }
            _ => Err(e),
        },
    }
}

/// One port: connect, grab a banner, guess the service, try the control address alongside.
async fn probe(
    ip: IpAddr,
    port: u16,
    control: Option<IpAddr>,
    plan: &ScanPlan,
    transcript: &Transcript,
) -> Result<PortReport, ScanError> {
    let addr = SocketAddr::new(ip, port);
    let stream = match connect(addr, plan.connect_timeout).await {
        Ok(Connected::Yes(s)) => s,
        Ok(Connected::Refused) => {
            return Ok(PortReport {
                port,
                state: PortState::Closed,
                host_wide: false,
                closed_at_once: false,
            })
        }
        Ok(Connected::NoAnswer(why)) => {
            transcript.note(format!("port {port}: no answer ({why})"));
            return Ok(PortReport {
                port,
                state: PortState::NoAnswer,
                host_wide: false,
                closed_at_once: false,
            });
        }
        Err(e) => {
            return Err(ScanError::Connect {
                port,
                detail: e.to_string(),
            })
        }
    };

    // The control connect runs alongside the banner read, so it adds no time; it is bounded
    // by the banner phase's own bound.
    let control_wait = plan
        .connect_timeout
        .min(plan.banner_timeout.saturating_mul(2));
    let control_probe = async {
        let Some(c) = control else {
            return false;
        };
        matches!(
            connect(SocketAddr::new(c, port), control_wait).await,
            Ok(Connected::Yes(_))
        )
    };
    let ((banner, how), host_wide) =
        tokio::join!(grab_banner(stream, plan.banner_timeout), control_probe);

    let from_banner = service_from_banner(&banner);
    let from_port = service_from_port(port);
    let service = match (from_banner, from_port) {
        // A plain-text login prompt on a telnet port is telnet without negotiation.
        (Some("login"), Some("telnet")) => Some("telnet"),
        (Some(b), _) => Some(b),
        (None, p) => p,
    };
    let guessed = match (from_banner, service) {
        (_, None) => "service unknown".to_string(),
        (Some(_), Some(s)) => s.to_string(),
        (None, Some(s)) => format!("{s}? (guessed from the port number only)"),
    };
    transcript.note(format!(
        "port {port}: open, {guessed}; {how}: {}{}",
        describe_banner(&banner),
        if host_wide {
            format!(
                "; also accepts on the control address {}: a listener on every local address (the host's, not the unit's)",
                control.map(|c| c.to_string()).unwrap_or_default()
            )
        } else {
            String::new()
        }
    ));
    Ok(PortReport {
        port,
        closed_at_once: how == CLOSED_AT_ONCE,
        state: PortState::Open {
            banner,
            service: service.map(str::to_string),
        },
        host_wide,
    })
}

/// The instant `wait` from now (far in the future for a wait too long to add).
fn after(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}

/// How a banner read ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadEnd {
    /// The cap was reached.
    Full,
    /// The service closed (or reset) the connection.
    Closed,
    /// Nothing (more) came in time.
    Quiet,
}

/// Reads what the service sends into `buf` (up to [`BANNER_CAP`]) until `deadline`, the cap,
/// the connection's end, or [`QUIET_GAP`] without bytes once some came.
async fn read_some(stream: &mut TcpStream, buf: &mut Vec<u8>, deadline: Instant) -> ReadEnd {
    let mut chunk = [0u8; BANNER_CAP];
    loop {
        let room = BANNER_CAP.saturating_sub(buf.len());
        if room == 0 {
            return ReadEnd::Full;
        }
        let until = if buf.is_empty() {
            deadline
        } else {
            deadline.min(after(QUIET_GAP))
        };
        match tokio::time::timeout_at(until, stream.read(&mut chunk[..room])).await {
            Err(_) => return ReadEnd::Quiet,
            Ok(Ok(0)) | Ok(Err(_)) => return ReadEnd::Closed,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// How a port that accepted and closed without a byte is described.
const CLOSED_AT_ONCE: &str = "closed at once without a banner";

/// The banner: first passively, then, when the service said nothing and is still there, after
/// one [`NUDGE`]. Returns the bytes and how they were obtained (for the transcript).
async fn grab_banner(mut stream: TcpStream, banner_timeout: Duration) -> (Vec<u8>, &'static str) {
    let mut banner = Vec::new();
    let end = read_some(&mut stream, &mut banner, after(banner_timeout)).await;
    if !banner.is_empty() {
        return (
            banner,
            if end == ReadEnd::Full {
                "banner (capped)"
            } else {
                "banner"
            },
        );
    }
    if end == ReadEnd::Closed {
        return (banner, CLOSED_AT_ONCE);
    }
    let deadline = after(banner_timeout);
    match tokio::time::timeout_at(deadline, stream.write_all(NUDGE)).await {
        Ok(Ok(())) => {}
        _ => return (banner, "silent, and the nudge could not be sent"),
    }
    let end = read_some(&mut stream, &mut banner, deadline).await;
    let how = match (banner.is_empty(), end) {
        (true, ReadEnd::Closed) => "silent; closed after a HEAD nudge",
        (true, _) => "silent, even after a HEAD nudge",
        (false, ReadEnd::Full) => "answer to a HEAD nudge (capped)",
        (false, _) => "answer to a HEAD nudge",
    };
    (banner, how)
}

/// The service a banner shows: "ssh", "telnet" (option negotiation), "http", "rtsp", "tls" (a
/// TLS record, e.g. an alert answering the nudge), "ftp" or "smtp" (a 220 greeting), "vnc",
/// "login" (a plain-text login or password prompt); `None` when it shows none.
pub fn service_from_banner(banner: &[u8]) -> Option<&'static str> {
    let starts = |p: &[u8]| banner.len() >= p.len() && banner[..p.len()].eq_ignore_ascii_case(p);
    if starts(b"SSH-") {
        return Some("ssh");
    }
    if banner.len() >= 2 && banner[0] == IAC && (SB..=DONT).contains(&banner[1]) {
        return Some("telnet");
    }
    if starts(b"HTTP/") {
        return Some("http");
    }
    if starts(b"RTSP/") {
        return Some("rtsp");
    }
    if banner.len() >= 3 && matches!(banner[0], 0x15 | 0x16) && banner[1] == 3 && banner[2] <= 4 {
        return Some("tls");
    }
    if starts(b"RFB ") {
        return Some("vnc");
    }
    let text = String::from_utf8_lossy(banner).to_ascii_lowercase();
    if starts(b"220") {
        return Some(if text.contains("smtp") { "smtp" } else { "ftp" });
    }
    if ["login:", "username:", "user name:", "password:"]
        .iter()
        .any(|p| text.contains(p))
    {
        return Some("login");
    }
    None
}

/// The service usually found on a well-known port, `None` for others. For 443, 8443 and 8883
/// this is "tls" (HTTPS, MQTT over TLS): a guess, since a TLS server says nothing first.
pub fn service_from_port(port: u16) -> Option<&'static str> {
    Some(match port {
        21 => "ftp",
        22 | 2222 => "ssh",
        23 | 2323 => "telnet",
        80 | 5000 | 8000 | 8080 | 8081 => "http",
        443 | 8443 | 8883 => "tls",
        502 => "modbus",
        554 | 8554 => "rtsp",
        1883 => "mqtt",
        7547 => "cwmp",
        _ => return None,
    })
}

const IAC: u8 = 255;
const DONT: u8 = 254;
const SB: u8 = 250;
const SE: u8 = 240;

/// A banner as text for messages: printable ASCII kept, the rest escaped, at most 100 chars;
/// telnet IAC negotiation shown as e.g. "<telnet negotiation>" followed by the text.
///
/// Escapes: `\r`, `\n`, `\t`, `\\`, `\xNN`; a trailing line ending is dropped; a banner cut
/// short ends in "..."; an empty banner is "(no banner)".
pub fn describe_banner(banner: &[u8]) -> String {
    // An SSH server's identification line is followed by its binary key exchange, where a
    // 0xff byte is no telnet command: only the line is described.
    let banner = match banner.strip_prefix(b"SSH-") {
        Some(rest) => {
            let end = rest
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |p| p + 1);
            &banner[..4 + end]
        }
        None => banner,
    };
    // Telnet commands out, their data kept.
    let mut data = Vec::with_capacity(banner.len());
    let mut negotiated = false;
    let mut i = 0;
    while i < banner.len() {
        let b = banner[i];
        if b != IAC {
            data.push(b);
            i += 1;
            continue;
        }
        match banner.get(i + 1).copied() {
            Some(IAC) => {
                data.push(IAC);
                i += 2;
            }
            Some(SB) => {
                negotiated = true;
                // Up to IAC SE, or the end of what was read.
                let mut j = i + 2;
                while j < banner.len() && !(banner[j] == IAC && banner.get(j + 1) == Some(&SE)) {
                    j += 1;
                }
                i = (j + 2).min(banner.len());
            }
            Some(c) if (251..=254).contains(&c) => {
                negotiated = true;
                i += 3;
            }
            Some(_) => {
                negotiated = true;
                i += 2;
            }
            None => {
                negotiated = true;
                i += 1;
            }
        }
    }
    while matches!(data.last(), Some(b'\r' | b'\n' | 0)) {
        data.pop();
    }

    let mut out = String::new();
    if negotiated {
        out.push_str("<telnet negotiation>");
    }
    if data.is_empty() && !negotiated {
        return "(no banner)".to_string();
    }
    const ELLIPSIS: &str = "...";
    // Cut at a whole escape, never inside one.
    let mut cut = None;
    for &b in &data {
        let before = out.len();
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
        if cut.is_none() && out.len() > DESCRIBE_MAX - ELLIPSIS.len() {
            cut = Some(before);
        }
        if out.len() > DESCRIBE_MAX {
            break;
        }
    }
    if out.len() > DESCRIBE_MAX {
        out.truncate(cut.unwrap_or(DESCRIBE_MAX - ELLIPSIS.len()));
        out.push_str(ELLIPSIS);
    }
    out
}

#[cfg(test)]
mod ssh_banner_tests {
    #[test]
    fn an_ssh_banner_is_its_first_line_only() {
        let b = b"SSH-2.0-dropbear_2022.83\r\n\x00\x00\x01\xff\xfd\x18binary kex";
        assert_eq!(super::describe_banner(b), "SSH-2.0-dropbear_2022.83");
    }
}
