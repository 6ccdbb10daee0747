//! Interfaces: the `[interfaces.NAME]` tables, i.e. how the harness reaches a unit.
//!
//! One table shape serves every kind (serial, MQTT, Modbus TCP/RTU, HTTP), so keys that only
//! mean something for another kind are refused here rather than silently ignored, and options
//! the links do not support yet (MQTT 5, MQTT over TLS) are refused instead of falling back.
//! Also the rules steps rely on: which interface a step uses by default (the first written in
//! the file) and how a missing one is reported.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::diag::Diag;
use super::model::{InterfaceSection, RawBoardFile};
use super::values::{parse_duration, parse_template};
use super::vars::check_global_var;
use super::{
    HttpSpec, Interface, ModbusRtuSpec, ModbusTcpSpec, MqttBroker, MqttSpec, SerialEndpoint,
    SerialSpec, TlsFiles, DEFAULT_STEP_TIMEOUT,
};

/// The interface steps use when neither they nor their action name one: the first one written
/// in the file (not the first by name).
pub(crate) fn default_interface(raw: &RawBoardFile) -> Option<String> {
    raw.interfaces
        .iter()
        .min_by_key(|(_, i)| i.span().start)
        .map(|(n, _)| n.clone())
}

/// `[interfaces.NAME]` tables, checked: keys suit the kind, endpoints parse, and templates use
/// only unit-wide variables and the emulator's captures (`emulator_vars`).
pub(crate) fn build_interfaces(
    path: &Path,
    raw: &RawBoardFile,
    d: &mut Diag,
    emulator_vars: &BTreeSet<String>,
) -> BTreeMap<String, Interface> {
    let mut interfaces = BTreeMap::new();
    for (name, iface) in &raw.interfaces {
        let span = iface.span();
        let i = iface.get_ref();
        let timeout = match &i.timeout {
            Some(t) => parse_duration(d, t).unwrap_or(DEFAULT_STEP_TIMEOUT),
            None => DEFAULT_STEP_TIMEOUT,
        };
        check_interface_keys(d, name, i, span.clone());
        match i.kind.get_ref().as_str() {
        "serial" => {
            let endpoint = serial_endpoint(d, i, span.clone(), &format!("serial interface {name:?}"));
            if let Some(ep) = endpoint {
                interfaces.insert(
                    name.clone(),
                    Interface::Serial(SerialSpec {
                        endpoint: ep,
                        baud: i.baud.unwrap_or(115_200),
                        timeout,
                    }),
                );
            }
        }
        "mqtt" => {
            let broker = match i.broker.as_deref() {
                None | Some("embedded") => Some(MqttBroker::Embedded),
                Some(a) => parse_template(d, span.clone(), a).map(MqttBroker::Address),
            };
            let opt = |d: &mut Diag, v: &Option<String>| {
                v.as_ref().and_then(|t| parse_template(d, span.clone(), t))
            };
            let client_id = opt(d, &i.client_id);
            let username = opt(d, &i.username);
            let password = opt(d, &i.password);
            let base = path.parent().unwrap_or(Path::new("."));
            let tls = match (&i.ca, &i.cert, &i.key) {
                (None, None, None) => None,
                (Some(ca), cert, key) => {
                    let files = TlsFiles {
                        ca: base.join(ca),
                        cert: cert.as_ref().map(|c| base.join(c)),
                        key: key.as_ref().map(|k| base.join(k)),
                    };
                    if files.cert.is_some() != files.key.is_some() {
                        d.at(Some(span.clone()), format!("mqtt interface {name:?}: a client certificate needs both `cert` and `key`"), None);
                    }
                    for f in [Some(&files.ca), files.cert.as_ref(), files.key.as_ref()].into_iter().flatten() {
                        if !f.is_file() {
                            d.at(Some(span.clone()), format!("{} is not a readable file", f.display()), Some("paths in board files are relative to the board file"));
                        }
                    }
                    Some(files)
                }
                _ => {
                    d.at(Some(span.clone()), format!("mqtt interface {name:?}: TLS needs `ca` (the lab CA bundle)"), None);
                    None
                }
            };
            let v5 = match i.protocol {
                None | Some(3) | Some(4) => false,
                Some(5) => {
                    // Parsed so the key is known, but the link speaks 3.1.1 only: refuse
                    // rather than silently talk another protocol version.
                    d.at(Some(span.clone()), "MQTT 5 is not supported yet by hilsec's MQTT interface", Some("use protocol = 3 (MQTT 3.1.1); most brokers and devices accept it"));
                    true
                }
                Some(other) => {
                    d.at(Some(span.clone()), format!("mqtt protocol {other} is not supported"), Some("use 3 (MQTT 3.1.1) or 5"));
                    false
                }
            };
            if tls.is_some() {
                // Never fall back to plaintext when a board asks for TLS.
                d.at(Some(span.clone()), format!("mqtt interface {name:?}: MQTT over TLS is not supported yet"), Some("remove ca/cert/key to connect without TLS, or expose the broker on a plaintext loopback listener for the bench"));
            }
            if let Some(broker) = broker {
                let spec = MqttSpec { broker, client_id, username, password, v5, tls, timeout };
                interfaces.insert(name.clone(), Interface::Mqtt(spec));
            }
        }
        "http" => {
            let ca = i.ca.as_ref().and_then(|c| parse_template(d, span.clone(), c));
            interfaces.insert(name.clone(), Interface::Http(HttpSpec { ca, timeout }));
        }
        "modbus-tcp" => match &i.address {
            Some(a) => {
                if let Some(address) = parse_template(d, span.clone(), a) {
                    interfaces.insert(
                        name.clone(),
                        Interface::ModbusTcp(ModbusTcpSpec { address, unit_id: i.unit_id.unwrap_or(1), timeout }),
                    );
                }
            }
            None => d.at(Some(span.clone()), format!("modbus-tcp interface {name:?} needs `address` (host:port)"), None),
        },
        "modbus-rtu" => {
            let endpoint = serial_endpoint(d, i, span.clone(), &format!("modbus-rtu interface {name:?} (RTU over TCP with `tcp`)"));
            if let Some(endpoint) = endpoint {
                interfaces.insert(
                    name.clone(),
                    Interface::ModbusRtu(ModbusRtuSpec { endpoint, baud: i.baud.unwrap_or(19_200), unit_id: i.unit_id.unwrap_or(1), timeout }),
                );
            }
        }
        other => d.at(
            Some(i.kind.span()),
            format!("unknown interface kind {other:?} for interface {name:?}"),
            Some("supported kinds: \"serial\" (tty path or raw TCP), \"mqtt\", \"modbus-tcp\", \"modbus-rtu\", \"http\""),
        ),
    }
    }

    for (name, iface) in &interfaces {
        for t in iface.templates() {
            for v in t.vars() {
                if let Err(msg) = check_global_var(v, emulator_vars) {
                    let span = raw.interfaces.get(name).map(|i| i.span());
                    d.at(span, msg, None);
                }
            }
        }
    }
    interfaces
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
    span: std::ops::Range<usize>,
    what: &str,
) -> Option<SerialEndpoint> {
    match (&i.path, &i.tcp) {
        (Some(p), None) => parse_template(d, span, p).map(SerialEndpoint::Tty),
        (None, Some(t)) => parse_template(d, span, t).map(SerialEndpoint::Tcp),
        _ => {
            d.at(
                Some(span),
                format!("{what} needs exactly one of `path` (a tty) or `tcp` (host:port)"),
                None,
            );
            None
        }
    }
}

/// Keys that only mean something for some interface kinds.
fn check_interface_keys(
    d: &mut Diag,
    name: &str,
    i: &InterfaceSection,
    span: std::ops::Range<usize>,
) {
    let kind = i.kind.get_ref().as_str();
    let mut wrong = Vec::new();
    let serialish = matches!(kind, "serial" | "modbus-rtu");
    if !serialish {
        if i.path.is_some() {
            wrong.push("path");
        }
        if i.tcp.is_some() {
            wrong.push("tcp");
        }
        if i.baud.is_some() {
            wrong.push("baud");
        }
    }
    if kind != "mqtt" {
        for (k, present) in [
            ("broker", i.broker.is_some()),
            ("client_id", i.client_id.is_some()),
            ("username", i.username.is_some()),
            ("password", i.password.is_some()),
            ("protocol", i.protocol.is_some()),
            ("ca", i.ca.is_some() && kind != "http"),
            ("cert", i.cert.is_some()),
            ("key", i.key.is_some()),
        ] {
            if present {
                wrong.push(k);
            }
        }
    }
    if kind != "modbus-tcp" && i.address.is_some() {
        wrong.push("address");
    }
    if !kind.starts_with("modbus") && i.unit_id.is_some() {
        wrong.push("unit_id");
    }
    if !wrong.is_empty() {
        d.at(
            Some(span),
            format!(
                "interface {name:?} of kind {kind:?} does not take {}",
                wrong.join(", ")
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
        let (line, _, msg, help) = error("other-kind", &text);
        assert_eq!(line, 4, "the table's header: {msg}");
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
            assert_eq!(line, 4, "the table's header: {msg}");
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
        let (line, _, msg, _) = error("emu-path-bad", &bad);
        assert_eq!(line, 8, "the table's header: {msg}");
        assert!(
            msg.contains("no named capture \"modbus\" (it has: console)"),
            "{msg}"
        );
        let bad = text.replace("{emulator.console}", "{device.tty}");
        let (_, _, msg, _) = error("unknown-path-var", &bad);
        assert!(msg.starts_with("unknown variable {device.tty}"), "{msg}");
    }
}
