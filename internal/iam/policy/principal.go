package policy

import "strings"

// principalSet is the compiled Principal (or NotPrincipal) of a statement.
//
// Matching, as IAM does for a role trust policy:
//   - "*" or {"AWS": "*"} matches any caller, AWS services included;
//   - an account ID, or arn:PARTITION:iam::ACCOUNT:root, matches every principal of that account;
//   - an IAM user ARN matches that user (Principal.Arn);
//   - an IAM role ARN matches the sessions of that role (Principal.RoleArn) and the role itself;
//   - an assumed-role session ARN (arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION), and any other
//     ARN, matches a caller whose Principal.Arn is that ARN;
//   - {"Service": "eks.amazonaws.com"} matches Principal.Service, ignoring case;
//   - Federated and CanonicalUser principals match nothing here (there is no such caller).
//
// Principal ARNs are compared exactly: IAM allows no wildcard in them other than "*" alone.
type principalSet struct {
	any      bool
	accounts []string
	arns     []string
	services []string
}

func newPrincipalSet(m map[string][]string) principalSet {
	var s principalSet
	for _, p := range m["AWS"] {
		switch {
		case p == "*":
			s.any = true
		case isAccountID(p):
			s.accounts = append(s.accounts, p)
		default:
			if acct, ok := rootAccount(p); ok {
				s.accounts = append(s.accounts, acct)
			} else {
				s.arns = append(s.arns, p)
			}
		}
	}
	s.services = append(s.services, m["Service"]...)
	return s
}

// rootAccount returns the account of arn:PARTITION:iam::ACCOUNT:root.
func rootAccount(arn string) (string, bool) {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) == 6 && parts[0] == "arn" && parts[2] == "iam" && parts[3] == "" && parts[5] == "root" && isAccountID(parts[4]) {
		return parts[4], true
	}
	return "", false
}

func (s *principalSet) matches(p *Principal) bool {
	if s.any {
		return true
	}
	if p.Account != "" {
		for _, a := range s.accounts {
			if a == p.Account {
				return true
			}
		}
	}
	for _, a := range s.arns {
		if (p.Arn != "" && a == p.Arn) || (p.RoleArn != "" && a == p.RoleArn) {
			return true
		}
	}
	if p.Service != "" {
		for _, svc := range s.services {
			if strings.EqualFold(svc, p.Service) {
				return true
			}
		}
	}
	return false
}
