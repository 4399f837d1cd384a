package query

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"skiff.dev/skiff/internal/botocore"
	"skiff.dev/skiff/internal/iam"
)

// model is the part of a botocore service model the tests read.
type model struct {
	Operations map[string]struct {
		Output *struct {
			Shape         string `json:"shape"`
			ResultWrapper string `json:"resultWrapper"`
		} `json:"output"`
	} `json:"operations"`
	Shapes map[string]shape `json:"shapes"`
}

type shape struct {
	Type     string `json:"type"`
	Required []string
	Members  map[string]struct {
		Shape string `json:"shape"`
	} `json:"members"`
	Member *struct {
		Shape string `json:"shape"`
	} `json:"member"`
	Error *struct {
		Code   string `json:"code"`
		Status int    `json:"httpStatusCode"`
	} `json:"error"`
}

// iamModel reads botocore's IAM model once (finding botocore runs python).
var iamModel = sync.OnceValues(func() (*model, error) {
	data, err := botocore.Model("iam")
	if err != nil {
		return nil, err
	}
	var m model
	return &m, json.Unmarshal(data, &m)
})

func mustIAMModel(t *testing.T) *model {
	t.Helper()
	m, err := iamModel()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// node is an XML element.
type node struct {
	name     string
	text     string
	children []*node
}

func parseXML(t *testing.T, data []byte) *node {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(data))
	root := &node{}
	stack := []*node{root}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not XML: %v\n%s", err, data)
		}
		top := stack[len(stack)-1]
		switch tok := tok.(type) {
		case xml.StartElement:
			n := &node{name: tok.Name.Local}
			top.children = append(top.children, n)
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			top.text += string(tok)
		}
	}
	if len(root.children) != 1 {
		t.Fatalf("%d root elements:\n%s", len(root.children), data)
	}
	return root.children[0]
}

func (n *node) child(name string) *node {
	for _, c := range n.children {
		if c.name == name {
			return c
		}
	}
	return nil
}

// leaves lists n's leaf elements as "Path/To/Leaf=text".
func (n *node) leaves(prefix string) []string {
	if len(n.children) == 0 {
		return []string{prefix + "=" + strings.TrimSpace(n.text)}
	}
	var out []string
	for _, c := range n.children {
		p := c.name
		if prefix != "" {
			p = prefix + "/" + c.name
		}
		out = append(out, c.leaves(p)...)
	}
	return out
}

// checkShape checks an element against a botocore shape: every child is
// a member (lists: "member" elements of the member shape), every required
// member is there.
func (m *model) checkShape(t *testing.T, n *node, name, where string) {
	t.Helper()
	s, ok := m.Shapes[name]
	if !ok {
		t.Fatalf("%s: no shape %s in botocore's model", where, name)
	}
	switch s.Type {
	case "structure":
		for _, c := range n.children {
			mem, ok := s.Members[c.name]
			if !ok {
				t.Errorf("%s/%s: not a member of botocore's %s", where, c.name, name)
				continue
			}
			m.checkShape(t, c, mem.Shape, where+"/"+c.name)
		}
		for _, r := range s.Required {
			if n.child(r) == nil {
				t.Errorf("%s: required member %s of %s missing", where, r, name)
			}
		}
	case "list":
		for _, c := range n.children {
			if c.name != "member" {
				t.Errorf("%s/%s: a list's items are <member>", where, c.name)
				continue
			}
			m.checkShape(t, c, s.Member.Shape, where+"/member")
		}
	default:
		if len(n.children) > 0 {
			t.Errorf("%s: %s is a %s, not an element with children", where, name, s.Type)
		}
	}
}

// checkResponse checks a successful response against the operation's
// output shape in botocore's model and returns its result's leaves.
func (m *model) checkResponse(t *testing.T, action string, body []byte) []string {
	t.Helper()
	root := parseXML(t, body)
	if root.name != action+"Response" || root.child("ResponseMetadata") == nil {
		t.Fatalf("%s: response <%s>:\n%s", action, root.name, body)
	}
	op, ok := m.Operations[action]
	if !ok {
		t.Fatalf("%s: not an operation of botocore's IAM model", action)
	}
	result := root.child(action + "Result")
	if op.Output == nil {
		if result != nil {
			t.Errorf("%s: a result, but botocore's model has no output", action)
		}
		return nil
	}
	if result == nil || op.Output.ResultWrapper != action+"Result" {
		t.Fatalf("%s: no <%s> (botocore's wrapper %q):\n%s", action, action+"Result", op.Output.ResultWrapper, body)
	}
	m.checkShape(t, result, op.Output.Shape, action+"Result")
	return result.leaves("")
}

// serve sends an IAM query request as caller.
func serve(h *Handler, form string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(form))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// TestPolicyOperations: one round trip per IAM operation on attached and
// inline policies of users, roles and groups, each response checked
// against botocore's IAM model (its members, its result wrapper) and for
// what it says.
func TestPolicyOperations(t *testing.T) {
	m := mustIAMModel(t)
	f := newFuzzFixture(t) // alice (policy p attached, in group devs), role web (inline "inline"), group devs
	h := &Handler{IAM: f.ids, Service: "iam", Caller: func(*http.Request) *iam.Principal { return f.admin }}
	p := "arn:aws:iam::" + f.account + ":policy/p"
	ro := "arn:aws:iam::aws:policy/ReadOnlyAccess"
	doc := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"eks:Describe*","Resource":"*"}]}`
	enc := url.QueryEscape(doc)
	tests := []struct {
		form    string
		status  int      // 0: 200
		want    []string // leaves of the result (or Error/Code=… of an error)
		notWant []string
	}{
		{form: "Action=AttachRolePolicy&RoleName=web&PolicyArn=" + ro},
		{form: "Action=AttachGroupPolicy&GroupName=devs&PolicyArn=" + ro},
		{form: "Action=ListAttachedUserPolicies&UserName=alice", want: []string{"AttachedPolicies/member/PolicyName=p", "AttachedPolicies/member/PolicyArn=" + p, "IsTruncated=false"}},
		{form: "Action=ListAttachedRolePolicies&RoleName=web", want: []string{"AttachedPolicies/member/PolicyName=ReadOnlyAccess", "AttachedPolicies/member/PolicyArn=" + ro}},
		{form: "Action=ListAttachedGroupPolicies&GroupName=devs", want: []string{"AttachedPolicies/member/PolicyArn=" + ro}},
		{form: "Action=DetachUserPolicy&UserName=alice&PolicyArn=" + p},
		{form: "Action=DetachRolePolicy&RoleName=web&PolicyArn=" + ro},
		{form: "Action=DetachGroupPolicy&GroupName=devs&PolicyArn=" + ro},
		{form: "Action=ListAttachedUserPolicies&UserName=alice", notWant: []string{"AttachedPolicies/member/PolicyArn=" + p}},
		{form: "Action=ListAttachedRolePolicies&RoleName=web", notWant: []string{"AttachedPolicies/member/PolicyArn=" + ro}},
		{form: "Action=ListAttachedGroupPolicies&GroupName=devs", notWant: []string{"AttachedPolicies/member/PolicyArn=" + ro}},
		{form: "Action=DetachUserPolicy&UserName=alice&PolicyArn=" + p, status: http.StatusNotFound, want: []string{"Error/Code=NoSuchEntity"}},
		{form: "Action=PutRolePolicy&RoleName=web&PolicyName=describe&PolicyDocument=" + enc},
		{form: "Action=GetRolePolicy&RoleName=web&PolicyName=describe", want: []string{"RoleName=web", "PolicyName=describe", "PolicyDocument=" + enc}},
		{form: "Action=ListRolePolicies&RoleName=web", want: []string{"PolicyNames/member=describe", "PolicyNames/member=inline", "IsTruncated=false"}},
		{form: "Action=DeleteRolePolicy&RoleName=web&PolicyName=describe"},
		{form: "Action=ListRolePolicies&RoleName=web", want: []string{"PolicyNames/member=inline"}, notWant: []string{"PolicyNames/member=describe"}},
		{form: "Action=GetRolePolicy&RoleName=web&PolicyName=describe", status: http.StatusNotFound, want: []string{"Error/Code=NoSuchEntity"}},
		{form: "Action=PutUserPolicy&UserName=alice&PolicyName=mine&PolicyDocument=" + enc},
		{form: "Action=GetUserPolicy&UserName=alice&PolicyName=mine", want: []string{"UserName=alice", "PolicyName=mine", "PolicyDocument=" + enc}},
		{form: "Action=DeleteUserPolicy&UserName=alice&PolicyName=mine"},
		{form: "Action=GetUserPolicy&UserName=alice&PolicyName=mine", status: http.StatusNotFound, want: []string{"Error/Code=NoSuchEntity"}},
		{form: "Action=ListGroupPolicies&GroupName=devs", notWant: []string{"PolicyNames/member=g"}},
		{form: "Action=PutGroupPolicy&GroupName=devs&PolicyName=g&PolicyDocument=" + enc},
		{form: "Action=ListGroupPolicies&GroupName=devs", want: []string{"PolicyNames/member=g", "IsTruncated=false"}},
		{form: "Action=ListGroupPolicies&GroupName=ghost", status: http.StatusNotFound, want: []string{"Error/Code=NoSuchEntity"}},
	}
	for _, tt := range tests {
		action, _ := url.ParseQuery(tt.form)
		rec := serve(h, tt.form)
		want := tt.status
		if want == 0 {
			want = http.StatusOK
		}
		if rec.Code != want {
			t.Errorf("%s: %d, want %d: %s", tt.form, rec.Code, want, rec.Body)
			continue
		}
		var leaves []string
		if rec.Code == http.StatusOK {
			leaves = m.checkResponse(t, action.Get("Action"), rec.Body.Bytes())
		} else {
			leaves = parseXML(t, rec.Body.Bytes()).leaves("")
		}
		for _, w := range tt.want {
			if !slices.Contains(leaves, w) {
				t.Errorf("%s: no %s in %v", tt.form, w, leaves)
			}
		}
		for _, w := range tt.notWant {
			if slices.Contains(leaves, w) {
				t.Errorf("%s: %s still there", tt.form, w)
			}
		}
	}
}

// TestLimitExceeded: IAM's quota refusals are botocore's
// LimitExceededException on the wire: code LimitExceeded, HTTP 409, as
// AWS answers (the third access key of a user, a user over the account's
// quota).
func TestLimitExceeded(t *testing.T) {
	wire := mustIAMModel(t).Shapes["LimitExceededException"].Error
	if wire == nil || wire.Code != "LimitExceeded" || wire.Status != http.StatusConflict {
		t.Fatalf("botocore's LimitExceededException: %+v", wire)
	}
	f := newFuzzFixture(t) // alice has a key; the account has 2 users
	f.ids.Quotas = iam.Quotas{Users: 3}
	h := &Handler{IAM: f.ids, Service: "iam", Caller: func(*http.Request) *iam.Principal { return f.admin }}
	for _, tc := range []struct {
		form string
		ok   bool
	}{
		{"Action=CreateAccessKey&UserName=alice", true},
		{"Action=CreateAccessKey&UserName=alice", false},
		{"Action=CreateUser&UserName=bob", true},
		{"Action=CreateUser&UserName=carol", false},
	} {
		rec := serve(h, tc.form)
		if tc.ok {
			if rec.Code != http.StatusOK {
				t.Errorf("%s: %d %s", tc.form, rec.Code, rec.Body)
			}
			continue
		}
		leaves := parseXML(t, rec.Body.Bytes()).leaves("")
		if rec.Code != wire.Status || !slices.Contains(leaves, "Error/Code="+wire.Code) || !slices.Contains(leaves, "Error/Type=Sender") {
			t.Errorf("%s: %d %v, want %d %s", tc.form, rec.Code, leaves, wire.Status, wire.Code)
		}
	}
}
