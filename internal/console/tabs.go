package console

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	ekstypes "github.com/aws/aws-sdk-go-v2/service/eks/types"
)

// The Add-ons, Access, Updates and Tags tabs of a cluster's page: what
// they show (live) and the forms that change them.

type addonView struct {
	Name, Version, Status string
	Issues                []string
}

type entryView struct {
	Principal, Type, Username string
	Groups                    []string
	Policies                  []string // "AmazonEKSAdminPolicy (cluster)"
}

type updateView struct {
	ID, Type, Status, Created string
	Params, Errors            []string
}

type tagView struct{ Key, Value string }

// tabData fills the view of the add-ons, access, updates or tags tab.
func (h *Handler) tabData(ctx context.Context, api *client, v *clusterView, tags map[string]string) error {
	name := aws.String(v.Name)
	switch v.Tab {
	case "addons":
		list, err := api.EKS.ListAddons(ctx, &eks.ListAddonsInput{ClusterName: name})
		if err != nil {
			return err
		}
		for _, a := range list.Addons {
			out, err := api.EKS.DescribeAddon(ctx, &eks.DescribeAddonInput{ClusterName: name, AddonName: aws.String(a)})
			if apiCode(err) == "ResourceNotFoundException" {
				continue
			}
			if err != nil {
				return err
			}
			av := addonView{Name: a, Version: aws.ToString(out.Addon.AddonVersion), Status: string(out.Addon.Status)}
			if out.Addon.Health != nil {
				for _, is := range out.Addon.Health.Issues {
					av.Issues = append(av.Issues, string(is.Code)+": "+aws.ToString(is.Message))
				}
			}
			v.Addons = append(v.Addons, av)
		}
	case "access":
		p := eks.NewListAccessEntriesPaginator(api.EKS, &eks.ListAccessEntriesInput{ClusterName: name})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return err
			}
			for _, arn := range page.AccessEntries {
				out, err := api.EKS.DescribeAccessEntry(ctx, &eks.DescribeAccessEntryInput{ClusterName: name, PrincipalArn: aws.String(arn)})
				if apiCode(err) == "ResourceNotFoundException" {
					continue
				}
				if err != nil {
					return err
				}
				e := entryView{Principal: arn, Type: aws.ToString(out.AccessEntry.Type), Username: aws.ToString(out.AccessEntry.Username),
					Groups: out.AccessEntry.KubernetesGroups}
				pols, err := api.EKS.ListAssociatedAccessPolicies(ctx, &eks.ListAssociatedAccessPoliciesInput{ClusterName: name, PrincipalArn: aws.String(arn)})
				if err != nil && apiCode(err) != "ResourceNotFoundException" {
					return err
				}
				if pols != nil {
					for _, ap := range pols.AssociatedAccessPolicies {
						scope := "cluster"
						if ap.AccessScope != nil && ap.AccessScope.Type == ekstypes.AccessScopeTypeNamespace {
							scope = "namespaces " + strings.Join(ap.AccessScope.Namespaces, ", ")
						}
						arn := aws.ToString(ap.PolicyArn)
						e.Policies = append(e.Policies, arn[strings.LastIndex(arn, "/")+1:]+" ("+scope+")")
					}
				}
				v.Entries = append(v.Entries, e)
			}
		}
	case "updates":
		list, err := api.EKS.ListUpdates(ctx, &eks.ListUpdatesInput{Name: name})
		if err != nil {
			return err
		}
		for _, id := range list.UpdateIds {
			out, err := api.EKS.DescribeUpdate(ctx, &eks.DescribeUpdateInput{Name: name, UpdateId: aws.String(id)})
			if err != nil {
				return err
			}
			u := out.Update
			uv := updateView{ID: id, Type: string(u.Type), Status: string(u.Status), Created: stamp(aws.ToTime(u.CreatedAt))}
			for _, p := range u.Params {
				uv.Params = append(uv.Params, string(p.Type)+"="+aws.ToString(p.Value))
			}
			for _, e := range u.Errors {
				uv.Errors = append(uv.Errors, string(e.ErrorCode)+": "+aws.ToString(e.ErrorMessage))
			}
			v.Updates = append(v.Updates, uv)
		}
		slices.SortStableFunc(v.Updates, func(a, b updateView) int { return strings.Compare(b.Created, a.Created) }) // newest first
	case "tags":
		for k, val := range tags {
			v.Tags = append(v.Tags, tagView{Key: k, Value: val})
		}
		slices.SortFunc(v.Tags, func(a, b tagView) int { return strings.Compare(a.Key, b.Key) })
	}
	return nil
}

// tabForms adds what a tab's forms offer: add-ons not installed yet,
// access policies, versions to upgrade to.
func (h *Handler) tabForms(q *request, v *clusterView, data map[string]any) error {
	switch v.Tab {
	case "addons":
		out, err := q.api.EKS.DescribeAddonVersions(q.ctx, &eks.DescribeAddonVersionsInput{KubernetesVersion: aws.String(v.Version)})
		if err != nil {
			return err
		}
		var offer []string
		for _, a := range out.Addons {
			n := aws.ToString(a.AddonName)
			if !slices.ContainsFunc(v.Addons, func(x addonView) bool { return x.Name == n }) {
				offer = append(offer, n)
			}
		}
		sort.Strings(offer)
		data["AddonNames"] = offer
	case "access":
		out, err := q.api.EKS.ListAccessPolicies(q.ctx, &eks.ListAccessPoliciesInput{})
		if err != nil {
			return err
		}
		var pols []role
		for _, p := range out.AccessPolicies {
			pols = append(pols, role{Value: aws.ToString(p.Arn), Label: aws.ToString(p.Name)})
		}
		slices.SortFunc(pols, func(a, b role) int { return strings.Compare(a.Label, b.Label) })
		data["Policies"] = pols
	case "updates":
		out, err := q.api.EKS.DescribeClusterVersions(q.ctx, &eks.DescribeClusterVersionsInput{})
		if err != nil {
			return err
		}
		var next []string
		for _, cv := range out.ClusterVersions {
			if x := aws.ToString(cv.ClusterVersion); newer(x, v.Version) {
				next = append(next, x)
			}
		}
		data["Upgrades"] = next
	}
	return nil
}

// act runs a change as the principal and returns to the tab with the
// outcome in the API's words.
func (h *Handler) act(q *request, tab, done string, change func(name *string) error) {
	name := q.r.PathValue("name")
	if err := change(aws.String(name)); err != nil {
		if signedOut(err) {
			h.fail(q, err)
			return
		}
		back(q, name, tab, "error", apiMessage(err))
		return
	}
	back(q, name, tab, "msg", done)
}

func (h *Handler) createAddon(q *request) {
	addon, version := q.r.PostFormValue("addon"), q.r.PostFormValue("version")
	h.act(q, "addons", "Creating add-on "+addon+".", func(name *string) error {
		in := &eks.CreateAddonInput{ClusterName: name, AddonName: aws.String(addon)}
		if version != "" {
			in.AddonVersion = aws.String(version)
		}
		_, err := q.api.EKS.CreateAddon(q.ctx, in)
		return err
	})
}

func (h *Handler) deleteAddon(q *request) {
	addon := q.r.PathValue("addon")
	h.act(q, "addons", "Deleting add-on "+addon+".", func(name *string) error {
		_, err := q.api.EKS.DeleteAddon(q.ctx, &eks.DeleteAddonInput{ClusterName: name, AddonName: aws.String(addon)})
		return err
	})
}

// createAccess creates an access entry and, if a policy is chosen,
// associates it (with the cluster or some namespaces as its scope).
func (h *Handler) createAccess(q *request) {
	f := q.r.PostForm
	principal, policy := strings.TrimSpace(f.Get("principal")), f.Get("policy")
	h.act(q, "access", "Access entry for "+principal+" created.", func(name *string) error {
		scope := &ekstypes.AccessScope{Type: ekstypes.AccessScopeTypeCluster}
		if ns := strings.FieldsFunc(f.Get("namespaces"), func(r rune) bool { return r == ',' || r == ' ' }); len(ns) > 0 {
			scope = &ekstypes.AccessScope{Type: ekstypes.AccessScopeTypeNamespace, Namespaces: ns}
		}
		if _, err := q.api.EKS.CreateAccessEntry(q.ctx, &eks.CreateAccessEntryInput{ClusterName: name, PrincipalArn: aws.String(principal)}); err != nil {
			return err
		}
		if policy == "" {
			return nil
		}
		_, err := q.api.EKS.AssociateAccessPolicy(q.ctx, &eks.AssociateAccessPolicyInput{ClusterName: name,
			PrincipalArn: aws.String(principal), PolicyArn: aws.String(policy), AccessScope: scope})
		return err
	})
}

func (h *Handler) deleteAccess(q *request) {
	principal := q.r.PostFormValue("principal")
	h.act(q, "access", "Access entry for "+principal+" deleted.", func(name *string) error {
		_, err := q.api.EKS.DeleteAccessEntry(q.ctx, &eks.DeleteAccessEntryInput{ClusterName: name, PrincipalArn: aws.String(principal)})
		return err
	})
}

func (h *Handler) startUpdate(q *request) {
	version := q.r.PostFormValue("version")
	h.act(q, "updates", "Upgrading to Kubernetes "+version+".", func(name *string) error {
		_, err := q.api.EKS.UpdateClusterVersion(q.ctx, &eks.UpdateClusterVersionInput{Name: name, Version: aws.String(version)})
		return err
	})
}

// clusterArn is the ARN of the cluster the request names.
func clusterArn(q *request, name *string) (*string, error) {
	out, err := q.api.EKS.DescribeCluster(q.ctx, &eks.DescribeClusterInput{Name: name})
	if err != nil {
		return nil, err
	}
	return out.Cluster.Arn, nil
}

func (h *Handler) tag(q *request) {
	key, value := strings.TrimSpace(q.r.PostFormValue("key")), q.r.PostFormValue("value")
	h.act(q, "tags", "Tag "+key+" set.", func(name *string) error {
		if key == "" {
			return errors.New("a tag needs a key")
		}
		arn, err := clusterArn(q, name)
		if err != nil {
			return err
		}
		_, err = q.api.EKS.TagResource(q.ctx, &eks.TagResourceInput{ResourceArn: arn, Tags: map[string]string{key: value}})
		return err
	})
}

func (h *Handler) untag(q *request) {
	key := q.r.PostFormValue("key")
	h.act(q, "tags", "Tag "+key+" removed.", func(name *string) error {
		arn, err := clusterArn(q, name)
		if err != nil {
			return err
		}
		_, err = q.api.EKS.UntagResource(q.ctx, &eks.UntagResourceInput{ResourceArn: arn, TagKeys: []string{key}})
		return err
	})
}
