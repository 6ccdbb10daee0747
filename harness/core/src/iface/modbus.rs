//! Modbus links: TCP, and RTU over a tty or over TCP (tokio-modbus).
//!
//! Reads and writes of coils and registers, and Read Device Identification (0x2B/0x0E). Every
//! request has a timeout; an exception response is a [`LinkError::Protocol`] naming the
//! exception (e.g. `IllegalDataAddress`), a transport failure is [`LinkError::Closed`]. Each
//! request and answer is recorded in the transcript.

use std::time::Duration;

use tokio_modbus::client::{Context, Reader, Writer};
use tokio_modbus::prelude::{ReadCode, Slave};

use super::serial::LinkError;
use crate::board::ModbusTable;
use crate::transcript::{Direction, Transcript};

pub struct ModbusLink {
    name: String,
    ctx: Context,
    closed: Option<String>,
    transcript: Transcript,
}

/// Identification objects 0x00..=0x05 by name, as `identify` steps capture them.
pub const OBJECT_NAMES: [&str; 6] = [
    "vendor",
    "product_code",
    "revision",
    "vendor_url",
    "product_name",
    "model_name",
];

/// A TCP connection within `timeout`, failures as [`LinkError::Open`].
async fn connect_stream(addr: &str, timeout: Duration) -> Result<tokio::net::TcpStream, LinkError> {
    let open = |detail: String| LinkError::Open {
        endpoint: addr.to_string(),
        detail,
    };
    tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| open(format!("no connection within {timeout:?}")))?
        .map_err(|e| open(e.to_string()))
}

impl ModbusLink {
    pub async fn connect_tcp(
        name: &str,
        addr: &str,
        unit_id: u8,
        timeout: Duration,
        transcript: Transcript,
    ) -> Result<ModbusLink, LinkError> {
        let stream = connect_stream(addr, timeout).await?;
        let _ = stream.set_nodelay(true);
        transcript.note(format!(
            "{name}: connected to Modbus TCP {addr}, unit {unit_id}"
        ));
        Ok(ModbusLink {
            name: name.to_string(),
            ctx: tokio_modbus::client::tcp::attach_slave(stream, Slave(unit_id)),
            closed: None,
            transcript,
        })
    }

    /// RTU framing over a raw TCP stream (a serial server, or an emulator's UART socket).
    pub async fn connect_rtu_tcp(
        name: &str,
        addr: &str,
        unit_id: u8,
        timeout: Duration,
        transcript: Transcript,
    ) -> Result<ModbusLink, LinkError> {
        let stream = connect_stream(addr, timeout).await?;
        transcript.note(format!(
            "{name}: connected to Modbus RTU over TCP {addr}, unit {unit_id}"
        ));
        Ok(ModbusLink {
            name: name.to_string(),
            ctx: tokio_modbus::client::rtu::attach_slave(stream, Slave(unit_id)),
            closed: None,
            transcript,
        })
    }

    /// RTU over a tty (RS-485 adapter, pseudo-terminal).
    pub fn open_rtu_tty(
        name: &str,
        path: &str,
        baud: u32,
        unit_id: u8,
        transcript: Transcript,
    ) -> Result<ModbusLink, LinkError> {
        use std::os::fd::AsRawFd;
        use tokio_serial::SerialPortBuilderExt;
        let _guard = crate::emulator::SPAWN_LOCK
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let port = tokio_serial::new(path, baud)
            .open_native_async()
            .map_err(|e| LinkError::Open {
                endpoint: path.to_string(),
                detail: e.to_string(),
            })?;
        super::serial::set_cloexec(port.as_raw_fd()).map_err(|e| LinkError::Open {
            endpoint: path.to_string(),
            detail: e.to_string(),
        })?;
        transcript.note(format!(
            "{name}: opened Modbus RTU {path} at {baud} baud, unit {unit_id}"
        ));
        Ok(ModbusLink {
            name: name.to_string(),
            ctx: tokio_modbus::client::rtu::attach_slave(port, Slave(unit_id)),
            closed: None,
            transcript,
        })
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    pub fn set_transcript(&mut self, t: Transcript) {
        self.transcript = t;
    }

    fn tx(&self, what: &str) {
        self.transcript
            .record(Direction::Tx, &self.name, what.as_bytes());
    }

    fn rx(&self, what: &str) {
        self.transcript
            .record(Direction::Rx, &self.name, format!("{what}\n").as_bytes());
    }

    /// Runs one request with a timeout and maps both error layers.
    async fn request<T, F>(&mut self, what: String, timeout: Duration, f: F) -> Result<T, LinkError>
    where
        F: for<'a> FnOnce(
            &'a mut Context,
        ) -> futures::future::BoxFuture<'a, tokio_modbus::Result<T>>,
    {
        if let Some(c) = &self.closed {
            return Err(LinkError::Closed(c.clone()));
        }
        self.tx(&format!("{what}\n"));
        match tokio::time::timeout(timeout, f(&mut self.ctx)).await {
            Err(_) => {
                // A late answer would be taken for the next request's: start afresh.
                self.closed = Some(format!("no answer to {what} within {timeout:?}"));
                Err(LinkError::Timeout {
                    pattern: what,
                    waited: timeout,
                    tail: String::new(),
                })
            }
            Ok(Err(tokio_modbus::Error::Transport(e))) => {
                let msg = e.to_string();
                self.closed = Some(msg.clone());
                self.rx(&format!("transport error: {msg}"));
                Err(LinkError::Closed(msg))
            }
            Ok(Err(tokio_modbus::Error::Protocol(e))) => {
                // A mismatched transaction id or a malformed frame: the stream is no longer in
                // step, so the link is dropped and reopened on next use.
                let msg = format!("protocol error: {e}");
                self.closed = Some(msg.clone());
                self.rx(&msg);
                Err(LinkError::Protocol(msg))
            }
            Ok(Ok(Err(exception))) => {
                let msg = format!("Modbus exception {exception:?} ({})", u8::from(exception));
                self.rx(&msg);
                Err(LinkError::Protocol(msg))
            }
            Ok(Ok(Ok(v))) => Ok(v),
        }
    }

    /// Reads `count` values from `table` at `address`, as numbers (coils as 0/1).
    pub async fn read(
        &mut self,
        table: ModbusTable,
        address: u16,
        count: u16,
        timeout: Duration,
    ) -> Result<Vec<u16>, LinkError> {
        let what = format!("read {table:?} {address} x{count}");
        let values = match table {
            ModbusTable::Holding => {
                self.request(what, timeout, move |c| {
                    Box::pin(c.read_holding_registers(address, count))
                })
                .await?
            }
            ModbusTable::Input => {
                self.request(what, timeout, move |c| {
                    Box::pin(c.read_input_registers(address, count))
                })
                .await?
            }
            ModbusTable::Coils => self
                .request(what, timeout, move |c| {
                    Box::pin(c.read_coils(address, count))
                })
                .await?
                .into_iter()
                .map(u16::from)
                .collect(),
            ModbusTable::Discrete => self
                .request(what, timeout, move |c| {
                    Box::pin(c.read_discrete_inputs(address, count))
                })
                .await?
                .into_iter()
                .map(u16::from)
                .collect(),
        };
        let values: Vec<u16> = values.into_iter().take(count as usize).collect();
        self.rx(&format!(
            "= {}",
            values
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        ));
        Ok(values)
    }

    pub async fn write_registers(
        &mut self,
        address: u16,
        words: Vec<u16>,
        timeout: Duration,
    ) -> Result<(), LinkError> {
        let shown = if words.len() <= 16 {
            words
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            format!("{} registers", words.len())
        };
        if words.len() == 1 {
            let w = words[0];
            self.request(
                format!("write register {address} = {shown}"),
                timeout,
                move |c| Box::pin(c.write_single_register(address, w)),
            )
            .await?;
        } else {
            self.request(
                format!("write registers {address} = {shown}"),
                timeout,
                move |c| Box::pin(async move { c.write_multiple_registers(address, &words).await }),
            )
            .await?;
        }
        self.rx("ok");
        Ok(())
    }

    pub async fn write_coil(
        &mut self,
        address: u16,
        on: bool,
        timeout: Duration,
    ) -> Result<(), LinkError> {
        self.request(
            format!("write coil {address} = {}", u8::from(on)),
            timeout,
            move |c| Box::pin(c.write_single_coil(address, on)),
        )
        .await?;
        self.rx("ok");
        Ok(())
    }

    /// Read Device Identification: objects by name (see [`OBJECT_NAMES`]).
    pub async fn identify(
        &mut self,
        regular: bool,
        timeout: Duration,
    ) -> Result<Vec<(String, String)>, LinkError> {
        let code = if regular {
            ReadCode::Regular
        } else {
            ReadCode::Basic
        };
        let mut out = Vec::new();
        let mut next = 0u8;
        // Stream access may need several requests; bounded.
        for _ in 0..8 {
            let resp = self
                .request(
                    format!("read device identification ({code:?}) from object {next}"),
                    timeout,
                    move |c| Box::pin(c.read_device_identification(code, next)),
                )
                .await?;
            for o in &resp.device_id_objects {
                let name = OBJECT_NAMES
                    .get(o.id as usize)
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| format!("object_{:02x}", o.id));
                let value = String::from_utf8_lossy(&o.value).into_owned();
                self.rx(&format!("{name} = {value:?}"));
                out.push((name, value));
            }
            if !resp.more_follows {
                break;
            }
            next = resp.next_object_id;
        }
        Ok(out)
    }
}
