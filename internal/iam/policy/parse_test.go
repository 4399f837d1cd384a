package policy

import (
	"errors"
	"reflect"
	"testing"
)

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name  string
		trust bool
		text  string
		want  string // IAM message
	}{
		{"bad JSON", false, `{"Version":"2012-10-17","Statement":[`, "Syntax errors in policy."},
		{"not an object", false, `["Allow"]`, "Syntax errors in policy."},
		{"trailing data", false, `{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}} x`, "Syntax errors in policy."},
		{"duplicate key", false, `{"Statement":{"Effect":"Allow","Effect":"Deny","Action":"*","Resource":"*"}}`, "Syntax errors in policy."},
		{"unknown top-level field", false, `{"Version":"2012-10-17","Statements":[]}`, "Unknown field Statements"},
		{"unknown statement field", false, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Acton":"s3:*","Resource":"*"}}`, "Unknown field Acton"},
		{"field names are case-sensitive", false, `{"Version":"2012-10-17","Statement":{"effect":"Allow","Action":"s3:*","Resource":"*"}}`, "Unknown field effect"},
		{"bad version", false, `{"Version":"2012-10-18","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}`, "The policy failed legacy parsing"},
		{"version not a string", false, `{"Version":2012,"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}`, "Syntax errors in policy."},
		{"no statement", false, `{"Version":"2012-10-17"}`, "Missing required field Statement"},
		{"empty statement list", false, `{"Version":"2012-10-17","Statement":[]}`, "Missing required field Statement"},
		{"statement not an object", false, `{"Version":"2012-10-17","Statement":["x"]}`, "Syntax errors in policy."},
		{"missing effect", false, `{"Version":"2012-10-17","Statement":{"Action":"*","Resource":"*"}}`, "Missing required field Effect"},
		{"bad effect", false, `{"Version":"2012-10-17","Statement":{"Effect":"Permit","Action":"*","Resource":"*"}}`, "Invalid effect: Permit"},
		{"effect is case-sensitive", false, `{"Version":"2012-10-17","Statement":{"Effect":"allow","Action":"*","Resource":"*"}}`, "Invalid effect: allow"},
		{"Action and NotAction", false, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","NotAction":"iam:*","Resource":"*"}}`, "Policy statement must contain only one of Action or NotAction."},
		{"no action", false, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Resource":"*"}}`, "Policy statement must contain actions."},
		{"empty action list", false, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":[],"Resource":"*"}}`, "Policy statement must contain actions."},
		{"action without vendor", false, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"DescribeCluster","Resource":"*"}}`, "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc."},
		{"action with two colons", false, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"arn:aws:logs:*","Resource":"*"}}`, "Actions/Condition can contain only one colon."},
		{"condition without operator", false, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"servicecatalog:accountLevel":"self"}}}`, "Syntax errors in policy."},
		{"action not a string", false, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":["s3:*",3],"Resource":"*"}}`, "Syntax errors in policy."},
		{"missing resource in identity policy", false, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*"}}`, "Policy statement must contain resources."},
		{"empty resource list", false, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":[]}}`, "Policy statement must contain resources."},
		{"Resource and NotResource", false, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","NotResource":"arn:aws:s3:::b"}}`, "Policy statement must contain only one of Resource or NotResource."},
		{"resource not an ARN", false, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ec2:*","Resource":"vpc-123"}}`, `Resource vpc-123 must be in ARN format or "*".`},
		{"principal in identity policy", false, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}}`, "Policy document should not specify a principal."},
		{"unknown condition operator", false, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"StringEqualz":{"aws:username":"bob"}}}}`, "Invalid Condition type : StringEqualz"},
		{"Null cannot be IfExists", false, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"NullIfExists":{"aws:username":"true"}}}}`, "Invalid Condition type : NullIfExists"},
		{"condition key without vendor", false, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"StringEquals":{"username":"bob"}}}}`, "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc."},
		{"condition value is an object", false, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"StringEquals":{"aws:username":{"a":"b"}}}}}`, "Syntax errors in policy."},
		{"condition value is null", false, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"StringEquals":{"aws:username":null}}}}`, "Syntax errors in policy."},
		{"duplicate Sid", false, `{"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Allow","Action":"s3:*","Resource":"*"},{"Sid":"A","Effect":"Deny","Action":"s3:*","Resource":"*"}]}`, "Statement IDs (SID) in a single policy must be unique."},
		{"Sid not alphanumeric", false, `{"Version":"2012-10-17","Statement":{"Sid":"my-sid","Effect":"Allow","Action":"s3:*","Resource":"*"}}`, "Statement IDs (SID) must be alpha-numeric. Check that your input satisfies the regular expression [0-9A-Za-z]*"},
		{"Resource in trust policy", true, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"Service":"eks.amazonaws.com"},"Action":"sts:AssumeRole","Resource":"*"}}`, "Has prohibited field Resource"},
		{"NotResource in trust policy", true, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"Service":"eks.amazonaws.com"},"Action":"sts:AssumeRole","NotResource":"*"}}`, "Has prohibited field NotResource"},
		{"missing principal in trust policy", true, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"sts:AssumeRole"}}`, "Missing required field Principal"},
		{"Principal and NotPrincipal", true, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*","NotPrincipal":{"AWS":"123456789012"},"Action":"sts:AssumeRole"}}`, "Policy statement must contain only one of Principal or NotPrincipal."},
		{"non-STS action in trust policy", true, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*","Action":"s3:GetObject"}}`, "AssumeRole policy may only specify STS AssumeRole actions."},
		{"bad principal string", true, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"bob","Action":"sts:AssumeRole"}}`, `Invalid principal in policy: "bob"`},
		{"bad AWS principal", true, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"bob"},"Action":"sts:AssumeRole"}}`, `Invalid principal in policy: "AWS":"bob"`},
		{"unknown principal type", true, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"Users":"bob"},"Action":"sts:AssumeRole"}}`, `Invalid principal in policy: "Users":"bob"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parse := Parse
			if tt.trust {
				parse = ParseTrust
			}
			doc, err := parse(tt.text)
			if err == nil {
				t.Fatalf("parsed %+v, want error %q", doc, tt.want)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("error %v does not wrap ErrMalformed", err)
			}
			var me *MalformedError
			if !errors.As(err, &me) {
				t.Fatalf("error %T is not a *MalformedError", err)
			}
			if err.Error() != tt.want {
				t.Errorf("error = %q (detail %q), want %q", err.Error(), me.Detail, tt.want)
			}
		})
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name  string
		trust bool
		text  string
		want  *Document // Text and compiled forms are not compared
	}{
		{
			name: "statement object, strings",
			text: `{"Version":"2012-10-17","Id":"p1","Statement":{"Sid":"S1","Effect":"Allow","Action":"eks:Describe*","Resource":"*"}}`,
			want: &Document{Version: "2012-10-17", ID: "p1", Statements: []Statement{
				{Sid: "S1", Effect: "Allow", Action: []string{"eks:Describe*"}, Resource: []string{"*"}},
			}},
		},
		{
			name: "no version, arrays, NotAction, NotResource, typed condition values",
			text: `{"Statement":[
				{"Effect":"Deny","NotAction":["iam:*","sts:*"],"NotResource":["arn:aws:s3:::b","arn:aws:s3:::b/*"],
				 "Condition":{"Bool":{"aws:SecureTransport":false},"NumericLessThan":{"s3:max-keys":[10, 2.5]}}}]}`,
			want: &Document{Statements: []Statement{{
				Effect:      "Deny",
				NotAction:   []string{"iam:*", "sts:*"},
				NotResource: []string{"arn:aws:s3:::b", "arn:aws:s3:::b/*"},
				Condition: map[string]map[string][]string{
					"Bool":            {"aws:SecureTransport": {"false"}},
					"NumericLessThan": {"s3:max-keys": {"10", "2.5"}},
				},
			}}},
		},
		{
			name:  "trust policy",
			trust: true,
			text: `{"Version":"2012-10-17","Statement":[
				{"Effect":"Allow","Principal":{"Service":["eks.amazonaws.com","ec2.amazonaws.com"]},"Action":"sts:AssumeRole"},
				{"Effect":"Allow","Principal":"*","Action":["sts:AssumeRole","sts:TagSession"]},
				{"Effect":"Deny","NotPrincipal":{"AWS":["arn:aws:iam::123456789012:root","111122223333"]},"Action":"sts:*"},
				{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/ABC"},"Action":"sts:AssumeRoleWithWebIdentity",
				 "Condition":{"StringEquals":{"oidc.eks.us-west-2.amazonaws.com/id/ABC:sub":"system:serviceaccount:kube-system:aws-node"}}}]}`,
			want: &Document{Version: "2012-10-17", Trust: true, Statements: []Statement{
				{Effect: "Allow", Principal: map[string][]string{"Service": {"eks.amazonaws.com", "ec2.amazonaws.com"}}, Action: []string{"sts:AssumeRole"}},
				{Effect: "Allow", Principal: map[string][]string{"AWS": {"*"}}, Action: []string{"sts:AssumeRole", "sts:TagSession"}},
				{Effect: "Deny", NotPrincipal: map[string][]string{"AWS": {"arn:aws:iam::123456789012:root", "111122223333"}}, Action: []string{"sts:*"}},
				{Effect: "Allow", Principal: map[string][]string{"Federated": {"arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/ABC"}},
					Action:    []string{"sts:AssumeRoleWithWebIdentity"},
					Condition: map[string]map[string][]string{"StringEquals": {"oidc.eks.us-west-2.amazonaws.com/id/ABC:sub": {"system:serviceaccount:kube-system:aws-node"}}}},
			}},
		},
		{
			name: "empty Sid may repeat",
			text: `{"Version":"2008-10-17","Statement":[{"Sid":"","Effect":"Allow","Action":"s3:*","Resource":"*"},{"Sid":"","Effect":"Allow","Action":"s3:*","Resource":"*"}]}`,
			want: &Document{Version: "2008-10-17", Statements: []Statement{
				{Effect: "Allow", Action: []string{"s3:*"}, Resource: []string{"*"}},
				{Effect: "Allow", Action: []string{"s3:*"}, Resource: []string{"*"}},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parse := Parse
			if tt.trust {
				parse = ParseTrust
			}
			doc, err := parse(tt.text)
			if err != nil {
				t.Fatal(err)
			}
			if doc.Text != tt.text {
				t.Errorf("Text not kept")
			}
			for i := range doc.Statements {
				if doc.Statements[i].c == nil {
					t.Errorf("statement %d not compiled", i)
				}
				doc.Statements[i].c = nil
			}
			doc.Text = ""
			if !reflect.DeepEqual(doc, tt.want) {
				t.Errorf("got  %+v\nwant %+v", doc, tt.want)
			}
		})
	}
}
