//! Opening the unit's links: what each interface kind of the board file needs (rendered
//! paths and addresses, broker, credentials, CA) to become an open connection.
//!
//! Kept apart from the step interpreter so that steps only ever ask for "the open link of
//! interface X" ([`Device::link`]): opened on first use, reopened after a drop, and every
//! failure to open a [`LinkError::Open`] (which marks the unit unreachable).
//!
//! A labgrid console (`kind = "labgrid"`) is two links: the held place ([`Link::Place`], kept
//! under a key of its own for the whole unit, so the place is released only at the unit's end,
//! by [`Device::release_places`]) and the console on its serial port, an ordinary console that
//! may be reconnected.

use std::sync::Arc;
use std::time::Duration;

use super::{ActionError, Device};
use crate::board::{
    GdbSpec, HttpSpec, Interface, LabgridSpec, ModbusRtuSpec, ModbusTcpSpec, MqttBroker, MqttSpec,
    PowerDriverSpec, PowerSpec, ProbeRsSpec, RttSpec, SerialEndpoint, SerialSpec,
};
use crate::iface::debug::DebugAccess;
use crate::iface::modbus::ModbusLink;
use crate::iface::mqtt::{split_address, MqttLink, MqttParams};
use crate::iface::power::PowerLink;
use crate::iface::rtt::SharedDebug;
use crate::iface::serial::Console;
use crate::iface::LinkError;
use crate::template::Template;
use crate::transcript::Transcript;

/// An open connection of one of the unit's interfaces.
pub(super) enum Link {
    Console(Console),
    Mqtt(MqttLink),
    Modbus(ModbusLink),
    Http(Arc<crate::iface::http::HttpClient>),
    Debug(DebugPort),
    Power(PowerLink),
    Ssh(SshPort),
    /// A labgrid place held for the unit (released by [`Device::release_places`], else when
    /// dropped); not an interface of its own: kept under [`place_key`], never dropped by
    /// [`Device::drop_links`].
    Place(crate::iface::labgrid::PlaceLease),
}

/// The key a held labgrid place is kept under among the links: not a name a board file would
/// give an interface.
fn place_key(coordinator: Option<&str>, place: &str) -> String {
    format!("\u{0}labgrid:{}/{place}", coordinator.unwrap_or(""))
}

/// An SSH interface: the session of the last accepted `ssh_auth` step and its shell, which
/// `send`/`expect` steps on the interface use (opened at the first of them, so a login that is
/// accepted stays accepted even where the account gets no shell). Empty until a login is
/// accepted; dropped when a test begins.
#[derive(Default)]
pub(super) struct SshPort {
    pub(super) session: Option<crate::iface::ssh::SshSession>,
    pub(super) console: Option<Console>,
}

/// A debug link, shared: steps use it, and so does an RTT console's pump, between its polls.
pub(super) struct DebugPort {
    pub(super) shared: SharedDebug,
    /// A test's transcript not yet handed to the link (it was locked by the RTT pump when the
    /// test began); handed over at the next use.
    pub(super) pending: Option<Transcript>,
}

impl Link {
    pub(super) fn is_closed(&self) -> bool {
        match self {
            Link::Console(c) => c.is_closed(),
            Link::Mqtt(m) => m.is_closed(),
            Link::Modbus(m) => m.is_closed(),
            Link::Http(_) => false,
            // Locked: in use by an RTT pump, so not known closed.
            Link::Debug(d) => d.shared.try_lock().is_ok_and(|g| g.is_closed()),
            Link::Power(p) => p.is_closed(),
            Link::Place(_) => false,
            Link::Ssh(p) => {
                p.console.as_ref().is_some_and(Console::is_closed)
                    || p.session.as_ref().is_some_and(|s| s.is_closed())
            }
        }
    }

    /// Switches the link to the test's transcript, recording what was left over from before
    /// the test there (marked as such) and dropping it from what the test will match.
    pub(super) fn begin(&mut self, t: &Transcript) {
        match self {
            Link::Console(c) => {
                c.set_transcript(t.clone());
                c.drain_before_test();
            }
            Link::Mqtt(m) => {
                m.set_transcript(t.clone());
                m.drain_before_test();
            }
            Link::Modbus(m) => m.set_transcript(t.clone()),
            Link::Debug(d) => match d.shared.try_lock() {
                Ok(mut g) => {
                    g.set_transcript(t.clone());
                    d.pending = None;
                }
                Err(_) => d.pending = Some(t.clone()),
            },
            Link::Power(p) => p.set_transcript(t.clone()),
            Link::Http(_) | Link::Place(_) => {}
            Link::Ssh(p) => {
                if let Some(c) = p.console.as_mut() {
                    c.set_transcript(t.clone());
                    c.drain_before_test();
                }
            }
        }
    }
}

impl Device {
    /// The open link of interface `iface`, opened (or reopened after a drop) on demand.
    ///
    /// Boxed: opening any interface kind makes a large future, and every step that may open a
    /// link would carry it in its own, nested calls (eight deep) included; debug builds then
    /// overflowed a 2 MiB stack.
    pub(super) fn link<'a: 'f, 'f>(
        &'a mut self,
        iface: &'f str,
        timeout: Duration,
    ) -> futures::future::BoxFuture<'f, Result<&'a mut Link, LinkError>> {
        Box::pin(self.link_unboxed(iface, timeout))
    }

    async fn link_unboxed(
        &mut self,
        iface: &str,
        timeout: Duration,
    ) -> Result<&mut Link, LinkError> {
        // A device may close its end between exchanges (a telnet or ser2net session ended by
        // a logout, a login program that exits after three failures): notice it now, and
        // connect again, as a person at a terminal would. A unit that is gone fails to reopen.
        if let Some(Link::Console(c)) = self.links.get_mut(iface) {
            c.poll_pending();
        }
        // A debug link an RTT pump held when the test began gets the test's transcript now,
        // so its failure notes (a probe unplugged) land in this test's evidence.
        for l in self.links.values_mut() {
            if let Link::Debug(d) = l {
                if d.pending.is_some() {
                    if let Ok(mut g) = d.shared.try_lock() {
                        if let Some(t) = d.pending.take() {
                            g.set_transcript(t);
                        }
                    }
                }
            }
        }
        if self.links.get(iface).is_some_and(Link::is_closed) {
            self.links.remove(iface);
        }
        if !self.links.contains_key(iface) {
            let spec = self
                .model
                .interfaces
                .get(iface)
                .cloned()
                .ok_or_else(|| open_error(iface, "no such interface".into()))?;
            let link = match &spec {
                Interface::Serial(s) => self.open_serial(iface, s, timeout).await?,
                Interface::Mqtt(m) => self.open_mqtt(iface, m, timeout).await?,
                Interface::Http(h) => self.open_http(iface, h, timeout)?,
                Interface::ModbusTcp(m) => self.open_modbus_tcp(iface, m, timeout).await?,
                Interface::ModbusRtu(m) => self.open_modbus_rtu(iface, m, timeout).await?,
                Interface::Gdb(g) => self.open_gdb(iface, g, timeout).await?,
                Interface::ProbeRs(p) => self.open_probe_rs(iface, p).await?,
                Interface::Rtt(r) => self.open_rtt(iface, r).await?,
                Interface::Power(p) => self.open_power(iface, p).await?,
                Interface::Telnet(t) => {
                    let addr = self.render_for(iface, &t.address)?;
                    let tr = self.transcript.clone();
                    tr.note(format!("{iface}: connecting to {addr} (telnet)"));
                    let mut opts = crate::iface::telnet::TelnetOptions::default();
                    if let Some(term) = &t.terminal {
                        opts.terminal = term.clone();
                    }
                    Link::Console(
                        Box::pin(crate::iface::telnet::open_telnet(
                            iface, &addr, timeout, &opts, tr,
                        ))
                        .await?,
                    )
                }
                // Connected by its `ssh_auth` steps, one connection per login attempt.
                Interface::Ssh(_) => Link::Ssh(SshPort::default()),
                // Boxed, as the telnet opening: their futures are large, and every step future
                // that may open a link (nested calls, eight deep) would carry them.
                Interface::Labgrid(l) => Box::pin(self.open_labgrid(iface, l, timeout)).await?,
            };
            self.links.insert(iface.to_string(), link);
        }
        self.links
            .get_mut(iface)
            .ok_or_else(|| LinkError::Closed("link vanished".into()))
    }

    /// The default step timeout of interface `on` (the board's, or the harness default).
    pub(super) fn iface_timeout(&self, on: &str) -> Duration {
        self.model
            .interfaces
            .get(on)
            .map(Interface::default_timeout)
            .unwrap_or(crate::board::DEFAULT_STEP_TIMEOUT)
    }

    /// A template of interface `iface` rendered with the unit's variables; a failure is an
    /// open error of that interface.
    pub(super) fn render_for(&self, iface: &str, t: &Template) -> Result<String, LinkError> {
        t.render(&self.globals)
            .map(|r| r.text)
            .map_err(|detail| open_error(iface, detail.to_string()))
    }

    // The openers that await take `&mut self` although they only read: a `&Device` held across
    // an await would need `Device: Sync`, which its links are not.

    /// A console: a tty path or a raw-TCP address.
    async fn open_serial(
        &mut self,
        iface: &str,
        s: &SerialSpec,
        timeout: Duration,
    ) -> Result<Link, LinkError> {
        let t = self.transcript.clone();
        Ok(match &s.endpoint {
            SerialEndpoint::Tty(p) => {
                let path = self.render_for(iface, p)?;
                t.note(format!("{iface}: opening {path}"));
                Link::Console(Console::open_tty(iface, &path, s.baud, t)?)
            }
            SerialEndpoint::Tcp(a) => {
                let addr = self.render_for(iface, a)?;
                // The console the emulator connected as soon as it listened (its boot output
                // is already being read).
                let early = match &self.emulator {
                    Some(e) => e.lock().await.take_console(iface),
                    None => None,
                };
                if let Some(mut c) = early {
                    t.note(format!(
                        "{iface}: connected to {addr} when the emulator started"
                    ));
                    c.set_transcript(t);
                    return Ok(Link::Console(c));
                }
                t.note(format!("{iface}: connecting to {addr}"));
                Link::Console(Console::open_tcp(iface, &addr, timeout, t).await?)
            }
        })
    }

    /// A console on a labgrid place: the place is acquired first (once per unit: the lease is
    /// kept among the links until the unit's group ends, see [`Device::release_places`]), then
    /// its serial port is looked up and connected (again at every reconnection: the exporter may
    /// serve it on a new port). A place just acquired on which no console could be opened is
    /// released at once, not kept: nothing of the unit holds it then.
    async fn open_labgrid(
        &mut self,
        iface: &str,
        l: &LabgridSpec,
        timeout: Duration,
    ) -> Result<Link, LinkError> {
        use crate::iface::labgrid::{self, LabgridClient, PlaceLease, PortProtocol};
        let place = self.render_for(iface, &l.place)?;
        let coordinator = match &l.coordinator {
            Some(c) => Some(self.render_for(iface, c)?),
            None => None,
        };
        let resource = match &l.resource {
            Some(r) => Some(self.render_for(iface, r)?),
            None => None,
        };
        let client = LabgridClient {
            client: l.client.clone(),
            coordinator: coordinator.clone(),
        };
        let t = self.transcript.clone();
        let key = place_key(coordinator.as_deref(), &place);
        // Held already (a reconnection): the place is asked about by the client that holds it.
        // Acquired now: the lease stays in hand until a console is open on the place (dropped
        // before that, by cancellation, it releases the place itself).
        let (client, fresh) = match self.links.get(&key) {
            Some(Link::Place(lease)) => (lease.client().clone(), None),
            _ => {
                let via = match &coordinator {
                    Some(c) => format!("coordinator {c}"),
                    None => "the default coordinator (LG_COORDINATOR)".to_string(),
                };
                t.note(format!(
                    "{iface}: acquiring labgrid place {place} through {via}"
                ));
                let lease = PlaceLease::acquire(client, &place)
                    .await
                    .map_err(|e| open_error(iface, e.to_string()))?;
                t.note(format!("{iface}: labgrid place {place} acquired"));
                (lease.client().clone(), Some(lease))
            }
        };
        let opened = async {
            let wait = timeout.max(labgrid::PORT_WAIT);
            let port = labgrid::serial_port(&client, &place, resource.as_deref(), wait)
                .await
                .map_err(|e| open_error(iface, e.to_string()))?;
            let how = match port.protocol {
                PortProtocol::Rfc2217 => "RFC 2217",
                PortProtocol::Raw => "raw TCP",
            };
            t.note(format!(
                "{iface}: place {place}: serial port {} ({}) at {} ({how})",
                port.name,
                port.path,
                port.address()
            ));
            labgrid::open_console(iface, &port, l.baud, timeout, t.clone()).await
        }
        .await;
        match (opened, fresh) {
            (Ok(console), Some(lease)) => {
                self.links.insert(key, Link::Place(lease));
                Ok(Link::Console(console))
            }
            (Ok(console), None) => Ok(Link::Console(console)),
            (Err(e), Some(lease)) => {
                t.note(format!(
                    "{iface}: no console on labgrid place {place}; releasing the place"
                ));
                match lease.release().await {
                    Ok(()) => t.note(format!("{iface}: labgrid place {place} released")),
                    Err(r) => release_failed(&t, iface, &place, &r),
                }
                Err(e)
            }
            (Err(e), None) => Err(e),
        }
    }

    /// An MQTT client on the embedded broker or the board's; the password (if any) becomes a
    /// secret of the unit.
    async fn open_mqtt(
        &mut self,
        iface: &str,
        m: &MqttSpec,
        timeout: Duration,
    ) -> Result<Link, LinkError> {
        let addr = self.broker_address(iface, &m.broker)?;
        let (host, port) = split_address(&addr).map_err(|e| open_error(iface, e.to_string()))?;
        let client_id = match &m.client_id {
            Some(c) => self.render_for(iface, c)?,
            None => format!("hilsec-{}", self.unit.name),
        };
        let credentials = self.credentials(iface, &m.username, &m.password)?;
        let params = MqttParams {
            host,
            port,
            client_id,
            credentials,
        };
        let t = self.transcript.clone();
        Ok(Link::Mqtt(
            MqttLink::connect(iface, &params, timeout, t).await?,
        ))
    }

    /// The `host:port` of an MQTT broker: the embedded one's, or the board's (rendered).
    fn broker_address(&self, iface: &str, broker: &MqttBroker) -> Result<String, LinkError> {
        match broker {
            MqttBroker::Embedded => match self.globals.get("broker.address") {
                Some(a) => Ok(a.expose().to_string()),
                None => Err(open_error(iface, "no embedded broker is running".into())),
            },
            MqttBroker::Address(a) => self.render_for(iface, a),
        }
    }

    /// A broker user name and password, rendered; the password's secrets join the unit's.
    fn credentials(
        &mut self,
        iface: &str,
        username: &Option<Template>,
        password: &Option<Template>,
    ) -> Result<Option<(String, String)>, LinkError> {
        let Some(u) = username else {
            return Ok(None);
        };
        let pass = match password {
            Some(p) => {
                let r = p
                    .render(&self.globals)
                    .map_err(|detail| open_error(iface, detail.to_string()))?;
                for s in &r.secrets {
                    self.redactor.add(s);
                }
                r.text
            }
            None => String::new(),
        };
        Ok(Some((self.render_for(iface, u)?, pass)))
    }

    /// An HTTP client trusting the interface's CA (no connection is made yet).
    fn open_http(&self, iface: &str, h: &HttpSpec, timeout: Duration) -> Result<Link, LinkError> {
        let mut ca = Vec::new();
        if let Some(c) = &h.ca {
            ca.push(std::path::PathBuf::from(self.render_for(iface, c)?));
        }
        let opts = crate::iface::http::HttpOptions {
            ca,
            timeout,
            ..Default::default()
        };
        let c = crate::iface::http::HttpClient::new(&opts)
            .map_err(|e| open_error(iface, e.to_string()))?;
        Ok(Link::Http(Arc::new(c)))
    }

    /// A debug port over the GDB remote serial protocol.
    async fn open_gdb(
        &mut self,
        iface: &str,
        g: &GdbSpec,
        timeout: Duration,
    ) -> Result<Link, LinkError> {
        let addr = self.render_for(iface, &g.address)?;
        let t = self.transcript.clone();
        t.note(format!("{iface}: attaching to the GDB server at {addr}"));
        // An emulator opens its GDB port a moment after its console (QEMU starts the stub once
        // the console it waits for is connected): a refused connection is tried again until
        // the interface's timeout.
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let opts = crate::iface::gdb::GdbOptions {
                reset_command: g.reset_command.clone(),
                running: g.running,
            };
            match crate::iface::gdb::GdbLink::connect(iface, &addr, timeout, t.clone(), opts).await
            {
                Ok(link) => return Ok(debug_port(Box::new(link))),
                Err(LinkError::Open { detail, .. })
                    if detail.contains("refused") && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A debug probe driven by probe-rs.
    async fn open_probe_rs(&mut self, iface: &str, p: &ProbeRsSpec) -> Result<Link, LinkError> {
        let selector = match &p.probe {
            Some(t) => Some(self.render_for(iface, t)?),
            None => None,
        };
        let opts = crate::iface::probe::ProbeOptions {
            selector,
            chip: p.chip.clone(),
            protocol: p.protocol,
            speed_khz: p.speed_khz,
            connect_under_reset: p.connect_under_reset,
            core: p.core,
            running: p.running,
            timeout: p.timeout,
        };
        let t = self.transcript.clone();
        let link = crate::iface::probe::ProbeRsLink::open(iface, &opts, t).await?;
        Ok(debug_port(Box::new(link)))
    }

    /// An RTT console: the debug link it reads through is opened (or shared) first.
    async fn open_rtt(&mut self, iface: &str, r: &RttSpec) -> Result<Link, LinkError> {
        let timeout = self.iface_timeout(&r.debug);
        let shared = match Box::pin(self.link(&r.debug, timeout)).await? {
            Link::Debug(d) => d.shared.clone(),
            _ => {
                return Err(open_error(
                    iface,
                    format!("{:?} is not a debug port", r.debug),
                ))
            }
        };
        let opts = crate::iface::rtt::RttOptions {
            control_block: r.control_block,
            scan: r.scan.clone(),
            up: r.up,
            down: r.down,
            poll: r.poll,
            timeout: r.timeout,
        };
        let t = self.transcript.clone();
        t.note(format!(
            "{iface}: opening the RTT console through {}",
            r.debug
        ));
        Ok(Link::Console(
            crate::iface::rtt::open_console(iface, shared, &opts, t).await?,
        ))
    }

    /// A power switch: shell commands, a Modbus relay coil or a Tasmota plug (the emulator's
    /// own power needs no link; see `step_power`).
    async fn open_power(&mut self, iface: &str, p: &PowerSpec) -> Result<Link, LinkError> {
        use crate::iface::power::{PowerDriver, PowerLink};
        let driver = match &p.driver {
            PowerDriverSpec::Command { on, off, cycle } => PowerDriver::Command {
                on: self.render_for(iface, on)?,
                off: self.render_for(iface, off)?,
                cycle: match cycle {
                    Some(c) => Some(self.render_for(iface, c)?),
                    None => None,
                },
            },
            PowerDriverSpec::ModbusCoil {
                address,
                unit_id,
                coil,
                on_value,
            } => PowerDriver::ModbusCoil {
                address: self.render_for(iface, address)?,
                unit_id: *unit_id,
                coil: *coil,
                on_value: *on_value,
            },
            PowerDriverSpec::Tasmota {
                broker,
                topic,
                relay,
                username,
                password,
            } => {
                let broker = self.broker_address(iface, broker)?;
                let credentials = self.credentials(iface, username, password)?;
                PowerDriver::Tasmota {
                    broker,
                    topic: self.render_for(iface, topic)?,
                    relay: *relay,
                    client_id: format!("hilsec-{}-{iface}", self.unit.name),
                    credentials,
                }
            }
            PowerDriverSpec::Emulator => {
                return Err(open_error(
                    iface,
                    "the emulator's power is switched without a link".into(),
                ))
            }
        };
        let t = self.transcript.clone();
        Ok(Link::Power(
            PowerLink::open(iface, driver, p.timeout, t).await?,
        ))
    }

    /// The open debug link of interface `on` (shared with an RTT console on it, if any).
    pub(super) async fn debug_link(
        &mut self,
        at: &super::steps::At<'_>,
        on: &str,
        timeout: Duration,
    ) -> Result<SharedDebug, ActionError> {
        match self.link(on, timeout).await.map_err(|e| at.link(e))? {
            Link::Debug(d) => {
                if let Some(t) = d.pending.take() {
                    d.shared.lock().await.set_transcript(t);
                }
                Ok(d.shared.clone())
            }
            _ => Err(at.tmpl(format!("interface {on:?} is not a debug port"))),
        }
    }

    /// Drops the unit's links except `keep`, closing debug links first (bounded) so a probe
    /// is released before anything opens it again (an RTT console on it ends with it). Held
    /// labgrid places stay held: they are the unit's, not a connection's.
    pub(super) async fn drop_links(&mut self, keep: Option<&str>) {
        let names: Vec<String> = self
            .links
            .iter()
            .filter(|(n, l)| Some(n.as_str()) != keep && !matches!(l, Link::Place(_)))
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            if let Some(Link::Debug(d)) = self.links.remove(&name) {
                let timeout = self.iface_timeout(&name);
                let _ =
                    tokio::time::timeout(timeout, async { d.shared.lock().await.close().await })
                        .await;
            }
        }
    }

    /// Gives back the unit's labgrid places (the end of the unit's group): the consoles on
    /// them are closed first, then each place is released with `labgrid-client release`,
    /// awaited (bounded), all at once. A place that could not be released is a warning on
    /// stderr. A device dropped without this releases its places from their drop.
    pub async fn release_places(&mut self) {
        let places: Vec<String> = self
            .links
            .iter()
            .filter(|(_, l)| matches!(l, Link::Place(_)))
            .map(|(k, _)| k.clone())
            .collect();
        if places.is_empty() {
            return;
        }
        let consoles: Vec<String> = self
            .model
            .interfaces
            .iter()
            .filter(|(_, i)| matches!(i, Interface::Labgrid(_)))
            .map(|(n, _)| n.clone())
            .collect();
        for name in consoles {
            self.links.remove(&name);
        }
        // The last test's evidence is written: a failure can only be said on stderr.
        let releases: Vec<_> = places
            .into_iter()
            .filter_map(|k| match self.links.remove(&k) {
                Some(Link::Place(lease)) => Some(async move {
                    let place = lease.place().to_string();
                    if let Err(e) = lease.release().await {
                        eprintln!(
                            "hilsec: warning: labgrid place {place:?} may still be acquired: {e}"
                        );
                    }
                }),
                _ => None,
            })
            .collect();
        futures::future::join_all(releases).await;
    }

    /// Drops the RTT consoles that read through debug port `debug` (after its memory changed
    /// under them: a new image may put the control block elsewhere); they reopen on next use.
    pub(super) fn drop_rtt_consoles_of(&mut self, debug: &str) {
        let rtt: Vec<String> = self
            .model
            .interfaces
            .iter()
            .filter(|(_, i)| matches!(i, Interface::Rtt(r) if r.debug == debug))
            .map(|(n, _)| n.clone())
            .collect();
        for name in rtt {
            self.links.remove(&name);
        }
    }

    /// The open power link of interface `on`.
    pub(super) async fn power_link(
        &mut self,
        at: &super::steps::At<'_>,
        on: &str,
        timeout: Duration,
    ) -> Result<&mut PowerLink, ActionError> {
        match self.link(on, timeout).await.map_err(|e| at.link(e))? {
            Link::Power(p) => Ok(p),
            _ => Err(at.tmpl(format!("interface {on:?} is not a power interface"))),
        }
    }

    /// Modbus TCP.
    async fn open_modbus_tcp(
        &mut self,
        iface: &str,
        m: &ModbusTcpSpec,
        timeout: Duration,
    ) -> Result<Link, LinkError> {
        let addr = self.render_for(iface, &m.address)?;
        let t = self.transcript.clone();
        Ok(Link::Modbus(
            ModbusLink::connect_tcp(iface, &addr, m.unit_id, timeout, t).await?,
        ))
    }

    /// Modbus RTU on a tty or over raw TCP.
    async fn open_modbus_rtu(
        &mut self,
        iface: &str,
        m: &ModbusRtuSpec,
        timeout: Duration,
    ) -> Result<Link, LinkError> {
        let t = self.transcript.clone();
        Ok(match &m.endpoint {
            SerialEndpoint::Tty(p) => {
                let path = self.render_for(iface, p)?;
                Link::Modbus(ModbusLink::open_rtu_tty(
                    iface, &path, m.baud, m.unit_id, t,
                )?)
            }
            SerialEndpoint::Tcp(a) => {
                let addr = self.render_for(iface, a)?;
                Link::Modbus(
                    ModbusLink::connect_rtu_tcp(iface, &addr, m.unit_id, timeout, t).await?,
                )
            }
        })
    }
}

/// A debug link as the device keeps it.
fn debug_port(link: Box<dyn DebugAccess>) -> Link {
    Link::Debug(DebugPort {
        shared: Arc::new(tokio::sync::Mutex::new(link)),
        pending: None,
    })
}

/// A labgrid place that could not be released: said in the transcript and on stderr (the
/// operator must release it by hand).
fn release_failed(
    t: &Transcript,
    iface: &str,
    place: &str,
    e: &crate::iface::labgrid::LabgridError,
) {
    t.note(format!(
        "{iface}: labgrid place {place} may still be acquired: {e}"
    ));
    eprintln!("hilsec: warning: labgrid place {place:?} may still be acquired: {e}");
}

/// An open error of interface `iface`.
fn open_error(iface: &str, detail: String) -> LinkError {
    LinkError::Open {
        endpoint: iface.to_string(),
        detail,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::board::{load_boards, LoadMode};
    use crate::device::RunEnv;

    /// A board with a labgrid console on place `pl` of coordinator 127.0.0.1:1, whose
    /// labgrid-client is a script in `dir` that logs its arguments and prints `dir/show` for
    /// `show`.
    fn labgrid_device(dir: &std::path::Path, place: &str) -> Device {
        use std::os::unix::fs::PermissionsExt as _;
        let script = format!(
            "#!/bin/sh\ncd '{}'\necho \"$*\" >> log\ncase \"$*\" in\n\
             *' show') cat show;;\n*) echo ok;;\nesac\n",
            dir.display()
        );
        let client = dir.join("labgrid-client");
        std::fs::write(&client, script).expect("script");
        std::fs::set_permissions(&client, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let file = dir.join("b.toml");
        std::fs::write(
            &file,
            format!(
                r#"[model]
name = "Labgrid L1"

[interfaces.console]
kind = "labgrid"
place = "{place}"
coordinator = "127.0.0.1:1"
client = "{}"
timeout = "1s"

[[unit]]
name = "l1"
"#,
                client.display()
            ),
        )
        .expect("board");
        let b = load_boards(&[file], LoadMode::Run)
            .unwrap_or_else(|e| panic!("{e:?}"))
            .remove(0);
        let unit = b.units.into_iter().next().expect("unit");
        Device::new(unit, b.model, &BTreeMap::new(), &RunEnv::default())
    }

    fn log(dir: &std::path::Path) -> String {
        std::fs::read_to_string(dir.join("log")).unwrap_or_default()
    }

    fn holds_a_place(d: &Device) -> bool {
        d.links.values().any(|l| matches!(l, Link::Place(_)))
    }

    /// `show` of a held place with a raw serial port at `port` (`None`: the place holds no
    /// serial port at all).
    fn show(place: &str, port: Option<u16>) -> String {
        let mut s = format!("Place '{place}':\n  acquired: host/user\n  acquired resources:\n");
        if let Some(port) = port {
            s.push_str(&format!(
                "Acquired resource 'uart' (exp/sim/NetworkSerialPort/uart):\n  \
                 {{'acquired': '{place}', 'avail': True, 'cls': 'NetworkSerialPort',\n   \
                 'params': {{'host': '127.0.0.1', 'port': {port}, 'protocol': 'raw'}}}}\n"
            ));
        }
        s
    }

    #[tokio::test]
    async fn a_labgrid_place_without_a_console_is_released_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut dev = labgrid_device(dir.path(), "lg-link-1");
        std::fs::write(dir.path().join("show"), show("lg-link-1", None)).expect("show");
        let e = dev
            .link("console", Duration::from_secs(1))
            .await
            .err()
            .expect("no serial port");
        assert!(e.to_string().contains("no serial port"), "{e}");
        assert_eq!(
            log(dir.path()),
            "-x 127.0.0.1:1 -p lg-link-1 acquire\n-x 127.0.0.1:1 -p lg-link-1 show\n\
             -x 127.0.0.1:1 -p lg-link-1 release\n"
        );
        assert!(!holds_a_place(&dev), "the place is not kept");
        let evidence = dev.transcript().render(dev.redactor());
        assert!(
            evidence.contains("labgrid place lg-link-1 released"),
            "{evidence}"
        );
        // A port that refuses connections: released too, and the next open acquires again.
        let refused = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = refused.local_addr().expect("addr").port();
        drop(refused);
        std::fs::write(dir.path().join("show"), show("lg-link-1", Some(port))).expect("show");
        assert!(dev
            .link("console", Duration::from_millis(300))
            .await
            .is_err());
        assert_eq!(log(dir.path()).matches("acquire").count(), 2);
        assert_eq!(log(dir.path()).matches("release").count(), 2);
        assert!(!holds_a_place(&dev));
    }

    #[tokio::test]
    async fn a_labgrid_place_with_a_console_is_kept_until_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut dev = labgrid_device(dir.path(), "lg-link-2");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::fs::write(dir.path().join("show"), show("lg-link-2", Some(port))).expect("show");
        let accept = tokio::spawn(async move { listener.accept().await.map(|(s, _)| s) });
        dev.link("console", Duration::from_secs(2))
            .await
            .expect("console open");
        let _peer = accept.await.expect("task").expect("accepted");
        assert!(holds_a_place(&dev));
        assert!(!log(dir.path()).contains("release"));
        dev.release_places().await;
        assert!(!holds_a_place(&dev));
        assert!(
            !dev.links.contains_key("console"),
            "its console closed first"
        );
        assert!(
            log(dir.path()).ends_with("-p lg-link-2 release\n"),
            "{}",
            log(dir.path())
        );
    }
}
