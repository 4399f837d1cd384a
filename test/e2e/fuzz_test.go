package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"skiff.dev/skiff/internal/botocore"
)

// TestAPIFuzz sends random and malformed requests for every operation of
// every service skiff serves (taken from botocore's models: eks, iam, sts,
// ecr, and ec2's implemented operations plus a sample of the others), all
// correctly SigV4-signed so that they reach the handlers: first as the
// account admin (everything but CreateCluster and CreateNodegroup, so that
// nothing heavy starts), then as a user with no policies. It fails on any
// status >= 500 or a request without an answer, on skiff serve dying or
// logging a panic, on any answer to the policy-less user that is not a 4xx
// (but sts:GetCallerIdentity, which needs no permission), and on any change
// the policy-less user's phase makes to what the admin can list.
//
// SKIFF_FUZZ_TIME (default 90s) bounds the test from its start (the two
// phases share what the set-up leaves);
// SKIFF_FUZZ_SEED (default 15) picks the requests: a failure replays with
// the seed the log names.
func TestAPIFuzz(t *testing.T) {
	budget := 90 * time.Second
	if v := os.Getenv("SKIFF_FUZZ_TIME"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SKIFF_FUZZ_TIME=%q: %v", v, err)
		}
		budget = d
	}
	seed := int64(15)
	if v := os.Getenv("SKIFF_FUZZ_SEED"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("SKIFF_FUZZ_SEED=%q: %v", v, err)
		}
		seed = n
	}
	t.Logf("seed %d (replay with SKIFF_FUZZ_SEED=%d), %v in all", seed, seed, budget)
	start := time.Now()
	r := rand.New(rand.NewSource(seed))
	models := fuzzModels(t, r)

	dataDir := t.TempDir()
	s := startServe(t, dataDir, freePort(t))
	defer s.stop(t)
	defer func() {
		if t.Failed() {
			data, _ := os.ReadFile(filepath.Join(dataDir, "serve.log"))
			t.Logf("serve log:\n%s", tail(string(data), 40))
		}
	}()
	const nobodyName = "fuzz-nobody"
	user := mustAWS(t, s, "iam", "create-user", "--user-name", nobodyName)["User"].(map[string]any)
	account := strings.Split(user["Arn"].(string), ":")[4]
	key := mustAWS(t, s, "iam", "create-access-key", "--user-name", nobodyName)["AccessKey"].(map[string]any)
	admin := &fuzzPrincipal{name: "admin", creds: aws.Credentials{AccessKeyID: envValue(s.env, "AWS_ACCESS_KEY_ID"),
		SecretAccessKey: envValue(s.env, "AWS_SECRET_ACCESS_KEY")}}
	nobody := &fuzzPrincipal{name: nobodyName, nobody: true, creds: aws.Credentials{AccessKeyID: key["AccessKeyId"].(string),
		SecretAccessKey: key["SecretAccessKey"].(string)}}

	f := &apiFuzzer{t: t, s: s, r: r, models: models, failures: map[string]*fuzzFailure{}, statuses: map[string]map[int]int{},
		client: s.client}
	subnets := regexp.MustCompile(`<subnetId>([^<]+)</subnetId>`).FindAllStringSubmatch(f.list(admin, "ec2", "Action=DescribeSubnets&Version=2016-11-15"), -1)
	f.pool = fuzzStrings(account)
	for _, m := range subnets {
		f.pool = append(f.pool, m[1])
	}
	t.Logf("set up in %v", time.Since(start).Round(time.Second))
	phases := time.Now()

	// The phases share what the set-up left of the budget.
	f.run(admin, time.Until(start.Add(budget))/2)
	f.alive()
	// The admin phase must not have given the policy-less user anything.
	for _, op := range []string{"ListAttachedUserPolicies", "ListUserPolicies", "ListGroupsForUser"} {
		if body := f.list(admin, "iam", "Action="+op+"&Version=2010-05-08&UserName="+nobodyName); strings.Contains(body, "<member>") {
			t.Fatalf("the admin phase gave %s permissions (%s): %s", nobodyName, op, body)
		}
	}
	before := f.snapshot(admin, nobodyName)
	f.run(nobody, time.Until(start.Add(budget)))
	after := f.snapshot(admin, nobodyName)
	f.alive()
	for k := range before {
		if before[k] != after[k] {
			t.Errorf("the policy-less user's refused calls changed %s:\nbefore: %s\nafter:  %s", k, before[k], after[k])
		}
	}
	f.report(time.Since(phases))
	if strings.Contains(after["eks ListClusters"], `"clusters":["`) {
		deleteAll(t, s) // only if the policy-less user's CreateCluster got through (reported above)
	}
}

// fuzzPrincipal is who signs a phase's requests.
type fuzzPrincipal struct {
	name   string
	nobody bool // has no policies: every call but GetCallerIdentity must be refused
	creds  aws.Credentials
}

// fuzzModel is the part of a botocore service model the fuzzer reads.
type fuzzModel struct {
	Metadata struct {
		APIVersion, Protocol, SigningName, EndpointPrefix, TargetPrefix, JSONVersion string
	}
	Operations map[string]struct {
		HTTP  struct{ Method, RequestURI string }
		Input *struct{ Shape string }
	}
	Shapes map[string]fuzzShape

	service string   // signing name
	ops     []string // the operations to send, sorted
}

type fuzzShape struct {
	Type       string
	Members    map[string]fuzzMember
	Required   []string
	Member     *fuzzMember // list
	Key, Value *fuzzMember // map
	Enum       []string
	Flattened  bool
}

type fuzzMember struct {
	Shape, Location, LocationName, QueryName string
}

// ec2Implemented are the EC2 actions skiff serves; a sample of the others
// is sent too.
var ec2Implemented = []string{"DescribeVpcs", "DescribeSubnets", "DescribeAvailabilityZones", "CreateVpc", "CreateSubnet", "DeleteSubnet", "DeleteVpc"}

// fuzzModels reads the botocore models of the installed AWS CLI.
func fuzzModels(t *testing.T, r *rand.Rand) []*fuzzModel {
	var out []*fuzzModel
	for _, service := range []string{"eks", "iam", "sts", "ec2", "ecr"} {
		data, err := botocore.Model(service)
		if err != nil {
			t.Fatal(err)
		}
		m := &fuzzModel{}
		if err := json.Unmarshal(data, m); err != nil {
			t.Fatalf("%s model: %v", service, err)
		}
		m.service = m.Metadata.SigningName
		if m.service == "" {
			m.service = m.Metadata.EndpointPrefix
		}
		for op := range m.Operations {
			m.ops = append(m.ops, op)
		}
		sort.Strings(m.ops)
		if service == "ec2" {
			others := slices.DeleteFunc(slices.Clone(m.ops), func(op string) bool { return slices.Contains(ec2Implemented, op) })
			r.Shuffle(len(others), func(i, j int) { others[i], others[j] = others[j], others[i] })
			m.ops = append(slices.Clone(ec2Implemented), others[:15]...)
		}
		out = append(out, m)
	}
	return out
}

// fuzzStrings are the values requests draw from besides random ones: names
// that exist, IDs and ARNs of this account, policy documents, edge cases.
// The policy-less user's and the admin's names are left out, so that the
// admin phase does not touch them.
func fuzzStrings(account string) []string {
	allow := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"eks.amazonaws.com"},"Action":"sts:AssumeRole"}]}`
	trustAccount := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + account + `:root"},"Action":"sts:AssumeRole"}]}`
	pool := []string{
		"fuzz", "fuzz-1", "fuzz_2", "web", "team/web", "default", "a", "ab", "coredns", "kube-proxy", "v1", "latest",
		account, "000000000000", "arn:aws:iam::" + account + ":role/fuzz", "arn:aws:iam::" + account + ":user/fuzz",
		"arn:aws:iam::" + account + ":policy/fuzz", "arn:aws:iam::aws:policy/AdministratorAccess", "arn:aws:eks:us-east-1:" + account + ":cluster/web",
		"arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy", "arn:aws:sts::" + account + ":assumed-role/fuzz/s",
		"us-east-1", "us-east-1a", "use1-az1", "10.0.0.0/16", "10.0.0.0/24", "172.31.0.0/20", "0.0.0.0/0", "::/0", "1.37", "1.36", "v1.37.2-eksbuild.1",
		"STANDARD", "API", "API_AND_CONFIG_MAP", "ON_DEMAND", "NO_SCHEDULE", "MUTABLE", "IMMUTABLE", "TAGGED", "Local", "AWS", "All", "v1", "v2",
		"sha256:" + strings.Repeat("0", 64), "AKIAFUZZFUZZFUZZFUZZ", "/", "/fuzz/", "*", "eks:*", "iam:CreateUser", "t3.medium",
		allow, trust, trustAccount, `{"Version":"2012-10-17"}`, `{`, `{"Statement":[{"Effect":"Deny"}]}`,
		"", " ", "\t", "null", "true", "-1", "0", "1e400", "99999999999999999999", "..", "../..", "%2F", "a/b", "a%00b", "\x00", "é",
		"💥", "\xff\xfe", "\xc0\xaf", "<x>&amp;", `"`, `\`, "Action=CreateUser", strings.Repeat("a", 300), strings.Repeat("ab", 40000),
	}
	return pool
}

type apiFuzzer struct {
	t      *testing.T
	s      *server
	r      *rand.Rand
	models []*fuzzModel
	pool   []string
	client *http.Client

	statuses map[string]map[int]int  // "principal service" → status/100 (0: no answer) → requests
	failures map[string]*fuzzFailure // by principal, service, operation and kind
	order    []string
}

type fuzzFailure struct {
	n       int
	example string
}

// fuzzRequest is one request before signing.
type fuzzRequest struct {
	service, op  string
	method, path string // path with the query
	header       http.Header
	body         []byte
}

func (f *apiFuzzer) chance(n int) bool { return f.r.Intn(n) == 0 }

func (f *apiFuzzer) pick(list []string) string { return list[f.r.Intn(len(list))] }

// run sends requests as p for d.
func (f *apiFuzzer) run(p *fuzzPrincipal, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		m := f.models[f.r.Intn(len(f.models))]
		op := f.pick(m.ops)
		if !p.nobody && m.service == "eks" && (op == "CreateCluster" || op == "CreateNodegroup") {
			continue // would start real control planes and nodes
		}
		req := f.request(m, op)
		status, body, err := f.send(p, req)
		if err == errUnsendable {
			continue
		}
		k := p.name + " " + req.service
		if f.statuses[k] == nil {
			f.statuses[k] = map[int]int{}
		}
		f.statuses[k][status/100]++
		switch {
		case err != nil:
			f.fail(p, req, "no answer", status, []byte(err.Error()))
		case status >= 500:
			f.fail(p, req, "5xx", status, body)
		case p.nobody && (status < 400 || status >= 500) && !(req.service == "sts" && formAction(req) == "GetCallerIdentity"):
			f.fail(p, req, "policy-less user not refused", status, body)
		}
	}
}

// formAction is the Action a query-protocol request names, read as skiff
// reads it (the query string and a form body).
func formAction(fr *fuzzRequest) string {
	r, err := http.NewRequest(fr.method, "http://skiff"+fr.path, bytes.NewReader(fr.body))
	if err != nil {
		return ""
	}
	r.Header = fr.header
	r.ParseForm()
	return r.Form.Get("Action")
}

var errUnsendable = fmt.Errorf("not a request the Go client can send")

// send signs req as p (with aws-sdk-go-v2's signer, as the SDKs do) and
// sends it.
func (f *apiFuzzer) send(p *fuzzPrincipal, fr *fuzzRequest) (int, []byte, error) {
	req, err := http.NewRequest(fr.method, f.s.endpoint+fr.path, bytes.NewReader(fr.body))
	if err != nil {
		return 0, nil, errUnsendable
	}
	for k, v := range fr.header {
		req.Header[k] = v
	}
	sum := sha256.Sum256(fr.body)
	if err := v4.NewSigner().SignHTTP(context.Background(), p.creds, req, hex.EncodeToString(sum[:]), fr.service, "us-east-1", time.Now()); err != nil {
		return 0, nil, errUnsendable
	}
	resp, err := f.client.Do(req)
	if err != nil {
		if strings.Contains(err.Error(), "invalid header") || strings.Contains(err.Error(), "invalid method") {
			return 0, nil, errUnsendable
		}
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, body, nil
}

func (f *apiFuzzer) fail(p *fuzzPrincipal, req *fuzzRequest, kind string, status int, body []byte) {
	key := fmt.Sprintf("%s %s %s: %s", p.name, req.service, req.op, kind)
	fl := f.failures[key]
	if fl == nil {
		b := req.body
		if len(b) > 2000 {
			b = append(b[:2000:2000], "…"...)
		}
		fl = &fuzzFailure{example: fmt.Sprintf("%s %s\n  headers %v\n  body %q\n  → %d %.2000s", req.method, req.path, req.header, b, status, body)}
		f.failures[key] = fl
		f.order = append(f.order, key)
	}
	fl.n++
}

// alive checks that skiff serve still runs and logged no panic.
func (f *apiFuzzer) alive() {
	f.t.Helper()
	// Nobody waits for the process yet: an exited one is a zombie.
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", f.s.cmd.Process.Pid))
	if i := bytes.LastIndexByte(stat, ')'); err != nil || i < 0 || len(stat) < i+3 || stat[i+2] == 'Z' {
		f.t.Fatal("skiff serve exited")
	}
	data, _ := os.ReadFile(filepath.Join(f.s.dataDir, "serve.log"))
	if i := bytes.Index(data, []byte("panic")); i >= 0 {
		f.t.Fatalf("skiff serve logged a panic:\n%s", tail(string(data[i:]), 40))
	}
}

// list sends a listing as p; it must succeed.
func (f *apiFuzzer) list(p *fuzzPrincipal, service, form string) string {
	f.t.Helper()
	req := &fuzzRequest{service: service, op: "list", method: "POST", path: "/", body: []byte(form),
		header: http.Header{"Content-Type": {"application/x-www-form-urlencoded; charset=utf-8"}}}
	switch service {
	case "eks":
		req.method, req.path, req.body, req.header = "GET", "/clusters", nil, http.Header{}
	case "ecr":
		req.header = http.Header{"Content-Type": {"application/x-amz-json-1.1"}, "X-Amz-Target": {"AmazonEC2ContainerRegistry_V20150921.DescribeRepositories"}}
	}
	status, body, err := f.send(p, req)
	if err != nil || status != 200 {
		f.t.Fatalf("%s %s: %d %v %s", service, form, status, err, body)
	}
	return requestIDs.ReplaceAllString(string(body), "")
}

var requestIDs = regexp.MustCompile(`<(RequestId|requestId)>[^<]*</(RequestId|requestId)>`)

// snapshot is everything the admin can list, as the policy-less user's
// refused calls must leave it.
func (f *apiFuzzer) snapshot(admin *fuzzPrincipal, nobody string) map[string]string {
	out := map[string]string{"eks ListClusters": f.list(admin, "eks", "")}
	for _, q := range []string{"ListUsers", "ListRoles", "ListPolicies&Scope=Local", "ListGroups", "ListAccessKeys&UserName=" + nobody,
		"ListAttachedUserPolicies&UserName=" + nobody, "ListUserPolicies&UserName=" + nobody, "ListGroupsForUser&UserName=" + nobody} {
		out["iam "+q] = f.list(admin, "iam", "Action="+q+"&Version=2010-05-08")
	}
	for _, q := range []string{"DescribeVpcs", "DescribeSubnets"} {
		out["ec2 "+q] = f.list(admin, "ec2", "Action="+q+"&Version=2016-11-15")
	}
	// Every page of the repositories (the admin phase may make many).
	var repos []string
	for token := ""; ; {
		body := f.list(admin, "ecr", `{"nextToken":`+strconv.Quote(token)+`}`)
		repos = append(repos, body)
		var page struct{ NextToken string }
		json.Unmarshal([]byte(body), &page)
		if token = page.NextToken; token == "" {
			break
		}
	}
	out["ecr DescribeRepositories"] = strings.Join(repos, "")
	return out
}

func (f *apiFuzzer) report(took time.Duration) {
	counts, total := map[string]int{}, 0
	keys := make([]string, 0, len(f.statuses))
	for k, byClass := range f.statuses {
		keys = append(keys, k)
		for _, n := range byClass {
			counts[k] += n
		}
		total += counts[k]
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests in %v:", total, took.Round(time.Second))
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %-20s %6d  (2xx %d, 3xx %d, 4xx %d, 5xx %d, no answer %d)", k, counts[k],
			f.statuses[k][2], f.statuses[k][3], f.statuses[k][4], f.statuses[k][5], f.statuses[k][0])
	}
	f.t.Log(b.String())
	for i, key := range f.order {
		if i == 30 {
			f.t.Errorf("… and %d more kinds of failure", len(f.order)-30)
			break
		}
		fl := f.failures[key]
		f.t.Errorf("%s (%d times), e.g.:\n  %s", key, fl.n, fl.example)
	}
}

// request builds a random, often malformed, request for op.
func (f *apiFuzzer) request(m *fuzzModel, op string) *fuzzRequest {
	o := m.Operations[op]
	input := ""
	if o.Input != nil {
		input = o.Input.Shape
	}
	req := &fuzzRequest{service: m.service, op: op, header: http.Header{}}
	switch m.Metadata.Protocol {
	case "rest-json":
		f.restJSON(m, o.HTTP.Method, o.HTTP.RequestURI, input, req)
	case "json":
		req.method, req.path = "POST", "/"
		req.header.Set("X-Amz-Target", m.Metadata.TargetPrefix+"."+op)
		req.header.Set("Content-Type", "application/x-amz-json-"+m.Metadata.JSONVersion)
		var b bytes.Buffer
		f.jsonObject(&b, m, input, 0)
		req.body = b.Bytes()
		if f.chance(20) {
			req.header.Set("X-Amz-Target", f.pick([]string{"", op, m.Metadata.TargetPrefix + ".", m.Metadata.TargetPrefix + "." + strings.ToLower(op),
				m.Metadata.TargetPrefix + "." + op + "\u00e9", "AmazonEC2ContainerRegistry_V20150921.PutImage", "x." + op}))
		}
	default: // query, ec2
		f.form(m, op, input, req)
	}
	f.mutate(req)
	return req
}

var uriParam = regexp.MustCompile(`\{([^}+]+)\+?\}`)

// restJSON fills in an EKS request: the URI's parameters, the query
// string, the JSON body.
func (f *apiFuzzer) restJSON(m *fuzzModel, method, uri, input string, req *fuzzRequest) {
	req.method = method
	path, rawQuery, _ := strings.Cut(uri, "?")
	q, _ := url.ParseQuery(rawQuery)
	sh := m.Shapes[input]
	hasBody := false
	for _, name := range sortedMembers(sh) {
		mem := sh.Members[name]
		switch mem.Location {
		case "querystring":
			for range f.r.Intn(3) { // absent, once or twice
				q.Add(mem.LocationName, f.scalar(m, mem.Shape))
			}
		case "header":
			if f.chance(2) {
				req.header.Set(mem.LocationName, headerSafe(f.scalar(m, mem.Shape)))
			}
		case "":
			hasBody = true
		}
	}
	path = uriParam.ReplaceAllStringFunc(path, func(string) string { return f.pathValue() })
	req.path = path
	if enc := q.Encode(); enc != "" {
		req.path += "?" + enc
	}
	req.header.Set("Content-Type", "application/json")
	if hasBody || f.chance(10) {
		var b bytes.Buffer
		f.jsonObject(&b, m, input, 0)
		req.body = b.Bytes()
	}
}

// pathValue is a URI parameter: usually an escaped value, sometimes raw
// odd escapes.
func (f *apiFuzzer) pathValue() string {
	if f.chance(8) {
		return f.pick([]string{"", "..", "%2e%2e", "%2F", "a%2Fb", "a/b", "%00", "%25", "%C0%AE", "%FF%FE", "~", ";x", "%3B", "%20",
			"%", "%%", "a%2", "%u002e", ".", "//", strings.Repeat("a", 5000), "%E2%80%AE"})
	}
	return url.PathEscape(f.str())
}

// form fills in a query-protocol request (IAM, STS; EC2's variant):
// Action, Version and the input's members flattened, form-encoded, often
// with missing, duplicated or broken parameters.
func (f *apiFuzzer) form(m *fuzzModel, op, input string, req *fuzzRequest) {
	var pairs [][2]string
	if !f.chance(30) {
		pairs = append(pairs, [2]string{"Action", op})
	}
	if !f.chance(20) {
		pairs = append(pairs, [2]string{"Version", m.Metadata.APIVersion})
	}
	f.formMembers(&pairs, m, "", input, 0)
	if len(pairs) > 0 && f.chance(15) { // a duplicated parameter
		p := pairs[f.r.Intn(len(pairs))]
		pairs = append(pairs, [2]string{p[0], f.str()})
	}
	var parts []string
	for _, p := range pairs {
		if f.chance(40) { // unescaped
			parts = append(parts, p[0]+"="+p[1])
		} else {
			parts = append(parts, url.QueryEscape(p[0])+"="+url.QueryEscape(p[1]))
		}
	}
	if f.chance(20) {
		parts = append(parts, f.pick([]string{"%zz=1", "a=%", "%FF%FE=%FF", "&&", "=", "Action", "x=1;y=2", "Action=" + f.str()}))
	}
	body := strings.Join(parts, "&")
	if f.chance(15) { // query protocols accept GET with the parameters in the query string
		req.method, req.path = "GET", "/?"+body
		return
	}
	req.method, req.path, req.body = "POST", "/", []byte(body)
	req.header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
}

func (f *apiFuzzer) formMembers(pairs *[][2]string, m *fuzzModel, prefix, shape string, depth int) {
	sh := m.Shapes[shape]
	join := func(a, b string) string {
		if a == "" {
			return b
		}
		return a + "." + b
	}
	switch sh.Type {
	case "structure":
		if depth > 5 {
			return
		}
		for _, name := range sortedMembers(sh) {
			mem := sh.Members[name]
			if !f.include(sh, name) {
				continue
			}
			key := firstOf(mem.LocationName, name)
			if m.Metadata.Protocol == "ec2" {
				key = firstOf(mem.QueryName, capitalize(firstOf(mem.LocationName, name)))
			}
			f.formMembers(pairs, m, join(prefix, key), mem.Shape, depth+1)
		}
	case "list":
		for i := 1; i <= f.r.Intn(4); i++ {
			idx := strconv.Itoa(i)
			if f.chance(30) {
				idx = f.pick([]string{"0", "-1", "99999999999999999999", "a", ""})
			}
			key := prefix + ".member." + idx
			if m.Metadata.Protocol == "ec2" || sh.Flattened {
				key = prefix + "." + idx
			}
			f.formMembers(pairs, m, key, sh.Member.Shape, depth+1)
		}
	case "map":
		for i := 1; i <= f.r.Intn(3); i++ {
			*pairs = append(*pairs, [2]string{prefix + ".entry." + strconv.Itoa(i) + ".key", f.scalar(m, sh.Key.Shape)})
			f.formMembers(pairs, m, prefix+".entry."+strconv.Itoa(i)+".value", sh.Value.Shape, depth+1)
		}
	default:
		*pairs = append(*pairs, [2]string{prefix, f.scalar(m, shape)})
	}
}

// include says whether to send a member: most required ones, half the others.
func (f *apiFuzzer) include(sh fuzzShape, name string) bool {
	if slices.Contains(sh.Required, name) {
		return !f.chance(8)
	}
	return f.chance(2)
}

// jsonObject writes a structure's body members as JSON, with wrong types,
// duplicated and unknown keys now and then.
func (f *apiFuzzer) jsonObject(b *bytes.Buffer, m *fuzzModel, shape string, depth int) {
	sh := m.Shapes[shape]
	b.WriteByte('{')
	first := true
	comma := func() {
		if !first {
			b.WriteByte(',')
		}
		first = false
	}
	for _, name := range sortedMembers(sh) {
		mem := sh.Members[name]
		if mem.Location != "" || !f.include(sh, name) {
			continue
		}
		times := 1
		if f.chance(30) {
			times = 2 // a duplicated key
		}
		for range times {
			comma()
			f.jsonString(b, firstOf(mem.LocationName, name))
			b.WriteByte(':')
			f.jsonValue(b, m, mem.Shape, depth+1)
		}
	}
	if f.chance(20) {
		comma()
		b.WriteString(`"fuzzUnknownMember":`)
		b.WriteString(f.wrongJSON())
	}
	b.WriteByte('}')
}

func (f *apiFuzzer) jsonValue(b *bytes.Buffer, m *fuzzModel, shape string, depth int) {
	if f.chance(20) {
		b.WriteString(f.wrongJSON())
		return
	}
	sh := m.Shapes[shape]
	switch sh.Type {
	case "structure":
		if depth > 6 {
			b.WriteString("{}")
			return
		}
		f.jsonObject(b, m, shape, depth)
	case "list":
		b.WriteByte('[')
		for i := range f.r.Intn(4) {
			if i > 0 {
				b.WriteByte(',')
			}
			if depth > 6 {
				b.WriteString("null")
			} else {
				f.jsonValue(b, m, sh.Member.Shape, depth+1)
			}
		}
		b.WriteByte(']')
	case "map":
		b.WriteByte('{')
		for i := range f.r.Intn(4) {
			if i > 0 {
				b.WriteByte(',')
			}
			f.jsonString(b, f.scalar(m, sh.Key.Shape))
			b.WriteByte(':')
			if depth > 6 {
				b.WriteString("null")
			} else {
				f.jsonValue(b, m, sh.Value.Shape, depth+1)
			}
		}
		b.WriteByte('}')
	case "integer", "long", "double", "float":
		b.WriteString(f.number())
	case "boolean":
		b.WriteString(f.pick([]string{"true", "false"}))
	case "timestamp":
		if f.chance(2) {
			b.WriteString(f.number())
		} else {
			f.jsonString(b, f.pick([]string{"2026-01-02T03:04:05Z", "yesterday", "", "0"}))
		}
	default:
		f.jsonString(b, f.scalar(m, shape))
	}
}

// jsonString writes s as a JSON string; now and then raw, which makes
// invalid UTF-8 and broken escapes reach the server as they are.
func (f *apiFuzzer) jsonString(b *bytes.Buffer, s string) {
	if f.chance(15) {
		b.WriteString(`"` + s + `"`)
		return
	}
	q, _ := json.Marshal(s)
	b.Write(q)
}

// wrongJSON is a value of any type, deep nesting included.
func (f *apiFuzzer) wrongJSON() string {
	switch f.r.Intn(12) {
	case 0:
		n := 1 + f.r.Intn(12000)
		return strings.Repeat("[", n) + strings.Repeat("]", n)
	case 1:
		n := 1 + f.r.Intn(12000)
		return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n)
	case 2:
		return f.number()
	}
	return f.pick([]string{"null", "true", "false", `""`, "{}", "[]", `"x"`, `[1,"a",null,{}]`, `{"a":1,"a":2}`, `"\ud800"`, `"\u0000"`})
}

func (f *apiFuzzer) number() string {
	if f.chance(3) {
		return strconv.FormatInt(f.r.Int63n(2000)-1000, 10)
	}
	return f.pick([]string{"0", "1", "-1", "2", "100", "101", "1000", "1001", "2147483647", "2147483648", "-2147483649",
		"9223372036854775807", "9223372036854775808", "-9223372036854775809", "1e400", "-1e400", "1.5", "-0", "1E2", "1e-400",
		"99999999999999999999999999999999999999", "0.0000000000000000000001"})
}

// scalar is a value for a scalar shape, as text.
func (f *apiFuzzer) scalar(m *fuzzModel, shape string) string {
	sh := m.Shapes[shape]
	switch {
	case len(sh.Enum) > 0 && f.chance(2):
		return f.pick(sh.Enum)
	case sh.Type == "integer" || sh.Type == "long" || sh.Type == "double" || sh.Type == "float":
		return f.number()
	case sh.Type == "boolean":
		return f.pick([]string{"true", "false", "True", "1", ""})
	}
	return f.str()
}

// str is a string: mostly from the pool, else random text or bytes.
func (f *apiFuzzer) str() string {
	switch f.r.Intn(10) {
	case 0:
		b := make([]byte, f.r.Intn(40))
		for i := range b {
			b[i] = byte(' ' + f.r.Intn(95))
		}
		return string(b)
	case 1:
		b := make([]byte, f.r.Intn(20))
		f.r.Read(b)
		return string(b)
	case 2:
		return f.pick(f.pool) + f.pick([]string{"/", "%", "\x00", "\n", ":", "*", "?x=1", "#", "\xff"})
	}
	return f.pick(f.pool)
}

// mutate breaks a built request now and then: truncated or oversized
// body, another method, an odd path suffix, an odd header.
func (f *apiFuzzer) mutate(req *fuzzRequest) {
	if len(req.body) > 0 && f.chance(25) {
		req.body = req.body[:f.r.Intn(len(req.body))]
	}
	if f.chance(300) {
		req.body = append(req.body, bytes.Repeat([]byte(" "), 1<<20+1)...) // over the 1 MiB limit
	}
	if f.chance(30) {
		req.method = f.pick([]string{"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})
	}
	if req.service == "eks" && f.chance(25) {
		path, query, _ := strings.Cut(req.path, "?")
		path += f.pick([]string{"/", "//", "/..", "/%2e%2e", "/x", "%00", "/../clusters", ";x"})
		req.path = path
		if query != "" {
			req.path += "?" + query
		}
	}
	if f.chance(30) {
		h := f.pick([]string{"Content-Type", "Content-Encoding", "X-Amz-Target", "Accept", "X-Amz-Security-Token", "X-Forwarded-For"})
		req.header.Set(h, headerSafe(f.str()))
	}
}

// headerSafe drops what the Go client refuses in a header value (control
// characters): those requests could not be sent at all.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' && r != '\t' || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

func sortedMembers(sh fuzzShape) []string {
	names := make([]string, 0, len(sh.Members))
	for n := range sh.Members {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
