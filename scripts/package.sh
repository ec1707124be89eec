#!/usr/bin/env bash
# Builds the Debian package: target/debian/switchd_VERSION_ARCH.deb, with
# dpkg-deb (part of dpkg: nothing to install). It holds
#   /usr/bin/switchd, /usr/bin/switchctl      the daemon and its CLI
#   /usr/lib/cni/switchd-cni                  the CNI plugin, where Debian's CNI
#                                             plugins are (podman looks there)
#   /lib/systemd/system/switchd.service       the unit (Type=notify, watchdog)
#   /etc/switchd/host.toml                    an example config (a conffile)
#   /usr/share/switchd/grafana/switchd.json   the Grafana dashboard
#   /usr/share/doc/switchd/README.md
# Release binaries are built unless SWITCHD_BIN_DIR names a directory with
# them; OUT_DIR overrides where the package goes, DEB_COMPRESSION its
# compression (default xz; the suite uses none). Installing does not
# start or enable the service (`systemctl enable --now switchd` does).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "${SWITCHD_BIN_DIR:-}" ]; then
  (cd "$ROOT" && cargo build --release --bins -q)
  SWITCHD_BIN_DIR="$ROOT/target/release"
fi
OUT_DIR=${OUT_DIR:-$ROOT/target/debian}
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -1)
ARCH=$(dpkg --print-architecture)
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT

install -D -m 0755 "$SWITCHD_BIN_DIR/switchd" "$STAGE/usr/bin/switchd"
install -D -m 0755 "$SWITCHD_BIN_DIR/switchctl" "$STAGE/usr/bin/switchctl"
install -D -m 0755 "$SWITCHD_BIN_DIR/switchd-cni" "$STAGE/usr/lib/cni/switchd-cni"
install -D -m 0644 "$ROOT/contrib/systemd/switchd.service" "$STAGE/lib/systemd/system/switchd.service"
install -D -m 0644 "$ROOT/examples/host.toml" "$STAGE/etc/switchd/host.toml"
install -D -m 0644 "$ROOT/contrib/grafana/switchd.json" "$STAGE/usr/share/switchd/grafana/switchd.json"
install -D -m 0644 "$ROOT/README.md" "$STAGE/usr/share/doc/switchd/README.md"

mkdir -p "$STAGE/DEBIAN"
cat > "$STAGE/DEBIAN/control" <<CONTROL
Package: switchd
Version: $VERSION
Architecture: $ARCH
Maintainer: switchd developers <switchd@localhost>
Depends: iproute2
Recommends: nftables
Section: net
Priority: optional
Installed-Size: $(du -sk "$STAGE" | cut -f1)
Description: userspace virtual switch and overlay router for containers
 switchd owns the TAP devices that are the containers' eth0, switches
 and routes their frames in userspace, keeps networks isolated (a VXLAN
 VNI each, optionally encrypted), and serves what Docker users expect:
 IPAM, DHCP, DNS, a gateway. Hosts find each other by authenticated
 gossip. Includes switchctl, the switchd-cni plugin and a systemd unit.
CONTROL
echo "/etc/switchd/host.toml" > "$STAGE/DEBIAN/conffiles"
# Only systemd is told: nothing is started or enabled.
for script in postinst postrm; do
  cat > "$STAGE/DEBIAN/$script" <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ -z "${DPKG_ROOT:-}" ]; then
  systemctl daemon-reload || true
fi
SCRIPT
  chmod 0755 "$STAGE/DEBIAN/$script"
done

mkdir -p "$OUT_DIR"
DEB="$OUT_DIR/switchd_${VERSION}_${ARCH}.deb"
dpkg-deb --root-owner-group "-Z${DEB_COMPRESSION:-xz}" --build "$STAGE" "$DEB" >/dev/null
echo "$DEB"
