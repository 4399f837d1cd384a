package ecr

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"skiff.dev/skiff/internal/botocore"
	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/store"
)

func TestValidateName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"web", true},
		{"ab", true},
		{"team/web", true},
		{"team-a/web_app", true},
		{"a__b/c.d/e--f", true},
		{"a", false},    // shorter than 2
		{"Web", false},  // upper case
		{"web/", false}, // empty component
		{"/web", false},
		{"a//b", false},
		{"a..b", false},
		{"-ab", false},
		{"a_-b", false},
		{"a___b", false},
		{"web:latest", false},
		{strings.Repeat("a", 242), true},
		{strings.Repeat("a", 243), false}, // ACCOUNT/NAME would exceed the registry's 255
		{strings.Repeat("a", 257), false},
		{"", false},
	} {
		err := validateName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("validateName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "InvalidParameterException") {
			t.Errorf("validateName(%q) = %v, want an InvalidParameterException", tc.name, err)
		}
	}
}

func TestPaginate(t *testing.T) {
	items := []string{"e", "a", "d", "c", "b"}
	id := func(s string) string { return s }
	var got []string
	token, pages := "", 0
	for {
		page, next, err := paginate(items, id, token, 2)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, page...)
		pages++
		if next == "" {
			break
		}
		token = next
	}
	if strings.Join(got, "") != "abcde" || pages != 3 {
		t.Errorf("pages %d: %v", pages, got)
	}
	if _, _, err := paginate(items, id, "%%%", 2); err == nil {
		t.Error("a bad token was accepted")
	}
}

const acct = "111111111111"

type fixture struct {
	t    *testing.T
	h    *Handler
	reg  *registry.Registry
	host string
	pw   string
}

func newFixture(t *testing.T) *fixture {
	st, err := store.Open(filepath.Join(t.TempDir(), "skiff.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	reg, err := registry.New(context.Background(), t.TempDir(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	tokens := registry.NewTokens(bytes.Repeat([]byte("k"), 32))
	srv := httptest.NewServer(nil)
	t.Cleanup(srv.Close)
	f := &fixture{t: t, reg: reg, host: strings.TrimPrefix(srv.URL, "http://")}
	f.h = &Handler{Store: st, Registry: reg, Tokens: tokens, Region: "us-east-1", Host: f.host,
		Account: func(*http.Request) string { return acct }}
	srv.Config.Handler = reg.Authenticated(registry.Auth{Tokens: tokens, Host: f.host, Lookup: f.h.Lookup})
	return f
}

// call runs an operation; it returns the status and the decoded body.
func (f *fixture) call(op string, body any) (int, map[string]any) {
	f.t.Helper()
	data, _ := json.Marshal(body)
	req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(data))
	req.Header.Set("X-Amz-Target", TargetPrefix+op)
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		f.t.Fatalf("%s: not JSON: %s", op, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/x-amz-json-1.1" {
		f.t.Errorf("%s: Content-Type %q", op, ct)
	}
	return rec.Code, out
}

// ok runs an operation that must succeed.
func (f *fixture) ok(op string, body any) map[string]any {
	f.t.Helper()
	code, out := f.call(op, body)
	if code != 200 {
		f.t.Fatalf("%s %v: %d %v", op, body, code, out)
	}
	return out
}

// fails runs an operation that must fail with code.
func (f *fixture) fails(op string, body any, code string) string {
	f.t.Helper()
	status, out := f.call(op, body)
	if status != 400 || out["__type"] != code {
		f.t.Errorf("%s %v: %d %v, want 400 %s", op, body, status, out, code)
	}
	msg, _ := out["message"].(string)
	return msg
}

// push pushes a random image to acct's repo with tags and returns its digest.
func (f *fixture) push(repo string, tags ...string) string {
	f.t.Helper()
	d, err := f.tryPush(repo, tags...)
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

func (f *fixture) tryPush(repo string, tags ...string) (string, error) {
	img, err := random.Image(300, 2)
	if err != nil {
		return "", err
	}
	auth := remote.WithAuth(&authn.Basic{Username: "AWS", Password: f.pw})
	for _, tag := range tags {
		ref, err := name.NewTag(f.host+"/"+acct+"/"+repo+":"+tag, name.Insecure)
		if err != nil {
			return "", err
		}
		if err := remote.Write(ref, img, auth); err != nil {
			return "", fmt.Errorf("push %s: %w", ref, err)
		}
	}
	d, _ := img.Digest()
	return d.String(), nil
}

func TestOperations(t *testing.T) {
	f := newFixture(t)

	// Repositories.
	repo := f.ok("CreateRepository", map[string]any{"repositoryName": "team/web"})["repository"].(map[string]any)
	want := map[string]any{"repositoryArn": "arn:aws:ecr:us-east-1:" + acct + ":repository/team/web", "registryId": acct,
		"repositoryName": "team/web", "repositoryUri": f.host + "/" + acct + "/team/web", "imageTagMutability": "MUTABLE"}
	for k, v := range want {
		if repo[k] != v {
			t.Errorf("repository %s = %v, want %v", k, repo[k], v)
		}
	}
	if c, _ := repo["createdAt"].(float64); time.Since(time.Unix(int64(c), 0)) > time.Minute {
		t.Errorf("createdAt = %v", repo["createdAt"])
	}
	if msg := f.fails("CreateRepository", map[string]any{"repositoryName": "team/web"}, "RepositoryAlreadyExistsException"); !strings.Contains(msg, "team/web") {
		t.Errorf("duplicate: %s", msg)
	}
	f.fails("CreateRepository", map[string]any{"repositoryName": "Bad"}, "InvalidParameterException")
	f.fails("CreateRepository", map[string]any{"repositoryName": "x1", "imageTagMutability": "SOMETIMES"}, "InvalidParameterException")
	f.fails("CreateRepository", map[string]any{"repositoryName": "x1", "encryptionConfiguration": map[string]any{"encryptionType": "KMS"}}, "InvalidParameterException")
	f.fails("CreateRepository", map[string]any{"repositoryName": "x1", "registryId": "222222222222"}, "InvalidParameterException")
	f.ok("CreateRepository", map[string]any{"repositoryName": "fixed", "imageTagMutability": "IMMUTABLE"})
	f.ok("CreateRepository", map[string]any{"repositoryName": "db"})

	var names []string
	token := ""
	for pages := 0; ; pages++ {
		req := map[string]any{"maxResults": 2}
		if token != "" {
			req["nextToken"] = token
		}
		out := f.ok("DescribeRepositories", req)
		for _, r := range out["repositories"].([]any) {
			names = append(names, r.(map[string]any)["repositoryName"].(string))
		}
		token, _ = out["nextToken"].(string)
		if token == "" {
			break
		}
		if pages > 3 {
			t.Fatal("pagination does not end")
		}
	}
	if strings.Join(names, ",") != "db,fixed,team/web" {
		t.Errorf("repositories = %v", names)
	}
	if msg := f.fails("DescribeRepositories", map[string]any{"repositoryNames": []string{"db", "nope"}}, "RepositoryNotFoundException"); !strings.Contains(msg, "The repository with name 'nope' does not exist in the registry with id '"+acct+"'") {
		t.Errorf("not found: %s", msg)
	}
	f.fails("DescribeRepositories", map[string]any{"repositoryNames": []string{"db"}, "maxResults": 1}, "InvalidParameterException")

	// The login token.
	data := f.ok("GetAuthorizationToken", map[string]any{})["authorizationData"].([]any)[0].(map[string]any)
	raw, _ := base64.StdEncoding.DecodeString(data["authorizationToken"].(string))
	user, pw, _ := strings.Cut(string(raw), ":")
	if a, err := f.h.Tokens.Verify(pw, time.Now()); user != "AWS" || err != nil || a != acct || data["proxyEndpoint"] != "http://"+f.host {
		t.Fatalf("authorization data %v: user %q, account %q, %v", data, user, a, err)
	}
	if exp := time.Unix(int64(data["expiresAt"].(float64)), 0); time.Until(exp) < 11*time.Hour {
		t.Errorf("expiresAt %v", exp)
	}
	f.pw = pw

	// Images: one with two tags, one untagged (its tag moved).
	d1 := f.push("team/web", "v1", "latest")
	d0 := f.push("team/web", "old")
	d2 := f.push("team/web", "old") // "old" moves: d0 is untagged now
	list := func(status string) string {
		req := map[string]any{"repositoryName": "team/web", "maxResults": 1}
		if status != "" {
			req["filter"] = map[string]any{"tagStatus": status}
		}
		var ids []string
		for token := ""; ; {
			if token != "" {
				req["nextToken"] = token
			}
			out := f.ok("ListImages", req)
			for _, id := range out["imageIds"].([]any) {
				m := id.(map[string]any)
				s, _ := m["imageTag"].(string)
				ids = append(ids, m["imageDigest"].(string)+":"+s)
			}
			token, _ = out["nextToken"].(string)
			if token == "" {
				break
			}
		}
		return strings.Join(ids, " ")
	}
	sorted := func(s ...string) string {
		for i := range s {
			for j := i + 1; j < len(s); j++ {
				if s[j] < s[i] {
					s[i], s[j] = s[j], s[i]
				}
			}
		}
		return strings.Join(s, " ")
	}
	if got, want := list(""), sorted(d1+":latest", d1+":v1", d0+":", d2+":old"); got != want {
		t.Errorf("list-images:\n%s\nwant\n%s", got, want)
	}
	if got, want := list("UNTAGGED"), d0+":"; got != want {
		t.Errorf("list-images UNTAGGED: %s, want %s", got, want)
	}
	if got, want := list("TAGGED"), sorted(d1+":latest", d1+":v1", d2+":old"); got != want {
		t.Errorf("list-images TAGGED: %s, want %s", got, want)
	}
	f.fails("ListImages", map[string]any{"repositoryName": "nope"}, "RepositoryNotFoundException")
	f.fails("ListImages", map[string]any{"repositoryName": "db", "filter": map[string]any{"tagStatus": "MAYBE"}}, "InvalidParameterException")

	details := f.ok("DescribeImages", map[string]any{"repositoryName": "team/web", "imageIds": []any{map[string]any{"imageTag": "latest"}}})["imageDetails"].([]any)
	if len(details) != 1 {
		t.Fatalf("describe-images latest: %v", details)
	}
	det := details[0].(map[string]any)
	if det["imageDigest"] != d1 || det["registryId"] != acct || det["repositoryName"] != "team/web" ||
		det["imageSizeInBytes"].(float64) < 600 || det["imageManifestMediaType"] == "" || len(det["imageTags"].([]any)) != 2 {
		t.Errorf("image detail %v", det)
	}
	if msg := f.fails("DescribeImages", map[string]any{"repositoryName": "team/web", "imageIds": []any{map[string]any{"imageTag": "nope"}}}, "ImageNotFoundException"); !strings.Contains(msg, "imageTag:'nope'") {
		t.Errorf("image not found: %s", msg)
	}
	if all := f.ok("DescribeImages", map[string]any{"repositoryName": "team/web"})["imageDetails"].([]any); len(all) != 3 {
		t.Errorf("describe-images: %d images, want 3", len(all))
	}

	// Immutable tags refuse to move.
	f.push("fixed", "v1")
	if _, err := f.tryPush("fixed", "v1"); err == nil || !strings.Contains(err.Error(), "TAG_INVALID") {
		t.Errorf("move an immutable tag: %v, want TAG_INVALID", err)
	}
	if _, err := f.tryPush("nope", "v1"); err == nil || !strings.Contains(err.Error(), "NAME_UNKNOWN") {
		t.Errorf("push to a missing repository: %v, want NAME_UNKNOWN", err)
	}

	// Deletes.
	out := f.ok("BatchDeleteImage", map[string]any{"repositoryName": "team/web", "imageIds": []any{
		map[string]any{"imageTag": "latest"},                 // d1 keeps v1
		map[string]any{"imageTag": "nope"},                   // ImageNotFound
		map[string]any{"imageTag": "old", "imageDigest": d1}, // mismatch
		map[string]any{},                                     // neither
		map[string]any{"imageDigest": "bad"},                 // invalid digest
		map[string]any{"imageDigest": d0},                    // the untagged image
		map[string]any{"imageDigest": d0},                    // already gone
		map[string]any{"imageTag": "old", "imageDigest": d2}, // last tag: d2 goes
	}})
	var deleted, codes []string
	for _, id := range out["imageIds"].([]any) {
		m := id.(map[string]any)
		tag, _ := m["imageTag"].(string)
		deleted = append(deleted, m["imageDigest"].(string)+":"+tag)
	}
	for _, fl := range out["failures"].([]any) {
		codes = append(codes, fl.(map[string]any)["failureCode"].(string))
	}
	if got, want := strings.Join(deleted, " "), strings.Join([]string{d1 + ":latest", d0 + ":", d2 + ":old"}, " "); got != want {
		t.Errorf("deleted %s, want %s", got, want)
	}
	if got, want := strings.Join(codes, ","), "ImageNotFound,ImageTagDoesNotMatchDigest,MissingDigestAndTag,InvalidImageDigest,ImageNotFound"; got != want {
		t.Errorf("failures %s, want %s", got, want)
	}
	if got, want := list(""), d1+":v1"; got != want {
		t.Errorf("after deletes: %s, want %s", got, want)
	}

	if msg := f.fails("DeleteRepository", map[string]any{"repositoryName": "team/web"}, "RepositoryNotEmptyException"); !strings.Contains(msg, "force") {
		t.Errorf("not empty: %s", msg)
	}
	f.ok("DeleteRepository", map[string]any{"repositoryName": "db"}) // empty: no force needed
	f.ok("DeleteRepository", map[string]any{"repositoryName": "team/web", "force": true})
	f.fails("DescribeRepositories", map[string]any{"repositoryNames": []string{"team/web"}}, "RepositoryNotFoundException")
	// A new repository of the same name starts empty.
	f.ok("CreateRepository", map[string]any{"repositoryName": "team/web"})
	if got := list(""); got != "" {
		t.Errorf("a re-created repository lists %s", got)
	}

	// Unknown operations.
	if code, out := f.call("PutImage", map[string]any{}); code != 400 || out["__type"] != "UnknownOperationException" {
		t.Errorf("unknown operation: %d %v", code, out)
	}
}

// TestRepositoryQuota: CreateRepository over the account's quota is
// botocore's LimitExceededException on the wire (__type, HTTP 400: the
// model gives the shape no other status), and creates nothing; another
// account has its own count (issue 15).
func TestRepositoryQuota(t *testing.T) {
	data, err := botocore.Model("ecr")
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Shapes map[string]struct {
			Exception bool           `json:"exception"`
			Members   map[string]any `json:"members"`
			Error     *struct {
				Status int `json:"httpStatusCode"`
			} `json:"error"`
		} `json:"shapes"`
	}
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	const exc = "LimitExceededException"
	wire, ok := m.Shapes[exc]
	if !ok || !wire.Exception || wire.Members["message"] == nil {
		t.Fatalf("botocore's ECR %s: %+v", exc, wire)
	}
	status := http.StatusBadRequest // a client error's status when the model names none
	if wire.Error != nil && wire.Error.Status != 0 {
		status = wire.Error.Status
	}

	f := newFixture(t)
	f.h.Repositories = 2
	for _, repo := range []string{"web", "db"} {
		f.ok("CreateRepository", map[string]any{"repositoryName": repo})
	}
	code, out := f.call("CreateRepository", map[string]any{"repositoryName": "cache"})
	if code != status || out["__type"] != exc || !strings.Contains(fmt.Sprint(out["message"]), "at most 2 repositories") {
		t.Errorf("third repository: %d %v, want %d %s", code, out, status, exc)
	}
	if _, out := f.call("DescribeRepositories", map[string]any{"repositoryNames": []string{"cache"}}); out["__type"] != "RepositoryNotFoundException" {
		t.Errorf("the refused repository exists: %v", out)
	}
	other := *f.h
	other.Account = func(*http.Request) string { return "222222222222" }
	f.h = &other
	f.ok("CreateRepository", map[string]any{"repositoryName": "cache"})
}
