package controlplane

import "testing"

// TestOnlyHooks: an apiserver whose /livez fails only on post-start hooks
// is starting, not broken.
func TestOnlyHooks(t *testing.T) {
	for _, tc := range []struct {
		body string
		want bool
	}{
		{"[+]ping ok\n[+]log ok\n[-]poststarthook/rbac/bootstrap-roles failed: reason withheld\n[+]poststarthook/start-apiextensions-controllers ok\nlivez check failed\n", true},
		{"[+]ping ok\n[-]poststarthook/rbac/bootstrap-roles failed: reason withheld\n[-]poststarthook/priority-and-fairness-config-producer failed: reason withheld\nlivez check failed\n", true},
		{"[+]ping ok\n[-]log failed: reason withheld\n[-]poststarthook/rbac/bootstrap-roles failed: reason withheld\nlivez check failed\n", false},
		{"[+]ping ok\n[+]log ok\nlivez check passed\n", false},
		{"", false},
		{"Unauthorized", false},
	} {
		if got := onlyHooks([]byte(tc.body)); got != tc.want {
			t.Errorf("onlyHooks(%q) = %v, want %v", tc.body, got, tc.want)
		}
	}
}
