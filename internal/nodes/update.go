package nodes

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"skiff.dev/skiff/internal/model"
)

// Version updates of a node group (UpdateNodegroupVersion), as EKS does
// them: new nodes of the group's version first (the surge: updateConfig's
// batch), then, once they are Ready, the old nodes are cordoned and a
// batch of them drained (evictions, which respect PodDisruptionBudgets)
// and removed; again until no old node is left. Every step is recorded in
// the store (a node's Version, Draining, DrainStarted), so a skiff
// restart resumes where it stood.

// Drain limits.
const (
	// ScaleDownDrainLimit is how long the pods of a node removed by a
	// scale-down or a deletion may take to go before the node goes anyway.
	ScaleDownDrainLimit = 45 * time.Second
	// DefaultReplaceDrainLimit is how long an update waits for evictions
	// that PodDisruptionBudgets refuse before it fails with
	// PodEvictionFailure (EKS: 15 minutes), unless forced.
	DefaultReplaceDrainLimit = 15 * time.Minute
	// drainRound is the least time between two eviction rounds of a node.
	drainRound = 500 * time.Millisecond
)

// nodeVersion is the Kubernetes minor node n runs.
func nodeVersion(c *model.Cluster, n *model.Node) string {
	return cmp.Or(n.Version, c.Version)
}

// groupVersion is the Kubernetes minor group g's nodes are to run.
func groupVersion(c *model.Cluster, g *model.Nodegroup) string {
	return cmp.Or(g.Version, c.Version)
}

// replacing reports whether n is an old node of a group whose version
// update is under way.
func replacing(c *model.Cluster, g *model.Nodegroup, n *model.Node) bool {
	return g.Status == model.NodegroupUpdating && nodeVersion(c, n) != groupVersion(c, g)
}

// replacePlan is what a version update does next to group g: how many
// nodes over the desired count it keeps (the surge), and which old nodes
// it starts to drain now (when every new node is Ready and no batch is
// draining).
func replacePlan(c *model.Cluster, g *model.Nodegroup) (surge int, drainNow []string) {
	if g.Status != model.NodegroupUpdating || g.Desired == 0 {
		return 0, nil
	}
	var old []string
	active, draining, newReady := 0, 0, true
	for i := range g.Nodes {
		n := &g.Nodes[i]
		switch {
		case n.Draining:
			draining++
		case replacing(c, g, n):
			active++
			old = append(old, n.ID) // oldest first
		default:
			active++
			newReady = newReady && n.Ready
		}
	}
	if len(old) == 0 {
		return 0, nil
	}
	surge = min(g.UpdateConfig.Batch(g.Desired), len(old))
	if draining == 0 && newReady && active == g.Desired+surge {
		drainNow = old[:surge]
	}
	return surge, drainNow
}

type drainStep int

const (
	drainWait    drainStep = iota // pods still going: look again later
	drainDone                     // the node may go
	drainRefused                  // the update fails: PodEvictionFailure
)

// drainVerdict decides about a draining node with left pods still on it
// (blocked of them refused eviction by a disruption budget), elapsed
// since its drain began. A node an update replaces waits for as long as
// limit for its budgets, then fails the update; a node removed otherwise
// goes after ScaleDownDrainLimit whatever is left (as it always has).
func drainVerdict(left, blocked int, elapsed time.Duration, replace bool, limit time.Duration) drainStep {
	switch {
	case left == 0:
		return drainDone
	case !replace && elapsed > ScaleDownDrainLimit:
		return drainDone
	case replace && elapsed > limit && blocked > 0:
		return drainRefused
	case replace && elapsed > limit+ScaleDownDrainLimit:
		return drainDone // stuck terminating, not blocked: the instance goes, as on EKS
	}
	return drainWait
}

// evictRound evicts the pods still on node name (DaemonSet pods stay, as
// kubectl drain leaves them) and counts those left and those a
// disruption budget protects; force deletes the protected ones instead.
func evictRound(ctx context.Context, admin kubernetes.Interface, name string, force bool) (left, blocked, evicted int, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	pods, err := admin.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + name})
	if err != nil {
		return 0, 0, 0, err
	}
	for _, p := range pods.Items {
		if owner := metav1.GetControllerOf(&p); owner != nil && owner.Kind == "DaemonSet" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if p.DeletionTimestamp != nil {
			if !exited(&p) {
				left++
			}
			continue
		}
		left++
		ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace}}
		switch err := admin.CoreV1().Pods(p.Namespace).EvictV1(ctx, ev); {
		case err == nil:
			evicted++
		case apierrors.IsNotFound(err):
		case apierrors.IsTooManyRequests(err): // a disruption budget forbids it for now
			if !force {
				blocked++
				continue
			}
			if err := admin.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return left, blocked, evicted, fmt.Errorf("delete %s/%s (forced): %w", p.Namespace, p.Name, err)
			}
			evicted++
		default:
			return left, blocked, evicted, fmt.Errorf("evict %s/%s: %w", p.Namespace, p.Name, err)
		}
	}
	return left, blocked, evicted, nil
}

// exited reports whether every container of a terminating pod has ended:
// its graceful shutdown is over, and what the kubelet still does (the
// sandbox, the volumes, the final delete) goes with the node.
func exited(p *corev1.Pod) bool {
	if len(p.Status.ContainerStatuses) < len(p.Spec.Containers) {
		return false
	}
	for _, c := range p.Status.ContainerStatuses {
		if c.State.Terminated == nil {
			return false
		}
	}
	for _, set := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.EphemeralContainerStatuses} {
		for _, c := range set {
			if c.State.Running != nil {
				return false
			}
		}
	}
	return true
}

// uncordon makes node name schedulable again.
func uncordon(ctx context.Context, admin kubernetes.Interface, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := admin.CoreV1().Nodes().Patch(ctx, name, types.StrategicMergePatchType, []byte(`{"spec":{"unschedulable":false}}`), metav1.PatchOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("uncordon %s: %w", name, err)
	}
	return nil
}

// refuseReplace fails group g's version update because the pods on node
// n could not be evicted: the update is Failed (PodEvictionFailure), the
// group ACTIVE again at the version its old nodes run, and its old nodes
// schedulable. The new nodes stay until the group shrinks to its size.
func (r *Reconciler) refuseReplace(ctx context.Context, c *model.Cluster, g *model.Nodegroup, n *model.Node, admin kubernetes.Interface) error {
	old := nodeVersion(c, n)
	var uncordons []string
	_, err := r.cfg.Store.UpdateCluster(c.Key(), func(c *model.Cluster) error {
		fresh := c.Nodegroup(g.Name)
		if fresh == nil || fresh.Status != model.NodegroupUpdating {
			return nil
		}
		for i := range fresh.Nodes {
			x := &fresh.Nodes[i]
			if nodeVersion(c, x) == old {
				x.Draining, x.DrainStarted = false, time.Time{}
				uncordons = append(uncordons, x.Name)
			}
		}
		for i := range c.Updates {
			u := &c.Updates[i]
			if u.Nodegroup == g.Name && u.Status == model.UpdateInProgress {
				u.Status = model.UpdateFailed
				u.Errors = append(u.Errors, model.UpdateError{Code: "PodEvictionFailure",
					Message:     fmt.Sprintf("Reached max retries while trying to evict pods from node %s in node group %s: a PodDisruptionBudget refuses it (pass --force to delete them)", n.Name, g.Name),
					ResourceIDs: []string{n.ID}})
			}
		}
		fresh.Version, fresh.Force = old, false
		fresh.Status, fresh.ModifiedAt = model.NodegroupActive, time.Now().UTC()
		return nil
	})
	if err != nil {
		return err
	}
	for _, name := range uncordons {
		if err := uncordon(ctx, admin, name); err != nil {
			r.cfg.Log.Warn("uncordon after a failed update", "node", name, "err", err)
		}
	}
	r.event(c, n.Name, model.EventDetected, fmt.Sprintf("version update of node group %s failed: PodDisruptionBudgets kept pods on %s", g.Name, n.Name))
	return nil
}

// adoptVersions records the version of nodes a skiff that had nodes
// follow the cluster's version made (they run the cluster's), and moves
// an ACTIVE group whose nodes all run another version than its record
// (that skiff upgraded them in place with the cluster) to theirs.
func (r *Reconciler) adoptVersions(c *model.Cluster) error {
	stale := false
	for _, g := range c.Nodegroups {
		for _, n := range g.Nodes {
			stale = stale || n.Version == ""
		}
	}
	if !stale {
		return nil
	}
	_, err := r.cfg.Store.UpdateCluster(c.Key(), func(c *model.Cluster) error {
		for gi := range c.Nodegroups {
			g := &c.Nodegroups[gi]
			var versions []string
			for i := range g.Nodes {
				if g.Nodes[i].Version == "" {
					g.Nodes[i].Version = c.Version
				}
				if !slices.Contains(versions, g.Nodes[i].Version) {
					versions = append(versions, g.Nodes[i].Version)
				}
			}
			if g.Status == model.NodegroupActive && len(versions) == 1 {
				g.Version = versions[0]
			}
		}
		return nil
	})
	return err
}
