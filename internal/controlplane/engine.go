package controlplane

import (
	"context"
	"net/netip"

	"k8s.io/client-go/kubernetes"

	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"skiff.dev/skiff/internal/addons/catalog"
	"skiff.dev/skiff/internal/bundle"
	"skiff.dev/skiff/internal/door"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/runtime"
	"skiff.dev/skiff/internal/store"
)

// Config of an Engine.
type Config struct {
	DataDir string
	Store   *store.Store
	Runtime runtime.Runtime
	Bundles *bundle.Catalog
	Log     *slog.Logger
	// Interval between two passes over one cluster; default 500ms.
	Interval time.Duration
	// IdleInterval is the interval after a pass in which every step
	// succeeded and every instance was healthy; default 1s. A child's exit
	// (runtime.ExitNotifier) wakes the workers at once; a failed probe
	// makes the passes Interval apart again.
	IdleInterval time.Duration
	// Credentials gives the clusters' authenticators the IAM keys they
	// verify tokens with; nil gives none (every IAM token is refused).
	Credentials Credentials
	// TokenHosts are the hosts a token may be presigned for (skiff's STS
	// endpoints; empty: any), and TokenVPCPort the port of skiff's API
	// inside VPCs (any private address on it).
	TokenHosts   []string
	TokenVPCPort int
	// Nodes runs the clusters' managed node groups; nil runs none.
	Nodes Nodes
	// Addons installs and manages the clusters' add-ons; nil installs none.
	Addons Addons
	// AddonCatalog is the add-on versions skiff ships (for the upgrade
	// insights).
	AddonCatalog catalog.Catalog
	// SkiffBin is the skiff binary.
	SkiffBin string
	// InstanceBin is the program of the endpoint's replicas and the
	// tunnel (package instancecmd); default: skiff-instance next to
	// SkiffBin if it is there, else SkiffBin.
	InstanceBin string
	// Keys gives the KMS plugins of clusters with encryptionConfig their
	// keys; nil: such clusters fail their KMS step.
	Keys Keys
	// Sealer seals the clusters' etcd volume keys (skiff's KMS root key);
	// nil: clusters with encrypted volumes cannot start etcd.
	Sealer Sealer
}

// Addons is the add-on reconciler, run by each cluster's worker after its
// nodes (package addons).
type Addons interface {
	Reconcile(ctx context.Context, c *model.Cluster, admin kubernetes.Interface) error
}

// Nodes is the node-group reconciler, run by each cluster's worker once
// the control plane serves (package nodes).
type Nodes interface {
	// Network realizes the cluster's VPC and returns the namespace and
	// address where the endpoint must also listen for the cluster's nodes.
	Network(ctx context.Context, c *model.Cluster) (string, netip.Prefix, error)
	// Reconcile converges c's node groups; keys writes the cluster's
	// authenticator material again (new node credentials).
	Reconcile(ctx context.Context, c *model.Cluster, admin kubernetes.Interface, keys func(context.Context) error) error
	Teardown(ctx context.Context, c *model.Cluster) error
	// Forget removes what a node of a cluster that is gone left on the
	// machine (namespaces, cgroups, mounts), found by its instances.
	Forget(ctx context.Context, clusterID, nodeID string) error
	// SweepVPCs removes this skiff's VPC namespaces that no cluster uses.
	SweepVPCs(ctx context.Context, clusters []*model.Cluster) error
	// Door is what the cluster's door serves in its VPC (ok false: no
	// VPC yet).
	Door(c *model.Cluster) (d door.Door, ok bool, err error)
}

// Engine runs one worker per stored cluster. Each worker is a
// level-triggered loop: it reads the cluster from the store, observes its
// instances in the runtime, and acts on the difference. Nothing it needs
// lives only in memory, so a restarted skiff converges from where the last
// one stopped.
type Engine struct {
	cfg Config

	mu      sync.Mutex
	workers map[string]*worker // by cluster key
	wake    chan struct{}
	starts  *starts // apiserver starts across clusters
	// restarts spaces the restarts of instances that keep exiting.
	restarts runtime.Backoff
}

// New returns an engine; Run starts it.
func New(cfg Config) *Engine {
	if cfg.Interval == 0 {
		cfg.Interval = 500 * time.Millisecond
	}
	if cfg.IdleInterval == 0 {
		cfg.IdleInterval = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.SkiffBin == "" {
		cfg.SkiffBin, _ = os.Executable()
	}
	if cfg.InstanceBin == "" {
		cfg.InstanceBin = cfg.SkiffBin
		lean := filepath.Join(filepath.Dir(cfg.SkiffBin), "skiff-instance")
		if st, err := os.Stat(lean); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			cfg.InstanceBin = lean
		}
	}
	e := &Engine{cfg: cfg, workers: map[string]*worker{}, wake: make(chan struct{}, 1), starts: newStarts()}
	if n, ok := cfg.Runtime.(runtime.ExitNotifier); ok {
		n.NotifyExit(func(string) { e.Trigger() }) // exits are rare: every worker looks
	}
	return e
}

// Trigger asks for a pass now (after a change to the store).
func (e *Engine) Trigger() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, w := range e.workers {
		w.trigger()
	}
}

// Snapshot is what the reconciler saw of a cluster in its last pass (the
// store holds it too: model.Cluster.Observed).
type Snapshot = model.ControlPlaneStatus

// Snapshot returns the last pass's view of cluster c (zero before the first).
func (e *Engine) Snapshot(c *model.Cluster) Snapshot {
	e.mu.Lock()
	w := e.workers[c.Key()]
	e.mu.Unlock()
	if w == nil {
		return Snapshot{}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.snapshot
}

// Layout returns where cluster c lives.
func (e *Engine) Layout(c *model.Cluster) Layout {
	l := NewLayout(e.cfg.DataDir, c, e.cfg.Runtime)
	l.Skiff, l.Lean = e.cfg.SkiffBin, e.cfg.InstanceBin
	return l
}

// Run reconciles until ctx ends. Instances keep running after Run returns:
// control planes outlive skiff.
func (e *Engine) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer func() {
		e.mu.Lock()
		for _, w := range e.workers {
			w.cancel()
		}
		e.mu.Unlock()
		wg.Wait()
	}()
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		if err := e.pass(ctx, &wg); err != nil {
			e.cfg.Log.Error("control-plane pass failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-e.wake:
		case <-t.C:
		}
	}
}

// pass starts a worker for every cluster, stops workers whose cluster is
// gone, and removes what belongs to no cluster.
func (e *Engine) pass(ctx context.Context, wg *sync.WaitGroup) error {
	clusters, err := e.cfg.Store.ListClusters()
	if err != nil {
		return err
	}
	ids := map[string]bool{}
	e.mu.Lock()
	for _, c := range clusters {
		ids[c.ID] = true
		if _, ok := e.workers[c.Key()]; ok {
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		w := &worker{Engine: e, key: c.Key(), id: c.ID, cancel: cancel,
			wake: make(chan struct{}, 1), inst: map[string]*instState{}, done: make(chan struct{})}
		e.workers[c.Key()] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(wctx)
		}()
	}
	for key, w := range e.workers {
		select {
		case <-w.done:
			delete(e.workers, key)
			continue
		default:
		}
		if !ids[w.id] {
			w.cancel()
		}
	}
	busy := map[string]bool{} // clusters whose worker still runs (e.g. deleting)
	for _, w := range e.workers {
		busy[w.id] = true
	}
	e.mu.Unlock()
	if err := e.sweep(ctx, ids, busy); err != nil {
		return err
	}
	if e.cfg.Nodes != nil && len(busy) == len(ids) {
		// Only while no worker is still tearing a deleted cluster down.
		return e.cfg.Nodes.SweepVPCs(ctx, clusters)
	}
	return nil
}

// sweep stops instances and removes directories of clusters that are
// neither stored nor being torn down by a worker: orphans of a crash.
func (e *Engine) sweep(ctx context.Context, ids, busy map[string]bool) error {
	statuses, err := e.cfg.Runtime.List(ctx)
	if err != nil {
		return err
	}
	for _, st := range statuses {
		id := runtime.ClusterOf(st.ID)
		if ids[id] || busy[id] {
			continue
		}
		e.cfg.Log.Warn("stopping orphan instance", "instance", st.ID)
		if node := runtime.NodeOf(st.ID); node != "" && e.cfg.Nodes != nil {
			if err := e.cfg.Nodes.Forget(ctx, id, node); err != nil {
				e.cfg.Log.Error("remove orphan node", "node", node, "err", err)
			}
			continue
		}
		if err := e.cfg.Runtime.Stop(ctx, st.ID, time.Second); err != nil {
			e.cfg.Log.Error("stop orphan", "instance", st.ID, "err", err)
		}
	}
	dirs, _ := os.ReadDir(filepath.Join(e.cfg.DataDir, "clusters"))
	for _, d := range dirs {
		if !ids[d.Name()] && !busy[d.Name()] {
			e.cfg.Log.Warn("removing orphan cluster directory", "cluster", d.Name())
			dir := filepath.Join(e.cfg.DataDir, "clusters", d.Name())
			l := Layout{Dir: dir}
			for _, sock := range l.Sockets() {
				os.Remove(sock)
			}
			if err := e.cfg.Runtime.RemoveVolumes(d.Name()); err != nil {
				e.cfg.Log.Error("remove an orphan's volumes", "cluster", d.Name(), "err", err)
				continue // never remove files under a mount
			}
			os.RemoveAll(dir)
		}
	}
	return nil
}

// errGone ends a worker whose cluster no longer exists.
var errGone = errors.New("cluster gone")

func (e *Engine) event(c *model.Cluster, instance, typ, reason string) {
	ev := model.Event{Time: time.Now(), Cluster: c.ID, Instance: instance, Type: typ, Reason: reason}
	e.cfg.Log.Info("event", "cluster", c.Name, "instance", instance, "type", typ, "reason", reason)
	if err := e.cfg.Store.AddEvent(ev); err != nil {
		e.cfg.Log.Error("record event", "err", err)
	}
}

func wrap(c *model.Cluster, what string, err error) error {
	return fmt.Errorf("cluster %s: %s: %w", c.Name, what, err)
}
