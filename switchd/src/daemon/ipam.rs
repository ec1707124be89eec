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
//! Blocks go back too ([`tend`]): a host gives up a block it has had no
//! address in for a while, and one another host asks for. A host whose
//! blocks are full and that finds no unclaimed block asks for a block
//! another host owns but uses no address of: it claims that block too
//! (a claim later than the owner's is a request), and the owner, seeing
//! the request and having no address there, gives the block back; then the
//! request is the earliest claim, and the block the requester's. A request
//! the owner does not answer lapses.
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
    /// How long a claim on a block another host owns stands as a request
    /// for it before it lapses.
    pub request_for: Duration,
}

impl Pool<'_> {
    fn ms(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }

    /// Where a search over blocks starts for this host, so that hosts
    /// searching at once rarely pick the same block.
    fn start(&self) -> u32 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.me.hash(&mut hasher);
        (hasher.finish() % u64::from(self.subnet.block_count())) as u32
    }
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
    let mut requesting: Option<Duration> = None;
    let soonest = |w: &mut Option<Duration>, left: u64| {
        let left = Duration::from_millis(left);
        *w = Some(w.map_or(left, |w| w.min(left)));
    };
    for (&block, &claimed) in mine.into_iter().flatten() {
        if owner(block, claims) != Some(pool.me) {
            // A request for another's block: wait for the owner's answer.
            let lapses_at = claimed.saturating_add(Pool::ms(pool.request_for));
            if lapses_at > pool.now_ms {
                soonest(&mut requesting, (lapses_at - pool.now_ms).min(Pool::ms(pool.confirm)));
            }
            continue;
        }
        let confirmed_at = claimed.saturating_add(Pool::ms(pool.confirm));
        if confirmed_at > pool.now_ms {
            soonest(&mut waiting, confirmed_at - pool.now_ms);
            continue;
        }
        if let Some(ip) = block_hosts(pool.subnet, block).find(free) {
            return Allocation::Address(ip);
        }
    }
    if let Some(left) = waiting {
        return Allocation::Wait(left);
    }
    let count = pool.subnet.block_count();
    let start = pool.start();
    let in_order = || (0..count).map(move |i| (start + i) % count);
    let claimed = |b: u32| claims.iter().any(|(_, c)| c.contains_key(&b));
    let has_room = |b: u32| block_hosts(pool.subnet, b).any(|ip| free(&ip));
    // A new block no host has claimed.
    if let Some(block) = in_order().find(|b| !claimed(*b) && has_room(*b)) {
        return Allocation::Claim(block);
    }
    if let Some(left) = requesting {
        return Allocation::Wait(left);
    }
    // Every block is claimed: ask for one whose owner uses none of it.
    let mine_already = |b: u32| mine.is_some_and(|c| c.contains_key(&b));
    let unused = |b: u32| block_hosts(pool.subnet, b).all(|ip| Some(ip) == pool.gateway || !taken(ip));
    match in_order().find(|b| !mine_already(*b) && unused(*b) && has_room(*b)) {
        Some(block) => Allocation::Claim(block),
        None => Allocation::Exhausted,
    }
}

/// Why this host gives up a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// Another host claimed the block first, or the owner did not answer
    /// this host's request for it.
    Lost,
    /// Another host asks for the block, and this host has no address in it.
    Yielded(Name),
    /// This host has had no address in the block for `release_after`.
    Idle,
}

/// What to give back of this host's claims on one network, now
/// (`pool.claims` must be `Some`). `used_here`: the addresses this host
/// has handed out (its endpoints', and those reserved for endpoints to
/// come). `idle_since` remembers, per block, since when this host has had
/// no address in it (ms); blocks it uses leave it.
pub fn tend(
    pool: Pool,
    used_here: impl Fn(IpAddr) -> bool,
    idle_since: &mut BTreeMap<u32, u64>,
    release_after: Duration,
) -> Vec<(u32, Release)> {
    let Some(claims) = pool.claims else { return Vec::new() };
    let Some(mine) = claims.iter().find(|(h, _)| *h == pool.me).map(|(_, c)| *c) else { return Vec::new() };
    let mut released = Vec::new();
    idle_since.retain(|b, _| mine.contains_key(b));
    for (&block, &claimed) in mine {
        if owner(block, claims) != Some(pool.me) {
            if claimed.saturating_add(Pool::ms(pool.request_for)) <= pool.now_ms {
                released.push((block, Release::Lost));
            }
            continue;
        }
        if block_hosts(pool.subnet, block).any(&used_here) {
            idle_since.remove(&block);
            continue;
        }
        // A claim just made is about to be used: never given up at once.
        let settled = claimed.saturating_add(2 * Pool::ms(pool.confirm)) <= pool.now_ms;
        let asked_by = claims.iter().find(|(h, c)| *h != pool.me && c.contains_key(&block)).map(|(h, _)| *h);
        if let (Some(host), true) = (asked_by, settled) {
            released.push((block, Release::Yielded(host.clone())));
            continue;
        }
        let since = *idle_since.entry(block).or_insert(pool.now_ms);
        if settled && since.saturating_add(Pool::ms(release_after)) <= pool.now_ms {
            released.push((block, Release::Idle));
        }
    }
    for (block, _) in &released {
        idle_since.remove(block);
    }
    released
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    const CONFIRM: Duration = Duration::from_secs(2);
    const REQUEST: Duration = Duration::from_secs(6);
    const IDLE: Duration = Duration::from_secs(60);

    fn pool<'a>(subnet: &str, me: &'a Name, claims: Option<&'a [(&'a Name, &'a Claims)]>, now_ms: u64) -> Pool<'a> {
        let subnet: Subnet = subnet.parse().unwrap();
        Pool { subnet, gateway: Some(subnet.first_host()), me, claims, now_ms, confirm: CONFIRM, request_for: REQUEST }
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
    fn exhaustion_when_every_block_is_owned_and_used() {
        let (a, b) = (name("a"), name("b"));
        let all_b: Claims = (0..4).map(|blk| (blk, 0)).collect();
        let none = Claims::new();
        let claims: &[(&Name, &Claims)] = &[(&a, &none), (&b, &all_b)];
        // b has one address in use in each block (10.0.0.2, .4, .8, .12).
        let used = |ip: IpAddr| ["10.0.0.2", "10.0.0.4", "10.0.0.8", "10.0.0.12"].contains(&ip.to_string().as_str());
        assert_eq!(allocate(pool("10.0.0.0/28", &a, Some(claims), 10_000), used), Allocation::Exhausted);
    }

    /// Host a holds every block and uses none of one; b asks for that one,
    /// a gives it back, and b's request is then the earliest claim.
    #[test]
    fn a_block_the_owner_does_not_use_is_asked_for_and_given() {
        let (a, b) = (name("a"), name("b"));
        let all_a: Claims = (0..4).map(|blk| (blk, 0)).collect();
        let none = Claims::new();
        // a uses an address in blocks 0, 1 and 3, none in block 2 (10.0.0.8-11).
        let used = |ip: IpAddr| ["10.0.0.2", "10.0.0.4", "10.0.0.12"].contains(&ip.to_string().as_str());
        let claims: &[(&Name, &Claims)] = &[(&a, &all_a), (&b, &none)];
        assert_eq!(allocate(pool("10.0.0.0/28", &b, Some(claims), 100_000), used), Allocation::Claim(2));
        // b's request stands; b waits for the answer rather than asking again.
        let request: Claims = [(2, 100_000)].into();
        let claims: &[(&Name, &Claims)] = &[(&a, &all_a), (&b, &request)];
        assert!(matches!(allocate(pool("10.0.0.0/28", &b, Some(claims), 101_000), used), Allocation::Wait(_)));
        // a sees the request and gives block 2 back; blocks it uses stay.
        let mut idle = BTreeMap::new();
        let here = |ip: IpAddr| used(ip);
        let given = tend(pool("10.0.0.0/28", &a, Some(claims), 101_000), here, &mut idle, IDLE);
        assert_eq!(given, vec![(2, Release::Yielded(b.clone()))]);
        // Then block 2 is b's, confirmed already (its claim stood long enough).
        let a_left: Claims = [(0, 0), (1, 0), (3, 0)].into();
        let claims: &[(&Name, &Claims)] = &[(&a, &a_left), (&b, &request)];
        assert_eq!(owner(2, claims), Some(&b));
        let got = allocate(pool("10.0.0.0/28", &b, Some(claims), 102_500), used);
        assert_eq!(got, Allocation::Address("10.0.0.8".parse().unwrap()));
        // A request the owner does not answer lapses.
        let claims: &[(&Name, &Claims)] = &[(&a, &all_a), (&b, &request)];
        let lapsed = tend(pool("10.0.0.0/28", &b, Some(claims), 100_000 + 6_000), |_| false, &mut idle, IDLE);
        assert_eq!(lapsed, vec![(2, Release::Lost)]);
    }

    #[test]
    fn an_unused_block_goes_back_after_a_while_and_a_fresh_claim_never_at_once() {
        let (a, b) = (name("a"), name("b"));
        let mine: Claims = [(3, 0), (5, 0)].into();
        let none = Claims::new();
        let claims: &[(&Name, &Claims)] = &[(&a, &mine), (&b, &none)];
        // Block 5 (10.0.0.80-95) has an address in use here, block 3 none.
        let used = |ip: IpAddr| ip.to_string() == "10.0.0.81";
        let mut idle = BTreeMap::new();
        assert!(tend(pool("10.0.0.0/24", &a, Some(claims), 10_000), used, &mut idle, IDLE).is_empty());
        assert_eq!(idle.keys().collect::<Vec<_>>(), vec![&3]);
        assert!(tend(pool("10.0.0.0/24", &a, Some(claims), 69_999), used, &mut idle, IDLE).is_empty());
        assert_eq!(
            tend(pool("10.0.0.0/24", &a, Some(claims), 70_000), used, &mut idle, IDLE),
            vec![(3, Release::Idle)]
        );
        // Asked for a block it claimed a moment ago (and is about to use): kept.
        let fresh: Claims = [(7, 100_000)].into();
        let asking: Claims = [(7, 100_500)].into();
        let claims: &[(&Name, &Claims)] = &[(&a, &fresh), (&b, &asking)];
        assert!(tend(pool("10.0.0.0/24", &a, Some(claims), 101_000), |_| false, &mut idle, IDLE).is_empty());
        // And b's claim, beaten by the earlier one, stands as a request until it lapses.
        let lost = tend(pool("10.0.0.0/24", &b, Some(claims), 101_000), |_| false, &mut BTreeMap::new(), IDLE);
        assert!(lost.is_empty());
    }
}
