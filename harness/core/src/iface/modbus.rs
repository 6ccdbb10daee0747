//! Modbus links: TCP, and RTU over a tty or over TCP (tokio-modbus).
//!
//! Reads and writes of coils and registers, and Read Device Identification (0x2B/0x0E). Every
//! request has a timeout; an exception response is a [`LinkError::Protocol`] naming the
//! exception (e.g. `IllegalDataAddress`), a transport failure is [`LinkError::Closed`]. Each
//! request and answer is recorded in the transcript: a summary (`read Holding 105 x1`, `= 42`)
//! and a hex dump of the request and response PDUs as they crossed the wire (taken from the
//! transport, framing stripped: the MBAP header for TCP, address and CRC for RTU), at most
//! [`PDU_SHOWN`] bytes each, then `… N more bytes`.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use tokio_modbus::client::{Context, Reader, Writer};
use tokio_modbus::prelude::{ReadCode, Slave};

use super::serial::LinkError;
use crate::board::ModbusTable;
use crate::transcript::{Direction, Transcript};

/// Bytes of each PDU shown in the evidence.
pub const PDU_SHOWN: usize = 256;
/// Bytes of a frame kept by the tap (header, PDU shown, trailer).
const TAP_KEEP: usize = PDU_SHOWN + 16;

/// How a transport frames PDUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// 7-byte MBAP header, then the PDU.
    Tcp,
    /// Unit address, PDU, 2-byte CRC.
    Rtu,
}

/// Bytes one request wrote and read, bounded.
#[derive(Debug, Default)]
struct TapLog {
    tx: Vec<u8>,
    tx_total: usize,
    tx_at: Option<Instant>,
    rx: Vec<u8>,
    rx_total: usize,
    rx_at: Option<Instant>,
}

impl TapLog {
    fn take(&mut self) -> TapLog {
        std::mem::take(self)
    }
}

/// A transport that notes what crosses it (bounded), so the evidence shows the PDUs.
#[derive(Debug)]
struct Tap<T> {
    inner: T,
    log: Arc<Mutex<TapLog>>,
}

impl<T> Tap<T> {
    fn with_log(&self, f: impl FnOnce(&mut TapLog)) {
        let mut g = match self.log.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut g)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Tap<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut me.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                me.with_log(|l| {
                    l.rx_at.get_or_insert_with(Instant::now);
                    l.rx_total += new.len();
                    let room = TAP_KEEP.saturating_sub(l.rx.len());
                    l.rx.extend_from_slice(&new[..new.len().min(room)]);
                });
            }
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Tap<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let me = self.get_mut();
        let r = Pin::new(&mut me.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            let n = *n;
            me.with_log(|l| {
                l.tx_at.get_or_insert_with(Instant::now);
                l.tx_total += n;
                let room = TAP_KEEP.saturating_sub(l.tx.len());
                l.tx.extend_from_slice(&buf[..n.min(room)]);
            });
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// `pdu 03 00 69 00 01` from a frame (`kept` of `total` bytes), framing stripped; at most
/// [`PDU_SHOWN`] bytes, then `… N more bytes`.
fn pdu_dump(framing: Framing, kept: &[u8], total: usize) -> String {
    let (head, tail) = match framing {
        Framing::Tcp => (7, 0),
        Framing::Rtu => (1, 2),
    };
    if total < head + tail + 1 {
        // Not a whole frame: show what there is.
        return format!("frame (incomplete) {}", hex(kept));
    }
    let pdu_len = total - head - tail;
    let end = (head + pdu_len).min(kept.len());
    let pdu = &kept[head.min(end)..end];
    let shown = &pdu[..pdu.len().min(PDU_SHOWN)];
    let mut s = format!("pdu {}", hex(shown));
    if pdu_len > shown.len() {
        s.push_str(&format!(" … {} more bytes", pdu_len - shown.len()));
    }
    s
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 3);
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&format!("{x:02x}"));
    }
    s
}

pub struct ModbusLink {
    name: String,
    ctx: Context,
    closed: Option<String>,
    transcript: Transcript,
    tap: Arc<Mutex<TapLog>>,
    framing: Framing,
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
        let tap = Arc::new(Mutex::new(TapLog::default()));
        let stream = Tap {
            inner: stream,
            log: tap.clone(),
        };
        Ok(ModbusLink {
            name: name.to_string(),
            ctx: tokio_modbus::client::tcp::attach_slave(stream, Slave(unit_id)),
            closed: None,
            transcript,
            tap,
            framing: Framing::Tcp,
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
        let tap = Arc::new(Mutex::new(TapLog::default()));
        let stream = Tap {
            inner: stream,
            log: tap.clone(),
        };
        Ok(ModbusLink {
            name: name.to_string(),
            ctx: tokio_modbus::client::rtu::attach_slave(stream, Slave(unit_id)),
            closed: None,
            transcript,
            tap,
            framing: Framing::Rtu,
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
        use tokio_serial::SerialPortBuilderExt;
        // Opened close-on-exec by serialport: no device process inherits it.
        let port = tokio_serial::new(path, baud)
            .open_native_async()
            .map_err(|e| LinkError::Open {
                endpoint: path.to_string(),
                detail: e.to_string(),
            })?;
        transcript.note(format!(
            "{name}: opened Modbus RTU {path} at {baud} baud, unit {unit_id}"
        ));
        let tap = Arc::new(Mutex::new(TapLog::default()));
        let port = Tap {
            inner: port,
            log: tap.clone(),
        };
        Ok(ModbusLink {
            name: name.to_string(),
            ctx: tokio_modbus::client::rtu::attach_slave(port, Slave(unit_id)),
            closed: None,
            transcript,
            tap,
            framing: Framing::Rtu,
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
        let take = |tap: &Arc<Mutex<TapLog>>| match tap.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        // Bytes of an earlier request that arrived late are not this request's.
        take(&self.tap);
        let result = tokio::time::timeout(timeout, f(&mut self.ctx)).await;
        let log = take(&self.tap);
        if log.tx_total > 0 {
            self.transcript.record_at(
                Direction::Tx,
                &self.name,
                format!("{}\n", pdu_dump(self.framing, &log.tx, log.tx_total)).as_bytes(),
                log.tx_at.unwrap_or_else(Instant::now),
            );
        }
        if log.rx_total > 0 {
            self.transcript.record_at(
                Direction::Rx,
                &self.name,
                format!("{}\n", pdu_dump(self.framing, &log.rx, log.rx_total)).as_bytes(),
                log.rx_at.unwrap_or_else(Instant::now),
            );
        }
        match result {
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
