package authz

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
)

// eksRoute is an EKS (restJson1) or skiff (/skiff/v1/) operation: its HTTP
// pattern, as the handlers register it, and how to name what it touches.
type eksRoute struct {
	pattern, op string
	// action overrides "eks:"+op (skiff's own operations).
	action string
	// resource names the resource kind the action applies to: cluster,
	// nodegroup, addon, access-entry, tag (the ARN in the path), "*".
	resource string
}

// EKSRoutes are the EKS and /skiff/v1/ operations. Their patterns must be
// exactly the handlers' (a test compares them).
var EKSRoutes = []eksRoute{
	{"POST /clusters", "CreateCluster", "", "cluster"},
	{"GET /clusters", "ListClusters", "", "*"},
	{"GET /clusters/{name}", "DescribeCluster", "", "cluster"},
	{"DELETE /clusters/{name}", "DeleteCluster", "", "cluster"},
	{"POST /clusters/{name}/update-config", "UpdateClusterConfig", "", "cluster"},
	{"POST /clusters/{name}/encryption-config/associate", "AssociateEncryptionConfig", "", "cluster"},
	{"POST /clusters/{name}/updates", "UpdateClusterVersion", "", "cluster"},
	{"GET /clusters/{name}/updates", "ListUpdates", "", "update-target"},
	{"GET /clusters/{name}/updates/{id}", "DescribeUpdate", "", "update-target"},
	{"GET /cluster-versions", "DescribeClusterVersions", "", "*"},
	{"POST /tags/{arn...}", "TagResource", "", "tag"},
	{"DELETE /tags/{arn...}", "UntagResource", "", "tag"},
	{"GET /tags/{arn...}", "ListTagsForResource", "", "tag"},
	{"POST /clusters/{name}/access-entries", "CreateAccessEntry", "", "cluster"},
	{"GET /clusters/{name}/access-entries", "ListAccessEntries", "", "cluster"},
	{"GET /clusters/{name}/access-entries/{principalArn}", "DescribeAccessEntry", "", "access-entry"},
	{"POST /clusters/{name}/access-entries/{principalArn}", "UpdateAccessEntry", "", "access-entry"},
	{"DELETE /clusters/{name}/access-entries/{principalArn}", "DeleteAccessEntry", "", "access-entry"},
	{"POST /clusters/{name}/access-entries/{principalArn}/access-policies", "AssociateAccessPolicy", "", "access-entry"},
	{"GET /clusters/{name}/access-entries/{principalArn}/access-policies", "ListAssociatedAccessPolicies", "", "access-entry"},
	{"DELETE /clusters/{name}/access-entries/{principalArn}/access-policies/{policyArn}", "DisassociateAccessPolicy", "", "access-entry"},
	{"GET /access-policies", "ListAccessPolicies", "", "*"},
	{"POST /clusters/{name}/addons", "CreateAddon", "", "cluster"},
	{"GET /clusters/{name}/addons", "ListAddons", "", "cluster"},
	{"GET /clusters/{name}/addons/{addon}", "DescribeAddon", "", "addon"},
	{"DELETE /clusters/{name}/addons/{addon}", "DeleteAddon", "", "addon"},
	{"POST /clusters/{name}/addons/{addon}/update", "UpdateAddon", "", "addon"},
	{"GET /addons/supported-versions", "DescribeAddonVersions", "", "*"},
	{"GET /addons/configuration-schemas", "DescribeAddonConfiguration", "", "*"},
	{"POST /clusters/{name}/node-groups", "CreateNodegroup", "", "cluster"},
	{"GET /clusters/{name}/node-groups", "ListNodegroups", "", "cluster"},
	{"GET /clusters/{name}/node-groups/{ng}", "DescribeNodegroup", "", "nodegroup"},
	{"DELETE /clusters/{name}/node-groups/{ng}", "DeleteNodegroup", "", "nodegroup"},
	{"POST /clusters/{name}/node-groups/{ng}/update-config", "UpdateNodegroupConfig", "", "nodegroup"},
	{"POST /clusters/{name}/node-groups/{ng}/update-version", "UpdateNodegroupVersion", "", "nodegroup"},
	{"POST /clusters/{name}/insights", "ListInsights", "", "cluster"},
	{"GET /clusters/{name}/insights/{id}", "DescribeInsight", "", "cluster"},
	{"POST /clusters/{name}/insights-refresh", "StartInsightsRefresh", "", "cluster"},
	{"GET /clusters/{name}/insights-refresh", "DescribeInsightsRefresh", "", "cluster"},
	// skiff's own API.
	{"GET /skiff/v1/clusters/{name}/kubeconfig", "GetKubeconfig", "eks:DescribeCluster", "cluster"},
	{"GET /skiff/v1/clusters/{name}/events", "DescribeClusterEvents", "eks:DescribeCluster", "cluster"},
	{"GET /skiff/v1/clusters/{name}/instances", "DescribeClusterInstances", "eks:DescribeCluster", "cluster"},
	{"GET /skiff/v1/clusters/{name}/nodegroups/{nodegroup}", "DescribeNodegroupNodes", "eks:DescribeNodegroup", "nodegroup"},
	// Hibernation changes the cluster's configuration as EKS knows it.
	{"POST /skiff/v1/clusters/{name}/hibernate", "HibernateCluster", "eks:UpdateClusterConfig", "cluster"},
	{"POST /skiff/v1/clusters/{name}/wake", "WakeCluster", "eks:UpdateClusterConfig", "cluster"},
}

// eksBody is what the checks read from an EKS request body.
type eksBody struct {
	Name                  string            `json:"name"`
	RoleArn               string            `json:"roleArn"`
	NodeRole              string            `json:"nodeRole"`
	ServiceAccountRoleArn string            `json:"serviceAccountRoleArn"`
	Tags                  map[string]string `json:"tags"`
	PrincipalArn          string            `json:"principalArn"`
	PolicyArn             string            `json:"policyArn"`
	KubernetesGroups      []string          `json:"kubernetesGroups"`
	Username              string            `json:"username"`
	Type                  string            `json:"type"`
}

// eksMux matches a request the way the EKS handler's ServeMux does.
func (a *Authorizer) eksMux() *http.ServeMux {
	a.once.Do(func() {
		a.mux = http.NewServeMux()
		for _, rt := range EKSRoutes {
			rt := rt
			a.mux.HandleFunc(rt.pattern, func(w http.ResponseWriter, r *http.Request) {
				w.(*match).route, w.(*match).req = &rt, r
			})
		}
		a.mux.HandleFunc("/", func(http.ResponseWriter, *http.Request) {})
	})
	return a.mux
}

// match is the ResponseWriter eksMux's handlers record the match into.
type match struct {
	http.ResponseWriter
	route *eksRoute
	req   *http.Request
}

func (m *match) Header() http.Header         { return http.Header{} }
func (m *match) Write(b []byte) (int, error) { return len(b), nil }
func (m *match) WriteHeader(int)             {}

// describeEKS names the checks of an EKS or /skiff/v1/ request.
func (a *Authorizer) describeEKS(r *http.Request, body []byte, account, region string) Operation {
	m := &match{}
	a.eksMux().ServeHTTP(m, r.Clone(r.Context()))
	if m.route == nil {
		// Not an operation: the handler answers UnknownOperationException
		// to those allowed everything. Failing closed keeps a route
		// missing from EKSRoutes from being served unchecked.
		return Operation{Service: "eks", Name: "UnknownOperation", Checks: []Check{{Action: "eks:UnknownOperation", Resource: "*"}}}
	}
	rt, req := m.route, m.req
	var b eksBody
	json.Unmarshal(body, &b) // a bad body is the handler's to refuse
	cluster := req.PathValue("name")
	if rt.op == "CreateCluster" {
		cluster = b.Name
	}
	action := rt.action
	if action == "" {
		action = "eks:" + rt.op
	}
	base := "arn:aws:eks:" + region + ":" + account + ":"
	c := Check{Action: action}
	switch rt.resource {
	case "*":
		c.Resource = "*"
	case "cluster":
		c.Resource = a.eksResource(&c, account, base+"cluster/"+cluster, "cluster", cluster)
	case "nodegroup":
		ng := firstNonEmpty(req.PathValue("ng"), req.PathValue("nodegroup"))
		c.Resource = a.eksResource(&c, account, base+"nodegroup/"+cluster+"/"+ng+"/*", "nodegroup", cluster, ng)
	case "addon":
		addon := req.PathValue("addon")
		c.Resource = a.eksResource(&c, account, base+"addon/"+cluster+"/"+addon+"/*", "addon", cluster, addon)
	case "access-entry":
		p := req.PathValue("principalArn")
		c.Resource = a.eksResource(&c, account, base+"access-entry/"+cluster+"/*", "access-entry", cluster, p)
	case "update-target":
		q := req.URL.Query()
		switch {
		case q.Get("nodegroupName") != "":
			ng := q.Get("nodegroupName")
			c.Resource = a.eksResource(&c, account, base+"nodegroup/"+cluster+"/"+ng+"/*", "nodegroup", cluster, ng)
		case q.Get("addonName") != "":
			addon := q.Get("addonName")
			c.Resource = a.eksResource(&c, account, base+"addon/"+cluster+"/"+addon+"/*", "addon", cluster, addon)
		default:
			c.Resource = a.eksResource(&c, account, base+"cluster/"+cluster, "cluster", cluster)
		}
	case "tag":
		arn := req.PathValue("arn")
		if u, err := url.PathUnescape(arn); err == nil {
			arn = u
		}
		c.Resource = arn
		if kind, names := eksKind(arn); kind != "" {
			if _, tags, ok := a.resolve(account, kind, names...); ok {
				c.Context = resourceTags(tags)
			}
		}
	}
	// Tags the request sets.
	tags := b.Tags
	if rt.op == "UntagResource" {
		keys := req.URL.Query()["tagKeys"]
		c.Context = merge(c.Context, map[string][]string{"aws:TagKeys": keys})
	}
	c.Context = merge(c.Context, tagContext(tags))
	switch rt.op {
	case "CreateAccessEntry", "UpdateAccessEntry":
		ctx := map[string][]string{}
		if b.PrincipalArn != "" {
			ctx["eks:principalArn"] = []string{b.PrincipalArn}
		}
		if len(b.KubernetesGroups) > 0 {
			ctx["eks:kubernetesGroups"] = b.KubernetesGroups
		}
		if b.Username != "" {
			ctx["eks:username"] = []string{b.Username}
		}
		c.Context = merge(c.Context, ctx)
	case "AssociateAccessPolicy":
		c.Context = merge(c.Context, map[string][]string{"eks:policyArn": {b.PolicyArn}})
	}
	op := Operation{Service: "eks", Name: rt.op, Checks: []Check{c}}
	// Roles the request passes to the service.
	for _, role := range []string{b.RoleArn, b.NodeRole, b.ServiceAccountRoleArn} {
		if role != "" && (rt.op == "CreateCluster" || rt.op == "CreateNodegroup" || rt.op == "CreateAddon" || rt.op == "UpdateAddon") {
			service := "eks.amazonaws.com"
			if role == b.NodeRole {
				service = "ec2.amazonaws.com"
			}
			op.Checks = append(op.Checks, Check{Action: "iam:PassRole", Resource: role,
				Context: map[string][]string{"iam:PassedToService": {service}}})
		}
	}
	return op
}

// eksResource resolves an existing resource's ARN and tags (its own ARN if
// it exists, else the fallback pattern).
func (a *Authorizer) eksResource(c *Check, account, fallback, kind string, names ...string) string {
	arn, tags, ok := a.resolve(account, kind, names...)
	if !ok {
		return fallback
	}
	c.Context = merge(c.Context, resourceTags(tags))
	return arn
}

// eksKind parses an EKS ARN into a resolver kind and names.
func eksKind(arn string) (string, []string) {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[2] != "eks" {
		return "", nil
	}
	seg := strings.Split(parts[5], "/")
	switch {
	case seg[0] == "cluster" && len(seg) == 2:
		return "cluster", seg[1:]
	case seg[0] == "nodegroup" && len(seg) >= 3:
		return "nodegroup", seg[1:3]
	case seg[0] == "addon" && len(seg) >= 3:
		return "addon", seg[1:3]
	}
	return "", nil
}

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}
