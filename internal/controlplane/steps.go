package controlplane

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"skiff.dev/skiff/internal/bundle"
	"skiff.dev/skiff/internal/door"
	"skiff.dev/skiff/internal/endpoint"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/runtime"
	"skiff.dev/skiff/internal/status"
	"skiff.dev/skiff/internal/tunnel"
)

// A pass over a cluster runs these steps in order. Each is idempotent and
// level-triggered, and leaves a condition of its type in the store
// (model.ControlPlaneStatus.Conditions): True when what it looks after is
// as it should be, False (with what is not) while it works on it, Unknown
// while an earlier step keeps it from running.
const (
	StepNetwork       = "Network"       // the VPC and the endpoint's address in it
	StepPKI           = "PKI"           // certificates, kubeconfigs, the prober and skiff's client
	StepEndpoint      = "Endpoint"      // the load balancer's replicas
	StepEtcd          = "Etcd"          // the members, one per zone
	StepKMS           = "KMS"           // the KMS plugin that wraps Secrets' data keys, and the key's health
	StepAPIServers    = "APIServers"    // kube-apiserver
	StepControllers   = "Controllers"   // controller-managers and schedulers
	StepAuthenticator = "Authenticator" // the IAM token webhook's replicas and their material
	StepTunnel        = "Tunnel"        // the apiservers' egress into the VPC
	StepDoor          = "Door"          // the registry and skiff's API in the VPC
	StepAccess        = "Access"        // access entries → RBAC
	StepEncryption    = "Encryption"    // Secrets stored before encryption rewritten
	StepNodes         = "Nodes"         // managed node groups
	StepAddons        = "Addons"        // EKS add-ons
	StepInsights      = "Insights"      // upgrade insights
	StepStatus        = "Status"        // CREATING → ACTIVE, UPDATING → ACTIVE
)

// pass is what one pass's steps share.
type pass struct {
	c        *model.Cluster
	b        bundle.Bundle
	l        Layout
	door     *door.Door // nil: no VPC yet
	start    time.Time
	specs    []runtime.Spec
	observed map[string]runtime.Status // this cluster's instances, nodes' aside
	probes   []error                   // by spec; nil: healthy (or not running)
	pools    [][]string                // endpoint replicas' pools, by spec
	eps      []*endpoint.Status        // endpoint replicas' status, by spec (nil: none)
	snap     []InstanceStatus          // by spec
	apiUp    bool                      // an apiserver is healthy
	ctrlUp   bool                      // a controller-manager and a scheduler are healthy
	rolled   bool                      // an instance was replaced for a new spec this pass
	kmsUp    bool                      // the KMS plugin serves (clusters with encryption)
	conds    []model.Condition
	errs     []error
	creating bool // the cluster was CREATING when the pass began
	// resting: the cluster hibernates, and only its endpoint runs (once
	// its access entries are in RBAC: accessSettled).
	resting bool
}

// outcome is a step's condition, short of its type and time.
type outcome struct {
	status, reason, message string
}

func done(reason, format string, args ...any) outcome {
	return outcome{model.ConditionTrue, reason, fmt.Sprintf(format, args...)}
}

func working(reason, format string, args ...any) outcome {
	return outcome{model.ConditionFalse, reason, fmt.Sprintf(format, args...)}
}

func waiting(format string, args ...any) outcome {
	return outcome{model.ConditionUnknown, "Waiting", fmt.Sprintf(format, args...)}
}

// step is one of a pass's steps. An error fails its condition; the pass
// goes on with the next step unless fatal says the others depend on it.
type step struct {
	name  string
	fatal bool
	run   func(w *worker, ctx context.Context, p *pass) (outcome, error)
}

var steps = []step{
	{StepNetwork, false, (*worker).stepNetwork},
	{StepPKI, true, (*worker).stepPKI},
	{"", true, (*worker).observe}, // no condition: what the instance steps act on
	{StepEndpoint, false, instanceStep(runtime.Endpoint)},
	{StepEtcd, false, instanceStep(runtime.Etcd)},
	{StepKMS, false, (*worker).stepKMS},
	{StepAPIServers, false, (*worker).stepAPIServers},
	{StepControllers, false, instanceStep(runtime.ControllerManager, runtime.Scheduler)},
	{StepAuthenticator, false, (*worker).stepAuthenticator},
	{StepTunnel, false, (*worker).stepTunnel},
	{StepDoor, false, (*worker).stepDoor},
	{StepAccess, false, (*worker).stepAccess},
	{StepEncryption, false, (*worker).stepEncryption},
	{StepNodes, false, (*worker).stepNodes},
	{StepAddons, false, (*worker).stepAddons},
	{StepStatus, false, (*worker).stepStatus},
	{"", false, (*worker).hibernation},            // no condition: hibernate when idle, wake when wanted
	{StepInsights, false, (*worker).stepInsights}, // last: it never holds the status up
}

// runSteps runs a pass's steps and records what it saw.
func (w *worker) runSteps(ctx context.Context, p *pass) error {
	var prev []model.Condition
	if p.c.Observed != nil {
		prev = p.c.Observed.Conditions
	}
	var fatal error
	for _, s := range steps {
		var o outcome
		var err error
		switch {
		case fatal != nil:
			o = waiting("an earlier step failed")
		case p.resting && awakeOnly[s.name]:
			o = done("Hibernating", "the control plane hibernates")
		default:
			o, err = s.run(w, ctx, p)
		}
		if err != nil {
			err = wrap(p.c, strings.ToLower(s.name), err)
			p.errs = append(p.errs, err)
			o = outcome{model.ConditionFalse, "Error", err.Error()}
			if s.fatal {
				fatal = err
			}
		}
		if s.name != "" {
			c := condition(prev, s.name, o, p.start)
			p.conds = append(p.conds, c)
			w.traceCondition(p, prev, c)
			if s.name == StepStatus && c.Status == model.ConditionTrue {
				p.creating = false // the create path's trace ends at ACTIVE
			}
		}
	}
	w.idle = len(p.errs) == 0 && len(p.snap) > 0
	for _, c := range p.conds {
		w.idle = w.idle && c.Status == model.ConditionTrue
	}
	for _, st := range p.snap {
		w.idle = w.idle && st.Healthy
	}
	if w.idle && p.c.Hibernation == nil {
		w.rested = false // woken, and every instance is healthy again
	}
	seen := Snapshot{At: p.start, Instances: p.snap, Backends: backends(p.specs, p.snap, p.pools), Conditions: p.conds}
	if p.snap == nil && p.c.Observed != nil { // not observed this pass: as last seen
		seen.Instances, seen.Backends = p.c.Observed.Instances, p.c.Observed.Backends
	}
	{
		w.mu.Lock()
		w.snapshot = seen
		w.mu.Unlock()
		if _, err := w.record(p.c, seen); err != nil {
			p.errs = append(p.errs, wrap(p.c, "record the observed state", err))
		}
	}
	return errors.Join(p.errs...)
}

// trace records, while a cluster is being created, each milestone: an
// instance healthy for the first time, a step's condition turning True.
// Each event says how long after CreateCluster, and how long after the
// milestone before it, so the events are the create path's profile
// ("skiff events NAME") and their own times add up to the time to ACTIVE.
func (w *worker) trace(p *pass, what string) {
	if !p.creating {
		return
	}
	last := p.c.CreatedAt
	if w.traceAt.After(last) {
		last = w.traceAt
	}
	now := time.Now()
	w.traceAt = now
	w.event(p.c, "", model.EventProgress, fmt.Sprintf("%s at +%.2fs (+%.2fs)", what,
		now.Sub(p.c.CreatedAt).Seconds(), now.Sub(last).Seconds()))
}

// traceCondition traces condition c if it turned True this pass.
func (w *worker) traceCondition(p *pass, prev []model.Condition, c model.Condition) {
	if c.Status != model.ConditionTrue {
		return
	}
	for _, q := range prev {
		if q.Type == c.Type && q.Status == model.ConditionTrue {
			return
		}
	}
	w.trace(p, fmt.Sprintf("step %s %s: %s", c.Type, c.Reason, c.Message))
}

// condition is step name's condition with outcome o, its time kept from
// prev while its status stays.
func condition(prev []model.Condition, name string, o outcome, now time.Time) model.Condition {
	c := model.Condition{Type: name, Status: o.status, Reason: o.reason, Message: o.message, Since: now}
	for _, p := range prev {
		if p.Type == name && p.Status == o.status {
			c.Since = p.Since
		}
	}
	return c
}

// stepNetwork realizes the cluster's VPC once per worker (again after a
// host reboot, so that the VPC's door listens before the nodes come back).
// The endpoint's address inside the VPC is taken before the PKI is made,
// so the apiservers' certificate names it from the start (as EKS places
// its interfaces at creation): a first node group then costs no
// certificate change and apiserver restarts.
func (w *worker) stepNetwork(ctx context.Context, p *pass) (outcome, error) {
	if w.cfg.Nodes == nil || p.c.Network.VpcID == "" {
		return done("NoVPC", "the cluster has no VPC"), nil
	}
	if !w.netOK {
		if _, _, err := w.cfg.Nodes.Network(ctx, p.c); err != nil {
			// Retried; the control plane goes on.
			return working("NotRealized", "realize VPC %s: %v", p.c.Network.VpcID, err), nil
		}
		w.netOK = p.c.EndpointAddr != ""
	}
	return done("Realized", "VPC %s; the endpoint's address there is %s", p.c.Network.VpcID, p.c.EndpointAddr), nil
}

func (w *worker) stepPKI(_ context.Context, p *pass) (outcome, error) {
	if err := w.ensureAccess(p.c, p.l); err != nil {
		return outcome{}, err
	}
	return done("Issued", "certificates and kubeconfigs in %s", p.l.PKIDir()), nil
}

// observe lists the cluster's instances, stops those no longer desired,
// and probes every running one at once.
func (w *worker) observe(ctx context.Context, p *pass) (outcome, error) {
	c, l := p.c, p.l
	p.specs = l.Specs(c, p.b)
	if p.resting {
		// One endpoint replica is what is left of a hibernating cluster.
		p.specs = slices.DeleteFunc(p.specs, func(s runtime.Spec) bool { return s.Role != runtime.Endpoint || indexOf(s) != 0 })
	} else if w.cfg.Nodes != nil {
		d, ok, err := w.cfg.Nodes.Door(c)
		if err != nil {
			return outcome{}, fmt.Errorf("the VPC's door: %w", err)
		}
		if ok {
			p.door = &d
			p.specs = append(p.specs, l.doorSpec(c, d))
		}
	}
	p.start = time.Now()
	all, err := w.cfg.Runtime.List(ctx)
	if err != nil {
		return outcome{}, err
	}
	p.observed = map[string]runtime.Status{}
	for _, st := range all {
		if runtime.ClusterOf(st.ID) == c.ID && !runtime.IsNodeInstance(st.ID) {
			p.observed[st.ID] = st
		}
	}
	// Instances that are no longer desired (e.g. fewer apiservers).
	desired := map[string]bool{}
	for _, s := range p.specs {
		desired[s.ID] = true
	}
	// A hibernating cluster's endpoint is put to sleep before its
	// apiservers stop: a client then waits for them instead of being
	// refused (and wakes the cluster).
	if p.resting && len(p.observed) > len(p.specs) {
		w.lull(ctx, p)
	}
	// Stopped together: a hibernating cluster stops a dozen at once.
	var stops errgroup.Group
	for id := range p.observed {
		if !desired[id] {
			w.cfg.Log.Info("stopping undesired instance", "instance", id)
			stops.Go(func() error { return w.cfg.Runtime.Stop(ctx, id, 5*time.Second) })
		}
	}
	if err := stops.Wait(); err != nil {
		return outcome{}, err
	}
	var wg sync.WaitGroup
	p.probes = make([]error, len(p.specs))
	p.pools = make([][]string, len(p.specs))
	p.eps = make([]*endpoint.Status, len(p.specs))
	for i, s := range p.specs {
		// Instances on an older spec are probed too: a rolling replacement
		// waits until every other instance is up.
		if st, ok := p.observed[s.ID]; ok && st.Running {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pctx, cancel := context.WithTimeout(ctx, probeTimeout)
				defer cancel()
				p.eps[i], p.probes[i] = w.probe(pctx, l, s)
				if p.eps[i] != nil {
					p.pools[i] = p.eps[i].Healthy
				}
			}()
		}
	}
	wg.Wait()
	p.snap = make([]InstanceStatus, len(p.specs))
	for i, s := range p.specs {
		st := p.observed[s.ID]
		p.snap[i] = InstanceStatus{Name: s.Name(), Role: string(s.Role), Zone: s.Zone, PID: st.PID, Running: st.Running,
			Healthy: st.Running && st.Hash == s.Hash() && p.probes[i] == nil}
		if p.probes[i] != nil {
			p.snap[i].Error = p.probes[i].Error()
		}
		p.apiUp = p.apiUp || s.Role == runtime.APIServer && p.snap[i].Healthy
		if p.snap[i].Healthy && !wasHealthy(c, s.Name()) {
			w.trace(p, "instance "+s.Name()+" healthy")
		}
	}
	cm, sched := false, false
	for i, s := range p.specs {
		cm = cm || s.Role == runtime.ControllerManager && p.snap[i].Healthy
		sched = sched || s.Role == runtime.Scheduler && p.snap[i].Healthy
	}
	p.ctrlUp = cm && sched
	switch {
	case !p.apiUp:
		w.apiUpAt = time.Time{}
	case w.apiUpAt.IsZero():
		w.apiUpAt = time.Now()
	}
	return outcome{}, nil
}

// standbyWait bounds how long standby instances wait for the first
// controller-manager and scheduler (mayAct).
const standbyWait = 10 * time.Second

// standby says whether s is a second (third …) apiserver,
// controller-manager or scheduler: instances are named ROLE-INDEX.
func standby(s runtime.Spec) bool {
	switch s.Role {
	case runtime.APIServer, runtime.ControllerManager, runtime.Scheduler:
		return !strings.HasSuffix(s.Name(), "-0")
	}
	return false
}

// wasHealthy reports whether the store had instance name healthy.
func wasHealthy(c *model.Cluster, name string) bool {
	if c.Observed == nil {
		return false
	}
	for _, in := range c.Observed.Instances {
		if in.Name == name {
			return in.Healthy
		}
	}
	return false
}

// probe asks one instance whether it is alive; an endpoint replica also
// says how it is (its backends, its clients).
func (w *worker) probe(ctx context.Context, l Layout, s runtime.Spec) (*endpoint.Status, error) {
	switch s.Role {
	case runtime.Tunnel:
		return nil, status.Get(ctx, l.TunnelStatusAddr(), nil)
	case runtime.Door:
		return nil, status.Get(ctx, l.DoorStatusAddr(), nil)
	case runtime.KMSPlugin:
		return nil, status.Get(ctx, l.KMSStatusAddr(), nil)
	case runtime.Authenticator:
		return nil, status.Get(ctx, l.AuthenticatorStatusAddr(indexOf(s)), nil)
	case runtime.Endpoint:
		st, err := endpoint.Get(ctx, l.EndpointStatusAddr(indexOf(s)))
		if err != nil {
			return nil, err
		}
		return &st, nil
	}
	return nil, w.prober.probe(ctx, l, s, indexOf(s))
}

// instanceStep converges the instances of roles.
func instanceStep(roles ...runtime.Role) func(w *worker, ctx context.Context, p *pass) (outcome, error) {
	return func(w *worker, ctx context.Context, p *pass) (outcome, error) {
		return w.converge(ctx, p, roles...)
	}
}

// converge brings the instances of roles to their specs, and says how
// they are.
func (w *worker) converge(ctx context.Context, p *pass, roles ...runtime.Role) (outcome, error) {
	var errs []error
	var bad []string
	n := 0
	// etcd members already on their spec, and whether some are not.
	var etcdNew []int
	etcdOld := false
	for _, s := range p.specs {
		if st := p.observed[s.ID]; s.Role == runtime.Etcd && st.Running {
			if st.Hash == s.Hash() {
				etcdNew = append(etcdNew, indexOf(s))
			} else {
				etcdOld = true
			}
		}
	}
	leader, leaderKnown := -1, false
	for i, s := range p.specs {
		if !slices.Contains(roles, s.Role) {
			continue
		}
		n++
		if !p.snap[i].Healthy {
			bad = append(bad, s.Name())
		}
		// An etcd roll replaces the leader last, so that the leadership
		// moves once, to a member on the new spec (etcdroll.go).
		if st := p.observed[s.ID]; s.Role == runtime.Etcd && etcdOld && st.Running && st.Hash != s.Hash() {
			if !leaderKnown {
				leader, _ = w.etcdLeader(ctx, p.c)
				leaderKnown = true
			}
			if leader == indexOf(s) && w.etcdOthersOld(p, s) {
				w.cfg.Log.Debug("etcd leader replaced last", "instance", s.ID)
				continue
			}
		}
		if !w.mayAct(p, i) {
			continue
		}
		c, err := w.convergeOne(ctx, p.c, s, p.observed[s.ID], p.probes[i], etcdNew)
		p.c = c
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return outcome{}, err
	}
	switch {
	case n == 0:
		return done("None", "no instance of this kind"), nil
	case len(bad) == 0:
		return done("Healthy", "%d of %d healthy", n, n), nil
	}
	return working("NotHealthy", "%d of %d healthy; not yet: %s", n-len(bad), n, strings.Join(bad, ", ")), nil
}

// etcdOthersOld says whether an etcd member other than s runs on an old
// spec.
func (w *worker) etcdOthersOld(p *pass, s runtime.Spec) bool {
	for _, o := range p.specs {
		if st := p.observed[o.ID]; o.Role == runtime.Etcd && o.ID != s.ID && st.Running && st.Hash != o.Hash() {
			return true
		}
	}
	return false
}

// mayAct says whether the pass may act on instance i now.
func (w *worker) mayAct(p *pass, i int) bool {
	s, st := p.specs[i], p.observed[p.specs[i].ID]
	// Controller-managers and schedulers start once an apiserver serves
	// (they could do nothing sooner); on two cores they would only slow
	// the apiservers' start. After a host reboot their old runs are there,
	// ended: they too wait.
	if (s.Role == runtime.ControllerManager || s.Role == runtime.Scheduler) && !p.apiUp && !st.Running {
		return false
	}
	// Once an apiserver serves, the first controller-manager and scheduler
	// start before the standbys: on two cores a second apiserver's start
	// (~4 s of CPU) delayed the controller-manager, and with it every pod
	// of the first node group (kube-proxy, CoreDNS, the user's), by
	// seconds. A standby waits until one of each serves, standbyWait at
	// most.
	if standby(s) && !st.Running && p.apiUp && !p.ctrlUp && time.Since(w.apiUpAt) < standbyWait {
		return false
	}
	// Apiservers start a few at a time across clusters (starts).
	if s.Role == runtime.APIServer && !st.Running && !w.starts.admit(p.c.ID, s.ID, !p.apiUp, time.Now()) {
		w.cfg.Log.Debug("apiserver start deferred: others are starting", "instance", s.ID)
		return false
	}
	// Rolling replacement: an instance whose spec changed (a version
	// upgrade) is replaced only while every other instance is up, and one
	// per pass, in step order: etcd, apiservers, controller-managers,
	// schedulers, as Kubernetes' version skew policy asks. One that is
	// down anyway is replaced at once.
	if st.Running && st.Hash != s.Hash() {
		up := func(j int) bool { return p.observed[p.specs[j].ID].Running && p.probes[j] == nil }
		othersUp := true
		for j := range p.specs {
			othersUp = othersUp && (j == i || up(j))
		}
		if up(i) && (p.rolled || !othersUp) {
			return false
		}
		p.rolled = p.rolled || up(i)
	}
	return true
}

// stepAPIServers converges the apiservers; with envelope encryption, once
// the KMS plugin serves: an apiserver that finds no plugin when it starts
// retries only every 10 s, and its Secrets wait for it.
func (w *worker) stepAPIServers(ctx context.Context, p *pass) (outcome, error) {
	if p.c.Encryption != nil && !p.kmsUp {
		return waiting("the KMS plugin does not serve yet"), nil
	}
	return w.converge(ctx, p, runtime.APIServer)
}

func (w *worker) stepAuthenticator(ctx context.Context, p *pass) (outcome, error) {
	if err := w.writeMaterial(ctx, p.c, p.l); err != nil {
		return outcome{}, fmt.Errorf("the authenticator's material: %w", err)
	}
	return w.converge(ctx, p, runtime.Authenticator)
}

func (w *worker) stepTunnel(ctx context.Context, p *pass) (outcome, error) {
	if err := tunnel.WriteNodes(p.l.TunnelNodesPath(), nodeAddrs(p.c)); err != nil {
		return outcome{}, fmt.Errorf("the tunnel's node list: %w", err)
	}
	return w.converge(ctx, p, runtime.Tunnel)
}

func (w *worker) stepDoor(ctx context.Context, p *pass) (outcome, error) {
	if p.door == nil {
		return waiting("the cluster's VPC is not realized"), nil
	}
	if err := door.WriteMaterial(p.l.DoorMaterialPath(), p.door.Material); err != nil {
		return outcome{}, fmt.Errorf("the door's material: %w", err)
	}
	return w.converge(ctx, p, runtime.Door)
}

// serving says whether the steps that use the cluster's API may run.
func serving(p *pass) bool {
	return p.apiUp && (p.c.Status == model.StatusActive || p.c.Status == model.StatusUpdating)
}

func (w *worker) stepAccess(ctx context.Context, p *pass) (outcome, error) {
	if !serving(p) {
		return waiting("no apiserver serves yet"), nil
	}
	if err := w.syncAccess(ctx, p.c); err != nil {
		return outcome{}, err
	}
	return done("Synced", "%d access entries in RBAC", len(p.c.AccessEntries)), nil
}

func (w *worker) stepNodes(ctx context.Context, p *pass) (outcome, error) {
	if !serving(p) {
		return waiting("no apiserver serves yet"), nil
	}
	if w.cfg.Nodes == nil || len(p.c.Nodegroups) == 0 && p.c.EndpointAddr == "" {
		return done("None", "no node groups"), nil
	}
	if err := w.reconcileNodes(ctx, p.c); err != nil {
		return outcome{}, err
	}
	var bad []string
	for _, g := range p.c.Nodegroups {
		if g.Status != model.StatusActive {
			bad = append(bad, g.Name+" "+g.Status)
		}
	}
	if len(bad) > 0 {
		return working("NotActive", "node groups not ACTIVE: %s", strings.Join(bad, ", ")), nil
	}
	return done("Active", "%d node groups", len(p.c.Nodegroups)), nil
}

func (w *worker) stepAddons(ctx context.Context, p *pass) (outcome, error) {
	if !serving(p) {
		return waiting("no apiserver serves yet"), nil
	}
	if w.cfg.Addons == nil || w.cfg.Nodes == nil || len(p.c.Nodegroups) == 0 && p.c.EndpointAddr == "" {
		return done("None", "no add-ons run"), nil
	}
	if p.c.EndpointAddr == "" { // the add-ons' kubeconfigs name it
		return waiting("the endpoint has no address in the VPC yet"), nil
	}
	fresh, err := w.cfg.Store.GetCluster(p.c.Key())
	if err != nil {
		return outcome{}, err
	}
	if err := w.cfg.Addons.Reconcile(ctx, fresh, w.admin); err != nil {
		return outcome{}, err
	}
	return done("Reconciled", "%d add-ons", len(fresh.Addons)), nil
}

func (w *worker) stepStatus(ctx context.Context, p *pass) (outcome, error) {
	if len(p.errs) > 0 {
		return waiting("an earlier step failed"), nil
	}
	allHealthy := true
	for _, st := range p.snap {
		allHealthy = allHealthy && st.Healthy
	}
	if err := w.updateStatus(ctx, p.c, allHealthy, backends(p.specs, p.snap, p.pools)); err != nil {
		return outcome{}, err
	}
	fresh, err := w.cfg.Store.GetCluster(p.c.Key())
	if err != nil {
		return outcome{}, err
	}
	p.c.Status = fresh.Status
	if fresh.Status == model.StatusActive {
		return done("Active", "ACTIVE"), nil
	}
	return working("NotActive", "%s", fresh.Status), nil
}
