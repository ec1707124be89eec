//! Key rings: every key a scope accepts, and the one it seals with.
//!
//! A scope is the cluster (its ring starts with `[gossip] key_file`) or a
//! network with its own `key_file`. Rotation without loss is three steps,
//! each done on every host before the next starts: add the new key (all
//! accept it), use it (all seal with it; everyone can already open it),
//! remove the old one (nobody seals with it any more).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::{Key, KeyId};

/// Why a key ring refused a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringError {
    #[error("key {0} is already in the ring")]
    Present(KeyId),
    #[error("no key {0} in the ring")]
    Unknown(KeyId),
    #[error("key {0} is the one in use for sending; use another key first")]
    InUse(KeyId),
}

/// The keys of one scope. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyring {
    /// In the order they were added.
    keys: Vec<(KeyId, Key)>,
    sending: KeyId,
}

impl Keyring {
    /// A ring holding `first`, which also seals.
    pub fn new(first: Key) -> Self {
        let id = first.id();
        Keyring { keys: vec![(id, first)], sending: id }
    }

    /// The key new messages are sealed with.
    pub fn sending(&self) -> (KeyId, &Key) {
        (self.sending, self.get(self.sending).expect("the sending key is in the ring"))
    }

    pub fn get(&self, id: KeyId) -> Option<&Key> {
        self.keys.iter().find(|(k, _)| *k == id).map(|(_, key)| key)
    }

    /// Every key's id, oldest first.
    pub fn ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.keys.iter().map(|(id, _)| *id)
    }

    /// Accepts `key` from now on (it does not seal until [`Keyring::use_for_sending`]).
    pub fn add(&mut self, key: Key) -> Result<KeyId, KeyringError> {
        let id = key.id();
        if self.get(id).is_some() {
            return Err(KeyringError::Present(id));
        }
        self.keys.push((id, key));
        Ok(id)
    }

    pub fn use_for_sending(&mut self, id: KeyId) -> Result<(), KeyringError> {
        self.get(id).ok_or(KeyringError::Unknown(id))?;
        self.sending = id;
        Ok(())
    }

    /// Stops accepting a key. The sending key cannot go.
    pub fn remove(&mut self, id: KeyId) -> Result<(), KeyringError> {
        if id == self.sending {
            return Err(KeyringError::InUse(id));
        }
        let at = self.keys.iter().position(|(k, _)| *k == id).ok_or(KeyringError::Unknown(id))?;
        self.keys.remove(at);
        Ok(())
    }
}

/// A key ring read by many (the gossip transport, data-plane workers) and
/// changed by one (the control plane). Readers take snapshots; the
/// generation tells them cheaply when to take a new one.
#[derive(Debug, Clone)]
pub struct SharedKeyring {
    current: Arc<RwLock<Arc<Keyring>>>,
    generation: Arc<AtomicU64>,
}

impl SharedKeyring {
    pub fn new(ring: Keyring) -> Self {
        SharedKeyring { current: Arc::new(RwLock::new(Arc::new(ring))), generation: Arc::new(AtomicU64::new(0)) }
    }

    pub fn snapshot(&self) -> Arc<Keyring> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn replace(&self, ring: Keyring) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ring);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Changes on every [`SharedKeyring::replace`].
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Key {
        Key::from_bytes([b; 32])
    }

    #[test]
    fn add_use_remove() {
        let mut ring = Keyring::new(key(1));
        let (old, _) = ring.sending();
        assert_eq!(ring.add(key(1)), Err(KeyringError::Present(old)));
        let new = ring.add(key(2)).unwrap();
        assert_eq!(ring.sending().0, old, "adding does not switch");
        assert_eq!(ring.ids().collect::<Vec<_>>(), vec![old, new]);
        assert_eq!(ring.remove(old), Err(KeyringError::InUse(old)));
        ring.use_for_sending(new).unwrap();
        assert_eq!(ring.sending(), (new, &key(2)));
        ring.remove(old).unwrap();
        assert!(ring.get(old).is_none());
        assert_eq!(ring.remove(old), Err(KeyringError::Unknown(old)));
        assert_eq!(ring.use_for_sending(old), Err(KeyringError::Unknown(old)));
    }

    #[test]
    fn shared_snapshots_and_generations() {
        let shared = SharedKeyring::new(Keyring::new(key(1)));
        let before = shared.snapshot();
        let g = shared.generation();
        let mut ring = (*before).clone();
        ring.add(key(2)).unwrap();
        shared.replace(ring);
        assert_ne!(shared.generation(), g);
        assert_eq!(before.ids().count(), 1, "an old snapshot stays as it was");
        assert_eq!(shared.snapshot().ids().count(), 2);
    }
}
