package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"skiff.dev/skiff/internal/controlplane"
	"skiff.dev/skiff/internal/endpoint"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/pki"
)

func adminClient(t testing.TB, kubeconfig string) *kubernetes.Clientset {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 10000, 10000
	cfg.Timeout = 10 * time.Second
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// waitHealthy waits until every instance of c is healthy and every
// apiserver is in the endpoint's pool.
func (e *engineEnv) waitHealthy(t testing.TB, c *model.Cluster, timeout time.Duration) {
	t.Helper()
	since := time.Now()
	deadline := since.Add(timeout)
	for {
		snap := e.engine.Snapshot(c)
		var sick []string
		for _, in := range snap.Instances {
			if !in.Healthy {
				sick = append(sick, fmt.Sprintf("%s(running=%v %s)", in.Name, in.Running, in.Error))
			}
		}
		backends := snap.Backends
		// The endpoint's replicas are linked: each would carry the
		// other's connections on.
		l := e.engine.Layout(c)
		for i := range controlplane.EndpointReplicas {
			if st, err := endpoint.Get(context.Background(), l.EndpointStatusAddr(i)); err != nil || !st.Linked {
				sick = append(sick, fmt.Sprintf("endpoint-%d(not linked: %v)", i, err))
			}
		}
		if snap.At.After(since) && len(snap.Instances) > 0 && len(sick) == 0 && len(backends) == c.APIServers {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster %s not healthy after %v: unhealthy %v, endpoint backends %v", c.Name, timeout, sick, backends)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (e *engineEnv) createActive(t testing.TB, name string) *model.Cluster {
	t.Helper()
	e.create(t, name)
	c := waitStatus(t, e.svc, name, model.StatusActive, 2*time.Minute)
	e.waitHealthy(t, c, time.Minute)
	return c
}

// instance returns the reconciler's view of one instance of c.
func (e *engineEnv) instance(c *model.Cluster, name string) controlplane.InstanceStatus {
	for _, in := range e.engine.Snapshot(c).Instances {
		if in.Name == name {
			return in
		}
	}
	return controlplane.InstanceStatus{}
}

// replacedAfter reports whether instance got a Replaced event after t0.
func (e *engineEnv) replacedAfter(c *model.Cluster, instance string, t0 time.Time) bool {
	evs, _ := e.store.Events(c.ID)
	for _, ev := range evs {
		if ev.Instance == instance && ev.Type == model.EventReplaced && ev.Time.After(t0) {
			return true
		}
	}
	return false
}

func TestHAControlPlane(t *testing.T) {
	e := newEngineEnv(t)
	c := e.createActive(t, "ha")
	kc := e.adminKubeconfig(c)
	cs := adminClient(t, kc)

	// Each apiserver is a host of its own: one identity lease each (the
	// name is a hash of the hostname; one shared name had them fight).
	if err := eventually(30*time.Second, func() error {
		leases, err := cs.CoordinationV1().Leases("kube-system").List(context.Background(),
			metav1.ListOptions{LabelSelector: "apiserver.kubernetes.io/identity=kube-apiserver"})
		if err != nil {
			return err
		}
		if len(leases.Items) != c.APIServers {
			return fmt.Errorf("%d apiserver identity leases for %d apiservers", len(leases.Items), c.APIServers)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}

	// endpoint replica killed: each replica holds a copy of the other's
	// connections and listening sockets, so a SIGKILL of either loses no
	// request, and a watch opened before goes on.
	t.Run("endpoint replica killed", func(t *testing.T) {
		e.waitHealthy(t, c, 90*time.Second)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		wcfg, err := clientcmd.BuildConfigFromFlags("", kc)
		if err != nil {
			t.Fatal(err)
		}
		wcs := kubernetes.NewForConfigOrDie(wcfg) // no client timeout: it would end the watch
		w, err := wcs.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{LabelSelector: "lb-test"})
		if err != nil {
			t.Fatal(err)
		}
		var ok, failed atomic.Int64
		var lastErr atomic.Value
		var wg sync.WaitGroup
		for g := range 4 { // clients with connections of their own
			gcs := adminClient(t, kc)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ctx.Err() == nil; i++ {
					name := fmt.Sprintf("lb-%d-%d", g, i)
					cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"lb-test": "1"}}}
					_, err := gcs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{})
					if err == nil {
						_, err = gcs.CoreV1().ConfigMaps("default").Get(ctx, name, metav1.GetOptions{})
					}
					if ctx.Err() != nil {
						return
					}
					if err != nil {
						failed.Add(1)
						lastErr.Store(err.Error())
						continue
					}
					ok.Add(1)
				}
			}()
		}
		// The watch is read all along: the apiserver closes a watch whose
		// reader falls behind.
		var events atomic.Int64
		var closedAt atomic.Value
		go func() {
			for ev := range w.ResultChan() {
				switch ev.Type {
				case watch.Added:
					events.Add(1)
				case watch.Error:
					if ctx.Err() == nil {
						t.Logf("watch error event: %+v", ev.Object)
					}
				}
			}
			closedAt.Store(time.Now())
		}()
		watching := func(d time.Duration) {
			t.Helper()
			time.Sleep(d)
			if at := closedAt.Load(); at != nil && ctx.Err() == nil {
				t.Fatalf("the watch opened before the kills was closed at %s after %d events (requests: %d ok, %d failed, last error %v)",
					at.(time.Time).Format(time.StampMilli), events.Load(), ok.Load(), failed.Load(), lastErr.Load())
			}
		}
		watching(2 * time.Second)
		for range 2 { // each time the replica that carries the most connections
			var sts [controlplane.EndpointReplicas]endpoint.Status
			most := 0
			for i := range sts {
				st, err := endpoint.Get(context.Background(), e.engine.Layout(c).EndpointStatusAddr(i))
				if err != nil {
					t.Fatal(err)
				}
				sts[i] = st
				if st.Connections > sts[most].Connections {
					most = i
				}
			}
			name := fmt.Sprintf("endpoint-%d", most)
			if sts[most].Connections == 0 || sts[1-most].Held < sts[most].Connections {
				t.Fatalf("no connection to hand over, or not held by the sibling: %+v", sts)
			}
			victim := e.instance(c, name)
			if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
				t.Fatalf("kill %s: %v", name, err)
			}
			t.Logf("killed %s (pid %d) carrying %d connections after %d requests", name, victim.PID, sts[most].Connections, ok.Load())
			watching(3 * time.Second)
			e.waitHealthy(t, c, 90*time.Second) // replaced, and linked again
		}
		before := events.Load()
		watching(2 * time.Second)
		cancel()
		wg.Wait()
		t.Logf("%d requests, %d failed (last: %v); the watch saw %d additions", ok.Load()+failed.Load(), failed.Load(), lastErr.Load(), events.Load())
		if failed.Load() > 0 {
			t.Errorf("%d requests failed while endpoint replicas were killed: want 0", failed.Load())
		}
		if ok.Load() < 100 || events.Load() <= before {
			t.Errorf("want ≥ 100 requests and watch events after the kills: %d, %d → %d", ok.Load(), before, events.Load())
		}
		cs.CoreV1().ConfigMaps("default").DeleteCollection(context.Background(), metav1.DeleteOptions{},
			metav1.ListOptions{LabelSelector: "lb-test"})
	})

	// chaos: the HA promise is that any single failure is survived. So
	// the test kills one random instance at a time, each once the
	// previous kill has been repaired (all instances healthy, both
	// apiservers in the pool), while a client writes and reads. A SIGKILL
	// cuts what is in flight on the victim (no TCP balancer can hide
	// that), so each kill may cost the requests in flight; what must not
	// happen is an outage: a stretch with no successful request. The
	// victims include the endpoint's replicas, the authenticators and the
	// tunnel.
	t.Run("chaos", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		var ok, failed atomic.Int64
		var written sync.Map
		var lastErr atomic.Value
		var failMu sync.Mutex
		failures := map[int64]int{} // second since start → failures
		errKinds := map[string]int{}
		t0 := time.Now()
		lastOK := t0
		var longest time.Duration // the longest stretch without a success
		recordFail := func(err error) {
			failed.Add(1)
			lastErr.Store(err.Error())
			failMu.Lock()
			failures[int64(time.Since(t0).Seconds())]++
			msg := err.Error()
			if len(msg) > 80 {
				msg = msg[:80]
			}
			errKinds[msg]++
			failMu.Unlock()
		}
		recordOK := func() {
			ok.Add(1)
			failMu.Lock()
			if gap := time.Since(lastOK); gap > longest {
				longest = gap
			}
			lastOK = time.Now()
			failMu.Unlock()
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // the client: write a ConfigMap, read it back, forever
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				name := fmt.Sprintf("chaos-%d", i)
				cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"i": fmt.Sprint(i)}}
				if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
					if ctx.Err() == nil {
						recordFail(err)
					}
					continue
				}
				recordOK()
				written.Store(name, fmt.Sprint(i))
				if _, err := cs.CoreV1().ConfigMaps("default").Get(ctx, name, metav1.GetOptions{}); err != nil {
					if ctx.Err() == nil {
						recordFail(err)
					}
					continue
				}
				recordOK()
			}
		}()

		type kill struct {
			name string
			at   time.Time
		}
		var kills []kill
		end := time.Now().Add(60 * time.Second)
		for time.Now().Before(end) {
			e.waitHealthy(t, c, 90*time.Second) // the last kill is repaired
			// ... also for the client: a request in flight on a killed etcd
			// leader fails only after etcd's request timeout (7 s), and a
			// second kill inside that window is a double failure, not the
			// single one this test measures.
			if len(kills) > 0 {
				last := kills[len(kills)-1].at
				deadline := time.Now().Add(30 * time.Second)
				for {
					failMu.Lock()
					served := lastOK.After(last)
					failMu.Unlock()
					if served || time.Now().After(deadline) {
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
			time.Sleep(2 * time.Second)
			var running []controlplane.InstanceStatus
			for _, in := range e.engine.Snapshot(c).Instances {
				// SKIFF_CHAOS_ROLE narrows the victims (to study one role).
				if in.Running && in.PID > 0 && (os.Getenv("SKIFF_CHAOS_ROLE") == "" || string(in.Role) == os.Getenv("SKIFF_CHAOS_ROLE")) {
					running = append(running, in)
				}
			}
			victim := running[rand.IntN(len(running))]
			if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
				t.Logf("kill %s: %v", victim.Name, err)
				continue
			}
			kills = append(kills, kill{victim.Name, time.Now()})
			t.Logf("%5.1fs killed %s (pid %d)", time.Since(t0).Seconds(), victim.Name, victim.PID)
		}
		e.waitHealthy(t, c, 90*time.Second)
		time.Sleep(2 * time.Second)
		cancel()
		wg.Wait()

		total := ok.Load() + failed.Load()
		rate := float64(ok.Load()) / float64(total)
		failMu.Lock()
		t.Logf("%d kills, %d requests, %d failed: %.4f%% succeeded, longest stretch without a success %v (last error: %v)",
			len(kills), total, failed.Load(), 100*rate, longest.Round(time.Millisecond), lastErr.Load())
		if failed.Load() > 0 {
			t.Logf("failures per second since start: %v; kinds: %v", failures, errKinds)
		}
		failMu.Unlock()
		if total < 1000 || len(kills) < 5 {
			t.Errorf("want ≥ 1000 requests and ≥ 5 kills, got %d and %d", total, len(kills))
		}
		if budget := int64(2 * len(kills)); failed.Load() > budget {
			t.Errorf("%d requests failed for %d single kills: want at most %d (what is in flight on the victim)", failed.Load(), len(kills), budget)
		}
		// A request in flight on a killed etcd leader waits for etcd's
		// request timeout (5 s + 2 election timeouts = 7 s) before it fails:
		// one slow request, not an outage. Longer is.
		if longest > 10*time.Second {
			t.Errorf("no request succeeded for %v: want no outage longer than 10s", longest)
		}

		for _, k := range kills {
			if !e.replacedAfter(c, k.name, k.at.Add(-time.Second)) {
				t.Errorf("%s killed at %s was not replaced", k.name, k.at.Format(time.TimeOnly))
			}
		}
		// Every object written reads back.
		list, err := cs.CoreV1().ConfigMaps("default").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]string{}
		for _, cm := range list.Items {
			have[cm.Name] = cm.Data["i"]
		}
		missing := 0
		written.Range(func(k, v any) bool {
			if have[k.(string)] != v.(string) {
				missing++
			}
			return true
		})
		if missing > 0 {
			t.Errorf("%d written ConfigMaps did not read back", missing)
		}
	})

	t.Run("etcd member loses its data", func(t *testing.T) {
		before := time.Now()
		victim := e.instance(c, "etcd-b")
		cur, _ := e.svc.Get("", c.Name)
		l := e.engine.Layout(cur)
		gen := cur.Etcd.Generations["etcd-b"]
		dataDir := l.EtcdDataDir(map[bool]string{true: "etcd-b", false: fmt.Sprintf("etcd-b-%d", gen)}[gen == 0])
		if _, err := os.Stat(filepath.Join(dataDir, "member")); err != nil {
			t.Fatalf("etcd-b data dir: %v", err)
		}
		// The disk is lost under the running member, which then dies. (The
		// other order, stop then remove, raced with the engine restarting
		// the member on its old data in between.)
		if err := os.RemoveAll(dataDir); err != nil {
			t.Fatal(err)
		}
		syscall.Kill(victim.PID, syscall.SIGKILL)
		for syscall.Kill(victim.PID, 0) == nil {
			time.Sleep(10 * time.Millisecond)
		}
		e.waitHealthy(t, c, 90*time.Second)
		after, _ := e.svc.Get("", c.Name)
		if after.Etcd.Generations["etcd-b"] != gen+1 {
			t.Errorf("etcd-b generation %d, want %d", after.Etcd.Generations["etcd-b"], gen+1)
		}
		if !e.replacedAfter(c, "etcd-b", before) {
			t.Error("no Replaced event for etcd-b")
		}
		evs, _ := e.store.Events(c.ID)
		for _, ev := range evs {
			if ev.Time.After(before) {
				t.Logf("%s +%v %s %s: %s", ev.Time.Format("15:04:05.000"), ev.Time.Sub(before).Round(time.Millisecond), ev.Instance, ev.Type, ev.Reason)
			}
		}
		// The cluster has three started members and still serves writes.
		if out := mustKubectl(t, kc, "create", "configmap", "after-etcd-loss"); !strings.Contains(out, "created") {
			t.Errorf("create after member replacement: %s", out)
		}
		if _, err := os.Stat(dataDir); err == nil && gen+1 > 0 {
			// the old generation's dir must not come back
			if _, err := os.Stat(filepath.Join(dataDir, "member")); err == nil {
				t.Error("old data dir of etcd-b is back")
			}
		}
	})

	t.Run("hung apiserver", func(t *testing.T) {
		before := time.Now()
		victim := e.instance(c, "apiserver-0")
		syscall.Kill(victim.PID, syscall.SIGSTOP)
		defer syscall.Kill(victim.PID, syscall.SIGKILL)
		// The endpoint's replicas drop it after 3 checks in a row without an
		// answer (~1.7 s; one slow check on a busy machine must not count);
		// the reconciler's next pass (500 ms) reports their pools.
		deadline := time.Now().Add(5 * time.Second)
		for len(e.engine.Snapshot(c).Backends) != 1 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if n := len(e.engine.Snapshot(c).Backends); n != 1 {
			t.Errorf("endpoint still has %d backends 5 s after an apiserver hung", n)
		}
		t.Logf("left the pool after %v", time.Since(before))
		if out := mustKubectl(t, kc, "get", "--raw", "/readyz"); strings.TrimSpace(out) != "ok" {
			t.Errorf("/readyz through the endpoint = %q", out)
		}
		e.waitHealthy(t, c, 60*time.Second)
		if !e.replacedAfter(c, "apiserver-0", before) {
			t.Error("hung apiserver-0 was not replaced")
		}
	})
}

// TestTwoClusters: side by side, each works, and neither trusts the other's
// credentials, at the endpoint or at etcd.
func TestTwoClusters(t *testing.T) {
	e := newEngineEnv(t)
	a := e.createActive(t, "one")
	b := e.createActive(t, "two")
	if a.Slot == b.Slot || a.Endpoint == b.Endpoint {
		t.Fatalf("clusters share slot %d / endpoint %s", a.Slot, a.Endpoint)
	}
	kcA, kcB := e.adminKubeconfig(a), e.adminKubeconfig(b)
	mustKubectl(t, kcA, "create", "configmap", "only-in-one")
	if _, err := kubectl(t, kcB, "get", "configmap", "only-in-one"); err == nil {
		t.Error("cluster two sees cluster one's ConfigMap")
	}

	// A's admin credential against B's endpoint: rejected.
	crossed := filepath.Join(t.TempDir(), "crossed.kubeconfig")
	cfg, _ := clientcmd.LoadFromFile(kcA)
	for _, cl := range cfg.Clusters {
		cl.Server = b.Endpoint
		cl.CertificateAuthorityData = []byte(b.CertificateAuthority) // trust B's server
	}
	clientcmd.WriteToFile(*cfg, crossed)
	out, err := kubectl(t, crossed, "get", "ns")
	if refused("Unauthorized")(out, err) != nil {
		t.Errorf("A's admin on B's endpoint: err=%v out=%s", err, out)
	}

	// A's apiserver→etcd client certificate against B's etcd: the TLS
	// handshake fails.
	la, lb := e.engine.Layout(a), e.engine.Layout(b)
	pair, err := tls.LoadX509KeyPair(pki.Path(la.PKIDir(), "apiserver-etcd-client", ".crt"), pki.Path(la.PKIDir(), "apiserver-etcd-client", ".key"))
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{pair}, InsecureSkipVerify: true}}}
	// etcd's HTTP endpoints, with the client port's TLS and client
	// certificates (the client port itself serves gRPC only).
	version := "https://" + net.JoinHostPort(lb.EtcdIP(0).String(), strconv.Itoa(controlplane.EtcdHTTPPort)) + "/version"
	resp, err := hc.Get(version)
	if err == nil {
		resp.Body.Close()
		t.Errorf("cluster one's etcd client cert was accepted by cluster two's etcd: %s", resp.Status)
	}
	// …while B's own certificate is accepted (the check can fail).
	own, _ := tls.LoadX509KeyPair(pki.Path(lb.PKIDir(), "apiserver-etcd-client", ".crt"), pki.Path(lb.PKIDir(), "apiserver-etcd-client", ".key"))
	hc.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{own}
	resp, err = hc.Get(version)
	if err != nil {
		t.Errorf("cluster two's own etcd client cert: %v", err)
	} else {
		resp.Body.Close()
	}

	// Delete one: nothing of it remains; the other is untouched.
	pids := e.engine.PIDs(context.Background(), a)
	if _, err := e.svc.Delete("", "one"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := e.svc.Get("", "one"); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("cluster one not deleted after a minute")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, pid := range pids {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("pid %d of the deleted cluster still runs", pid)
		}
	}
	for _, addr := range []string{
		strings.TrimPrefix(a.Endpoint, "https://"),
		strings.TrimPrefix(la.EtcdEndpoints(a)[0], "https://"),
		fmt.Sprintf("%s:%d", la.APIServerIP(0), controlplane.APIServerPort),
	} {
		if controlplane.Listening(addr) {
			t.Errorf("%s still listens after delete", addr)
		}
	}
	if _, err := os.Stat(la.Dir); !os.IsNotExist(err) {
		t.Errorf("cluster dir %s remains: %v", la.Dir, err)
	}
	if out := mustKubectl(t, kcB, "get", "--raw", "/readyz"); strings.TrimSpace(out) != "ok" {
		t.Errorf("cluster two after deleting one: %q", out)
	}
}
