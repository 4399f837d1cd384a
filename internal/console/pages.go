package console

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"html"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	ekstypes "github.com/aws/aws-sdk-go-v2/service/eks/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"

	"skiff.dev/skiff/internal/model"
)

// apiCode is an API error's code ("" for other errors).
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// localNext is where to go after sign-in: a console page, nothing else.
func localNext(next string) string {
	if strings.HasPrefix(next, "/console/") && !strings.HasPrefix(next, "//") && !strings.Contains(next, "\\") {
		return next
	}
	return "/console/clusters"
}

func (h *Handler) signinPage(w http.ResponseWriter, r *http.Request) {
	if token := r.URL.Query().Get("token"); token != "" {
		h.linkSignin(w, r, token)
		return
	}
	h.render(w, http.StatusOK, "signin", nil, map[string]any{"Next": r.URL.Query().Get("next"), "Msg": r.URL.Query().Get("msg")})
}

// signin starts a session for an access key pair, once the API has
// accepted a call signed with it.
func (h *Handler) signin(w http.ResponseWriter, r *http.Request) {
	next := r.PostFormValue("next")
	if !sameOrigin(r) {
		http.Error(w, "refused: this sign-in does not come from the console's page (cross-site request)", http.StatusForbidden)
		return
	}
	akid, secret := strings.TrimSpace(r.PostFormValue("accessKeyId")), strings.TrimSpace(r.PostFormValue("secretAccessKey"))
	token := strings.TrimSpace(r.PostFormValue("sessionToken"))
	if akid == "" || secret == "" {
		h.render(w, http.StatusBadRequest, "signin", nil, map[string]any{"Next": next, "AccessKeyID": akid,
			"Error": "Enter an access key ID and its secret access key."})
		return
	}
	api := newClient(h.cfg.API, h.cfg.Endpoint, h.cfg.Region, credentials.NewStaticCredentialsProvider(akid, secret, token))
	id, err := api.STS.GetCallerIdentity(withOrigin(r.Context(), r), &sts.GetCallerIdentityInput{})
	if err != nil {
		h.cfg.Log.Info("console: sign-in refused", "accessKeyId", akid, "remote", r.RemoteAddr, "err", apiCode(err))
		h.render(w, http.StatusUnauthorized, "signin", nil, map[string]any{"Next": next, "AccessKeyID": akid,
			"Error": "Sign-in refused: " + apiMessage(err)})
		return
	}
	h.start(w, r, session{AccessKeyID: akid, Arn: aws.ToString(id.Arn), Account: aws.ToString(id.Account)}, localNext(next))
}

// linkSignin starts a session from a one-time sign-in link.
func (h *Handler) linkSignin(w http.ResponseWriter, r *http.Request, token string) {
	now := h.now()
	refuse := func(msg string) {
		h.render(w, http.StatusUnauthorized, "signin", nil, map[string]any{"Error": msg})
	}
	l, err := parseLink(token, now)
	if err != nil {
		refuse(err.Error())
		return
	}
	id, err := checkLink(withOrigin(r.Context(), r), local{api: h.cfg.API}, l)
	if err != nil {
		refuse(err.Error())
		return
	}
	if !h.sessions.spend(l.Signature, l.Until, now) {
		refuse("this sign-in link was used already: a link is good once; make a new one with 'skiff console'")
		return
	}
	h.start(w, r, session{AccessKeyID: l.AccessKeyID, Arn: id.Arn, Account: id.Account}, "/console/clusters")
}

func (h *Handler) start(w http.ResponseWriter, r *http.Request, s session, next string) {
	id := h.sessions.add(s, h.now())
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: id, Path: "/console/", HttpOnly: true, Secure: h.cfg.Secure,
		SameSite: http.SameSiteStrictMode, MaxAge: int(SessionTTL / time.Second)})
	h.cfg.Log.Info("console: signed in", "arn", s.Arn, "accessKeyId", s.AccessKeyID, "remote", r.RemoteAddr)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (h *Handler) signout(q *request) {
	if c, err := q.r.Cookie(cookieName); err == nil {
		h.sessions.remove(c.Value)
	}
	http.SetCookie(q.w, &http.Cookie{Name: cookieName, Value: "", Path: "/console/", MaxAge: -1, HttpOnly: true,
		Secure: h.cfg.Secure, SameSite: http.SameSiteStrictMode})
	http.Redirect(q.w, q.r, "/console/signin?msg="+url.QueryEscape("Signed out."), http.StatusSeeOther)
}

// clusterRow is a line of the clusters page.
type clusterRow struct {
	Name, Status, Version, Endpoint, Age string
	Nodes                                int
}

// clusterRows reads the account's clusters, each with its node count.
func (h *Handler) clusterRows(ctx context.Context, api *client) ([]clusterRow, error) {
	var names []string
	p := eks.NewListClustersPaginator(api.EKS, &eks.ListClustersInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		names = append(names, page.Clusters...)
	}
	sort.Strings(names)
	rows := make([]clusterRow, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			out, err := api.EKS.DescribeCluster(ctx, &eks.DescribeClusterInput{Name: aws.String(name)})
			if err != nil {
				if apiCode(err) != "ResourceNotFoundException" { // deleted since the list
					errs[i] = err
				}
				return
			}
			c := out.Cluster
			rows[i] = clusterRow{Name: name, Status: string(c.Status), Version: aws.ToString(c.Version),
				Endpoint: aws.ToString(c.Endpoint), Age: age(aws.ToTime(c.CreatedAt), h.now())}
			if c.Health != nil && slices.ContainsFunc(c.Health.Issues, hibernating) {
				rows[i].Status += " (hibernating)"
			}
			nodes, _, err := h.nodes(ctx, api, name)
			if err != nil && apiCode(err) != "ResourceNotFoundException" {
				errs[i] = err
			}
			rows[i].Nodes = len(nodes)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return slices.DeleteFunc(rows, func(r clusterRow) bool { return r.Name == "" }), nil
}

// group is a node group as the compute tab shows it.
type group struct {
	Name, Status, InstanceType, Version, Role string
	Min, Max, Desired                         int32
	Nodes                                     []nodeView
	Issues                                    []string
}

// nodes reads a cluster's node groups and their nodes.
func (h *Handler) nodes(ctx context.Context, api *client, cluster string) ([]nodeView, []group, error) {
	var names []string
	p := eks.NewListNodegroupsPaginator(api.EKS, &eks.ListNodegroupsInput{ClusterName: aws.String(cluster)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, nil, err
		}
		names = append(names, page.Nodegroups...)
	}
	sort.Strings(names)
	var all []nodeView
	var groups []group
	for _, name := range names {
		out, err := api.EKS.DescribeNodegroup(ctx, &eks.DescribeNodegroupInput{ClusterName: aws.String(cluster), NodegroupName: aws.String(name)})
		if err != nil {
			if apiCode(err) == "ResourceNotFoundException" {
				continue
			}
			return nil, nil, err
		}
		ng := out.Nodegroup
		g := group{Name: name, Status: string(ng.Status), Version: aws.ToString(ng.Version), Role: aws.ToString(ng.NodeRole)}
		if len(ng.InstanceTypes) > 0 {
			g.InstanceType = ng.InstanceTypes[0]
		}
		if sc := ng.ScalingConfig; sc != nil {
			g.Min, g.Max, g.Desired = aws.ToInt32(sc.MinSize), aws.ToInt32(sc.MaxSize), aws.ToInt32(sc.DesiredSize)
		}
		if ng.Health != nil {
			for _, is := range ng.Health.Issues {
				g.Issues = append(g.Issues, string(is.Code)+": "+aws.ToString(is.Message))
			}
		}
		var detail model.Nodegroup
		if err := api.skiff(ctx, "/skiff/v1/clusters/"+url.PathEscape(cluster)+"/nodegroups/"+url.PathEscape(name), &detail); err != nil {
			if apiCode(err) == "ResourceNotFoundException" {
				continue
			}
			return nil, nil, err
		}
		for _, n := range detail.Nodes {
			v := nodeView{Group: name, Name: n.Name, Zone: n.Zone, Addr: n.Addr, State: nodeState(n)}
			g.Nodes = append(g.Nodes, v)
			all = append(all, v)
		}
		groups = append(groups, g)
	}
	return all, groups, nil
}

func (h *Handler) clusters(q *request) {
	rows, err := h.clusterRows(q.ctx, q.api)
	if err != nil {
		h.fail(q, err)
		return
	}
	h.render(q.w, http.StatusOK, "clusters", q.sess, map[string]any{"Rows": rows, "Msg": q.r.URL.Query().Get("msg")})
}

func (h *Handler) clustersLive(q *request) {
	h.stream(q, func(ctx context.Context) (string, error) {
		rows, err := h.clusterRows(ctx, q.api)
		if err != nil {
			return "", err
		}
		return h.fragment("clusters", "rows", map[string]any{"Rows": rows, "Session": q.sess})
	})
}

// fragment renders one named template of a page (a live part).
func (h *Handler) fragment(page, name string, data any) (string, error) {
	var b bytes.Buffer
	err := h.pages[page].ExecuteTemplate(&b, name, data)
	return b.String(), err
}

// stream pushes a live part whenever it changes, as a server-sent event
// "panel" whose data is the part's HTML. It ends when the browser goes,
// the session ends or the console closes.
func (h *Handler) stream(q *request, render func(context.Context) (string, error)) {
	rc := http.NewResponseController(q.w)
	rc.SetWriteDeadline(time.Time{})
	q.w.Header().Set("Content-Type", "text/event-stream")
	q.w.Header().Set("X-Accel-Buffering", "no")
	q.w.WriteHeader(http.StatusOK)
	cookie, _ := q.r.Cookie(cookieName)
	send := func(event, data string) error {
		var b strings.Builder
		b.WriteString("event: " + event + "\n")
		for _, line := range strings.Split(data, "\n") {
			b.WriteString("data: " + line + "\n")
		}
		b.WriteString("\n")
		if _, err := q.w.Write([]byte(b.String())); err != nil {
			return err
		}
		return rc.Flush()
	}
	tick := time.NewTicker(h.cfg.Refresh)
	defer tick.Stop()
	last, quiet := "", 0
	for {
		if _, ok := h.sessions.get(cookie.Value, h.now()); !ok {
			send("signin", "/console/signin")
			return
		}
		frag, err := render(q.ctx)
		switch {
		case signedOut(err):
			h.sessions.remove(cookie.Value)
			send("signin", "/console/signin?msg="+url.QueryEscape(apiMessage(err)))
			return
		case err != nil && q.ctx.Err() != nil:
			return
		case err != nil:
			frag = `<p class="error" role="alert">` + html.EscapeString(apiMessage(err)) + `</p>`
		}
		if frag != last {
			if send("panel", frag) != nil {
				return
			}
			last, quiet = frag, 0
		} else if quiet++; quiet*int(h.cfg.Refresh/time.Millisecond) >= 15000 {
			if _, err := q.w.Write([]byte(": still here\n\n")); err != nil || rc.Flush() != nil {
				return
			}
			quiet = 0
		}
		select {
		case <-q.ctx.Done():
			return
		case <-h.done:
			return
		case <-tick.C:
		}
	}
}

// tabs of a cluster's page.
var tabs = []string{"overview", "topology", "compute", "addons", "access", "updates", "events", "tags"}

// clusterView is what a cluster's page shows.
type clusterView struct {
	Name, Status, Version, Arn, Endpoint, CA, Platform, Created, AuthMode string
	Issues                                                                []string
	Tab                                                                   string
	Zones                                                                 []zone
	Groups                                                                []group
	Events                                                                []model.Event
	Conditions                                                            []model.Condition
	Subnets                                                               []string
	Addons                                                                []addonView
	Entries                                                               []entryView
	Updates                                                               []updateView
	Tags                                                                  []tagView
	Pending                                                               string // a first node group waiting for ACTIVE
	Kubeconfig                                                            string // the command to copy
	Hibernating                                                           bool
}

func (h *Handler) clusterData(ctx context.Context, api *client, account, name, tab string) (*clusterView, error) {
	out, err := api.EKS.DescribeCluster(ctx, &eks.DescribeClusterInput{Name: aws.String(name)})
	if err != nil {
		return nil, err
	}
	c := out.Cluster
	v := &clusterView{Name: name, Status: string(c.Status), Version: aws.ToString(c.Version), Arn: aws.ToString(c.Arn),
		Endpoint: aws.ToString(c.Endpoint), Platform: aws.ToString(c.PlatformVersion), Tab: tab,
		Created:    aws.ToTime(c.CreatedAt).UTC().Format("2006-01-02 15:04:05 UTC"),
		Kubeconfig: fmt.Sprintf("aws eks update-kubeconfig --region %s --name %s", h.cfg.Region, name)}
	if c.CertificateAuthority != nil {
		v.CA = aws.ToString(c.CertificateAuthority.Data)
	}
	if c.AccessConfig != nil {
		v.AuthMode = string(c.AccessConfig.AuthenticationMode)
	}
	if c.ResourcesVpcConfig != nil {
		v.Subnets = c.ResourcesVpcConfig.SubnetIds
	}
	if c.Health != nil {
		for _, is := range c.Health.Issues {
			v.Issues = append(v.Issues, string(is.Code)+": "+aws.ToString(is.Message))
			v.Hibernating = v.Hibernating || hibernating(is)
		}
	}
	v.Pending = h.pending(account, name)
	switch tab {
	case "topology", "compute":
		nodes, groups, err := h.nodes(ctx, api, name)
		if err != nil {
			return nil, err
		}
		v.Groups = groups
		if tab == "topology" {
			var seen model.ControlPlaneStatus
			if err := api.skiff(ctx, "/skiff/v1/clusters/"+url.PathEscape(name)+"/instances", &seen); err != nil {
				return nil, err
			}
			v.Zones = topology(h.cfg.Region, seen, nodes)
			v.Conditions = seen.Conditions
		}
	case "events":
		var ev struct{ Events []model.Event }
		if err := api.skiff(ctx, "/skiff/v1/clusters/"+url.PathEscape(name)+"/events", &ev); err != nil {
			return nil, err
		}
		slices.Reverse(ev.Events) // newest first
		v.Events = ev.Events
	default:
		if err := h.tabData(ctx, api, v, c.Tags); err != nil {
			return nil, err
		}
	}
	return v, nil
}

func tabOf(r *http.Request) string {
	if t := r.URL.Query().Get("tab"); slices.Contains(tabs, t) {
		return t
	}
	return "overview"
}

func (h *Handler) cluster(q *request) {
	name, tab := q.r.PathValue("name"), tabOf(q.r)
	v, err := h.clusterData(q.ctx, q.api, q.sess.Account, name, tab)
	if err != nil {
		h.fail(q, err)
		return
	}
	data := map[string]any{"C": v, "Tabs": tabs, "Msg": q.r.URL.Query().Get("msg"), "Error": q.r.URL.Query().Get("error")}
	if tab == "compute" {
		roles, err := h.roles(q.ctx, q.api, "ec2.amazonaws.com")
		if err != nil {
			h.fail(q, err)
			return
		}
		data["NodeRoles"], data["InstanceTypes"] = roles, instanceTypes()
	}
	if err := h.tabForms(q, v, data); err != nil {
		h.fail(q, err)
		return
	}
	h.render(q.w, http.StatusOK, "cluster", q.sess, data)
}

func (h *Handler) clusterLive(q *request) {
	name, tab := q.r.PathValue("name"), tabOf(q.r)
	h.stream(q, func(ctx context.Context) (string, error) {
		v, err := h.clusterData(ctx, q.api, q.sess.Account, name, tab)
		if apiCode(err) == "ResourceNotFoundException" {
			return `<p class="status" role="status">Cluster ` + html.EscapeString(name) + ` is gone (deleted).</p>`, nil
		}
		if err != nil {
			return "", err
		}
		return h.fragment("cluster", "live", map[string]any{"C": v, "Session": q.sess})
	})
}

// back returns to a cluster's page with a message or an error.
func back(q *request, name, tab, key, msg string) {
	u := "/console/clusters/" + url.PathEscape(name) + "?tab=" + tab + "&" + key + "=" + url.QueryEscape(msg)
	http.Redirect(q.w, q.r, u, http.StatusSeeOther)
}

// hibernating says whether a health issue is the hibernation's.
func hibernating(is ekstypes.ClusterIssue) bool {
	return strings.HasPrefix(aws.ToString(is.Message), "Hibernating")
}

// hibernate and wake: skiff's own POSTs (skiff hibernate, skiff wake).
func (h *Handler) hibernate(q *request) {
	h.act(q, "overview", "The control plane hibernates once its instances have stopped.", func(name *string) error {
		return q.api.skiffDo(q.ctx, http.MethodPost, "/skiff/v1/clusters/"+url.PathEscape(*name)+"/hibernate", nil)
	})
}

func (h *Handler) wake(q *request) {
	h.act(q, "overview", "The control plane is waking.", func(name *string) error {
		return q.api.skiffDo(q.ctx, http.MethodPost, "/skiff/v1/clusters/"+url.PathEscape(*name)+"/wake", nil)
	})
}

func (h *Handler) deleteCluster(q *request) {
	name := q.r.PathValue("name")
	if q.r.PostFormValue("confirm") != name {
		back(q, name, "overview", "error", "Not deleted: type the cluster's name, "+name+", to confirm.")
		return
	}
	if _, err := q.api.EKS.DeleteCluster(q.ctx, &eks.DeleteClusterInput{Name: aws.String(name)}); err != nil {
		if signedOut(err) {
			h.fail(q, err)
			return
		}
		back(q, name, "overview", "error", apiMessage(err))
		return
	}
	http.Redirect(q.w, q.r, "/console/clusters?msg="+url.QueryEscape("Deleting cluster "+name+"."), http.StatusSeeOther)
}

func (h *Handler) createNodegroup(q *request) {
	f := q.r.PostForm
	size, _ := strconv.Atoi(f.Get("size"))
	h.act(q, "compute", "Creating node group "+f.Get("nodegroup")+".", func(name *string) error {
		role, err := h.role(q.ctx, q.api, f.Get("role"))
		if err != nil {
			return err
		}
		return h.addNodegroup(q.ctx, q.api, *name, f.Get("nodegroup"), f.Get("instanceType"), role, int32(size))
	})
}

// addNodegroup creates a node group of size nodes over the cluster's
// subnets.
func (h *Handler) addNodegroup(ctx context.Context, api *client, cluster, name, instanceType, role string, size int32) error {
	out, err := api.EKS.DescribeCluster(ctx, &eks.DescribeClusterInput{Name: aws.String(cluster)})
	if err != nil {
		return err
	}
	var subnets []string
	if vpc := out.Cluster.ResourcesVpcConfig; vpc != nil {
		subnets = vpc.SubnetIds
	}
	in := &eks.CreateNodegroupInput{ClusterName: aws.String(cluster), NodegroupName: aws.String(name), NodeRole: aws.String(role),
		Subnets: subnets, ScalingConfig: &ekstypes.NodegroupScalingConfig{MinSize: aws.Int32(min(size, 1)),
			MaxSize: aws.Int32(max(size, 1)), DesiredSize: aws.Int32(size)}}
	if instanceType != "" {
		in.InstanceTypes = []string{instanceType}
	}
	_, err = api.EKS.CreateNodegroup(ctx, in)
	return err
}

func (h *Handler) scaleNodegroup(q *request) {
	ng := q.r.PathValue("ng")
	f := q.r.PostForm
	num := func(k string) (*int32, error) {
		v, err := strconv.Atoi(f.Get(k))
		if err != nil {
			return nil, fmt.Errorf("%s must be a whole number", k)
		}
		return aws.Int32(int32(v)), nil
	}
	h.act(q, "compute", "Scaling node group "+ng+".", func(name *string) error {
		var sc ekstypes.NodegroupScalingConfig
		var errs [3]error
		sc.MinSize, errs[0] = num("min")
		sc.MaxSize, errs[1] = num("max")
		sc.DesiredSize, errs[2] = num("desired")
		if err := errors.Join(errs[:]...); err != nil {
			return errors.New(strings.ReplaceAll(err.Error(), "\n", "; "))
		}
		_, err := q.api.EKS.UpdateNodegroupConfig(q.ctx, &eks.UpdateNodegroupConfigInput{ClusterName: name,
			NodegroupName: aws.String(ng), ScalingConfig: &sc})
		return err
	})
}

func (h *Handler) deleteNodegroup(q *request) {
	ng := q.r.PathValue("ng")
	h.act(q, "compute", "Deleting node group "+ng+".", func(name *string) error {
		_, err := q.api.EKS.DeleteNodegroup(q.ctx, &eks.DeleteNodegroupInput{ClusterName: name, NodegroupName: aws.String(ng)})
		return err
	})
}

// role is an IAM role option of a form.
type role struct {
	Value, Label string
	Selected     bool
}

// The roles the console offers to create, as `skiff create cluster` and
// eksctl do: a cluster role and a node role with AWS's managed policies.
var newRoles = map[string]struct {
	service  string
	policies []string
}{
	"skiff-cluster-role": {"eks.amazonaws.com", []string{"AmazonEKSClusterPolicy"}},
	"skiff-node-role":    {"ec2.amazonaws.com", []string{"AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryReadOnly", "AmazonEKS_CNI_Policy"}},
}

// roles lists the account's roles that service may assume, and offers to
// create skiff's role for it if there is none of that name.
func (h *Handler) roles(ctx context.Context, api *client, service string) ([]role, error) {
	var out []role
	p := iam.NewListRolesPaginator(api.IAM, &iam.ListRolesInput{})
	have := map[string]bool{}
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, r := range page.Roles {
			have[aws.ToString(r.RoleName)] = true
			doc, _ := url.QueryUnescape(aws.ToString(r.AssumeRolePolicyDocument))
			if strings.Contains(doc, service) {
				out = append(out, role{Value: aws.ToString(r.Arn), Label: aws.ToString(r.RoleName)})
			}
		}
	}
	for name, nr := range newRoles {
		if nr.service == service && !have[name] {
			out = append(out, role{Value: "create:" + name, Label: "Create " + name + " (with " + strings.Join(nr.policies, ", ") + ")"})
		}
	}
	return out, nil
}

// role resolves a form's role choice to an ARN, creating skiff's role
// first if that was the choice.
func (h *Handler) role(ctx context.Context, api *client, choice string) (string, error) {
	name, create := strings.CutPrefix(choice, "create:")
	if !create {
		if choice == "" {
			return "", errors.New("choose an IAM role")
		}
		return choice, nil
	}
	nr, ok := newRoles[name]
	if !ok {
		return "", fmt.Errorf("the console creates only %s", strings.Join(slices.Sorted(maps.Keys(newRoles)), " and "))
	}
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"` + nr.service + `"},"Action":"sts:AssumeRole"}]}`
	var arn string
	got, err := api.IAM.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(name)})
	if err == nil {
		arn = aws.ToString(got.Role.Arn)
	} else if apiCode(err) == "NoSuchEntity" {
		made, err := api.IAM.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(name), AssumeRolePolicyDocument: aws.String(trust)})
		if err != nil {
			return "", err
		}
		arn = aws.ToString(made.Role.Arn)
	} else {
		return "", err
	}
	for _, p := range nr.policies {
		if _, err := api.IAM.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String(name),
			PolicyArn: aws.String("arn:aws:iam::aws:policy/" + p)}); err != nil {
			return "", err
		}
	}
	return arn, nil
}

// instanceTypes are the instance types skiff models, for a select.
func instanceTypes() []string {
	var out []string
	for k := range model.InstanceTypes {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// subnet is a subnet option of the create form.
type subnet struct {
	ID, Zone, CIDR, VPC string
	Checked             bool
}

// clusterForm is the create form's values.
type clusterForm struct {
	Name, Version, Role, AuthMode string
	Subnets, Logging              []string
	Public, Private               bool
	NGName, NGType, NGRole        string
	NGSize                        int
}

var logTypes = []string{"api", "audit", "authenticator", "controllerManager", "scheduler"}
var authModes = []string{"API_AND_CONFIG_MAP", "API", "CONFIG_MAP"}

func (h *Handler) newCluster(q *request) {
	h.clusterFormPage(q, http.StatusOK, clusterForm{Public: true, AuthMode: "API_AND_CONFIG_MAP", NGSize: 2, NGType: "t3.medium"}, "")
}

// clusterFormPage renders the create form with f's values and an error.
func (h *Handler) clusterFormPage(q *request, status int, f clusterForm, msg string) {
	versions, err := q.api.EKS.DescribeClusterVersions(q.ctx, &eks.DescribeClusterVersionsInput{})
	if err != nil {
		h.fail(q, err)
		return
	}
	var vs []string
	for _, v := range versions.ClusterVersions {
		vs = append(vs, aws.ToString(v.ClusterVersion))
		if f.Version == "" && v.DefaultVersion {
			f.Version = aws.ToString(v.ClusterVersion)
		}
	}
	sn, err := q.api.EC2.DescribeSubnets(q.ctx, &ec2.DescribeSubnetsInput{})
	if err != nil {
		h.fail(q, err)
		return
	}
	var subnets []subnet
	for _, s := range sn.Subnets {
		checked := slices.Contains(f.Subnets, aws.ToString(s.SubnetId)) || len(f.Subnets) == 0 && aws.ToBool(s.DefaultForAz)
		subnets = append(subnets, subnet{ID: aws.ToString(s.SubnetId), Zone: aws.ToString(s.AvailabilityZone),
			CIDR: aws.ToString(s.CidrBlock), VPC: aws.ToString(s.VpcId), Checked: checked})
	}
	slices.SortFunc(subnets, func(a, b subnet) int { return strings.Compare(a.VPC+a.Zone+a.ID, b.VPC+b.Zone+b.ID) })
	clusterRoles, err := h.roles(q.ctx, q.api, "eks.amazonaws.com")
	if err != nil {
		h.fail(q, err)
		return
	}
	nodeRoles, err := h.roles(q.ctx, q.api, "ec2.amazonaws.com")
	if err != nil {
		h.fail(q, err)
		return
	}
	for i := range clusterRoles {
		clusterRoles[i].Selected = clusterRoles[i].Value == f.Role
	}
	for i := range nodeRoles {
		nodeRoles[i].Selected = nodeRoles[i].Value == f.NGRole
	}
	h.render(q.w, status, "new", q.sess, map[string]any{"F": f, "Versions": vs, "Subnets": subnets, "ClusterRoles": clusterRoles,
		"NodeRoles": nodeRoles, "LogTypes": logTypes, "AuthModes": authModes, "InstanceTypes": instanceTypes(), "Error": msg,
		"CSRF": q.sess.CSRF})
}

func (h *Handler) createCluster(q *request) {
	p := q.r.PostForm
	f := clusterForm{Name: strings.TrimSpace(p.Get("name")), Version: p.Get("version"), Role: p.Get("role"), AuthMode: p.Get("authMode"),
		Subnets: p["subnet"], Logging: p["logging"], Public: p.Get("public") != "", Private: p.Get("private") != "",
		NGName: strings.TrimSpace(p.Get("nodegroup")), NGType: p.Get("instanceType"), NGRole: p.Get("nodeRole")}
	f.NGSize, _ = strconv.Atoi(p.Get("size"))
	redo := func(err error) {
		if signedOut(err) {
			h.fail(q, err)
			return
		}
		h.clusterFormPage(q, http.StatusBadRequest, f, apiMessage(err))
	}
	if f.NGName != "" && f.NGSize < 1 {
		redo(errors.New("a node group needs at least 1 node (leave its name empty for none)"))
		return
	}
	roleArn, err := h.role(q.ctx, q.api, f.Role)
	if err != nil {
		redo(err)
		return
	}
	var nodeRole string
	if f.NGName != "" {
		if nodeRole, err = h.role(q.ctx, q.api, f.NGRole); err != nil {
			redo(err)
			return
		}
	}
	in := &eks.CreateClusterInput{Name: aws.String(f.Name), RoleArn: aws.String(roleArn),
		ResourcesVpcConfig: &ekstypes.VpcConfigRequest{SubnetIds: f.Subnets, EndpointPublicAccess: aws.Bool(f.Public),
			EndpointPrivateAccess: aws.Bool(f.Private)},
		AccessConfig: &ekstypes.CreateAccessConfigRequest{AuthenticationMode: ekstypes.AuthenticationMode(f.AuthMode),
			BootstrapClusterCreatorAdminPermissions: aws.Bool(true)}}
	if f.Version != "" {
		in.Version = aws.String(f.Version)
	}
	if len(f.Logging) > 0 {
		var types []ekstypes.LogType
		for _, l := range f.Logging {
			types = append(types, ekstypes.LogType(l))
		}
		in.Logging = &ekstypes.Logging{ClusterLogging: []ekstypes.LogSetup{{Enabled: aws.Bool(true), Types: types}}}
	}
	if _, err := q.api.EKS.CreateCluster(q.ctx, in); err != nil {
		redo(err)
		return
	}
	msg := "Creating cluster " + f.Name + "."
	if f.NGName != "" {
		h.firstNodegroup(q, f.Name, f.NGName, f.NGType, nodeRole, int32(f.NGSize))
		msg += " Node group " + f.NGName + " follows once it is ACTIVE."
	}
	http.Redirect(q.w, q.r, "/console/clusters/"+url.PathEscape(f.Name)+"?tab=topology&msg="+url.QueryEscape(msg), http.StatusSeeOther)
}

// pending is the first node group waiting for the account's cluster to
// be ACTIVE ("" if none).
func (h *Handler) pending(account, cluster string) string {
	v, _ := h.pendingGroups.Load(account + "/" + cluster)
	s, _ := v.(string)
	return s
}

// firstNodegroup creates a node group as the signed-in principal once its
// new cluster is ACTIVE, as `skiff create cluster --nodes` does. The wait
// lives in this process: a skiff restart before ACTIVE forgets it (the
// compute tab creates node groups by hand).
func (h *Handler) firstNodegroup(q *request, cluster, name, instanceType, role string, size int32) {
	api := q.api
	origin := &http.Request{RemoteAddr: q.r.RemoteAddr, TLS: q.r.TLS}
	key := q.sess.Account + "/" + cluster
	h.pendingGroups.Store(key, name)
	h.jobs.Add(1)
	go func() {
		defer h.jobs.Done()
		defer h.pendingGroups.Delete(key)
		ctx, cancel := context.WithTimeout(withOrigin(context.Background(), origin), 15*time.Minute)
		defer cancel()
		go func() {
			select {
			case <-h.done:
				cancel()
			case <-ctx.Done():
			}
		}()
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			out, err := api.EKS.DescribeCluster(ctx, &eks.DescribeClusterInput{Name: aws.String(cluster)})
			switch {
			case err != nil && ctx.Err() != nil:
				return
			case err != nil && (apiCode(err) == "ResourceNotFoundException" || signedOut(err)):
				h.cfg.Log.Info("console: first node group dropped", "cluster", cluster, "nodegroup", name, "err", apiMessage(err))
				return
			case err == nil && out.Cluster.Status == ekstypes.ClusterStatusActive:
				if err := h.addNodegroup(ctx, api, cluster, name, instanceType, role, size); err != nil {
					h.cfg.Log.Warn("console: create the first node group", "cluster", cluster, "nodegroup", name, "err", apiMessage(err))
				}
				return
			case err == nil && out.Cluster.Status != ekstypes.ClusterStatusCreating:
				h.cfg.Log.Info("console: first node group dropped", "cluster", cluster, "nodegroup", name, "status", out.Cluster.Status)
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
}
