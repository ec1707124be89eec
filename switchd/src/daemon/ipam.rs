//! Address assignment across the cluster, without a coordinator.
//!
//! A subnet is cut into blocks (16 of them, of 4 to 256 addresses:
//! `Subnet::block_size`). A host hands out addresses only from blocks it
//! owns, so two hosts never hand out the same one. It claims a block by publishing the claim (block and
//! time) through gossip; of several claims on one block the earliest wins
//! (the lower host name on a tie), which every host works out alike from
//! the same table. A claim is used once it has stood unchallenged for a few
//! gossip rounds (`confirm`), long enough for every host to have seen it.
//! Without gossip, a host is alone and owns every block at once.
//!
//! Pure: the caller says which addresses are taken (by local endpoints and,
//! through gossip, remote ones) and what was claimed.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::time::Duration;

use switchd_config::{Name, Subnet};

/// Claims on one network: block -> when it was claimed (ms since the epoch).
/// Blocks are cut by `Subnet::block_size`.
pub type Claims = BTreeMap<u32, u64>;

/// The addresses of block `block` that may be handed out.
fn block_hosts(subnet: Subnet, block: u32) -> impl Iterator<Item = IpAddr> {
    let size = subnet.block_size();
    let start = u128::from(block) * size;
    (start..start + size).filter_map(move |n| subnet.nth_host(n))
}

/// Who owns `block`: the earliest claim, the lower name on a tie.
pub fn owner<'a>(block: u32, claims: &'a [(&'a Name, &'a Claims)]) -> Option<&'a Name> {
    claims.iter().filter_map(|(host, c)| Some(((*c.get(&block)?, *host), *host))).min().map(|(_, host)| host)
}

/// What [`allocate`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allocation {
    /// This address, from a block this host owns.
    Address(IpAddr),
    /// First claim this block (no host has), then ask again after `confirm`.
    Claim(u32),
    /// A claim of this host is not confirmed yet: ask again after this long.
    Wait(Duration),
    /// Every block is owned and this host's are full.
    Exhausted,
}

/// The inputs of [`allocate`].
#[derive(Debug, Clone, Copy)]
pub struct Pool<'a> {
    pub subnet: Subnet,
    pub gateway: Option<IpAddr>,
    pub me: &'a Name,
    /// Every host's claims on this network, this one's included; `None`
    /// for a host without gossip, which owns everything.
    pub claims: Option<&'a [(&'a Name, &'a Claims)]>,
    pub now_ms: u64,
    pub confirm: Duration,
}

/// The next address for a new endpoint, or what to do first.
pub fn allocate(pool: Pool, taken: impl Fn(IpAddr) -> bool) -> Allocation {
    let free = |ip: &IpAddr| Some(*ip) != pool.gateway && !taken(*ip);
    let Some(claims) = pool.claims else {
        return match (0..pool.subnet.block_count()).flat_map(|b| block_hosts(pool.subnet, b)).find(free) {
            Some(ip) => Allocation::Address(ip),
            None => Allocation::Exhausted,
        };
    };
    let mine = claims.iter().find(|(h, _)| *h == pool.me).map(|(_, c)| *c);
    let mut waiting: Option<Duration> = None;
    for (&block, &claimed) in mine.into_iter().flatten() {
        if owner(block, claims) != Some(pool.me) {
            continue;
        }
        let confirmed_at = claimed.saturating_add(pool.confirm.as_millis() as u64);
        if confirmed_at > pool.now_ms {
            let left = Duration::from_millis(confirmed_at - pool.now_ms);
            waiting = Some(waiting.map_or(left, |w| w.min(left)));
            continue;
        }
        if let Some(ip) = block_hosts(pool.subnet, block).find(free) {
            return Allocation::Address(ip);
        }
    }
    if let Some(left) = waiting {
        return Allocation::Wait(left);
    }
    // A new block no host has claimed, searched from a place of this
    // host's own so that hosts starting together rarely pick the same.
    let count = pool.subnet.block_count();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    pool.me.hash(&mut hasher);
    let start = (hasher.finish() % u64::from(count)) as u32;
    let claimed = |b: u32| claims.iter().any(|(_, c)| c.contains_key(&b));
    let has_room = |b: u32| block_hosts(pool.subnet, b).any(|ip| free(&ip));
    match (0..count).map(|i| (start + i) % count).find(|b| !claimed(*b) && has_room(*b)) {
        Some(block) => Allocation::Claim(block),
        None => Allocation::Exhausted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    const CONFIRM: Duration = Duration::from_secs(2);

    fn pool<'a>(subnet: &str, me: &'a Name, claims: Option<&'a [(&'a Name, &'a Claims)]>, now_ms: u64) -> Pool<'a> {
        let subnet: Subnet = subnet.parse().unwrap();
        Pool { subnet, gateway: Some(subnet.first_host()), me, claims, now_ms, confirm: CONFIRM }
    }

    #[test]
    fn blocks_of_subnets() {
        let s = |s: &str| {
            let subnet = s.parse::<Subnet>().unwrap();
            (subnet.block_size(), subnet.block_count())
        };
        assert_eq!(s("10.0.0.0/24"), (16, 16));
        assert_eq!(s("10.0.0.0/16"), (256, 256));
        assert_eq!(s("10.0.0.0/28"), (4, 4));
        assert_eq!(s("10.0.0.0/30"), (4, 1));
        assert_eq!(s("fd00::/64").1, 1 << 16);
    }

    #[test]
    fn alone_a_host_takes_the_lowest_free_address() {
        let me = name("a");
        let a = allocate(pool("10.0.0.0/29", &me, None, 0), |ip| ip.to_string() == "10.0.0.2");
        assert_eq!(a, Allocation::Address("10.0.0.3".parse().unwrap()));
        assert_eq!(allocate(pool("10.0.0.0/30", &me, None, 0), |_| true), Allocation::Exhausted);
        let v6 = allocate(pool("fd00::/64", &me, None, 0), |_| false);
        assert_eq!(v6, Allocation::Address("fd00::2".parse().unwrap()));
    }

    #[test]
    fn claim_wait_then_allocate_from_the_block() {
        let (a, b) = (name("a"), name("b"));
        let none = Claims::new();
        let claims: &[(&Name, &Claims)] = &[(&a, &none), (&b, &none)];
        let Allocation::Claim(block) = allocate(pool("10.0.0.0/24", &a, Some(claims), 1000), |_| false) else {
            panic!("a claims first")
        };
        let mine: Claims = [(block, 1000)].into();
        let claims: &[(&Name, &Claims)] = &[(&a, &mine), (&b, &none)];
        assert_eq!(
            allocate(pool("10.0.0.0/24", &a, Some(claims), 1500), |_| false),
            Allocation::Wait(Duration::from_millis(1500))
        );
        let Allocation::Address(ip) = allocate(pool("10.0.0.0/24", &a, Some(claims), 3000), |_| false) else {
            panic!()
        };
        assert!(block_hosts("10.0.0.0/24".parse().unwrap(), block).any(|h| h == ip), "{ip} is in block {block}");
        // b never picks a's block.
        let Allocation::Claim(other) = allocate(pool("10.0.0.0/24", &b, Some(claims), 3000), |_| false) else {
            panic!()
        };
        assert_ne!(other, block);
    }

    #[test]
    fn the_earliest_claim_wins_and_the_loser_moves_on() {
        let (a, b) = (name("a"), name("b"));
        let early: Claims = [(5, 1000)].into();
        let late: Claims = [(5, 1200)].into();
        let claims: &[(&Name, &Claims)] = &[(&a, &late), (&b, &early)];
        assert_eq!(owner(5, claims), Some(&b));
        // a lost block 5: it does not use it, and claims another.
        match allocate(pool("10.0.0.0/24", &a, Some(claims), 10_000), |_| false) {
            Allocation::Claim(block) => assert_ne!(block, 5),
            other => panic!("{other:?}"),
        }
        let tie: Claims = [(5, 1000)].into();
        assert_eq!(owner(5, &[(&b, &tie), (&a, &early)]), Some(&a), "a tie goes to the lower name");
    }

    #[test]
    fn exhaustion_when_every_block_is_owned_and_full() {
        let (a, b) = (name("a"), name("b"));
        let all_b: Claims = (0..4).map(|blk| (blk, 0)).collect();
        let none = Claims::new();
        let claims: &[(&Name, &Claims)] = &[(&a, &none), (&b, &all_b)];
        assert_eq!(allocate(pool("10.0.0.0/28", &a, Some(claims), 10_000), |_| false), Allocation::Exhausted);
    }
}
