//! Addresses: the blocks of each subnet this host claims (the decisions
//! are `ipam`'s, pure), the addresses switchd's IPAM gave dockerd, and the
//! daemon's side of both (picking an endpoint's address, giving blocks
//! back).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use switchd_config::{Name, NetworkConfig, Subnet};

use super::Daemon;
use super::ipam::{self, Allocation, Claims, Release};

/// How long a host keeps an address block it has no address in.
const IDLE_BLOCK_RELEASE: Duration = Duration::from_secs(60);

/// Addresses switchd's IPAM gave dockerd and dockerd has not released, by pool.
pub(super) type DockerReserved = BTreeMap<String, BTreeSet<IpAddr>>;

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Why no address was given.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    #[error("no free address left in {subnet} on network {network:?}")]
    Exhausted { subnet: Subnet, network: String },
    /// This host just claimed a block: ask again after this long.
    #[error("the address block this host claimed is not confirmed yet; try again")]
    Unconfirmed(Duration),
}

/// How a connect gets an address from a block not confirmed yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClaimMode {
    /// Claim, and wait for the claim to stand (`network connect`).
    Wait,
    /// Claim and use at once (host.toml's ports at start: gossip is not
    /// running yet, so there is nothing to wait for).
    Now,
    /// Claim nothing (`script attach`, which only shows the plan).
    Preview,
}

/// What [`Addresses::pick`] decided.
#[derive(Debug, PartialEq, Eq)]
enum Pick {
    Address(IpAddr),
    /// A preview, which claims nothing: the address is not known yet.
    Unknown,
    /// A block was claimed: the claim must be published (and, unless the
    /// mode is `Now`, stand) before an address from it is used.
    Claimed,
}

/// This host's address blocks and reservations.
#[derive(Debug)]
pub(super) struct Addresses {
    /// The blocks claimed, per network, with when (see `ipam`).
    claims: BTreeMap<Name, Claims>,
    /// Since when this host has used no address of each of its blocks.
    idle: BTreeMap<Name, BTreeMap<u32, u64>>,
    docker_reserved: DockerReserved,
    /// How long a claim must stand before it is used: a few gossip rounds;
    /// zero without gossip, where this host alone owns every block.
    claim_confirm: Duration,
}

impl Addresses {
    pub fn new(claims: BTreeMap<Name, Claims>, docker_reserved: DockerReserved, claim_confirm: Duration) -> Self {
        Addresses { claims, idle: BTreeMap::new(), docker_reserved, claim_confirm }
    }

    /// What is saved and published: every claim.
    pub fn claims(&self) -> &BTreeMap<Name, Claims> {
        &self.claims
    }

    pub fn docker_reserved(&self) -> &DockerReserved {
        &self.docker_reserved
    }

    /// Whether this host holds any block of `network`.
    pub fn is_claiming(&self, network: &Name) -> bool {
        self.claims.get(network).is_some_and(|c| !c.is_empty())
    }

    /// A network gone: its claims go with it.
    pub fn forget(&mut self, network: &Name) {
        self.claims.remove(network);
        self.idle.remove(network);
    }

    /// The addresses of `subnet` given to dockerd and not released.
    pub fn reserved(&self, subnet: Subnet) -> impl Iterator<Item = IpAddr> + '_ {
        self.docker_reserved.get(&subnet.to_string()).into_iter().flatten().copied()
    }

    pub fn reserve(&mut self, subnet: Subnet, ip: IpAddr) {
        self.docker_reserved.entry(subnet.to_string()).or_default().insert(ip);
    }

    /// Releases a reservation; whether there was one.
    pub fn release(&mut self, pool: &str, ip: IpAddr) -> bool {
        self.docker_reserved.get_mut(pool).is_some_and(|r| r.remove(&ip))
    }

    /// Runs `f` with the IPAM pool of `net`: its subnet, and every host's
    /// claims on it (`None` without gossip, where this host owns all).
    fn with_pool<T>(
        &self,
        me: &Name,
        others: &[(&Name, &Claims)],
        net: &NetworkConfig,
        confirm: Duration,
        now_ms: u64,
        f: impl FnOnce(ipam::Pool) -> T,
    ) -> T {
        let empty = Claims::new();
        let mut all: Vec<(&Name, &Claims)> = vec![(me, self.claims.get(&net.name).unwrap_or(&empty))];
        all.extend_from_slice(others);
        // With gossip configured, always by claims (also at start, before
        // the member runs: its claims go out with its first gossip).
        let gossiping = !self.claim_confirm.is_zero();
        f(ipam::Pool {
            subnet: net.subnet.expect("called for networks with a subnet"),
            gateway: net.gateway,
            me,
            claims: gossiping.then_some(&all[..]),
            now_ms,
            confirm,
            request_for: self.claim_confirm * 3,
        })
    }

    /// An address for a new endpoint on `net` from a block this host owns,
    /// or a claim of one when it has none with room.
    fn pick(
        &mut self,
        me: &Name,
        others: &[(&Name, &Claims)],
        net: &NetworkConfig,
        taken: &HashSet<IpAddr>,
        mode: ClaimMode,
    ) -> Result<Pick, AddressError> {
        let subnet = net.subnet.expect("called for networks with a subnet");
        let now_ms = now_ms();
        let confirm = if mode == ClaimMode::Now { Duration::ZERO } else { self.claim_confirm };
        let (allocation, owner) = self.with_pool(me, others, net, confirm, now_ms, |pool| {
            let allocation = ipam::allocate(pool, |ip| taken.contains(&ip));
            let owner = match &allocation {
                Allocation::Claim(block) => ipam::owner(*block, pool.claims.unwrap_or_default()).cloned(),
                _ => None,
            };
            (allocation, owner)
        });
        let exhausted = || AddressError::Exhausted { subnet, network: net.name.to_string() };
        match (allocation, owner) {
            (Allocation::Address(ip), _) => Ok(Pick::Address(ip)),
            (Allocation::Exhausted, _) => Err(exhausted()),
            (Allocation::Wait(_) | Allocation::Claim(_), _) if mode == ClaimMode::Preview => Ok(Pick::Unknown),
            (Allocation::Wait(wait), _) => Err(AddressError::Unconfirmed(wait)),
            // At start, before gossip runs, there is no one to ask.
            (Allocation::Claim(_), Some(_)) if mode == ClaimMode::Now => Err(exhausted()),
            (Allocation::Claim(block), owner) => {
                match owner {
                    Some(owner) => tracing::info!(
                        "network {}: every address block is claimed; asking {owner} for block {block}, \
                         where it has no address",
                        net.name
                    ),
                    None => tracing::info!("network {}: claiming address block {block}", net.name),
                }
                self.claims.entry(net.name.clone()).or_default().insert(block, now_ms);
                Ok(Pick::Claimed)
            }
        }
    }

    /// Gives back blocks of `net` (see `ipam::tend`); what went, and why.
    fn tend(
        &mut self,
        me: &Name,
        others: &[(&Name, &Claims)],
        net: &NetworkConfig,
        used: &HashSet<IpAddr>,
        release_after: Duration,
    ) -> Vec<(u32, Release)> {
        let mut idle = self.idle.remove(&net.name).unwrap_or_default();
        let released = self.with_pool(me, others, net, self.claim_confirm, now_ms(), |pool| {
            ipam::tend(pool, |ip| used.contains(&ip), &mut idle, release_after)
        });
        self.idle.insert(net.name.clone(), idle);
        if let Some(mine) = self.claims.get_mut(&net.name) {
            for (block, _) in &released {
                mine.remove(block);
            }
        }
        released
    }
}

impl Daemon {
    /// An address for a new endpoint on `net`, none of `taken`: from a
    /// block this host owns, claiming one when it has none with room.
    /// `Ok(None)`: a preview, which does not claim.
    pub(super) fn pick_address(
        &mut self,
        net: &NetworkConfig,
        taken: &HashSet<IpAddr>,
        mode: ClaimMode,
    ) -> Result<Option<IpAddr>, AddressError> {
        loop {
            let others = self.cluster.claims_on(&net.name);
            match self.addresses.pick(&self.host.name, &others, net, taken, mode)? {
                Pick::Address(ip) => return Ok(Some(ip)),
                Pick::Unknown => return Ok(None),
                Pick::Claimed => {
                    self.save();
                    self.publish_state();
                    if mode != ClaimMode::Now {
                        return Err(AddressError::Unconfirmed(self.addresses.claim_confirm));
                    }
                }
            }
        }
    }

    /// The addresses on `net` a new endpoint must not take: endpoints'
    /// here and, as gossip tells, on other hosts, and those given to dockerd.
    pub(super) fn taken_addresses(&self, net: &NetworkConfig) -> HashSet<IpAddr> {
        let mut taken: HashSet<IpAddr> = self.endpoints.on(net.name.as_str()).filter_map(|e| e.record.ip).collect();
        taken.extend(self.cluster.table.endpoints_on(&net.name).filter_map(|(_, e)| e.ip));
        taken.extend(net.subnet.into_iter().flat_map(|s| self.addresses.reserved(s)));
        taken.extend(self.reserved_vips(&net.name));
        taken
    }

    /// Whether this host claims blocks that may be due to go back (with
    /// gossip: without, it owns every block and gives none back).
    pub fn has_claims_to_tend(&self) -> bool {
        !self.addresses.claim_confirm.is_zero() && self.addresses.claims.values().any(|c| !c.is_empty())
    }

    /// Gives back address blocks (see `ipam::tend`): claims another host's
    /// earlier claim beat or whose request lapsed, blocks another host asks
    /// for and this one has no address in, and blocks unused here for
    /// [`IDLE_BLOCK_RELEASE`]. Without gossip there is no one to give to.
    pub fn tend_claims(&mut self) {
        if self.addresses.claim_confirm.is_zero() {
            return;
        }
        let mut changed = false;
        // A cluster network this host no longer carries for its own sake
        // keeps no block longer than it takes to use a fresh claim: holding
        // claims keeps the network published, and so in the cluster.
        let networks: Vec<(NetworkConfig, Duration)> = self
            .networks
            .iter()
            .filter(|n| n.config.subnet.is_some() && self.addresses.is_claiming(&n.config.name))
            .map(|n| (n.config.clone(), if self.carries(n) { IDLE_BLOCK_RELEASE } else { Duration::ZERO }))
            .collect();
        for (net, release_after) in networks {
            let mut used: HashSet<IpAddr> = self.endpoints.on(net.name.as_str()).filter_map(|e| e.record.ip).collect();
            used.extend(net.subnet.into_iter().flat_map(|s| self.addresses.reserved(s)));
            let others = self.cluster.claims_on(&net.name);
            for (block, why) in self.addresses.tend(&self.host.name, &others, &net, &used, release_after) {
                match why {
                    Release::Lost => tracing::warn!(
                        "network {}: address block {block} is another host's (claimed first, or not given \
                         when asked for); giving up the claim",
                        net.name
                    ),
                    Release::Yielded(host) => tracing::info!(
                        "network {}: giving address block {block} to {host}, which asked for it",
                        net.name
                    ),
                    Release::Idle => tracing::info!(
                        "network {}: giving address block {block} back, unused here for {} s",
                        net.name,
                        release_after.as_secs()
                    ),
                }
                changed = true;
            }
        }
        if changed {
            self.save();
            self.publish_state();
        }
    }
}
