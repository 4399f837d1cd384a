package controlplane

import (
	"testing"
	"time"

	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/runtime"
)

// TestCondition: a condition keeps the time of its last status change
// while its status stays, whatever its reason and message.
func TestCondition(t *testing.T) {
	t0, t1 := time.Unix(100, 0), time.Unix(200, 0)
	prev := []model.Condition{{Type: StepEtcd, Status: model.ConditionFalse, Reason: "NotHealthy", Since: t0}}
	for _, tc := range []struct {
		name string
		o    outcome
		want time.Time
	}{
		{"same status, new message", working("NotHealthy", "1 of 3"), t0},
		{"same status, new reason", working("Error", "x"), t0},
		{"status changes", done("Healthy", "3 of 3"), t1},
	} {
		if got := condition(prev, StepEtcd, tc.o, t1); !got.Since.Equal(tc.want) || got.Status != tc.o.status || got.Message != tc.o.message {
			t.Errorf("%s: %+v, want since %v", tc.name, got, tc.want)
		}
	}
	if got := condition(prev, StepAPIServers, done("Healthy", ""), t1); !got.Since.Equal(t1) {
		t.Errorf("a new condition: since %v, want %v", got.Since, t1)
	}
}

// TestStepOrder: the steps run in the order the control plane needs
// (issue 16): network, PKI, endpoint, etcd, apiservers, controllers,
// authenticator, …, access, nodes, add-ons, status, insights (last: they
// never hold ACTIVE up); none twice.
func TestStepOrder(t *testing.T) {
	want := []string{StepNetwork, StepPKI, StepEndpoint, StepEtcd, StepAPIServers, StepControllers, StepAuthenticator,
		StepAccess, StepNodes, StepAddons, StepStatus, StepInsights}
	pos := map[string]int{}
	for i, s := range steps {
		if _, dup := pos[s.name]; dup && s.name != "" {
			t.Errorf("step %s twice", s.name)
		}
		pos[s.name] = i
	}
	for i := 1; i < len(want); i++ {
		a, aok := pos[want[i-1]]
		b, bok := pos[want[i]]
		if !aok || !bok || a >= b {
			t.Errorf("step %s (at %d, %v) must run before %s (at %d, %v)", want[i-1], a, aok, want[i], b, bok)
		}
	}
	if !steps[pos[StepPKI]].fatal {
		t.Error("the PKI step is not fatal: the instance steps would run without certificates")
	}
}

// TestStandbysWait: once an apiserver serves, the standby apiservers,
// controller-managers and schedulers wait for the first controller-manager
// and scheduler, standbyWait at most; the first ones and etcd never wait.
func TestStandbysWait(t *testing.T) {
	spec := func(role runtime.Role, name string) runtime.Spec {
		return runtime.Spec{ID: "c-1/" + name, Cluster: "c-1", Role: role}
	}
	for _, tc := range []struct {
		name   string
		s      runtime.Spec
		apiUp  bool
		ctrlUp bool
		since  time.Duration // since an apiserver serves
		want   bool
	}{
		{"the first controller-manager", spec(runtime.ControllerManager, "controller-manager-0"), true, false, 0, true},
		{"the first scheduler", spec(runtime.Scheduler, "scheduler-0"), true, false, 0, true},
		{"a standby controller-manager waits", spec(runtime.ControllerManager, "controller-manager-1"), true, false, time.Second, false},
		{"a standby scheduler waits", spec(runtime.Scheduler, "scheduler-1"), true, false, time.Second, false},
		{"a standby apiserver waits", spec(runtime.APIServer, "apiserver-1"), true, false, time.Second, false},
		{"standbys start once the controllers serve", spec(runtime.APIServer, "apiserver-1"), true, true, time.Second, true},
		{"… or after standbyWait", spec(runtime.ControllerManager, "controller-manager-1"), true, false, standbyWait + time.Second, true},
		{"etcd never waits", spec(runtime.Etcd, "etcd-b"), true, false, 0, true},
	} {
		e := New(Config{})
		w := &worker{Engine: e, apiUpAt: time.Now().Add(-tc.since)}
		p := &pass{c: &model.Cluster{ID: "c-1"}, specs: []runtime.Spec{tc.s}, observed: map[string]runtime.Status{}, apiUp: tc.apiUp, ctrlUp: tc.ctrlUp}
		if got := w.mayAct(p, 0); got != tc.want {
			t.Errorf("%s: mayAct = %v, want %v", tc.name, got, tc.want)
		}
	}
}
