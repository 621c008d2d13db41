//! The one custom-resource driver ([`drive`]): reads who to answer, checks where the answer
//! goes, reads the `ServiceTimeout`, runs the resource's work with its panic caught and bounded
//! by the Lambda deadline and the `ServiceTimeout`, and PUTs the answer before the deadline.
//! What is particular to a resource (its margins, its work, its texts for a panic and a
//! timeout, its log lines, an answer left for later) is its [`Resource`] implementation.

use super::{service_timeout, Responder, Response, Target, DEFAULT_SERVICE_TIMEOUT};
use crate::error::Error;
use serde_json::Value;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// What a resource's work (or its timeout path) comes to: an answer to PUT now, or something
/// that answers later (a re-check), which the driver hands back without a PUT.
#[derive(Debug)]
pub enum Reply<L> {
    Answer(Response),
    Later(L),
}

/// The time a request may take, as the driver worked it out when the work began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The request's `ServiceTimeout` (the default, one hour, when absent or, for a resource
    /// that leaves a bad one to its work, bad).
    pub service_timeout: Duration,
    /// The `ServiceTimeout` less the resource's margin for it: the answer is due this long
    /// after the work began.
    pub answer_within: Duration,
    /// When the work is cut off: the Lambda deadline less the resource's margin (never before
    /// the work began), or `answer_within` after the work began when that is earlier.
    pub work_until: Instant,
    /// Whether the `ServiceTimeout` (rather than the Lambda deadline) sets `work_until`.
    pub by_service_timeout: bool,
}

impl Limits {
    fn of(
        started: Instant,
        deadline: Instant,
        deadline_margin: Duration,
        service_timeout: Duration,
        timeout_margin: Duration,
    ) -> Limits {
        let by_deadline = deadline
            .checked_sub(deadline_margin)
            .filter(|d| *d > started)
            .unwrap_or(started);
        let answer_within = service_timeout.saturating_sub(timeout_margin);
        let by_timeout = started + answer_within;
        Limits {
            service_timeout,
            answer_within,
            work_until: by_deadline.min(by_timeout),
            by_service_timeout: by_timeout < by_deadline,
        }
    }
}

/// A custom resource, as the driver sees it: what it does and what it says.
pub trait Resource {
    /// What the work may leave to answer later instead of now (`Infallible` when never).
    type Later;

    /// Time kept back from the Lambda deadline to send the answer.
    fn deadline_margin(&self) -> Duration;

    /// Time kept back from a `ServiceTimeout` of `service_timeout`.
    fn timeout_margin(&self, service_timeout: Duration) -> Duration;

    /// The answer to a request whose `ServiceTimeout` is bad (`error` says how), given before
    /// any work; `None` works within the default hour instead (the work reports it).
    fn bad_service_timeout(&self, target: &Target, error: Error) -> Option<Response>;

    /// The work on one request: what it answers.
    fn work(
        &self,
        payload: &Value,
        target: &Target,
        limits: &Limits,
    ) -> impl Future<Output = Reply<Self::Later>>;

    /// The answer when the work panicked with `message` (logging it is the resource's).
    fn panicked(&self, target: &Target, message: &str) -> Response;

    /// The reply when the work did not finish by `limits.work_until`.
    fn timed_out(
        &self,
        target: &Target,
        limits: &Limits,
    ) -> impl Future<Output = Reply<Self::Later>>;

    /// Told a request that cannot be answered (no target, or a ResponseURL that is not
    /// CloudFormation's slot for the stack): nothing is PUT.
    fn rejected(&self, _error: &Error) {}

    /// Told the answer just before it is PUT.
    fn answering(&self, _target: &Target, _response: &Response) {}

    /// Told a PUT that failed.
    fn undelivered(&self, _target: &Target, _error: &Error) {}
}

/// Answers one custom-resource request as `resource` says, before `deadline` (the Lambda
/// deadline): returns the response it PUT, or what the work left for later.
///
/// An error only when no answer could be given: the request names no usable ResponseURL (or
/// identifiers), or the PUT failed.
pub async fn drive<R: Resource>(
    responder: &Responder,
    resource: &R,
    payload: &Value,
    deadline: Instant,
) -> Result<Reply<R::Later>, Error> {
    let target = Target::from_request(payload).inspect_err(|e| resource.rejected(e))?;
    // Only CloudFormation's own answer slot for the named stack ever receives a response.
    responder
        .validate_for(&target.response_url, &target.stack_id)
        .inspect_err(|e| resource.rejected(e))?;
    let started = Instant::now();
    let properties = payload.get("ResourceProperties").unwrap_or(&Value::Null);
    let timeout = match service_timeout(properties) {
        Ok(t) => t,
        Err(e) => match resource.bad_service_timeout(&target, e) {
            Some(response) => {
                return deliver(responder, resource, &target, response, deadline).await
            }
            None => DEFAULT_SERVICE_TIMEOUT,
        },
    };
    let limits = Limits::of(
        started,
        deadline,
        resource.deadline_margin(),
        timeout,
        resource.timeout_margin(timeout),
    );
    let work = crate::lambda::guarded(resource.work(payload, &target, &limits));
    let reply = match tokio::time::timeout_at(limits.work_until, work).await {
        Ok(Ok(reply)) => reply,
        Ok(Err(message)) => Reply::Answer(resource.panicked(&target, &message)),
        Err(_) => resource.timed_out(&target, &limits).await,
    };
    match reply {
        Reply::Answer(response) => deliver(responder, resource, &target, response, deadline).await,
        later => Ok(later),
    }
}

/// PUTs `response` to the target's ResponseURL before `deadline`.
async fn deliver<R: Resource>(
    responder: &Responder,
    resource: &R,
    target: &Target,
    response: Response,
    deadline: Instant,
) -> Result<Reply<R::Later>, Error> {
    resource.answering(target, &response);
    responder
        .answer(target, &response, deadline)
        .await
        .inspect_err(|e| resource.undelivered(target, e))?;
    Ok(Reply::Answer(response))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::convert::Infallible;
    use std::sync::Mutex;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A resource whose work is a closure's choice: answer, panic, or hang.
    struct Probe {
        work: fn(&Value) -> Option<Response>,
        seen: Mutex<Vec<String>>,
    }

    impl Probe {
        fn new(work: fn(&Value) -> Option<Response>) -> Probe {
            Probe {
                work,
                seen: Mutex::new(Vec::new()),
            }
        }

        fn seen(&self) -> Vec<String> {
            self.seen.lock().expect("seen").clone()
        }

        fn note(&self, what: String) {
            self.seen.lock().expect("seen").push(what);
        }
    }

    impl Resource for Probe {
        type Later = Infallible;

        fn deadline_margin(&self) -> Duration {
            Duration::from_secs(5)
        }

        fn timeout_margin(&self, service_timeout: Duration) -> Duration {
            Duration::from_secs(5).min(service_timeout / 2)
        }

        fn bad_service_timeout(&self, target: &Target, error: Error) -> Option<Response> {
            Some(Response::failed(target, "pid".into(), error.to_string()))
        }

        async fn work(&self, payload: &Value, _: &Target, _: &Limits) -> Reply<Infallible> {
            match (self.work)(payload) {
                Some(response) => Reply::Answer(response),
                None if payload["panic"].as_bool() == Some(true) => panic!("grant vanished"),
                None => std::future::pending().await,
            }
        }

        fn panicked(&self, target: &Target, message: &str) -> Response {
            Response::failed(
                target,
                "pid".into(),
                format!("internal error (panic): {message}"),
            )
        }

        async fn timed_out(&self, target: &Target, limits: &Limits) -> Reply<Infallible> {
            let limit = if limits.by_service_timeout {
                format!("the ServiceTimeout ({}s)", limits.service_timeout.as_secs())
            } else {
                "the Lambda deadline".to_string()
            };
            Reply::Answer(Response::failed(
                target,
                "pid".into(),
                format!("not done before {limit}"),
            ))
        }

        fn rejected(&self, error: &Error) {
            self.note(format!("rejected: {error}"));
        }

        fn answering(&self, _: &Target, response: &Response) {
            self.note(format!("answering: {}", response.reason));
        }
    }

    /// A loopback receiver of one PUT: the request's body.
    async fn receiver() -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = socket.read(&mut buf).await.expect("read");
                assert!(n > 0, "the request ended early");
                seen.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&seen).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .and_then(|n| n.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= length {
                        socket
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .await
                            .expect("write");
                        return body.to_string();
                    }
                }
            }
        });
        (format!("http://127.0.0.1:{port}/r"), server)
    }

    fn request(url: &str, extra: Value) -> Value {
        let mut payload = json!({
            "RequestType": "Create",
            "ResponseURL": url,
            "StackId": "arn:aws:cloudformation:us-east-1:210987654321:stack/s/1",
            "RequestId": "req-1",
            "LogicalResourceId": "Thing",
            "ResourceProperties": {},
        });
        if let (Some(p), Value::Object(extra)) = (payload.as_object_mut(), extra) {
            p.extend(extra);
        }
        payload
    }

    async fn answered(probe: &Probe, extra: Value, deadline: Instant) -> (Response, Value) {
        let (url, server) = receiver().await;
        let answered = drive(
            &Responder::new(true),
            probe,
            &request(&url, extra),
            deadline,
        )
        .await
        .expect("answered");
        let response = match answered {
            Reply::Answer(response) => response,
            Reply::Later(never) => match never {},
        };
        let body: Value = serde_json::from_str(&server.await.expect("server")).expect("JSON");
        (response, body)
    }

    fn soon(secs: u64) -> Instant {
        Instant::now() + Duration::from_secs(secs)
    }

    #[tokio::test]
    async fn the_work_is_answered_and_put() {
        let probe = Probe::new(|p| {
            let target = Target::from_request(p).ok()?;
            Some(Response::success(&target, "pid".into(), "done".into()))
        });
        let (response, body) = answered(&probe, json!({}), soon(30)).await;
        assert_eq!(response.reason, "done");
        assert_eq!(
            (body["Status"].as_str(), body["Reason"].as_str()),
            (Some("SUCCESS"), Some("done"))
        );
        assert_eq!(body["RequestId"], "req-1");
        assert_eq!(probe.seen(), ["answering: done"]);
    }

    #[tokio::test]
    async fn a_panic_is_answered_failed_with_its_text() {
        let probe = Probe::new(|_| None);
        let (response, body) = answered(&probe, json!({"panic": true}), soon(30)).await;
        assert_eq!(response.reason, body["Reason"]);
        assert_eq!(body["Status"], "FAILED");
        assert_eq!(body["Reason"], "internal error (panic): grant vanished");
    }

    #[tokio::test]
    async fn a_timeout_is_answered_failed_naming_the_limit() {
        let probe = Probe::new(|_| None);
        // A ServiceTimeout of 1 s (less half a second) comes before the deadline's 25 s.
        let started = Instant::now();
        let props = json!({"ResourceProperties": {"ServiceTimeout": "1"}});
        let (_, body) = answered(&probe, props, soon(30)).await;
        assert_eq!(body["Reason"], "not done before the ServiceTimeout (1s)");
        assert!(started.elapsed() < Duration::from_secs(5));
        // The deadline (6 s, less the 5 s margin) comes before the ServiceTimeout's hour.
        let (_, body) = answered(&probe, json!({}), soon(6)).await;
        assert_eq!(body["Reason"], "not done before the Lambda deadline");
    }

    #[tokio::test]
    async fn a_bad_service_timeout_is_answered_failed_before_any_work() {
        let probe = Probe::new(|_| panic!("no work for a bad ServiceTimeout"));
        let props = json!({"ResourceProperties": {"ServiceTimeout": "1h"}});
        let (_, body) = answered(&probe, props, soon(30)).await;
        assert_eq!(body["Status"], "FAILED");
        assert_eq!(
            body["Reason"],
            "invalid input: ServiceTimeout \"1h\" must be a whole number of seconds from 1 to 3600"
        );
    }

    #[tokio::test]
    async fn no_response_url_is_an_error_and_nothing_is_put() {
        let probe = Probe::new(|_| panic!("no work without a ResponseURL"));
        let mut payload = request("", json!({}));
        payload
            .as_object_mut()
            .expect("object")
            .remove("ResponseURL");
        let err = drive(&Responder::new(true), &probe, &payload, soon(30))
            .await
            .expect_err("nobody to answer");
        assert_eq!(err.kind(), "InvalidInput");
        assert_eq!(probe.seen().len(), 1, "{:?}", probe.seen());
        assert!(probe.seen()[0].starts_with("rejected: "));
        // A ResponseURL that is not a pre-signed S3 URL: no PUT either.
        let payload = request("http://169.254.169.254/latest/meta-data", json!({}));
        let err = drive(&Responder::new(true), &probe, &payload, soon(30))
            .await
            .expect_err("not answered there");
        assert_eq!(err.kind(), "InvalidInput");
        assert!(!probe.seen().iter().any(|s| s.starts_with("answering")));
    }

    #[test]
    fn limits_take_the_earlier_bound() {
        let now = Instant::now();
        let hour = Duration::from_secs(3600);
        let five = Duration::from_secs(5);
        let l = Limits::of(now, now + Duration::from_secs(60), five, hour, five);
        assert_eq!(
            (l.work_until, l.by_service_timeout),
            (now + Duration::from_secs(55), false)
        );
        assert_eq!(l.answer_within, Duration::from_secs(3595));
        let l = Limits::of(
            now,
            now + Duration::from_secs(60),
            five,
            Duration::from_secs(20),
            five,
        );
        assert_eq!(
            (l.work_until, l.by_service_timeout),
            (now + Duration::from_secs(15), true)
        );
        // A deadline already within the margin: the work is cut off at once.
        let l = Limits::of(now, now + Duration::from_secs(2), five, hour, five);
        assert_eq!((l.work_until, l.by_service_timeout), (now, false));
    }
}
