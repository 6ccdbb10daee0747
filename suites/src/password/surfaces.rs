//! Network login surfaces the login recipes do not cover by themselves:
//!
//! - `password.no-undeclared-surfaces` (TS 103 701 5.1-1-2 a): the unit's declared address is
//!   scanned (the board's port list, else the well-known ports of IoT login services); a port
//!   that listens there and that the board file does not declare is an authentication
//!   mechanism nobody declared: `fail`, naming port and banner. Declared ones are tried with
//!   the default list by `password.universal-default-rejected` through their `login_*` actions.
//! - `password.broker-requires-auth` (EN 303 645 5.1-1, 5.5-5): the MQTT broker the unit runs
//!   itself admits no anonymous client that can read `#` or publish to the unit's command
//!   topics, and none of the universal default credentials.
//!
//! Both ask the device layer (`Device::scan_surfaces`, `Device::probe_own_broker`) and judge
//! what it reports; neither sees an address or a packet.

use std::time::Duration;

use hilsec_core::board::Model;
use hilsec_core::device::{ActionError, Device};
use hilsec_core::iface::mqtt_probe::Connack;
use hilsec_core::iface::scan::{describe_banner, PortState};
use hilsec_core::test::{Outcome, Scope, Test, TestInfo};

use super::{shown, universal_credentials, SUITE};

pub(crate) struct NoUndeclaredSurfaces;

static SURFACES_INFO: TestInfo = TestInfo {
    id: "password.no-undeclared-surfaces",
    suite: SUITE,
    title: "no login service listens on the unit's address that the board file does not declare",
    provisions: &["TS 103 701 5.1-1-2 a", "EN 303 645 5.1-1"],
    scope: Scope::Unit,
    timeout: Duration::from_secs(120),
    actions: &[],
};

#[async_trait::async_trait]
impl Test for NoUndeclaredSurfaces {
    fn info(&self) -> &TestInfo {
        &SURFACES_INFO
    }

    fn not_applicable(&self, model: &Model) -> Option<String> {
        model.declarations.network.is_none().then(|| {
            "the board declares no [declarations.network] (the unit's address and the ports to scan): nothing to scan".into()
        })
    }

    async fn run_unit(&self, dev: &mut Device) -> Outcome {
        let scan = match dev.scan_surfaces().await {
            Ok(Some(s)) => s,
            Ok(None) => return Outcome::not_applicable("no [declarations.network]"),
            Err(e) => return Outcome::error(format!("the scan could not be made: {e}")),
        };
        let mut undeclared = Vec::new();
        let mut wordless = Vec::new();
        let mut declared_open = Vec::new();
        let mut host_wide = Vec::new();
        let (mut closed, mut silent) = (0usize, 0usize);
        for r in &scan.reports {
            match &r.state {
                PortState::Closed => closed += 1,
                PortState::NoAnswer => silent += 1,
                PortState::Open { .. } if r.host_wide => host_wide.push(r.port.to_string()),
                PortState::Open { banner, service } => {
                    let what = match (service, banner.is_empty()) {
                        (Some(s), true) => format!("{s}, no banner"),
                        (Some(s), false) => format!("{s}, banner \"{}\"", describe_banner(banner)),
                        (None, true) => "no banner".into(),
                        (None, false) => format!("banner \"{}\"", describe_banner(banner)),
                    };
                    match scan.declared.get(&r.port) {
                        None if r.closed_at_once => wordless.push(r.port.to_string()),
                        None => undeclared.push(format!("port {} ({what})", r.port)),
                        Some(by) => {
                            let tried = match scan.logins.get(&r.port) {
                                Some(l) => format!("tried by {}", l.join(", ")),
                                None => "no login action tries it".into(),
                            };
                            declared_open.push(format!(
                                "{} ({what}; declared by {}; {tried})",
                                r.port,
                                by.join(", ")
                            ));
                        }
                    }
                }
            }
        }
        let n = scan.reports.len();
        // A declared service of this unit listening on every address (QEMU's hostfwd without
        // an address, say): the machine's own services can no longer be told from the unit's.
        let own_host_wide: Vec<String> = scan
            .reports
            .iter()
            .filter(|r| r.host_wide && scan.declared.contains_key(&r.port))
            .map(|r| r.port.to_string())
            .collect();
        if !own_host_wide.is_empty() {
            return Outcome::inconclusive(format!(
                "declared port{} {} of {} also answer{} on other local addresses: the unit's services listen on every address of this machine, so they cannot be told from the machine's own (ports answering everywhere: {}); bind the unit's services to its own address (e.g. QEMU hostfwd=tcp:{{unit.address}}:PORT-:PORT)",
                if own_host_wide.len() == 1 { "" } else { "s" },
                own_host_wide.join(", "),
                scan.host,
                if own_host_wide.len() == 1 { "s" } else { "" },
                host_wide.join(", ")
            ));
        }
        if silent == n {
            return Outcome::error(format!(
                "none of the {n} ports of {} answered (neither accepted nor refused a connection): is the unit at this address and on the lab's network?",
                scan.host
            ));
        }
        let mut tail = format!("{closed} closed");
        if silent > 0 {
            tail.push_str(&format!(", {silent} without answer (filtered)"));
        }
        if !host_wide.is_empty() {
            tail.push_str(&format!(
                "; ignored as the host's own services (they listen on every local address): {}",
                host_wide.join(", ")
            ));
        }
        if !undeclared.is_empty() {
            let msg = format!(
                "{} undeclared service{} listening on {}: {}{}; {tail}",
                undeclared.len(),
                if undeclared.len() == 1 { "" } else { "s" },
                scan.host,
                undeclared.join(", "),
                if declared_open.is_empty() {
                    String::new()
                } else {
                    format!("; declared and open: {}", declared_open.join(", "))
                }
            );
            dev.confirm_finding(format!(
                "undeclared service listening on {}: {}",
                scan.host,
                undeclared.join(", ")
            ));
            return Outcome::fail(msg);
        }
        if !wordless.is_empty() {
            return Outcome::inconclusive(format!(
                "on {}, undeclared port{} {} accepted a connection and closed it at once without a word: a port forwarder with nothing behind it (QEMU's hostfwd to a guest port nobody serves) or a service turning this client away, not evidence of a login service by itself; check by hand or forward only served ports{}; {tail}",
                scan.host,
                if wordless.len() == 1 { "" } else { "s" },
                wordless.join(", "),
                if declared_open.is_empty() {
                    String::new()
                } else {
                    format!("; declared and open: {}", declared_open.join(", "))
                }
            ));
        }
        let loopback = scan
            .host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
            || scan.host.eq_ignore_ascii_case("localhost");
        if loopback && declared_open.is_empty() {
            // On loopback this machine's kernel refuses every closed port, unit or no unit.
            return Outcome::inconclusive(format!(
                "no scanned port of {} is open: on a loopback address this machine refuses closed ports whether or not the unit is there, so the scan says nothing about the unit; {tail} (does its emulator bind the unit's services to this address?)",
                scan.host
            ));
        }
        Outcome::pass(format!(
            "{n} ports scanned on {}: {}; {tail}",
            scan.host,
            if declared_open.is_empty() {
                "none open".to_string()
            } else {
                format!("open, all declared: {}", declared_open.join(", "))
            }
        ))
    }
}

// ---------------------------------------------------------------------------------------------

pub(crate) struct BrokerRequiresAuth;

static BROKER_INFO: TestInfo = TestInfo {
    id: "password.broker-requires-auth",
    suite: SUITE,
    title: "the unit's own MQTT broker lets no anonymous client read `#` or publish to its command topics, and refuses universal default credentials",
    provisions: &["EN 303 645 5.1-1", "EN 303 645 5.5-5", "TS 103 701 5.1-1-1"],
    scope: Scope::Unit,
    timeout: Duration::from_secs(300),
    actions: &[],
};

#[async_trait::async_trait]
impl Test for BrokerRequiresAuth {
    fn info(&self) -> &TestInfo {
        &BROKER_INFO
    }

    fn not_applicable(&self, model: &Model) -> Option<String> {
        model.declarations.broker.is_none().then(|| {
            "the board declares no [declarations.broker]: the unit runs no MQTT broker of its own"
                .into()
        })
    }

    async fn run_unit(&self, dev: &mut Device) -> Outcome {
        match broker_body(dev).await {
            Ok(o) => o,
            Err(e) => e.into(),
        }
    }
}

async fn broker_body(dev: &mut Device) -> Result<Outcome, ActionError> {
    let Some(broker) = dev.own_broker()? else {
        return Ok(Outcome::not_applicable("no [declarations.broker]"));
    };
    let mut findings: Vec<String> = Vec::new();
    let mut facts: Vec<String> = Vec::new();
    // 1. An anonymous client: may it connect, read everything, command the unit?
    let plan = Device::own_broker_plan(&broker);
    let probe = dev.probe_own_broker(&broker, None, &plan).await?;
    let mut anonymous_unjudged = None;
    match &probe.connack {
        c @ Connack::Refused { code, meaning } if c.refuses_credentials() => {
            facts.push(format!("anonymous CONNECT refused ({code}: {meaning})"));
        }
        Connack::Refused { code, meaning } => {
            return Ok(Outcome::inconclusive(format!(
                "the broker at {} refused the connection for a reason other than authentication (CONNACK {code}: {meaning}), so who it lets in cannot be judged",
                broker.address
            )));
        }
        Connack::Accepted => {
            let mut what = Vec::new();
            if !probe.seen.is_empty() {
                let topics: Vec<String> = probe
                    .seen
                    .iter()
                    .take(8)
                    .map(|t| {
                        format!(
                            "{} ({} message{})",
                            t.topic,
                            t.messages,
                            if t.messages == 1 { "" } else { "s" }
                        )
                    })
                    .collect();
                what.push(format!(
                    "read {} topic{} through `#` within {:?}: {}{}",
                    probe.seen.len(),
                    if probe.seen.len() == 1 { "" } else { "s" },
                    broker.listen,
                    topics.join(", "),
                    if probe.seen.len() > 8 { ", ..." } else { "" }
                ));
            }
            if !probe.delivered.is_empty() {
                what.push(format!(
                    "published to the unit's command topic{} {} (the broker delivered it)",
                    if probe.delivered.len() == 1 { "" } else { "s" },
                    probe.delivered.join(", ")
                ));
            }
            if what.is_empty() {
                let granted: Vec<String> = probe
                    .granted
                    .iter()
                    .filter(|(_, q)| q.is_some())
                    .map(|(f, _)| f.clone())
                    .collect();
                anonymous_unjudged = Some(format!(
                    "anonymous CONNECT accepted, but within {:?} it received nothing (subscriptions granted: {}) and {}",
                    broker.listen,
                    if granted.is_empty() { "none".into() } else { granted.join(", ") },
                    if broker.command_topics.is_empty() {
                        "no command topics are declared to try publishing to".to_string()
                    } else if probe.unverified.is_empty() {
                        "its publishes to the command topics were not delivered".to_string()
                    } else {
                        format!("whether its publishes to {} were delivered could not be seen", probe.unverified.join(", "))
                    }
                ));
            } else {
                let f = format!("an anonymous client {}", what.join("; and "));
                dev.confirm_finding(format!("the unit's own broker: {f}"));
                findings.push(f);
            }
        }
    }
    // 2. A credential nobody has (the control): a broker that accepts it checks no password,
    // and every default "works" there for that reason alone.
    let list = universal_credentials();
    for (_, p) in list {
        dev.mark_public(p);
    }
    let nobody = super::wrong_password();
    dev.mark_public(&nobody);
    let control = dev
        .connect_own_broker(&broker, Some((&nobody, &nobody)))
        .await?;
    if let Connack::Refused { code, meaning } = &control {
        if !control.refuses_credentials() {
            return Ok(Outcome::inconclusive(format!(
                "the broker at {} refused a connection for a reason other than authentication (CONNACK {code}: {meaning}), so its refusals of credentials cannot be judged",
                broker.address
            )));
        }
    }
    if control == Connack::Accepted {
        let f = "it accepts any user name and password (a random one the unit cannot know was accepted), so every universal default credential works too".to_string();
        dev.confirm_finding(format!("the unit's own broker: {f}"));
        findings.push(f);
        let at = format!("the broker at {}", broker.address);
        return Ok(Outcome::fail(format!("{at}: {}", findings.join("; "))));
    }
    facts.push("a random user name and password were refused (control)".into());
    let mut accepted = Vec::new();
    let mut refused = 0usize;
    let mut silent_in_a_row = 0usize;
    let mut unanswered = Vec::new();
    let started = std::time::Instant::now();
    let budget = BROKER_INFO.timeout.mul_f64(super::SWEEP_BUDGET);
    let mut not_tried = None;
    for (i, (u, p)) in list.iter().enumerate() {
        if started.elapsed() > budget {
            not_tried = Some(format!(
                "the time budget ran out: credentials {} to {} of {} were not tried",
                i + 1,
                list.len(),
                list.len()
            ));
            break;
        }
        match dev.connect_own_broker(&broker, Some((u, p))).await {
            Ok(Connack::Accepted) => {
                silent_in_a_row = 0;
                let c = format!("{u}/{}", shown(p));
                dev.confirm_finding(format!(
                    "the unit's own broker accepted the universal default credential {c}"
                ));
                accepted.push(c);
            }
            Ok(c @ Connack::Refused { .. }) if c.refuses_credentials() => {
                silent_in_a_row = 0;
                refused += 1;
            }
            Ok(Connack::Refused { code, meaning }) => {
                silent_in_a_row = 0;
                dev.note(format!(
                    "{u}/{}: refused for another reason than authentication (CONNACK {code}: {meaning})",
                    shown(p)
                ));
                unanswered.push(format!("{u}/{} (CONNACK {code})", shown(p)));
            }
            Err(e) if e.is_device_silence() && silent_in_a_row < 2 => {
                silent_in_a_row += 1;
                dev.note(format!("{u}/{}: no answer from the broker ({e})", shown(p)));
                unanswered.push(format!("{u}/{}", shown(p)));
            }
            Err(e) => {
                if findings.is_empty() && accepted.is_empty() {
                    return Err(e);
                }
                findings.push(format!("the sweep of default credentials stopped: {e}"));
                break;
            }
        }
    }
    if !accepted.is_empty() {
        findings.push(format!(
            "{} universal default credential{} accepted: {}",
            accepted.len(),
            if accepted.len() == 1 { "" } else { "s" },
            accepted.join(", ")
        ));
    } else {
        facts.push(format!(
            "{refused} of {} universal default credentials refused",
            list.len()
        ));
    }
    let at = format!("the broker at {}", broker.address);
    if !findings.is_empty() {
        return Ok(Outcome::fail(format!("{at}: {}", findings.join("; "))));
    }
    if let Some(n) = not_tried {
        return Ok(Outcome::inconclusive(format!(
            "{at}: {}; but {n}",
            facts.join("; ")
        )));
    }
    if !unanswered.is_empty() {
        return Ok(Outcome::inconclusive(format!(
            "{at}: {}; but {} credential{} got no answer on authentication: {}",
            facts.join("; "),
            unanswered.len(),
            if unanswered.len() == 1 { "" } else { "s" },
            unanswered.join(", ")
        )));
    }
    if let Some(u) = anonymous_unjudged {
        return Ok(Outcome::inconclusive(format!(
            "{at}: {u}; {}",
            facts.join("; ")
        )));
    }
    Ok(Outcome::pass(format!("{at}: {}", facts.join("; "))))
}
