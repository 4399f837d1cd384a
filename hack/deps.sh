#!/usr/bin/env bash
# deps.sh: installs the system packages skiff's build and tests need, on
# Debian 12 as root. Idempotent: it runs apt only when something is missing.
set -euo pipefail
packages=(ca-certificates curl iproute2 procps make util-linux hostname containerd runc containernetworking-plugins iptables busybox-static)
# mkfs.ext4 makes the etcd members' encrypted volumes (internal/cryptvol).
packages+=(e2fsprogs)
# The console's browser tests (test/e2e, chromedp) drive Debian's Chromium
# headless; fonts-liberation gives its pages real glyphs.
packages+=(chromium fonts-liberation)
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
# Nodes run Debian's containerd 2.x: bookworm's 1.6.20 (and trixie's 1.7)
# cannot mount image volumes (KEP-4639, a [Conformance] test since 1.35;
# containerd >= 2.1 can). It comes from Debian forky (testing) through a
# private apt configuration (the machine's sources are left alone); its
# Depends (runc, libc6 >= 2.34) are bookworm's. forky's runc needs glibc 2.38,
# so runc stays bookworm's. docs/conformance.md has the evidence.
containerd_min=2.1
have=$(dpkg-query -W -f='${Version}' containerd 2>/dev/null || :)
if ! dpkg --compare-versions "${have:-0}" ge "$containerd_min~"; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  echo "deps.sh: fetching Debian forky's containerd (>= $containerd_min; this machine has ${have:-none})"
  source "$(dirname "$0")/apt-private.sh"
  apt_private "$work" "deb http://deb.debian.org/debian forky main"
  (cd "$work" && apt-get "${apt[@]}" -qq download containerd)
  deb=$(ls "$work"/containerd_*.deb)
  v=$(dpkg-deb -f "$deb" Version)
  dpkg --compare-versions "$v" ge "$containerd_min~" && dpkg --compare-versions "$v" lt 3~ || {
    echo "deps.sh: forky's containerd is $v, not 2.x >= $containerd_min" >&2
    exit 1
  }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb"
  containerd --version
fi
command -v go >/dev/null 2>&1 || { echo "deps.sh: Go is required (see README)" >&2; exit 1; }
# The e2e tests use the machine's kubectl; without one they use the bundle's
# own (the same upstream kubectl), so nothing to install here.
