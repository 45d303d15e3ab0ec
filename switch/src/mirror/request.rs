//! The admin socket's `mirror` requests (`tapmesh-switch mirror`): parsed
//! here, answered over every network's core.
use super::{MirrorDirection, MirrorSpec};
use crate::networks::Networks;

/// A mirror request over the admin socket (`tapmesh-switch mirror`), one
/// line: `mirror add NAME source=NODE destination=NODE [direction=both|
/// received|sent] [vlan=VID] [rate=FRAMES_PER_SEC]` (replaces a session of
/// the same name), `mirror remove NAME`, or `mirror list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Add (or replace) a session.
    Add(MirrorSpec),
    /// End a session.
    Remove(String),
    /// Every session with its counters.
    List,
}

impl Request {
    /// Parse a request line (without the newline).
    pub fn parse(line: &str) -> Result<Request, String> {
        let mut w = line.split_whitespace();
        if w.next() != Some("mirror") {
            return Err("unknown request".into());
        }
        let r = match (w.next(), w.next()) {
            (Some("list"), None) => return Ok(Request::List),
            (Some("remove"), Some(name)) => Request::Remove(name.into()),
            (Some("add"), Some(name)) => Request::Add(parse_spec(name, w.by_ref())?),
            _ => {
                return Err(
                    "want mirror add NAME source=NODE destination=NODE [KEY=VALUE...], mirror remove NAME or mirror list"
                        .into(),
                );
            }
        };
        if w.next().is_some() {
            return Err("too many words".into());
        }
        Ok(r)
    }
}

fn parse_spec<'a>(name: &str, words: impl Iterator<Item = &'a str>) -> Result<MirrorSpec, String> {
    let mut spec = MirrorSpec::new(name, "", "");
    for kv in words {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("{kv:?}: want KEY=VALUE"))?;
        let bad = |what: &str| format!("{k}: {v:?} is not {what}");
        match k {
            "source" => spec.source = v.into(),
            "destination" => spec.destination = v.into(),
            "direction" => {
                spec.direction =
                    MirrorDirection::parse(v).ok_or_else(|| bad("both, received or sent"))?;
            }
            "vlan" => spec.vlan = Some(v.parse().map_err(|_| bad("a VLAN id"))?),
            "rate" => spec.rate = v.parse().map_err(|_| bad("frames per second"))?,
            _ => {
                return Err(format!(
                    "unknown key {k:?} (want source, destination, direction, vlan, rate)"
                ));
            }
        }
    }
    spec.check().map_err(|(k, p)| format!("{k}: {p}"))?;
    Ok(spec)
}

/// Answer a `mirror …` request line over `nets` with a JSON reply: the
/// session as set now (`add`), `{"removed": NAME}`, `{"mirrors": [...]}`, or
/// `{"error": "..."}`. Session names are unique over all networks; a
/// session's nodes are in one network. Changes are logged.
pub fn admin_request(nets: &mut Networks, line: &str) -> String {
    let r = Request::parse(line).and_then(|r| match r {
        Request::List => Ok(serde_json::json!({ "mirrors": nets.status_mirrors() })),
        Request::Remove(name) => {
            let removed = nets.cores_mut().any(|(_, c)| c.remove_mirror(&name));
            if removed {
                tracing::info!(mirror = %name, "mirror session removed");
                Ok(serde_json::json!({ "removed": name }))
            } else {
                Err(format!("no mirror session {name:?}"))
            }
        }
        Request::Add(spec) => {
            let (network, core) = nets
                .cores_mut()
                .find(|(_, c)| c.has_node(&spec.source))
                .ok_or_else(|| format!("source: no node {:?}", spec.source))?;
            let network = network.to_string();
            core.add_mirror(spec.clone())?;
            tracing::info!(network, mirror = %spec.name, session = %spec, "mirror session set");
            // Names are unique over all networks: one elsewhere is replaced.
            for (n, c) in nets.cores_mut() {
                if n != network {
                    c.remove_mirror(&spec.name);
                }
            }
            let s = nets
                .status_mirrors()
                .into_iter()
                .find(|s| s.name == spec.name);
            Ok(serde_json::to_value(s).unwrap_or_default())
        }
    });
    match r {
        Ok(v) => v.to_string(),
        Err(e) => serde_json::json!({ "error": e }).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        assert_eq!(
            Request::parse("mirror add m1 source=h1 destination=h3 direction=sent vlan=10 rate=5"),
            Ok(Request::Add(MirrorSpec {
                direction: MirrorDirection::Sent,
                vlan: Some(10),
                rate: 5,
                ..MirrorSpec::new("m1", "h1", "h3")
            }))
        );
        assert_eq!(
            Request::parse("mirror remove m1"),
            Ok(Request::Remove("m1".into()))
        );
        assert_eq!(Request::parse("mirror list"), Ok(Request::List));
        for bad in [
            "mirror",
            "mirror add",
            "mirror add m1 source=h1",
            "mirror add m1 source=h1 destination=h1",
            "mirror add m1 source=h1 destination=h2 direction=sideways",
            "mirror add m1 source=h1 destination=h2 vlan=5000",
            "mirror add m1 source=h1 destination=h2 rate=0",
            "mirror add m1 source=h1 destination=h2 colour=red",
            "mirror add m/1 source=h1 destination=h2",
            "mirror remove",
            "mirror remove m1 m2",
            "mirror list all",
        ] {
            assert!(Request::parse(bad).is_err(), "{bad}");
        }
    }
}
