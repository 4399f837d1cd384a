package console

import (
	"fmt"
	"html/template"
	"slices"
	"strings"
	"time"

	"skiff.dev/skiff/internal/model"
)

// Health states, shown as words (and, by the stylesheet, as colours).
const (
	stateHealthy   = "healthy"
	stateUnhealthy = "unhealthy"
	stateStarting  = "starting"
	stateDown      = "down"
)

// item is one box of the topology: a control-plane instance or a node.
type item struct {
	Name   string
	Kind   string // the role, or "node"
	State  string // one of the state* words
	Detail string // the last probe's error, a node's address
}

// zone is one availability zone's column of the topology.
type zone struct {
	Name  string // us-east-1a
	Items []item
}

// roleOrder is the order of roles in a zone's column: the data, the API,
// the controllers, then the cluster's front door and helpers.
var roleOrder = []string{"etcd", "apiserver", "controller-manager", "scheduler", "endpoint", "authenticator", "tunnel", "door", "kms-plugin"}

func roleRank(role string) int {
	if i := slices.Index(roleOrder, role); i >= 0 {
		return i
	}
	return len(roleOrder)
}

// instanceState is an instance's health in one word and its detail.
func instanceState(in model.InstanceStatus) (string, string) {
	switch {
	case in.Healthy:
		return stateHealthy, ""
	case !in.Running:
		return stateDown, in.Error
	case in.Error != "":
		return stateUnhealthy, in.Error
	}
	return stateStarting, ""
}

// zoneName is a zone as EKS users know it: the region and its letter.
func zoneName(region, z string) string {
	if z == "" {
		return region + " (regional)"
	}
	if len(z) == 1 {
		return region + z
	}
	return z
}

// nodeView is a node as the console shows it.
type nodeView struct {
	Group, Name, Zone, Addr, State string
}

// nodeState is a node's state in one word.
func nodeState(n model.Node) string {
	switch {
	case n.Draining:
		return "draining"
	case n.Ready:
		return stateHealthy
	}
	return stateStarting
}

// topology lays a cluster's instances and nodes out by zone: the zones in
// order, each with its instances by role, then its nodes.
func topology(region string, seen model.ControlPlaneStatus, nodes []nodeView) []zone {
	byZone := map[string]*zone{}
	var order []string
	get := func(z string) *zone {
		name := zoneName(region, z)
		if byZone[name] == nil {
			byZone[name] = &zone{Name: name}
			order = append(order, name)
		}
		return byZone[name]
	}
	ins := slices.Clone(seen.Instances)
	slices.SortStableFunc(ins, func(a, b model.InstanceStatus) int {
		if d := roleRank(a.Role) - roleRank(b.Role); d != 0 {
			return d
		}
		return strings.Compare(a.Name, b.Name)
	})
	for _, in := range ins {
		state, detail := instanceState(in)
		z := get(in.Zone)
		z.Items = append(z.Items, item{Name: in.Name, Kind: in.Role, State: state, Detail: detail})
	}
	for _, n := range nodes {
		z := get(n.Zone)
		z.Items = append(z.Items, item{Name: n.Name, Kind: "node", State: n.State, Detail: n.Group + " · " + n.Addr})
	}
	slices.Sort(order)
	out := make([]zone, 0, len(order))
	for _, name := range order {
		out = append(out, *byZone[name])
	}
	return out
}

// age is a duration as the console prints an age: "12s", "5m", "3h", "2d".
func age(since, now time.Time) string {
	d := now.Sub(since)
	switch {
	case since.IsZero():
		return ""
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// statusClass is the stylesheet's class of an EKS status word.
func statusClass(status string) string {
	switch status {
	case "ACTIVE", "Active", "SUCCESSFUL", stateHealthy:
		return "ok"
	case "CREATING", "UPDATING", "DELETING", "InProgress", stateStarting, "draining":
		return "busy"
	case "FAILED", "Failed", "DEGRADED", "CREATE_FAILED", "DELETE_FAILED", "Cancelled", stateUnhealthy, stateDown:
		return "bad"
	}
	return "idle"
}

// stamp is a time as the console prints it.
func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// newer tells whether Kubernetes version a ("1.37") is newer than b.
func newer(a, b string) bool {
	minor := func(v string) (int, int) {
		var x, y int
		fmt.Sscanf(v, "%d.%d", &x, &y)
		return x, y
	}
	ax, ay := minor(a)
	bx, by := minor(b)
	return ax > bx || ax == bx && ay > by
}

var funcs = template.FuncMap{
	"statusClass": statusClass,
	"has":         slices.Contains[[]string],
	"tabTitle": func(s string) string {
		return map[string]string{"addons": "Add-ons"}[s]
	},
	"title": func(s string) string {
		if s == "" {
			return s
		}
		return strings.ToUpper(s[:1]) + s[1:]
	},
	"time": stamp,
}
