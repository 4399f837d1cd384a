package authz

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"

	"skiff.dev/skiff/internal/iam"
)

// form parses a query-protocol request exactly as its handler will
// (r.ParseForm over the body and the URL's query).
func form(r *http.Request, body []byte) url.Values {
	c := r.Clone(r.Context())
	c.Body = io.NopCloser(bytes.NewReader(body))
	c.Form, c.PostForm = nil, nil
	if c.ParseForm() != nil {
		return url.Values{}
	}
	return c.Form
}

// describeIAM names the checks of an IAM or STS request.
func (a *Authorizer) describeIAM(service string, f url.Values, caller *iam.Principal, account string) Operation {
	op := f.Get("Action")
	out := Operation{Service: service, Name: op}
	if service == "sts" {
		switch op {
		case "GetCallerIdentity", "":
			// Needs no permission, as on AWS.
		default:
			res := "*"
			if op == "AssumeRole" {
				res = f.Get("RoleArn")
			}
			out.Checks = []Check{{Action: "sts:" + op, Resource: res}}
		}
		return out
	}
	if op == "" {
		return out
	}
	base := "arn:aws:iam::" + account + ":"
	c := Check{Action: "iam:" + op}
	user := f.Get("UserName")
	if user == "" && (op == "GetUser" || op == "CreateAccessKey" || op == "ListAccessKeys" || op == "DeleteAccessKey" || op == "UpdateAccessKey" || op == "ListGroupsForUser") {
		user = caller.User
	}
	switch {
	case op == "CreateUser":
		c.Resource = base + "user" + path(f) + user
	case op == "CreateRole":
		c.Resource = base + "role" + path(f) + f.Get("RoleName")
	case op == "CreateGroup":
		c.Resource = base + "group" + path(f) + f.Get("GroupName")
	case op == "CreatePolicy":
		c.Resource = base + "policy" + path(f) + f.Get("PolicyName")
	case op == "ListUsers" || op == "ListRoles" || op == "ListGroups" || op == "ListPolicies":
		kind := strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(op, "List"), "s"))
		if op == "ListPolicies" {
			kind = "policy"
		}
		prefix := f.Get("PathPrefix")
		if prefix == "" {
			prefix = "/"
		}
		c.Resource = base + kind + prefix + "*"
	case f.Get("PolicyArn") != "" && !strings.HasSuffix(op, "UserPolicy") && !strings.HasSuffix(op, "RolePolicy") && !strings.HasSuffix(op, "GroupPolicy"):
		c.Resource = f.Get("PolicyArn")
	case f.Get("GroupName") != "":
		c.Resource = a.entityArn(account, iam.KindGroup, f.Get("GroupName"))
	case f.Get("RoleName") != "":
		c.Resource = a.entityArn(account, iam.KindRole, f.Get("RoleName"))
	case user != "":
		c.Resource = a.entityArn(account, iam.KindUser, user)
	case op == "SimulatePrincipalPolicy":
		c.Resource = f.Get("PolicySourceArn")
	default:
		c.Resource = "*"
	}
	if arn := f.Get("PolicyArn"); arn != "" && (strings.HasPrefix(op, "Attach") || strings.HasPrefix(op, "Detach")) {
		c.Context = map[string][]string{"iam:PolicyARN": {arn}}
	}
	out.Checks = []Check{c}
	return out
}

func path(f url.Values) string {
	if p := f.Get("Path"); p != "" {
		return p
	}
	return "/"
}

// entityArn is the ARN of a user, role or group (with its path if it
// exists).
func (a *Authorizer) entityArn(account, kind, name string) string {
	switch kind {
	case iam.KindUser:
		if u, err := a.IAM.GetUser(account, name); err == nil {
			return u.Arn()
		}
	case iam.KindRole:
		if r, err := a.IAM.GetRole(account, name); err == nil {
			return r.Arn()
		}
	case iam.KindGroup:
		if g, _, err := a.IAM.GetGroup(account, name); err == nil {
			return g.Arn()
		}
	}
	return "arn:aws:iam::" + account + ":" + kind + "/" + name
}

// describeEC2 names the checks of an EC2 request.
func (a *Authorizer) describeEC2(f url.Values, account, region string) Operation {
	op := f.Get("Action")
	base := "arn:aws:ec2:" + region + ":" + account + ":"
	c := Check{Action: "ec2:" + op, Resource: "*"}
	switch op {
	case "DeleteVpc":
		c.Resource = base + "vpc/" + f.Get("VpcId")
	case "DeleteSubnet":
		c.Resource = base + "subnet/" + f.Get("SubnetId")
	case "CreateVpc":
		c.Resource = base + "vpc/*"
	case "CreateSubnet":
		c.Resource = base + "subnet/*"
	}
	if op == "" {
		return Operation{Service: "ec2"}
	}
	return Operation{Service: "ec2", Name: op, Checks: []Check{c}}
}

// ECRTargetPrefix is the X-Amz-Target prefix of ECR's operations.
const ECRTargetPrefix = "AmazonEC2ContainerRegistry_V20150921."

// describeECR names the checks of an ECR request.
func (a *Authorizer) describeECR(r *http.Request, body []byte, account, region string) Operation {
	op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), ECRTargetPrefix)
	if !ok || op == "" {
		return Operation{Service: "ecr"}
	}
	var b struct {
		RepositoryName  string   `json:"repositoryName"`
		RepositoryNames []string `json:"repositoryNames"`
		Tags            []struct {
			Key, Value string
		} `json:"tags"`
	}
	json.Unmarshal(body, &b)
	base := "arn:aws:ecr:" + region + ":" + account + ":repository/"
	var checks []Check
	add := func(name string) {
		c := Check{Action: "ecr:" + op, Resource: base + name}
		if _, tags, ok := a.resolve(account, "repository", name); ok {
			c.Context = resourceTags(tags)
		}
		checks = append(checks, c)
	}
	switch {
	case b.RepositoryName != "":
		add(b.RepositoryName)
	case len(b.RepositoryNames) > 0:
		for _, n := range b.RepositoryNames {
			add(n)
		}
	case op == "DescribeRepositories":
		checks = append(checks, Check{Action: "ecr:" + op, Resource: base + "*"})
	default:
		checks = append(checks, Check{Action: "ecr:" + op, Resource: "*"})
	}
	if len(b.Tags) > 0 {
		tags := map[string]string{}
		for _, t := range b.Tags {
			tags[t.Key] = t.Value
		}
		for i := range checks {
			checks[i].Context = merge(checks[i].Context, tagContext(tags))
		}
	}
	return Operation{Service: "ecr", Name: op, Checks: checks}
}

// Describe names the checks of a request signed for service.
func (a *Authorizer) Describe(service string, r *http.Request, body []byte, caller *iam.Principal, region string) Operation {
	account := caller.Account
	if region == "" {
		region = a.Region
	}
	switch service {
	case "eks":
		return a.describeEKS(r, body, account, region)
	case "iam", "sts":
		return a.describeIAM(service, form(r, body), caller, account)
	case "ec2":
		return a.describeEC2(form(r, body), account, region)
	case "ecr":
		return a.describeECR(r, body, account, region)
	case "kms":
		return a.describeKMS(r, body, account, region)
	}
	return Operation{Service: service}
}
