//! The daemon's key rings: the cluster's (seeded from `[gossip] key_file`)
//! and one for each network with its own key (seeded from its `key_file`),
//! rotated at run time with `switchctl key add/use/rm` and kept across
//! restarts in `state_dir/keys.json` (mode 0600: it holds the keys).
//!
//! A key removed with `key rm` is retired: never accepted again on this
//! host, even if a key file still names it. Before a host seals with a new
//! key (`key use`), every host that must open it has to accept it; before a
//! key is removed, no host may still seal with it (as gossip tells).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use switchd_config::{KeySource, Name, NetworkConfig};
use switchd_crypto::{Key, KeyId, Keyring, KeyringError, SharedKeyring};
use switchd_overlay::gossip::state::{CLUSTER_SCOPE, NETWORK_PREFIX, RingState};
use switchd_overlay::gossip::table::Host;

use super::Daemon;
use crate::control::api::KeyInfo;
use crate::dataplane::crypto::{KeySet, NetworkKeys};

const FILE_NAME: &str = "keys.json";

/// Why a key operation was refused, or a network's key is missing.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// A key file that cannot be read or holds no key.
    #[error(transparent)]
    File(#[from] switchd_crypto::KeyError),
    #[error(transparent)]
    Ring(#[from] KeyringError),
    #[error("{0}")]
    BadId(String),
    #[error("network: {0}")]
    BadNetwork(String),
    #[error("network {0:?} is encrypted with the cluster key, and this host has none ([gossip] key_file)")]
    NoClusterKeyFor(String),
    #[error(
        "network {0:?} is encrypted with its own key, which this host does not hold; \
         add it with `switchctl key add FILE --network {0}`"
    )]
    NotHeld(String),
    #[error("network {0:?} has no key of its own; rotate the cluster key instead (no --network)")]
    NoOwnKey(String),
    #[error("no encrypted network {0:?} here or in the cluster")]
    NoEncryptedNetwork(String),
    #[error("this host has no cluster key ([gossip] key_file)")]
    NoClusterKey,
    #[error("no key {0} on this host")]
    NoSuchKey(KeyId),
    #[error("key {0} was removed from this host before; a removed key is never accepted again")]
    Retired(KeyId),
    #[error("key {id} is already in the {ring} key ring")]
    InOtherRing { id: KeyId, ring: String },
    #[error(
        "{hosts} do not accept key {id} yet, so they could not open what this host would seal; \
         run `switchctl key add FILE` there first (or --force)"
    )]
    NotAccepted { hosts: String, id: KeyId },
    #[error("{hosts} still seal with key {id}; run `switchctl key use NEW_ID` there first (or --force)")]
    StillSealing { hosts: String, id: KeyId },
    /// The ring changed in memory (and is in use) but is not on disk.
    #[error("{what}, but not saved: {source}")]
    NotSaved { what: &'static str, source: io::Error },
}

/// Which ring a key belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    Cluster,
    Network(Name),
}

impl Scope {
    /// The name gossip uses: `cluster`, or `net/<name>`.
    pub fn gossip_name(&self) -> String {
        match self {
            Scope::Cluster => CLUSTER_SCOPE.to_owned(),
            Scope::Network(n) => format!("{NETWORK_PREFIX}{n}"),
        }
    }

    /// The name `switchctl key ls` shows: `cluster`, or the network's.
    pub fn display_name(&self) -> String {
        match self {
            Scope::Cluster => CLUSTER_SCOPE.to_owned(),
            Scope::Network(n) => n.to_string(),
        }
    }
}

/// One ring as saved: keys in hex, oldest first, and the one in use.
#[derive(Debug, Default, Serialize, Deserialize, zeroize::ZeroizeOnDrop)]
struct SavedRing {
    keys: Vec<String>,
    #[zeroize(skip)]
    sending: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    cluster: Option<SavedRing>,
    #[serde(default)]
    networks: BTreeMap<String, SavedRing>,
    #[serde(default)]
    retired: Vec<String>,
}

#[derive(Debug)]
pub struct KeyStore {
    /// Shared with the gossip transport, which seals and opens with it.
    cluster: Option<SharedKeyring>,
    networks: BTreeMap<Name, Keyring>,
    retired: BTreeSet<KeyId>,
    dir: PathBuf,
}

impl KeyStore {
    /// The rings as saved in `state_dir`, plus the keys host.toml names
    /// (unless retired). A ring's key in use survives a restart.
    pub fn open(
        state_dir: &Path,
        cluster_file: Option<&Path>,
        network_files: &BTreeMap<Name, PathBuf>,
    ) -> io::Result<KeyStore> {
        let saved = load(state_dir)?;
        let retired: BTreeSet<KeyId> = saved.retired.iter().filter_map(|id| id.parse().ok()).collect();
        let bad = |what: &str, e: String| io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {e}"));
        let mut store = KeyStore { cluster: None, networks: BTreeMap::new(), retired, dir: state_dir.to_owned() };
        let from_file = |path: &Path| Key::load(path).map_err(|e| bad("key file", e.to_string()));

        let mut cluster = saved.cluster.as_ref().map(restore).transpose().map_err(|e| bad("saved cluster keys", e))?;
        if let Some(path) = cluster_file {
            store.merge(&mut cluster, from_file(path)?, path);
        }
        store.cluster = cluster.map(SharedKeyring::new);

        let mut names: BTreeSet<Name> = network_files.keys().cloned().collect();
        names.extend(saved.networks.keys().filter_map(|n| Name::new(n).ok()));
        for name in names {
            let saved_ring = saved.networks.get(name.as_str());
            let mut ring = saved_ring.map(restore).transpose().map_err(|e| bad(&format!("saved keys of {name}"), e))?;
            if let Some(path) = network_files.get(&name) {
                store.merge(&mut ring, from_file(path)?, path);
            }
            if let Some(ring) = ring {
                store.networks.insert(name, ring);
            }
        }
        store.save()?;
        Ok(store)
    }

    /// Adds a key file's key to a ring (making the ring if there is none),
    /// unless it was retired.
    fn merge(&self, ring: &mut Option<Keyring>, key: Key, path: &Path) {
        let id = key.id();
        if self.retired.contains(&id) {
            tracing::warn!("{}: key {id} was removed with `switchctl key rm`; not accepted", path.display());
            return;
        }
        match ring {
            Some(ring) => {
                let _ = ring.add(key);
            }
            None => *ring = Some(Keyring::new(key)),
        }
    }

    /// The cluster ring, shared with gossip; `None` without a cluster key.
    pub fn cluster(&self) -> Option<&SharedKeyring> {
        self.cluster.as_ref()
    }

    /// The ring of `scope`, as it is now.
    pub fn ring(&self, scope: &Scope) -> Option<std::sync::Arc<Keyring>> {
        match scope {
            Scope::Cluster => self.cluster.as_ref().map(SharedKeyring::snapshot),
            Scope::Network(n) => self.networks.get(n).cloned().map(std::sync::Arc::new),
        }
    }

    /// Every ring with its scope.
    pub fn rings(&self) -> Vec<(Scope, std::sync::Arc<Keyring>)> {
        let cluster = self.cluster.as_ref().map(|c| (Scope::Cluster, c.snapshot()));
        let networks = self.networks.iter().map(|(n, r)| (Scope::Network(n.clone()), std::sync::Arc::new(r.clone())));
        cluster.into_iter().chain(networks).collect()
    }

    /// What gossip tells others: each ring's key ids.
    pub fn published(&self) -> BTreeMap<String, RingState> {
        self.rings()
            .into_iter()
            .map(|(scope, ring)| {
                (scope.gossip_name(), RingState { sending: ring.sending().0, accepted: ring.ids().collect() })
            })
            .collect()
    }

    /// The scope holding key `id`.
    pub fn scope_of(&self, id: KeyId) -> Option<Scope> {
        self.rings().into_iter().find(|(_, ring)| ring.get(id).is_some()).map(|(scope, _)| scope)
    }

    /// Adds `key` to `scope`'s ring (a network's ring is made by its first key).
    pub fn add(&mut self, scope: &Scope, key: Key) -> Result<KeyId, KeysError> {
        let id = key.id();
        if self.retired.contains(&id) {
            return Err(KeysError::Retired(id));
        }
        if let Some(other) = self.scope_of(id)
            && &other != scope
        {
            return Err(KeysError::InOtherRing { id, ring: other.display_name() });
        }
        match scope {
            Scope::Cluster => {
                let shared = self.cluster.as_ref().ok_or(KeysError::NoClusterKey)?;
                let mut ring = (*shared.snapshot()).clone();
                ring.add(key)?;
                shared.replace(ring);
            }
            Scope::Network(name) => match self.networks.get_mut(name) {
                Some(ring) => {
                    ring.add(key)?;
                }
                None => {
                    self.networks.insert(name.clone(), Keyring::new(key));
                }
            },
        }
        self.save().map_err(|source| KeysError::NotSaved { what: "key added", source })?;
        Ok(id)
    }

    /// Seals with key `id` from now on (in whichever ring holds it).
    pub fn use_for_sending(&mut self, id: KeyId) -> Result<Scope, KeysError> {
        let scope = self.scope_of(id).ok_or(KeysError::NoSuchKey(id))?;
        self.change(&scope, |ring| ring.use_for_sending(id))?;
        Ok(scope)
    }

    /// Stops accepting key `id`, for good.
    pub fn remove(&mut self, id: KeyId) -> Result<Scope, KeysError> {
        let scope = self.scope_of(id).ok_or(KeysError::NoSuchKey(id))?;
        self.change(&scope, |ring| ring.remove(id))?;
        self.retired.insert(id);
        self.save().map_err(|source| KeysError::NotSaved { what: "key removed", source })?;
        Ok(scope)
    }

    fn change(
        &mut self,
        scope: &Scope,
        f: impl FnOnce(&mut Keyring) -> Result<(), KeyringError>,
    ) -> Result<(), KeysError> {
        match scope {
            Scope::Cluster => {
                let shared = self.cluster.as_ref().expect("scope_of found it");
                let mut ring = (*shared.snapshot()).clone();
                f(&mut ring)?;
                shared.replace(ring);
            }
            Scope::Network(name) => f(self.networks.get_mut(name).expect("scope_of found it"))?,
        }
        self.save().map_err(|source| KeysError::NotSaved { what: "changed", source })
    }

    /// Writes the rings: to a temporary file readable by root only, then
    /// renamed over the old one.
    fn save(&self) -> io::Result<()> {
        let ring = |r: &Keyring| SavedRing {
            keys: r.ids().map(|id| r.get(id).expect("listed").to_hex().to_string()).collect(),
            sending: r.sending().0.to_string(),
        };
        let saved = Saved {
            cluster: self.cluster.as_ref().map(|c| ring(&c.snapshot())),
            networks: self.networks.iter().map(|(n, r)| (n.to_string(), ring(r))).collect(),
            retired: self.retired.iter().map(ToString::to_string).collect(),
        };
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(FILE_NAME);
        let tmp = path.with_extension("json.tmp");
        let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        let text = zeroize::Zeroizing::new(serde_json::to_vec_pretty(&saved).map_err(io::Error::other)?);
        file.write_all(&text)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)
    }
}

/// The ring an encrypted network's keys come from.
pub(super) fn key_scope(net: &NetworkConfig) -> Scope {
    match net.encryption.map(|e| e.key) {
        Some(KeySource::Own) => Scope::Network(net.name.clone()),
        _ => Scope::Cluster,
    }
}

/// Key rotation: `switchctl key ls/add/use/rm`, and the keys the data
/// plane seals and opens with.
impl Daemon {
    /// Gives the data plane every encrypted network's keys, and other
    /// hosts' current sessions.
    pub(super) fn push_keys(&self) {
        let networks = self
            .networks
            .iter()
            .filter_map(|n| {
                let e = n.config.encryption?;
                let ring = self.keys.ring(&key_scope(&n.config))?;
                Some((n.config.vni.get(), NetworkKeys { cipher: e.cipher, ring }))
            })
            .collect();
        let sessions = self.cluster.table.hosts.values().filter_map(|h| Some((h.underlay.ip(), h.session?))).collect();
        self.dataplane.set_keys(KeySet { networks, sessions });
    }

    /// Refuses an encrypted network whose key this host does not hold:
    /// it would have to carry it in plaintext, which it never does.
    pub(super) fn check_key_held(&self, net: &NetworkConfig) -> Result<(), KeysError> {
        match net.encryption {
            Some(_) if self.keys.ring(&key_scope(net)).is_none() => Err(match key_scope(net) {
                Scope::Cluster => KeysError::NoClusterKeyFor(net.name.to_string()),
                Scope::Network(name) => KeysError::NotHeld(name.to_string()),
            }),
            _ => Ok(()),
        }
    }

    /// Every key of every ring, with which hosts (this one included, by
    /// gossip for the others) accept it and seal with it.
    pub(super) fn key_ls(&self) -> Vec<KeyInfo> {
        let me = self.host.name.to_string();
        let mut rows = Vec::new();
        for (scope, ring) in self.keys.rings() {
            let gossip_scope = scope.gossip_name();
            let hosts: Vec<_> = self.hosts_with_scope(&scope).collect();
            for id in ring.ids() {
                let sending = ring.sending().0 == id;
                let mut accepted_by = vec![me.clone()];
                let mut sending_by = if sending { vec![me.clone()] } else { Vec::new() };
                let mut missing = Vec::new();
                for h in &hosts {
                    match h.keys.get(&gossip_scope) {
                        Some(r) if r.accepted.contains(&id) => {
                            accepted_by.push(h.name.to_string());
                            if r.sending == id {
                                sending_by.push(h.name.to_string());
                            }
                        }
                        _ => missing.push(h.name.to_string()),
                    }
                }
                rows.push(KeyInfo {
                    scope: scope.display_name(),
                    id: id.to_string(),
                    state: if sending { "sending" } else { "accepted" }.into(),
                    accepted_by,
                    sending_by,
                    missing,
                });
            }
        }
        rows
    }

    /// The `key ls` row of key `id`.
    fn key_info(&self, id: KeyId) -> KeyInfo {
        self.key_ls().into_iter().find(|k| k.id == id.to_string()).expect("a key just added or used is listed")
    }

    /// The usable remote hosts that hold (or should hold) `scope`'s ring:
    /// every host for the cluster's, carriers of the network for its own.
    fn hosts_with_scope<'a>(&'a self, scope: &'a Scope) -> impl Iterator<Item = &'a Host> + 'a {
        self.cluster.table.hosts.values().filter(move |h| {
            h.is_usable()
                && match scope {
                    Scope::Cluster => true,
                    Scope::Network(n) => h.networks.contains(n),
                }
        })
    }

    /// The remote hosts of `scope` for which `pred` holds of their ring, by name.
    fn hosts_whose_ring(&self, scope: &Scope, pred: impl Fn(Option<&RingState>) -> bool) -> String {
        let gossip_scope = scope.gossip_name();
        let hosts: Vec<String> = self
            .hosts_with_scope(scope)
            .filter(|h| pred(h.keys.get(&gossip_scope)))
            .map(|h| h.name.to_string())
            .collect();
        hosts.join(", ")
    }

    pub(super) fn key_add(&mut self, file: &Path, network: Option<&str>) -> Result<KeyInfo, KeysError> {
        let key = Key::load(file)?;
        let scope = match network {
            None => Scope::Cluster,
            Some(n) => {
                let name = Name::new(n).map_err(KeysError::BadNetwork)?;
                let own = |c: &NetworkConfig| c.encryption.is_some_and(|e| e.key == KeySource::Own);
                let known_own = self
                    .networks
                    .find(n)
                    .map(|net| own(&net.config))
                    .or_else(|| self.cluster.table.networks.get(&name).map(|c| own(&c.config)));
                match known_own {
                    Some(true) => Scope::Network(name),
                    Some(false) => return Err(KeysError::NoOwnKey(n.to_owned())),
                    None => return Err(KeysError::NoEncryptedNetwork(n.to_owned())),
                }
            }
        };
        let id = self.keys.add(&scope, key)?;
        tracing::info!("key {id} added to the {} key ring", scope.display_name());
        self.after_key_change();
        Ok(self.key_info(id))
    }

    pub(super) fn key_use(&mut self, id: &str, force: bool) -> Result<KeyInfo, KeysError> {
        let id: KeyId = id.parse().map_err(KeysError::BadId)?;
        let scope = self.keys.scope_of(id).ok_or(KeysError::NoSuchKey(id))?;
        let missing = self.hosts_whose_ring(&scope, |r| !r.is_some_and(|r| r.accepted.contains(&id)));
        if !missing.is_empty() && !force {
            return Err(KeysError::NotAccepted { hosts: missing, id });
        }
        self.keys.use_for_sending(id)?;
        tracing::info!("now sealing with key {id} ({} key ring)", scope.display_name());
        self.after_key_change();
        Ok(self.key_info(id))
    }

    pub(super) fn key_rm(&mut self, id: &str, force: bool) -> Result<String, KeysError> {
        let id: KeyId = id.parse().map_err(KeysError::BadId)?;
        let scope = self.keys.scope_of(id).ok_or(KeysError::NoSuchKey(id))?;
        let still = self.hosts_whose_ring(&scope, |r| r.is_some_and(|r| r.sending == id));
        if !still.is_empty() && !force {
            return Err(KeysError::StillSealing { hosts: still, id });
        }
        self.keys.remove(id)?;
        tracing::info!("key {id} removed from the {} key ring; no longer accepted", scope.display_name());
        self.after_key_change();
        Ok(id.to_string())
    }

    /// After a ring changed: the data plane and gossip follow, and a
    /// network refused for want of its key may now be carried.
    fn after_key_change(&mut self) {
        self.adopt_cluster_networks();
        self.sync_vteps();
        self.commit();
    }
}

fn load(state_dir: &Path) -> io::Result<Saved> {
    let path = state_dir.join(FILE_NAME);
    match std::fs::read(&path) {
        Ok(bytes) => {
            let bytes = zeroize::Zeroizing::new(bytes);
            serde_json::from_slice(&bytes)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Saved::default()),
        Err(e) => Err(e),
    }
}

fn restore(saved: &SavedRing) -> Result<Keyring, String> {
    let mut keys = saved.keys.iter().map(|hex| Key::from_hex(hex).map_err(|e| e.to_string()));
    let mut ring = Keyring::new(keys.next().ok_or("an empty key ring")??);
    for key in keys {
        ring.add(key?).map_err(|e| e.to_string())?;
    }
    let sending: KeyId = saved.sending.parse()?;
    ring.use_for_sending(sending).map_err(|e| e.to_string())?;
    Ok(ring)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_file(dir: &Path, name: &str, byte: u8) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, hex::encode([byte; 32])).unwrap();
        path
    }

    #[test]
    fn rotation_survives_restarts_and_retired_keys_stay_retired() {
        let dir = std::env::temp_dir().join(format!("switchd-keys-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let old = key_file(&dir, "old.key", 1);
        let net_key = key_file(&dir, "net.key", 3);
        let secret = Name::new("secret").unwrap();
        let files = BTreeMap::from([(secret.clone(), net_key)]);

        let mut store = KeyStore::open(&dir, Some(&old), &files).unwrap();
        let (old_id, new_id) = (Key::from_bytes([1; 32]).id(), Key::from_bytes([2; 32]).id());
        assert_eq!(store.add(&Scope::Cluster, Key::from_bytes([2; 32])).unwrap(), new_id);
        let in_cluster = store.add(&Scope::Network(secret.clone()), Key::from_bytes([2; 32])).unwrap_err();
        assert!(matches!(&in_cluster, KeysError::InOtherRing { id, .. } if *id == new_id), "{in_cluster}");
        assert_eq!(in_cluster.to_string(), format!("key {new_id} is already in the cluster key ring"));
        assert_eq!(store.use_for_sending(new_id).unwrap(), Scope::Cluster);
        assert_eq!(store.remove(old_id).unwrap(), Scope::Cluster);
        let retired = store.add(&Scope::Cluster, Key::from_bytes([1; 32])).unwrap_err();
        assert!(matches!(retired, KeysError::Retired(id) if id == old_id), "{retired}");
        let mode = std::fs::metadata(dir.join(FILE_NAME)).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);

        // host.toml still names the old key: it stays retired.
        let store = KeyStore::open(&dir, Some(&old), &files).unwrap();
        let cluster = store.ring(&Scope::Cluster).unwrap();
        assert_eq!(cluster.sending().0, new_id);
        assert_eq!(cluster.ids().collect::<Vec<_>>(), vec![new_id]);
        let published = store.published();
        assert_eq!(published["cluster"].accepted, vec![new_id]);
        assert_eq!(published["net/secret"].sending, Key::from_bytes([3; 32]).id());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
