//! Interfaces: the `[interfaces.NAME]` tables, i.e. how the harness reaches a unit.
//!
//! One table shape serves every kind (serial, MQTT, Modbus TCP/RTU, HTTP), so keys that only
//! mean something for another kind are refused here rather than silently ignored, and options
//! the links do not support yet (MQTT 5, MQTT over TLS) are refused instead of falling back.
//! Also the rules steps rely on: which interface a step uses by default (the first written in
//! the file) and how a missing one is reported.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::Path;

use serde_spanned::Spanned;

use super::diag::{later, Diag};
use super::model::{InterfaceSection, ProtocolValue, RawBoardFile};
use super::values::{parse_duration, parse_template};
use super::vars::check_global_var;
use super::{
    GdbSpec, HttpSpec, Interface, LabgridSpec, ModbusRtuSpec, ModbusTcpSpec, MqttBroker, MqttSpec,
    SerialEndpoint, SerialSpec, SshSpec, TelnetSpec, TlsFiles, DEFAULT_STEP_TIMEOUT,
};
use crate::template::Template;

/// The interface steps use when neither they nor their action name one: the first one written
/// in the file (not the first by name).
pub(crate) fn default_interface(raw: &RawBoardFile) -> Option<String> {
    raw.interfaces
        .iter()
        .min_by_key(|(_, i)| i.span().start)
        .map(|(n, _)| n.clone())
}

/// `[interfaces.NAME]` tables, checked: keys suit the kind, endpoints parse, and templates use
/// only unit-wide variables and the emulator's captures (`emulator_vars`). Problems with a
/// value are reported at the value; the table's span is for keys that are missing.
pub(crate) fn build_interfaces(
    path: &Path,
    raw: &RawBoardFile,
    d: &mut Diag,
    emulator_vars: &BTreeSet<String>,
) -> BTreeMap<String, Interface> {
    let mut interfaces = BTreeMap::new();
    // A template of an interface: its syntax and its variables, checked at its span.
    let tmpl = |d: &mut Diag, src: &Spanned<String>| {
        let t = parse_template(d, src)?;
        for v in t.vars() {
            if let Err(msg) = check_global_var(v, emulator_vars) {
                let at = d.narrow(src.span(), &format!("{{{v}}}"));
                d.at(Some(at), msg.to_string(), None);
            }
        }
        Some(t)
    };
    for (name, iface) in &raw.interfaces {
        let span = iface.span();
        let i = iface.get_ref();
        let timeout = match &i.timeout {
            Some(t) => parse_duration(d, t).unwrap_or(DEFAULT_STEP_TIMEOUT),
            None => DEFAULT_STEP_TIMEOUT,
        };
        check_interface_keys(d, name, i);
        let baud = i.baud.as_ref().map(|b| *b.get_ref());
        let unit_id = i.unit_id.as_ref().map_or(1, |u| *u.get_ref());
        match i.kind.get_ref().as_str() {
            "serial" => {
                let what = format!("serial interface {name:?}");
                if let Some(endpoint) = serial_endpoint(d, i, span, &what, &tmpl) {
                    let spec = SerialSpec {
                        endpoint,
                        baud: baud.unwrap_or(115_200),
                        timeout,
                    };
                    interfaces.insert(name.clone(), Interface::Serial(spec));
                }
            }
            "mqtt" => {
                if let Some(spec) = mqtt_spec(path, name, i, d, timeout, &tmpl) {
                    interfaces.insert(name.clone(), Interface::Mqtt(spec));
                }
            }
            "http" => {
                let ca = i.ca.as_ref().and_then(|c| tmpl(d, c));
                interfaces.insert(name.clone(), Interface::Http(HttpSpec { ca, timeout }));
            }
            "modbus-tcp" => match &i.address {
                Some(a) => {
                    if let Some(address) = tmpl(d, a) {
                        let spec = ModbusTcpSpec {
                            address,
                            unit_id,
                            timeout,
                        };
                        interfaces.insert(name.clone(), Interface::ModbusTcp(spec));
                    }
                }
                None => d.at(
                    Some(span),
                    format!("modbus-tcp interface {name:?} needs `address` (host:port)"),
                    Some("add e.g. address = \"127.0.0.1:502\""),
                ),
            },
            "gdb" => match &i.address {
                Some(a) => {
                    if let Some(address) = tmpl(d, a) {
                        let spec = GdbSpec {
                            address,
                            reset_command: i.reset_command.as_ref().map(|r| r.get_ref().clone()),
                            running: i.running.as_ref().is_none_or(|r| *r.get_ref()),
                            policy: super::hardware::debug_policy(d, i),
                            timeout,
                        };
                        interfaces.insert(name.clone(), Interface::Gdb(spec));
                    }
                }
                None => d.at(
                    Some(span),
                    format!("gdb interface {name:?} needs `address` (host:port of the GDB server)"),
                    Some("add e.g. address = \"127.0.0.1:{port.gdb}\" (QEMU, Renode) or \"127.0.0.1:3333\" (OpenOCD)"),
                ),
            },
            "modbus-rtu" => {
                let what = format!("modbus-rtu interface {name:?} (RTU over TCP with `tcp`)");
                if let Some(endpoint) = serial_endpoint(d, i, span, &what, &tmpl) {
                    let spec = ModbusRtuSpec {
                        endpoint,
                        baud: baud.unwrap_or(19_200),
                        unit_id,
                        timeout,
                    };
                    interfaces.insert(name.clone(), Interface::ModbusRtu(spec));
                }
            }
            "probe-rs" => {
                if let Some(spec) =
                    super::hardware::probe_rs_spec(d, name, i, span.clone(), timeout, &tmpl)
                {
                    interfaces.insert(name.clone(), Interface::ProbeRs(spec));
                }
            }
            "rtt" => {
                if let Some(spec) =
                    super::hardware::rtt_spec(d, name, i, raw, span.clone(), timeout)
                {
                    interfaces.insert(name.clone(), Interface::Rtt(spec));
                }
            }
            "telnet" | "ssh" => match &i.address {
                Some(a) => {
                    if let Some(address) = tmpl(d, a) {
                        let terminal = i.terminal.as_ref().map(|t| t.get_ref().clone());
                        if let Some(t) = &i.terminal {
                            if t.get_ref().is_empty()
                                || !t.get_ref().chars().all(|c| c.is_ascii_graphic())
                            {
                                d.at(
                                    Some(t.span()),
                                    format!("interface {name:?}: `terminal` must be a terminal type such as \"vt100\" or \"xterm\""),
                                    None,
                                );
                            }
                        }
                        if i.kind.get_ref() == "telnet" {
                            interfaces.insert(
                                name.clone(),
                                Interface::Telnet(TelnetSpec {
                                    address,
                                    terminal,
                                    timeout,
                                }),
                            );
                        } else {
                            let host_key = i.host_key.as_ref().and_then(|k| {
                                let v = k.get_ref();
                                if v.starts_with("SHA256:") && v.len() > 7 {
                                    Some(v.clone())
                                } else {
                                    d.at(
                                        Some(k.span()),
                                        format!("ssh interface {name:?}: `host_key` must be a SHA-256 fingerprint as `ssh-keygen -l -f KEY` prints it (\"SHA256:...\")"),
                                        Some("leave it out to accept any host key (it is recorded in the evidence)"),
                                    );
                                    None
                                }
                            });
                            interfaces.insert(
                                name.clone(),
                                Interface::Ssh(SshSpec {
                                    address,
                                    host_key,
                                    terminal,
                                    timeout,
                                }),
                            );
                        }
                    }
                }
                None => d.at(
                    Some(span),
                    format!(
                        "{} interface {name:?} needs `address` (host:port)",
                        i.kind.get_ref()
                    ),
                    Some(if i.kind.get_ref() == "telnet" {
                        "add e.g. address = \"{unit.address}:23\""
                    } else {
                        "add e.g. address = \"{unit.address}:22\""
                    }),
                ),
            },
            "power" => {
                if let Some(spec) =
                    super::hardware::power_spec(d, name, i, raw, span.clone(), timeout, &tmpl)
                {
                    interfaces.insert(name.clone(), Interface::Power(spec));
                }
            }
            "labgrid" => {
                if let Some(spec) = labgrid_spec(d, name, i, span.clone(), timeout, &tmpl) {
                    interfaces.insert(name.clone(), Interface::Labgrid(spec));
                }
            }
            other => d.at(
                Some(i.kind.span()),
                format!("unknown interface kind {other:?} for interface {name:?}"),
                Some("supported kinds: \"serial\" (tty path or raw TCP), \"mqtt\", \"modbus-tcp\", \"modbus-rtu\", \"http\", \"gdb\" and \"probe-rs\" (debug ports), \"rtt\" (a console through a debug port), \"power\", \"telnet\", \"ssh\", \"labgrid\" (a console on a labgrid place)"),
            ),
        }
    }
    interfaces
}

/// An `mqtt` interface: broker, credentials, protocol version and TLS files, each checked at
/// its value.
fn mqtt_spec(
    path: &Path,
    name: &str,
    i: &InterfaceSection,
    d: &mut Diag,
    timeout: std::time::Duration,
    tmpl: &dyn Fn(&mut Diag, &Spanned<String>) -> Option<Template>,
) -> Option<MqttSpec> {
    let broker = match &i.broker {
        None => Some(MqttBroker::Embedded),
        Some(b) if b.get_ref() == "embedded" => Some(MqttBroker::Embedded),
        Some(a) => tmpl(d, a).map(MqttBroker::Address),
    };
    let client_id = i.client_id.as_ref().and_then(|t| tmpl(d, t));
    let username = i.username.as_ref().and_then(|t| tmpl(d, t));
    let password = i.password.as_ref().and_then(|t| tmpl(d, t));
    let base = path.parent().unwrap_or(Path::new("."));
    let tls = match (&i.ca, &i.cert, &i.key) {
        (None, None, None) => None,
        (Some(ca), cert, key) => {
            if let (Some(one), None) | (None, Some(one)) = (cert, key) {
                d.at(
                    Some(one.span()),
                    format!(
                        "mqtt interface {name:?}: a client certificate needs both `cert` and `key`"
                    ),
                    None,
                );
            }
            for f in [Some(ca), cert.as_ref(), key.as_ref()]
                .into_iter()
                .flatten()
            {
                let full = base.join(f.get_ref());
                if !full.is_file() {
                    d.at(
                        Some(f.span()),
                        format!("{} is not a readable file", full.display()),
                        Some("paths in board files are relative to the board file"),
                    );
                }
            }
            // Never fall back to plaintext when a board asks for TLS.
            d.at(
                Some(ca.span()),
                format!("mqtt interface {name:?}: MQTT over TLS is not supported yet"),
                Some("remove ca/cert/key to connect without TLS, or expose the broker on a plaintext loopback listener for the bench"),
            );
            Some(TlsFiles {
                ca: base.join(ca.get_ref()),
                cert: cert.as_ref().map(|c| base.join(c.get_ref())),
                key: key.as_ref().map(|k| base.join(k.get_ref())),
            })
        }
        (None, cert, key) => {
            let at = cert.as_ref().or(key.as_ref()).map(|v| v.span());
            d.at(
                at,
                format!("mqtt interface {name:?}: TLS needs `ca` (the lab CA bundle)"),
                None,
            );
            None
        }
    };
    let v5 = match &i.protocol {
        None => false,
        Some(p) => match *p.get_ref() {
            ProtocolValue::Number(3 | 4) => false,
            ProtocolValue::Number(5) => {
                // Parsed so the key is known, but the link speaks 3.1.1 only: refuse rather
                // than silently talk another protocol version.
                d.at(
                    Some(p.span()),
                    "MQTT 5 is not supported yet by hilsec's MQTT interface",
                    Some("use protocol = 3 (MQTT 3.1.1); most brokers and devices accept it"),
                );
                true
            }
            ProtocolValue::Number(other) => {
                d.at(
                    Some(p.span()),
                    format!("mqtt protocol {other} is not supported"),
                    Some("use 3 (MQTT 3.1.1) or 5"),
                );
                false
            }
            ProtocolValue::Name(ref other) => {
                d.at(
                    Some(p.span()),
                    format!("mqtt protocol {other:?} is not supported"),
                    Some("use 3 (MQTT 3.1.1) or 5"),
                );
                false
            }
        },
    };
    Some(MqttSpec {
        broker: broker?,
        client_id,
        username,
        password,
        v5,
        tls,
        timeout,
    })
}

/// A `labgrid` interface: a place (required), optionally its coordinator, which serial port
/// of the place, the baud rate and the `labgrid-client` executable.
fn labgrid_spec(
    d: &mut Diag,
    name: &str,
    i: &InterfaceSection,
    table: Range<usize>,
    timeout: std::time::Duration,
    tmpl: &dyn Fn(&mut Diag, &Spanned<String>) -> Option<Template>,
) -> Option<LabgridSpec> {
    // Every problem of the table is reported, not only the first.
    let place = match &i.place {
        None => {
            d.at(
                Some(table),
                format!("labgrid interface {name:?} needs `place` (the labgrid place to acquire)"),
                Some("add e.g. place = \"{unit.place}\" with vars = { place = \"rack1-slot3\" } in each [[unit]]"),
            );
            None
        }
        Some(p) if p.get_ref().trim().is_empty() => {
            d.at(
                Some(p.span()),
                format!("labgrid interface {name:?}: `place` is empty"),
                Some("name the place as `labgrid-client places` lists it"),
            );
            None
        }
        Some(p) => tmpl(d, p),
    };
    let coordinator = i.coordinator.as_ref().and_then(|c| {
        let v = c.get_ref();
        // host or host:port; a template's value is checked by labgrid-client when it runs.
        if v.trim().is_empty() || v.chars().any(char::is_whitespace) || v.contains('/') {
            d.at(
                Some(c.span()),
                format!("labgrid interface {name:?}: `coordinator` must be the coordinator's host:port, e.g. \"lab-coordinator:20408\""),
                Some("leave it out to use LG_COORDINATOR or labgrid-client's default (127.0.0.1:20408)"),
            );
            return None;
        }
        tmpl(d, c)
    });
    let resource = i.resource.as_ref().and_then(|r| {
        if r.get_ref().trim().is_empty() {
            d.at(
                Some(r.span()),
                format!("labgrid interface {name:?}: `resource` is empty"),
                Some("name the serial port as `labgrid-client -p PLACE show` lists it, or leave it out when the place has one"),
            );
            return None;
        }
        tmpl(d, r)
    });
    let baud = match &i.baud {
        Some(b) if *b.get_ref() == 0 => {
            d.at(
                Some(b.span()),
                format!("labgrid interface {name:?}: `baud` must be a baud rate above 0"),
                Some("leave it out to keep the speed the exporter configured for the port"),
            );
            None
        }
        Some(b) => Some(*b.get_ref()),
        None => None,
    };
    let client = match &i.client {
        Some(c) if c.get_ref().trim().is_empty() => {
            d.at(
                Some(c.span()),
                format!("labgrid interface {name:?}: `client` is empty"),
                Some("leave it out to run `labgrid-client` from PATH, or give its path"),
            );
            String::new()
        }
        Some(c) => c.get_ref().clone(),
        None => "labgrid-client".to_string(),
    };
    Some(LabgridSpec {
        place: place?,
        coordinator,
        resource,
        baud,
        client,
        timeout,
    })
}

/// "interface X is not declared", naming those that are.
pub(crate) fn missing_iface_msg(name: &str, raw: &RawBoardFile) -> String {
    let have: Vec<&str> = raw.interfaces.keys().map(String::as_str).collect();
    if have.is_empty() {
        format!("interface {name:?} is not declared (this file declares no interfaces)")
    } else {
        format!(
            "interface {name:?} is not declared (declared: {})",
            have.join(", ")
        )
    }
}

/// A tty `path` or a raw-TCP `tcp` endpoint: exactly one of them.
fn serial_endpoint(
    d: &mut Diag,
    i: &InterfaceSection,
    table: Range<usize>,
    what: &str,
    tmpl: &dyn Fn(&mut Diag, &Spanned<String>) -> Option<Template>,
) -> Option<SerialEndpoint> {
    match (&i.path, &i.tcp) {
        (Some(p), None) => tmpl(d, p).map(SerialEndpoint::Tty),
        (None, Some(t)) => tmpl(d, t).map(SerialEndpoint::Tcp),
        (p, t) => {
            // Both given: the second one written is the extra one; neither: the table.
            let at = match (p, t) {
                (Some(p), Some(t)) => Some(later(p.span(), t.span())),
                _ => Some(table),
            };
            d.at(
                at,
                format!("{what} needs exactly one of `path` (a tty) or `tcp` (host:port)"),
                None,
            );
            None
        }
    }
}

/// Keys that only mean something for some interface kinds, reported at the first one written.
fn check_interface_keys(d: &mut Diag, name: &str, i: &InterfaceSection) {
    let kind = i.kind.get_ref().as_str();
    let serialish = matches!(kind, "serial" | "modbus-rtu");
    let mqtt = kind == "mqtt";
    let probe = kind == "probe-rs";
    let debug_port = probe || kind == "gdb";
    let rtt = kind == "rtt";
    let power = kind == "power";
    let labgrid = kind == "labgrid";
    let span = |v: &Option<Spanned<String>>| v.as_ref().map(|v| v.span());
    let keys = [
        ("path", span(&i.path), serialish),
        ("tcp", span(&i.tcp), serialish),
        (
            "baud",
            i.baud.as_ref().map(|v| v.span()),
            serialish || labgrid,
        ),
        ("broker", span(&i.broker), mqtt || power),
        ("client_id", span(&i.client_id), mqtt),
        ("username", span(&i.username), mqtt || power),
        ("password", span(&i.password), mqtt || power),
        (
            "protocol",
            i.protocol.as_ref().map(|v| v.span()),
            mqtt || probe,
        ),
        ("ca", span(&i.ca), mqtt || kind == "http"),
        ("cert", span(&i.cert), mqtt),
        ("key", span(&i.key), mqtt),
        (
            "address",
            span(&i.address),
            kind == "modbus-tcp" || kind == "gdb" || power || kind == "telnet" || kind == "ssh",
        ),
        ("reset_command", span(&i.reset_command), kind == "gdb"),
        ("running", i.running.as_ref().map(|v| v.span()), debug_port),
        (
            "unit_id",
            i.unit_id.as_ref().map(|v| v.span()),
            kind.starts_with("modbus") || power,
        ),
        ("chip", span(&i.chip), probe),
        ("probe", span(&i.probe), probe),
        ("speed_khz", i.speed_khz.as_ref().map(|v| v.span()), probe),
        (
            "connect_under_reset",
            i.connect_under_reset.as_ref().map(|v| v.span()),
            probe,
        ),
        ("core", i.core.as_ref().map(|v| v.span()), probe),
        (
            "allow_flash",
            i.allow_flash.as_ref().map(|v| v.span()),
            debug_port,
        ),
        ("lock_test_address", span(&i.lock_test_address), debug_port),
        ("debug", span(&i.debug), rtt),
        ("control_block", span(&i.control_block), rtt),
        ("scan", span(&i.scan), rtt),
        ("up", i.up.as_ref().map(|v| v.span()), rtt),
        ("down", i.down.as_ref().map(|v| v.span()), rtt),
        ("poll", span(&i.poll), rtt),
        ("driver", span(&i.driver), power),
        ("on_command", span(&i.on_command), power),
        ("off_command", span(&i.off_command), power),
        ("cycle_command", span(&i.cycle_command), power),
        ("coil", i.coil.as_ref().map(|v| v.span()), power),
        ("on_value", i.on_value.as_ref().map(|v| v.span()), power),
        ("topic", span(&i.topic), power),
        ("relay", i.relay.as_ref().map(|v| v.span()), power),
        ("off_time", span(&i.off_time), power),
        (
            "terminal",
            span(&i.terminal),
            kind == "telnet" || kind == "ssh",
        ),
        ("host_key", span(&i.host_key), kind == "ssh"),
        ("place", span(&i.place), labgrid),
        ("coordinator", span(&i.coordinator), labgrid),
        ("resource", span(&i.resource), labgrid),
        ("client", span(&i.client), labgrid),
    ];
    let mut wrong: Vec<(&str, Range<usize>)> = keys
        .into_iter()
        .filter_map(|(k, at, ok)| at.filter(|_| !ok).map(|at| (k, at)))
        .collect();
    wrong.sort_by_key(|(_, at)| at.start);
    if let Some((_, first)) = wrong.first() {
        let names: Vec<&str> = wrong.iter().map(|(k, _)| *k).collect();
        d.at(
            Some(first.clone()),
            format!(
                "interface {name:?} of kind {kind:?} does not take {}",
                names.join(", ")
            ),
            Some("see boards/README.md for the keys of each interface kind"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{error, load, HEAD};
    use super::super::{Interface, MqttBroker, SerialEndpoint, Step};

    #[test]
    fn the_default_interface_is_the_first_written() {
        let text = "[model]\nname = \"T\"\n\n[interfaces.zconsole]\nkind = \"serial\"\npath = \"/dev/null\"\n\n[interfaces.amqtt]\nkind = \"mqtt\"\n\n[actions.a]\nsteps = [ { send = \"x\" } ]\n";
        let m = load("default-iface", text).expect("loads");
        match &m.actions["a"].steps[0] {
            Step::Send { on, .. } => assert_eq!(on, "zconsole"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_action_on_sets_the_default_of_its_steps() {
        let text = format!(
            "{HEAD}\n[interfaces.mqtt]\nkind = \"mqtt\"\n\n[actions.a]\non = \"mqtt\"\nsteps = [ {{ publish = \"t\" }}, {{ send = \"x\", on = \"console\" }} ]\n"
        );
        let m = load("action-on", &text).expect("loads");
        let ons: Vec<&str> = m.actions["a"]
            .steps
            .iter()
            .map(|s| match s {
                Step::Publish { on, .. } | Step::Send { on, .. } => on.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ons, ["mqtt", "console"]);
    }

    #[test]
    fn kinds_and_their_defaults() {
        let text = format!(
            "{HEAD}\n[interfaces.tcp]\nkind = \"serial\"\ntcp = \"127.0.0.1:3001\"\n\n[interfaces.mqtt]\nkind = \"mqtt\"\n\n[interfaces.rtu]\nkind = \"modbus-rtu\"\npath = \"/dev/null\"\n"
        );
        let m = load("kinds", &text).expect("loads");
        match &m.interfaces["console"] {
            Interface::Serial(s) => {
                assert_eq!(s.baud, 115_200);
                assert!(matches!(s.endpoint, SerialEndpoint::Tty(_)));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(&m.interfaces["tcp"], Interface::Serial(s) if matches!(s.endpoint, SerialEndpoint::Tcp(_)))
        );
        assert!(
            matches!(&m.interfaces["mqtt"], Interface::Mqtt(q) if matches!(q.broker, MqttBroker::Embedded))
        );
        assert!(
            matches!(&m.interfaces["rtu"], Interface::ModbusRtu(r) if r.baud == 19_200 && r.unit_id == 1)
        );
    }

    #[test]
    fn keys_of_another_kind_are_refused() {
        let text = format!("{HEAD}broker = \"embedded\"\nunit_id = 3\n");
        let (line, col, msg, help) = error("other-kind", &text);
        assert_eq!((line, col), (7, 10), "the first such key's value: {msg}");
        assert_eq!(
            msg,
            "interface \"console\" of kind \"serial\" does not take broker, unit_id"
        );
        assert!(help.is_some());
    }

    #[test]
    fn unsupported_options_are_refused_not_ignored() {
        for (extra, words) in [
            ("protocol = 5\n", "MQTT 5 is not supported yet"),
            ("protocol = 7\n", "mqtt protocol 7 is not supported"),
            ("cert = \"c.pem\"\n", "TLS needs `ca`"),
        ] {
            let text =
                format!("[model]\nname = \"T\"\n\n[interfaces.mqtt]\nkind = \"mqtt\"\n{extra}");
            let (line, _, msg, _) = error("mqtt-opts", &text);
            assert_eq!(line, 6, "the key's value: {msg}");
            assert!(msg.contains(words), "{msg}");
        }
        let text = "[model]\nname = \"T\"\n\n[interfaces.c]\nkind = \"serial\"\n";
        let (_, _, msg, _) = error("no-endpoint", text);
        assert!(
            msg.contains("needs exactly one of `path` (a tty) or `tcp`"),
            "{msg}"
        );
        let text = "[model]\nname = \"T\"\n\n[interfaces.c]\nkind = \"can\"\n";
        let (line, col, msg, help) = error("can", text);
        assert_eq!((line, col), (5, 8), "{msg}");
        assert!(msg.contains("unknown interface kind \"can\""), "{msg}");
        assert!(help.unwrap_or_default().contains("\"modbus-tcp\""));
    }

    #[test]
    fn endpoint_templates_use_only_known_variables() {
        let text = "[model]\nname = \"T\"\n\n[emulator]\nkind = \"sim\"\nready = 'console=(?P<console>\\S+)'\n\n[interfaces.c]\nkind = \"serial\"\npath = \"{emulator.console}\"\n";
        let m = load("emu-path", text).expect("loads");
        assert_eq!(
            m.interfaces["c"].templates()[0].vars().collect::<Vec<_>>(),
            ["emulator.console"]
        );
        let bad = text.replace("{emulator.console}", "{emulator.modbus}");
        let (line, col, msg, _) = error("emu-path-bad", &bad);
        assert_eq!((line, col), (10, 9), "the placeholder in the path: {msg}");
        assert!(
            msg.contains("no named capture \"modbus\" (it has: console)"),
            "{msg}"
        );
        let bad = text.replace("{emulator.console}", "{device.tty}");
        let (_, _, msg, _) = error("unknown-path-var", &bad);
        assert!(msg.starts_with("unknown variable {device.tty}"), "{msg}");
    }
}

#[cfg(test)]
mod network_surface_tests {
    use super::super::testutil::{error, load, HEAD};
    use super::super::{Interface, Step};
    use crate::iface::http::{HttpAuthScheme, HttpMethod};
    use crate::iface::ssh::SshAuthMethod;

    #[test]
    fn telnet_and_ssh_interfaces_with_their_steps() {
        let text = format!(
            r#"{HEAD}
[interfaces.telnet]
kind = "telnet"
address = "{{unit.address}}:2323"
terminal = "xterm"

[interfaces.ssh]
kind = "ssh"
address = "192.0.2.7:22"
host_key = "SHA256:abcdef"

[interfaces.web]
kind = "http"

[actions.login_telnet]
params = ["user", "password"]
on = "telnet"
steps = [ {{ send = "{{user}}\n" }}, {{ expect = 'Password: $' }} ]

[actions.login_ssh]
params = ["user", "password"]
on = "ssh"
steps = [ {{ ssh_auth = "keyboard-interactive", user = "{{user}}", password = "{{password}}" }}, {{ expect = '\$ $' }} ]

[actions.login_form]
params = ["user", "password"]
on = "web"
steps = [
  {{ get = "https://h/login", expect = 'csrf" value="(?P<csrf>[^"]+)"' }},
  {{ post = "https://h/login", form = {{ u = "{{user}}", p = "{{password}}", csrf = "{{csrf}}" }}, expect = 'Redirect: 302' }},
  {{ get = "https://h/admin", auth = "digest", user = "{{user}}", password = "{{password}}" }},
]

[[unit]]
name = "u1"
address = "192.0.2.7"
"#
        );
        let m = load("net-ifaces", &text).expect("loads");
        match &m.interfaces["telnet"] {
            Interface::Telnet(t) => assert_eq!(t.terminal.as_deref(), Some("xterm")),
            other => panic!("{other:?}"),
        }
        match &m.interfaces["ssh"] {
            Interface::Ssh(s) => assert_eq!(s.host_key.as_deref(), Some("SHA256:abcdef")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            &m.actions["login_ssh"].steps[0],
            Step::SshAuth {
                method: SshAuthMethod::KeyboardInteractive,
                ..
            }
        ));
        let steps = &m.actions["login_form"].steps;
        match &steps[1] {
            Step::Http {
                method: HttpMethod::Post,
                form,
                ..
            } => {
                let names: Vec<&str> = form.iter().map(|(n, _)| n.as_str()).collect();
                assert_eq!(names, ["csrf", "p", "u"]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            &steps[2],
            Step::Http {
                scheme: HttpAuthScheme::Digest,
                auth: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn mistakes_in_network_surfaces_are_named() {
        let cases: &[(&str, &str)] = &[
            (
                "[interfaces.t]\nkind = \"telnet\"\n",
                "telnet interface \"t\" needs `address`",
            ),
            (
                "[interfaces.s]\nkind = \"ssh\"\naddress = \"h:22\"\nhost_key = \"abc\"\n",
                "`host_key` must be a SHA-256 fingerprint",
            ),
            (
                "[interfaces.t]\nkind = \"telnet\"\naddress = \"h:23\"\nhost_key = \"SHA256:x\"\n",
                "does not take host_key",
            ),
            (
                "[actions.a]\nsteps = [ { ssh_auth = \"password\", user = \"u\", password = \"p\" } ]\n",
                "`ssh_auth` needs a ssh interface",
            ),
            (
                "[interfaces.s]\nkind = \"ssh\"\naddress = \"h:22\"\n[actions.a]\non = \"s\"\nsteps = [ { ssh_auth = \"publickey\", user = \"u\", password = \"p\" } ]\n",
                "unknown SSH authentication method \"publickey\"",
            ),
            (
                "[interfaces.s]\nkind = \"ssh\"\naddress = \"h:22\"\n[actions.a]\non = \"s\"\nsteps = [ { ssh_auth = \"password\", user = \"u\" } ]\n",
                "`ssh_auth` needs `user` and `password`",
            ),
            (
                "[actions.a]\nsteps = [ { send = \"x\", form = { a = \"b\" } } ]\n",
                "a `send` step does not take `form`",
            ),
            (
                "[interfaces.w]\nkind = \"http\"\n[actions.a]\non = \"w\"\nsteps = [ { get = \"http://h/\", auth = \"ntlm\", user = \"u\", password = \"p\" } ]\n",
                "unknown HTTP authentication \"ntlm\"",
            ),
            (
                "[interfaces.w]\nkind = \"http\"\n[actions.a]\non = \"w\"\nsteps = [ { get = \"http://h/\", form = { a = \"b\" } } ]\n",
                "a `get` step does not take `form`",
            ),
            (
                "[declarations.network]\naddress = \"10.0.0.0/24\"\n",
                "is not one host",
            ),
            (
                "[declarations.network]\naddress = \"10.0.0.1\"\nports = []\n",
                "`ports` lists 0 ports",
            ),
            (
                "[declarations.broker]\naddress = \"h:1883\"\ncommand_topics = [\"a/#\"]\n",
                "has a wildcard",
            ),
            (
                "[[unit]]\nname = \"u\"\naddress = \"10.0.0.1:80\"\n",
                "is not one unit's IP address or host name",
            ),
            (
                "[declarations.network]\n\n[[unit]]\nname = \"u\"\n",
                "has no `address`, which the model's templates use as {unit.address}",
            ),
            (
                "[[unit]]\nname = \"u\"\naddress = \"10.0.0.1-20\"\n",
                "is not one unit's IP address or host name",
            ),
            (
                "[[unit]]\nname = \"u\"\naddress = \"0.0.0.0\"\n",
                "is not one unit's IP address or host name",
            ),
            (
                "[[unit]]\nname = \"u\"\nvars = { address = \"10.0.0.1\" }\n",
                "`vars` may not define \"address\"",
            ),
            (
                "[declarations.network]\naddress = \"10.0.0.1\"\nservices = [0]\n",
                "port 0 is no service",
            ),
            (
                "[declarations.network]\naddress = \"10.0.0.1\"\nports = [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]\nconnect_timeout = \"30s\"\nbanner_timeout = \"30s\"\n",
                "more than the 100 s a scan may use",
            ),
        ];
        for (i, (tail, want)) in cases.iter().enumerate() {
            let text = format!("{HEAD}\n{tail}");
            let (_, _, msg, _) = error(&format!("net-mistake-{i}"), &text);
            assert!(msg.contains(want), "case {i}: {msg:?} should say {want:?}");
        }
    }
}

#[cfg(test)]
mod labgrid_tests {
    use super::super::testutil::{error, load};
    use super::super::Interface;

    const MODEL: &str = "[model]\nname = \"T\"\n\n[interfaces.console]\nkind = \"labgrid\"\n";

    #[test]
    fn a_labgrid_console_with_its_keys() {
        let text = format!(
            "{MODEL}place = \"{{unit.place}}\"\ncoordinator = \"lab:20408\"\nresource = \"uart0\"\nbaud = 57600\nclient = \"/opt/lg/bin/labgrid-client\"\ntimeout = \"7s\"\n\n[actions.a]\nsteps = [ {{ send = \"x\" }}, {{ expect = 'y' }} ]\n\n[[unit]]\nname = \"u1\"\nvars = {{ place = \"rack1-slot3\" }}\n"
        );
        let m = load("labgrid-ok", &text).expect("loads");
        match &m.interfaces["console"] {
            Interface::Labgrid(l) => {
                assert_eq!(l.baud, Some(57_600));
                assert_eq!(l.client, "/opt/lg/bin/labgrid-client");
                assert!(l.coordinator.is_some() && l.resource.is_some());
                assert_eq!(l.timeout, std::time::Duration::from_secs(7));
                assert_eq!(l.place.vars().collect::<Vec<_>>(), ["unit.place"]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(m.interfaces["console"].kind(), "labgrid");
        // Defaults.
        let m = load("labgrid-min", &format!("{MODEL}place = \"p1\"\n")).expect("loads");
        match &m.interfaces["console"] {
            Interface::Labgrid(l) => {
                assert_eq!((l.baud, l.client.as_str()), (None, "labgrid-client"));
                assert!(l.coordinator.is_none() && l.resource.is_none());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn labgrid_mistakes_are_named_where_they_are() {
        let cases: &[(&str, (usize, usize), &str)] = &[
            ("", (4, 1), "labgrid interface \"console\" needs `place`"),
            ("place = \"\"\n", (6, 9), "`place` is empty"),
            (
                "place = \"p\"\ncoordinator = \"grpc://lab:20408\"\n",
                (7, 15),
                "`coordinator` must be the coordinator's host:port",
            ),
            (
                "place = \"p\"\nbaud = 0\n",
                (7, 8),
                "`baud` must be a baud rate above 0",
            ),
            (
                "place = \"p\"\nclient = \" \"\n",
                (7, 10),
                "`client` is empty",
            ),
            (
                "place = \"p\"\npath = \"/dev/ttyUSB0\"\n",
                (7, 8),
                "of kind \"labgrid\" does not take path",
            ),
            (
                "place = \"{device.slot}\"\n",
                (6, 10),
                "unknown variable {device.slot}",
            ),
        ];
        for (i, (tail, at, want)) in cases.iter().enumerate() {
            let (line, col, msg, _) = error(&format!("labgrid-{i}"), &format!("{MODEL}{tail}"));
            assert!(msg.contains(want), "case {i}: {msg:?} should say {want:?}");
            assert_eq!((line, col), *at, "case {i}: {msg}");
        }
        // Keys of the labgrid kind on another kind.
        let text = "[model]\nname = \"T\"\n\n[interfaces.c]\nkind = \"telnet\"\naddress = \"h:23\"\nplace = \"p\"\n";
        let (line, _, msg, _) = error("labgrid-keys-elsewhere", text);
        assert_eq!(line, 7);
        assert!(msg.contains("does not take place"), "{msg}");
    }
}
