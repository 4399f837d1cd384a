package policy

import "testing"

func TestConditions(t *testing.T) {
	type ctx = map[string][]string
	tests := []struct {
		name string
		cond string // the Condition element
		ctx  ctx
		want bool // whether the statement applies
	}{
		// String
		{"StringEquals match", `{"StringEquals":{"aws:ResourceTag/env":"prod"}}`, ctx{"aws:ResourceTag/env": {"prod"}}, true},
		{"StringEquals mismatch", `{"StringEquals":{"aws:ResourceTag/env":"prod"}}`, ctx{"aws:ResourceTag/env": {"dev"}}, false},
		{"StringEquals is case-sensitive", `{"StringEquals":{"aws:ResourceTag/env":"prod"}}`, ctx{"aws:ResourceTag/env": {"PROD"}}, false},
		{"StringEquals values are ORed", `{"StringEquals":{"aws:ResourceTag/env":["dev","prod"]}}`, ctx{"aws:ResourceTag/env": {"prod"}}, true},
		{"StringEquals key is case-insensitive", `{"StringEquals":{"AWS:RESOURCETAG/ENV":"prod"}}`, ctx{"aws:resourcetag/env": {"prod"}}, true},
		{"StringEquals absent key", `{"StringEquals":{"aws:ResourceTag/env":"prod"}}`, nil, false},
		{"StringEquals keys are ANDed", `{"StringEquals":{"aws:ResourceTag/env":"prod","aws:ResourceTag/team":"blue"}}`, ctx{"aws:ResourceTag/env": {"prod"}, "aws:ResourceTag/team": {"red"}}, false},
		{"StringEquals keys are ANDed, both true", `{"StringEquals":{"aws:ResourceTag/env":"prod","aws:ResourceTag/team":"blue"}}`, ctx{"aws:ResourceTag/env": {"prod"}, "aws:ResourceTag/team": {"blue"}}, true},
		{"StringEquals multivalued request, one matches", `{"StringEquals":{"aws:TagKeys":"env"}}`, ctx{"aws:TagKeys": {"team", "env"}}, true},
		{"StringNotEquals differs", `{"StringNotEquals":{"aws:ResourceTag/env":"prod"}}`, ctx{"aws:ResourceTag/env": {"dev"}}, true},
		{"StringNotEquals equal", `{"StringNotEquals":{"aws:ResourceTag/env":"prod"}}`, ctx{"aws:ResourceTag/env": {"prod"}}, false},
		{"StringNotEquals equal to one of the values", `{"StringNotEquals":{"aws:ResourceTag/env":["dev","prod"]}}`, ctx{"aws:ResourceTag/env": {"prod"}}, false},
		{"StringNotEquals absent key is true (AWS)", `{"StringNotEquals":{"aws:ResourceTag/env":"prod"}}`, nil, true},
		{"StringNotEquals multivalued request, one equal", `{"StringNotEquals":{"aws:TagKeys":"env"}}`, ctx{"aws:TagKeys": {"team", "env"}}, false},
		{"StringEqualsIgnoreCase", `{"StringEqualsIgnoreCase":{"aws:ResourceTag/env":"prod"}}`, ctx{"aws:ResourceTag/env": {"PROD"}}, true},
		{"StringEqualsIgnoreCase mismatch", `{"StringEqualsIgnoreCase":{"aws:ResourceTag/env":"prod"}}`, ctx{"aws:ResourceTag/env": {"dev"}}, false},
		{"StringNotEqualsIgnoreCase equal", `{"StringNotEqualsIgnoreCase":{"aws:ResourceTag/env":"prod"}}`, ctx{"aws:ResourceTag/env": {"Prod"}}, false},
		{"StringNotEqualsIgnoreCase absent", `{"StringNotEqualsIgnoreCase":{"aws:ResourceTag/env":"prod"}}`, nil, true},
		{"StringLike *", `{"StringLike":{"aws:ResourceTag/env":"prod-*"}}`, ctx{"aws:ResourceTag/env": {"prod-eu"}}, true},
		{"StringLike ?", `{"StringLike":{"aws:ResourceTag/env":"prod-??"}}`, ctx{"aws:ResourceTag/env": {"prod-eu"}}, true},
		{"StringLike ? length", `{"StringLike":{"aws:ResourceTag/env":"prod-?"}}`, ctx{"aws:ResourceTag/env": {"prod-eu"}}, false},
		{"StringLike is case-sensitive", `{"StringLike":{"aws:ResourceTag/env":"prod-*"}}`, ctx{"aws:ResourceTag/env": {"PROD-eu"}}, false},
		{"StringLike absent", `{"StringLike":{"aws:ResourceTag/env":"*"}}`, nil, false},
		{"StringNotLike differs", `{"StringNotLike":{"aws:ResourceTag/env":"prod-*"}}`, ctx{"aws:ResourceTag/env": {"dev"}}, true},
		{"StringNotLike matches", `{"StringNotLike":{"aws:ResourceTag/env":"prod-*"}}`, ctx{"aws:ResourceTag/env": {"prod-1"}}, false},
		{"StringNotLike absent is true (AWS)", `{"StringNotLike":{"aws:ResourceTag/env":"prod-*"}}`, nil, true},

		// Numeric
		{"NumericEquals", `{"NumericEquals":{"s3:max-keys":"10"}}`, ctx{"s3:max-keys": {"10.0"}}, true},
		{"NumericEquals JSON number", `{"NumericEquals":{"s3:max-keys":10}}`, ctx{"s3:max-keys": {"10"}}, true},
		{"NumericEquals mismatch", `{"NumericEquals":{"s3:max-keys":"10"}}`, ctx{"s3:max-keys": {"11"}}, false},
		{"NumericEquals request not a number", `{"NumericEquals":{"s3:max-keys":"10"}}`, ctx{"s3:max-keys": {"ten"}}, false},
		{"NumericEquals policy not a number", `{"NumericEquals":{"s3:max-keys":"ten"}}`, ctx{"s3:max-keys": {"10"}}, false},
		{"NumericNotEquals", `{"NumericNotEquals":{"s3:max-keys":"10"}}`, ctx{"s3:max-keys": {"11"}}, true},
		{"NumericNotEquals equal", `{"NumericNotEquals":{"s3:max-keys":"10"}}`, ctx{"s3:max-keys": {"10"}}, false},
		{"NumericNotEquals absent (AWS)", `{"NumericNotEquals":{"s3:max-keys":"10"}}`, nil, true},
		{"NumericLessThan", `{"NumericLessThan":{"s3:max-keys":"10"}}`, ctx{"s3:max-keys": {"9"}}, true},
		{"NumericLessThan equal", `{"NumericLessThan":{"s3:max-keys":"10"}}`, ctx{"s3:max-keys": {"10"}}, false},
		{"NumericLessThanEquals equal", `{"NumericLessThanEquals":{"s3:max-keys":"10"}}`, ctx{"s3:max-keys": {"10"}}, true},
		{"NumericLessThanEquals greater", `{"NumericLessThanEquals":{"s3:max-keys":"10"}}`, ctx{"s3:max-keys": {"10.5"}}, false},
		{"NumericGreaterThan", `{"NumericGreaterThan":{"aws:MultiFactorAuthAge":"3600"}}`, ctx{"aws:MultiFactorAuthAge": {"7200"}}, true},
		{"NumericGreaterThan equal", `{"NumericGreaterThan":{"aws:MultiFactorAuthAge":"3600"}}`, ctx{"aws:MultiFactorAuthAge": {"3600"}}, false},
		{"NumericGreaterThanEquals equal", `{"NumericGreaterThanEquals":{"aws:MultiFactorAuthAge":"3600"}}`, ctx{"aws:MultiFactorAuthAge": {"3600"}}, true},
		{"NumericGreaterThanEquals less", `{"NumericGreaterThanEquals":{"aws:MultiFactorAuthAge":"3600"}}`, ctx{"aws:MultiFactorAuthAge": {"-1"}}, false},
		{"NumericLessThan absent", `{"NumericLessThan":{"s3:max-keys":"10"}}`, nil, false},

		// Date
		{"DateLessThan", `{"DateLessThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"}}`, ctx{"aws:CurrentTime": {"2026-05-01T12:00:00Z"}}, true},
		{"DateLessThan after", `{"DateLessThan":{"aws:CurrentTime":"2020-01-01T00:00:00Z"}}`, ctx{"aws:CurrentTime": {"2026-05-01T12:00:00Z"}}, false},
		{"DateLessThan date only", `{"DateLessThan":{"aws:CurrentTime":"2026-05-02"}}`, ctx{"aws:CurrentTime": {"2026-05-01T23:59:59Z"}}, true},
		{"DateLessThan offset", `{"DateLessThan":{"aws:CurrentTime":"2026-05-01T13:00:00+02:00"}}`, ctx{"aws:CurrentTime": {"2026-05-01T11:30:00Z"}}, false},
		{"DateLessThanEquals equal", `{"DateLessThanEquals":{"aws:CurrentTime":"2026-05-01T12:00:00Z"}}`, ctx{"aws:CurrentTime": {"2026-05-01T12:00:00.000Z"}}, true},
		{"DateGreaterThan", `{"DateGreaterThan":{"aws:CurrentTime":"2020-01-01T00:00:00Z"}}`, ctx{"aws:CurrentTime": {"2026-05-01T12:00:00Z"}}, true},
		{"DateGreaterThan equal", `{"DateGreaterThan":{"aws:CurrentTime":"2026-05-01T12:00:00Z"}}`, ctx{"aws:CurrentTime": {"2026-05-01T12:00:00Z"}}, false},
		{"DateGreaterThanEquals equal", `{"DateGreaterThanEquals":{"aws:CurrentTime":"2026-05-01T12:00:00Z"}}`, ctx{"aws:CurrentTime": {"2026-05-01T12:00:00Z"}}, true},
		{"DateEquals epoch vs ISO", `{"DateEquals":{"aws:CurrentTime":"1700000000"}}`, ctx{"aws:CurrentTime": {"2023-11-14T22:13:20Z"}}, true},
		{"DateEquals epoch request", `{"DateEquals":{"aws:EpochTime":"2023-11-14T22:13:20Z"}}`, ctx{"aws:EpochTime": {"1700000000"}}, true},
		{"DateEquals basic format", `{"DateEquals":{"aws:CurrentTime":"20231114T221320Z"}}`, ctx{"aws:CurrentTime": {"2023-11-14T22:13:20Z"}}, true},
		{"DateNotEquals", `{"DateNotEquals":{"aws:CurrentTime":"2023-11-14T22:13:20Z"}}`, ctx{"aws:CurrentTime": {"2023-11-14T22:13:21Z"}}, true},
		{"DateNotEquals equal", `{"DateNotEquals":{"aws:CurrentTime":"2023-11-14T22:13:20Z"}}`, ctx{"aws:CurrentTime": {"1700000000"}}, false},
		{"DateLessThan request not a date", `{"DateLessThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"}}`, ctx{"aws:CurrentTime": {"yesterday"}}, false},
		{"DateLessThan absent", `{"DateLessThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"}}`, nil, false},

		// Bool
		{"Bool true", `{"Bool":{"aws:SecureTransport":"true"}}`, ctx{"aws:SecureTransport": {"true"}}, true},
		{"Bool JSON boolean, case-insensitive", `{"Bool":{"aws:SecureTransport":true}}`, ctx{"aws:SecureTransport": {"TRUE"}}, true},
		{"Bool false", `{"Bool":{"aws:SecureTransport":"false"}}`, ctx{"aws:SecureTransport": {"true"}}, false},
		{"Bool absent", `{"Bool":{"aws:MultiFactorAuthPresent":"false"}}`, nil, false},
		{"BoolIfExists absent", `{"BoolIfExists":{"aws:MultiFactorAuthPresent":"false"}}`, nil, true},

		// Binary
		{"BinaryEquals base64", `{"BinaryEquals":{"x:blob":"aGVsbG8="}}`, ctx{"x:blob": {"aGVsbG8="}}, true},
		{"BinaryEquals raw request bytes", `{"BinaryEquals":{"x:blob":"aGVsbG8="}}`, ctx{"x:blob": {"hello"}}, true},
		{"BinaryEquals mismatch", `{"BinaryEquals":{"x:blob":"aGVsbG8="}}`, ctx{"x:blob": {"Ynll"}}, false},

		// IP
		{"IpAddress v4 CIDR", `{"IpAddress":{"aws:SourceIp":"203.0.113.0/24"}}`, ctx{"aws:SourceIp": {"203.0.113.7"}}, true},
		{"IpAddress v4 outside", `{"IpAddress":{"aws:SourceIp":"203.0.113.0/24"}}`, ctx{"aws:SourceIp": {"203.0.114.7"}}, false},
		{"IpAddress v4 unmasked CIDR", `{"IpAddress":{"aws:SourceIp":"10.1.2.3/8"}}`, ctx{"aws:SourceIp": {"10.200.0.1"}}, true},
		{"IpAddress single address", `{"IpAddress":{"aws:SourceIp":"198.51.100.1"}}`, ctx{"aws:SourceIp": {"198.51.100.1"}}, true},
		{"IpAddress single address mismatch", `{"IpAddress":{"aws:SourceIp":"198.51.100.1"}}`, ctx{"aws:SourceIp": {"198.51.100.2"}}, false},
		{"IpAddress list", `{"IpAddress":{"aws:SourceIp":["192.0.2.0/24","203.0.113.0/24"]}}`, ctx{"aws:SourceIp": {"203.0.113.200"}}, true},
		{"IpAddress v6 CIDR", `{"IpAddress":{"aws:SourceIp":"2001:db8::/32"}}`, ctx{"aws:SourceIp": {"2001:db8:1234::1"}}, true},
		{"IpAddress v6 outside", `{"IpAddress":{"aws:SourceIp":"2001:db8::/32"}}`, ctx{"aws:SourceIp": {"2001:db9::1"}}, false},
		{"IpAddress v4 request vs v6 CIDR", `{"IpAddress":{"aws:SourceIp":"2001:db8::/32"}}`, ctx{"aws:SourceIp": {"203.0.113.7"}}, false},
		{"IpAddress v4-mapped v6 request", `{"IpAddress":{"aws:SourceIp":"203.0.113.0/24"}}`, ctx{"aws:SourceIp": {"::ffff:203.0.113.9"}}, true},
		{"IpAddress request not an address", `{"IpAddress":{"aws:SourceIp":"0.0.0.0/0"}}`, ctx{"aws:SourceIp": {"localhost"}}, false},
		{"IpAddress policy not an address", `{"IpAddress":{"aws:SourceIp":"not-a-cidr"}}`, ctx{"aws:SourceIp": {"203.0.113.7"}}, false},
		{"IpAddress absent", `{"IpAddress":{"aws:SourceIp":"0.0.0.0/0"}}`, nil, false},
		{"NotIpAddress outside", `{"NotIpAddress":{"aws:SourceIp":"203.0.113.0/24"}}`, ctx{"aws:SourceIp": {"192.0.2.1"}}, true},
		{"NotIpAddress inside", `{"NotIpAddress":{"aws:SourceIp":"203.0.113.0/24"}}`, ctx{"aws:SourceIp": {"203.0.113.1"}}, false},
		{"NotIpAddress v6 inside", `{"NotIpAddress":{"aws:SourceIp":["203.0.113.0/24","2001:db8::/32"]}}`, ctx{"aws:SourceIp": {"2001:db8::5"}}, false},
		{"NotIpAddress absent is true (AWS)", `{"NotIpAddress":{"aws:SourceIp":"203.0.113.0/24"}}`, nil, true},

		// ARN
		{"ArnEquals", `{"ArnEquals":{"aws:SourceArn":"arn:aws:eks:us-east-1:123456789012:cluster/prod"}}`, ctx{"aws:SourceArn": {"arn:aws:eks:us-east-1:123456789012:cluster/prod"}}, true},
		{"ArnEquals mismatch", `{"ArnEquals":{"aws:SourceArn":"arn:aws:eks:us-east-1:123456789012:cluster/prod"}}`, ctx{"aws:SourceArn": {"arn:aws:eks:us-east-1:123456789012:cluster/dev"}}, false},
		{"ArnLike wildcards", `{"ArnLike":{"aws:SourceArn":"arn:aws:eks:*:123456789012:cluster/*"}}`, ctx{"aws:SourceArn": {"arn:aws:eks:eu-west-1:123456789012:cluster/x"}}, true},
		{"ArnLike ?", `{"ArnLike":{"aws:SourceArn":"arn:aws:eks:us-east-?:123456789012:cluster/x"}}`, ctx{"aws:SourceArn": {"arn:aws:eks:us-east-2:123456789012:cluster/x"}}, true},
		{"ArnLike wildcard does not cross a segment", `{"ArnLike":{"aws:SourceArn":"arn:aws:eks:*:cluster/x"}}`, ctx{"aws:SourceArn": {"arn:aws:eks:us-east-1:123456789012:cluster/x"}}, false},
		{"ArnLike resource part may hold colons", `{"ArnLike":{"aws:SourceArn":"arn:aws:logs:*:*:log-group:/aws/eks/*"}}`, ctx{"aws:SourceArn": {"arn:aws:logs:us-east-1:123456789012:log-group:/aws/eks/prod:*"}}, true},
		{"ArnLike is case-sensitive", `{"ArnLike":{"aws:SourceArn":"arn:aws:eks:*:*:cluster/Prod"}}`, ctx{"aws:SourceArn": {"arn:aws:eks:us-east-1:123456789012:cluster/prod"}}, false},
		{"ArnLike request not an ARN", `{"ArnLike":{"aws:SourceArn":"arn:aws:eks:*:*:*"}}`, ctx{"aws:SourceArn": {"cluster/prod"}}, false},
		{"ArnLike *", `{"ArnLike":{"aws:SourceArn":"*"}}`, ctx{"aws:SourceArn": {"anything"}}, true},
		{"ArnNotEquals", `{"ArnNotEquals":{"aws:SourceArn":"arn:aws:eks:us-east-1:123456789012:cluster/prod"}}`, ctx{"aws:SourceArn": {"arn:aws:eks:us-east-1:123456789012:cluster/dev"}}, true},
		{"ArnNotLike matches", `{"ArnNotLike":{"aws:SourceArn":"arn:aws:eks:*:*:cluster/*"}}`, ctx{"aws:SourceArn": {"arn:aws:eks:us-east-1:123456789012:cluster/dev"}}, false},
		{"ArnNotLike absent is true (AWS)", `{"ArnNotLike":{"aws:SourceArn":"arn:aws:eks:*:*:cluster/*"}}`, nil, true},
		{"ArnLike absent", `{"ArnLike":{"aws:SourceArn":"*"}}`, nil, false},

		// Null
		{"Null true, absent", `{"Null":{"aws:ResourceTag/env":"true"}}`, nil, true},
		{"Null true, present", `{"Null":{"aws:ResourceTag/env":"true"}}`, ctx{"aws:ResourceTag/env": {"prod"}}, false},
		{"Null false, present", `{"Null":{"aws:ResourceTag/env":"false"}}`, ctx{"aws:ResourceTag/env": {"prod"}}, true},
		{"Null false, absent", `{"Null":{"aws:ResourceTag/env":false}}`, nil, false},
		{"Null true, present without value", `{"Null":{"aws:TagKeys":"true"}}`, ctx{"aws:TagKeys": {}}, true},

		// IfExists
		{"StringEqualsIfExists absent", `{"StringEqualsIfExists":{"ec2:InstanceType":"t3.micro"}}`, nil, true},
		{"StringEqualsIfExists present, match", `{"StringEqualsIfExists":{"ec2:InstanceType":"t3.micro"}}`, ctx{"ec2:InstanceType": {"t3.micro"}}, true},
		{"StringEqualsIfExists present, mismatch", `{"StringEqualsIfExists":{"ec2:InstanceType":"t3.micro"}}`, ctx{"ec2:InstanceType": {"m5.large"}}, false},
		{"StringNotEqualsIfExists present, equal", `{"StringNotEqualsIfExists":{"ec2:InstanceType":"t3.micro"}}`, ctx{"ec2:InstanceType": {"t3.micro"}}, false},
		{"NumericLessThanIfExists absent", `{"NumericLessThanIfExists":{"s3:max-keys":"10"}}`, nil, true},
		{"DateGreaterThanIfExists present", `{"DateGreaterThanIfExists":{"aws:CurrentTime":"2030-01-01"}}`, ctx{"aws:CurrentTime": {"2026-01-01T00:00:00Z"}}, false},
		{"IpAddressIfExists absent", `{"IpAddressIfExists":{"aws:SourceIp":"10.0.0.0/8"}}`, nil, true},
		{"ArnLikeIfExists present, mismatch", `{"ArnLikeIfExists":{"aws:SourceArn":"arn:aws:eks:*:*:cluster/*"}}`, ctx{"aws:SourceArn": {"arn:aws:s3:::b"}}, false},

		// Set qualifiers
		{"ForAnyValue one matches", `{"ForAnyValue:StringEquals":{"aws:TagKeys":["env","owner"]}}`, ctx{"aws:TagKeys": {"team", "env"}}, true},
		{"ForAnyValue none matches", `{"ForAnyValue:StringEquals":{"aws:TagKeys":["env","owner"]}}`, ctx{"aws:TagKeys": {"team", "cost"}}, false},
		{"ForAnyValue absent is false", `{"ForAnyValue:StringEquals":{"aws:TagKeys":["env"]}}`, nil, false},
		{"ForAnyValue IfExists absent", `{"ForAnyValue:StringEqualsIfExists":{"aws:TagKeys":["env"]}}`, nil, true},
		{"ForAnyValue StringLike", `{"ForAnyValue:StringLike":{"aws:TagKeys":["cost-*"]}}`, ctx{"aws:TagKeys": {"team", "cost-center"}}, true},
		{"ForAnyValue StringNotEquals: one differs", `{"ForAnyValue:StringNotEquals":{"aws:TagKeys":["env"]}}`, ctx{"aws:TagKeys": {"env", "team"}}, true},
		{"ForAnyValue StringNotEquals: all equal", `{"ForAnyValue:StringNotEquals":{"aws:TagKeys":["env"]}}`, ctx{"aws:TagKeys": {"env"}}, false},
		{"ForAllValues all allowed", `{"ForAllValues:StringEquals":{"aws:TagKeys":["env","team","owner"]}}`, ctx{"aws:TagKeys": {"team", "env"}}, true},
		{"ForAllValues one not allowed", `{"ForAllValues:StringEquals":{"aws:TagKeys":["env"]}}`, ctx{"aws:TagKeys": {"team", "env"}}, false},
		{"ForAllValues absent is true", `{"ForAllValues:StringEquals":{"aws:TagKeys":["env"]}}`, nil, true},
		{"ForAllValues empty is true", `{"ForAllValues:StringEquals":{"aws:TagKeys":["env"]}}`, ctx{"aws:TagKeys": {}}, true},
		{"ForAllValues StringLike", `{"ForAllValues:StringLike":{"aws:TagKeys":["team*","env"]}}`, ctx{"aws:TagKeys": {"team-a", "env"}}, true},
		{"ForAllValues StringNotEquals: none forbidden", `{"ForAllValues:StringNotEquals":{"aws:TagKeys":["secret"]}}`, ctx{"aws:TagKeys": {"team", "env"}}, true},
		{"ForAllValues StringNotEquals: one forbidden", `{"ForAllValues:StringNotEquals":{"aws:TagKeys":["secret"]}}`, ctx{"aws:TagKeys": {"team", "secret"}}, false},
		{"ForAllValues NumericLessThan", `{"ForAllValues:NumericLessThan":{"x:sizes":"10"}}`, ctx{"x:sizes": {"1", "9"}}, true},
		{"ForAnyValue IpAddress", `{"ForAnyValue:IpAddress":{"x:addrs":"10.0.0.0/8"}}`, ctx{"x:addrs": {"192.0.2.1", "10.9.9.9"}}, true},

		// Combinations
		{"operators are ANDed", `{"StringEquals":{"aws:ResourceTag/env":"prod"},"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, ctx{"aws:ResourceTag/env": {"prod"}, "aws:SourceIp": {"192.0.2.1"}}, false},
		{"operators are ANDed, all true", `{"StringEquals":{"aws:ResourceTag/env":"prod"},"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, ctx{"aws:ResourceTag/env": {"prod"}, "aws:SourceIp": {"10.0.0.1"}}, true},
		{"derived aws:PrincipalAccount", `{"StringEquals":{"aws:PrincipalAccount":"123456789012"}}`, nil, true},
		{"derived aws:PrincipalArn", `{"ArnEquals":{"aws:PrincipalArn":"arn:aws:iam::123456789012:user/dev/alice"}}`, nil, true},
		{"context wins over derived keys", `{"StringEquals":{"aws:PrincipalAccount":"123456789012"}}`, ctx{"aws:PrincipalAccount": {"999999999999"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := mustParse(t, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:GetObject","Resource":"*","Condition":`+tt.cond+`}}`)
			req := Request{Principal: alice(), Action: "s3:GetObject", Resource: "arn:aws:s3:::b/k", Context: tt.ctx}
			got := Evaluate([]Named{{ID: "p", Doc: doc}}, req).Decision == Allow
			if got != tt.want {
				t.Errorf("statement applies = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseOperator(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
		want operator
	}{
		{"StringEquals", true, operator{kind: kindString}},
		{"StringNotLikeIfExists", true, operator{kind: kindStringLike, negate: true, ifExists: true}},
		{"ForAllValues:StringEqualsIgnoreCase", true, operator{kind: kindStringIgnoreCase, set: setAllValues}},
		{"ForAnyValue:ArnNotLikeIfExists", true, operator{kind: kindArn, negate: true, ifExists: true, set: setAnyValue}},
		{"NumericGreaterThanEquals", true, operator{kind: kindNumeric, cmp: cmpGe}},
		{"DateLessThan", true, operator{kind: kindDate, cmp: cmpLt}},
		{"NotIpAddress", true, operator{kind: kindIP, negate: true}},
		{"BinaryEqualsIfExists", true, operator{kind: kindBinary, ifExists: true}},
		{"Null", true, operator{kind: kindNull}},
		{"NullIfExists", false, operator{}},
		{"stringequals", false, operator{}},
		{"ForSomeValues:StringEquals", false, operator{}},
		{"IfExists", false, operator{}},
	}
	for _, tt := range tests {
		got, ok := parseOperator(tt.name)
		if ok != tt.ok || (ok && got != tt.want) {
			t.Errorf("parseOperator(%q) = %+v, %v; want %+v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}
