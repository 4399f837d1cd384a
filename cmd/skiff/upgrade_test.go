package main

import (
	"errors"
	"slices"
	"testing"

	"skiff.dev/skiff/internal/model"
)

// TestNextMinor: the default target of `skiff upgrade cluster` is the
// minor after the cluster's; what is not MAJOR.MINOR is an error.
func TestNextMinor(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"1.36", "1.37"},
		{"1.9", "1.10"},
		{"1.99", "1.100"},
		{"2.0", "2.1"},
		{"", ""},
		{"1", ""},
		{"1.", ""},
		{".36", ""},
		{"1.x", ""},
		{"v1.36", ""},
		{"1.36.2", ""},
		{"1.+36", ""},
		{"1.-1", ""},
	} {
		got, err := nextMinor(tc.in)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("nextMinor(%q) = %q, want an error", tc.in, got)
		case tc.want != "" && (err != nil || got != tc.want):
			t.Errorf("nextMinor(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func newInsight(name, category, version, status, reason, description string) insight {
	in := insight{Name: name, Category: category, KubernetesVersion: version, Description: description}
	in.InsightStatus.Status, in.InsightStatus.Reason = status, reason
	return in
}

// TestUpgradeInsights: the insights for the target version are shown, or
// all upgrade readiness insights when none is for it; other categories never.
func TestUpgradeInsights(t *testing.T) {
	apis37 := newInsight("Deprecated APIs removed in Kubernetes v1.37", upgradeReadiness, "1.37", "PASSING", "", "")
	skew37 := newInsight("Kubelet version skew", upgradeReadiness, "1.37", "ERROR", "", "")
	apis36 := newInsight("Deprecated APIs removed in Kubernetes v1.36", upgradeReadiness, "1.36", "PASSING", "", "")
	other := newInsight("Misconfiguration", "MISCONFIGURATION", "1.37", "WARNING", "", "")
	noCategory := newInsight("Cluster health", "", "1.38", "UNKNOWN", "", "")
	for _, tc := range []struct {
		name    string
		all     []insight
		version string
		want    []string
		matched bool
	}{
		{"for the version", []insight{apis36, apis37, other, skew37}, "1.37", []string{apis37.Name, skew37.Name}, true},
		{"none for the version: all readiness", []insight{apis36, apis37, other, noCategory}, "1.39", []string{apis36.Name, apis37.Name, noCategory.Name}, false},
		{"only other categories", []insight{other}, "1.37", nil, false},
		{"none", nil, "1.37", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			shown, matched := upgradeInsights(tc.all, tc.version)
			var names []string
			for _, in := range shown {
				names = append(names, in.Name)
			}
			if !slices.Equal(names, tc.want) || matched != tc.matched {
				t.Errorf("upgradeInsights(…, %s) = %q, %t; want %q, %t", tc.version, names, matched, tc.want, tc.matched)
			}
		})
	}
}

// TestInsightLine: "STATUS  name: reason", statuses aligned, the
// description standing in for a missing reason.
func TestInsightLine(t *testing.T) {
	for _, tc := range []struct {
		in   insight
		want string
	}{
		{newInsight("Kubelet version skew", upgradeReadiness, "1.37", "ERROR", "node group ng-1 runs 1.33", "checks skew"),
			"ERROR    Kubelet version skew: node group ng-1 runs 1.33"},
		{newInsight("Deprecated APIs", upgradeReadiness, "1.37", "PASSING", "No deprecated API usage detected", ""),
			"PASSING  Deprecated APIs: No deprecated API usage detected"},
		{newInsight("Add-on versions", upgradeReadiness, "1.37", "WARNING", "", "Checks add-on compatibility"),
			"WARNING  Add-on versions: Checks add-on compatibility"},
		{newInsight("Cluster health", upgradeReadiness, "1.37", "", "", ""),
			"UNKNOWN  Cluster health"},
	} {
		if got := insightLine(tc.in); got != tc.want {
			t.Errorf("insightLine(%s) = %q, want %q", tc.in.Name, got, tc.want)
		}
	}
}

// TestInsightsUnavailable: a failed ListInsights is one line.
func TestInsightsUnavailable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{errors.New("ResourceNotFoundException: No cluster found for name: demo."),
			"upgrade insights: unavailable (ResourceNotFoundException: No cluster found for name: demo.)"},
		{errors.New("POST /clusters/demo/insights: 404 Not Found: 404 page not found\n"),
			"upgrade insights: unavailable (POST /clusters/demo/insights: 404 Not Found: 404 page not found)"},
	} {
		if got := insightsUnavailable(tc.err); got != tc.want {
			t.Errorf("insightsUnavailable(%q) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestUpdateErrors: a failed update's errors, as the command reports them.
func TestUpdateErrors(t *testing.T) {
	eviction := model.UpdateError{Code: "PodEvictionFailure", Message: "Reached max retries while trying to evict pods from node ip-1", ResourceIDs: []string{"i-1"}}
	other := model.UpdateError{Code: "Other", Message: "the new nodes did not become Ready"}
	for _, tc := range []struct {
		name string
		u    update
		want string
	}{
		{"failed", update{Status: model.UpdateFailed, Errors: []model.UpdateError{eviction}},
			"upgrade of node group ng-1 to 1.37 failed: PodEvictionFailure: Reached max retries while trying to evict pods from node ip-1; see 'skiff events demo'"},
		{"two errors", update{Status: model.UpdateFailed, Errors: []model.UpdateError{eviction, other}},
			"upgrade of node group ng-1 to 1.37 failed: PodEvictionFailure: Reached max retries while trying to evict pods from node ip-1; Other: the new nodes did not become Ready; see 'skiff events demo'"},
		{"no errors", update{Status: model.UpdateFailed},
			"upgrade of node group ng-1 to 1.37 failed: no error reported; see 'skiff events demo'"},
		{"cancelled", update{Status: "Cancelled"},
			"upgrade of node group ng-1 to 1.37 ended Cancelled: no error reported; see 'skiff events demo'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := updateFailure("node group ng-1", "1.37", "demo", &tc.u).Error(); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestUpdateParam: the version an update reports, else the requested one.
func TestUpdateParam(t *testing.T) {
	u := update{Params: []model.UpdateParam{{Type: "PlatformVersion", Value: "eks.1"}, {Type: "Version", Value: "1.37"}}}
	if got := u.param("Version", "1.37.1"); got != "1.37" {
		t.Errorf("param(Version) = %q, want 1.37", got)
	}
	if got := (&update{}).param("Version", "1.37"); got != "1.37" {
		t.Errorf("param(Version) of no params = %q, want the default 1.37", got)
	}
}

// TestUpgradeProgress: the progress lines show the steps not done and how
// many nodes run the target version.
func TestUpgradeProgress(t *testing.T) {
	snap := instancesView{
		Instances: []instanceView{{Name: "etcd-0", Zone: "a", Healthy: true}, {Name: "apiserver-0", Zone: "a"}},
		Conditions: []conditionView{
			{Type: "PKI", Status: model.ConditionTrue, Reason: "Issued"},
			{Type: "APIServer", Status: model.ConditionFalse, Reason: "Replacing"},
			{Type: "Endpoint", Status: model.ConditionUnknown, Reason: "Waiting"},
		},
	}
	if got, want := controlPlaneProgress(snap), "1/2 up  a: etcd-0 ✓ apiserver-0 …  (APIServer: Replacing)"; got != want {
		t.Errorf("controlPlaneProgress = %q, want %q", got, want)
	}
	snap.Conditions = snap.Conditions[:1]
	if got, want := controlPlaneProgress(snap), "1/2 up  a: etcd-0 ✓ apiserver-0 …"; got != want {
		t.Errorf("controlPlaneProgress, all steps done = %q, want %q", got, want)
	}

	g := model.Nodegroup{Status: model.NodegroupUpdating, Desired: 2, Nodes: []model.Node{
		{Name: "ip-172-31-0-4.ec2.internal", Zone: "a", Version: "1.36", Ready: true, Draining: true},
		{Name: "ip-172-31-16-4.ec2.internal", Zone: "b", Version: "1.36", Ready: true},
		{Name: "ip-172-31-0-5.ec2.internal", Zone: "a", Version: "1.37", Ready: true},
	}}
	want := "1/3 at 1.37 | UPDATING 3/2 Ready | a: ip-172-31-0-4 draining ip-172-31-0-5 ✓ | b: ip-172-31-16-4 ✓"
	if got := nodegroupUpgradeProgress(g, "1.37"); got != want {
		t.Errorf("nodegroupUpgradeProgress = %q, want %q", got, want)
	}
}
