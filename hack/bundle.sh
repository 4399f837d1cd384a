#!/usr/bin/env bash
# bundle.sh DIST_DIR OUT_ROOT: builds the multi-call "kube" binary of one
# Kubernetes release module (dist/kubernetes-X.Y) into OUT_ROOT/vX.Y.Z/kube and
# writes OUT_ROOT/vX.Y.Z/manifest.json, which skiff reads to know the versions
# it supports. The versions come from the module's go.mod: nothing to keep in sync.
set -euo pipefail
dist=$1 out_root=$2
kv=$(awk '$1=="k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$dist/go.mod")
ev=$(awk '$1=="go.etcd.io/etcd/server/v3" && $2 ~ /^v/ {print $2; exit}' "$dist/go.mod")
[ -n "$kv" ] && [ -n "$ev" ] || { echo "bundle.sh: $dist/go.mod lacks k8s.io/kubernetes or etcd server" >&2; exit 1; }
major=${kv#v}; major=${major%%.*}
minor=${kv#v*.}; minor=${minor%%.*}
mkdir -p "$out_root"; out=$(cd "$out_root" && pwd)/$kv
mkdir -p "$out"
# Fixed build metadata keeps the link reproducible, so an unchanged bundle is a cache hit.
pkgs="k8s.io/component-base/version k8s.io/client-go/pkg/version"
ldflags="-s -w"
for p in $pkgs; do
  ldflags+=" -X $p.gitVersion=$kv -X $p.gitMajor=$major -X $p.gitMinor=$minor"
  ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
echo "building $out/kube (Kubernetes $kv, etcd $ev)"
(cd "$dist" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/kube.tmp" .)
mv "$out/kube.tmp" "$out/kube"
# kube-proxy alone as well: it runs in a DaemonSet's image on every node,
# which should not carry the whole multi-call binary.
echo "building $out/kube-proxy"
(cd "$dist" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/kube-proxy.tmp" k8s.io/kubernetes/cmd/kube-proxy)
mv "$out/kube-proxy.tmp" "$out/kube-proxy"
sum=$(sha256sum "$out/kube" | cut -d' ' -f1)
cat > "$out/manifest.json.tmp" <<JSON
{
  "kubernetesVersion": "$kv",
  "etcdVersion": "$ev",
  "binary": "kube",
  "proxyBinary": "kube-proxy",
  "sha256": "$sum",
  "components": ["apiserver", "controller-manager", "scheduler", "kubelet", "proxy", "kubectl", "etcd"]
}
JSON
mv "$out/manifest.json.tmp" "$out/manifest.json"
