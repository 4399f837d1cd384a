package nodes

import (
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"skiff.dev/skiff/internal/model"
)

// TestReplacePlan walks a 3-node group's version update with
// maxUnavailable 1: a new node first, an old one drained only once the
// new ones are Ready and no batch drains, until no old node is left.
func TestReplacePlan(t *testing.T) {
	c := &model.Cluster{Version: "1.37"}
	node := func(id, v string, ready, draining bool) model.Node {
		return model.Node{ID: id, Version: v, Ready: ready, Draining: draining}
	}
	g := func(status string, nodes ...model.Node) *model.Nodegroup {
		return &model.Nodegroup{Name: "ng", Version: "1.37", Desired: 3, Status: status, Nodes: nodes}
	}
	for _, tt := range []struct {
		name  string
		g     *model.Nodegroup
		surge int
		drain []string
	}{
		{"not updating", g(model.NodegroupActive, node("a", "1.36", true, false)), 0, nil},
		{"start: surge one", g(model.NodegroupUpdating, node("a", "1.36", true, false), node("b", "1.36", true, false), node("c", "1.36", true, false)), 1, nil},
		{"new node not Ready yet", g(model.NodegroupUpdating, node("a", "1.36", true, false), node("b", "1.36", true, false), node("c", "1.36", true, false), node("d", "1.37", false, false)), 1, nil},
		{"new node Ready: drain the oldest", g(model.NodegroupUpdating, node("a", "1.36", true, false), node("b", "1.36", true, false), node("c", "1.36", true, false), node("d", "1.37", true, false)), 1, []string{"a"}},
		{"a batch drains: wait", g(model.NodegroupUpdating, node("a", "1.36", true, true), node("b", "1.36", true, false), node("c", "1.36", true, false), node("d", "1.37", true, false), node("e", "1.37", true, false)), 1, nil},
		{"last old node", g(model.NodegroupUpdating, node("c", "1.36", true, false), node("d", "1.37", true, false), node("e", "1.37", true, false), node("f", "1.37", true, false)), 1, []string{"c"}},
		{"done", g(model.NodegroupUpdating, node("d", "1.37", true, false), node("e", "1.37", true, false), node("f", "1.37", true, false)), 0, nil},
		{"legacy nodes run the cluster's version", g(model.NodegroupUpdating, node("a", "", true, false)), 0, nil},
	} {
		surge, drain := replacePlan(c, tt.g)
		if surge != tt.surge || !slices.Equal(drain, tt.drain) {
			t.Errorf("%s: replacePlan = %d, %v; want %d, %v", tt.name, surge, drain, tt.surge, tt.drain)
		}
	}
	// maxUnavailablePercentage 67 of 3: two at a time.
	two := g(model.NodegroupUpdating, node("a", "1.36", true, false), node("b", "1.36", true, false), node("c", "1.36", true, false), node("d", "1.37", true, false), node("e", "1.37", true, false))
	two.UpdateConfig.MaxUnavailablePercentage = 67
	if surge, drain := replacePlan(c, two); surge != 2 || !slices.Equal(drain, []string{"a", "b"}) {
		t.Errorf("two at a time: replacePlan = %d, %v", surge, drain)
	}
}

func TestDrainVerdict(t *testing.T) {
	limit := time.Minute
	for _, tt := range []struct {
		name          string
		left, blocked int
		elapsed       time.Duration
		replace       bool
		want          drainStep
	}{
		{"empty", 0, 0, 0, true, drainDone},
		{"scale-down, pods going", 2, 0, time.Second, false, drainWait},
		{"scale-down gives up", 2, 2, ScaleDownDrainLimit + time.Second, false, drainDone},
		{"update waits for a budget", 1, 1, ScaleDownDrainLimit + time.Second, true, drainWait},
		{"update refused by a budget", 1, 1, limit + time.Second, true, drainRefused},
		{"update: pods stuck terminating", 1, 0, limit + ScaleDownDrainLimit + time.Second, true, drainDone},
	} {
		if got := drainVerdict(tt.left, tt.blocked, tt.elapsed, tt.replace, limit); got != tt.want {
			t.Errorf("%s: drainVerdict = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestExited(t *testing.T) {
	term := corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}
	run := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	wait := corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}
	pod := func(init, main []corev1.ContainerState, spec int) *corev1.Pod {
		p := &corev1.Pod{}
		for range spec {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{})
		}
		for _, s := range init {
			p.Status.InitContainerStatuses = append(p.Status.InitContainerStatuses, corev1.ContainerStatus{State: s})
		}
		for _, s := range main {
			p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{State: s})
		}
		return p
	}
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
		want bool
	}{
		{"no status yet", pod(nil, nil, 1), false},
		{"one of two reported", pod(nil, []corev1.ContainerState{term}, 2), false},
		{"running", pod(nil, []corev1.ContainerState{run}, 1), false},
		{"still creating", pod(nil, []corev1.ContainerState{wait}, 1), false},
		{"one of two still running", pod(nil, []corev1.ContainerState{term, run}, 2), false},
		{"all ended", pod(nil, []corev1.ContainerState{term, term}, 2), true},
		{"init running", pod([]corev1.ContainerState{run}, []corev1.ContainerState{term}, 1), false},
		{"init never ran", pod([]corev1.ContainerState{wait}, []corev1.ContainerState{term}, 1), true},
	} {
		if got := exited(tc.pod); got != tc.want {
			t.Errorf("%s: exited = %v, want %v", tc.name, got, tc.want)
		}
	}
}
