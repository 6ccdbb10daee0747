//! The Modbus TCP link against misbehaving servers written here byte by byte: an exception
//! answer, a mismatched transaction id, an answer after the timeout, a server that hangs up.
//! Each must give a clear error quickly, never a hang.

use std::time::{Duration, Instant};

use hilsec_core::board::ModbusTable;
use hilsec_core::iface::modbus::ModbusLink;
use hilsec_core::iface::serial::LinkError;
use hilsec_core::transcript::Transcript;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How the fake server answers one request (given the request's MBAP transaction id).
#[derive(Clone, Copy)]
enum Behaviour {
    /// Exception 0x02 (IllegalDataAddress) to a read of holding registers.
    Exception,
    /// A well-formed answer carrying another transaction id.
    WrongTransaction,
    /// The right answer, 2 s late.
    Late,
    /// Closes the connection.
    HangUp,
    /// The right answer at once: one register holding 42.
    Good,
}

async fn server(b: Behaviour) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        let Ok((mut s, _)) = l.accept().await else {
            return;
        };
        loop {
            let mut head = [0u8; 7];
            if s.read_exact(&mut head).await.is_err() {
                return;
            }
            let len = u16::from_be_bytes([head[4], head[5]]) as usize;
            let mut pdu = vec![0u8; len.saturating_sub(1)];
            if s.read_exact(&mut pdu).await.is_err() {
                return;
            }
            let tid = u16::from_be_bytes([head[0], head[1]]);
            let unit = head[6];
            let frame = |tid: u16, body: &[u8]| {
                let mut f = tid.to_be_bytes().to_vec();
                f.extend_from_slice(&[0, 0]);
                f.extend_from_slice(&((body.len() + 1) as u16).to_be_bytes());
                f.push(unit);
                f.extend_from_slice(body);
                f
            };
            let good = frame(tid, &[0x03, 0x02, 0x00, 42]);
            match b {
                Behaviour::Exception => {
                    let _ = s.write_all(&frame(tid, &[0x83, 0x02])).await;
                }
                Behaviour::WrongTransaction => {
                    let _ = s
                        .write_all(&frame(tid.wrapping_add(7), &[0x03, 0x02, 0x00, 42]))
                        .await;
                }
                Behaviour::Late => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    let _ = s.write_all(&good).await;
                }
                Behaviour::HangUp => return,
                Behaviour::Good => {
                    let _ = s.write_all(&good).await;
                }
            }
        }
    });
    addr
}

async fn read_once(b: Behaviour, timeout: Duration) -> (Result<Vec<u16>, LinkError>, Duration) {
    let addr = server(b).await;
    let mut link = ModbusLink::connect_tcp(
        "modbus",
        &addr,
        1,
        Duration::from_secs(5),
        Transcript::new(),
    )
    .await
    .expect("connect");
    let t0 = Instant::now();
    let r = link.read(ModbusTable::Holding, 0, 1, timeout).await;
    (r, t0.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_answer_is_read() {
    let (r, _) = read_once(Behaviour::Good, Duration::from_secs(5)).await;
    assert_eq!(r.expect("value"), vec![42]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exception_is_an_error_naming_it() {
    let (r, _) = read_once(Behaviour::Exception, Duration::from_secs(5)).await;
    let e = r.expect_err("exception");
    assert!(matches!(e, LinkError::Protocol(_)), "{e}");
    assert!(e.to_string().contains("IllegalDataAddress"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mismatched_transaction_id_is_an_error_not_a_hang() {
    let (r, took) = read_once(Behaviour::WrongTransaction, Duration::from_secs(5)).await;
    let e = r.expect_err("mismatch");
    assert!(
        matches!(e, LinkError::Protocol(_) | LinkError::Timeout { .. }),
        "{e}"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_after_the_timeout_is_a_timeout() {
    let (r, took) = read_once(Behaviour::Late, Duration::from_millis(300)).await;
    let e = r.expect_err("late");
    assert!(matches!(e, LinkError::Timeout { .. }), "{e}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_hangs_up_closes_the_link() {
    let (r, took) = read_once(Behaviour::HangUp, Duration::from_secs(5)).await;
    let e = r.expect_err("closed");
    assert!(
        matches!(e, LinkError::Closed(_) | LinkError::Protocol(_)),
        "{e}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_shows_the_request_and_response_pdus() {
    let addr = server(Behaviour::Good).await;
    let t = Transcript::new();
    let mut link = ModbusLink::connect_tcp("modbus", &addr, 1, Duration::from_secs(5), t.clone())
        .await
        .expect("connect");
    let v = link
        .read(ModbusTable::Holding, 0x0105, 1, Duration::from_secs(5))
        .await
        .expect("value");
    assert_eq!(v, vec![42]);
    let text = t.render(&Default::default());
    // Function 0x03, address 0x0105, quantity 1; the answer: 2 bytes holding 42 (0x2a).
    assert!(text.contains("-> pdu 03 01 05 00 01"), "{text}");
    assert!(text.contains("<- pdu 03 02 00 2a"), "{text}");
    let (req, resp) = (text.find("-> pdu 03 01 05"), text.find("<- pdu 03 02"));
    assert!(req < resp, "the request comes first: {text}");

    // An exception answer is dumped too.
    let addr = server(Behaviour::Exception).await;
    let t = Transcript::new();
    let mut link = ModbusLink::connect_tcp("modbus", &addr, 1, Duration::from_secs(5), t.clone())
        .await
        .expect("connect");
    link.read(ModbusTable::Holding, 0, 1, Duration::from_secs(5))
        .await
        .expect_err("exception");
    let text = t.render(&Default::default());
    assert!(text.contains("<- pdu 83 02"), "{text}");
}
