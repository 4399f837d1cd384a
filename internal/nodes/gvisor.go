package nodes

import (
	"context"
	"fmt"
	"path/filepath"

	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"skiff.dev/skiff/internal/model"
)

// gVisor on system-container nodes: pods of RuntimeClass gvisor run in a
// gVisor sandbox (runsc and its containerd shim, built from gVisor's Go
// module: `make images`), inside the node's user namespace: a second
// boundary for workloads whose owners want one (docs/security.md).

// RuntimeHandler is the CRI runtime handler of gVisor on a node (the
// handler of each cluster's RuntimeClass "gvisor").
const RuntimeHandler = "runsc"

func (p paths) runscConfig() string { return filepath.Join(p.etc(), "containerd", "runsc.toml") }

// gvisorRuntime is containerd's runtime for pods of RuntimeClass gvisor:
// gVisor's own shim, which runs every container of a pod in one gVisor
// sandbox. Only system-container nodes have it (their image holds runsc).
func gvisorRuntime(p paths) string {
	if !p.userns {
		return ""
	}
	return fmt.Sprintf(`    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.%[1]s]
      runtime_type = "io.containerd.runsc.v1"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.%[1]s.options]
        TypeUrl = "io.containerd.runsc.v1.options"
        ConfigPath = %[2]q
`, RuntimeHandler, p.runscConfig())
}

// runscConfig is the configuration gVisor's shim passes to runsc inside a
// node. runsc leaves cgroups alone (it cannot manage the v1 hierarchies
// from the node's user namespace): a gVisor pod is bounded by its node's
// cgroup, not by its own requests and limits. The sandbox uses the pod's
// network namespace through the kernel's network stack (network=host of
// that namespace; gVisor's own stack fails on this kernel:
// docs/security.md).
const runscConfig = `[runsc_config]
  ignore-cgroups = "true"
  network = "host"
`

// RuntimeClass is the RuntimeClass through which pods choose gVisor.
const RuntimeClass = "gvisor"

// runtimeClass gives a cluster with system-container nodes RuntimeClass
// gvisor (once per cluster and run of skiff; a deleted one comes back at
// the next start). Host-root nodes have no gVisor runtime.
func (r *Reconciler) runtimeClass(ctx context.Context, c *model.Cluster, admin kubernetes.Interface) error {
	r.mu.Lock()
	done := r.classes[c.ID]
	r.mu.Unlock()
	if done || r.cfg.Sandbox != SandboxUserNS {
		return nil
	}
	rc := &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: RuntimeClass,
		Labels: map[string]string{"app.kubernetes.io/managed-by": "skiff"}}, Handler: RuntimeHandler}
	if _, err := admin.NodeV1().RuntimeClasses().Create(ctx, rc, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("RuntimeClass %s: %w", RuntimeClass, err)
	}
	r.mu.Lock()
	r.classes[c.ID] = true
	r.mu.Unlock()
	return nil
}
