#!/usr/bin/env bash
# demo.sh: a tour of skiff. Starts `skiff serve` on a scratch data dir,
# creates an HA cluster with the stock aws CLI, uses it with kubectl, kills an
# apiserver to show the self-healing, adds nodes, runs a Service across them,
# and deletes everything again.
set -euo pipefail
cd "$(dirname "$0")/.."
data=$(mktemp -d /tmp/skiff-demo.XXXX)
listen=127.0.0.1:7443
bin/skiff serve --data-dir "$data" --listen "$listen" 2>"$data/serve.log" &
serve=$!
trap 'bin/skiff delete cluster demo >/dev/null 2>&1 || true; kill $serve; wait $serve || true; rm -rf "$data"' EXIT
for _ in $(seq 100); do [ -f "$data/serve.json" ] && break; sleep 0.1; done
eval "$(bin/skiff env --data-dir "$data")"   # the default account's admin credentials
export AWS_PAGER=
kubectl() { if command -v kubectl >/dev/null; then command kubectl "$@"; else "$(ls _output/bundles/*/kube | tail -1)" kubectl "$@"; fi; }

echo "== aws sts get-caller-identity"
aws sts get-caller-identity
role=$(aws iam create-role --role-name demo-cluster --query Role.Arn --output text \
  --assume-role-policy-document '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"eks.amazonaws.com"},"Action":"sts:AssumeRole"}]}')
echo "== the default VPC's subnets (one per zone)"
aws ec2 describe-subnets --filters Name=default-for-az,Values=true --query 'Subnets[].[SubnetId,AvailabilityZone,CidrBlock]' --output text
subnets=$(aws ec2 describe-subnets --filters Name=default-for-az,Values=true --query 'Subnets[].SubnetId' --output text | tr '\t' ',')
echo "== aws eks create-cluster"
time aws eks create-cluster --name demo --role-arn "$role" --resources-vpc-config "subnetIds=$subnets" --query cluster.status
aws eks wait cluster-active --name demo
aws eks describe-cluster --name demo --query 'cluster.[name,version,status,endpoint]' --output text
bin/skiff write-kubeconfig demo --kubeconfig "$data/demo.kubeconfig"
echo "== kubectl get ns"
kubectl --kubeconfig "$data/demo.kubeconfig" get ns
echo "== kill -9 one apiserver; the endpoint keeps answering and skiff replaces it"
pkill -9 -f "kube apiserver .*--advertise-address=127.1.1.21" || true
kubectl --kubeconfig "$data/demo.kubeconfig" get --raw /readyz; echo
sleep 3
bin/skiff events demo
echo "== three nodes, one per zone; CoreDNS and kube-proxy come with the first node group"
bin/skiff create nodegroup ng --cluster demo --nodes 3
k="kubectl --kubeconfig $data/demo.kubeconfig"
$k -n kube-system rollout status deployment/coredns --timeout=120s
echo "== the demo web app (from skiff's registry) behind a Service, asked by name from a pod on another node"
$k create deployment web --image=skiff/web:1.0 --replicas=3 --port=8080
$k expose deployment web --port=80 --target-port=8080
$k rollout status deployment/web --timeout=120s
$k get pods -o wide
$k run box --image=busybox --restart=Never -- sleep 3600
$k wait --for=condition=Ready pod/box --timeout=90s
for _ in 1 2 3; do $k exec box -- wget -qO- http://web.default.svc.cluster.local; done
$k logs deployment/web | head -3
echo "== delete (node groups are drained and deleted first)"
bin/skiff delete cluster demo
