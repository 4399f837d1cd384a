#!/usr/bin/env bash
# deps.sh: installs the system packages skiff's build and tests need, on
# Debian 12 as root. Idempotent: it runs apt only when something is missing.
set -euo pipefail
packages=(ca-certificates curl iproute2 procps make util-linux containerd runc containernetworking-plugins iptables busybox-static)
command -v aws >/dev/null 2>&1 || packages+=(awscli)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
fi
command -v go >/dev/null 2>&1 || { echo "deps.sh: Go is required (see README)" >&2; exit 1; }
# The e2e tests use the machine's kubectl; without one they use the bundle's
# own (the same upstream kubectl), so nothing to install here.
