//! The embedded MQTT broker: when board files ask for `broker = "embedded"` (the default), `hilsec
//! run` starts rumqttd in-process on a free loopback port, so the simulated fleet needs nothing
//! installed. Boards reach it through `{broker.address}`, `{broker.host}`, `{broker.port}`.

use std::net::{SocketAddr, TcpListener, TcpStream};
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
}

/// Largest payload the embedded broker accepts (update images travel in chunks below this).
pub const MAX_PAYLOAD: usize = 1 << 20;

pub fn start_embedded() -> Result<EmbeddedBroker, BrokerError> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(BrokerError::Port)?
        .port();
    let addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], port));
    let config = format!(
        r#"
id = 0
[router]
id = 0
max_connections = 1024
max_outgoing_packet_count = 200
max_segment_size = 16777216
max_segment_count = 4

[v4.1]
name = "hilsec-embedded"
listen = "{addr}"
next_connection_delay_ms = 1
    [v4.1.connections]
    connection_timeout_ms = 10000
    max_payload_size = {MAX_PAYLOAD}
    max_inflight_count = 200
    dynamic_filters = true
"#
    );
    let config: rumqttd::Config =
        toml::from_str(&config).map_err(|e| BrokerError::Config(e.to_string()))?;
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                eprintln!("hilsec: the embedded MQTT broker stopped: {e}");
            }
        })
        .map_err(|e| BrokerError::Config(e.to_string()))?;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(EmbeddedBroker { addr });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(BrokerError::NotListening(addr))
}
