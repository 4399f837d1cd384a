// Package layers holds a test of skiff's dependency direction: API
// handlers → services → store ← reconcilers → runtime. No handler or
// lifecycle code may import a reconciler, the runtime or the instances'
// programs (issue 16).
package layers

import (
	"os/exec"
	"strings"
	"testing"
)

func TestHandlersImportNoReconciler(t *testing.T) {
	forbidden := []string{"internal/controlplane", "internal/addons", "internal/nodes", "internal/runtime",
		"internal/vpcnet", "internal/endpoint", "internal/authenticator", "internal/tunnel"}
	for _, pkg := range []string{"skiff.dev/skiff/internal/api/...", "skiff.dev/skiff/internal/clusters", "skiff.dev/skiff/internal/network",
		"skiff.dev/skiff/internal/kms"} {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		deps := strings.Fields(string(out))
		if len(deps) < 10 {
			t.Fatalf("go list -deps %s: only %v (the check could not fail)", pkg, deps)
		}
		for _, d := range deps {
			for _, f := range forbidden {
				// internal/addons/catalog is pure data: allowed.
				if strings.HasSuffix(d, "skiff/"+f) || strings.Contains(d, "skiff/"+f+"/") && !strings.HasSuffix(d, "addons/catalog") {
					t.Errorf("%s depends on %s", pkg, d)
				}
			}
		}
	}
}

// TestRuntimeImportsNoReconciler: reconcilers use the runtime, never the
// other way (the runtime decides where, from specs alone).
func TestRuntimeImportsNoReconciler(t *testing.T) {
	forbidden := []string{"internal/controlplane", "internal/addons", "internal/nodes", "internal/vpcnet",
		"internal/clusters", "internal/api", "internal/store"}
	out, err := exec.Command("go", "list", "-deps", "skiff.dev/skiff/internal/runtime/...").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	sawSandbox := false
	for _, d := range deps {
		sawSandbox = sawSandbox || strings.HasSuffix(d, "skiff/internal/sandbox")
		for _, f := range forbidden {
			if strings.HasSuffix(d, "skiff/"+f) || strings.Contains(d, "skiff/"+f+"/") {
				t.Errorf("the runtime depends on %s", d)
			}
		}
	}
	if !sawSandbox {
		t.Fatalf("go list -deps: the process runtime's sandbox is missing from %d deps (the check could not fail)", len(deps))
	}
}
