//! A stand-in for the pre-signed S3 `ResponseURL` of CloudFormation custom resources: an
//! HTTP/1.1 server on 127.0.0.1 that records every request and answers with the next of a list
//! of statuses (then 200). Used by the custom-resource tests of every function.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: String,
}

/// An HTTP/1.1 server on 127.0.0.1 that records each request and answers with the next status
/// of `statuses` (then 200).
pub struct Receiver {
    pub url: String,
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub async fn start(statuses: Vec<u16>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("receiver state");
        let addr = listener.local_addr().expect("receiver state");
        let received = Arc::new(Mutex::new(Vec::new()));
        let statuses = Arc::new(Mutex::new(VecDeque::from(statuses)));
        let store = received.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let store = store.clone();
                let statuses = statuses.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let header_end = loop {
                        let n = socket.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
                    let mut lines = head.split("\r\n");
                    let mut request_line = lines.next().unwrap_or_default().split(' ');
                    let method = request_line.next().unwrap_or_default().to_string();
                    let path = request_line.next().unwrap_or_default().to_string();
                    let headers: HashMap<String, String> = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                        .collect();
                    let length: usize = headers
                        .get("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    while buf.len() < header_end + length {
                        let n = socket.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let body = String::from_utf8_lossy(&buf[header_end..]).to_string();
                    store.lock().expect("receiver state").push(Received {
                        method,
                        path,
                        headers,
                        body,
                    });
                    let status = statuses
                        .lock()
                        .expect("receiver state")
                        .pop_front()
                        .unwrap_or(200);
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = socket.write_all(reply.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Receiver {
            url: format!("http://127.0.0.1:{}/cfn-response/req", addr.port()),
            received,
        }
    }

    /// Every body received so far, in order.
    pub fn bodies(&self) -> Vec<String> {
        self.received
            .lock()
            .expect("receiver state")
            .iter()
            .map(|r| r.body.clone())
            .collect()
    }

    /// The one request received (panics otherwise: a test helper).
    pub fn only(&self) -> Received {
        let all = self.received.lock().expect("receiver state").clone();
        assert_eq!(all.len(), 1, "expected exactly one response: {all:#?}");
        all[0].clone()
    }
}
