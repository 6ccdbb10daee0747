//! A minimal QMP (QEMU Machine Protocol) client: the control channel of a QEMU unit, for a warm
//! reset (`system_reset`) and an orderly `quit`.
//!
//! One connection per request: QMP greets, must be told `qmp_capabilities`, then answers each
//! command with `{"return": ...}` or `{"error": ...}`, interleaved with asynchronous
//! `{"event": ...}` lines that are skipped. Every read has a deadline and every line a bound, so
//! a QEMU that stops answering (or a port that is not QMP) gives an error, not a hang.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt as _, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Longest QMP line accepted.
const MAX_LINE: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("QMP at {addr}: cannot connect: {detail}")]
    Connect { addr: String, detail: String },
    #[error("QMP at {addr}: no answer to {command} within {waited:?}")]
    Timeout {
        addr: String,
        command: String,
        waited: Duration,
    },
    #[error("QMP at {addr}: the connection closed during {command}")]
    Closed { addr: String, command: String },
    #[error("QMP at {addr}: {command} failed: {detail}")]
    Refused {
        addr: String,
        command: String,
        detail: String,
    },
    #[error("QMP at {addr}: not a QMP answer to {command}: {line}")]
    Garbled {
        addr: String,
        command: String,
        line: String,
    },
}

/// Runs one QMP command (without arguments) and returns its `return` value. The whole exchange,
/// connection included, must finish within `timeout`.
pub async fn execute(
    addr: &str,
    command: &str,
    timeout: Duration,
) -> Result<serde_json::Value, QmpError> {
    let fail_timeout = || QmpError::Timeout {
        addr: addr.to_string(),
        command: command.to_string(),
        waited: timeout,
    };
    tokio::time::timeout(timeout, exchange(addr, command))
        .await
        .map_err(|_| fail_timeout())?
}

async fn exchange(addr: &str, command: &str) -> Result<serde_json::Value, QmpError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| QmpError::Connect {
            addr: addr.to_string(),
            detail: e.to_string(),
        })?;
    let (r, mut w) = stream.into_split();
    let mut r = BufReader::new(r);
    // The greeting: {"QMP": {...}}.
    let greeting = read_message(&mut r, addr, "the greeting").await?;
    if greeting.get("QMP").is_none() {
        return Err(QmpError::Garbled {
            addr: addr.to_string(),
            command: "the greeting".into(),
            line: greeting.to_string(),
        });
    }
    for cmd in ["qmp_capabilities", command] {
        let line = format!("{}\n", serde_json::json!({ "execute": cmd }));
        w.write_all(line.as_bytes())
            .await
            .map_err(|_| QmpError::Closed {
                addr: addr.to_string(),
                command: cmd.to_string(),
            })?;
        loop {
            let msg = read_message(&mut r, addr, cmd).await?;
            if let Some(ret) = msg.get("return") {
                if cmd == command {
                    return Ok(ret.clone());
                }
                break;
            }
            if let Some(err) = msg.get("error") {
                return Err(QmpError::Refused {
                    addr: addr.to_string(),
                    command: cmd.to_string(),
                    detail: err
                        .get("desc")
                        .and_then(|d| d.as_str())
                        .map_or_else(|| err.to_string(), str::to_string),
                });
            }
            // {"event": ...}: asynchronous, e.g. RESET after system_reset; skipped.
        }
    }
    // `command` returned inside the loop; reaching here means the loop ended on the first.
    Err(QmpError::Closed {
        addr: addr.to_string(),
        command: command.to_string(),
    })
}

async fn read_message<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    addr: &str,
    command: &str,
) -> Result<serde_json::Value, QmpError> {
    let mut line = Vec::new();
    let n = r
        .take(MAX_LINE)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|_| QmpError::Closed {
            addr: addr.to_string(),
            command: command.to_string(),
        })?;
    if n == 0 {
        return Err(QmpError::Closed {
            addr: addr.to_string(),
            command: command.to_string(),
        });
    }
    serde_json::from_slice(&line).map_err(|_| QmpError::Garbled {
        addr: addr.to_string(),
        command: command.to_string(),
        line: String::from_utf8_lossy(&line[..line.len().min(200)]).into_owned(),
    })
}
