package addons

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"skiff.dev/skiff/internal/addons/catalog"
)

// FieldManager is the server-side apply manager of managed add-ons' fields.
const FieldManager = "eks"

// object is one manifest document, enough to address it.
type object struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
	} `json:"metadata"`
	json []byte
}

// split parses YAML documents.
func split(docs []byte) ([]object, error) {
	var out []object
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(docs)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, fmt.Errorf("manifest: %w", err)
		}
		var o object
		if err := yaml.Unmarshal(js, &o); err != nil {
			return nil, err
		}
		o.json = js
		out = append(out, o)
	}
}

// resource is where an object kind lives in the API.
func resource(admin kubernetes.Interface, o object) (rest.Interface, string, error) {
	switch o.APIVersion + "/" + o.Kind {
	case "v1/ServiceAccount":
		return admin.CoreV1().RESTClient(), "serviceaccounts", nil
	case "v1/ConfigMap":
		return admin.CoreV1().RESTClient(), "configmaps", nil
	case "v1/Service":
		return admin.CoreV1().RESTClient(), "services", nil
	case "apps/v1/Deployment":
		return admin.AppsV1().RESTClient(), "deployments", nil
	case "apps/v1/DaemonSet":
		return admin.AppsV1().RESTClient(), "daemonsets", nil
	case "rbac.authorization.k8s.io/v1/ClusterRole":
		return admin.RbacV1().RESTClient(), "clusterroles", nil
	case "rbac.authorization.k8s.io/v1/ClusterRoleBinding":
		return admin.RbacV1().RESTClient(), "clusterrolebindings", nil
	}
	return nil, "", fmt.Errorf("add-on manifest: unsupported kind %s %s", o.APIVersion, o.Kind)
}

// Apply server-side applies the objects of docs as FieldManager, taking
// over conflicting fields (resolveConflicts OVERWRITE).
func Apply(ctx context.Context, admin kubernetes.Interface, docs []byte) error {
	objs, err := split(docs)
	if err != nil {
		return err
	}
	for _, o := range objs {
		rc, res, err := resource(admin, o)
		if err != nil {
			return err
		}
		req := rc.Patch(types.ApplyPatchType).Resource(res).Name(o.Metadata.Name).
			Param("fieldManager", FieldManager).Param("force", "true").Body(o.json)
		if o.Metadata.Namespace != "" {
			req = req.Namespace(o.Metadata.Namespace)
		}
		if err := req.Do(ctx).Error(); err != nil {
			return fmt.Errorf("apply %s %s: %w", o.Kind, o.Metadata.Name, err)
		}
	}
	return nil
}

// Remove deletes the objects of docs (missing ones are fine).
func Remove(ctx context.Context, admin kubernetes.Interface, docs []byte) error {
	objs, err := split(docs)
	if err != nil {
		return err
	}
	bg := metav1.DeletePropagationBackground
	for _, o := range objs {
		rc, res, err := resource(admin, o)
		if err != nil {
			return err
		}
		req := rc.Delete().Resource(res).Name(o.Metadata.Name).Body(&metav1.DeleteOptions{PropagationPolicy: &bg})
		if o.Metadata.Namespace != "" {
			req = req.Namespace(o.Metadata.Namespace)
		}
		if err := req.Do(ctx).Error(); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete %s %s: %w", o.Kind, o.Metadata.Name, err)
		}
	}
	return nil
}

// Health tells whether an add-on's workload is fully available; if not,
// why.
func Health(ctx context.Context, admin kubernetes.Interface, name string) (bool, string, error) {
	switch name {
	case catalog.CoreDNS:
		d, err := admin.AppsV1().Deployments("kube-system").Get(ctx, "coredns", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		if d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedReplicas == want && d.Status.AvailableReplicas == want {
			return true, "", nil
		}
		return false, fmt.Sprintf("%d of %d CoreDNS replicas available", d.Status.AvailableReplicas, want), nil
	case catalog.KubeProxy:
		ds, err := admin.AppsV1().DaemonSets("kube-system").Get(ctx, "kube-proxy", metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		st := ds.Status
		if st.ObservedGeneration >= ds.Generation && st.UpdatedNumberScheduled == st.DesiredNumberScheduled && st.NumberAvailable == st.DesiredNumberScheduled {
			return true, "", nil
		}
		return false, fmt.Sprintf("%d of %d kube-proxy pods available", st.NumberAvailable, st.DesiredNumberScheduled), nil
	}
	return false, "", fmt.Errorf("no add-on %q", name)
}
