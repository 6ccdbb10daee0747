//! Probing a unit's own MQTT broker: may a stranger connect (anonymously, or with a default
//! credential), read everything (`#`), and publish to the unit's command topics?
//!
//! Exists apart from [`super::mqtt`] because a probe needs exact answers that a general client
//! hides: the CONNACK return code of a refusal (3.1.1: 1..=5), the SUBACK code of each filter
//! (0x80: refused), and whether a publish went through (3.1.1 has no refusal for a publish, so
//! the probe subscribes to the topic and waits for its own message to come back). So this is a
//! small MQTT 3.1.1 client written on a `TcpStream`: one connection, clean session, one packet
//! at a time, every wait bounded by a deadline, every frame checked before it is believed.
//!
//! Memory does not depend on the broker: payloads, whatever their size (up to the 256 MiB MQTT
//! allows), are read in 4 KiB chunks and dropped (only a payload short enough to be the probe's
//! own is kept, to compare), at most `max_topics` topics are kept, other packets are a few bytes
//! and are refused when longer. A broker that is silent, talks garbage
//! or closes before its CONNACK gives a [`LinkError`] within the timeout.
//!
//! Evidence: the CONNACK, each SUBACK, the topics seen with message counts and sizes (never a
//! payload of the unit), the probe publishes and whether they came back. The password is never
//! recorded; the user name is.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::LinkError;
use crate::transcript::{Direction, Transcript};

/// Longest packet other than PUBLISH accepted from the broker (our SUBACKs have one code).
const MAX_CONTROL: usize = 1024;
/// Keep-alive announced in CONNECT; a PINGREQ goes out at half of it while listening.
const KEEP_ALIVE: Duration = Duration::from_secs(60);
/// How long the final DISCONNECT may take to write.
const BYE: Duration = Duration::from_secs(2);

/// What to try once connected.
#[derive(Debug, Clone)]
pub struct ProbePlan {
    /// Filters to subscribe to (e.g. "#"), each judged by its SUBACK.
    pub subscribe: Vec<String>,
    /// Topics to publish one probe message to (the unit's command topics): a short payload
    /// "hilsec-probe <nonce>", QoS 0, never retained. Delivery is judged by echo: the probe
    /// also subscribes to each of these topics and counts the publish as delivered when its own
    /// message comes back (MQTT 3.1.1 has no refusal for a publish).
    pub publish: Vec<String>,
    /// How long to listen for messages after subscribing (and for the echoes).
    pub listen: Duration,
    /// Most distinct topics recorded.
    pub max_topics: usize,
}

impl Connack {
    /// A refusal of the client's credentials or of anonymous access (3.1.1 codes 4 "bad user
    /// name or password" and 5 "not authorized"); codes 1-3 refuse for other reasons (protocol
    /// version, client id, server unavailable) and say nothing about authentication.
    pub fn refuses_credentials(&self) -> bool {
        matches!(self, Connack::Refused { code: 4 | 5, .. })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connack {
    Accepted,
    /// CONNACK return code (3.1.1: 1..=5) and its meaning ("not authorized", "bad user name or
    /// password", ...).
    Refused {
        code: u8,
        meaning: String,
    },
}

#[derive(Debug, Clone)]
pub struct TopicSeen {
    pub topic: String,
    pub messages: usize,
    pub bytes: usize,
}

#[derive(Debug, Clone)]
pub struct BrokerProbe {
    pub connack: Connack,
    /// Each subscribed filter and the QoS granted (`None`: refused, SUBACK 0x80).
    pub granted: Vec<(String, Option<u8>)>,
    /// Distinct topics whose messages arrived (at most `max_topics`), ours excluded.
    pub seen: Vec<TopicSeen>,
    /// The `publish` topics whose probe message came back.
    pub delivered: Vec<String>,
    /// Publish topics not checked because no subscription covering them was granted.
    pub unverified: Vec<String>,
}

/// The meaning of a CONNACK return code of MQTT 3.1.1.
pub fn connack_meaning(code: u8) -> &'static str {
    match code {
        0 => "connection accepted",
        1 => "unacceptable protocol version",
        2 => "identifier rejected",
        3 => "server unavailable",
        4 => "bad user name or password",
        5 => "not authorized",
        _ => "reserved return code",
    }
}

/// Whether `topic` matches the subscription `filter` (MQTT 3.1.1 §4.7; topics starting with
/// `$` are not matched by a filter starting with a wildcard).
pub fn topic_matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('#') || filter.starts_with('+')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

fn valid_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > usize::from(u16::MAX) || filter.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = filter.split('/').collect();
    levels.iter().enumerate().all(|(i, l)| {
        if l.contains('#') {
            *l == "#" && i + 1 == levels.len()
        } else {
            !l.contains('+') || *l == "+"
        }
    })
}

fn valid_topic(topic: &str) -> bool {
    !topic.is_empty() && topic.len() <= usize::from(u16::MAX) && !topic.contains(['+', '#', '\0'])
}

/// A random 64-bit value (the standard library's per-instance random hash keys).
fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// A packet from the broker, checked.
#[derive(Debug)]
enum Frame {
    ConnAck {
        code: u8,
    },
    SubAck {
        pkid: u16,
        codes: Vec<u8>,
    },
    Publish {
        topic: String,
        qos: u8,
        pkid: u16,
        len: usize,
        /// Kept only when short (the probe's own message is short).
        payload: Option<Vec<u8>>,
    },
    PubRel {
        pkid: u16,
    },
    /// PUBACK, PUBREC, PUBCOMP, UNSUBACK, PINGRESP: nothing to do.
    Other,
}

/// Why reading stopped.
enum ReadEnd {
    Deadline,
    Link(LinkError),
}

impl From<LinkError> for ReadEnd {
    fn from(e: LinkError) -> Self {
        ReadEnd::Link(e)
    }
}

/// Payloads up to this length are kept (to recognise the probe's own message).
const KEEP_PAYLOAD: usize = 128;

struct Conn {
    name: String,
    endpoint: String,
    rd: BufReader<tokio::net::tcp::OwnedReadHalf>,
    wr: tokio::net::tcp::OwnedWriteHalf,
    transcript: Transcript,
    last_sent: Instant,
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    // Filters and topics are checked by the callers; an absurd credential is cut at 65535 bytes.
    out.extend_from_slice(&(s.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    out.extend_from_slice(&s[..s.len().min(usize::from(u16::MAX))]);
}

/// A packet: fixed header byte, remaining length, body.
fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        out.push(b);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

impl Conn {
    async fn open(
        name: &str,
        addr: &str,
        deadline: Instant,
        timeout: Duration,
        transcript: &Transcript,
    ) -> Result<Conn, LinkError> {
        let stream = match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(LinkError::Open {
                    endpoint: addr.to_string(),
                    detail: e.to_string(),
                })
            }
            Err(_) => {
                return Err(LinkError::Open {
                    endpoint: addr.to_string(),
                    detail: format!("no TCP connection within {timeout:?}"),
                })
            }
        };
        let _ = stream.set_nodelay(true);
        let (rd, wr) = stream.into_split();
        Ok(Conn {
            name: name.to_string(),
            endpoint: addr.to_string(),
            rd: BufReader::with_capacity(8192, rd),
            wr,
            transcript: transcript.clone(),
            last_sent: Instant::now(),
        })
    }

    fn tx(&self, what: &str) {
        self.transcript
            .record(Direction::Tx, &self.name, what.as_bytes());
    }

    fn rx(&self, what: &str) {
        self.transcript
            .record(Direction::Rx, &self.name, what.as_bytes());
    }

    async fn send(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), LinkError> {
        match tokio::time::timeout_at(deadline, self.wr.write_all(bytes)).await {
            Ok(Ok(())) => {
                self.last_sent = Instant::now();
                Ok(())
            }
            Ok(Err(e)) => Err(LinkError::Write(format!("{}: {e}", self.endpoint))),
            Err(_) => Err(LinkError::Write(format!(
                "{}: the broker did not take a packet in time",
                self.endpoint
            ))),
        }
    }

    async fn read_exact(&mut self, buf: &mut [u8], deadline: Instant) -> Result<(), ReadEnd> {
        match tokio::time::timeout_at(deadline, self.rd.read_exact(buf)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(ReadEnd::Link(LinkError::Closed(format!(
                    "{}: the broker closed the connection",
                    self.endpoint
                ))))
            }
            Ok(Err(e)) => Err(ReadEnd::Link(LinkError::Closed(format!(
                "{}: {e}",
                self.endpoint
            )))),
            Err(_) => Err(ReadEnd::Deadline),
        }
    }

    /// Reads and discards `n` bytes.
    async fn skip(&mut self, mut n: usize, deadline: Instant) -> Result<(), ReadEnd> {
        let mut chunk = [0u8; 4096];
        while n > 0 {
            let k = n.min(chunk.len());
            self.read_exact(&mut chunk[..k], deadline).await?;
            n -= k;
        }
        Ok(())
    }

    fn protocol(&self, what: String) -> ReadEnd {
        ReadEnd::Link(LinkError::Protocol(format!(
            "{}: not an MQTT 3.1.1 broker: {what}",
            self.endpoint
        )))
    }

    /// The next packet, checked; `Deadline` when none completed in time.
    async fn next(&mut self, deadline: Instant) -> Result<Frame, ReadEnd> {
        self.next_started_by(deadline, deadline).await
    }

    /// The next packet, whose first byte must come by `start_by` and the rest by `deadline`.
    /// A packet is never abandoned half read before `deadline` (the stream would lose its
    /// framing): only the wait for a packet to begin ends at `start_by`.
    async fn next_started_by(
        &mut self,
        start_by: Instant,
        deadline: Instant,
    ) -> Result<Frame, ReadEnd> {
        let mut b = [0u8; 1];
        self.read_exact(&mut b, start_by.min(deadline)).await?;
        let first = b[0];
        let mut len = 0usize;
        let mut shift = 0;
        loop {
            self.read_exact(&mut b, deadline).await?;
            len |= usize::from(b[0] & 0x7f) << shift;
            if b[0] & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 21 {
                return Err(self.protocol("malformed remaining length".into()));
            }
        }
        let kind = first >> 4;
        let flags = first & 0x0f;
        if kind == 3 {
            return self.publish(flags, len, deadline).await;
        }
        let expected_flags = if kind == 6 { 2 } else { 0 };
        let known = matches!(kind, 2 | 4 | 5 | 6 | 7 | 9 | 11 | 13);
        if !known || flags != expected_flags || len > MAX_CONTROL {
            return Err(self.protocol(format!(
                "unexpected packet header 0x{first:02x} (length {len})"
            )));
        }
        let mut body = vec![0u8; len];
        self.read_exact(&mut body, deadline).await?;
        let pkid = |body: &[u8]| u16::from_be_bytes([body[0], body[1]]);
        match kind {
            2 if len == 2 && body[0] & 0xfe == 0 => Ok(Frame::ConnAck { code: body[1] }),
            9 if len >= 3 => Ok(Frame::SubAck {
                pkid: pkid(&body),
                codes: body[2..].to_vec(),
            }),
            6 if len == 2 => Ok(Frame::PubRel { pkid: pkid(&body) }),
            4 | 5 | 7 | 11 if len == 2 => Ok(Frame::Other),
            13 if len == 0 => Ok(Frame::Other),
            _ => Err(self.protocol(format!("malformed packet 0x{first:02x} of length {len}"))),
        }
    }

    async fn publish(
        &mut self,
        flags: u8,
        len: usize,
        deadline: Instant,
    ) -> Result<Frame, ReadEnd> {
        let qos = (flags >> 1) & 3;
        if qos == 3 {
            return Err(self.protocol("PUBLISH with QoS 3".into()));
        }
        let mut two = [0u8; 2];
        if len < 2 {
            return Err(self.protocol("PUBLISH too short".into()));
        }
        self.read_exact(&mut two, deadline).await?;
        let tlen = usize::from(u16::from_be_bytes(two));
        let header = 2 + tlen + if qos > 0 { 2 } else { 0 };
        if len < header {
            return Err(self.protocol("PUBLISH shorter than its topic".into()));
        }
        let mut topic = vec![0u8; tlen];
        self.read_exact(&mut topic, deadline).await?;
        let mut pkid = 0;
        if qos > 0 {
            self.read_exact(&mut two, deadline).await?;
            pkid = u16::from_be_bytes(two);
        }
        let plen = len - header;
        let payload = if plen <= KEEP_PAYLOAD {
            let mut p = vec![0u8; plen];
            self.read_exact(&mut p, deadline).await?;
            Some(p)
        } else {
            self.skip(plen, deadline).await?;
            None
        };
        Ok(Frame::Publish {
            topic: String::from_utf8_lossy(&topic).into_owned(),
            qos,
            pkid,
            len: plen,
            payload,
        })
    }

    /// Sends CONNECT and reads the CONNACK.
    async fn connect(
        &mut self,
        creds: Option<(&str, &str)>,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Connack, LinkError> {
        // At most 23 bytes: all MQTT 3.1.1 brokers must accept that (longer ids may be refused
        // with code 2, which would read as a refusal of the credential).
        let client_id = format!("hilsec-{:016x}", random_u64());
        let mut body = Vec::with_capacity(64);
        put_str(&mut body, b"MQTT");
        body.push(4);
        let mut flags = 0x02; // clean session
        if creds.is_some() {
            flags |= 0x80 | 0x40;
        }
        body.push(flags);
        body.extend_from_slice(&(KEEP_ALIVE.as_secs() as u16).to_be_bytes());
        put_str(&mut body, client_id.as_bytes());
        if let Some((user, pass)) = creds {
            put_str(&mut body, user.as_bytes());
            put_str(&mut body, pass.as_bytes());
        }
        let who = match creds {
            None => "anonymous (no user name)".to_string(),
            Some((u, _)) => format!("user name {u:?}, password not recorded"),
        };
        self.tx(&format!(
            "CONNECT client id {client_id:?}, {who}, clean session"
        ));
        // A peer that closed at once makes the write fail (reset): closed before its CONNACK.
        self.send(&packet(0x10, &body), deadline)
            .await
            .map_err(|e| LinkError::Closed(format!("{e}, before its CONNACK")))?;
        let frame = match self.next(deadline).await {
            Ok(f) => f,
            Err(ReadEnd::Deadline) => {
                return Err(LinkError::Timeout {
                    pattern: "CONNACK".into(),
                    waited: timeout,
                    tail: String::new(),
                })
            }
            Err(ReadEnd::Link(LinkError::Closed(e))) => {
                return Err(LinkError::Closed(format!("{e} before its CONNACK")))
            }
            Err(ReadEnd::Link(e)) => return Err(e),
        };
        let Frame::ConnAck { code } = frame else {
            return Err(LinkError::Protocol(format!(
                "{}: the broker answered CONNECT with something else than CONNACK",
                self.endpoint
            )));
        };
        self.rx(&format!("CONNACK {code} ({})", connack_meaning(code)));
        match code {
            0 => Ok(Connack::Accepted),
            1..=5 => Ok(Connack::Refused {
                code,
                meaning: connack_meaning(code).to_string(),
            }),
            _ => Err(LinkError::Protocol(format!(
                "{}: CONNACK with return code {code}, which MQTT 3.1.1 does not define",
                self.endpoint
            ))),
        }
    }

    async fn disconnect(&mut self) {
        self.tx("DISCONNECT");
        let _ = self.send(&[0xe0, 0x00], Instant::now() + BYE).await;
        let _ = tokio::time::timeout(BYE, self.wr.shutdown()).await;
    }
}

/// What the probe tracks while connected.
struct Tally {
    nonce_payload: Vec<u8>,
    /// Publish topics sent, and whether each came back.
    sent: Vec<(String, bool)>,
    seen: Vec<TopicSeen>,
    index: HashMap<String, usize>,
    max_topics: usize,
    /// Messages on topics past `max_topics`.
    untracked: usize,
}

impl Tally {
    fn message(&mut self, topic: &str, len: usize, payload: Option<&[u8]>) {
        if payload == Some(self.nonce_payload.as_slice()) {
            for (t, back) in &mut self.sent {
                if t == topic {
                    *back = true;
                }
            }
            if self.sent.iter().any(|(t, _)| t == topic) {
                return;
            }
        }
        if let Some(&i) = self.index.get(topic) {
            let s = &mut self.seen[i];
            s.messages = s.messages.saturating_add(1);
            s.bytes = s.bytes.saturating_add(len);
        } else if self.seen.len() < self.max_topics {
            self.index.insert(topic.to_string(), self.seen.len());
            self.seen.push(TopicSeen {
                topic: topic.to_string(),
                messages: 1,
                bytes: len,
            });
        } else {
            self.untracked = self.untracked.saturating_add(1);
        }
    }
}

/// Handles one packet that is not the awaited one: counts messages, acknowledges QoS 1/2.
async fn handle(conn: &mut Conn, tally: &mut Tally, frame: Frame) -> Result<(), LinkError> {
    match frame {
        Frame::Publish {
            topic,
            qos,
            pkid,
            len,
            payload,
        } => {
            tally.message(&topic, len, payload.as_deref());
            let ack = match qos {
                1 => Some(0x40),
                2 => Some(0x50),
                _ => None,
            };
            if let Some(kind) = ack {
                let bytes = packet(kind, &pkid.to_be_bytes());
                conn.send(&bytes, Instant::now() + BYE).await?;
            }
        }
        Frame::PubRel { pkid } => {
            conn.send(&packet(0x70, &pkid.to_be_bytes()), Instant::now() + BYE)
                .await?;
        }
        Frame::ConnAck { .. } => {
            return Err(LinkError::Protocol(format!(
                "{}: a second CONNACK",
                conn.endpoint
            )))
        }
        Frame::SubAck { .. } | Frame::Other => {}
    }
    Ok(())
}

/// Subscribes to one filter (QoS 0 requested) and waits for its SUBACK; `Ok(None)`: refused.
/// `Err(Closed)` when the broker closed the connection instead of answering.
async fn subscribe(
    conn: &mut Conn,
    tally: &mut Tally,
    filter: &str,
    pkid: u16,
    timeout: Duration,
) -> Result<Option<u8>, LinkError> {
    let mut body = pkid.to_be_bytes().to_vec();
    put_str(&mut body, filter.as_bytes());
    body.push(0);
    conn.tx(&format!("SUBSCRIBE {filter} (QoS 0)"));
    let deadline = Instant::now() + timeout;
    conn.send(&packet(0x82, &body), deadline).await?;
    loop {
        let frame = match conn.next(deadline).await {
            Ok(f) => f,
            Err(ReadEnd::Deadline) => {
                return Err(LinkError::Timeout {
                    pattern: format!("SUBACK for {filter}"),
                    waited: timeout,
                    tail: String::new(),
                })
            }
            Err(ReadEnd::Link(e)) => return Err(e),
        };
        match frame {
            Frame::SubAck { pkid: p, codes } if p == pkid => {
                let [code] = codes[..] else {
                    return Err(LinkError::Protocol(format!(
                        "{}: SUBACK with {} codes for one filter",
                        conn.endpoint,
                        codes.len()
                    )));
                };
                return match code {
                    0..=2 => {
                        conn.rx(&format!("SUBACK {filter}: granted QoS {code}"));
                        Ok(Some(code))
                    }
                    0x80 => {
                        conn.rx(&format!("SUBACK {filter}: refused (0x80)"));
                        Ok(None)
                    }
                    _ => Err(LinkError::Protocol(format!(
                        "{}: SUBACK code 0x{code:02x} for {filter}, which MQTT 3.1.1 does not define",
                        conn.endpoint
                    ))),
                };
            }
            other => handle(conn, tally, other).await?,
        }
    }
}

/// Connects to the broker at `addr` (host:port, plain TCP, MQTT 3.1.1, clean session, a random
/// client id "hilsec-<16 hex digits>", 23 bytes), as `creds` (None: anonymous, no user name), and when
/// accepted runs `plan`. Records into `transcript`: the CONNACK, each SUBACK, the topics seen
/// with message counts and sizes (NOT payloads), the probe publishes and whether they came back.
/// Never records a password. Bounded: `timeout` for connect/CONNACK and each SUBACK, `listen`
/// for listening, at most `max_topics` topics and 1 MiB per message. A silent peer, garbage, or
/// a connection closed before CONNACK is a `LinkError` (Timeout/Protocol/Closed) within timeout.
///
/// A broker that closes the connection instead of answering a SUBSCRIBE (a refusal some brokers
/// use) has that filter, and the filters not tried after it, counted as refused; one that
/// closes while listening ends the listening. Both are noted in the transcript; the result keeps
/// what was learnt. A topic covered by no granted subscription is not published to.
/// `granted` lists the plan's filters; the subscriptions made for the echoes (each publish topic
/// not among them) are in the transcript, and count for `unverified`.
pub async fn probe_broker(
    name: &str,
    addr: &str,
    creds: Option<(&str, &str)>,
    plan: &ProbePlan,
    timeout: Duration,
    transcript: &Transcript,
) -> Result<BrokerProbe, LinkError> {
    if let Some(f) = plan.subscribe.iter().find(|f| !valid_filter(f)) {
        return Err(LinkError::Protocol(format!(
            "{f:?} is not a valid MQTT topic filter"
        )));
    }
    if let Some(t) = plan.publish.iter().find(|t| !valid_topic(t)) {
        return Err(LinkError::Protocol(format!(
            "{t:?} is not a valid MQTT topic to publish to"
        )));
    }
    let deadline = Instant::now() + timeout;
    transcript.note(format!("{name}: probing the MQTT broker at {addr}"));
    let mut conn = Conn::open(name, addr, deadline, timeout, transcript).await?;
    let connack = conn.connect(creds, deadline, timeout).await?;
    if connack != Connack::Accepted {
        return Ok(BrokerProbe {
            connack,
            granted: Vec::new(),
            seen: Vec::new(),
            delivered: Vec::new(),
            unverified: plan.publish.clone(),
        });
    }
    let mut tally = Tally {
        nonce_payload: format!("hilsec-probe {:016x}", random_u64()).into_bytes(),
        sent: Vec::new(),
        seen: Vec::new(),
        index: HashMap::new(),
        max_topics: plan.max_topics,
        untracked: 0,
    };
    let mut granted: Vec<(String, Option<u8>)> = Vec::new();
    let mut echo_granted: Vec<(String, Option<u8>)> = Vec::new();
    let mut closed: Option<String> = None;
    let mut pkid: u16 = 0;
    // The plan's filters, then each publish topic for its echo.
    let echo_filters: Vec<String> = plan
        .publish
        .iter()
        .filter(|t| !plan.subscribe.contains(t))
        .cloned()
        .collect();
    for (i, filter) in plan.subscribe.iter().chain(echo_filters.iter()).enumerate() {
        let result = if closed.is_some() {
            None
        } else {
            pkid = pkid.wrapping_add(1).max(1);
            match subscribe(&mut conn, &mut tally, filter, pkid, timeout).await {
                Ok(q) => q,
                Err(LinkError::Closed(e)) => {
                    transcript.note(format!(
                        "{name}: the broker closed the connection after SUBSCRIBE {filter} ({e}): \
                         counted as refused, with the filters not tried after it"
                    ));
                    closed = Some(e);
                    None
                }
                Err(e) => return Err(e),
            }
        };
        if i < plan.subscribe.len() {
            granted.push((filter.clone(), result));
        } else {
            echo_granted.push((filter.clone(), result));
        }
    }
    // Which publish topics can be verified: covered by a granted subscription.
    let mut unverified = Vec::new();
    let mut to_send = Vec::new();
    for topic in &plan.publish {
        let covered = granted
            .iter()
            .chain(echo_granted.iter())
            .any(|(f, q)| q.is_some() && topic_matches(f, topic));
        if covered && closed.is_none() {
            to_send.push(topic.clone());
        } else {
            transcript.note(format!(
                "{name}: not publishing to {topic}: no granted subscription covers it, so delivery \
                 could not be seen"
            ));
            unverified.push(topic.clone());
        }
    }
    let shown = String::from_utf8_lossy(&tally.nonce_payload).into_owned();
    for topic in &to_send {
        let mut body = Vec::with_capacity(topic.len() + 40);
        put_str(&mut body, topic.as_bytes());
        body.extend_from_slice(&tally.nonce_payload);
        conn.tx(&format!("PUBLISH [{topic}] {shown} (QoS 0, not retained)"));
        if let Err(e) = conn
            .send(&packet(0x30, &body), Instant::now() + timeout)
            .await
        {
            transcript.note(format!("{name}: publishing to {topic} failed: {e}"));
            closed = Some(e.to_string());
            break;
        }
        tally.sent.push((topic.clone(), false));
    }
    // Listen (also for the echoes).
    if closed.is_none() {
        let end = Instant::now() + plan.listen;
        let ping_every = KEEP_ALIVE / 2;
        loop {
            // Keep the session alive through a long listen (even while messages pour in).
            if Instant::now() >= conn.last_sent + ping_every {
                if let Err(e) = conn.send(&[0xc0, 0x00], Instant::now() + timeout).await {
                    closed = Some(e.to_string());
                    break;
                }
            }
            let wake = end.min(conn.last_sent + ping_every);
            match conn.next_started_by(wake, end).await {
                Ok(frame) => match handle(&mut conn, &mut tally, frame).await {
                    Ok(()) => {}
                    Err(e @ (LinkError::Closed(_) | LinkError::Write(_))) => {
                        closed = Some(e.to_string());
                        break;
                    }
                    Err(e) => return Err(e),
                },
                Err(ReadEnd::Deadline) => {
                    if Instant::now() >= end {
                        break;
                    }
                }
                Err(ReadEnd::Link(LinkError::Closed(e))) => {
                    closed = Some(e);
                    break;
                }
                Err(ReadEnd::Link(e)) => return Err(e),
            }
        }
        if let Some(e) = &closed {
            transcript.note(format!("{name}: the connection ended while listening: {e}"));
        }
    }
    if closed.is_none() {
        conn.disconnect().await;
    }
    for s in &tally.seen {
        transcript.note(format!(
            "{name}: seen {}: {} message(s), {} byte(s)",
            s.topic, s.messages, s.bytes
        ));
    }
    if tally.untracked > 0 {
        transcript.note(format!(
            "{name}: {} further message(s) on topics past the first {} not recorded",
            tally.untracked, plan.max_topics
        ));
    }
    let mut delivered = Vec::new();
    for (topic, back) in &tally.sent {
        transcript.note(format!(
            "{name}: probe publish to {topic}: {}",
            if *back {
                "came back (delivered)"
            } else {
                "did not come back"
            }
        ));
        if *back {
            delivered.push(topic.clone());
        }
    }
    Ok(BrokerProbe {
        connack,
        granted,
        seen: tally.seen,
        delivered,
        unverified,
    })
}

/// Connect only (for a sweep of credentials): the CONNACK, then DISCONNECT.
pub async fn try_connect(
    name: &str,
    addr: &str,
    creds: Option<(&str, &str)>,
    timeout: Duration,
    transcript: &Transcript,
) -> Result<Connack, LinkError> {
    let deadline = Instant::now() + timeout;
    let mut conn = Conn::open(name, addr, deadline, timeout, transcript).await?;
    let connack = conn.connect(creds, deadline, timeout).await?;
    if connack == Connack::Accepted {
        conn.disconnect().await;
    }
    Ok(connack)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_topics() {
        assert!(topic_matches("#", "a/b"));
        assert!(topic_matches("a/#", "a"));
        assert!(topic_matches("a/+/c", "a/b/c"));
        assert!(!topic_matches("a/+/c", "a/b/d"));
        assert!(!topic_matches("a/b", "a/b/c"));
        assert!(topic_matches("a/b/c", "a/b/c"));
        assert!(!topic_matches("#", "$SYS/x"));
        assert!(topic_matches("$SYS/#", "$SYS/x"));
        assert!(valid_filter("#") && valid_filter("a/+/b") && valid_filter("a/#"));
        assert!(!valid_filter("a#") && !valid_filter("a/#/b") && !valid_filter("a+/b"));
        assert!(!valid_filter(""));
        assert!(valid_topic("a/b") && !valid_topic("a/#") && !valid_topic(""));
    }

    #[test]
    fn remaining_length_encoding() {
        assert_eq!(packet(0xe0, &[]), vec![0xe0, 0]);
        let p = packet(0x30, &[0; 200]);
        assert_eq!(&p[..3], &[0x30, 0xc8, 0x01]);
        assert_eq!(p.len(), 203);
    }
}
