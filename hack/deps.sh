#!/usr/bin/env bash
# deps.sh: installs the system packages skiff's build and tests need, on
# Debian 12 as root. Idempotent: it runs apt only when something is missing.
set -euo pipefail
packages=(ca-certificates curl iproute2 procps make util-linux containerd runc containernetworking-plugins iptables busybox-static)
# The conformance test images (test/conformance) copy programs from these:
# dig/nslookup, nc, socat, iperf, bash and nginx, as upstream's images carry
# them; gcc, libc6-dev and bzip2 build their busybox (hack/busybox.sh).
packages+=(bind9-dnsutils netcat-openbsd socat iperf bash nginx-light gcc libc6-dev bzip2)
command -v aws >/dev/null 2>&1 || packages+=(awscli)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # nginx-light is there for its binary only: its service must not start
  # on this machine (port 80). Masking the unit first makes the package's
  # postinst skip starting it.
  if [[ " ${missing[*]} " == *" nginx-light "* ]] && [ -d /run/systemd/system ]; then
    systemctl mask --quiet nginx.service
  fi
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
fi
command -v go >/dev/null 2>&1 || { echo "deps.sh: Go is required (see README)" >&2; exit 1; }
# The e2e tests use the machine's kubectl; without one they use the bundle's
# own (the same upstream kubectl), so nothing to install here.
