package access

import (
	"fmt"

	"sigs.k8s.io/yaml"
)

// AWSAuthNamespace and AWSAuthName locate the aws-auth ConfigMap.
const (
	AWSAuthNamespace = "kube-system"
	AWSAuthName      = "aws-auth"
)

// AWSAuth is the parsed aws-auth ConfigMap (aws-iam-authenticator's format).
type AWSAuth struct {
	Roles    []Mapping
	Users    []Mapping
	Accounts []string
}

// Mapping maps one IAM role or user.
type Mapping struct {
	RoleArn  string   `json:"rolearn,omitempty"`
	UserArn  string   `json:"userarn,omitempty"`
	Username string   `json:"username,omitempty"`
	Groups   []string `json:"groups,omitempty"`
}

// ParseAWSAuth parses the ConfigMap's data (mapRoles, mapUsers,
// mapAccounts, each a YAML document).
func ParseAWSAuth(data map[string]string) (*AWSAuth, error) {
	a := &AWSAuth{}
	if err := yaml.Unmarshal([]byte(data["mapRoles"]), &a.Roles); err != nil {
		return nil, fmt.Errorf("aws-auth mapRoles: %w", err)
	}
	if err := yaml.Unmarshal([]byte(data["mapUsers"]), &a.Users); err != nil {
		return nil, fmt.Errorf("aws-auth mapUsers: %w", err)
	}
	if err := yaml.Unmarshal([]byte(data["mapAccounts"]), &a.Accounts); err != nil {
		return nil, fmt.Errorf("aws-auth mapAccounts: %w", err)
	}
	return a, nil
}

// find returns the mapping of a caller: its role's or user's entry, or, for
// a user of a mapped account, its ARN as username.
func (a *AWSAuth) find(c Caller) (Mapping, bool) {
	list, field := a.Users, func(m Mapping) string { return m.UserArn }
	if c.Kind == "role" {
		list, field = a.Roles, func(m Mapping) string { return m.RoleArn }
	}
	for _, m := range list {
		if p, err := ParsePrincipalArn(field(m)); err == nil && c.matches(p) {
			return m, true
		}
	}
	if c.Kind == "user" {
		for _, acct := range a.Accounts {
			if acct == c.Account {
				return Mapping{Username: c.Arn}, true
			}
		}
	}
	return Mapping{}, false
}
