package sandbox

import (
	"reflect"
	"strings"
	"testing"
)

func TestHierarchies(t *testing.T) {
	mountinfo := `30 24 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
36 30 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:12 - cgroup cgroup rw,cpu,cpuacct
39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
41 24 0:38 / /mnt/other rw - cgroup cgroup rw,memory
`
	got, err := hierarchies(strings.NewReader(mountinfo))
	if err != nil {
		t.Fatal(err)
	}
	want := []Hierarchy{{"/sys/fs/cgroup/cpu", "cpu"}, {"/sys/fs/cgroup/cpu,cpuacct", "cpu,cpuacct"}, {"/sys/fs/cgroup/systemd", "xattr,name=systemd"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
}
