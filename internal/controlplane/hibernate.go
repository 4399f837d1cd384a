package controlplane

import (
	"context"
	"fmt"
	"time"

	"skiff.dev/skiff/internal/endpoint"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/runtime"
)

// Hibernation (docs/architecture.md, "Hibernation"). A hibernating
// cluster (model.Cluster.Hibernation) keeps only one endpoint replica:
// observe leaves every other spec out, so its other instances are stopped
// (the etcd data stays), and the steps of those instances are done. A
// client's connection waits in the endpoint (--client-wait) while no
// apiserver is ready, once the replica is put to sleep (SleepPath: before
// the apiservers stop); the worker long-polls the replica (AwaitPath)
// and wakes the cluster at once, and the connection goes on to the first
// apiserver up. A cluster also wakes when it is to have nodes or its
// status leaves ACTIVE (an update), and hibernates by itself after its
// HibernateAfterTag passed without nodes and without clients.

// awakeOnly are the steps a hibernating cluster does without.
var awakeOnly = map[string]bool{StepEtcd: true, StepKMS: true, StepAPIServers: true, StepControllers: true,
	StepAuthenticator: true, StepTunnel: true, StepDoor: true, StepAccess: true, StepEncryption: true,
	StepNodes: true, StepAddons: true, StepInsights: true}

const (
	// hibernatingInterval is how often a hibernating cluster is passed
	// over: a client wakes it through the long poll, not this.
	hibernatingInterval = 10 * time.Second
	// awaitPoll is one long poll of an endpoint replica (shorter than its
	// status server's read timeout).
	awaitPoll = 8 * time.Second
	// ClientWait is how long a client's connection waits in the endpoint
	// for an apiserver while the cluster hibernates: well beyond a wake
	// (~4 s); a client with a shorter timeout of its own (kubectl's TLS
	// handshake: 10 s) gives up first.
	ClientWait = 30 * time.Second
)

// hibernation wakes a hibernating cluster that is wanted, and makes an
// idle one hibernate when its tag says so.
func (w *worker) hibernation(ctx context.Context, p *pass) (outcome, error) {
	c := p.c
	if c.Hibernation != nil && !p.resting {
		return outcome{}, nil // it rests once its access entries are in RBAC
	}
	if c.Hibernation != nil {
		w.rested = true
		// The stopped instances' records go: their starts at the wake are
		// neither detections nor replacements.
		kept := map[string]bool{}
		for _, s := range p.specs {
			kept[s.ID] = true
		}
		for id := range w.inst {
			if !kept[id] {
				delete(w.inst, id)
			}
		}
		for _, st := range p.eps {
			if st != nil && !st.Asleep { // a replica started since
				w.lull(ctx, p)
				break
			}
		}
		w.awaitClients(p)
		why := ""
		switch {
		case c.Status != model.StatusActive:
			why = "its status is " + c.Status
		case c.NodeCount() > 0:
			why = fmt.Sprintf("its node groups want nodes (%d)", c.NodeCount())
		case waitingClients(p) > 0:
			why = "a client connected"
		}
		if why != "" {
			if err := w.setHibernation(c, nil, "woke: "+why); err != nil {
				return outcome{}, err
			}
			w.trigger()
		}
		return outcome{}, nil
	}
	w.stopAwait()
	after, err := model.HibernateAfter(c.Tags)
	if err != nil || after == 0 || c.Status != model.StatusActive || c.NodeCount() > 0 || !p.apiUp {
		return outcome{}, nil
	}
	// Every replica must say it has had no client for that long.
	var last time.Time
	n := 0
	for i, s := range p.specs {
		if s.Role != runtime.Endpoint {
			continue
		}
		st := p.eps[i]
		if st == nil || st.Clients > 0 || st.Waiting > 0 {
			return outcome{}, nil
		}
		n++
		if st.LastClient.After(last) {
			last = st.LastClient
		}
	}
	if n == 0 || time.Since(last) < after {
		return outcome{}, nil
	}
	h := &model.Hibernation{Since: time.Now().UTC(), Reason: fmt.Sprintf("no client and no node for %v (tag %s)", after, model.HibernateAfterTag)}
	if err := w.setHibernation(c, h, "hibernates: "+h.Reason); err != nil {
		return outcome{}, err
	}
	w.trigger()
	return outcome{}, nil
}

// accessSettled says whether the last pass found c's access entries in
// RBAC (the Access step True): a cluster that hibernated before that would
// refuse its users' first requests after the wake until the step ran.
func accessSettled(c *model.Cluster) bool {
	if c.Observed == nil {
		return false
	}
	for _, cond := range c.Observed.Conditions {
		if cond.Type == StepAccess {
			return cond.Status == model.ConditionTrue
		}
	}
	return false
}

// setHibernation records h (nil: awake) if the cluster is still as this
// pass saw it, with an event.
func (w *worker) setHibernation(c *model.Cluster, h *model.Hibernation, why string) error {
	changed := false
	nc, err := w.cfg.Store.UpdateCluster(c.Key(), func(x *model.Cluster) error {
		if (x.Hibernation == nil) != (c.Hibernation == nil) {
			return nil // changed meanwhile: the next pass looks again
		}
		if h != nil && (x.Status != model.StatusActive || x.NodeCount() > 0) {
			return nil
		}
		x.Hibernation, changed = h, true
		return nil
	})
	if err != nil {
		return wrap(c, "record the hibernation", err)
	}
	if changed {
		typ := model.EventWoken
		if h != nil {
			typ = model.EventHibernated
		}
		w.event(nc, "", typ, why)
		w.cfg.Log.Info("cluster "+why, "cluster", c.Name)
	}
	return nil
}

// lull puts the endpoint replicas a hibernating cluster keeps to sleep
// (endpoint.SleepPath).
func (w *worker) lull(ctx context.Context, p *pass) {
	for _, s := range p.specs {
		if s.Role != runtime.Endpoint {
			continue
		}
		if err := endpoint.Sleep(ctx, p.l.EndpointStatusAddr(indexOf(s))); err != nil {
			w.cfg.Log.Warn("endpoint not put to sleep; a client may be refused until the cluster wakes", "cluster", p.c.Name, "err", err)
		}
	}
}

// waitingClients is how many connections wait in the endpoint's replicas.
func waitingClients(p *pass) int {
	n := 0
	for _, st := range p.eps {
		if st != nil {
			n += st.Waiting
		}
	}
	return n
}

// awaitClients long-polls the endpoint replica left while the cluster
// hibernates, and passes over the cluster as soon as a client waits.
func (w *worker) awaitClients(p *pass) {
	if w.awaitStop != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.awaitStop = cancel
	for _, s := range p.specs { // the replicas left
		if s.Role != runtime.Endpoint {
			continue
		}
		i := indexOf(s)
		go func() {
			for ctx.Err() == nil {
				waiting, err := endpoint.Await(ctx, p.l.EndpointStatusAddr(i), awaitPoll)
				pause := time.Duration(0)
				switch {
				case waiting:
					w.trigger()
					pause = 200 * time.Millisecond // the pass wakes the cluster
				case err != nil:
					pause = time.Second // the replica is being replaced
				}
				select {
				case <-ctx.Done():
				case <-time.After(pause):
				}
			}
		}()
	}
}

// stopAwait ends awaitClients' polls.
func (w *worker) stopAwait() {
	if w.awaitStop != nil {
		w.awaitStop()
		w.awaitStop = nil
	}
}
