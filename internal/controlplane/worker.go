package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"skiff.dev/skiff/internal/access"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/runtime"
	"skiff.dev/skiff/internal/store"
)

// Health policy.
const (
	// failThreshold consecutive failed probes of an instance that was
	// healthy before get it killed and restarted.
	failThreshold = 3
	// startupGrace is how long a new instance may take to pass its first
	// probe, and startingGrace how long an apiserver that answers with only
	// post-start hooks unfinished may.
	startupGrace  = 90 * time.Second
	startingGrace = 5 * time.Minute
	probeTimeout  = time.Second
	maxBackoff    = 30 * time.Second
	// stopGrace is how long a replaced instance may take to exit on SIGTERM.
	// etcd waits for its watch streams for many seconds; every component
	// here is crash-safe, so a short grace costs nothing.
	stopGrace = 2 * time.Second
	// apiserverStopGrace is an apiserver's: its shutdown delay, then the
	// requests in flight finish.
	apiserverStopGrace = apiserverShutdownDelay + 10*time.Second
)

// graceOf is how long instance s may take to stop when it is replaced.
func graceOf(s runtime.Spec) time.Duration {
	if s.Role == runtime.APIServer {
		return apiserverStopGrace
	}
	return stopGrace
}

// worker reconciles one cluster.
type worker struct {
	*Engine
	key, id string
	cancel  context.CancelFunc
	wake    chan struct{}
	done    chan struct{}

	netOK  bool // the cluster's VPC was realized by this worker
	prober *prober
	admin  kubernetes.Interface
	// adminCfg is admin's configuration: the insights reach each
	// apiserver with it.
	adminCfg   *rest.Config
	insightsAt time.Time // the last insights refresh
	pkiOK      string    // hash of the PKI spec last ensured
	inst       map[string]*instState
	started    time.Time
	// accessSynced is the access configuration last synced to RBAC, at accessAt.
	accessSynced string
	accessAt     time.Time
	creating     bool
	idle         bool      // the last pass found every step done and every instance healthy
	traceAt      time.Time // the cluster's last progress event (trace)
	apiUpAt      time.Time // since when an apiserver serves (zero: none does)
	keysMu       sync.Mutex
	// rested: the cluster hibernated under this worker, and its instances
	// have not all been healthy since (their starts are no replacements).
	rested      bool
	hibernating bool               // the last pass found the cluster hibernating
	awaitStop   context.CancelFunc // ends the long polls of a hibernating cluster's endpoint

	mu       sync.Mutex
	snapshot Snapshot // as of the last pass, for Engine.Snapshot
}

// InstanceStatus is what the reconciler last saw of one instance.
type InstanceStatus = model.InstanceStatus

// instState is what the worker remembers of an instance between passes;
// losing it (a skiff restart) costs at most a fresh startup grace.
type instState struct {
	startedAt   time.Time // by this worker; zero if adopted
	healthy     bool      // passed a probe since it started
	fails       int       // consecutive failed probes
	exitSeen    bool      // its exit was reported
	seenRunning bool
	// crashes counts the exits of runs on spec hash crashHash that never
	// became healthy (a version update gives up on it: failUpdate).
	crashes   int
	crashHash string
}

func (w *worker) trigger() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) layout(c *model.Cluster) Layout {
	l := NewLayout(w.cfg.DataDir, c, w.cfg.Runtime)
	l.Skiff, l.Lean = w.cfg.SkiffBin, w.cfg.InstanceBin
	if v := c.Etcd.Version; v != "" && v != c.Version {
		if b, err := w.cfg.Bundles.Lookup(v); err == nil {
			l.Etcd = &b
		} else {
			w.cfg.Log.Warn("the bundle of the cluster's etcd is gone; etcd runs the cluster version's", "cluster", c.Name, "version", v)
		}
	}
	return l
}

func (w *worker) run(ctx context.Context) {
	defer close(w.done)
	defer func() { w.prober.close(); w.stopAwait() }()
	w.started = time.Now()
	for {
		err := w.guarded(ctx)
		if errors.Is(err, errGone) {
			return
		}
		if err != nil && ctx.Err() == nil {
			w.cfg.Log.Warn("reconcile", "cluster", w.key, "err", err)
		}
		// A cluster being created is looked at often: readiness is what its
		// user waits for.
		interval := w.cfg.Interval
		switch {
		case w.creating:
			interval = 100 * time.Millisecond
		case w.hibernating:
			interval = hibernatingInterval
		case w.idle:
			interval = w.cfg.IdleInterval
		}
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		case <-time.After(interval):
		}
	}
}

// guarded is reconcile, with a panic turned into an error: a bug met by
// one cluster's pass must not take skiff, and every other tenant's API,
// down with it. The stack goes to the log; the next pass tries again.
func (w *worker) guarded(ctx context.Context) (err error) {
	defer func() {
		if p := recover(); p != nil {
			w.cfg.Log.Error("reconcile panicked", "cluster", w.key, "panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("reconcile panicked: %v", p)
		}
	}()
	return w.reconcile(ctx)
}

func (w *worker) reconcile(ctx context.Context) error {
	c, err := w.cfg.Store.GetCluster(w.key)
	if errors.Is(err, store.ErrNotFound) {
		return errGone
	}
	if err != nil {
		return err
	}
	w.idle = false // until a pass finds everything well
	resting := c.Hibernation != nil && accessSettled(c)
	w.hibernating = resting
	w.creating = c.Status == model.StatusCreating || c.Status == model.StatusUpdating
	for _, g := range c.Nodegroups {
		// A node group's user waits too: its nodes join sooner.
		w.creating = w.creating || g.Status == model.NodegroupCreating || g.Status == model.NodegroupUpdating || g.Status == model.NodegroupDeleting
	}
	if c.Status == model.StatusDeleting {
		return w.teardown(ctx, c)
	}
	b, err := w.cfg.Bundles.Lookup(c.Version)
	if err != nil {
		return w.setStatus(c, model.StatusFailed, err.Error())
	}
	return w.runSteps(ctx, &pass{c: c, b: b, l: w.layout(c), start: time.Now(), creating: c.Status == model.StatusCreating,
		resting: resting})
}

// nodeAddrs are the addresses of c's nodes.
func nodeAddrs(c *model.Cluster) []netip.Addr {
	out := []netip.Addr{}
	for _, g := range c.Nodegroups {
		for _, n := range g.Nodes {
			if p, err := netip.ParsePrefix(n.Addr); err == nil {
				out = append(out, p.Addr())
			}
		}
	}
	return out
}

// backends is the endpoint's pool: the apiservers that every healthy
// replica has in its pool.
func backends(specs []runtime.Spec, snap []InstanceStatus, pools [][]string) []string {
	var out []string
	first := true
	for i, s := range specs {
		if s.Role != runtime.Endpoint || !snap[i].Healthy {
			continue
		}
		if first {
			out, first = slices.Clone(pools[i]), false
			continue
		}
		out = slices.DeleteFunc(out, func(a string) bool { return !slices.Contains(pools[i], a) })
	}
	slices.Sort(out)
	return out
}

// record stores what this pass observed when it differs from what the
// store holds (the time of the pass aside): the API reads it there.
func (w *worker) record(c *model.Cluster, seen Snapshot) (*model.Cluster, error) {
	if o := c.Observed; o != nil && slices.Equal(o.Instances, seen.Instances) && slices.Equal(o.Backends, seen.Backends) &&
		slices.Equal(o.Conditions, seen.Conditions) {
		return c, nil
	}
	fresh, err := w.cfg.Store.UpdateCluster(c.Key(), func(c *model.Cluster) error {
		c.Observed = &seen
		return nil
	})
	if err != nil {
		return c, err
	}
	return fresh, nil
}

// indexOf returns an instance's index within its role: the zone index for
// etcd ("etcd-b" → 1), the number for the others ("apiserver-1" → 1).
func indexOf(s runtime.Spec) int {
	name := s.Name()
	if s.Role == runtime.Etcd {
		return int(name[len(name)-1] - 'a')
	}
	n := 0
	fmt.Sscanf(name[strings.LastIndexByte(name, '-')+1:], "%d", &n)
	return n
}

// convergeOne brings one instance to its spec. It returns the cluster,
// which an etcd replacement may have changed. etcdNew are the etcd
// members on their spec (where a replaced leader hands over).
func (w *worker) convergeOne(ctx context.Context, c *model.Cluster, s runtime.Spec, st runtime.Status, probe error, etcdNew []int) (*model.Cluster, error) {
	is := w.inst[s.ID]
	if is == nil {
		is = &instState{}
		w.inst[s.ID] = is
	}
	name := s.Name()
	switch {
	case st.ID == "": // not there at all
		if w.rested && !is.seenRunning {
			return w.start(ctx, c, s, is, "started: the cluster woke")
		}
		if is.seenRunning || c.Status == model.StatusActive {
			w.event(c, name, model.EventDetected, "instance is missing")
		}
		return w.start(ctx, c, s, is, "missing instance started")

	case !st.Running: // exited
		if (is.seenRunning || c.Status == model.StatusActive) && !is.exitSeen {
			w.event(c, name, model.EventDetected, fmt.Sprintf("process exited (code %d)", st.ExitCode))
		}
		if !is.exitSeen && !is.healthy {
			if is.crashHash != s.Hash() {
				is.crashes, is.crashHash = 0, s.Hash()
			}
			is.crashes++
		}
		is.exitSeen = true
		if is.crashes >= updateCrashLimit && updating(c) {
			return w.failUpdate(ctx, c, s, fmt.Sprintf("%s exited %d times without becoming healthy (code %d; see its log)", name, is.crashes, st.ExitCode))
		}
		if !w.restarts.Ready(s.ID, time.Now()) {
			return c, nil
		}
		if err := w.cfg.Runtime.Stop(ctx, s.ID, 0); err != nil { // forget the ended run
			return c, err
		}
		return w.start(ctx, c, s, is, "restarted after exit")

	case st.Hash != s.Hash(): // spec changed
		if s.Role == runtime.Etcd {
			if err := w.etcdSettled(ctx, c); err != nil {
				w.cfg.Log.Info("etcd member replacement waits: the members have not settled", "instance", s.ID, "why", err)
				return c, nil
			}
		}
		w.cfg.Log.Info("replacing instance with a changed spec", "instance", s.ID)
		if s.Role == runtime.Etcd {
			if err := w.handOffLeadership(ctx, c, indexOf(s), etcdNew); err != nil {
				w.cfg.Log.Warn("etcd leadership not handed off before the member stops", "instance", s.ID, "err", err)
			}
		}
		if err := w.cfg.Runtime.Stop(ctx, s.ID, graceOf(s)); err != nil {
			return c, err
		}
		return w.start(ctx, c, s, is, "replaced with a changed spec")
	}

	// Running with the right spec: judge its health.
	is.seenRunning = true
	if probe == nil {
		if !is.healthy {
			w.cfg.Log.Debug("instance healthy", "instance", s.ID, "sinceCreate", time.Since(c.CreatedAt).Round(time.Millisecond))
		}
		is.healthy, is.fails, is.crashes = true, 0, 0
		w.restarts.Reset(s.ID)
		w.starts.done(s.ID)
		return c, nil
	}
	is.fails++
	since := time.Since(is.startedAt)
	if is.startedAt.IsZero() {
		since = time.Since(w.started)
	}
	// An apiserver that answers, with only post-start hooks still to
	// finish, is making progress: on a busy machine that takes longer than
	// the grace, and replacing it would lose the progress.
	grace := startupGrace
	if errors.As(probe, new(startingError)) {
		grace = startingGrace
	}
	young := !is.healthy && since < grace
	if young || is.fails < failThreshold {
		return c, nil
	}
	if !is.healthy && updating(c) {
		return w.failUpdate(ctx, c, s, fmt.Sprintf("%s did not become healthy in %s: %v", name, since.Round(time.Second), probe))
	}
	w.event(c, name, model.EventDetected, fmt.Sprintf("unhealthy for %d probes: %v", is.fails, probe))
	if err := w.cfg.Runtime.Stop(ctx, s.ID, 0); err != nil {
		return c, err
	}
	return w.start(ctx, c, s, is, "replaced after failing health checks")
}

func (w *worker) start(ctx context.Context, c *model.Cluster, s runtime.Spec, is *instState, why string) (*model.Cluster, error) {
	if s.Role == runtime.Etcd {
		c, err := w.openEtcdVolume(ctx, c, indexOf(s))
		if err != nil {
			return c, wrap(c, "open the volume of "+s.Name(), err)
		}
		nc, err := w.ensureEtcdMember(ctx, c, indexOf(s))
		if err != nil {
			return c, wrap(c, "prepare "+s.Name(), err)
		}
		if nc != c { // a new generation: the spec changed
			c = nc
			b, err := w.cfg.Bundles.Lookup(c.Version)
			if err != nil {
				return c, err
			}
			s = w.layout(c).Specs(c, b)[indexOf(s)]
			if c, err = w.openEtcdVolume(ctx, c, indexOf(s)); err != nil { // the new member's
				return c, wrap(c, "open the volume of "+s.Name(), err)
			}
		}
	}
	if err := w.cfg.Runtime.Start(ctx, s); err != nil {
		return c, wrap(c, "start "+s.Name(), err)
	}
	replaced := is.seenRunning || c.Status == model.StatusActive && !w.rested
	*is = instState{startedAt: time.Now(), seenRunning: is.seenRunning, crashes: is.crashes, crashHash: is.crashHash}
	if replaced {
		w.event(c, s.Name(), model.EventReplaced, why)
	}
	return c, nil
}

// ensureAccess prepares what a pass needs besides instances: the PKI,
// kubeconfigs, the load balancer on the endpoint, the prober and the admin
// client. Each is made once per worker, or again when its inputs change.
func (w *worker) ensureAccess(c *model.Cluster, l Layout) error {
	spec := fmt.Sprint(l.pkiSpec(c))
	if w.pkiOK != spec {
		if err := l.EnsurePKI(c); err != nil {
			return err
		}
		p, err := newProber(l)
		if err != nil {
			return err
		}
		w.prober.close()
		w.prober = p
		cfg, err := clientcmd.BuildConfigFromFlags("", l.KubeconfigPath("admin"))
		if err != nil {
			return err
		}
		cfg.Timeout = 2 * time.Second
		// skiff's own client dials from the endpoint's address, which the
		// endpoint always lets in (publicAccess): the owner of the control
		// plane is not a public client.
		cfg.Dial = (&net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: l.EndpointIP()}}).DialContext
		if w.admin, err = kubernetes.NewForConfig(cfg); err != nil {
			return err
		}
		w.adminCfg = cfg
		w.pkiOK = spec
	}
	return nil
}

// reconcileNodes serves the endpoint inside the cluster's VPC and runs
// its node groups.
func (w *worker) reconcileNodes(ctx context.Context, c *model.Cluster) error {
	// The endpoint's replicas listen in the VPC (their spec names it)
	// once it exists.
	if !w.netOK {
		if _, _, err := w.cfg.Nodes.Network(ctx, c); err != nil {
			return err
		}
		if c.EndpointAddr == "" {
			return nil // the next pass, with the certificate for the new address
		}
		w.netOK = true
	}
	keys := func(ctx context.Context) error {
		// Nodes mint their credentials at once: one write at a time,
		// each from the store as it is then, so the last holds them all.
		w.keysMu.Lock()
		defer w.keysMu.Unlock()
		fresh, err := w.cfg.Store.GetCluster(c.Key())
		if err != nil {
			return err
		}
		return w.writeMaterial(ctx, fresh, w.layout(fresh))
	}
	return w.cfg.Nodes.Reconcile(ctx, c, w.admin, keys)
}

// accessResync is how often RBAC is checked against the access entries
// when they did not change (someone may have deleted a binding, or a
// namespace a scope names may have appeared).
const accessResync = 10 * time.Second

// syncAccess makes the cluster's RBAC match its access entries when they
// changed since the last sync, or every accessResync.
func (w *worker) syncAccess(ctx context.Context, c *model.Cluster) error {
	want := fmt.Sprint(c.AuthenticationMode, c.AccessEntries)
	if want == w.accessSynced && time.Since(w.accessAt) < accessResync {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := access.Sync(ctx, w.admin, c); err != nil {
		w.accessSynced = ""
		return err
	}
	w.accessSynced, w.accessAt = want, time.Now()
	return nil
}

// updateStatus records what the pass saw: a CREATING cluster turns ACTIVE
// once its endpoint serves the API and the default namespaces exist.
func (w *worker) updateStatus(ctx context.Context, c *model.Cluster, allHealthy bool, backends []string) error {
	if c.Status == model.StatusUpdating {
		return w.finishUpdate(c, allHealthy)
	}
	if c.Status != model.StatusCreating {
		return nil
	}
	if len(backends) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	nss, err := w.admin.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil // not yet
	}
	have := map[string]bool{}
	for _, ns := range nss.Items {
		have[ns.Name] = true
	}
	for _, ns := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
		if !have[ns] {
			return nil
		}
	}
	// Each namespace's default ServiceAccount, as the controller-manager
	// makes them (it leaves existing ones be): a pod created as soon as the
	// cluster is ACTIVE must not be refused for want of one while the
	// controller-manager still starts.
	for _, ns := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}}
		if _, err := w.admin.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return nil // not yet
		}
	}
	l := w.layout(c)
	ca, err := l.CAPEM()
	if err != nil {
		return err
	}
	became := false
	_, err = w.cfg.Store.UpdateCluster(c.Key(), func(c *model.Cluster) error {
		if c.Status != model.StatusCreating {
			return nil // deleted meanwhile: DELETING stays
		}
		c.Status = model.StatusActive
		c.Message = ""
		c.Endpoint = l.EndpointURL()
		c.CertificateAuthority = string(ca)
		c.Etcd.Bootstrapped = true
		became = true
		return nil
	})
	if err == nil && became {
		w.event(c, "", model.EventCreated, fmt.Sprintf("control plane ready at %s after %s",
			l.EndpointURL(), time.Since(c.CreatedAt).Round(10*time.Millisecond)))
	}
	return err
}

// finishUpdate completes an UPDATING cluster's update: a version update
// once every instance runs (healthy) on the new version's specs, any other
// at once (they change only what the API reports today).
func (w *worker) finishUpdate(c *model.Cluster, allHealthy bool) error {
	if p := c.PendingUpdate(); p != nil && p.Type == model.UpdateVersion && !allHealthy {
		return nil
	}
	if p := c.PendingUpdate(); p != nil && p.Type == model.UpdateEncryption && (!allHealthy || c.Encryption == nil || !c.Encryption.Rewritten) {
		return nil
	}
	var done *model.Update
	_, err := w.cfg.Store.UpdateCluster(c.Key(), func(c *model.Cluster) error {
		if c.Status != model.StatusUpdating {
			return nil
		}
		if p := c.PendingUpdate(); p != nil {
			p.Status = model.UpdateSuccessful
			u := *p
			done = &u
		}
		c.Status = model.StatusActive
		return nil
	})
	if err == nil && done != nil {
		w.event(c, "", model.EventUpdated, fmt.Sprintf("%s %s successful", done.Type, done.ID))
	}
	return err
}

func (w *worker) setStatus(c *model.Cluster, status, msg string) error {
	if c.Status == status && c.Message == msg {
		return nil
	}
	_, err := w.cfg.Store.UpdateCluster(c.Key(), func(c *model.Cluster) error {
		c.Status, c.Message = status, msg
		return nil
	})
	return err
}

// teardown stops every instance of a DELETING cluster, removes its files
// and finally its record. A crash halfway repeats it from the start.
func (w *worker) teardown(ctx context.Context, c *model.Cluster) error {
	t0 := time.Now()
	w.starts.forget(c.ID)
	if w.cfg.Nodes != nil {
		if err := w.cfg.Nodes.Teardown(ctx, c); err != nil {
			return wrap(c, "remove nodes", err)
		}
	}
	all, err := w.cfg.Runtime.List(ctx)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(all))
	for i, st := range all {
		if runtime.ClusterOf(st.ID) != c.ID {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A short grace: the cluster's data goes right after, and
			// no client of it is left to finish serving.
			errs[i] = w.cfg.Runtime.Stop(ctx, st.ID, 500*time.Millisecond)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	l := w.layout(c)
	if err := w.cfg.Runtime.RemoveVolumes(c.ID); err != nil {
		return wrap(c, "remove volumes", err)
	}
	for _, sock := range l.Sockets() { // of instances killed after their grace
		if err := os.Remove(sock); err != nil && !errors.Is(err, os.ErrNotExist) {
			return wrap(c, "remove a socket", err)
		}
	}
	if err := os.RemoveAll(l.Dir); err != nil {
		return wrap(c, "remove files", err)
	}
	if err := w.cfg.Store.DeleteCluster(c.Key()); err != nil {
		return err
	}
	w.event(c, "", model.EventDeleted, fmt.Sprintf("control plane deleted (%.1fs)", time.Since(t0).Seconds()))
	return errGone
}
