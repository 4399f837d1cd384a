package nodes

import (
	"context"
	"strings"
	"testing"

	"skiff.dev/skiff/internal/model"
)

// The apiservers' egress reaches a cluster's own nodes and pods only.
func TestDialRefuses(t *testing.T) {
	r := New(Config{Host: Host{MilliCPU: 1000, KiB: 1 << 20}})
	c := &model.Cluster{Name: "a", Network: model.ClusterNetwork{VpcID: "vpc-test"},
		Nodegroups: []model.Nodegroup{{Name: "ng", Nodes: []model.Node{{ID: "i-1", Addr: "172.31.0.5/20"}}}}}
	for _, addr := range []string{
		"172.31.0.6:10250", // in the VPC, not a node of the cluster
		"127.0.0.1:2379",   // the host
		"10.100.0.1:443",   // a Service address (not routed in the VPC)
		"ip-172-31-0-5:10250",
		"172.31.0.5",
	} {
		if _, err := r.Dial(context.Background(), c, addr); err == nil || strings.Contains(err.Error(), "namespace") {
			t.Errorf("Dial(%s) = %v, want a refusal before any namespace", addr, err)
		}
	}
	// A node's or a pod's address gets through the check (and fails only
	// because this test has no VPC namespace).
	for _, addr := range []string{"172.31.0.5:10250", "100.64.1.66:8080"} {
		if _, err := r.Dial(context.Background(), c, addr); err == nil || !strings.Contains(err.Error(), "namespace") {
			t.Errorf("Dial(%s) = %v, want it to try the VPC's namespace", addr, err)
		}
	}
}
