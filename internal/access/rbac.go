package access

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"skiff.dev/skiff/internal/model"
)

// Labels on every RBAC object skiff owns for access entries.
const (
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedBy      = "skiff"
	EntryLabel     = "skiff.dev/access-entry" // hash of the principal ARN
	PrincipalAnno  = "skiff.dev/principal-arn"
)

var selector = ManagedByLabel + "=" + ManagedBy + "," + EntryLabel

// entryHash names an entry in labels and object names.
func entryHash(principalArn string) string {
	sum := sha256.Sum256([]byte(principalArn))
	return hex.EncodeToString(sum[:])[:16]
}

// Desired returns the bindings cluster c's access entries call for, given
// the cluster's namespaces (for scopes that name a prefix*): one
// ClusterRoleBinding per cluster-scoped policy, one RoleBinding per
// namespace of a namespace-scoped one, each binding the entry's group.
func Desired(c *model.Cluster, namespaces []string) ([]rbacv1.ClusterRoleBinding, []rbacv1.RoleBinding) {
	var crbs []rbacv1.ClusterRoleBinding
	var rbs []rbacv1.RoleBinding
	if c.AuthenticationMode == ModeConfigMap {
		return nil, nil
	}
	if slices.ContainsFunc(c.AccessEntries, func(e model.AccessEntry) bool { return e.Type == model.AccessEntryEC2Linux }) {
		// Nodes (EC2_LINUX entries) join through the kubelet's CSR flow, as
		// kubeadm and EKS set it up: bootstrappers may request certificates,
		// nodes may renew their own.
		for name, bind := range map[string][2]string{
			"skiff:node-bootstrapper":      {"system:bootstrappers", "system:node-bootstrapper"},
			"skiff:node-certificate-renew": {"system:nodes", "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient"},
		} {
			crbs = append(crbs, rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{ManagedByLabel: ManagedBy, EntryLabel: "nodes"}},
				Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: bind[0]}},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: bind[1]},
			})
		}
	}
	for _, e := range c.AccessEntries {
		h := entryHash(e.PrincipalArn)
		subject := []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: EntryGroup(e.PrincipalArn)}}
		for _, a := range e.Policies {
			p, ok := PolicyByArn(a.PolicyArn)
			if !ok {
				continue
			}
			meta := metav1.ObjectMeta{
				Name:        "skiff:access:" + h + ":" + p.Name,
				Labels:      map[string]string{ManagedByLabel: ManagedBy, EntryLabel: h},
				Annotations: map[string]string{PrincipalAnno: e.PrincipalArn},
			}
			ref := rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: p.ClusterRole}
			if a.Scope.Type == "cluster" {
				crbs = append(crbs, rbacv1.ClusterRoleBinding{ObjectMeta: meta, Subjects: subject, RoleRef: ref})
				continue
			}
			for _, ns := range matchNamespaces(a.Scope.Namespaces, namespaces) {
				m := *meta.DeepCopy()
				m.Namespace = ns
				rbs = append(rbs, rbacv1.RoleBinding{ObjectMeta: m, Subjects: subject, RoleRef: ref})
			}
		}
	}
	return crbs, rbs
}

// matchNamespaces expands a scope's names: exact names as given (the
// binding waits until the namespace exists), prefix* against existing ones.
func matchNamespaces(scope, existing []string) []string {
	set := map[string]bool{}
	for _, s := range scope {
		if pre, ok := strings.CutSuffix(s, "*"); ok {
			for _, ns := range existing {
				if strings.HasPrefix(ns, pre) {
					set[ns] = true
				}
			}
			continue
		}
		set[s] = true
	}
	out := make([]string, 0, len(set))
	for ns := range set {
		out = append(out, ns)
	}
	sort.Strings(out)
	return out
}

// adminViewRole backs AmazonEKSAdminViewPolicy.
func adminViewRole() *rbacv1.ClusterRole {
	return &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: AdminViewRole, Labels: map[string]string{ManagedByLabel: ManagedBy}},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"get", "list", "watch"}}},
	}
}

// Sync makes the cluster's skiff-owned RBAC match c's access entries:
// creates what is missing, replaces what differs, deletes what no entry
// calls for. It is idempotent; a binding in a namespace that does not exist
// yet is retried at the next call.
func Sync(ctx context.Context, client kubernetes.Interface, c *model.Cluster) error {
	rbac := client.RbacV1()
	nsList, err := client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list namespaces: %w", err)
	}
	existingNS := map[string]bool{}
	var names []string
	for _, ns := range nsList.Items {
		if ns.DeletionTimestamp == nil {
			existingNS[ns.Name] = true
			names = append(names, ns.Name)
		}
	}
	wantCRB, wantRB := Desired(c, names)
	if _, err := rbac.ClusterRoles().Get(ctx, AdminViewRole, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		if _, err := rbac.ClusterRoles().Create(ctx, adminViewRole(), metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create ClusterRole %s: %w", AdminViewRole, err)
		}
	}
	var errs []error

	haveCRB, err := rbac.ClusterRoleBindings().List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return fmt.Errorf("list ClusterRoleBindings: %w", err)
	}
	keep := map[string]bool{}
	for _, want := range wantCRB {
		keep[want.Name] = true
		var have *rbacv1.ClusterRoleBinding
		for i := range haveCRB.Items {
			if haveCRB.Items[i].Name == want.Name {
				have = &haveCRB.Items[i]
			}
		}
		if have != nil && same(have.ObjectMeta, want.ObjectMeta, have.Subjects, want.Subjects, have.RoleRef, want.RoleRef) {
			continue
		}
		if have != nil { // the role ref is immutable: replace
			if err := rbac.ClusterRoleBindings().Delete(ctx, have.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
				continue
			}
		}
		if _, err := rbac.ClusterRoleBindings().Create(ctx, &want, metav1.CreateOptions{}); err != nil {
			errs = append(errs, fmt.Errorf("create ClusterRoleBinding %s: %w", want.Name, err))
		}
	}
	for _, have := range haveCRB.Items {
		if !keep[have.Name] {
			if err := rbac.ClusterRoleBindings().Delete(ctx, have.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
			}
		}
	}

	haveRB, err := rbac.RoleBindings(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list RoleBindings: %w", err))...)
	}
	keep = map[string]bool{}
	for _, want := range wantRB {
		if !existingNS[want.Namespace] {
			continue // not yet
		}
		key := want.Namespace + "/" + want.Name
		keep[key] = true
		var have *rbacv1.RoleBinding
		for i := range haveRB.Items {
			if haveRB.Items[i].Namespace+"/"+haveRB.Items[i].Name == key {
				have = &haveRB.Items[i]
			}
		}
		if have != nil && same(have.ObjectMeta, want.ObjectMeta, have.Subjects, want.Subjects, have.RoleRef, want.RoleRef) {
			continue
		}
		if have != nil {
			if err := rbac.RoleBindings(have.Namespace).Delete(ctx, have.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
				continue
			}
		}
		if _, err := rbac.RoleBindings(want.Namespace).Create(ctx, &want, metav1.CreateOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("create RoleBinding %s: %w", key, err))
		}
	}
	for _, have := range haveRB.Items {
		if !keep[have.Namespace+"/"+have.Name] {
			if err := rbac.RoleBindings(have.Namespace).Delete(ctx, have.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func same(a, b metav1.ObjectMeta, as, bs []rbacv1.Subject, ar, br rbacv1.RoleRef) bool {
	return equality.Semantic.DeepEqual(a.Labels, b.Labels) && equality.Semantic.DeepEqual(a.Annotations, b.Annotations) &&
		equality.Semantic.DeepEqual(as, bs) && ar == br
}
