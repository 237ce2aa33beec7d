#!/usr/bin/env bash
# Install one bureau host from a network directory made by
#   bureau init-network --dir NET --nodes N --hosts h1,...,hN --install-dir /etc/bureau/net --data-dir /var/lib/bureau
# Run as root on each host, from a checkout of this repository (docs/runbook.md):
#   deploy/install.sh NET bureau-<i> [--broker]      # --broker: this host also runs mosquitto
#   deploy/install.sh --print-layout                  # the paths it makes, one a line
# Only this node's own key and certificate are copied (and the broker's with --broker); the CA's
# key and the operator key never leave the machine init-network ran on.
set -euo pipefail

# the install layout: deploy/systemd/*.service name these paths (tests/unit/test_deploy_units.py)
PREFIX=/opt/bureau
BIN=$PREFIX/bin/bureau
ETC=/etc/bureau
NET=$ETC/net
NODE_ENV=$ETC/bureau.env
SYNC_ENV=$ETC/broker-sync.env
DATA=/var/lib/bureau
UNITS=/etc/systemd/system

if [[ "${1:-}" == "--print-layout" ]]; then
    printf '%s\n' "$BIN" "$NODE_ENV" "$SYNC_ENV" "$NET" "$DATA" "$NET/broker/access" "$NET/ca/ca.crt" \
        "/run/mosquitto/bureau.pid" "/usr/sbin/mosquitto"
    exit 0
fi
[[ $# -ge 2 ]] || { echo "usage: $0 NET bureau-<i> [--broker] | --print-layout" >&2; exit 2; }
src=$1 node=$2 broker=${3:-}
[[ -f "$src/genesis.json" && -f "$src/$node/bureau.env" ]] || { echo "$src is not a network directory with $node" >&2; exit 2; }
grep -qx "BUREAU_KEY_FILE=$NET/$node/node.key" "$src/$node/bureau.env" \
    || { echo "$src/$node/bureau.env does not name $NET: run init-network with --install-dir $NET" >&2; exit 2; }
here=$(cd "$(dirname "$0")/.." && pwd)

id bureau >/dev/null 2>&1 || useradd --system --home-dir "$DATA" --no-create-home --shell /usr/sbin/nologin bureau
[[ -x "$BIN" ]] || python3 -m venv "$PREFIX"
"$PREFIX/bin/pip" install --quiet "$here"

install -d -m 0755 "$ETC" "$NET" "$NET/ca"
install -d -m 0750 -o root -g bureau "$NET/$node"
install -m 0644 "$src/genesis.json" "$NET/genesis.json"
install -m 0644 "$src/ca/ca.crt" "$NET/ca/ca.crt"
install -m 0644 "$src/$node/api.crt" "$NET/$node/api.crt"
install -m 0600 -o bureau -g bureau "$src/$node/node.key" "$src/$node/api.key" "$NET/$node/"
install -m 0600 -o bureau -g bureau "$src/$node/bureau.env" "$NODE_ENV"
install -m 0644 "$here/deploy/systemd/bureau.service" "$UNITS/bureau.service"

if [[ "$broker" == "--broker" ]]; then
    command -v mosquitto >/dev/null || apt-get install -y mosquitto
    install -d -m 0750 -o mosquitto -g mosquitto "$NET/broker" "$NET/broker/access"
    install -m 0600 -o mosquitto -g mosquitto "$src/broker/server.crt" "$src/broker/server.key" \
        "$src/broker/charger-secret" "$src/broker/mosquitto.conf" "$NET/broker/"
    install -m 0600 -o mosquitto -g mosquitto "$src/broker/access/"* "$NET/broker/access/"
    # the node broker-sync follows: this host's own API
    api=$(sed -n 's/^BUREAU_HTTP_HOST=//p' "$NODE_ENV"):$(sed -n 's/^BUREAU_HTTP_PORT=//p' "$NODE_ENV")
    echo "SYNC_NODE=https://$api" > "$SYNC_ENV"
    install -d "$UNITS/mosquitto.service.d"
    install -m 0644 "$here/deploy/systemd/mosquitto.service.d/bureau.conf" "$UNITS/mosquitto.service.d/bureau.conf"
    install -m 0644 "$here/deploy/systemd/bureau-broker-sync.service" "$UNITS/bureau-broker-sync.service"
fi
systemctl daemon-reload
echo "installed $node; start it with: systemctl enable --now ${broker:+mosquitto bureau-broker-sync }bureau"
