//! The embedded MQTT broker: when board files ask for `broker = "embedded"` (the default), `hilsec
//! run` starts rumqttd in-process on a free loopback port, so the simulated fleet needs nothing
//! installed. Boards reach it through `{broker.address}`, `{broker.host}`, `{broker.port}`.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why the embedded broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot find a free loopback port for the embedded MQTT broker: {0}")]
    Port(std::io::Error),
    #[error("embedded MQTT broker configuration: {0}")]
    Config(String),
    #[error("the embedded MQTT broker did not accept connections on {0} within 5 s")]
    NotListening(SocketAddr),
}

/// A running embedded broker (it lives until the process exits).
#[derive(Debug, Clone)]
pub struct EmbeddedBroker {
    pub addr: SocketAddr,
    failure: Arc<Mutex<Option<String>>>,
}

impl EmbeddedBroker {
    /// `Some(why)` once the broker has stopped with an error (the library prints nothing; the
    /// CLI reports it).
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }
}

/// Largest payload the embedded broker accepts (update images travel in chunks below this).
pub const MAX_PAYLOAD: usize = 1 << 20;

/// rumqttd's configuration for one MQTT 3.1.1 listener on `addr`, without TLS or auth.
fn config(addr: SocketAddr) -> rumqttd::Config {
    let listener = rumqttd::ServerSettings {
        name: "hilsec-embedded".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: rumqttd::ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size: MAX_PAYLOAD,
            max_inflight_count: 200,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 1024,
            max_outgoing_packet_count: 200,
            max_segment_size: 16 * 1024 * 1024,
            max_segment_count: 4,
            ..Default::default()
        },
        v4: Some(HashMap::from([("1".to_string(), listener)])),
        ..Default::default()
    }
}

pub fn start_embedded() -> Result<EmbeddedBroker, BrokerError> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(BrokerError::Port)?
        .port();
    let addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], port));
    let config = config(addr);
    let failure = Arc::new(Mutex::new(None));
    let failed = failure.clone();
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                if let Ok(mut f) = failed.lock() {
                    *f = Some(e.to_string());
                }
            }
        })
        .map_err(|e| BrokerError::Config(e.to_string()))?;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(EmbeddedBroker { addr, failure });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(BrokerError::NotListening(addr))
}
