//! The members last heard, kept across a restart of this host.
//!
//! A restarted switchd knows no peer until gossip has spoken, and a
//! container's first frames after the restart (its neighbour cache was
//! flushed when the TAP lost its carrier) would find no VTEP and no
//! neighbour answer. So the daemon saves the members it hears and, at
//! start, uses them at once; they count as silent since the start, so
//! gossip confirms each within the failure timeout or it goes, as a dead
//! host would.
//!
//! Stored as each member's published key-value pairs, and read back
//! through [`state::decode`], so a corrupt or hand-edited file can hold
//! nothing that gossip itself would refuse. Pure: bytes in, bytes out.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchd_config::Name;

use super::state;
use super::table::Member;

#[derive(Debug, Serialize, Deserialize)]
struct Cached {
    name: String,
    generation: u64,
    state: Vec<(String, String)>,
}

/// The members to keep, as bytes.
pub fn to_bytes(members: &[Member]) -> Vec<u8> {
    let cached: Vec<Cached> = members
        .iter()
        .map(|m| Cached { name: m.name.to_string(), generation: m.generation, state: state::encode(&m.published) })
        .collect();
    serde_json::to_vec(&cached).expect("plain structs serialize")
}

/// The members kept, silent for `since_heard`. Entries that do not decode
/// are skipped; a file that is not a list of members is an error.
pub fn from_bytes(bytes: &[u8], since_heard: Duration) -> Result<Vec<Member>, String> {
    let cached: Vec<Cached> = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    Ok(cached
        .into_iter()
        .filter_map(|c| {
            let name = Name::new(&c.name).ok()?;
            let (published, _) = state::decode(c.state.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            Some(Member { name, generation: c.generation, published: Arc::new(published?), since_heard })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use switchd_config::{MacAddr, Mtu, NetworkConfig, Vni};

    use super::*;
    use crate::gossip::state::{Published, RemoteEndpoint};

    fn member(name: &str) -> Member {
        let front = NetworkConfig {
            name: Name::new("front").unwrap(),
            vni: Vni::new(100).unwrap(),
            subnet: Some("10.0.0.0/24".parse().unwrap()),
            gateway: Some("10.0.0.1".parse().unwrap()),
            mtu: Mtu::new(1450).unwrap(),
            internal: true,
            encryption: None,
            dns: true,
            dhcp: true,
            host_access: false,
            icc: true,
            subnet6: None,
            gateway6: None,
        };
        Member {
            name: Name::new(name).unwrap(),
            generation: 7,
            published: Arc::new(Published {
                underlay: "198.18.0.2:4789".parse().unwrap(),
                leaving: false,
                session: None,
                keys: Default::default(),
                networks: [(front.name.clone(), front)].into(),
                endpoints: vec![RemoteEndpoint {
                    network: Name::new("front").unwrap(),
                    mac: MacAddr([2, 0, 0, 0, 0, 1]),
                    ip: Some("10.0.0.2".parse().unwrap()),
                    ip6: None,
                    name: Name::new("web").unwrap(),
                    services: vec![Name::new("web").unwrap()],
                    down: Vec::new(),
                }],
                ipam: Default::default(),
                services: Vec::new(),
                policies: Vec::new(),
                partial_checksums: true,
            }),
            since_heard: Duration::ZERO,
        }
    }

    #[test]
    fn members_round_trip_and_come_back_silent() {
        let bytes = to_bytes(&[member("b")]);
        let back = from_bytes(&bytes, Duration::from_secs(3)).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].name.as_str(), "b");
        assert_eq!(back[0].generation, 7);
        assert_eq!(back[0].published, member("b").published);
        assert_eq!(back[0].published.endpoints.len(), 1);
        assert_eq!(back[0].since_heard, Duration::from_secs(3));
    }

    #[test]
    fn garbage_is_refused_and_bad_members_skipped() {
        assert!(from_bytes(b"{not json", Duration::ZERO).is_err());
        let bad = br#"[{"name": "bad name!", "generation": 1, "state": []},
                      {"name": "nohost", "generation": 1, "state": [["endpoint/x", "y"]]}]"#;
        assert!(from_bytes(bad, Duration::ZERO).unwrap().is_empty());
    }
}
