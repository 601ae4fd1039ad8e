#!/usr/bin/env bash
# Install Falaj from an offline bundle (built with `falaj bundle --out DIR`; this script is
# DIR/install.sh). Needs no network.
#
#   sudo DIR/install.sh --expect-key FINGERPRINT                  # the service, in /opt/falaj
#   DIR/install.sh --expect-key FINGERPRINT --venv PATH           # a virtual environment only
#
# Before anything is installed it checks, and stops at the first failure:
#   1. the bundled public key's fingerprint equals --expect-key (compare the fingerprint
#      `falaj bundle` printed, out of band: phone, paper, a second channel);
#   2. MANIFEST.sig is a valid Ed25519 signature over MANIFEST.json by that key
#      (openssl pkeyutl, OpenSSL 3; or the host Python's own `cryptography`);
#   3. every file's SHA-256 matches MANIFEST.json, and no file is missing or extra.
# Then: pip install --no-index --require-hashes -r requirements.lock (pip's own config and
# PIP_* variables ignored). As root, without --venv, it also installs the venv in
# PREFIX/venv and runs `falaj install-service` (the user, folders, master key and the
# hardened unit, enabled and started).
#
# Options: --prefix DIR (default /opt/falaj), --python PATH (default python3),
#   --allow CIDR (a LAN range allowed to reach the service; repeatable; an upgrade without
#   it keeps the ranges given before), --local-only (remove them), --no-start,
#   --no-compile (skip byte-compiling: installs in a third of the time, first imports slower),
#   --root DIR (install-service writes its files under DIR and starts nothing: for tests).
# Exit status: 0 installed, 1 a check failed (nothing installed), 2 bad usage.
set -euo pipefail
umask 022

BUNDLE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PREFIX=/opt/falaj
PYTHON=python3
VENV=""
EXPECT=""
SERVICE_ARGS=()
PIP_ARGS=()

usage() { sed -n '2,24p' "$0"; }
die() { echo "install.sh: $2" >&2; exit "$1"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --expect-key) EXPECT="${2:?--expect-key needs a fingerprint}"; shift 2 ;;
        --venv) VENV="${2:?--venv needs a path}"; shift 2 ;;
        --prefix) PREFIX="${2:?--prefix needs a folder}"; shift 2 ;;
        --python) PYTHON="${2:?--python needs a path}"; shift 2 ;;
        --allow) SERVICE_ARGS+=(--allow "${2:?--allow needs a CIDR range}"); shift 2 ;;
        --no-start) SERVICE_ARGS+=(--no-start); shift ;;
        --local-only) SERVICE_ARGS+=(--local-only); shift ;;
        --no-compile) PIP_ARGS+=(--no-compile); shift ;;
        --root) SERVICE_ARGS+=(--root "${2:?--root needs a folder}"); shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) die 2 "unknown option $1 (see --help)" ;;
    esac
done

[ -f "$BUNDLE/MANIFEST.json" ] || die 2 "$BUNDLE is not a bundle (no MANIFEST.json): build one with \`falaj bundle --out DIR\` and run DIR/install.sh"
command -v "$PYTHON" >/dev/null || die 2 "$PYTHON not found: install Python 3.11 (and its venv module) or give --python PATH"
if [ -z "$VENV" ] && [ "$(id -u)" -ne 0 ]; then
    die 2 "run as root to install the service, or give --venv PATH to install for this user only"
fi

# 1. The key: its fingerprint, computed with the standard library only.
FINGERPRINT="$("$PYTHON" -I - "$BUNDLE/signing-key.pub" <<'PY'
import base64, hashlib, sys
text = open(sys.argv[1]).read()
der = base64.b64decode("".join(l for l in text.splitlines() if l and not l.startswith("-----")))
if len(der) != 44 or not der.startswith(bytes.fromhex("302a300506032b6570032100")):
    sys.exit("signing-key.pub: not an Ed25519 public key")
print(hashlib.sha256(der[12:]).hexdigest())
PY
)" || die 1 "cannot read the bundle's signing key"
if [ -z "$EXPECT" ]; then
    echo "install.sh: the bundle is signed by key $FINGERPRINT" >&2
    die 2 "compare that with the fingerprint \`falaj bundle\` printed, out of band, and pass it with --expect-key"
fi
EXPECT_NORMAL="$(printf '%s' "${EXPECT#sha256:}" | tr 'A-F' 'a-f' | tr -cd '0-9a-f')"
[ "$EXPECT_NORMAL" = "$FINGERPRINT" ] || die 1 "the bundle is signed by key $FINGERPRINT, not the expected $EXPECT: do not install it"

# 2. The signature over MANIFEST.json.
verify_signature() {
    if command -v openssl >/dev/null && openssl version | grep -q '^OpenSSL [3-9]'; then
        openssl pkeyutl -verify -pubin -inkey "$BUNDLE/signing-key.pub" -rawin \
            -in "$BUNDLE/MANIFEST.json" -sigfile "$BUNDLE/MANIFEST.sig" >/dev/null 2>&1
        return
    fi
    # the host's own cryptography package (never the bundle's: it is not checked yet)
    if "$PYTHON" -I -c 'import cryptography' 2>/dev/null; then
        "$PYTHON" -I - "$BUNDLE" <<'PY'
import sys
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import load_pem_public_key
d = sys.argv[1]
key = load_pem_public_key(open(f"{d}/signing-key.pub", "rb").read())
try:
    key.verify(open(f"{d}/MANIFEST.sig", "rb").read(), open(f"{d}/MANIFEST.json", "rb").read())
except InvalidSignature:
    sys.exit(1)
PY
        return
    fi
    die 1 "cannot check the signature: needs OpenSSL 3 (openssl) or the host Python's cryptography package"
}
verify_signature || die 1 "MANIFEST.sig: the signature over MANIFEST.json does not verify: the bundle was changed after signing; nothing installed"
echo "install.sh: signature by $FINGERPRINT verified"

# 3. Every file against the manifest, and the Python it was built for.
"$PYTHON" -I - "$BUNDLE" <<'PY' || die 1 "the bundle's files do not match its signed manifest; nothing installed"
import hashlib, json, os, sys
root = sys.argv[1]
manifest = json.load(open(os.path.join(root, "MANIFEST.json")))
files = manifest["files"]
want = tuple(int(x) for x in manifest["python"].split("."))
if sys.version_info[:2] != want:
    sys.exit(f"install.sh: the bundle is built for Python {manifest['python']}, this is "
             f"{sys.version_info.major}.{sys.version_info.minor} (give --python PATH)")
present = set()
for folder, _dirs, names in os.walk(root):
    present.update(os.path.relpath(os.path.join(folder, n), root) for n in names)
bad = [f"{rel}: not in the manifest"
       for rel in sorted(present - set(files) - {"MANIFEST.json", "MANIFEST.sig", "signing-key.pub"})]
for rel, digest in sorted(files.items()):
    if os.path.isabs(rel) or ".." in rel.split("/"):
        bad.append(f"{rel}: not a path inside the bundle")
        continue
    h = hashlib.sha256()
    try:
        with open(os.path.join(root, rel), "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except FileNotFoundError:
        bad.append(f"{rel}: missing")
        continue
    if h.hexdigest() != digest:
        bad.append(f"{rel}: SHA-256 does not match the manifest")
for line in bad:
    print(f"install.sh: {line}", file=sys.stderr)
sys.exit(1 if bad else 0)
PY
echo "install.sh: every file matches the manifest"

# 4. Install: pip from the wheelhouse only, every wheel checked against the lock.
for var in $(compgen -e | grep '^PIP_' || true); do unset "$var"; done
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

install_venv() {  # PATH: a new venv there, removed again if pip fails
    local target="$1"
    if [ -e "$target" ] && [ -n "$(ls -A "$target" 2>/dev/null)" ]; then
        die 2 "$target exists and is not empty"
    fi
    "$PYTHON" -m venv "$target" || { rm -rf "$target"; die 2 "$PYTHON -m venv failed (Debian: apt-get install python3-venv)"; }
    if ! "$target/bin/python" -m pip install --quiet --no-index "${PIP_ARGS[@]}" \
            --find-links "$BUNDLE/wheelhouse" --require-hashes -r "$BUNDLE/requirements.lock"; then
        rm -rf "$target"
        die 1 "pip could not install from the bundle; nothing installed"
    fi
    "$target/bin/falaj" --version >/dev/null || { rm -rf "$target"; die 1 "the installed falaj does not start"; }
}

if [ -n "$VENV" ]; then
    install_venv "$VENV"
    echo "install.sh: installed $("$VENV/bin/falaj" --version) into $VENV; run $VENV/bin/falaj --help"
    exit 0
fi

mkdir -p "$PREFIX"
if [ -e "$PREFIX/venv" ]; then  # an upgrade: the old venv comes back if the new one fails
    rm -rf "$PREFIX/venv.old"
    mv "$PREFIX/venv" "$PREFIX/venv.old"
fi
if ! (install_venv "$PREFIX/venv"); then
    if [ -e "$PREFIX/venv.old" ]; then mv "$PREFIX/venv.old" "$PREFIX/venv"; fi
    exit 1
fi
install -m 0644 "$BUNDLE/README.md" "$PREFIX/README.md"
"$PREFIX/venv/bin/falaj" install-service --source "$BUNDLE/systemd" --prefix "$PREFIX" "${SERVICE_ARGS[@]}"
echo "install.sh: Falaj is installed: systemctl status falaj; dashboard on http://127.0.0.1:8080"
