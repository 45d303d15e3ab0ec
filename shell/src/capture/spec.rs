//! The `capture` request: which frames a capture wants. It travels as JSON
//! after the word `capture` on the admin socket (`capture {"nodes":["a"]}`).
use serde::{Deserialize, Serialize};

/// Which frames to capture. Empty fields mean "all".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CaptureSpec {
    /// Only this network (by name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Only frames from or to these nodes (the switch) or peers (a node).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// Only frames of this VLAN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// A libpcap filter expression (as for tcpdump).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
}

/// The admin request's first word.
pub const REQUEST: &str = "capture";

impl CaptureSpec {
    /// The admin request line for this spec.
    pub fn request_line(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_else(|_| "{}".into());
        format!("{REQUEST} {json}")
    }

    /// The spec in an admin request line, if the line is a capture request
    /// (`Some(Err)` if it is one but malformed).
    pub fn from_request(line: &str) -> Option<Result<CaptureSpec, String>> {
        let rest = line.strip_prefix(REQUEST)?;
        if !(rest.is_empty() || rest.starts_with(' ')) {
            return None;
        }
        let rest = rest.trim();
        let rest = if rest.is_empty() { "{}" } else { rest };
        Some(serde_json::from_str(rest).map_err(|e| format!("bad capture request: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trip() {
        let s = CaptureSpec {
            network: Some("lab".into()),
            nodes: vec!["a".into(), "b".into()],
            vlan: Some(20),
            filter: Some("icmp".into()),
        };
        let line = s.request_line();
        assert_eq!(CaptureSpec::from_request(&line), Some(Ok(s)));
        assert_eq!(
            CaptureSpec::from_request("capture"),
            Some(Ok(CaptureSpec::default()))
        );
        assert_eq!(CaptureSpec::from_request("captures"), None);
        assert_eq!(CaptureSpec::from_request("status"), None);
        assert!(matches!(
            CaptureSpec::from_request("capture {\"bogus\":1}"),
            Some(Err(_))
        ));
    }
}
