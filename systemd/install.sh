#!/usr/bin/env bash
# Install Falaj as a systemd service.
#
#   sudo systemd/install.sh                      # from the package registry
#   sudo systemd/install.sh --wheelhouse DIR     # offline, from wheels built with
#                                                #   pip wheel --wheel-dir DIR .
# Installs into /opt/falaj/venv, creates the falaj user and /var/lib/falaj, generates a
# master key in /etc/falaj/master.key (0600, root) if there is none, and starts the unit.
set -euo pipefail

PREFIX=/opt/falaj
WHEELHOUSE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --wheelhouse) WHEELHOUSE="$2"; shift 2 ;;
        --prefix) PREFIX="$2"; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root" >&2; exit 2; }
SRC="$(cd "$(dirname "$0")/.." && pwd)"

python3 -m venv "$PREFIX/venv"
if [ -n "$WHEELHOUSE" ]; then
    "$PREFIX/venv/bin/pip" install --no-index --find-links "$WHEELHOUSE" falaj
else
    "$PREFIX/venv/bin/pip" install "$SRC"
fi
install -m 0644 "$SRC/README.md" "$PREFIX/README.md"

install -m 0644 "$SRC/systemd/falaj.sysusers" /usr/lib/sysusers.d/falaj.conf
install -m 0644 "$SRC/systemd/falaj.tmpfiles" /usr/lib/tmpfiles.d/falaj.conf
systemd-sysusers falaj.conf 2>/dev/null || systemd-sysusers
systemd-tmpfiles --create /usr/lib/tmpfiles.d/falaj.conf

if [ ! -e /etc/falaj/master.key ]; then
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > /etc/falaj/master.key)
    echo "generated /etc/falaj/master.key: back it up, the stores cannot be read without it"
fi
chmod 0600 /etc/falaj/master.key

install -m 0644 "$SRC/systemd/falaj.service" /etc/systemd/system/falaj.service
systemctl daemon-reload
systemctl enable --now falaj.service
echo "Falaj is running: systemctl status falaj; dashboard on http://127.0.0.1:8080"
