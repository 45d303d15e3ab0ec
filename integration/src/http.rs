//! A minimal HTTP GET from inside a namespace, for `/metrics`, `/healthz` and
//! Prometheus's API. HTTP/1.0, so the server closes the connection and never
//! answers in chunks.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::Netns;

/// A response: status code and body.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code, e.g. 200.
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body, as text.
    pub body: String,
}

/// `GET target` (path and query) from a TCP socket made in `ns`.
pub fn get(ns: &Netns, addr: SocketAddr, target: &str) -> Result<Response, String> {
    let mut s = ns
        .enter(|| TcpStream::connect_timeout(&addr, Duration::from_secs(3)))
        .map_err(|e| format!("connect {addr} in {}: {e}", ns.name()))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {target} HTTP/1.0\r\nHost: {addr}\r\n\r\n")
        .map_err(|e| format!("write to {addr}: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of headers from {addr}{target}: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line from {addr}{target}: {head:?}"))?;
    let content_type = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.trim().to_string());
    Ok(Response {
        status,
        content_type,
        body: body.to_string(),
    })
}

/// Percent-encodes `s` for a URL query value.
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlencode_escapes_promql() {
        assert_eq!(
            urlencode("sum by (node) (rate(x{a=\"b\"}[1m]))"),
            "sum%20by%20%28node%29%20%28rate%28x%7Ba%3D%22b%22%7D%5B1m%5D%29%29"
        );
    }
}
