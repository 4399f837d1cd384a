// Package nodes runs managed node groups: each node is a sandbox on this
// machine (its own network namespace on its VPC's bridge, its own
// containerd with its own root, state and socket, its own kubelet root and
// cgroup) that joins its cluster through `skiff node bootstrap`, the same
// command a self-managed node runs: DescribeCluster with IAM credentials,
// an `aws eks get-token`-style token mapped by the node role's EC2_LINUX
// access entry, then the kubelet's CSR flow.
//
// The reconciler is level-triggered like the control plane's: node group
// membership is desired state in the cluster record, sandboxes and
// processes are observed (namespaces, runtime instances, Kubernetes Node
// objects).
package nodes

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/netutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"skiff.dev/skiff/internal/bundle"
	"skiff.dev/skiff/internal/door"
	"skiff.dev/skiff/internal/images"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/network"
	"skiff.dev/skiff/internal/pki"
	"skiff.dev/skiff/internal/runtime"
	"skiff.dev/skiff/internal/store"
	"skiff.dev/skiff/internal/vpcnet"
)

// Labels every managed node carries.
const (
	NodegroupLabel = "eks.amazonaws.com/nodegroup"
	ZoneLabel      = "topology.kubernetes.io/zone"
	RegionLabel    = "topology.kubernetes.io/region"
	InstanceLabel  = "node.kubernetes.io/instance-type"
)

// Roles of node instances in the runtime.
const (
	Containerd runtime.Role = "containerd"
	Kubelet    runtime.Role = "kubelet"
)

// Config of a Reconciler.
type Config struct {
	DataDir  string
	Store    *store.Store
	Runtime  runtime.Runtime
	Bundles  *bundle.Catalog
	Network  *network.Service
	Region   string
	SkiffBin string
	// Credentials mints a node's IAM credentials: its node role assumed
	// with the node's name as session name.
	Credentials func(account, roleArn, session string) (keyID, secret, token string, err error)
	// API is skiff's AWS API, served to each VPC on a unix socket of its
	// own in SocketDir, where the VPC's doors (package door, instances)
	// forward what reaches the VPC's service address (APIPort).
	API       http.Handler
	SocketDir string
	// PullKey signs the nodes' registry credentials (pullToken).
	PullKey []byte
	// RegistryDir is the registry's storage: each cluster's door serves
	// it in the VPC (RegistryPort), not this process, so that nodes pull
	// while skiff is down.
	RegistryDir string
	// RegistryHost is the registry's name in ECR repository URIs
	// (HOST/ACCOUNT/NAME); nodes pull it from their VPC's registry.
	RegistryHost string
	// Host is this machine's capacity (measured when zero); nodes reserve
	// what exceeds their instance type.
	Host Host
	// Sandbox is how nodes are isolated: SandboxUserNS (the default) or
	// SandboxHost. NodeImage is the root of a system container (built by
	// images.NodeFiles), for SandboxUserNS.
	Sandbox   string
	NodeImage string
	// ReplaceDrainLimit is how long a node group's version update waits
	// for evictions that disruption budgets refuse before it fails
	// (DefaultReplaceDrainLimit when zero).
	ReplaceDrainLimit time.Duration
	Log               *slog.Logger
}

// Reconciler runs the nodes of every cluster.
type Reconciler struct {
	cfg Config

	mu        sync.Mutex
	setup     sync.Mutex              // one host-wide set-up at a time (nodes start in parallel)
	vpcs      map[string]*http.Server // the API on each VPC's socket, by VPC ID
	restarts  runtime.Backoff         // of node instances that exit
	sandboxes map[string]bool         // nodes whose sandbox this run built
	classes   map[string]bool         // clusters given RuntimeClass gvisor by this run
	rounds    map[string]time.Time    // last eviction round of each draining node
}

// New returns a reconciler.
func New(cfg Config) *Reconciler {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Sandbox == "" {
		cfg.Sandbox = SandboxUserNS
	}
	if cfg.Host.KiB == 0 {
		h, err := HostCapacity()
		if err != nil {
			cfg.Log.Warn("measure the host; nodes advertise all of it", "err", err)
		}
		cfg.Host = h
	}
	if cfg.ReplaceDrainLimit == 0 {
		cfg.ReplaceDrainLimit = DefaultReplaceDrainLimit
	}
	return &Reconciler{cfg: cfg, vpcs: map[string]*http.Server{}, sandboxes: map[string]bool{},
		classes: map[string]bool{}, rounds: map[string]time.Time{}}
}

// SetAPI sets the handler served in VPCs (it is built after the engine).
func (r *Reconciler) SetAPI(h http.Handler) { r.cfg.API = h }

// Network realizes cluster c's VPC, serves skiff's API in it and returns
// the namespace and address where c's endpoint must listen for its nodes.
func (r *Reconciler) Network(ctx context.Context, c *model.Cluster) (string, netip.Prefix, error) {
	if c.Network.VpcID == "" || len(c.Network.SubnetIDs) == 0 {
		return "", netip.Prefix{}, fmt.Errorf("cluster %s has no VPC", c.Name)
	}
	cidr, subnets, err := r.cfg.Network.Realization(c.Account, c.Network.VpcID)
	if err != nil {
		return "", netip.Prefix{}, err
	}
	v := vpcnet.VPC{ID: c.Network.VpcID, CIDR: cidr, Owner: r.owner()}
	for _, p := range subnets {
		v.Subnets = append(v.Subnets, p)
	}
	sort.Slice(v.Subnets, func(i, j int) bool { return v.Subnets[i].Addr().Less(v.Subnets[j].Addr()) })
	if err := vpcnet.EnsureVPC(ctx, v); err != nil {
		return "", netip.Prefix{}, err
	}
	ns := vpcnet.VPCNamespace(v.ID)
	if err := r.serveInVPC(v.ID); err != nil {
		return "", netip.Prefix{}, err
	}
	addr, err := netip.ParsePrefix(c.EndpointAddr)
	if err != nil {
		if addr, err = r.cfg.Network.AllocateAddr(c.Account, c.Network.SubnetIDs[0], "endpoint/"+c.ID); err != nil {
			return "", netip.Prefix{}, err
		}
		if _, err := r.cfg.Store.UpdateCluster(c.Key(), func(c *model.Cluster) error {
			c.EndpointAddr = addr.String()
			return nil
		}); err != nil {
			return "", netip.Prefix{}, err
		}
		c.EndpointAddr = addr.String()
	}
	// The endpoint's address lives on the VPC's bridge.
	if err := vpcnet.AddAddr(ctx, ns, netip.PrefixFrom(addr.Addr(), 32)); err != nil {
		return "", netip.Prefix{}, err
	}
	return ns, addr, nil
}

// serveInVPC serves skiff's API to VPC vpc on its socket (APISocket),
// once per VPC and skiff run. Requests carry the VPC in their context, and
// the caller's address as the door says.
func (r *Reconciler) serveInVPC(vpc string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.vpcs[vpc] != nil || r.cfg.API == nil {
		return nil
	}
	path := r.APISocket(vpc)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	// A socket left by an earlier skiff run: nobody answers it.
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("serve the API to VPC %s: %w", vpc, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return err
	}
	r.vpcs[vpc] = serveVPC(ln, fromDoor(r.cfg.API), vpc, defaultVPCLimits)
	return nil
}

// APISocket is where skiff serves its API to VPC vpc.
func (r *Reconciler) APISocket(vpc string) string {
	sum := sha256.Sum256([]byte(r.cfg.DataDir + "\x00" + vpc))
	return filepath.Join(r.cfg.SocketDir, "vpc-"+hex.EncodeToString(sum[:10])+".sock")
}

// fromDoor gives a request the caller's address that the door forwarded
// (only doors can reach the socket: it is root's, 0600).
func fromDoor(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		req.RemoteAddr = req.Header.Get(door.ClientHeader)
		req.Header.Del(door.ClientHeader)
		h.ServeHTTP(w, req)
	})
}

// vpcLimits bound what the clients in a VPC (nodes, and pods: anything
// in the VPC can reach the service address) may hold of a listener there.
type vpcLimits struct {
	Header, Read, Idle time.Duration // to send the headers, the whole request; idle keep-alive
	Conns              int           // connections served at once; more wait to be accepted
}

// defaultVPCLimits: a request is small (API calls, registry GETs: nothing
// is pushed here), so 30 s is ample to send one; replies (image layers)
// have no deadline. Nodes pull with a few connections each.
var defaultVPCLimits = vpcLimits{Header: 10 * time.Second, Read: 30 * time.Second, Idle: 90 * time.Second, Conns: 256}

// Door is what cluster c's door serves; ok is false
// while c's VPC is not realized.
func (r *Reconciler) Door(c *model.Cluster) (d door.Door, ok bool, err error) {
	if r.cfg.RegistryDir == "" || c.Network.VpcID == "" || c.EndpointAddr == "" {
		return door.Door{}, false, nil
	}
	cidr, _, err := r.cfg.Network.Realization(c.Account, c.Network.VpcID)
	if err != nil {
		return door.Door{}, false, err
	}
	ids, err := r.accountNodes(c.Account)
	if err != nil {
		return door.Door{}, false, err
	}
	svc := vpcnet.ServiceAddr(cidr).String()
	d = door.Door{VPC: c.Network.VpcID, Netns: vpcnet.VPCNamespace(c.Network.VpcID),
		Listen: net.JoinHostPort(svc, fmt.Sprint(RegistryPort)), Dir: r.cfg.RegistryDir,
		API: net.JoinHostPort(svc, fmt.Sprint(APIPort)), APISocket: r.APISocket(c.Network.VpcID),
		Material: door.Material{Account: c.Account, Key: r.cfg.PullKey, Nodes: slices.Sorted(maps.Keys(ids))}}
	return d, true, nil
}

// serveVPC serves h on ln to a VPC, within l; requests carry the VPC in
// their context.
func serveVPC(ln net.Listener, h http.Handler, vpc string, l vpcLimits) *http.Server {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: l.Header, ReadTimeout: l.Read, IdleTimeout: l.Idle,
		BaseContext: func(net.Listener) context.Context { return network.WithVPC(context.Background(), vpc) }}
	go srv.Serve(netutil.LimitListener(ln, l.Conns))
	return srv
}

// stopServing closes a VPC's API socket and removes it, also when an
// earlier skiff run (killed, or with a lost store) left it.
func (r *Reconciler) stopServing(vpc string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if srv := r.vpcs[vpc]; srv != nil {
		srv.Close()
	}
	delete(r.vpcs, vpc)
	if r.cfg.SocketDir != "" {
		os.Remove(r.APISocket(vpc))
	}
}

// Close stops the listeners in every VPC.
func (r *Reconciler) Close() {
	r.mu.Lock()
	vpcs := make([]string, 0, len(r.vpcs))
	for id := range r.vpcs {
		vpcs = append(vpcs, id)
	}
	r.mu.Unlock()
	for _, id := range vpcs {
		r.stopServing(id)
	}
}

func (r *Reconciler) nodeDir(c *model.Cluster, n *model.Node) paths {
	return paths{dir: filepath.Join(r.cfg.DataDir, "clusters", c.ID, "nodes", n.ID), run: filepath.Join(RunDir, n.ID),
		userns: r.cfg.Sandbox == SandboxUserNS}
}

func instanceID(c *model.Cluster, n *model.Node, role runtime.Role) string {
	return runtime.NodeInstanceID(c.ID, n.ID, role)
}

// Reconcile brings every node group of c to its desired nodes. keys
// makes the cluster's token authenticator know the credentials in the
// store: it is called once new node credentials are minted, before their
// kubelets start (a kubelet refused at its first request backs off for
// seconds).
func (r *Reconciler) Reconcile(ctx context.Context, c *model.Cluster, admin kubernetes.Interface, keys func(context.Context) error) error {
	if len(c.Nodegroups) == 0 {
		return nil
	}
	var errs []error
	if err := r.ApproveCSRs(ctx, c, admin); err != nil {
		errs = append(errs, err)
	}
	if err := r.runtimeClass(ctx, c, admin); err != nil {
		errs = append(errs, err)
	}
	if err := r.adoptVersions(c); err != nil {
		return err
	}
	all, err := r.cfg.Runtime.List(ctx)
	if err != nil {
		return err
	}
	observed := map[string]runtime.Status{}
	for _, st := range all {
		observed[st.ID] = st
	}
	knodes := map[string]corev1.Node{}
	if list, err := admin.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err == nil {
		for _, n := range list.Items {
			knodes[n.Name] = n
		}
	}
	// Over a copy: c is re-read below, and a group whose deletion
	// finishes in scale is gone from the fresh one (indexing c.Nodegroups
	// by the old length panicked).
	groups := slices.Clone(c.Nodegroups)
	for _, ng := range groups {
		if err := r.scale(ctx, c, &ng); err != nil {
			errs = append(errs, err)
			continue
		}
		// Re-read: scale may have changed membership.
		fresh, err := r.cfg.Store.GetCluster(c.Key())
		if err != nil {
			return err
		}
		c = fresh
		g := c.Nodegroup(ng.Name)
		if g == nil {
			continue
		}
		ready := map[string]bool{}
		var issues []model.Issue
		errs = append(errs, r.removeAll(ctx, c, g, admin))
		// Every node at once: a node's start mostly waits (its system
		// container building itself, its daemons starting).
		nodeErrs := make([]error, len(g.Nodes))
		var wg sync.WaitGroup
		for j := range g.Nodes {
			if !g.Nodes[j].Draining {
				wg.Add(1)
				go func() {
					defer wg.Done()
					nodeErrs[j] = r.ensureNode(ctx, c, g, &g.Nodes[j], observed, keys)
				}()
			}
		}
		wg.Wait()
		for j := range g.Nodes {
			n := &g.Nodes[j]
			if n.Draining {
				continue
			}
			if err := nodeErrs[j]; err != nil {
				errs = append(errs, err)
				issues = append(issues, model.Issue{Code: "NodeCreationFailure", Message: err.Error(), ResourceIDs: []string{n.ID}})
				continue
			}
			if kn, ok := knodes[n.Name]; ok && nodeReady(kn) {
				ready[n.ID] = true
			} else if time.Since(n.Created) > 2*time.Minute {
				issues = append(issues, model.Issue{Code: "NodeNotReady", Message: "node " + n.Name + " is not Ready; skiff restarts what exited", ResourceIDs: []string{n.ID}})
			}
		}
		if err := r.updateStatus(c, g.Name, ready, issues); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func nodeReady(n corev1.Node) bool {
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// scale adds nodes up to the desired count (spread over the group's
// subnets' zones) or marks the surplus for draining, in the store.
func (r *Reconciler) scale(ctx context.Context, c *model.Cluster, g *model.Nodegroup) error {
	want := g.Desired
	if g.Status == model.NodegroupDeleting {
		want = 0
	}
	// A version update keeps a surge of new nodes over the desired count
	// and drains a batch of old ones once the new ones are Ready.
	surge, drainNow := replacePlan(c, g)
	want += surge
	active := 0
	for _, n := range g.Nodes {
		if !n.Draining {
			active++
		}
	}
	if active == want && len(drainNow) == 0 {
		return nil
	}
	subnets, err := r.cfg.Network.Subnets(c.Account, g.Subnets)
	if err != nil {
		return err
	}
	perSubnet := map[string]int{}
	for _, n := range g.Nodes {
		if !n.Draining {
			perSubnet[n.Subnet]++
		}
	}
	// New nodes: addresses are allocated before the cluster is updated (the
	// store takes one writer at a time); unused ones are released.
	var added []model.Node
	for i := active; i < want; i++ {
		sn := subnets[0]
		for _, s := range subnets {
			if perSubnet[s.ID] < perSubnet[sn.ID] {
				sn = s
			}
		}
		id := newNodeID()
		addr, err := r.cfg.Network.AllocateAddr(c.Account, sn.ID, "node/"+id)
		if err != nil {
			r.release(added)
			return err
		}
		added = append(added, model.Node{ID: id, Name: NodeName(addr.Addr(), r.cfg.Region), Subnet: sn.ID, Zone: sn.Zone,
			Addr: addr.String(), Created: time.Now().UTC(), Version: groupVersion(c, g)})
		perSubnet[sn.ID]++
	}
	applied := false
	_, err = r.cfg.Store.UpdateCluster(c.Key(), func(c *model.Cluster) error {
		fresh := c.Nodegroup(g.Name)
		if fresh == nil || !slices.EqualFunc(fresh.Nodes, g.Nodes, func(a, b model.Node) bool { return a.ID == b.ID && a.Draining == b.Draining }) {
			return nil // changed meanwhile: the next pass plans again
		}
		fresh.Nodes = append(fresh.Nodes, added...)
		for i := range fresh.Nodes {
			if slices.Contains(drainNow, fresh.Nodes[i].ID) {
				fresh.Nodes[i].Draining = true
				active--
			}
		}
		for n := active; n > want; n-- {
			// A node of another version than the group's first (the new
			// nodes of an update that failed), then the newest node of
			// the fullest subnet.
			target := groupVersion(c, fresh)
			better := func(x, y *model.Node) bool {
				if xo, yo := nodeVersion(c, x) != target, nodeVersion(c, y) != target; xo != yo {
					return xo
				}
				return perSubnet[x.Subnet] > perSubnet[y.Subnet]
			}
			pick := -1
			for i := len(fresh.Nodes) - 1; i >= 0; i-- {
				if x := &fresh.Nodes[i]; !x.Draining && (pick < 0 || better(x, &fresh.Nodes[pick])) {
					pick = i
				}
			}
			fresh.Nodes[pick].Draining = true
			perSubnet[fresh.Nodes[pick].Subnet]--
		}
		applied = true
		return nil
	})
	if err != nil || !applied {
		r.release(added)
	}
	return err
}

func (r *Reconciler) release(nodes []model.Node) {
	for _, n := range nodes {
		r.cfg.Network.ReleaseAddrs("node/" + n.ID)
	}
}

func newNodeID() string {
	b := make([]byte, 9)
	rand.Read(b)
	return "i-" + hex.EncodeToString(b)[:17]
}

// ensureNode makes a node's sandbox and starts (or restarts) its
// containerd and kubelet.
func (r *Reconciler) ensureNode(ctx context.Context, c *model.Cluster, g *model.Nodegroup, n *model.Node, observed map[string]runtime.Status, keys func(context.Context) error) error {
	b, err := r.cfg.Bundles.Lookup(nodeVersion(c, n))
	if err != nil {
		return err
	}
	p := r.nodeDir(c, n)
	specs, settle, err := r.prepare(ctx, c, g, n, b, p, keys)
	if err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	for _, s := range specs {
		if s.Role != Sandbox && settle != nil {
			// The node's programs start once its system container is up.
			if err := settle(); err != nil {
				return fmt.Errorf("node %s: %w", n.Name, err)
			}
			settle = nil
		}
		st, ok := observed[s.ID]
		switch {
		case ok && st.Running && st.Hash == s.Hash():
			if time.Since(st.Started) > time.Minute {
				r.restarts.Reset(s.ID)
			}
			continue
		case ok && !st.Running:
			if !r.restarts.Ready(s.ID, time.Now()) {
				continue
			}
		}
		switch {
		case ok:
			if st.Running {
				r.cfg.Log.Info("replacing node instance with a changed spec", "instance", s.ID)
			} else {
				r.event(c, n.Name, model.EventDetected, fmt.Sprintf("%s exited (code %d)", s.Role, st.ExitCode))
			}
			if err := r.cfg.Runtime.Stop(ctx, s.ID, 2*time.Second); err != nil {
				return err
			}
			if st.Running || !st.Exited.IsZero() {
				defer r.event(c, n.Name, model.EventReplaced, string(s.Role)+" restarted")
			}
		}
		if err := r.cfg.Runtime.Start(ctx, s); err != nil {
			return fmt.Errorf("node %s: start %s: %w", n.Name, s.Role, err)
		}
	}
	return nil
}

// prepare writes a node's files, sandbox and credentials and returns its
// instance specs (in a system container: its first process; then
// containerd, then the kubelet through bootstrap) and, for a system
// container, what must run once its first process is (settle).
func (r *Reconciler) prepare(ctx context.Context, c *model.Cluster, g *model.Nodegroup, n *model.Node, b bundle.Bundle, p paths, keys func(context.Context) error) (specs []runtime.Spec, settle func() error, err error) {
	addr, err := netip.ParsePrefix(n.Addr)
	if err != nil {
		return nil, nil, err
	}
	cidr, _, err := r.cfg.Network.Realization(c.Account, c.Network.VpcID)
	if err != nil {
		return nil, nil, err
	}
	att := vpcnet.Attachment{VPC: vpcnet.VPC{ID: c.Network.VpcID, CIDR: cidr}, NodeID: n.ID, Addr: addr, PodCIDR: PodCIDR(addr.Addr()), Pods: PodRange}
	machine := "" // the instance the node's programs run in
	if p.userns {
		box, err := r.prepareSandbox(ctx, c, g, n, b.Path(), p)
		if err != nil {
			return nil, nil, err
		}
		specs = append(specs, box)
		settle = func() error { return r.settle(ctx, box.ID, att) }
		machine = box.ID
	} else {
		// The sandbox is built once per node and skiff run (a few `ip`
		// calls); a namespace that disappeared is built again.
		r.mu.Lock()
		built := r.sandboxes[n.ID]
		r.mu.Unlock()
		if _, err := os.Stat(vpcnet.NamespacePath(vpcnet.NodeNamespace(n.ID))); !built || err != nil {
			if err := vpcnet.AttachNode(ctx, att); err != nil {
				return nil, nil, err
			}
			if err := ensureCgroups(n.ID); err != nil {
				return nil, nil, err
			}
			r.mu.Lock()
			r.sandboxes[n.ID] = true
			r.mu.Unlock()
		}
		for _, d := range []string{p.dir, p.run, p.cniDir(), filepath.Join(p.dir, "pod-logs")} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return nil, nil, err
			}
		}
	}
	registry := net.JoinHostPort(vpcnet.ServiceAddr(cidr).String(), fmt.Sprint(RegistryPort))
	files := map[string]string{
		p.kubeletConfig(): kubeletConfig(p, n.ID, addr.Addr(), model.InstanceTypes[g.InstanceTypes[0]], r.cfg.Host),
		filepath.Join(p.cniDir(), "10-skiff.conflist"): cniConfig(p, PodCIDR(addr.Addr())),
		// No resolver: nothing on a node may ask the host's or an outside one.
		filepath.Join(p.etc(), "resolv.conf"): "# skiff nodes have no upstream resolver\noptions ndots:5\n",
	}
	maps.Copy(files, containerdFiles(p, n.ID, registry, r.cfg.RegistryHost, r.pullToken(c.Account, n.ID)))
	if p.userns {
		files[filepath.Join(p.etc(), "machine-id")] = machineID(n.ID)
	}
	for path, content := range files {
		if err := r.writeNodeFile(p, n, p.host(path), []byte(content)); err != nil {
			return nil, nil, err
		}
	}
	if key := credentialsKey(p.host(p.credentials())); key == "" || key != n.AccessKeyID {
		// The instance's credentials, minted once (the kubelet needs them
		// only until it has its certificate): the node role, session name
		// the instance ID, as EC2 does for an instance profile. The key is
		// recorded before the file is written: the token webhook knows the
		// node by it, and a file whose key the store lacks is minted again.
		id, secret, token, err := r.cfg.Credentials(c.Account, g.NodeRole, n.ID)
		if err != nil {
			return nil, nil, fmt.Errorf("assume node role %s: %w", g.NodeRole, err)
		}
		if err := r.recordNode(c, g.Name, n.ID, func(x *model.Node) { x.AccessKeyID = id }); err != nil {
			return nil, nil, fmt.Errorf("record node %s's credentials: %w", n.Name, err)
		}
		n.AccessKeyID = id
		creds := fmt.Sprintf("[default]\naws_access_key_id = %s\naws_secret_access_key = %s\naws_session_token = %s\n", id, secret, token)
		if err := r.writeNodeFile(p, n, p.host(p.credentials()), []byte(creds)); err != nil {
			return nil, nil, err
		}
		if keys != nil {
			if err := keys(ctx); err != nil {
				return nil, nil, fmt.Errorf("make node %s's credentials known to the authenticator: %w", n.Name, err)
			}
		}
	}
	// The kubelet's client certificate, issued once by skiff as the
	// cluster's CA (the kubelet rotates it later through a CSR): without
	// it the kubelet started anonymous, was refused until its bootstrap
	// CSR was signed, and registered only after its retry backoff.
	if _, err := os.Stat(p.host(p.clientCert())); err != nil {
		cert, key, err := pki.Issue(filepath.Join(r.cfg.DataDir, "clusters", c.ID, "pki"), pki.ClusterCA,
			pkix.Name{CommonName: "system:node:" + n.Name, Organization: []string{"system:nodes"}}, 0)
		if err != nil {
			return nil, nil, fmt.Errorf("node %s's client certificate: %w", n.Name, err)
		}
		if err := r.writeNodeFile(p, n, p.host(p.clientCert()), append(cert, key...)); err != nil {
			return nil, nil, err
		}
	}
	// A system container's programs run inside it (Spec.Machine: the
	// runtime enters it); a host-root node's are entered here.
	var enter []string
	if !p.userns {
		// Checked every pass (a statfs): containerd and the kubelet must
		// never start in the host's mount namespace.
		r.setup.Lock()
		err := ensureMountNS(ctx, p)
		r.setup.Unlock()
		if err != nil {
			return nil, nil, err
		}
		enter = []string{"nsenter", "--net=" + vpcnet.NamespacePath(vpcnet.NodeNamespace(n.ID)), "--mount=" + p.mountNS(), "--"}
	}
	labels := map[string]string{NodegroupLabel: g.Name, ZoneLabel: r.cfg.Region + n.Zone, RegionLabel: r.cfg.Region,
		InstanceLabel: g.InstanceTypes[0], "eks.amazonaws.com/capacityType": "ON_DEMAND", "eks.amazonaws.com/nodegroup-image": "skiff"}
	for k, v := range g.Labels {
		labels[k] = v
	}
	var lv []string
	for k, v := range labels {
		lv = append(lv, k+"="+v)
	}
	sort.Strings(lv)
	var taints []string
	for _, t := range g.Taints {
		taints = append(taints, t.Key+"="+t.Value+":"+taintEffect(t.Effect))
	}
	svc := "http://" + net.JoinHostPort(vpcnet.ServiceAddr(cidr).String(), fmt.Sprint(APIPort))
	spec := func(role runtime.Role, env []string, cmd ...string) runtime.Spec {
		return runtime.Spec{ID: instanceID(c, n, role), Cluster: c.ID, Role: role, Zone: n.Zone, Version: b.KubernetesVersion,
			Command: append(slices.Clone(enter), cmd...), Env: env, Files: []string{p.dir, p.run}, Machine: machine}
	}
	// What the kubelet's bootstrap runs: skiff and the bundle's binary,
	// on the host or as the node image mounts them.
	skiff, kube, rootDir := r.cfg.SkiffBin, b.Path(), filepath.Join(p.run, "kubelet") // short: the kubelet's sockets live there
	if p.userns {
		skiff, kube, rootDir = images.NodeMounts.Skiff, images.NodeMounts.Kube, "/var/lib/kubelet"
	}
	return append(specs,
		spec(Containerd, nil, "containerd", "--config", p.containerdConfig()),
		// The whole client environment is set: skiff's own (inherited)
		// must not point a node at the host.
		spec(Kubelet, []string{"AWS_SHARED_CREDENTIALS_FILE=" + p.credentials(), "AWS_ENDPOINT_URL=" + svc, "AWS_REGION=" + r.cfg.Region,
			"SKIFF_ENDPOINT=" + svc, "AWS_ENDPOINT_URL_EKS=" + svc, "AWS_ENDPOINT_URL_STS=" + svc, "AWS_PROFILE=", "AWS_CONFIG_FILE=/dev/null",
			"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_SESSION_TOKEN="},
			skiff, "node", "bootstrap", "--cluster", c.Name, "--dir", p.bootstrapDir(), "--kubelet", kube,
			"--node-name", n.Name, "--node-ip", addr.Addr().String(), "--config", p.kubeletConfig(), "--client-cert", p.clientCert(),
			"--root-dir", rootDir, "--labels", strings.Join(lv, ","), "--taints", strings.Join(taints, ",")),
	), settle, nil
}

// recordNode changes node id of group in c's record.
func (r *Reconciler) recordNode(c *model.Cluster, group, id string, change func(*model.Node)) error {
	_, err := r.cfg.Store.UpdateCluster(c.Key(), func(c *model.Cluster) error {
		if g := c.Nodegroup(group); g != nil {
			if x := g.Node(id); x != nil {
				change(x)
				return nil
			}
		}
		return fmt.Errorf("node %s is no longer in the store", id)
	})
	return err
}

// writeNodeFile writes a node's configuration file (host path) unless it
// holds content already. A system container's are readable by its root
// (the node's group), nobody else's; they live in a host-owned directory,
// so no path in them is the node's to redirect.
func (r *Reconciler) writeNodeFile(p paths, n *model.Node, path string, content []byte) error {
	if old, err := os.ReadFile(path); err == nil && string(old) == string(content) {
		return nil
	}
	mode, gid := os.FileMode(0o600), 0
	if p.userns {
		mode, gid = 0o640, int(n.IDBase)
	}
	var dirs []string
	for d := filepath.Dir(path); len(d) > len(p.dir); d = filepath.Dir(d) {
		dirs = append([]string{d}, dirs...)
	}
	for _, d := range dirs {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		if p.userns {
			if err := os.Chown(d, 0, gid); err != nil {
				return err
			}
			if err := os.Chmod(d, 0o750); err != nil {
				return err
			}
		}
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, content, mode); err != nil {
		return err
	}
	if err := os.Chown(tmp, 0, gid); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// machineID is a node's /etc/machine-id: 32 hex digits from its ID.
func machineID(nodeID string) string {
	sum := sha256.Sum256([]byte("skiff machine-id " + nodeID))
	return hex.EncodeToString(sum[:16]) + "\n"
}

func taintEffect(e string) string {
	switch e {
	case "NO_EXECUTE":
		return "NoExecute"
	case "PREFER_NO_SCHEDULE":
		return "PreferNoSchedule"
	}
	return "NoSchedule"
}

// removeAll removes the group's nodes chosen for removal, all at once:
// every one is cordoned first, so that no pod evicted from one lands on
// another that goes too (in a version update, every old node), then each
// is drained, a round per pass, and removed once empty.
func (r *Reconciler) removeAll(ctx context.Context, c *model.Cluster, g *model.Nodegroup, admin kubernetes.Interface) error {
	var doomed []*model.Node
	starting := false
	for j := range g.Nodes {
		if g.Nodes[j].Draining {
			doomed = append(doomed, &g.Nodes[j])
			starting = starting || g.Nodes[j].DrainStarted.IsZero()
		}
	}
	if len(doomed) == 0 {
		return nil
	}
	var errs []error
	if starting {
		for j := range g.Nodes {
			n := &g.Nodes[j]
			if !n.Draining && !replacing(c, g, n) || n.Draining && !n.DrainStarted.IsZero() {
				continue
			}
			if err := cordon(ctx, admin, n.Name); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs = make([]error, len(doomed))
	for i, n := range doomed {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.remove(ctx, c, g, n, admin)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// remove drains a node chosen for removal, a round of evictions at a
// time; once it is empty (or its drain gave up: drainVerdict) it deletes
// its Node object and sandbox, frees its address and drops it from the
// store.
func (r *Reconciler) remove(ctx context.Context, c *model.Cluster, g *model.Nodegroup, n *model.Node, admin kubernetes.Interface) error {
	if n.DrainStarted.IsZero() {
		now := time.Now().UTC()
		if err := r.recordNode(c, g.Name, n.ID, func(x *model.Node) { x.DrainStarted = now }); err != nil {
			return err
		}
		n.DrainStarted = now
	}
	r.mu.Lock()
	due := time.Since(r.rounds[n.ID]) >= drainRound
	if due {
		r.rounds[n.ID] = time.Now()
	}
	r.mu.Unlock()
	if !due {
		return nil
	}
	replace := replacing(c, g, n)
	left, blocked, _, err := evictRound(ctx, admin, n.Name, replace && g.Force)
	if err != nil {
		r.cfg.Log.Warn("drain", "node", n.Name, "err", err)
		left = max(left, 1)
	}
	drained := time.Since(n.DrainStarted)
	switch drainVerdict(left, blocked, drained, replace, r.cfg.ReplaceDrainLimit) {
	case drainWait:
		return nil
	case drainRefused:
		return r.refuseReplace(ctx, c, g, n, admin)
	}
	if left > 0 {
		r.cfg.Log.Warn("removing a node whose pods did not all go", "node", n.Name, "left", left, "after", drained.Round(time.Second))
	}
	t0 := time.Now()
	if err := r.destroy(ctx, c, n); err != nil {
		return err
	}
	destroyed := time.Since(t0)
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	admin.CoreV1().Nodes().Delete(dctx, n.Name, metav1.DeleteOptions{})
	cancel()
	_, err = r.cfg.Store.UpdateCluster(c.Key(), func(c *model.Cluster) error {
		if g := c.Nodegroup(g.Name); g != nil {
			g.Nodes = slices.DeleteFunc(g.Nodes, func(x model.Node) bool { return x.ID == n.ID })
		}
		return nil
	})
	if err == nil {
		r.mu.Lock()
		delete(r.rounds, n.ID)
		r.mu.Unlock()
		why := "removed from node group " + g.Name
		if replace {
			why = fmt.Sprintf("replaced by a node of Kubernetes %s in node group %s", groupVersion(c, g), g.Name)
		}
		r.event(c, n.Name, model.EventDeleted, fmt.Sprintf("node drained (%.1fs) and %s (%.1fs)", drained.Seconds(), why, destroyed.Seconds()))
	}
	return err
}

// destroy removes everything of a node on this machine.
func (r *Reconciler) destroy(ctx context.Context, c *model.Cluster, n *model.Node) error {
	return r.Forget(ctx, c.ID, n.ID)
}

// owner marks this skiff's VPC namespaces: a hash of its data dir.
func (r *Reconciler) owner() string {
	sum := sha256.Sum256([]byte(r.cfg.DataDir))
	return hex.EncodeToString(sum[:8])
}

// SweepVPCs deletes this skiff's VPC namespaces that no stored cluster
// uses (left by a crash or a lost store).
func (r *Reconciler) SweepVPCs(ctx context.Context, clusters []*model.Cluster) error {
	vpcs, _, err := vpcnet.Namespaces()
	if err != nil {
		return err
	}
	used := map[string]bool{}
	for _, c := range clusters {
		used[c.Network.VpcID] = true
	}
	var errs []error
	for _, vpc := range vpcs {
		if used[vpc] || vpcnet.OwnerOf(ctx, vpc) != r.owner() {
			continue
		}
		r.cfg.Log.Warn("removing orphan VPC namespace", "vpc", vpc)
		r.stopServing(vpc)
		errs = append(errs, vpcnet.DeleteVPC(ctx, vpc))
	}
	return errors.Join(errs...)
}

// Forget removes everything of node nodeID of cluster clusterID on this
// machine: processes, cgroups, mounts, namespaces, directories, address.
// It needs nothing from the store, so it also clears orphans (nodes of a
// cluster that is gone).
func (r *Reconciler) Forget(ctx context.Context, clusterID, nodeID string) error {
	// All at once and without grace: the node is going (drained first
	// when it was in use), and nothing of it is kept; a graceful stop of
	// its daemons cost ~2 s per node.
	roles := []runtime.Role{Kubelet, Containerd, Sandbox}
	start := time.Now()
	stopErrs := make([]error, len(roles))
	var wg sync.WaitGroup
	for i, role := range roles {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stopErrs[i] = r.cfg.Runtime.Stop(ctx, runtime.NodeInstanceID(clusterID, nodeID, role), 0)
		}()
	}
	wg.Wait()
	if err := errors.Join(stopErrs...); err != nil {
		return err
	}
	t := start
	took := []any{"node", nodeID}
	lap := func(what string) {
		took = append(took, what, time.Since(t).Round(time.Millisecond))
		t = time.Now()
	}
	lap("stop")
	p := paths{dir: filepath.Join(r.cfg.DataDir, "clusters", clusterID, "nodes", nodeID), run: filepath.Join(RunDir, nodeID)}
	r.mu.Lock()
	delete(r.sandboxes, nodeID)
	r.mu.Unlock()
	var errs []error
	errs = append(errs, killCgroups(ctx, nodeID))
	removeCgroupRoot()
	errs = append(errs, unmountUnder(p.dir, p.run))
	lap("cgroups-mounts")
	errs = append(errs, vpcnet.DetachNode(ctx, nodeID))
	lap("network")
	errs = append(errs, os.RemoveAll(p.dir), os.RemoveAll(p.run))
	lap("files")
	errs = append(errs, r.cfg.Network.ReleaseAddrs("node/"+nodeID), r.releaseIDs("node/"+nodeID))
	r.cfg.Log.Info("node removed", took...)
	return errors.Join(errs...)
}

// Teardown removes every node of c (a cluster being deleted) and its
// endpoint address.
func (r *Reconciler) Teardown(ctx context.Context, c *model.Cluster) error {
	var errs []error
	for _, g := range c.Nodegroups {
		for _, n := range g.Nodes {
			errs = append(errs, r.destroy(ctx, c, &n))
		}
	}
	errs = append(errs, r.cfg.Network.ReleaseAddrs("endpoint/"+c.ID))
	// The VPC's namespace goes with its last cluster (it is rebuilt from
	// the store when a cluster uses the VPC again).
	if c.Network.VpcID != "" {
		all, err := r.cfg.Store.ListClusters()
		if err != nil {
			return errors.Join(append(errs, err)...)
		}
		// Clusters being deleted do not count: two deleted at once would
		// each leave the namespace to the other.
		used := false
		for _, o := range all {
			used = used || o.ID != c.ID && o.Network.VpcID == c.Network.VpcID && o.Status != model.StatusDeleting
		}
		if !used {
			r.stopServing(c.Network.VpcID)
			errs = append(errs, vpcnet.DeleteVPC(ctx, c.Network.VpcID))
		}
	}
	return errors.Join(errs...)
}

// updateStatus records a group's readiness (ready: IDs of its Ready nodes):
// CREATING/UPDATING turn ACTIVE once every desired node is Ready; DELETING
// groups go once empty.
func (r *Reconciler) updateStatus(c *model.Cluster, name string, readyIDs map[string]bool, issues []model.Issue) error {
	var finished string
	_, err := r.cfg.Store.UpdateCluster(c.Key(), func(c *model.Cluster) error {
		g := c.Nodegroup(name)
		if g == nil {
			return nil
		}
		if g.Status == model.NodegroupDeleting {
			if len(g.Nodes) == 0 {
				c.Nodegroups = slices.DeleteFunc(c.Nodegroups, func(x model.Nodegroup) bool { return x.Name == name })
				finished = "node group " + name + " deleted"
			}
			return nil
		}
		g.Issues = issues
		active, ready := 0, 0
		for i, n := range g.Nodes {
			g.Nodes[i].Ready = readyIDs[n.ID]
			if !n.Draining {
				active++
			}
			if !n.Draining && readyIDs[n.ID] {
				ready++
			}
		}
		current := true // every node runs the group's version
		for _, n := range g.Nodes {
			current = current && nodeVersion(c, &n) == groupVersion(c, g)
		}
		done := ready == g.Desired && active == g.Desired && len(g.Nodes) == active && current
		switch {
		case (g.Status == model.NodegroupCreating || g.Status == model.NodegroupUpdating) && done:
			finished = fmt.Sprintf("node group %s %s: %d nodes Ready", name, strings.ToLower(g.Status), ready)
			g.Status = model.NodegroupActive
			for i := range c.Updates {
				if c.Updates[i].Nodegroup == name && c.Updates[i].Status == model.UpdateInProgress {
					c.Updates[i].Status = model.UpdateSuccessful
				}
			}
			g.Force = false
		case g.Status == model.NodegroupActive && len(issues) > 0:
			g.Status = model.NodegroupDegraded
		case g.Status == model.NodegroupDegraded && len(issues) == 0 && done:
			g.Status = model.NodegroupActive
		}
		return nil
	})
	if err == nil && finished != "" {
		r.event(c, "", model.EventUpdated, finished)
	}
	return err
}

func (r *Reconciler) event(c *model.Cluster, instance, typ, reason string) {
	ev := model.Event{Time: time.Now(), Cluster: c.ID, Instance: instance, Type: typ, Reason: reason}
	r.cfg.Log.Info("event", "cluster", c.Name, "instance", instance, "type", typ, "reason", reason)
	r.cfg.Store.AddEvent(ev)
}

// credentialsKey is the access key ID in a node's credentials file, or "".
func credentialsKey(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == "aws_access_key_id" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
