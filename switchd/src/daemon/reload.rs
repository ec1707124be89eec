//! `switchctl reload` and `SIGHUP`: host.toml read again, and what changed
//! in its networks, ports, routes, peers, services (with their mesh ports)
//! and policies applied without a restart.
//!
//! A file that does not validate changes nothing and is answered with the
//! messages `switchd --check` prints. Only what host.toml itself made is
//! touched (networks, ports and routes made at run time stay); a network
//! whose settings changed, and changes to `[host]`, `[gossip]`,
//! `[docker]` and `[metrics]`, are reported as needing a restart rather
//! than half applied. Removals go first (ports, routes, networks, peers),
//! then additions, so a port may move to a network added in the same
//! reload.

use std::net::SocketAddr;
use std::path::Path;

use switchd_config::{Config, PortConfig};

use super::addresses::ClaimMode;
use super::cluster::StaticPeer;
use super::error::{DaemonError, OpResult};
use super::{Daemon, Origin, raw_from_port, same_attachment};
use crate::control::api::ReloadReport;

impl Daemon {
    /// [`Daemon::reload`] for SIGHUP: what it did is logged.
    pub fn reload_from_signal(&mut self) -> OpResult<()> {
        self.reload().map(|_| ())
    }

    pub(super) fn reload(&mut self) -> OpResult<ReloadReport> {
        let path =
            self.config_path.clone().ok_or_else(|| DaemonError::Reload("started without a config file".into()))?;
        let config = Config::load(&path).map_err(|e| DaemonError::Reload(e.to_string()))?;
        let mut report = ReloadReport::default();
        self.note_restart_only(&config, &path, &mut report);

        // Ports host.toml no longer has.
        let gone: Vec<PortConfig> = self.config_ports.iter().filter(|p| !config.ports.contains(p)).cloned().collect();
        for port in &gone {
            let found =
                self.endpoints.iter().find(|e| e.record.origin == Origin::Config && same_attachment(port, &e.record));
            let Some((network, name)) = found.map(|e| (e.record.network.to_string(), e.record.name.to_string())) else {
                continue;
            };
            match self.disconnect(&network, &name) {
                Ok(_) => report.removed.push(format!("port {name} on {network}")),
                Err(e) => report.errors.push(format!("port {name} on {network}: {e}")),
            }
        }

        // Routes.
        let old_routes: Vec<_> =
            self.layer3.routes.iter().filter(|(_, o)| **o == Origin::Config).map(|(r, _)| r.clone()).collect();
        for route in old_routes.iter().filter(|r| !config.routes.contains(r)) {
            self.layer3.routes.remove(route);
            report.removed.push(format!("route {} {}", route.networks[0], route.networks[1]));
        }

        // Networks: removed, or changed (not applied).
        let old_networks = self.networks.configs_of(Origin::Config);
        for net in &old_networks {
            match config.networks.iter().find(|n| n.name == net.name) {
                Some(new) if new == net => {}
                Some(_) => report.needs_restart.push(format!("network {}: its settings changed", net.name)),
                None => {
                    let attached: Vec<String> =
                        self.endpoints.on(net.name.as_str()).map(|e| e.record.name.to_string()).collect();
                    if attached.is_empty() {
                        self.drop_network(net.name.as_str());
                        report.removed.push(format!("network {}", net.name));
                    } else {
                        report.errors.push(format!(
                            "network {} not removed: {} still attached (disconnect them first)",
                            net.name,
                            attached.join(", ")
                        ));
                    }
                }
            }
        }

        // Peers.
        let kept: Vec<_> = config.peers.clone();
        let (stay, leave): (Vec<StaticPeer>, Vec<StaticPeer>) =
            std::mem::take(&mut self.cluster.peers).into_iter().partition(|p| kept.contains(&p.config));
        self.cluster.peers = stay;
        for peer in leave {
            self.dataplane.remove_vtep(peer.vtep);
            report.removed.push(format!("peer {}", peer.config.underlay_ip));
        }
        let new_peers: Vec<_> =
            config.peers.iter().filter(|p| !self.cluster.peers.iter().any(|s| s.config == **p)).cloned().collect();
        for peer in &new_peers {
            let addr = SocketAddr::new(peer.underlay_ip, peer.vxlan_port);
            match self.dataplane.add_vtep(addr, peer.vnis.clone()) {
                Some(vtep) => {
                    let peer = StaticPeer { config: peer.clone(), vtep };
                    let kind = peer.kind();
                    self.dataplane.update_switch(|s| s.set_vtep_kind(vtep, kind));
                    report.added.push(format!("peer {}", peer.config.underlay_ip));
                    self.cluster.peers.push(peer);
                }
                None => report.errors.push(format!("peer {}: its VTEP is known already", peer.underlay_ip)),
            }
        }

        // Networks added.
        for net in config.networks.iter().filter(|n| !old_networks.iter().any(|o| o.name == n.name)) {
            match self.check_new_network(net) {
                Ok(()) => {
                    self.add_network(net.clone(), Origin::Config);
                    report.added.push(format!("network {}", net.name));
                }
                Err(e) => report.errors.push(format!("network {}: {e}", net.name)),
            }
        }

        // Routes added.
        for route in config.routes.iter().filter(|r| !old_routes.contains(r)) {
            if self.layer3.routes.contains_key(route) {
                continue;
            }
            self.layer3.routes.insert(route.clone(), Origin::Config);
            report.added.push(format!("route {} {}", route.networks[0], route.networks[1]));
        }
        self.commit();
        self.sync_container_routes(&[]);

        // Ports added.
        let new_ports: Vec<PortConfig> =
            config.ports.iter().filter(|p| !self.config_ports.contains(p)).cloned().collect();
        self.config_ports = config.ports.clone();
        for port in new_ports {
            let name = port.display_name().unwrap_or_default();
            match self.connect(&raw_from_port(&port), Origin::Config, ClaimMode::Now) {
                Ok(e) => report.added.push(format!("port {} on {}", e.name, e.network)),
                Err(e) => report.errors.push(format!("[[port]] {name} on {}: {e}", port.network)),
            }
        }
        // Services and policies: defined anew where changed, removed for
        // the cluster where gone.
        let (mut added, mut removed) = self.apply_config_services(config.services.clone());
        let (more_added, more_removed) = self.apply_config_policies(config.policies.clone());
        added.extend(more_added);
        removed.extend(more_removed);
        report.added.extend(added);
        report.removed.extend(removed);
        self.commit();
        for line in report
            .added
            .iter()
            .map(|a| format!("added {a}"))
            .chain(report.removed.iter().map(|r| format!("removed {r}")))
        {
            tracing::info!("reload: {line}");
        }
        for line in report.needs_restart.iter().chain(&report.errors) {
            tracing::warn!("reload: {line}");
        }
        Ok(report)
    }

    /// What a reload does not apply: sections read only at start.
    fn note_restart_only(&self, config: &Config, path: &Path, report: &mut ReloadReport) {
        if config.host != self.host {
            report.needs_restart.push(format!("[host] in {} changed", path.display()));
        }
        let started = &self.started_with;
        for (section, changed) in [
            ("[gossip]", config.gossip != started.gossip),
            ("[docker]", config.docker != started.docker),
            ("[metrics]", config.metrics != started.metrics),
        ] {
            if changed {
                report.needs_restart.push(format!("{section} changed"));
            }
        }
    }
}
