package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	ekstypes "github.com/aws/aws-sdk-go-v2/service/eks/types"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"skiff.dev/skiff/internal/controlplane"
	"skiff.dev/skiff/internal/runtime/process"
)

// bareFloor starts a bare control plane (one etcd and one apiserver from
// the latest bundle, nothing else) to /readyz three times and returns the
// median: the floor the benchmarks compare skiff's paths with, measured in
// the same run on the same machine.
func bareFloor(b *testing.B) time.Duration {
	b.Helper()
	var runs []time.Duration
	for range 3 {
		runs = append(runs, bareOnce(b))
	}
	b.Logf("bare floor runs: %v", runs)
	return median(runs)
}

func bareOnce(b *testing.B) time.Duration {
	b.Helper()
	ctx := context.Background()
	dir := b.TempDir()
	rt := process.New(dir, filepath.Join(dir, "logs"), testLogger(b, dir))
	start := time.Now()
	bare, err := controlplane.StartBare(ctx, rt, catalog(b).Latest(), filepath.Join(dir, "bare"), 240)
	if err != nil {
		b.Fatal(err)
	}
	defer bare.Stop(ctx)
	if err := bare.WaitReady(ctx); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
}

// createActiveSDK creates cluster name through the EKS API with the SDK (the
// account's default subnets, as the stock CLI would pass them; opts change
// the request) and polls
// DescribeCluster every 50 ms until ACTIVE; it returns the time from the
// CreateCluster call to the first ACTIVE answer, and the cluster.
func createActiveSDK(b *testing.B, s *server, name string, opts ...func(*eks.CreateClusterInput)) (time.Duration, *ekstypes.Cluster) {
	b.Helper()
	ctx := context.Background()
	role, subnets := s.clusterRole(b), s.defaultSubnets(b)
	cli := eks.NewFromConfig(sdkConfig(s))
	in := &eks.CreateClusterInput{Name: aws.String(name), RoleArn: aws.String(role),
		ResourcesVpcConfig: &ekstypes.VpcConfigRequest{SubnetIds: subnets}}
	for _, o := range opts {
		o(in)
	}
	start := time.Now()
	if _, err := cli.CreateCluster(ctx, in); err != nil {
		b.Fatal(err)
	}
	for time.Since(start) < 3*time.Minute {
		out, err := cli.DescribeCluster(ctx, &eks.DescribeClusterInput{Name: aws.String(name)})
		if err != nil {
			b.Fatal(err)
		}
		switch out.Cluster.Status {
		case ekstypes.ClusterStatusActive:
			return time.Since(start), out.Cluster
		case ekstypes.ClusterStatusFailed:
			b.Fatalf("cluster %s FAILED", name)
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.Fatalf("cluster %s not ACTIVE after 3 minutes", name)
	return 0, nil
}

// sdkClient is a client-go client of an EKS cluster, authenticated as
// `aws eks get-token` would (a presigned STS token of the server's user).
func sdkClient(b testing.TB, s *server, c *ekstypes.Cluster) *kubernetes.Clientset {
	return sdkClientQPS(b, s, c, 100)
}

// sdkClientQPS is sdkClient with its own rate limit (QPS; burst twice
// that; a negative QPS: none).
func sdkClientQPS(b testing.TB, s *server, c *ekstypes.Cluster, qps float32) *kubernetes.Clientset {
	b.Helper()
	ca, err := base64.StdEncoding.DecodeString(aws.ToString(c.CertificateAuthority.Data))
	if err != nil {
		b.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: aws.ToString(c.Endpoint), BearerToken: presignToken(b, s, aws.ToString(c.Name), time.Now()),
		TLSClientConfig: rest.TLSClientConfig{CAData: ca}, QPS: qps, Burst: int(2 * qps)})
	if err != nil {
		b.Fatal(err)
	}
	return cs
}

// BenchmarkTimeToApp measures what a user waits for, in the spirit of
// minikube's time-to-k8s: from CreateCluster (the EKS API, with subnets)
// to ACTIVE, to a first node group of 3 nodes all Ready (CreateNodegroup
// once ACTIVE, as eksctl does), to the demo web app (a Deployment of 3 and
// its Service, applied once the nodes are Ready) answering by DNS name from
// a pod on a node of its own. Each figure is printed with its ratio to the
// bare floor of the same run. Issue 21's targets: ACTIVE ≤ 1.5× the floor,
// nodes Ready ≤ 5 s after CreateNodegroup, the app ≤ 15 s after
// CreateCluster.
func BenchmarkTimeToApp(b *testing.B) {
	for range b.N {
		floor := bareFloor(b)
		s, dataDir := serveTest(b)
		nodeRoleARN := nodeRole(b, s, "tta-nodes")
		ctx := context.Background()

		s.clusterRole(b) // made before the clock starts
		s.defaultSubnets(b)
		start := time.Now()
		active, c := createActiveSDK(b, s, "tta")
		cli := eks.NewFromConfig(sdkConfig(s))
		ngStart := time.Now()
		if _, err := cli.CreateNodegroup(ctx, &eks.CreateNodegroupInput{ClusterName: aws.String("tta"), NodegroupName: aws.String("ng"),
			NodeRole: aws.String(nodeRoleARN), Subnets: s.defaultSubnets(b),
			ScalingConfig: &ekstypes.NodegroupScalingConfig{MinSize: aws.Int32(3), MaxSize: aws.Int32(3), DesiredSize: aws.Int32(3)}}); err != nil {
			b.Fatal(err)
		}
		cs := sdkClient(b, s, c)
		watchCtx, stopWatch := context.WithCancel(ctx)
		defer stopWatch()
		timeline := watchPods(watchCtx, cs)
		var nodes []string
		for {
			list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			nodes = nodes[:0]
			if err == nil {
				for _, n := range list.Items {
					for _, cond := range n.Status.Conditions {
						if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
							nodes = append(nodes, n.Name)
						}
					}
				}
			}
			if len(nodes) == 3 {
				break
			}
			if time.Since(ngStart) > 3*time.Minute {
				b.Fatalf("nodes Ready after 3 minutes: %v (%v)", nodes, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		nodesReady := time.Since(ngStart)
		ready := time.Since(start)

		// The app and, on the first node, a pod that asks for it by name
		// until it answers.
		appStart := time.Now()
		dec := yaml.NewYAMLOrJSONDecoder(strings.NewReader(strings.ReplaceAll(webManifest, "IMAGE", "skiff/web:1.0")), 4096)
		var dep appsv1.Deployment
		var svc corev1.Service
		if err := dec.Decode(&dep); err != nil {
			b.Fatal(err)
		}
		if err := dec.Decode(&svc); err != nil {
			b.Fatal(err)
		}
		if _, err := cs.AppsV1().Deployments("default").Create(ctx, &dep, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		if _, err := cs.CoreV1().Services("default").Create(ctx, &svc, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		probe := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probe"}, Spec: corev1.PodSpec{NodeName: nodes[0], RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "probe", Image: "busybox", Command: []string{"sh", "-c",
				"until timeout 1 wget -qO- http://web.default.svc.cluster.local | grep 'hello from'; do sleep 0.1; done"}}}}}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, probe, metav1.CreateOptions{}); err != nil {
			b.Fatal(err) // a default ServiceAccount is there from ACTIVE on
		}
		// The app answers when the probe prints the answer: its log says so
		// as it happens (the pod's phase follows a kubelet relist later).
		answered := make(chan struct{})
		go func() {
			for watchCtx.Err() == nil {
				stream, err := cs.CoreV1().Pods("default").GetLogs("probe", &corev1.PodLogOptions{Follow: true}).Stream(watchCtx)
				if err != nil { // not started yet
					time.Sleep(50 * time.Millisecond)
					continue
				}
				sc := bufio.NewScanner(stream)
				for sc.Scan() {
					if strings.Contains(sc.Text(), "hello from") {
						stream.Close()
						close(answered)
						return
					}
				}
				stream.Close()
				time.Sleep(50 * time.Millisecond)
			}
		}()
	wait:
		for {
			p, err := cs.CoreV1().Pods("default").Get(ctx, "probe", metav1.GetOptions{})
			if err == nil && p.Status.Phase == corev1.PodFailed {
				b.Fatalf("probe pod failed: %+v", p.Status)
			}
			if time.Since(appStart) > 2*time.Minute {
				if p != nil {
					b.Logf("probe pod: %s %+v", p.Status.Phase, p.Status.ContainerStatuses)
				}
				logs, _ := cs.CoreV1().Pods("default").GetLogs("probe", &corev1.PodLogOptions{}).DoRaw(ctx)
				all, _ := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
				for _, q := range all.Items {
					b.Logf("pod %s/%s on %s: %s", q.Namespace, q.Name, q.Spec.NodeName, q.Status.Phase)
				}
				b.Fatalf("the app did not answer in 2 minutes (%v); probe log: %s", err, tail(string(logs), 10))
			}
			select {
			case <-answered:
				break wait
			case <-time.After(50 * time.Millisecond):
			}
		}
		app := time.Since(appStart)
		total := time.Since(start)

		report(b, "the create path's trace:\n%s", skiffEvents(b, s, "tta", "Progress"))
		report(b, "pods as a client saw them, from the apply:\n%s", timeline(appStart))
		stopWatch()
		if evs, err := cs.CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: "reason=Pulled"}); err == nil {
			var pulls []string
			for _, ev := range evs.Items {
				pulls = append(pulls, ev.Source.Host+": "+ev.Message)
			}
			sort.Strings(pulls)
			report(b, "image pulls:\n%s", strings.Join(pulls, "\n"))
		}
		if keep := os.Getenv("SKIFF_E2E_KEEP_LOGS"); keep != "" { // the nodes' logs go with the cluster
			copyLogs(dataDir, filepath.Join(os.TempDir(), "skiff-e2e-bench", b.Name()))
		}
		// Deleted as eksctl does, through the API (the aws CLI's own start
		// would add seconds per poll): the node group, then the cluster.
		delStart := time.Now()
		if _, err := cli.DeleteNodegroup(ctx, &eks.DeleteNodegroupInput{ClusterName: aws.String("tta"), NodegroupName: aws.String("ng")}); err != nil {
			b.Fatal(err)
		}
		sdkWaitGone(b, func() error {
			_, err := cli.DescribeNodegroup(ctx, &eks.DescribeNodegroupInput{ClusterName: aws.String("tta"), NodegroupName: aws.String("ng")})
			return err
		})
		groupGone := time.Since(delStart)
		report(b, "the node group's deletion (%.2fs):\n%s", groupGone.Seconds(), skiffEvents(b, s, "tta", "Deleted"))
		if _, err := cli.DeleteCluster(ctx, &eks.DeleteClusterInput{Name: aws.String("tta")}); err != nil {
			b.Fatal(err)
		}
		sdkWaitGone(b, func() error {
			_, err := cli.DescribeCluster(ctx, &eks.DescribeClusterInput{Name: aws.String("tta")})
			return err
		})
		deleted := time.Since(delStart)
		report(b, "deletion: node group %.2fs, then the cluster %.2fs", groupGone.Seconds(), (deleted - groupGone).Seconds())
		if log, err := os.ReadFile(filepath.Join(dataDir, "serve.log")); err == nil {
			var removed []string
			for _, l := range strings.Split(string(log), "\n") {
				if strings.Contains(l, "node removed") {
					removed = append(removed, l)
				}
			}
			report(b, "nodes' removal:\n%s", strings.Join(removed, "\n"))
		}

		b.ReportMetric(floor.Seconds(), "bare-floor-s")
		b.ReportMetric(active.Seconds(), "active-s")
		b.ReportMetric(active.Seconds()/floor.Seconds(), "active/floor")
		b.ReportMetric(nodesReady.Seconds(), "nodes-ready-s")
		b.ReportMetric(ready.Seconds(), "create-to-nodes-s")
		b.ReportMetric(app.Seconds(), "app-s")
		b.ReportMetric(total.Seconds(), "time-to-app-s")
		b.ReportMetric(total.Seconds()/floor.Seconds(), "time-to-app/floor")
		b.ReportMetric(deleted.Seconds(), "delete-s")
		report(b, "bare floor %.2fs; ACTIVE %.2fs (%.2f×); nodes Ready %.2fs after CreateNodegroup; app answering %.2fs after apply; time to app %.2fs (%.2f×); delete with the node group %.2fs",
			floor.Seconds(), active.Seconds(), active.Seconds()/floor.Seconds(), nodesReady.Seconds(), app.Seconds(), total.Seconds(), total.Seconds()/floor.Seconds(), deleted.Seconds())
	}
}

// skiffEvents returns cluster name's events (`skiff events`) whose lines
// contain filter.
func skiffEvents(t testing.TB, s *server, name, filter string) string {
	cmd := exec.Command(skiffBin, "events", name)
	cmd.Env = append(os.Environ(), s.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("skiff events %s: %v: %s", name, err, out)
	}
	var keep []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, filter) {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}

// watchPods watches every pod of a cluster and keeps when a client saw
// each change of its node, phase or readiness; the function it returns
// lists them relative to a time (a profile of the app stage, with
// milliseconds where the API's own timestamps have seconds).
func watchPods(ctx context.Context, cs kubernetes.Interface) func(since time.Time) string {
	type change struct {
		at   time.Time
		what string
	}
	var mu sync.Mutex
	var changes []change
	last := map[string]string{}
	go func() {
		for ctx.Err() == nil {
			w, err := cs.CoreV1().Pods("").Watch(ctx, metav1.ListOptions{})
			if err != nil {
				time.Sleep(100 * time.Millisecond)
				continue
			}
			for ev := range w.ResultChan() {
				p, ok := ev.Object.(*corev1.Pod)
				if !ok {
					continue
				}
				ready := "not ready"
				for _, c := range p.Status.Conditions {
					if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
						ready = "ready"
					}
				}
				node := p.Spec.NodeName
				if node == "" {
					node = "unscheduled"
				}
				state := fmt.Sprintf("%s %s on %s", p.Status.Phase, ready, node)
				key := p.Namespace + "/" + p.Name
				mu.Lock()
				if last[key] != state {
					last[key] = state
					changes = append(changes, change{time.Now(), key + ": " + state})
				}
				mu.Unlock()
			}
		}
	}()
	return func(since time.Time) string {
		mu.Lock()
		defer mu.Unlock()
		var out strings.Builder
		for _, c := range changes {
			fmt.Fprintf(&out, "%+7.2fs %s\n", c.at.Sub(since).Seconds(), c.what)
		}
		return out.String()
	}
}

// sdkWaitGone polls describe until it answers ResourceNotFoundException.
func sdkWaitGone(b *testing.B, describe func() error) {
	b.Helper()
	for start := time.Now(); time.Since(start) < 3*time.Minute; time.Sleep(50 * time.Millisecond) {
		var nf *ekstypes.ResourceNotFoundException
		if err := describe(); errors.As(err, &nf) {
			return
		} else if err != nil {
			b.Fatal(err)
		}
	}
	b.Fatal("not gone after 3 minutes")
}
