//! A checking proxy in front of moto: every signed request to a moto-backed service (IAM, STS,
//! Organizations, SQS, SNS, EventBridge, CloudFormation) is checked against AWS's published
//! model of the service (botocore's `service-2.json`, see [`crate::emulator::models`]), the
//! violations recorded, and the request forwarded unchanged to moto, whose answer is returned
//! unchanged: moto accepts requests AWS would refuse, the proxy makes them fail the test.
//!
//! * The service is the SigV4 credential scope's (`Credential=AKID/date/region/<service>/…`);
//!   the operation the `X-Amz-Target` header's (AWS JSON: Organizations, SQS, EventBridge) or
//!   the `Action` parameter's (query: IAM, STS, SNS, CloudFormation), the query parameters being
//!   read back into the input shape by botocore's serialization rules.
//! * Unsigned requests (moto's `/moto-api/`) pass unchecked; a signed request the proxy cannot
//!   place (no model for its service, no operation) passes too and is counted as unchecked.
//! * `GET /_models/violations` answers the [`ModelReport`]; [`ModelProxy::take_violations`]
//!   forgets what was found. A [`ModelProxy`] dropped or shut down with recorded violations
//!   panics, so the test whose request AWS would refuse fails, with the operation, member,
//!   constraint and value in the message. With `LOCAL_WORLD_MODEL_REPORT` set, it prints what
//!   it checked when it stops.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::emulator::models::{self, Checked};
use crate::emulator::{ModelReport, ModelViolation};

/// The services whose model is loaded up front (their versions show in the report); requests
/// to any other service are checked too when botocore has its model.
pub const SERVICES: [&str; 7] = [
    "iam",
    "sts",
    "organizations",
    "sqs",
    "sns",
    "events",
    "cloudformation",
];

/// A running proxy; stops on drop or [`ModelProxy::shutdown`].
#[derive(Debug)]
pub struct ModelProxy {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    log: Arc<Mutex<ModelReport>>,
}

/// Starts a proxy on 127.0.0.1 forwarding to `upstream` (`http://host:port`).
pub async fn start(upstream: &str) -> io::Result<ModelProxy> {
    let upstream: Arc<str> = upstream
        .strip_prefix("http://")
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "upstream must be http://"))?
        .trim_end_matches('/')
        .into();
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let mut report = ModelReport::default();
    for service in SERVICES {
        if let Some(model) = models::model(service) {
            report
                .models
                .insert(service.to_string(), model.version.clone());
        }
    }
    let log = Arc::new(Mutex::new(report));
    let shared = log.clone();
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let (upstream, log) = (upstream.clone(), shared.clone());
                    connections.spawn(async move {
                        let service = service_fn(move |request| {
                            let (upstream, log) = (upstream.clone(), log.clone());
                            async move { Ok::<_, Infallible>(handle(&upstream, &log, request).await) }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    });
    Ok(ModelProxy {
        addr,
        stop: Some(stop),
        task: Some(task),
        log,
    })
}

impl ModelProxy {
    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The models used, the requests checked and the violations found so far.
    pub fn report(&self) -> ModelReport {
        self.lock().clone()
    }

    /// The violations found so far, forgotten (for a test that sends invalid requests on
    /// purpose).
    pub fn take_violations(&self) -> Vec<ModelViolation> {
        std::mem::take(&mut self.lock().violations)
    }

    /// Stops accepting, closes open connections and waits for the server task; panics if
    /// violations are recorded (see [`ModelProxy`]).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.assert_no_model_violations();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ModelReport> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Panics (once) if violations are recorded and not taken, unless the thread is already
    /// panicking.
    fn assert_no_model_violations(&mut self) {
        if std::env::var_os("LOCAL_WORLD_MODEL_REPORT").is_some() {
            let report = self.report();
            eprintln!(
                "model proxy: {} request(s) checked {:?}; unchecked {:?}; unchecked patterns \
                 {:?}; {} violation(s)",
                report.checked.values().sum::<u64>(),
                report.checked,
                report.unchecked_requests,
                report.unchecked_patterns,
                report.violations.len()
            );
        }
        if std::thread::panicking() {
            return;
        }
        let violations = std::mem::take(&mut self.lock().violations);
        if !violations.is_empty() {
            panic!(
                "{} request member(s) sent to moto are refused by AWS's API model (moto \
                 accepted them, AWS would not):\n{}",
                violations.len(),
                describe(&violations)
            );
        }
    }
}

/// One line per violation: `  service Operation: member = value: constraint`.
pub fn describe(violations: &[ModelViolation]) -> String {
    violations
        .iter()
        .map(|v| {
            format!(
                "  {} {}: {} = {}: {}",
                v.service, v.operation, v.member, v.value, v.constraint
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Drop for ModelProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.assert_no_model_violations();
    }
}

fn plain(status: u16, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::BAD_GATEWAY);
    response
}

async fn handle(
    upstream: &str,
    log: &Mutex<ModelReport>,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return plain(400, Bytes::from(format!("reading the request: {e}"))),
    };
    if parts.method == Method::GET && parts.uri.path() == "/_models/violations" {
        let report = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
        return plain(200, Bytes::from(json!(report).to_string()));
    }
    check(log, &parts, &body);
    match forward(upstream, parts, body).await {
        Ok(response) => response,
        Err(e) => plain(502, Bytes::from(format!("model proxy → moto: {e}"))),
    }
}

/// The service of the SigV4 credential scope, `None` for an unsigned request.
fn signing_service(parts: &Parts) -> Option<String> {
    let value = parts
        .headers
        .get(hyper::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let credential = value.split("Credential=").nth(1)?;
    let credential = credential.split([',', ' ']).next()?;
    credential.split('/').nth(3).map(str::to_string)
}

/// `application/x-www-form-urlencoded` pairs (`+` is a space).
pub fn form_decode(text: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = |b: u8| (b as char).to_digit(16);
                    match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                        (Some(hi), Some(lo)) => {
                            out.push((hi * 16 + lo) as u8);
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Checks one request and records what it found.
fn check(log: &Mutex<ModelReport>, parts: &Parts, body: &[u8]) {
    let Some(service) = signing_service(parts) else {
        return;
    };
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(|t| t.rsplit('.').next().unwrap_or(t).to_string());
    let (op, checked) = match target {
        Some(op) => {
            let input = if body.iter().all(u8::is_ascii_whitespace) {
                Ok(json!({}))
            } else {
                serde_json::from_slice::<Value>(body)
            };
            let checked = models::model(&service).map(|model| match input {
                Ok(input) => model.check(&op, &input),
                Err(e) => Some(Checked {
                    violations: vec![violation(&service, &op, "", "Body must be JSON", &e)],
                    unchecked_patterns: Vec::new(),
                }),
            });
            (op, checked)
        }
        None => {
            let mut params = form_decode(parts.uri.query().unwrap_or_default());
            let form = parts
                .headers
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
            if form {
                params.extend(form_decode(&String::from_utf8_lossy(body)));
            }
            let Some(op) = params
                .iter()
                .find(|(k, _)| k == "Action")
                .map(|(_, v)| v.clone())
            else {
                count_unchecked(log, format!("{service}: neither X-Amz-Target nor Action"));
                return;
            };
            let checked = models::model(&service).map(|model| model.check_query(&op, &params));
            (op, checked)
        }
    };
    let Some(checked) = checked else {
        count_unchecked(log, format!("{service}: no model"));
        return;
    };
    let checked = checked.unwrap_or_else(|| Checked {
        violations: vec![violation(
            &service,
            &op,
            "(operation)",
            "Operation is not in the model",
            &op,
        )],
        unchecked_patterns: Vec::new(),
    });
    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
    *log.checked.entry(format!("{service} {op}")).or_default() += 1;
    for pattern in checked.unchecked_patterns {
        *log.unchecked_patterns.entry(pattern).or_default() += 1;
    }
    if !checked.violations.is_empty() {
        tracing::warn!(?checked.violations, "request to moto refused by AWS's model");
        log.violations.extend(checked.violations);
    }
}

fn violation(
    service: &str,
    op: &str,
    member: &str,
    constraint: &str,
    value: &dyn std::fmt::Display,
) -> ModelViolation {
    ModelViolation {
        service: service.to_string(),
        operation: op.to_string(),
        member: member.to_string(),
        constraint: constraint.to_string(),
        value: value.to_string(),
    }
}

fn count_unchecked(log: &Mutex<ModelReport>, what: String) {
    *log.lock()
        .unwrap_or_else(|e| e.into_inner())
        .unchecked_requests
        .entry(what)
        .or_default() += 1;
}

/// Sends the request as received (method, path, headers, body) to `upstream` and returns its
/// answer (status, headers, body), on a connection of its own.
async fn forward(upstream: &str, parts: Parts, body: Bytes) -> io::Result<Response<Full<Bytes>>> {
    let other =
        |what: &'static str| move |e: hyper::Error| io::Error::other(format!("{what}: {e}"));
    let stream = TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(other("handshake"))?;
    let driver = tokio::spawn(connection);
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = parts.method;
    *request.uri_mut() = parts.uri;
    *request.headers_mut() = parts.headers;
    // The body is whole now: hyper frames it by its length.
    request
        .headers_mut()
        .remove(hyper::header::TRANSFER_ENCODING);
    let response = sender
        .send_request(request)
        .await
        .map_err(other("sending"))?;
    let (mut parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(other("reading the answer"))?
        .to_bytes();
    driver.abort();
    for hop in [hyper::header::TRANSFER_ENCODING, hyper::header::CONNECTION] {
        parts.headers.remove(hop);
    }
    Ok(Response::from_parts(parts, Full::new(body)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_percent_and_plus() {
        assert_eq!(
            form_decode("Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam&A=b+c&Empty=&X=%zz%4"),
            vec![
                ("Action".into(), "AssumeRole".into()),
                ("RoleArn".into(), "arn:aws:iam".into()),
                ("A".into(), "b c".into()),
                ("Empty".into(), String::new()),
                ("X".into(), "%zz%4".into()),
            ]
        );
    }
}
