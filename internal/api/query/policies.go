package query

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"skiff.dev/skiff/internal/iam"
	"skiff.dev/skiff/internal/iam/policy"
)

// policyXML is IAM's Policy shape.
type policyXML struct {
	PolicyName, PolicyId, Arn, Path, DefaultVersionId string
	AttachmentCount                                   int
	PermissionsBoundaryUsageCount                     int
	IsAttachable                                      bool
	Description                                       string `xml:",omitempty"`
	CreateDate                                        string
	UpdateDate                                        string
}

func toPolicy(p *iam.Policy) policyXML {
	created, updated := p.CreatedAt, p.UpdatedAt
	if p.AWS {
		created, updated = awsPolicyDate, awsPolicyDate
	}
	return policyXML{p.Name, p.ID, p.Arn(), p.Path, p.DefaultVersion, p.Attachments, 0, true, p.Description,
		created.Format(time.RFC3339), updated.Format(time.RFC3339)}
}

// awsPolicyDate stands for the creation date of AWS managed policies.
var awsPolicyDate = time.Date(2015, 2, 6, 18, 39, 46, 0, time.UTC)

type versionXML struct {
	Document         string `xml:",omitempty"`
	VersionId        string
	IsDefaultVersion bool
	CreateDate       string
}

type groupXML struct {
	Path, GroupName, GroupId, Arn, CreateDate string
}

func toGroup(g *iam.Group) groupXML {
	return groupXML{g.Path, g.Name, g.ID, g.Arn(), g.CreatedAt.Format(time.RFC3339)}
}

type attachedXML struct{ PolicyName, PolicyArn string }

// entityOf maps an action on users, roles or groups to the entity kind and
// the form field naming it: AttachUserPolicy → user, UserName.
func entityOf(action string) (kind, field string) {
	switch {
	case strings.Contains(action, "User"):
		return iam.KindUser, "UserName"
	case strings.Contains(action, "Role"):
		return iam.KindRole, "RoleName"
	case strings.Contains(action, "Group"):
		return iam.KindGroup, "GroupName"
	}
	return "", ""
}

// policyAction serves IAM's policy and group actions; ok is false for an
// action it does not know.
func (h *Handler) policyAction(action string, caller *iam.Principal, form url.Values) (result any, err error, ok bool) {
	account := caller.Account
	kind, field := entityOf(action)
	name := form.Get(field)
	switch action {
	case "CreatePolicy":
		var p *iam.Policy
		if p, err = h.IAM.CreatePolicy(account, form.Get("PolicyName"), form.Get("Path"), form.Get("PolicyDocument"), form.Get("Description")); err == nil {
			result = struct{ Policy policyXML }{toPolicy(p)}
		}
	case "GetPolicy":
		var p *iam.Policy
		if p, err = h.IAM.GetPolicy(account, form.Get("PolicyArn")); err == nil {
			result = struct{ Policy policyXML }{toPolicy(p)}
		}
	case "ListPolicies":
		var ps []iam.Policy
		ps, err = h.IAM.ListPolicies(account, form.Get("Scope"), form.Get("OnlyAttached") == "true", form.Get("PathPrefix"))
		out := struct {
			Policies    []policyXML `xml:"Policies>member"`
			IsTruncated bool
		}{Policies: []policyXML{}}
		for i := range ps {
			out.Policies = append(out.Policies, toPolicy(&ps[i]))
		}
		result = out
	case "DeletePolicy":
		err = h.IAM.DeletePolicy(account, form.Get("PolicyArn"))
	case "CreatePolicyVersion":
		var v *iam.PolicyVersion
		if v, err = h.IAM.CreatePolicyVersion(account, form.Get("PolicyArn"), form.Get("PolicyDocument"), form.Get("SetAsDefault") == "true"); err == nil {
			result = struct{ PolicyVersion versionXML }{versionXML{VersionId: v.ID, IsDefaultVersion: form.Get("SetAsDefault") == "true",
				CreateDate: v.CreatedAt.Format(time.RFC3339)}}
		}
	case "GetPolicyVersion":
		var p *iam.Policy
		var v *iam.PolicyVersion
		if p, v, err = h.IAM.PolicyVersion(account, form.Get("PolicyArn"), form.Get("VersionId")); err == nil {
			result = struct{ PolicyVersion versionXML }{versionXML{iam.EncodeDocument(v.Document), v.ID, v.ID == p.DefaultVersion,
				v.CreatedAt.Format(time.RFC3339)}}
		}
	case "ListPolicyVersions":
		var p *iam.Policy
		out := struct {
			Versions    []versionXML `xml:"Versions>member"`
			IsTruncated bool
		}{Versions: []versionXML{}}
		if p, err = h.IAM.GetPolicy(account, form.Get("PolicyArn")); err == nil {
			for _, v := range p.Versions {
				out.Versions = append(out.Versions, versionXML{VersionId: v.ID, IsDefaultVersion: v.ID == p.DefaultVersion, CreateDate: v.CreatedAt.Format(time.RFC3339)})
			}
		}
		result = out
	case "DeletePolicyVersion":
		err = h.IAM.DeletePolicyVersion(account, form.Get("PolicyArn"), form.Get("VersionId"))
	case "SetDefaultPolicyVersion":
		err = h.IAM.SetDefaultPolicyVersion(account, form.Get("PolicyArn"), form.Get("VersionId"))
	case "AttachUserPolicy", "AttachRolePolicy", "AttachGroupPolicy":
		err = h.IAM.AttachPolicy(kind, account, name, form.Get("PolicyArn"))
	case "DetachUserPolicy", "DetachRolePolicy", "DetachGroupPolicy":
		err = h.IAM.DetachPolicy(kind, account, name, form.Get("PolicyArn"))
	case "ListAttachedUserPolicies", "ListAttachedRolePolicies", "ListAttachedGroupPolicies":
		var ps []iam.Policy
		ps, err = h.IAM.AttachedPolicies(kind, account, name)
		out := struct {
			AttachedPolicies []attachedXML `xml:"AttachedPolicies>member"`
			IsTruncated      bool
		}{AttachedPolicies: []attachedXML{}}
		for i := range ps {
			out.AttachedPolicies = append(out.AttachedPolicies, attachedXML{ps[i].Name, ps[i].Arn()})
		}
		result = out
	case "PutUserPolicy", "PutRolePolicy", "PutGroupPolicy":
		err = h.IAM.PutInlinePolicy(kind, account, name, form.Get("PolicyName"), form.Get("PolicyDocument"))
	case "GetUserPolicy", "GetRolePolicy", "GetGroupPolicy":
		var doc string
		if doc, err = h.IAM.InlinePolicy(kind, account, name, form.Get("PolicyName")); err == nil {
			result = inlineResult(kind, name, form.Get("PolicyName"), doc)
		}
	case "ListUserPolicies", "ListRolePolicies", "ListGroupPolicies":
		var names []string
		names, err = h.IAM.InlinePolicies(kind, account, name)
		result = struct {
			PolicyNames []string `xml:"PolicyNames>member"`
			IsTruncated bool
		}{append([]string{}, names...), false}
	case "DeleteUserPolicy", "DeleteRolePolicy", "DeleteGroupPolicy":
		err = h.IAM.DeleteInlinePolicy(kind, account, name, form.Get("PolicyName"))
	case "CreateGroup":
		var g *iam.Group
		if g, err = h.IAM.CreateGroup(account, name, form.Get("Path")); err == nil {
			result = struct{ Group groupXML }{toGroup(g)}
		}
	case "GetGroup":
		var g *iam.Group
		var users []iam.User
		if g, users, err = h.IAM.GetGroup(account, name); err == nil {
			out := struct {
				Group       groupXML
				Users       []userXML `xml:"Users>member"`
				IsTruncated bool
			}{Group: toGroup(g), Users: []userXML{}}
			for i := range users {
				out.Users = append(out.Users, toUser(&users[i]))
			}
			result = out
		}
	case "ListGroups", "ListGroupsForUser":
		user := ""
		if action == "ListGroupsForUser" {
			user = form.Get("UserName")
		}
		var gs []iam.Group
		gs, err = h.IAM.ListGroups(account, user)
		out := struct {
			Groups      []groupXML `xml:"Groups>member"`
			IsTruncated bool
		}{Groups: []groupXML{}}
		for i := range gs {
			out.Groups = append(out.Groups, toGroup(&gs[i]))
		}
		result = out
	case "DeleteGroup":
		err = h.IAM.DeleteGroup(account, name)
	case "AddUserToGroup":
		err = h.IAM.AddUserToGroup(account, form.Get("GroupName"), form.Get("UserName"))
	case "RemoveUserFromGroup":
		err = h.IAM.RemoveUserFromGroup(account, form.Get("GroupName"), form.Get("UserName"))
	case "UpdateAssumeRolePolicy":
		err = h.IAM.UpdateAssumeRolePolicy(account, form.Get("RoleName"), form.Get("PolicyDocument"))
	case "SimulatePrincipalPolicy":
		result, err = h.simulate(account, form)
	default:
		return nil, nil, false
	}
	return result, err, true
}

func inlineResult(kind, entity, policyName, doc string) any {
	enc := iam.EncodeDocument(doc)
	switch kind {
	case iam.KindUser:
		return struct{ UserName, PolicyName, PolicyDocument string }{entity, policyName, enc}
	case iam.KindRole:
		return struct{ RoleName, PolicyName, PolicyDocument string }{entity, policyName, enc}
	}
	return struct{ GroupName, PolicyName, PolicyDocument string }{entity, policyName, enc}
}

// members reads a query-protocol list: Name.member.1, Name.member.2, …
func members(form url.Values, name string) []string {
	var out []string
	for i := 1; ; i++ {
		v, ok := form[name+".member."+strconv.Itoa(i)]
		if !ok {
			return out
		}
		out = append(out, v...)
	}
}

type statementXML struct {
	SourcePolicyId   string
	SourcePolicyType string
}

type evalXML struct {
	EvalActionName       string
	EvalResourceName     string
	EvalDecision         string
	MatchedStatements    []statementXML `xml:"MatchedStatements>member"`
	MissingContextValues []string       `xml:"MissingContextValues>member"`
}

// simulate serves SimulatePrincipalPolicy: the policies of a user (with
// its groups'), role or group, evaluated as the API evaluates them.
func (h *Handler) simulate(account string, form url.Values) (any, error) {
	for _, unsupported := range []string{"PolicyInputList.member.1", "PermissionsBoundaryPolicyInputList.member.1", "ResourcePolicy", "ResourceOwner", "CallerArn", "ResourceHandlingOption"} {
		if form.Get(unsupported) != "" {
			return nil, fmt.Errorf("%w: skiff's SimulatePrincipalPolicy does not support %s", iam.ErrInvalid, strings.SplitN(unsupported, ".", 2)[0])
		}
	}
	actions := members(form, "ActionNames")
	if len(actions) == 0 {
		return nil, fmt.Errorf("%w: ActionNames is required", iam.ErrInvalid)
	}
	resources := members(form, "ResourceArns")
	if len(resources) == 0 {
		resources = []string{"*"}
	}
	ctx := map[string][]string{}
	for i := 1; ; i++ {
		p := "ContextEntries.member." + strconv.Itoa(i) + "."
		key := form.Get(p + "ContextKeyName")
		if key == "" {
			break
		}
		ctx[key] = members(form, p+"ContextKeyValues")
	}
	policies, who, err := h.IAM.SimulationPolicies(account, form.Get("PolicySourceArn"))
	if err != nil {
		return nil, err
	}
	if who.Arn != "" {
		if _, ok := ctx["aws:PrincipalArn"]; !ok {
			ctx["aws:PrincipalArn"] = []string{who.Arn}
		}
		if _, ok := ctx["aws:username"]; !ok && who.User != "" {
			ctx["aws:username"] = []string{who.User}
		}
	}
	out := struct {
		EvaluationResults []evalXML `xml:"EvaluationResults>member"`
		IsTruncated       bool
	}{EvaluationResults: []evalXML{}}
	for _, a := range actions {
		for _, res := range resources {
			e := evalXML{EvalActionName: a, EvalResourceName: res, MatchedStatements: []statementXML{}, MissingContextValues: []string{}}
			if who.Root {
				e.EvalDecision = policy.Allow.String()
			} else {
				r := policy.Evaluate(policies, policy.Request{Principal: policy.Principal{Arn: who.Arn, Account: account, RoleArn: who.RoleArn},
					Action: a, Resource: res, Context: ctx})
				e.EvalDecision = r.Decision.String()
				for _, m := range r.Matched {
					typ := "IAM Policy"
					if strings.HasPrefix(m.PolicyID, "arn:aws:iam::aws:policy/") {
						typ = "aws-managed"
					} else if strings.HasPrefix(m.PolicyID, "arn:") {
						typ = "user-managed"
					}
					e.MatchedStatements = append(e.MatchedStatements, statementXML{m.PolicyID, typ})
				}
			}
			out.EvaluationResults = append(out.EvaluationResults, e)
		}
	}
	return out, nil
}
