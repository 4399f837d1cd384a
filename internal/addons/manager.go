package addons

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"skiff.dev/skiff/internal/addons/catalog"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/store"
)

// Manager reconciles clusters' add-ons: desired state in the store (the
// managed add-ons and whether the self-managed ones were installed),
// observed state from each cluster's API.
type Manager struct {
	Store   *store.Store
	Catalog catalog.Catalog
	Params  func(c *model.Cluster) Params
	Log     *slog.Logger

	mu      sync.Mutex
	applied map[string]applied   // cluster ID/add-on → last apply
	checked map[string]time.Time // what was last found as wanted, when
}

// recheck is how often what was found as wanted (the "kubernetes"
// endpoints, an ACTIVE add-on's health) is looked at again: the worker
// passes twice a second, the API need not be asked that often.
const recheck = 15 * time.Second

// due reports whether key was not found as wanted within recheck.
func (m *Manager) due(key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return time.Since(m.checked[key]) > recheck
}

// ok records that key was found as wanted now.
func (m *Manager) ok(key string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.checked == nil {
		m.checked = map[string]time.Time{}
	}
	m.checked[key] = time.Now()
}

type applied struct {
	key string
	at  time.Time
}

// reapply is how often a managed add-on's objects are applied again when
// nothing changed (someone may have edited or deleted them).
const reapply = time.Minute

// degradedAfter is how long an add-on may take to become healthy before
// it counts as DEGRADED (or CREATE_FAILED when it never was).
const degradedAfter = 3 * time.Minute

// Reconcile brings cluster c's add-ons to their desired state. It runs
// once the cluster has its endpoint inside its VPC (taken at creation),
// which kube-proxy's kubeconfig names.
func (m *Manager) Reconcile(ctx context.Context, c *model.Cluster, admin kubernetes.Interface) error {
	if c.EndpointAddr == "" {
		return nil
	}
	p := m.Params(c)
	if key := "endpoints/" + c.ID + "/" + c.EndpointAddr; m.due(key) {
		if err := kubernetesEndpoints(ctx, admin, c.EndpointAddr); err != nil {
			return err
		}
		m.ok(key)
	}
	if !c.SkipSelfManagedAddons && !c.AddonsBootstrapped {
		for _, name := range m.Catalog.Names() {
			if c.Addon(name) != nil {
				continue
			}
			docs, err := Render(name, m.Catalog.Default(name, c.Version), catalog.Config{}, p)
			if err != nil {
				return err
			}
			if err := Apply(ctx, admin, docs); err != nil {
				return fmt.Errorf("install self-managed %s: %w", name, err)
			}
		}
		if _, err := m.Store.UpdateCluster(c.Key(), func(c *model.Cluster) error {
			c.AddonsBootstrapped = true
			return nil
		}); err != nil {
			return err
		}
		m.Log.Info("self-managed add-ons installed", "cluster", c.Name)
	}
	var errs []error
	for _, a := range c.Addons {
		if err := m.reconcile(ctx, c, a, p, admin); err != nil {
			errs = append(errs, fmt.Errorf("add-on %s: %w", a.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) reconcile(ctx context.Context, c *model.Cluster, a model.Addon, p Params, admin kubernetes.Interface) error {
	cfg, err := catalog.ParseConfig(a.Name, a.ConfigurationValues)
	if err != nil {
		return err // validated when stored; a bad record stays as it is
	}
	docs, err := Render(a.Name, a.Version, cfg, p)
	if err != nil {
		return err
	}
	id := c.ID + "/" + a.Name
	if a.Status == model.AddonDeleting {
		if !a.Preserve {
			if err := Remove(ctx, admin, docs); err != nil {
				return err
			}
		}
		m.forget(id)
		_, err := m.Store.UpdateCluster(c.Key(), func(c *model.Cluster) error {
			c.Addons = slices.DeleteFunc(c.Addons, func(x model.Addon) bool { return x.Name == a.Name && x.Status == model.AddonDeleting })
			return nil
		})
		return err
	}
	key := string(docs)
	m.mu.Lock()
	last := m.applied[id]
	m.mu.Unlock()
	if last.key != key || time.Since(last.at) > reapply {
		if err := Apply(ctx, admin, docs); err != nil {
			return err
		}
		m.mu.Lock()
		if m.applied == nil {
			m.applied = map[string]applied{}
		}
		m.applied[id] = applied{key: key, at: time.Now()}
		m.mu.Unlock()
	}
	if a.Status == model.AddonActive && !m.due("health/"+id) {
		return nil
	}
	healthy, why, err := Health(ctx, admin, a.Name)
	if err != nil {
		return err
	}
	if healthy {
		m.ok("health/" + id)
	}
	status, issues := a.Status, []model.Issue(nil)
	switch {
	case healthy:
		status = model.AddonActive
	case time.Since(a.ModifiedAt) < degradedAfter && (a.Status == model.AddonCreating || a.Status == model.AddonUpdating):
		// still rolling out
	case a.Status == model.AddonCreating:
		status, issues = model.AddonCreateFailed, []model.Issue{{Code: "InsufficientNumberOfReplicas", Message: why}}
	default:
		status, issues = model.AddonDegraded, []model.Issue{{Code: "InsufficientNumberOfReplicas", Message: why}}
	}
	if status == a.Status && fmt.Sprint(issues) == fmt.Sprint(a.Issues) {
		return nil
	}
	_, err = m.Store.UpdateCluster(c.Key(), func(c *model.Cluster) error {
		cur := c.Addon(a.Name)
		if cur == nil || cur.Status != a.Status || cur.ModifiedAt != a.ModifiedAt {
			return nil // changed meanwhile: the next pass looks again
		}
		cur.Status, cur.Issues = status, issues
		if status == model.AddonActive && cur.UpdateID != "" {
			for i := range c.Updates {
				if c.Updates[i].ID == cur.UpdateID && c.Updates[i].Status == model.UpdateInProgress {
					c.Updates[i].Status = model.UpdateSuccessful
				}
			}
			cur.UpdateID = ""
		}
		return nil
	})
	if err == nil && status != a.Status {
		m.Log.Info("add-on", "cluster", c.Name, "addon", a.Name, "status", status, "why", why)
	}
	return err
}

func (m *Manager) forget(id string) {
	m.mu.Lock()
	delete(m.applied, id)
	delete(m.checked, "health/"+id)
	m.mu.Unlock()
}

// kubernetesEndpoints points the "kubernetes" Service at the endpoint's
// address in the VPC (the apiservers listen on the host, where pods cannot
// reach them; EKS points it at its interfaces in the VPC the same way).
func kubernetesEndpoints(ctx context.Context, admin kubernetes.Interface, endpointAddr string) error {
	p, err := netip.ParsePrefix(endpointAddr)
	if err != nil {
		return err
	}
	ip := p.Addr().String()
	const port = 443
	ep := &corev1.Endpoints{
		ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default",
			Labels: map[string]string{discoveryv1.LabelSkipMirror: "true"}},
		Subsets: []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{{IP: ip}},
			Ports: []corev1.EndpointPort{{Name: "https", Port: port, Protocol: corev1.ProtocolTCP}}}},
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default",
			Labels: map[string]string{discoveryv1.LabelServiceName: "kubernetes", discoveryv1.LabelManagedBy: "skiff"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("https"), Port: ptr.To[int32](port), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	// The slice is what kube-proxy and CoreDNS read; Endpoints (deprecated,
	// for older clients) is written along with it, so a correct slice means
	// nothing to do.
	curSlice, err := admin.DiscoveryV1().EndpointSlices("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err == nil && len(curSlice.Endpoints) == 1 && slices.Equal(curSlice.Endpoints[0].Addresses, []string{ip}) {
		return nil
	}
	cur, err := admin.CoreV1().Endpoints("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	switch {
	case err != nil:
		if _, err := admin.CoreV1().Endpoints("default").Create(ctx, ep, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("kubernetes endpoints: %w", err)
		}
	case !endpointsAre(cur, ip, port):
		cur.Subsets, cur.Labels = ep.Subsets, ep.Labels
		if _, err := admin.CoreV1().Endpoints("default").Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("kubernetes endpoints: %w", err)
		}
	}
	curSlice, err = admin.DiscoveryV1().EndpointSlices("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	switch {
	case err != nil:
		if _, err := admin.DiscoveryV1().EndpointSlices("default").Create(ctx, slice, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("kubernetes endpoint slice: %w", err)
		}
	case len(curSlice.Endpoints) != 1 || !slices.Equal(curSlice.Endpoints[0].Addresses, []string{ip}):
		curSlice.Endpoints, curSlice.Ports, curSlice.Labels = slice.Endpoints, slice.Ports, slice.Labels
		if _, err := admin.DiscoveryV1().EndpointSlices("default").Update(ctx, curSlice, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("kubernetes endpoint slice: %w", err)
		}
	}
	return nil
}

func endpointsAre(ep *corev1.Endpoints, ip string, port int32) bool {
	return len(ep.Subsets) == 1 && len(ep.Subsets[0].Addresses) == 1 && ep.Subsets[0].Addresses[0].IP == ip &&
		len(ep.Subsets[0].Ports) == 1 && ep.Subsets[0].Ports[0].Port == port
}
