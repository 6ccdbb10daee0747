//! Opening the unit's links: what each interface kind of the board file needs (rendered
//! paths and addresses, broker, credentials, CA) to become an open connection.
//!
//! Kept apart from the step interpreter so that steps only ever ask for "the open link of
//! interface X" ([`Device::link`]): opened on first use, reopened after a drop, and every
//! failure to open a [`LinkError::Open`] (which marks the unit unreachable).

use std::sync::Arc;
use std::time::Duration;

use super::Device;
use crate::board::{Interface, MqttBroker, SerialEndpoint};
use crate::iface::modbus::ModbusLink;
use crate::iface::mqtt::{split_address, MqttLink, MqttParams};
use crate::iface::serial::Console;
use crate::iface::LinkError;
use crate::transcript::Transcript;

/// An open connection of one of the unit's interfaces.
pub(super) enum Link {
    Console(Console),
    Mqtt(MqttLink),
    Modbus(ModbusLink),
    Http(Arc<crate::iface::http::HttpClient>),
}

impl Link {
    pub(super) fn is_closed(&self) -> bool {
        match self {
            Link::Console(c) => c.is_closed(),
            Link::Mqtt(m) => m.is_closed(),
            Link::Modbus(m) => m.is_closed(),
            Link::Http(_) => false,
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
            Link::Http(_) => {}
        }
    }
}

impl Device {
    /// The open link of interface `iface`, opened (or reopened after a drop) on demand.
    pub(super) async fn link(
        &mut self,
        iface: &str,
        timeout: Duration,
    ) -> Result<&mut Link, LinkError> {
        if self.links.get(iface).is_some_and(Link::is_closed) {
            self.links.remove(iface);
        }
        if !self.links.contains_key(iface) {
            let spec =
                self.model
                    .interfaces
                    .get(iface)
                    .cloned()
                    .ok_or_else(|| LinkError::Open {
                        endpoint: iface.to_string(),
                        detail: "no such interface".into(),
                    })?;
            let globals = &self.globals;
            let render = |t: &crate::template::Template| {
                t.render(globals)
                    .map(|r| r.text)
                    .map_err(|detail| LinkError::Open {
                        endpoint: iface.to_string(),
                        detail,
                    })
            };
            let t = self.transcript.clone();
            let link = match &spec {
                Interface::Serial(s) => match &s.endpoint {
                    SerialEndpoint::Tty(p) => {
                        let path = render(p)?;
                        t.note(format!("{iface}: opening {path}"));
                        Link::Console(Console::open_tty(iface, &path, s.baud, t)?)
                    }
                    SerialEndpoint::Tcp(a) => {
                        let addr = render(a)?;
                        t.note(format!("{iface}: connecting to {addr}"));
                        Link::Console(Console::open_tcp(iface, &addr, timeout, t).await?)
                    }
                },
                Interface::Mqtt(m) => {
                    let addr = match &m.broker {
                        MqttBroker::Embedded => match globals.get("broker.address") {
                            Some(a) => a.expose().to_string(),
                            None => {
                                return Err(LinkError::Open {
                                    endpoint: iface.into(),
                                    detail: "no embedded broker is running".into(),
                                })
                            }
                        },
                        MqttBroker::Address(a) => render(a)?,
                    };
                    let (host, port) = split_address(&addr).map_err(|detail| LinkError::Open {
                        endpoint: iface.into(),
                        detail,
                    })?;
                    let client_id = match &m.client_id {
                        Some(c) => render(c)?,
                        None => format!("hilsec-{}", self.unit.name),
                    };
                    let credentials = match (&m.username, &m.password) {
                        (Some(u), p) => {
                            let pass = match p {
                                Some(p) => {
                                    let r =
                                        p.render(globals).map_err(|detail| LinkError::Open {
                                            endpoint: iface.to_string(),
                                            detail,
                                        })?;
                                    for s in &r.secrets {
                                        self.redactor.add(s);
                                    }
                                    r.text
                                }
                                None => String::new(),
                            };
                            Some((render(u)?, pass))
                        }
                        _ => None,
                    };
                    let params = MqttParams {
                        host,
                        port,
                        client_id,
                        credentials,
                    };
                    Link::Mqtt(MqttLink::connect(iface, &params, timeout, t).await?)
                }
                Interface::Http(h) => {
                    let mut ca = Vec::new();
                    if let Some(c) = &h.ca {
                        ca.push(std::path::PathBuf::from(render(c)?));
                    }
                    let opts = crate::iface::http::HttpOptions {
                        ca,
                        timeout,
                        ..Default::default()
                    };
                    let c = crate::iface::http::HttpClient::new(&opts).map_err(|e| {
                        LinkError::Open {
                            endpoint: iface.to_string(),
                            detail: e.to_string(),
                        }
                    })?;
                    Link::Http(Arc::new(c))
                }
                Interface::ModbusTcp(m) => {
                    let addr = render(&m.address)?;
                    Link::Modbus(
                        ModbusLink::connect_tcp(iface, &addr, m.unit_id, timeout, t).await?,
                    )
                }
                Interface::ModbusRtu(m) => match &m.endpoint {
                    SerialEndpoint::Tty(p) => {
                        let path = render(p)?;
                        Link::Modbus(ModbusLink::open_rtu_tty(
                            iface, &path, m.baud, m.unit_id, t,
                        )?)
                    }
                    SerialEndpoint::Tcp(a) => {
                        let addr = render(a)?;
                        Link::Modbus(
                            ModbusLink::connect_rtu_tcp(iface, &addr, m.unit_id, timeout, t)
                                .await?,
                        )
                    }
                },
            };
            self.links.insert(iface.to_string(), link);
        }
        self.links
            .get_mut(iface)
            .ok_or_else(|| LinkError::Closed("link vanished".into()))
    }

    pub(super) fn iface_timeout(&self, on: &str) -> Duration {
        self.model
            .interfaces
            .get(on)
            .map(Interface::default_timeout)
            .unwrap_or(crate::board::DEFAULT_STEP_TIMEOUT)
    }
}
