#!/usr/bin/env bash
# conformance-build.sh DIST_DIR OUT_ROOT: builds, from one Kubernetes release
# module (dist/kubernetes-X.Y), what running upstream's conformance suite
# against a skiff cluster needs, into OUT_ROOT/vX.Y.Z/conformance/:
#   e2e.test          upstream's test binary: `go test -c k8s.io/kubernetes/test/e2e`
#   ginkgo            the ginkgo CLI at the version the release pins (parallel runs)
#   kubectl           a link to the bundle's kube (kubectl of the same release, as
#                     upstream runs its kubectl tests)
#   agnhost, nnp, sample-apiserver
#                     the programs of upstream's test images (test/images/…), static,
#                     which test/conformance packs into images pushed through ECR
# The module's conformance_test.go (build tag "conformance") and its `tool`
# lines keep all of that in go.mod/go.sum; nothing here downloads anything
# but Go modules.
set -euo pipefail
dist=$1 out_root=$2
kv=$(awk '$1=="k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$dist/go.mod")
[ -n "$kv" ] || { echo "conformance-build.sh: $dist/go.mod lacks k8s.io/kubernetes" >&2; exit 1; }
major=${kv#v}; major=${major%%.*}
minor=${kv#v*.}; minor=${minor%%.*}
mkdir -p "$out_root"; out=$(cd "$out_root" && pwd)/$kv/conformance
mkdir -p "$out"
# The same version stamp as the bundle (bundle.sh): e2e.test reports it and
# compares it with the server's.
ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $p.gitVersion=$kv -X $p.gitMajor=$major -X $p.gitMinor=$minor"
  ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done
cd "$dist"
echo "building $out/e2e.test (Kubernetes $kv)"
CGO_ENABLED=0 go test -c -trimpath -ldflags "$ldflags" -o "$out/e2e.test.tmp" k8s.io/kubernetes/test/e2e
mv "$out/e2e.test.tmp" "$out/e2e.test"
for tool in github.com/onsi/ginkgo/v2/ginkgo k8s.io/kubernetes/test/images/agnhost k8s.io/kubernetes/test/images/nonewprivs k8s.io/sample-apiserver; do
  name=${tool##*/}
  [ "$name" = nonewprivs ] && name=nnp
  echo "building $out/$name"
  CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/$name.tmp" "$tool"
  mv "$out/$name.tmp" "$out/$name"
done
ln -sfn ../kube "$out/kubectl"
