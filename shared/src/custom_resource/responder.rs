//! Answers CloudFormation: validates the `ResponseURL` (an HTTPS pre-signed S3 URL; nothing
//! else is ever contacted) and PUTs the response body to it with the SDK's own HTTPS connector.

use super::{Response, Target};
use crate::error::{Error, Retry};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_http_client::Connector;
use aws_smithy_runtime_api::client::http::HttpConnector;
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use std::time::Duration;
use tokio::time::Instant;

/// Checks that `url` is where CloudFormation wants its answer: `https://` on an S3 endpoint of
/// `amazonaws.com` (or `amazonaws.com.cn`), default port, no user info, an object path, and a
/// pre-signed query (SigV4 `X-Amz-Signature` or SigV2 `Signature`). With `allow_local`, an
/// `http://127.0.0.1:<port>/` or `http://localhost:<port>/` URL is also accepted (local tests).
pub fn validate_response_url(url: &str, allow_local: bool) -> Result<(), Error> {
    let bad = |why: &str| {
        Err(Error::InvalidInput(format!(
            "ResponseURL is not a pre-signed S3 HTTPS URL ({why}), so no response is sent to it"
        )))
    };
    if url.len() > 8192 || url.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
        return bad("it has spaces, control or non-ASCII characters, or is too long");
    }
    let (scheme, rest) = match url.split_once("://") {
        Some(parts) => parts,
        None => return bad("no scheme"),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path_and_query) = rest.split_at(end);
    if authority.contains('@') {
        return bad("user info in the host part");
    }
    if path_and_query.contains('#') {
        return bad("a fragment");
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    let host = host.to_ascii_lowercase();
    if allow_local && scheme == "http" && (host == "127.0.0.1" || host == "localhost") {
        return match port {
            Some(p) if !p.is_empty() && p.parse::<u16>().is_ok() => Ok(()),
            None => Ok(()),
            _ => bad("a bad port"),
        };
    }
    if scheme != "https" {
        return bad("not https");
    }
    if port.is_some_and(|p| p != "443") {
        return bad("not the default HTTPS port");
    }
    if let Err(why) = s3_host(&host).and_then(|()| presigned_object(path_and_query)) {
        return bad(why);
    }
    Ok(())
}

/// `host` is an S3 endpoint of `amazonaws.com` (or `amazonaws.com.cn`): well-formed labels,
/// the S3 label, then at most a region (and "dualstack") after it.
fn s3_host(host: &str) -> Result<(), &'static str> {
    let Some(prefix) = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))
    else {
        return Err("not an amazonaws.com host");
    };
    let labels: Vec<&str> = prefix.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    if !labels.iter().all(label_ok) {
        return Err("a malformed host name");
    }
    let s3_at = labels
        .iter()
        .position(|l| *l == "s3" || l.starts_with("s3-"));
    match s3_at {
        Some(i) if labels.len() - i <= 3 => Ok(()),
        _ => Err("not an S3 endpoint"),
    }
}

/// An object key, and a pre-signed query (SigV4 or SigV2).
fn presigned_object(path_and_query: &str) -> Result<(), &'static str> {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    if path.len() < 2 || !path.starts_with('/') {
        return Err("no object key");
    }
    let params: Vec<&str> = query
        .split('&')
        .map(|p| p.split_once('=').map_or(p, |(k, _)| k))
        .collect();
    let has = |k: &str| params.iter().any(|p| p.eq_ignore_ascii_case(k));
    let sigv4 = has("X-Amz-Signature") && has("X-Amz-Credential");
    let sigv2 = has("Signature") && has("AWSAccessKeyId") && has("Expires");
    if !(sigv4 || sigv2) {
        return Err("not pre-signed");
    }
    Ok(())
}

/// The bucket prefix of CloudFormation's response objects (`…-useast1`, `…-euwest1`, …).
pub(crate) const RESPONSE_BUCKET_PREFIX: &str = "cloudformation-custom-resource-response-";

/// Checks that a (validated) `url` is CloudFormation's answer slot for the stack the request
/// names: a `cloudformation-custom-resource-response-*` bucket (virtual-hosted or path style)
/// and an object key that starts with the stack ARN (URL-encoded in the key). Any other
/// pre-signed URL would let a publisher collect the response (its reason and data) in its own
/// bucket. Loopback URLs (local tests, admitted only by `allow_local`) carry no bucket.
pub(crate) fn check_response_target(url: &str, stack_id: &str) -> Result<(), Error> {
    let bad = |why: String| {
        Err(Error::InvalidInput(format!(
            "ResponseURL is not CloudFormation's response URL for this stack ({why}), so no response is sent to it"
        )))
    };
    let Some(rest) = url.strip_prefix("https://") else {
        return if url.starts_with("http://") {
            Ok(())
        } else {
            bad("not https".into())
        };
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (host, path_and_query) = rest.split_at(end);
    let host = host
        .split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let path = path_and_query.split('?').next().unwrap_or_default();
    let path = path.strip_prefix('/').unwrap_or(path);
    // Virtual-hosted: <bucket>.s3….amazonaws.com/<key>; path style: s3….amazonaws.com/<bucket>/<key>.
    let (bucket, key) = if host.starts_with("s3.") || host.starts_with("s3-") {
        match path.split_once('/') {
            Some((bucket, key)) => (bucket.to_ascii_lowercase(), key),
            None => (path.to_ascii_lowercase(), ""),
        }
    } else {
        (
            host.split(".s3").next().unwrap_or_default().to_string(),
            path,
        )
    };
    if !bucket.starts_with(RESPONSE_BUCKET_PREFIX) || bucket.len() == RESPONSE_BUCKET_PREFIX.len() {
        return bad(format!(
            "the bucket is not a {RESPONSE_BUCKET_PREFIX}<region> bucket"
        ));
    }
    let decoded = percent_decode(key);
    if stack_id.is_empty() || !decoded.starts_with(stack_id) {
        return bad("the object key does not start with the request's StackId".into());
    }
    Ok(())
}

/// `%XX` sequences decoded; anything malformed is kept as it is (and so never matches an ARN).
fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends response bodies. Built once at init; each connector on its first use.
pub struct Responder {
    /// Built on the first HTTPS PUT: building it loads the system's trusted certificates, which
    /// a cold start that answers nothing does not need.
    connector: std::sync::OnceLock<Connector>,
    /// Plain HTTP, only ever for the loopback URLs `allow_local` admits (local tests): no
    /// certificates to load.
    local: std::sync::OnceLock<Connector>,
    allow_local: bool,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("allow_local", &self.allow_local)
            .finish()
    }
}

impl Responder {
    pub fn new(allow_local: bool) -> Self {
        Responder {
            connector: std::sync::OnceLock::new(),
            local: std::sync::OnceLock::new(),
            allow_local,
        }
    }

    /// The connector for a validated URL: HTTPS, or plain HTTP for a loopback test URL.
    fn connector(&self, url: &str) -> &Connector {
        if url.starts_with("http://") {
            return self.local.get_or_init(|| Connector::builder().build_http());
        }
        self.connector.get_or_init(|| {
            Connector::builder()
                .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
                .build()
        })
    }

    fn validate(&self, url: &str) -> Result<(), Error> {
        validate_response_url(url, self.allow_local)
    }

    /// [`Responder::validate`], and the URL is CloudFormation's slot for `stack_id`
    /// ([`check_response_target`]).
    pub(crate) fn validate_for(&self, url: &str, stack_id: &str) -> Result<(), Error> {
        self.validate(url)?;
        check_response_target(url, stack_id)
    }

    /// PUTs `response` to the target's ResponseURL before `until` ([`Responder::put`]): the
    /// answer to a request, whether [`super::drive`] gives it or a later re-check.
    pub async fn answer(
        &self,
        target: &Target,
        response: &Response,
        until: Instant,
    ) -> Result<(), Error> {
        self.put(&target.response_url, &response.body(), until)
            .await
    }

    /// PUTs `body` to the validated `url`, retrying connection errors and 5xx answers while
    /// time remains before `until`. A 4xx answer (an expired or tampered URL) is not retried.
    async fn put(&self, url: &str, body: &[u8], until: Instant) -> Result<(), Error> {
        self.validate(url)?;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let remaining = until.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(put_error(
                    "Timeout",
                    format!("no time left before the Lambda deadline (attempt {attempt})"),
                    Retry::Retryable,
                ));
            }
            let result = tokio::time::timeout(remaining, self.put_once(url, body)).await;
            let (error, retry) = match result {
                Ok(Ok(200..=299)) => return Ok(()),
                Ok(Ok(status)) if (400..500).contains(&status) => {
                    (format!("HTTP {status}"), Retry::Permanent)
                }
                Ok(Ok(status)) => (format!("HTTP {status}"), Retry::Retryable),
                Ok(Err(e)) => (e, Retry::Retryable),
                Err(_) => ("timed out".to_string(), Retry::Retryable),
            };
            let backoff = Duration::from_millis(200 * u64::from(attempt));
            if retry == Retry::Permanent || attempt >= 3 || Instant::now() + backoff >= until {
                return Err(put_error(
                    "ResponseRejected",
                    format!("PUT to the ResponseURL failed after {attempt} attempt(s): {error}"),
                    retry,
                ));
            }
            tracing::warn!(attempt, %error, "response PUT failed; retrying");
            tokio::time::sleep(backoff).await;
        }
    }

    async fn put_once(&self, url: &str, body: &[u8]) -> Result<u16, String> {
        let mut request = HttpRequest::new(SdkBody::from(body.to_vec()));
        request.set_method("PUT").map_err(|e| e.to_string())?;
        request.set_uri(url).map_err(|e| e.to_string())?;
        // The URL is signed without a content type: send an empty one, as cfn-response does.
        request.headers_mut().insert("content-type", "");
        request
            .headers_mut()
            .insert("content-length", body.len().to_string());
        let response = self
            .connector(url)
            .call(request)
            .await
            .map_err(|e| format!("{e}"))?;
        Ok(response.status().as_u16())
    }
}

fn put_error(code: &str, message: String, retry: Retry) -> Error {
    Error::Aws {
        service: "cloudformation",
        operation: "PutResponse",
        code: code.to_string(),
        message,
        retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_pre_signed_s3_urls() {
        for url in [
            "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/arn%3Aaws%3Acloudformation%3Aus-east-1%3A210987654321%3Astack/s/1%7CEntitlement%7Creq-1?AWSAccessKeyId=AKIA&Expires=1700000000&Signature=abc%3D",
            "https://cloudformation-custom-resource-response-euwest1.s3.eu-west-1.amazonaws.com/key?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIA%2F20240101%2Feu-west-1%2Fs3%2Faws4_request&X-Amz-Date=20240101T000000Z&X-Amz-Expires=7200&X-Amz-SignedHeaders=host&X-Amz-Signature=ab12",
            "https://bucket.s3-us-west-2.amazonaws.com/key?AWSAccessKeyId=A&Expires=1&Signature=s",
            "https://bucket.s3.cn-north-1.amazonaws.com.cn/key?X-Amz-Credential=c&X-Amz-Signature=s",
            "https://s3.amazonaws.com/bucket/key?X-Amz-Credential=c&X-Amz-Signature=s",
            "https://BUCKET.S3.AMAZONAWS.COM:443/key?X-Amz-Credential=c&X-Amz-Signature=s",
        ] {
            assert!(validate_response_url(url, false).is_ok(), "{url}");
        }
    }

    #[test]
    fn rejects_everything_else() {
        for url in [
            "",
            "ftp://bucket.s3.amazonaws.com/key?X-Amz-Credential=c&X-Amz-Signature=s",
            "http://bucket.s3.amazonaws.com/key?X-Amz-Credential=c&X-Amz-Signature=s",
            "https://bucket.s3.amazonaws.com.evil.example/key?X-Amz-Credential=c&X-Amz-Signature=s",
            "https://s3.amazonaws.com@evil.example/key?X-Amz-Credential=c&X-Amz-Signature=s",
            "https://evil.example/bucket.s3.amazonaws.com?X-Amz-Credential=c&X-Amz-Signature=s",
            "https://ec2.us-east-1.amazonaws.com/key?X-Amz-Credential=c&X-Amz-Signature=s",
            "https://bucket.s3.amazonaws.com:8443/key?X-Amz-Credential=c&X-Amz-Signature=s",
            "https://bucket.s3.amazonaws.com/key",
            "https://bucket.s3.amazonaws.com/?X-Amz-Credential=c&X-Amz-Signature=s",
            "https://bucket.s3.amazonaws.com/key?X-Amz-Signature=s",
            "https://bucket.s3.amazonaws.com/k y?X-Amz-Credential=c&X-Amz-Signature=s",
            "https://bucket.s3.amazonaws.com/key?X-Amz-Credential=c&X-Amz-Signature=s#frag",
            "https://a.b.c.d.s3.x.y.z.amazonaws.com/key?X-Amz-Credential=c&X-Amz-Signature=s",
            "http://127.0.0.1:8080/response",
            "http://169.254.169.254/latest/meta-data",
        ] {
            let err = validate_response_url(url, false).expect_err(url);
            assert_eq!(err.kind(), "InvalidInput", "{url}");
        }
    }

    #[test]
    fn only_cloudformations_slot_for_the_stack_is_answered() {
        let stack = "arn:aws:cloudformation:us-east-1:210987654321:stack/s/1";
        let q = "?X-Amz-Credential=c&X-Amz-Signature=s";
        let key = "arn%3Aaws%3Acloudformation%3Aus-east-1%3A210987654321%3Astack/s/1%7CEntitlement%7Creq-1";
        for url in [
            format!("https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/{key}{q}"),
            format!("https://cloudformation-custom-resource-response-useast1.s3.us-east-1.amazonaws.com/{key}{q}"),
            format!("https://s3.amazonaws.com/cloudformation-custom-resource-response-useast1/{key}{q}"),
            format!("https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/{}{q}", key.to_lowercase()),
            // Local tests: loopback URLs carry no bucket.
            "http://127.0.0.1:9/r".to_string(),
        ] {
            assert!(check_response_target(&url, stack).is_ok(), "{url}");
        }
        for url in [
            // Somebody else's bucket, pre-signed and valid.
            format!("https://attacker-bucket.s3.amazonaws.com/{key}{q}"),
            format!("https://s3.amazonaws.com/attacker-bucket/{key}{q}"),
            format!("https://cloudformation-custom-resource-response-.s3.amazonaws.com/{key}{q}"),
            // CloudFormation's bucket, but another stack's slot.
            format!("https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/arn%3Aaws%3Acloudformation%3Aus-east-1%3A999999999999%3Astack/s/1%7CE%7Cr{q}"),
            format!("https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/other/{key}{q}"),
            format!("https://s3.amazonaws.com/cloudformation-custom-resource-response-useast1{q}"),
        ] {
            let err = check_response_target(&url, stack).expect_err(&url);
            assert_eq!(err.kind(), "InvalidInput", "{url}");
        }
        assert!(check_response_target(
            &format!(
                "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/{key}{q}"
            ),
            ""
        )
        .is_err());
        assert_eq!(percent_decode("a%7Cb%zz%4"), "a|b%zz%4");
    }

    #[test]
    fn loopback_only_when_allowed() {
        assert!(validate_response_url("http://127.0.0.1:8080/r/1", true).is_ok());
        assert!(validate_response_url("http://localhost:9/r", true).is_ok());
        for url in [
            "http://127.0.0.2:8080/r",
            "http://10.0.0.1:8080/r",
            "http://127.0.0.1:99999/r",
            "http://user@127.0.0.1:80/r",
        ] {
            assert!(validate_response_url(url, true).is_err(), "{url}");
        }
    }

    #[tokio::test]
    async fn a_loopback_answer_loads_no_certificates() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while !seen.ends_with(b"done") {
                let n = socket.read(&mut buf).await.expect("read");
                assert!(n > 0, "the request ended early");
                seen.extend_from_slice(&buf[..n]);
            }
            socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await
                .expect("write");
            String::from_utf8_lossy(&seen).into_owned()
        });
        let responder = Responder::new(true);
        let until = Instant::now() + Duration::from_secs(5);
        responder
            .put(&format!("http://127.0.0.1:{port}/r"), b"done", until)
            .await
            .expect("answered");
        let request = server.await.expect("server");
        assert!(request.starts_with("PUT /r "), "{request}");
        assert!(responder.local.get().is_some());
        assert!(
            responder.connector.get().is_none(),
            "the HTTPS connector (and its certificate store) is built only for https"
        );
    }
}
