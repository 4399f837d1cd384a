package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	ekstypes "github.com/aws/aws-sdk-go-v2/service/eks/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// TestUpgradeNoErrors upgrades a 1.36 control plane to 1.37 through the
// EKS API while a client writes and reads ConfigMaps through the endpoint
// as fast as it can and holds a watch open (resumed from its last
// resourceVersion when the apiserver serving it goes): no request may
// fail but the few an etcd member's stop may still cut (below), no write
// may stall for etcd's request timeout, and the watch must see every
// write, in order, with no gap (issue 17). Every instance is replaced on
// the way: etcd members, apiservers, controller-managers, schedulers.
func TestUpgradeNoErrors(t *testing.T) {
	s, dataDir := serveTest(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cli := eks.NewFromConfig(sdkConfig(s))
	cs := sdkClient(t, s, createActive(t, s, cli, "up", "1.36"))

	var mu sync.Mutex
	var failures []string
	var t0 time.Time
	var created []string // in order
	var lastOK time.Time
	var longest time.Duration // without a successful write
	var longestEnd time.Time
	fail := func(what string, err error) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf("%s +%.1fs: %v", what, time.Since(t0).Seconds(), err))
		mu.Unlock()
	}
	// The watch: from the state before the first write on, resumed where
	// it stood whenever it ends.
	var list *corev1.ConfigMapList
	if err := eventually(10*time.Second, func() (err error) { // access entries reach RBAC a moment after ACTIVE
		list, err = cs.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	seen := []string{}
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		rv := list.ResourceVersion
		for ctx.Err() == nil {
			w, err := cs.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
			if err != nil {
				if ctx.Err() == nil {
					fail("watch", err)
					time.Sleep(100 * time.Millisecond)
				}
				continue
			}
			for ev := range w.ResultChan() {
				switch ev.Type {
				case watch.Error:
					if ctx.Err() == nil { // not the test's own end
						fail("watch event", fmt.Errorf("%v", ev.Object))
					}
				case watch.Added:
					cm := ev.Object.(*corev1.ConfigMap)
					rv = cm.ResourceVersion
					if strings.HasPrefix(cm.Name, "up-") { // not kube-root-ca.crt
						mu.Lock()
						seen = append(seen, cm.Name)
						mu.Unlock()
					}
				case watch.Bookmark:
					if o, err := resourceVersionOf(ev.Object); err == nil {
						rv = o
					}
				default:
					if cm, ok := ev.Object.(*corev1.ConfigMap); ok {
						rv = cm.ResourceVersion
					}
				}
			}
			w.Stop()
		}
	}()
	mu.Lock()
	t0 = time.Now()
	lastOK = t0
	mu.Unlock()
	// The writer stops first; the watch then has until its deadline to
	// deliver the last writes (an event may trail its write's response).
	wctx, stopWriting := context.WithCancel(ctx)
	defer stopWriting()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the client: write a ConfigMap, read it back
		defer wg.Done()
		for i := 0; wctx.Err() == nil; i++ {
			name := fmt.Sprintf("up-%d", i)
			if _, err := cs.CoreV1().ConfigMaps("default").Create(wctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
				if wctx.Err() == nil {
					fail("create "+name, err)
				}
				continue
			}
			mu.Lock()
			created = append(created, name)
			if gap := time.Since(lastOK); gap > longest {
				longest, longestEnd = gap, time.Now()
			}
			lastOK = time.Now()
			mu.Unlock()
			if _, err := cs.CoreV1().ConfigMaps("default").Get(wctx, name, metav1.GetOptions{}); err != nil && wctx.Err() == nil {
				fail("get "+name, err)
			}
		}
	}()

	time.Sleep(2 * time.Second)
	up, err := cli.UpdateClusterVersion(ctx, &eks.UpdateClusterVersionInput{Name: aws.String("up"), Version: aws.String("1.37")})
	if err != nil {
		t.Fatal(err)
	}
	if err := eventually(5*time.Minute, func() error {
		out, err := cli.DescribeUpdate(ctx, &eks.DescribeUpdateInput{Name: aws.String("up"), UpdateId: up.Update.Id})
		if err != nil {
			return err
		}
		switch out.Update.Status {
		case ekstypes.UpdateStatusSuccessful:
			return nil
		case ekstypes.UpdateStatusFailed, ekstypes.UpdateStatusCancelled:
			t.Fatalf("update %s: %+v", *up.Update.Id, out.Update.Errors)
		}
		return fmt.Errorf("update %s", out.Update.Status)
	}); err != nil {
		t.Fatal(err)
	}
	took := time.Since(t0) - 2*time.Second
	time.Sleep(2 * time.Second)
	v, err := cs.Discovery().ServerVersion()
	if err != nil || v.Minor != "37" {
		t.Errorf("server version after the upgrade: %v %v", v, err)
	}
	stopWriting()
	wg.Wait()
	caughtUp := time.Now().Add(10 * time.Second)
	for time.Now().Before(caughtUp) {
		mu.Lock()
		n, want := len(seen), len(created)
		mu.Unlock()
		if n >= want {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-watched

	mu.Lock()
	defer mu.Unlock()
	written := len(created)
	t.Logf("upgrade 1.36 → 1.37 in %.1fs; %d ConfigMaps written and read back, %d failures, longest stretch without a write %v (until %s)",
		took.Seconds(), written, len(failures), longest.Round(time.Millisecond), longestEnd.UTC().Format("15:04:05.000"))
	// Apiservers drain before they stop (no request of theirs fails, and
	// no client waits on a Retry-After); etcd members are replaced leader
	// last, and the leadership moves once, to a member on the new
	// version, while the endpoint holds what clients send and etcd has
	// nothing in flight (controlplane/etcdroll.go). Nothing may fail.
	for _, f := range failures {
		t.Errorf("failed: %s", f)
	}
	// A stuck write (one forwarded to a leader that dropped it) would
	// stall writes for etcd's request timeout (7 s); the hold itself is
	// ~0.3 s.
	if longest > 3*time.Second {
		t.Errorf("no write succeeded for %v", longest)
	}
	data, _ := os.ReadFile(filepath.Join(dataDir, "serve.log"))
	if n := strings.Count(string(data), "etcd leadership moved"); n != 1 {
		t.Errorf("the etcd leadership moved %d times during the roll, want once (the leader replaced last)", n)
	}
	// Every write, in order, once, on the watch.
	for i, name := range created {
		if i >= len(seen) || seen[i] != name {
			got := "nothing"
			if i < len(seen) {
				got = seen[i]
			}
			t.Errorf("the watch's event %d is %s, want %s (%d events for %d writes)", i, got, name, len(seen), written)
			break
		}
	}
}

// resourceVersionOf is an object's resourceVersion.
func resourceVersionOf(o any) (string, error) {
	m, ok := o.(metav1.Object)
	if !ok {
		return "", fmt.Errorf("%T has no metadata", o)
	}
	return m.GetResourceVersion(), nil
}

// upgradeApp is a Deployment of 3 that a PodDisruptionBudget keeps at 2
// ready at least; its pods go at once when told to (SIGTERM).
const upgradeApp = `apiVersion: apps/v1
kind: Deployment
metadata: {name: app}
spec:
  replicas: 3
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: app
        image: busybox
        command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
        readinessProbe: {exec: {command: ["true"]}, periodSeconds: 1}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: app}
spec:
  minAvailable: 2
  selector: {matchLabels: {app: app}}
`

// TestNodegroupUpgrade is issue 17's node group acceptance with the stock
// aws CLI and kubectl: a 1.36 cluster with a 3-node group and a
// Deployment of 3 under a PodDisruptionBudget (minAvailable 2). The
// control plane moves to 1.37 and the nodes stay, as on EKS; a node group
// update that the budget blocks fails with PodEvictionFailure and leaves
// the group as it was; then update-nodegroup-version replaces every node
// (surge first) with the Deployment never below 2 ready; a rollback is
// refused while the nodes are newer, then the node group and the cluster
// roll back to 1.36 with every object still there.
func TestNodegroupUpgrade(t *testing.T) {
	s, dataDir := serveTest(t, "--node-drain-timeout", "15s")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mustAWS(t, s, s.createArgs(t, "nu", "--kubernetes-version", "1.36")...)
	waitAWSStatus(t, s, "nu", "ACTIVE")
	kc := filepath.Join(dataDir, "nu.kubeconfig")
	if out, err := awsCLI(t, s, "eks", "update-kubeconfig", "--name", "nu", "--kubeconfig", kc); err != nil {
		t.Fatal(err, out)
	}
	role := nodeRole(t, s, "nu-nodes")
	mustAWS(t, s, append([]string{"eks", "create-nodegroup", "--cluster-name", "nu", "--nodegroup-name", "ng", "--node-role", role,
		"--scaling-config", "minSize=1,maxSize=6,desiredSize=3", "--update-config", "maxUnavailable=1", "--subnets"}, s.defaultSubnets(t)...)...)
	waitNodegroup(t, s, "nu", "ng", "ACTIVE", 3*time.Minute)
	readyNodes(t, s, kc, 3)
	app := filepath.Join(dataDir, "app.yaml")
	os.WriteFile(app, []byte(upgradeApp), 0o600)
	if out, err := kubectlEnv(t, s.env, kc, "apply", "-f", app); err != nil {
		t.Fatal(err, out)
	}
	if out, err := kubectlEnv(t, s.env, kc, "rollout", "status", "deployment/app", "--timeout=120s"); err != nil {
		t.Fatal(err, out)
	}
	versions := func(want string) {
		t.Helper()
		for _, n := range readyNodes(t, s, kc, 3) {
			if !strings.HasPrefix(n.Version, "v"+want+".") {
				t.Errorf("node %s runs kubelet %s, want %s", n.Name, n.Version, want)
			}
		}
		if ng := waitNodegroup(t, s, "nu", "ng", "ACTIVE", time.Minute); ng["version"] != want || ng["releaseVersion"] != want+".0-skiff" {
			t.Errorf("describe-nodegroup: version %v, release %v; want %s", ng["version"], ng["releaseVersion"], want)
		}
	}
	// update runs an update to its end and returns its final state.
	update := func(args ...string) map[string]any {
		t.Helper()
		id := mustAWS(t, s, args...)["update"].(map[string]any)["id"].(string)
		describe := []string{"eks", "describe-update", "--name", "nu", "--update-id", id}
		if slices.Contains(args, "--nodegroup-name") {
			describe = append(describe, "--nodegroup-name", "ng")
		}
		if i := slices.Index(args, "--addon-name"); i >= 0 {
			describe = append(describe, "--addon-name", args[i+1])
		}
		var u map[string]any
		if err := eventually(5*time.Minute, func() error {
			u = mustAWS(t, s, describe...)["update"].(map[string]any)
			if u["status"] == "InProgress" {
				return fmt.Errorf("update %s is InProgress", id)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return u
	}

	// The client: the Deployment's ready replicas, read through the
	// endpoint all along (a token of the Go SDK's, as aws eks get-token).
	d := mustAWS(t, s, "eks", "describe-cluster", "--name", "nu")["cluster"].(map[string]any)
	cs := sdkClient(t, s, &ekstypes.Cluster{Name: aws.String("nu"), Endpoint: aws.String(d["endpoint"].(string)),
		CertificateAuthority: &ekstypes.Certificate{Data: aws.String(d["certificateAuthority"].(map[string]any)["data"].(string))}})
	var mu sync.Mutex
	var failures []string
	minReady := 3
	watching := false
	go func() {
		for ctx.Err() == nil {
			dep, err := cs.AppsV1().Deployments("default").Get(ctx, "app", metav1.GetOptions{})
			mu.Lock()
			switch {
			case err != nil && ctx.Err() == nil:
				failures = append(failures, err.Error())
			case err == nil && watching:
				minReady = min(minReady, int(dep.Status.ReadyReplicas))
			}
			mu.Unlock()
			time.Sleep(200 * time.Millisecond)
		}
	}()

	// The control plane moves (with skiff's CLI: the insights first, then
	// the instances as they are replaced); the nodes stay at 1.36, as on EKS.
	if out, err := runSkiff(t, s, "upgrade", "cluster", "nu"); err != nil || !strings.Contains(out, "upgrade insights for Kubernetes 1.37:") ||
		!strings.Contains(out, "Kubelet version skew") || !strings.Contains(out, "cluster nu is at Kubernetes 1.37") {
		t.Fatalf("skiff upgrade cluster nu: %v\n%s", err, out)
	}
	versions("1.36")

	// The upgrade insights say so, and name the client of a deprecated
	// API (v1 Endpoints) from the apiservers' audit logs.
	if out, err := kubectlEnv(t, s.env, kc, "get", "endpoints", "-n", "default"); err != nil {
		t.Fatal(err, out)
	}
	insight := func(name string) map[string]any {
		t.Helper()
		mustAWS(t, s, "eks", "start-insights-refresh", "--cluster-name", "nu")
		if err := eventually(30*time.Second, func() error {
			if st := mustAWS(t, s, "eks", "describe-insights-refresh", "--cluster-name", "nu")["status"]; st != "COMPLETED" {
				return fmt.Errorf("insights refresh %v", st)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for _, in := range mustAWS(t, s, "eks", "list-insights", "--cluster-name", "nu")["insights"].([]any) {
			if in := in.(map[string]any); in["name"] == name {
				return mustAWS(t, s, "eks", "describe-insight", "--cluster-name", "nu", "--id", in["id"].(string))["insight"].(map[string]any)
			}
		}
		t.Fatalf("no insight %q", name)
		return nil
	}
	status := func(in map[string]any) any { return in["insightStatus"].(map[string]any)["status"] }
	if in := insight("Kubelet version skew"); status(in) != "WARNING" || len(in["resources"].([]any)) != 3 {
		t.Errorf("kubelet skew with 1.36 nodes under a 1.37 control plane: %v", in)
	}
	dep := insight("Deprecated APIs in use")
	if status(dep) != "WARNING" || !strings.Contains(fmt.Sprint(dep["categorySpecificSummary"]), "kubectl/") || !strings.Contains(fmt.Sprint(dep["categorySpecificSummary"]), "/api/v1/endpoints") {
		t.Errorf("deprecated APIs in use: %v", dep)
	}

	// A budget that allows no eviction: the update fails after the drain
	// timeout, and the group is what it was.
	if out, err := kubectlEnv(t, s.env, kc, "patch", "pdb", "app", "--type=merge", "-p", `{"spec":{"minAvailable":3}}`); err != nil {
		t.Fatal(err, out)
	}
	u := update("eks", "update-nodegroup-version", "--cluster-name", "nu", "--nodegroup-name", "ng")
	errs, _ := u["errors"].([]any)
	if u["status"] != "Failed" || len(errs) != 1 || errs[0].(map[string]any)["errorCode"] != "PodEvictionFailure" {
		t.Errorf("an update the budget blocks: %v", u)
	}
	if err := eventually(2*time.Minute, func() error {
		nodes := kubeNodes(t, s, kc)
		out, _ := kubectlEnv(t, s.env, kc, "get", "nodes", "-o", "jsonpath={.items[*].spec.unschedulable}")
		if len(nodes) != 3 || strings.Contains(out, "true") {
			return fmt.Errorf("%d nodes, unschedulable: %q", len(nodes), out)
		}
		return nil
	}); err != nil {
		t.Error("after the failed update:", err)
	}
	versions("1.36")
	if out, err := kubectlEnv(t, s.env, kc, "patch", "pdb", "app", "--type=merge", "-p", `{"spec":{"minAvailable":2}}`); err != nil {
		t.Fatal(err, out)
	}

	// The node group update, surge first: never below 2 ready.
	mu.Lock()
	for _, f := range failures {
		t.Errorf("a read failed during the control-plane upgrade or the blocked node group update: %s", f)
	}
	watching, failures = true, nil
	mu.Unlock()
	t0 := time.Now()
	if u := update("eks", "update-nodegroup-version", "--cluster-name", "nu", "--nodegroup-name", "ng"); u["status"] != "Successful" || u["type"] != "VersionUpdate" {
		t.Fatalf("update-nodegroup-version: %v", u)
	}
	took := time.Since(t0)
	versions("1.37")
	mu.Lock()
	t.Logf("node group 1.36 → 1.37 in %.1fs; the Deployment's ready replicas never below %d; %d failed reads", took.Seconds(), minReady, len(failures))
	if minReady < 2 {
		t.Errorf("the Deployment went down to %d ready replicas during the node group update", minReady)
	}
	for _, f := range failures {
		t.Errorf("a read failed during the node group update: %s", f)
	}
	watching = false
	mu.Unlock()
	if in := insight("Kubelet version skew"); status(in) != "PASSING" {
		t.Errorf("kubelet skew once the nodes run 1.37: %v", in)
	}
	if ids := mustAWS(t, s, "eks", "list-updates", "--name", "nu", "--nodegroup-name", "ng")["updateIds"].([]any); len(ids) != 2 {
		t.Errorf("list-updates of the node group = %v, want its 2 updates", ids)
	}

	// kube-proxy: the self-managed one stays at 1.36, which the insight
	// reports; taken over as a managed add-on it moves to 1.37 (the
	// default), and goes back to 1.36 (offered on 1.37: within the skew)
	// before the rollback, which refuses it while it is newer.
	if in := insight("kube-proxy version skew"); status(in) != "WARNING" {
		t.Errorf("self-managed kube-proxy 1.36 under a 1.37 control plane: %v", in)
	}
	var kp []string
	for _, v := range mustAWS(t, s, "eks", "describe-addon-versions", "--addon-name", "kube-proxy", "--kubernetes-version", "1.37")["addons"].([]any)[0].(map[string]any)["addonVersions"].([]any) {
		kp = append(kp, v.(map[string]any)["addonVersion"].(string))
	}
	if len(kp) != 2 || !strings.HasPrefix(kp[0], "v1.37.") || !strings.HasPrefix(kp[1], "v1.36.") {
		t.Fatalf("kube-proxy versions on 1.37: %v, want 1.37's and 1.36's", kp)
	}
	kubeProxy := func(want string) {
		t.Helper()
		if _, err := awsCLI(t, s, "eks", "wait", "addon-active", "--cluster-name", "nu", "--addon-name", "kube-proxy"); err != nil {
			t.Fatalf("wait addon-active kube-proxy: %v", err)
		}
		out, err := kubectlEnv(t, s.env, kc, "-n", "kube-system", "rollout", "status", "daemonset/kube-proxy", "--timeout=60s")
		if err != nil {
			t.Fatalf("kube-proxy rollout: %v %s", err, out)
		}
		img, err := kubectlEnv(t, s.env, kc, "-n", "kube-system", "get", "daemonset/kube-proxy", "-o", "jsonpath={.spec.template.spec.containers[0].image}")
		if err != nil || !strings.Contains(img, ":"+want) {
			t.Errorf("kube-proxy image %q (%v), want %s", img, err, want)
		}
	}
	mu.Lock()
	failures = nil
	mu.Unlock()
	mustAWS(t, s, "eks", "create-addon", "--cluster-name", "nu", "--addon-name", "kube-proxy", "--addon-version", kp[0], "--resolve-conflicts", "OVERWRITE")
	kubeProxy(strings.TrimSuffix(kp[0], "-eksbuild.1"))
	if in := insight("kube-proxy version skew"); status(in) != "PASSING" {
		t.Errorf("kube-proxy 1.37 under a 1.37 control plane: %v", in)
	}
	out, err := awsCLI(t, s, "eks", "update-cluster-version", "--name", "nu", "--kubernetes-version", "1.36")
	wantAWSError(t, out, err, "InvalidRequestException")
	if !strings.Contains(out, "kube-proxy add-on runs") {
		t.Errorf("rollback under a 1.37 kube-proxy: %s", out)
	}
	if u := update("eks", "update-addon", "--cluster-name", "nu", "--addon-name", "kube-proxy", "--addon-version", kp[1]); u["status"] != "Successful" {
		t.Fatalf("kube-proxy back to 1.36: %v", u)
	}
	kubeProxy(strings.TrimSuffix(kp[1], "-eksbuild.1"))
	mu.Lock()
	for _, f := range failures {
		t.Errorf("a read failed while kube-proxy moved: %s", f)
	}
	mu.Unlock()

	// Rollback: refused while the nodes are newer than 1.36, then the
	// node group and the control plane go back.
	out, err = awsCLI(t, s, "eks", "update-cluster-version", "--name", "nu", "--kubernetes-version", "1.36")
	wantAWSError(t, out, err, "InvalidRequestException")
	if out, err := runSkiff(t, s, "upgrade", "nodegroup", "ng", "--cluster", "nu", "--version", "1.36"); err != nil || !strings.Contains(out, "node group ng is at Kubernetes 1.36") {
		t.Fatalf("node group rollback with skiff upgrade nodegroup: %v\n%s", err, out)
	}
	versions("1.36")
	mu.Lock()
	failures = nil
	mu.Unlock()
	t0 = time.Now()
	if u := update("eks", "update-cluster-version", "--name", "nu", "--kubernetes-version", "1.36"); u["status"] != "Successful" {
		t.Fatalf("rollback: %v", u)
	}
	t.Logf("control plane rollback 1.37 → 1.36 in %.1fs", time.Since(t0).Seconds())
	if v, err := cs.Discovery().ServerVersion(); err != nil || v.Minor != "36" {
		t.Errorf("server version after the rollback: %v %v", v, err)
	}
	mu.Lock()
	for _, f := range failures {
		t.Errorf("a read failed during the rollback: %s", f)
	}
	mu.Unlock()
	if out, err := kubectlEnv(t, s.env, kc, "get", "deployment/app", "pdb/app", "-o", "name"); err != nil || !strings.Contains(out, "deployment.apps/app") || !strings.Contains(out, "poddisruptionbudget.policy/app") {
		t.Errorf("objects after the rollback: %v %s", err, out)
	}
	if out, err := kubectlEnv(t, s.env, kc, "rollout", "status", "deployment/app", "--timeout=60s"); err != nil {
		t.Errorf("the Deployment after the rollback: %v %s", err, out)
	}
	// Rolled back once: no further back.
	out, err = awsCLI(t, s, "eks", "update-cluster-version", "--name", "nu", "--kubernetes-version", "1.35")
	wantAWSError(t, out, err, "InvalidParameterException")
}

// brokenBundles is a bundles directory with 1.36 as built and a 1.37
// whose apiserver cannot start (its binary exits at once; etcd, the
// controller-manager and the scheduler are the real 1.37's).
func brokenBundles(t *testing.T) string {
	t.Helper()
	real := bundlesDir(t)
	dir := t.TempDir()
	for _, e := range []string{"v1.36.3", "v1.37.2"} {
		if _, err := os.Stat(filepath.Join(real, e, "manifest.json")); err != nil {
			t.Fatalf("bundle %s: %v", e, err)
		}
	}
	if err := os.Symlink(filepath.Join(real, "v1.36.3"), filepath.Join(dir, "v1.36.3")); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "v1.37.2")
	os.MkdirAll(broken, 0o755)
	manifest, err := os.ReadFile(filepath.Join(real, "v1.37.2", "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(broken, "manifest.json"), manifest, 0o644)
	os.Symlink(filepath.Join(real, "v1.37.2", "kube-proxy"), filepath.Join(broken, "kube-proxy"))
	script := fmt.Sprintf("#!/bin/sh\nif [ \"$1\" = apiserver ]; then echo 'injected by TestUpgradeFails: this apiserver cannot start' >&2; exit 1; fi\nexec %s \"$@\"\n",
		filepath.Join(real, "v1.37.2", "kube"))
	if err := os.WriteFile(filepath.Join(broken, "kube"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestUpgradeFails: an upgrade whose new apiserver cannot start (injected:
// its binary exits) fails with the reason, and the control plane goes back
// to 1.36 and stays ACTIVE, while a client reads and writes through the
// endpoint throughout with no failure. etcd stays on 3.7: every member
// had moved before the apiservers' turn.
func TestUpgradeFails(t *testing.T) {
	s, dataDir := serveTest(t, "--bundles", brokenBundles(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mustAWS(t, s, s.createArgs(t, "uf", "--kubernetes-version", "1.36")...)
	waitAWSStatus(t, s, "uf", "ACTIVE")
	d := mustAWS(t, s, "eks", "describe-cluster", "--name", "uf")["cluster"].(map[string]any)
	cs := sdkClient(t, s, &ekstypes.Cluster{Name: aws.String("uf"), Endpoint: aws.String(d["endpoint"].(string)),
		CertificateAuthority: &ekstypes.Certificate{Data: aws.String(d["certificateAuthority"].(map[string]any)["data"].(string))}})
	if err := eventually(10*time.Second, func() error { // access entries reach RBAC a moment after ACTIVE
		_, err := cs.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var failures []string
	writes := 0
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		writeLoop(ctx, cs, "uf", func(err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failures = append(failures, err.Error())
			} else {
				writes++
			}
		})
	}()

	// Every instance up first: the upgrade then replaces the etcd members
	// before it reaches an apiserver (a standby still starting would be
	// replaced at once, before them).
	if err := eventually(time.Minute, func() error {
		out, err := runSkiff(t, s, "describe", "cluster", "uf")
		if n := healthyInstances(out); err != nil || n != 15 {
			return fmt.Errorf("%d of 15 instances healthy: %v", n, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	id := mustAWS(t, s, "eks", "update-cluster-version", "--name", "uf", "--kubernetes-version", "1.37")["update"].(map[string]any)["id"].(string)
	var u map[string]any
	if err := eventually(5*time.Minute, func() error {
		u = mustAWS(t, s, "eks", "describe-update", "--name", "uf", "--update-id", id)["update"].(map[string]any)
		if u["status"] == "InProgress" {
			return fmt.Errorf("update %s is InProgress", id)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if errs, _ := u["errors"].([]any); u["status"] != "Failed" || len(errs) != 1 || !strings.Contains(fmt.Sprint(errs[0]), "apiserver") {
		t.Fatalf("the upgrade with a broken apiserver: %v", u)
	}
	t.Logf("failed after %.1fs: %v", time.Since(t0).Seconds(), u["errors"])
	// Back on 1.36, every instance healthy, the cluster ACTIVE throughout.
	if err := eventually(3*time.Minute, func() error {
		c := mustAWS(t, s, "eks", "describe-cluster", "--name", "uf")["cluster"].(map[string]any)
		if c["status"] != "ACTIVE" || c["version"] != "1.36" {
			return fmt.Errorf("cluster %v at %v", c["status"], c["version"])
		}
		v, err := cs.Discovery().ServerVersion()
		if err != nil || v.Minor != "36" {
			return fmt.Errorf("server version %v %v", v, err)
		}
		out, err := runSkiff(t, s, "describe", "cluster", "uf")
		if err != nil {
			return err
		}
		if n := healthyInstances(out); n != 15 {
			return fmt.Errorf("%d of 15 instances healthy:\n%s", n, out)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	if out, err := runSkiff(t, s, "events", "uf"); err == nil {
		t.Logf("events:\n%s", out)
	}
	data, _ := os.ReadFile(filepath.Join(dataDir, "serve.log"))
	if !strings.Contains(string(data), "going back to 1.36") {
		t.Errorf("no event of the way back in the serve log")
	}
	// etcd moved to 3.7 before the apiservers' turn, and stays there.
	replaced := 0
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, "replacing instance with a changed spec") && strings.Contains(line, "/etcd-") {
			replaced++
		}
	}
	if replaced != 3 {
		t.Errorf("%d etcd members replaced, want the 3 of them once (to 3.7, not back)", replaced)
	}
	cancel()
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d writes read back during the failed upgrade and the way back, %d failures", writes, len(failures))
	for _, f := range failures {
		t.Errorf("failed: %s", f)
	}
}

// runSkiff runs the skiff CLI against s, as its admin.
func runSkiff(t testing.TB, s *server, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(skiffBin, append(args, "--endpoint", s.endpoint)...)
	cmd.Env = append(os.Environ(), s.env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// healthyInstances counts the rows of `skiff describe cluster`'s instance
// table whose HEALTHY column is true.
func healthyInstances(describe string) int {
	n, in := 0, false
	for _, line := range strings.Split(describe, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 0 && f[0] == "ZONE":
			in = true
		case in && len(f) == 0:
			in = false
		case in && len(f) >= 5 && f[4] == "true":
			n++
		}
	}
	return n
}

// writeLoop creates a ConfigMap through cs and reads it back, over and
// over until ctx ends, and tells each round's outcome to done.
func writeLoop(ctx context.Context, cs kubernetes.Interface, prefix string, done func(err error)) {
	for i := 0; ctx.Err() == nil; i++ {
		name := fmt.Sprintf("%s-%d", prefix, i)
		_, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		if err == nil {
			_, err = cs.CoreV1().ConfigMaps("default").Get(ctx, name, metav1.GetOptions{})
		}
		if ctx.Err() != nil {
			return
		}
		done(err)
		time.Sleep(20 * time.Millisecond)
	}
}

// createActive creates cluster name at version through the EKS API and
// returns it once ACTIVE.
func createActive(tb testing.TB, s *server, cli *eks.Client, name, version string) *ekstypes.Cluster {
	tb.Helper()
	ctx := context.Background()
	if _, err := cli.CreateCluster(ctx, &eks.CreateClusterInput{Name: aws.String(name), Version: aws.String(version), RoleArn: aws.String(s.clusterRole(tb)),
		ResourcesVpcConfig: &ekstypes.VpcConfigRequest{SubnetIds: s.defaultSubnets(tb)}}); err != nil {
		tb.Fatal(err)
	}
	var c *ekstypes.Cluster
	if err := eventually(3*time.Minute, func() error {
		out, err := cli.DescribeCluster(ctx, &eks.DescribeClusterInput{Name: aws.String(name)})
		if err == nil && out.Cluster.Status != ekstypes.ClusterStatusActive {
			err = fmt.Errorf("status %s", out.Cluster.Status)
		}
		if err == nil {
			c = out.Cluster
		}
		return err
	}); err != nil {
		tb.Fatal(err)
	}
	return c
}
