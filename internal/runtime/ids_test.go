package runtime

import "testing"

func TestNodeOf(t *testing.T) {
	for id, want := range map[string]string{
		NodeInstanceID("web-1a2b3c", "i-0123456789abcdef0", "kubelet"):    "i-0123456789abcdef0",
		NodeInstanceID("web-1a2b3c", "i-0123456789abcdef0", "containerd"): "i-0123456789abcdef0",
		"web-1a2b3c/etcd-a":       "",
		"web-1a2b3c/apiserver-0":  "",
		"web-1a2b3c/node-kubelet": "",
	} {
		if got := NodeOf(id); got != want {
			t.Errorf("NodeOf(%q) = %q, want %q", id, got, want)
		}
	}
}
