// Package runtime defines how skiff places control-plane instances: an
// instance is data (Spec), and a Runtime starts, stops and observes it.
//
// Today's runtime is package process (supervised local processes); a later
// one can place the same specs as pods on a host Kubernetes cluster. Every
// instance carries markers (its ID and spec hash) so that a runtime can
// rediscover what it runs after skiff itself crashed, as kind does with
// container labels: the reconciler never relies on in-memory state alone.
package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// Role is a control-plane component.
type Role string

const (
	Etcd              Role = "etcd"
	APIServer         Role = "apiserver"
	ControllerManager Role = "controller-manager"
	Scheduler         Role = "scheduler"
	// Endpoint is a replica of a cluster's load-balanced endpoint.
	Endpoint Role = "endpoint"
	// Authenticator is a replica of a cluster's IAM token authenticator.
	Authenticator Role = "authenticator"
	// Tunnel is a cluster's egress from its apiservers into its VPC.
	Tunnel Role = "tunnel"
	// Door serves the registry and skiff's API to a cluster's VPC.
	Door Role = "door"
	// KMSPlugin wraps the data keys of a cluster's Secrets with its KMS key.
	KMSPlugin Role = "kms-plugin"
)

// Spec is one instance of a component.
type Spec struct {
	// ID is unique within one skiff: "CLUSTER/NAME", e.g. "prod/etcd-a".
	ID      string `json:"id"`
	Cluster string `json:"cluster"`
	Role    Role   `json:"role"`
	Zone    string `json:"zone"`
	// Version is the Kubernetes version of the bundle the command comes from.
	Version string `json:"version"`
	// Command is the binary and its arguments.
	Command []string `json:"command"`
	Env     []string `json:"env,omitempty"`
	// Files are the host paths (files or directories) the instance reads or
	// writes; a remote runtime must ship or mount them.
	Files []string `json:"files,omitempty"`
	// Hostname, if set, is the name the instance sees as its host's, as
	// on a machine of its own (a UTS namespace here): kube-apiserver
	// derives its identity lease from it, so two on one host must differ.
	Hostname string `json:"hostname,omitempty"`
	// UserNS, if set, makes the instance a machine of its own (a worker
	// node): it runs as root of a user namespace that maps its IDs 0…Size-1
	// to the host's Base…Base+Size-1, with its own mount, PID, IPC, UTS and
	// network namespaces. It starts with a copy of the host's mounts (the
	// command builds its own root from it) and no network device but lo.
	// The runtime gives it a cgroup of its own, delegated to its root
	// (the root of its cgroup namespace), and reports, once it has built
	// itself, where its network namespace is (Status.NetNS).
	UserNS *IDMap `json:"userns,omitempty"`
	// Machine, if set, is the ID of the UserNS instance (a machine: a
	// worker node) this instance runs inside of, as a container of a pod
	// does: in the machine's namespaces and cgroup, as its root. The
	// runtime resolves where the machine is; Start fails with
	// ErrMachineNotReady until the machine has built itself.
	Machine string `json:"machine,omitempty"`
}

// ErrMachineNotReady is Start's error for an instance whose machine does
// not run, or has not built itself yet: try again later.
var ErrMachineNotReady = errors.New("its machine is not ready")

// IDMap is a range of host user and group IDs.
type IDMap struct {
	Base uint32 `json:"base"`
	Size uint32 `json:"size"`
}

// Hash identifies the spec's content; a running instance whose hash differs
// from the desired spec's must be replaced.
func (s Spec) Hash() string {
	data, _ := json.Marshal(s)
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:8])
}

// Name is the instance's name within its cluster ("etcd-a").
func (s Spec) Name() string { return NameOf(s.ID) }

// NameOf returns the part of an instance ID after the cluster.
func NameOf(id string) string {
	_, name, _ := strings.Cut(id, "/")
	return name
}

// ClusterOf returns the cluster part of an instance ID.
func ClusterOf(id string) string {
	cluster, _, _ := strings.Cut(id, "/")
	return cluster
}

// NodeInstanceID names an instance of a worker node (its containerd or
// kubelet): "CLUSTER/node-NODE-ROLE". Control-plane workers leave them to
// the node reconciler.
func NodeInstanceID(cluster, node string, role Role) string {
	return cluster + "/node-" + node + "-" + string(role)
}

// IsNodeInstance reports whether id names an instance of a worker node.
func IsNodeInstance(id string) bool { return strings.HasPrefix(NameOf(id), "node-") }

// NodeOf returns the node of a node instance's ID ("" for other instances).
func NodeOf(id string) string {
	if !IsNodeInstance(id) {
		return ""
	}
	rest := strings.TrimPrefix(NameOf(id), "node-")
	if i := strings.LastIndexByte(rest, '-'); i > 0 {
		return rest[:i]
	}
	return ""
}

// Status is what a runtime observes of an instance.
type Status struct {
	ID      string
	Hash    string // hash of the spec it was started from
	Running bool
	PID     int // for local processes; 0 elsewhere
	Started time.Time
	// For an instance that is no longer running: when and how it ended, if known.
	Exited   time.Time
	ExitCode int
	Log      string // where its output goes
	// NetNS is, for a machine (Spec.UserNS) that has built itself, the
	// file of its network namespace: what the node's network attaches to.
	NetNS string
}

// ExitNotifier is a runtime that tells at once when an instance ends by
// itself (optional: a runtime without it is observed by List alone).
type ExitNotifier interface {
	// NotifyExit has fn called, on a goroutine of its own, with the ID of
	// each instance that ends without being stopped. One fn at a time.
	NotifyExit(fn func(id string))
}

// Runtime places instances: it decides where they live (Placer) and
// starts, stops and observes them. Implementations must be safe for
// concurrent use.
type Runtime interface {
	Placer
	// Start starts an instance from spec. Starting an ID that is already
	// running is an error.
	Start(ctx context.Context, spec Spec) error
	// Stop asks the instance to end, kills it after grace, and forgets it.
	// Stopping an unknown or ended instance is not an error.
	Stop(ctx context.Context, id string, grace time.Duration) error
	// List returns every instance the runtime holds, including those
	// started before skiff restarted and those that have ended but were not
	// yet stopped (Running false).
	List(ctx context.Context) ([]Status, error)
}
