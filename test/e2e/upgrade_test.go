package e2e

import (
	"context"
	"fmt"
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
	s, _ := serveTest(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cli := eks.NewFromConfig(sdkConfig(s))
	if _, err := cli.CreateCluster(ctx, &eks.CreateClusterInput{Name: aws.String("up"), Version: aws.String("1.36"), RoleArn: aws.String(s.clusterRole(t)),
		ResourcesVpcConfig: &ekstypes.VpcConfigRequest{SubnetIds: s.defaultSubnets(t)}}); err != nil {
		t.Fatal(err)
	}
	var c *ekstypes.Cluster
	if err := eventually(3*time.Minute, func() error {
		out, err := cli.DescribeCluster(ctx, &eks.DescribeClusterInput{Name: aws.String("up")})
		if err == nil && out.Cluster.Status != ekstypes.ClusterStatusActive {
			err = fmt.Errorf("status %s", out.Cluster.Status)
		}
		if err == nil {
			c = out.Cluster
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	cs := sdkClient(t, s, c)

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
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the client: write a ConfigMap, read it back
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			name := fmt.Sprintf("up-%d", i)
			if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
				if ctx.Err() == nil {
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
			if _, err := cs.CoreV1().ConfigMaps("default").Get(ctx, name, metav1.GetOptions{}); err != nil && ctx.Err() == nil {
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
	cancel()
	wg.Wait()
	<-watched

	mu.Lock()
	defer mu.Unlock()
	written := len(created)
	t.Logf("upgrade 1.36 → 1.37 in %.1fs; %d ConfigMaps written and read back, %d failures, longest stretch without a write %v (until %s)",
		took.Seconds(), written, len(failures), longest.Round(time.Millisecond), longestEnd.UTC().Format("15:04:05.000"))
	// Apiservers drain before they stop (no request of theirs fails, and
	// no client waits on a Retry-After), etcd members hand their
	// leadership off and stop gracefully. What still fails, sometimes, is
	// a write in flight on an etcd member as it stops (its gRPC graceful
	// stop cut by the stop grace, or raft dropping a proposal while the
	// leadership moves; the apiserver does not retry either), at most one
	// per member replaced. Issue 17 wants zero: docs/architecture.md
	// ("Updates") says what is left. Anything else fails the test.
	etcdSide := 0
	for _, f := range failures {
		if strings.Contains(f, "graceful_stop") || strings.Contains(f, "raft proposal dropped") || strings.Contains(f, "leader changed") {
			etcdSide++
			t.Logf("failed on an etcd member's replacement: %s", f)
			continue
		}
		t.Errorf("failed: %s", f)
	}
	if etcdSide > 3 {
		t.Errorf("%d writes failed on etcd members' replacements: want at most one per member", etcdSide)
	}
	// A leader that stopped without handing off would stall writes for
	// etcd's request timeout (7 s).
	if longest > 6*time.Second {
		t.Errorf("no write succeeded for %v", longest)
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
