//! A deliberately tiny HTTP/1.1 client for loopback calls (moto, the emulator's control
//! endpoints). One connection per request; no TLS, no redirects, no retries.

use std::io;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A response: status code and body.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub body: Bytes,
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

fn other<E: std::fmt::Display>(context: &str) -> impl FnOnce(E) -> io::Error + '_ {
    move |e| io::Error::other(format!("{context}: {e}"))
}

/// Sends one request to `url` (which must be `http://host:port/path`).
pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> io::Result<HttpResponse> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not an http:// URL: {url}"),
        )
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let stream = TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(other("http handshake"))?;
    let driver = tokio::spawn(connection);

    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, authority);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Full::new(body.into()))
        .map_err(other("building request"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(other("sending request"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(other("reading response"))?
        .to_bytes();
    driver.abort();
    Ok(HttpResponse { status, body })
}

/// POST with a JSON body.
pub async fn post_json(url: &str, body: &serde_json::Value) -> io::Result<HttpResponse> {
    send(
        Method::POST,
        url,
        &[("content-type", "application/json")],
        serde_json::to_vec(body).map_err(other("encoding json"))?,
    )
    .await
}

/// GET without a body.
pub async fn get(url: &str) -> io::Result<HttpResponse> {
    send(Method::GET, url, &[], Bytes::new()).await
}

/// An `Authorization` header value that moto accepts (it reads the access key id and ignores
/// the signature).
pub fn fake_sigv4(access_key_id: &str, service: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={access_key_id}/20260101/us-east-1/{service}/aws4_request, \
         SignedHeaders=host, Signature=0000"
    )
}

/// Extracts the text of the first `<tag>…</tag>` in an XML document (moto's query-protocol
/// responses are simple enough for this).
pub fn xml_text<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&close)? + start;
    Some(&xml[start..end])
}

/// Minimal `application/x-www-form-urlencoded` encoding of one value.
pub fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn xml_text_finds_first_tag() {
        let xml = "<a><Account>123</Account><Account>456</Account></a>";
        assert_eq!(xml_text(xml, "Account"), Some("123"));
        assert_eq!(xml_text(xml, "Missing"), None);
    }

    #[test]
    fn form_encode_escapes_reserved() {
        assert_eq!(form_encode("a b/c:{}"), "a%20b%2Fc%3A%7B%7D");
    }
}
