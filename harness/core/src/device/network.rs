//! The unit's network surfaces as the password suite asks about them: which ports the board
//! declares on the unit's address (interfaces, recipe URLs, the unit's own broker, declared
//! services) and which login action tries each, the surface scan of that address, and the
//! unit's own MQTT broker probed as an anonymous client or with a credential.
//!
//! Kept in the device layer so suites never see addresses or protocols: they get what answered
//! and what the board declares, and judge.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{ActionError, Device};
use crate::board::{Interface, MqttBroker, SerialEndpoint, Step};
use crate::iface::mqtt::split_address;
use crate::iface::mqtt_probe::{BrokerProbe, Connack, ProbePlan};
use crate::iface::scan::{PortReport, ScanPlan};
use crate::iface::LinkError;

/// Most distinct topics the broker probe records.
const MAX_TOPICS: usize = 64;

/// The scan of the unit's address and what the board declares there.
#[derive(Debug, Clone)]
pub struct SurfaceScan {
    /// The host scanned.
    pub host: String,
    pub reports: Vec<PortReport>,
    /// Ports the board declares on `host`, each with where it is declared.
    pub declared: BTreeMap<u16, Vec<String>>,
    /// Ports some login action (`login`, `login_*`) tries, with the actions.
    pub logins: BTreeMap<u16, Vec<String>>,
}

/// How the suite may probe the unit's own broker.
#[derive(Debug, Clone)]
pub struct OwnBroker {
    pub address: String,
    pub command_topics: Vec<String>,
    pub listen: Duration,
}

/// `host` as compared: "localhost" is the loopback address, case does not matter.
fn same_host(a: &str, b: &str) -> bool {
    let norm = |h: &str| {
        let h = h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if h == "localhost" {
            "127.0.0.1".to_string()
        } else {
            h
        }
    };
    norm(a) == norm(b)
}

/// The addresses of `host` (itself when it is an IP address; none when a name does not
/// resolve within 2 s).
async fn host_addresses(host: &str) -> Vec<std::net::IpAddr> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return vec![ip];
    }
    match tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::lookup_host((bare, 0u16)),
    )
    .await
    {
        Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
        _ => Vec::new(),
    }
}

/// Host and port of a URL (the scheme's default port when it names none).
fn url_host_port(url: &str) -> Option<(String, u16)> {
    let u = reqwest::Url::parse(url).ok()?;
    Some((u.host_str()?.to_string(), u.port_or_known_default()?))
}

impl Device {
    fn declared_error(&self, what: &str, message: String) -> ActionError {
        ActionError::Template {
            action: what.to_string(),
            step: "render".into(),
            message,
        }
    }

    /// `t` rendered with the unit's variables, and a placeholder for each variable only an
    /// action knows (a parameter, a capture): enough for the host and port of an address or
    /// URL whose query carries `{user}`, say.
    fn render_partly(&self, t: &crate::template::Template) -> Option<String> {
        let mut vars = self.globals.clone();
        for v in t.vars() {
            if !vars.contains_key(v) {
                vars.insert(v.to_string(), crate::secret::SecretValue::plain("0"));
            }
        }
        t.render(&vars).ok().map(|r| r.text)
    }

    /// The rendered `host:port` of interface `iface`, if it has one.
    fn interface_endpoint(&self, iface: &str) -> Option<(String, u16)> {
        let t = match self.model.interfaces.get(iface)? {
            Interface::Telnet(t) => &t.address,
            Interface::Ssh(s) => &s.address,
            Interface::ModbusTcp(m) => &m.address,
            Interface::Gdb(g) => &g.address,
            Interface::Serial(s) => match &s.endpoint {
                SerialEndpoint::Tcp(a) => a,
                SerialEndpoint::Tty(_) => return None,
            },
            Interface::ModbusRtu(m) => match &m.endpoint {
                SerialEndpoint::Tcp(a) => a,
                SerialEndpoint::Tty(_) => return None,
            },
            Interface::Mqtt(m) => match &m.broker {
                MqttBroker::Address(a) => a,
                MqttBroker::Embedded => return None,
            },
            _ => return None,
        };
        let addr = self.render_partly(t)?;
        split_address(&addr).ok()
    }

    /// Every `host:port` the steps of action `name` reach (their interfaces' addresses and
    /// their URLs), as far as they render with the unit's variables alone.
    fn action_endpoints(&self, name: &str) -> Vec<(String, u16)> {
        let Some(a) = self.model.actions.get(name) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut ifaces = BTreeSet::new();
        for top in a.steps.iter().chain(a.cleanup.iter()) {
            for s in top.walk() {
                match s {
                    Step::Http { url, .. } => {
                        if let Some(hp) = self.render_partly(url).and_then(|u| url_host_port(&u)) {
                            out.push(hp);
                        }
                    }
                    Step::Send { on, .. }
                    | Step::Expect { on, .. }
                    | Step::SshAuth { on, .. }
                    | Step::Publish { on, .. }
                    | Step::Await { on, .. }
                    | Step::ModbusRead { on, .. }
                    | Step::ModbusWrite { on, .. }
                    | Step::ModbusIdentify { on, .. } => {
                        ifaces.insert(on.clone());
                    }
                    _ => {}
                }
            }
        }
        out.extend(ifaces.iter().filter_map(|i| self.interface_endpoint(i)));
        out
    }

    /// The declaration of the unit's own broker, rendered; `None` when the board has none.
    pub fn own_broker(&self) -> Result<Option<OwnBroker>, ActionError> {
        const WHAT: &str = "[declarations.broker]";
        let Some(b) = &self.model.declarations.broker else {
            return Ok(None);
        };
        let address = self
            .render(&b.address)
            .map_err(|e| self.declared_error(WHAT, e.to_string()))?;
        let mut command_topics = Vec::new();
        for t in &b.command_topics {
            command_topics.push(
                self.render(t)
                    .map_err(|e| self.declared_error(WHAT, e.to_string()))?,
            );
        }
        Ok(Some(OwnBroker {
            address,
            command_topics,
            listen: b.listen,
        }))
    }

    /// The timeout of the unit's network exchanges outside actions: the board's longest
    /// interface timeout, at least 5 s.
    fn network_timeout(&self) -> Duration {
        self.model
            .interfaces
            .values()
            .map(Interface::default_timeout)
            .max()
            .unwrap_or(crate::board::DEFAULT_STEP_TIMEOUT)
            .max(Duration::from_secs(5))
    }

    /// Records how a network exchange outside an action ended (for `test::settle`): an answer,
    /// silence, a closed link; an address nothing listens on makes the unit unreachable.
    fn observe_network<T>(
        &mut self,
        what: &str,
        r: Result<T, LinkError>,
    ) -> Result<T, ActionError> {
        let r = self.after_reached(what, r);
        let r = r.map_err(|source| ActionError::Link {
            action: what.to_string(),
            step: "connect".into(),
            source,
        });
        let seen: Result<super::ActionOutcome, ActionError> = match &r {
            Ok(_) => Ok(super::ActionOutcome::default()),
            Err(ActionError::Link {
                source,
                action,
                step,
            }) => Err(ActionError::Link {
                action: action.clone(),
                step: step.clone(),
                source: match source {
                    LinkError::Open { endpoint, detail } => LinkError::Open {
                        endpoint: endpoint.clone(),
                        detail: detail.clone(),
                    },
                    LinkError::Timeout {
                        pattern,
                        waited,
                        tail,
                    } => LinkError::Timeout {
                        pattern: pattern.clone(),
                        waited: *waited,
                        tail: tail.clone(),
                    },
                    other => LinkError::Closed(other.to_string()),
                },
            }),
            Err(_) => Ok(super::ActionOutcome::default()),
        };
        self.observe(&seen);
        r
    }

    /// A connection made once per attempt to `endpoint`: once it answered, a later failure to
    /// connect is the unit turning us away (a lockout, a connection limit): a closed link, not an
    /// unreachable unit.
    pub(super) fn after_reached<T>(
        &mut self,
        endpoint: &str,
        r: Result<T, LinkError>,
    ) -> Result<T, LinkError> {
        match r {
            Ok(v) => {
                self.reached.insert(endpoint.to_string());
                Ok(v)
            }
            Err(LinkError::Open {
                endpoint: e,
                detail,
            }) if self.reached.contains(endpoint) => Err(LinkError::Closed(format!(
                "{e} no longer accepts connections ({detail}), after answering earlier ones"
            ))),
            Err(e) => Err(e),
        }
    }

    /// Probes the unit's own broker as `creds` (`None`: anonymous) with `plan`; the exchange
    /// goes into the evidence (topics seen, never payloads or passwords).
    pub async fn probe_own_broker(
        &mut self,
        broker: &OwnBroker,
        creds: Option<(&str, &str)>,
        plan: &ProbePlan,
    ) -> Result<BrokerProbe, ActionError> {
        let timeout = self.network_timeout();
        let r = crate::iface::mqtt_probe::probe_broker(
            "broker",
            &broker.address,
            creds,
            plan,
            timeout,
            &self.transcript,
        )
        .await;
        self.observe_network("[declarations.broker]", r)
    }

    /// One CONNECT to the unit's own broker as `creds`: its CONNACK.
    pub async fn connect_own_broker(
        &mut self,
        broker: &OwnBroker,
        creds: Option<(&str, &str)>,
    ) -> Result<Connack, ActionError> {
        let timeout = self.network_timeout();
        let r = crate::iface::mqtt_probe::try_connect(
            "broker",
            &broker.address,
            creds,
            timeout,
            &self.transcript,
        )
        .await;
        self.observe_network("[declarations.broker]", r)
    }

    /// The plan an anonymous probe of the own broker follows: `#`, the command topics.
    pub fn own_broker_plan(broker: &OwnBroker) -> ProbePlan {
        ProbePlan {
            subscribe: vec!["#".into()],
            publish: broker.command_topics.clone(),
            listen: broker.listen,
            max_topics: MAX_TOPICS,
        }
    }

    /// Scans the unit's declared address (`[declarations.network]`); `Ok(None)` when the board
    /// declares none.
    pub async fn scan_surfaces(&mut self) -> Result<Option<SurfaceScan>, ActionError> {
        const WHAT: &str = "[declarations.network]";
        let Some(n) = self.model.declarations.network.clone() else {
            return Ok(None);
        };
        let host = self
            .render(&n.address)
            .map_err(|e| self.declared_error(WHAT, e.to_string()))?;
        // What the board declares on this host, and which login actions reach it: every
        // endpoint first (name, port, who declares it, the login action if one), then those
        // whose host is the scanned one, by name or by address.
        let mut endpoints: Vec<(String, u16, String, Option<String>)> = Vec::new();
        for name in self.model.interfaces.keys() {
            if let Some((h, p)) = self.interface_endpoint(name) {
                endpoints.push((h, p, format!("interface {name}"), None));
            }
        }
        for name in self.model.actions.keys() {
            let login = (name == "login" || name.starts_with("login_")).then(|| name.clone());
            for (h, p) in self.action_endpoints(name) {
                endpoints.push((h, p, format!("action {name}"), login.clone()));
            }
        }
        if let Some(b) = self.own_broker()? {
            if let Ok((h, p)) = split_address(&b.address) {
                endpoints.push((
                    h,
                    p,
                    "[declarations.broker]".into(),
                    Some("the own-broker test".into()),
                ));
            }
        }
        if let Some(dd) = &self.model.declarations.disclosure {
            for t in dd.templates() {
                if let Some((h, p)) = self.render_partly(t).and_then(|u| url_host_port(&u)) {
                    endpoints.push((h, p, "[declarations.disclosure]".into(), None));
                }
            }
        }
        let scanned = host_addresses(&host).await;
        let mut known: BTreeMap<String, bool> = BTreeMap::new();
        let mut declared: BTreeMap<u16, Vec<String>> = BTreeMap::new();
        let mut logins: BTreeMap<u16, Vec<String>> = BTreeMap::new();
        for (h, p, by, login) in endpoints {
            let here = match known.get(&h) {
                Some(v) => *v,
                None => {
                    let v = same_host(&h, &host) || {
                        let ips = host_addresses(&h).await;
                        ips.iter().any(|ip| scanned.contains(ip))
                    };
                    known.insert(h.clone(), v);
                    v
                }
            };
            if !here {
                continue;
            }
            let e = declared.entry(p).or_default();
            if !e.contains(&by) {
                e.push(by);
            }
            if let Some(l) = login {
                let e = logins.entry(p).or_default();
                if !e.contains(&l) {
                    e.push(l);
                }
            }
        }
        let mut add = |port: u16, by: String| {
            let e = declared.entry(port).or_default();
            if !e.contains(&by) {
                e.push(by);
            }
        };
        for p in &n.services {
            add(*p, "[declarations.network] services".into());
        }
        let plan = ScanPlan {
            host: host.clone(),
            ports: n.ports.clone(),
            connect_timeout: n.connect_timeout,
            banner_timeout: n.banner_timeout,
        };
        self.transcript.note(format!(
            "surface scan of {host}: {} ports; declared there: {}",
            plan.ports.len(),
            if declared.is_empty() {
                "none".to_string()
            } else {
                declared
                    .iter()
                    .map(|(p, by)| format!("{p} ({})", by.join(", ")))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ));
        let reports = crate::iface::scan::scan(&plan, &self.transcript)
            .await
            .map_err(|e| self.declared_error(WHAT, e.to_string()))?;
        Ok(Some(SurfaceScan {
            host,
            reports,
            declared,
            logins,
        }))
    }
}
