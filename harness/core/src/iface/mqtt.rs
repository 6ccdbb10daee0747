//! MQTT (3.1.1) client links: publish, and await a message on a topic filter.
//!
//! One link per unit and interface. A task drives rumqttc's event loop and forwards incoming
//! publishes over a bounded channel (a device flooding a topic fills the channel and the
//! broker's queue, not our memory). Subscriptions are made before the steps that trigger the
//! answer, and acknowledged, so a fast device's reply is never missed. Every message in and out
//! goes to the transcript with the instant it arrived, payloads capped (the transcript escapes
//! them once when rendered).

use std::collections::{BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use regex::bytes::Regex;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

use super::serial::{LinkError, Matched, Outcomes};
use crate::transcript::{escape, Direction, Transcript};

/// Largest MQTT packet accepted or sent (an update chunk fits many times).
pub const MAX_PACKET: usize = 1 << 20;
/// Messages kept while nobody awaits them.
const QUEUE: usize = 256;
/// Bytes of a payload shown in the transcript.
const SHOWN: usize = 512;

enum Incoming {
    Connected,
    SubAck,
    Message {
        topic: String,
        payload: Vec<u8>,
        at: Instant,
    },
    Closed(String),
}

/// Connection parameters, already rendered.
#[derive(Clone)]
pub struct MqttParams {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub credentials: Option<(String, String)>,
}

pub struct MqttLink {
    name: String,
    client: AsyncClient,
    rx: mpsc::Receiver<Incoming>,
    pending: VecDeque<(String, Vec<u8>)>,
    subscribed: BTreeSet<String>,
    closed: Option<String>,
    transcript: Transcript,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for MqttLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn qos(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        2 => QoS::ExactlyOnce,
        _ => QoS::AtLeastOnce,
    }
}

/// A payload for error messages: escaped, capped.
fn show(payload: &[u8]) -> String {
    if payload.len() <= SHOWN {
        escape(payload)
    } else {
        format!("{}… ({} bytes)", escape(&payload[..SHOWN]), payload.len())
    }
}

/// What the transcript records of a message: `[topic] ` and the raw payload, capped. Raw,
/// because the transcript escapes when it renders (escaping here too showed `\\n`).
fn evidence(topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut v = format!("[{topic}] ").into_bytes();
    if payload.len() <= SHOWN {
        v.extend_from_slice(payload);
    } else {
        v.extend_from_slice(&payload[..SHOWN]);
        v.extend_from_slice(format!("… ({} bytes)", payload.len()).as_bytes());
    }
    v
}

/// Why an address is not `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("{addr:?} is not host:port")]
    NoPort { addr: String },
    #[error("{addr:?}: {port:?} is not a port number")]
    BadPort { addr: String, port: String },
}

/// Splits `host:port`.
pub fn split_address(addr: &str) -> Result<(String, u16), AddressError> {
    let (h, p) = addr.rsplit_once(':').ok_or_else(|| AddressError::NoPort {
        addr: addr.to_string(),
    })?;
    let port = p.parse::<u16>().map_err(|_| AddressError::BadPort {
        addr: addr.to_string(),
        port: p.to_string(),
    })?;
    Ok((
        h.trim_start_matches('[').trim_end_matches(']').to_string(),
        port,
    ))
}

impl MqttLink {
    /// Connects and waits for the broker's CONNACK (refusal and silence are errors).
    pub async fn connect(
        name: &str,
        params: &MqttParams,
        timeout: Duration,
        transcript: Transcript,
    ) -> Result<MqttLink, LinkError> {
        let endpoint = format!("{}:{}", params.host, params.port);
        let mut opts = MqttOptions::new(&params.client_id, &params.host, params.port);
        opts.set_keep_alive(Duration::from_secs(30))
            .set_max_packet_size(MAX_PACKET, MAX_PACKET)
            .set_clean_session(true);
        if let Some((u, p)) = &params.credentials {
            opts.set_credentials(u, p);
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(async move {
            loop {
                let ev = eventloop.poll().await;
                let msg = match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => Incoming::Connected,
                    Ok(Event::Incoming(Packet::SubAck(_))) => Incoming::SubAck,
                    Ok(Event::Incoming(Packet::Publish(p))) => Incoming::Message {
                        topic: p.topic.clone(),
                        payload: p.payload.to_vec(),
                        at: Instant::now(),
                    },
                    Ok(_) => continue,
                    Err(e) => {
                        let _ = tx.send(Incoming::Closed(e.to_string())).await;
                        return;
                    }
                };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
        });
        let mut link = MqttLink {
            name: name.to_string(),
            client,
            rx,
            pending: VecDeque::new(),
            subscribed: BTreeSet::new(),
            closed: None,
            transcript,
            task,
        };
        link.transcript.note(format!(
            "{name}: connecting to broker {endpoint} as {:?}",
            params.client_id
        ));
        let connected = tokio::time::timeout(timeout, link.rx.recv()).await;
        match connected {
            Ok(Some(Incoming::Connected)) => Ok(link),
            Ok(Some(Incoming::Closed(e))) => Err(LinkError::Open {
                endpoint,
                detail: e,
            }),
            Ok(_) => Err(LinkError::Open {
                endpoint,
                detail: "the broker answered with something else than CONNACK".into(),
            }),
            Err(_) => Err(LinkError::Open {
                endpoint,
                detail: format!("no CONNACK within {timeout:?}"),
            }),
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    pub fn set_transcript(&mut self, t: Transcript) {
        self.transcript = t;
    }

    /// Drops messages received so far.
    pub fn flush(&mut self) {
        self.pending.clear();
        while let Ok(m) = self.rx.try_recv() {
            if let Incoming::Closed(e) = m {
                self.closed = Some(e);
            }
        }
    }

    /// At the start of a test: messages that arrived since the last read go into the current
    /// transcript marked *before test* (at most [`QUEUE`] of them, each capped), then are
    /// dropped, so the test's first `await` only sees messages that came after.
    pub fn drain_before_test(&mut self) -> usize {
        // Messages already in `pending` were recorded in the previous test's transcript.
        self.pending.clear();
        let mut n = 0;
        while n < QUEUE {
            let Ok(m) = self.rx.try_recv() else { break };
            match m {
                Incoming::Message { topic, payload, at } => {
                    n += 1;
                    self.transcript.record_before_test(
                        Direction::Rx,
                        &self.name,
                        &evidence(&topic, &payload),
                        at,
                    );
                }
                Incoming::Closed(e) => {
                    self.transcript.note(format!(
                        "{}: connection lost before the test: {e}",
                        self.name
                    ));
                    self.closed = Some(e);
                    break;
                }
                Incoming::Connected | Incoming::SubAck => {}
            }
        }
        n
    }

    /// Receives the next event within `deadline`, keeping messages in `pending`.
    async fn pump(&mut self, deadline: Instant) -> Result<Option<Incoming>, LinkError> {
        if let Some(c) = &self.closed {
            return Err(LinkError::Closed(c.clone()));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.rx.recv()).await {
            Ok(Some(Incoming::Closed(e))) => {
                self.closed = Some(e.clone());
                self.transcript
                    .note(format!("{}: connection lost: {e}", self.name));
                Err(LinkError::Closed(e))
            }
            Ok(Some(Incoming::Message { topic, payload, at })) => {
                self.transcript.record_at(
                    Direction::Rx,
                    &self.name,
                    &evidence(&topic, &payload),
                    at,
                );
                if self.pending.len() >= QUEUE {
                    self.pending.pop_front();
                }
                self.pending.push_back((topic, payload));
                Ok(None)
            }
            Ok(Some(other)) => Ok(Some(other)),
            Ok(None) => {
                let e = "the MQTT event loop stopped".to_string();
                self.closed = Some(e.clone());
                Err(LinkError::Closed(e))
            }
            Err(_) => Ok(None),
        }
    }

    /// Subscribes to `filter` (once per link) and waits for the broker's SUBACK.
    pub async fn subscribe(&mut self, filter: &str, timeout: Duration) -> Result<(), LinkError> {
        if self.subscribed.contains(filter) {
            return Ok(());
        }
        if !rumqttc::valid_filter(filter) {
            return Err(LinkError::Protocol(format!(
                "{filter:?} is not a valid MQTT topic filter"
            )));
        }
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .map_err(|e| LinkError::Write(e.to_string()))?;
        self.transcript
            .note(format!("{}: subscribe {filter}", self.name));
        let deadline = Instant::now() + timeout;
        loop {
            if Instant::now() >= deadline {
                return Err(LinkError::Timeout {
                    pattern: format!("SUBACK for {filter}"),
                    waited: timeout,
                    tail: String::new(),
                });
            }
            if let Some(Incoming::SubAck) = self.pump(deadline).await? {
                self.subscribed.insert(filter.to_string());
                return Ok(());
            }
        }
    }

    pub async fn publish(
        &mut self,
        topic: &str,
        payload: Vec<u8>,
        q: u8,
        retain: bool,
        shown: Option<&str>,
    ) -> Result<(), LinkError> {
        if let Some(c) = &self.closed {
            return Err(LinkError::Closed(c.clone()));
        }
        let text = match shown {
            Some(s) => evidence(topic, s.as_bytes()),
            None => evidence(topic, &payload),
        };
        self.transcript.record(Direction::Tx, &self.name, &text);
        self.client
            .publish(topic, qos(q), retain, payload)
            .await
            .map_err(|e| LinkError::Write(e.to_string()))
    }

    /// Waits for a message on a topic matching `filter` whose payload matches `pattern`
    /// (or `reject`). Other messages are recorded and dropped.
    pub async fn await_message(
        &mut self,
        filter: &str,
        pattern: &Regex,
        reject: Option<&Regex>,
        timeout: Duration,
    ) -> Result<Matched, LinkError> {
        let mut o = Outcomes::new(pattern);
        o.reject = reject;
        self.await_outcomes(filter, o, timeout).await
    }

    /// Waits for a message on a topic matching `filter` that one of the outcomes matches. Each
    /// payload is judged whole: `reject` if it matches, else `accept`, else `expect`; `text` is
    /// the whole payload.
    pub async fn await_outcomes(
        &mut self,
        filter: &str,
        outcomes: Outcomes<'_>,
        timeout: Duration,
    ) -> Result<Matched, LinkError> {
        self.subscribe(filter, timeout).await?;
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            while let Some((topic, payload)) = self.pending.pop_front() {
                if !rumqttc::matches(&topic, filter) {
                    continue;
                }
                last = show(&payload);
                if let Some(mut m) = outcomes.judge(&payload) {
                    m.text = String::from_utf8_lossy(&payload).into_owned();
                    return Ok(m);
                }
            }
            if Instant::now() >= deadline {
                return Err(LinkError::Timeout {
                    pattern: format!("{} on {filter}", outcomes.describe()),
                    waited: timeout,
                    tail: last,
                });
            }
            self.pump(deadline).await?;
        }
    }
}
