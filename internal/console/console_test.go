package console

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"skiff.dev/skiff/internal/api/query"
	"skiff.dev/skiff/internal/api/router"
	"skiff.dev/skiff/internal/iam"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/store"
)

// signinEnv is a console in front of skiff's real router and identity
// store (IAM and STS only: these tests stop before any cluster page).
type signinEnv struct {
	srv   *httptest.Server
	ids   *iam.Service
	key   *iam.AccessKey
	con   *Handler
	other *iam.AccessKey // a user's key in the same account
}

func newSigninEnv(t *testing.T) *signinEnv {
	st, err := store.Open(filepath.Join(t.TempDir(), "skiff.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ids := &iam.Service{Store: st}
	acct, key, err := ids.EnsureAccount("default")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ids.CreateUser(acct.ID, "alice", "/"); err != nil {
		t.Fatal(err)
	}
	other, err := ids.CreateAccessKey(acct.ID, "alice")
	if err != nil {
		t.Fatal(err)
	}
	rt := &router.Router{IAM: ids, STSQuery: &query.Handler{IAM: ids, Caller: router.Caller, Service: "sts"},
		IAMQuery: &query.Handler{IAM: ids, Caller: router.Caller, Service: "iam"}}
	e := &signinEnv{ids: ids, key: key, other: other}
	mux := http.NewServeMux()
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	e.con, err = New(Config{API: rt, Endpoint: e.srv.URL, Lookup: ids.Lookup, Refresh: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.con.Close)
	mux.Handle("/console/", e.con)
	mux.Handle("/", rt)
	return e
}

// browser is an HTTP client with cookies that does not follow redirects.
func (e *signinEnv) browser(t *testing.T) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (e *signinEnv) post(t *testing.T, c *http.Client, path string, form url.Values, origin string) (*http.Response, string) {
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

func (e *signinEnv) get(t *testing.T, c *http.Client, path string) (*http.Response, string) {
	resp, err := c.Get(e.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// csrfOf is the session's CSRF token, as a page's forms carry it.
func (e *signinEnv) csrfOf(t *testing.T, c *http.Client) string {
	u, _ := url.Parse(e.srv.URL + "/console/")
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == cookieName {
			if s, ok := e.con.sessions.get(ck.Value, time.Now()); ok {
				return s.CSRF
			}
		}
	}
	t.Fatal("no session")
	return ""
}

func TestSigninKeyPair(t *testing.T) {
	e := newSigninEnv(t)
	c := e.browser(t)
	// Pages need a session.
	if resp, _ := e.get(t, c, "/console/clusters"); resp.StatusCode != http.StatusSeeOther ||
		!strings.HasPrefix(resp.Header.Get("Location"), "/console/signin?next=") {
		t.Fatalf("unsigned page: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	// A wrong secret is refused in the API's words.
	resp, body := e.post(t, c, "/console/signin", url.Values{"accessKeyId": {e.key.ID}, "secretAccessKey": {"wrong"}}, e.srv.URL)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "SignatureDoesNotMatch") {
		t.Fatalf("wrong secret: %d %s", resp.StatusCode, body)
	}
	// A sign-in posted by another site is refused.
	resp, _ = e.post(t, c, "/console/signin", url.Values{"accessKeyId": {e.key.ID}, "secretAccessKey": {e.key.Secret}}, "https://evil.example")
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site sign-in: %d", resp.StatusCode)
	}
	resp, _ = e.post(t, c, "/console/signin", url.Values{"accessKeyId": {e.other.ID}, "secretAccessKey": {e.other.Secret},
		"next": {"//evil.example/x"}}, e.srv.URL)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/clusters" {
		t.Fatalf("sign-in: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	var ck *http.Cookie
	for _, x := range resp.Cookies() {
		if x.Name == cookieName {
			ck = x
		}
	}
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/console/" || ck.MaxAge <= 0 {
		t.Fatalf("session cookie: %+v", ck)
	}
	sess, ok := e.con.sessions.get(ck.Value, time.Now())
	if !ok || !strings.HasSuffix(sess.Arn, ":user/alice") || sess.AccessKeyID != e.other.ID {
		t.Fatalf("session: %+v", sess)
	}
	// A change without the session's CSRF token, or from another site, is
	// refused before any API call; with both it goes through.
	if resp, _ := e.post(t, c, "/console/signout", url.Values{}, e.srv.URL); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("sign-out without CSRF token: %d", resp.StatusCode)
	}
	if resp, _ := e.post(t, c, "/console/signout", url.Values{"csrf": {e.csrfOf(t, c)}}, "https://evil.example"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site sign-out: %d", resp.StatusCode)
	}
	// Deleting the key ends the session at its next request.
	if err := e.ids.DeleteAccessKey(e.key.Account, "alice", e.other.ID); err != nil {
		t.Fatal(err)
	}
	resp, _ = e.get(t, c, "/console/clusters")
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "no+longer+works") {
		t.Fatalf("after the key's deletion: %d %s", resp.StatusCode, loc)
	}
	if _, ok := e.con.sessions.get(ck.Value, time.Now()); ok {
		t.Fatal("the session outlived its key")
	}
}

func TestSigninLink(t *testing.T) {
	e := newSigninEnv(t)
	creds := aws.Credentials{AccessKeyID: e.key.ID, SecretAccessKey: e.key.Secret}
	link, err := SignInLink(context.Background(), e.srv.URL, "us-east-1", creds, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	path := strings.TrimPrefix(link, e.srv.URL)
	c := e.browser(t)
	resp, body := e.get(t, c, path)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/clusters" {
		t.Fatalf("link: %d %s", resp.StatusCode, body)
	}
	// Good once.
	resp, body = e.get(t, e.browser(t), path)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "used already") {
		t.Fatalf("link reused: %d %s", resp.StatusCode, body)
	}
	// Signed with a wrong secret: the API refuses it.
	bad, _ := SignInLink(context.Background(), e.srv.URL, "us-east-1", aws.Credentials{AccessKeyID: e.key.ID, SecretAccessKey: "x"}, time.Now())
	resp, body = e.get(t, e.browser(t), strings.TrimPrefix(bad, e.srv.URL))
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "SignatureDoesNotMatch") {
		t.Fatalf("forged link: %d %s", resp.StatusCode, body)
	}
	// Too old.
	old, _ := SignInLink(context.Background(), e.srv.URL, "us-east-1", creds, time.Now().Add(-6*time.Minute))
	resp, body = e.get(t, e.browser(t), strings.TrimPrefix(old, e.srv.URL))
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "expired") {
		t.Fatalf("old link: %d %s", resp.StatusCode, body)
	}
}

func TestParseLink(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	creds := aws.Credentials{AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: "s"}
	good, _ := SignInLink(context.Background(), "https://127.0.0.1:7443", "us-east-1", creds, now)
	u, _ := url.Parse(good)
	token := u.Query().Get("token")
	if l, err := parseLink(token, now.Add(time.Minute)); err != nil || l.AccessKeyID != "AKIAEXAMPLE" || !l.Until.Equal(now.Add(LinkMaxAge)) {
		t.Fatalf("good link: %+v %v", l, err)
	}
	for _, tc := range []struct{ name, token, want string }{
		{"expired", token, "expired"},
		{"no prefix", "k8s-aws-v1.abc", "not a sign-in link"},
		{"bad base64", LinkPrefix + "!!", "damaged"},
		{"not GetCallerIdentity", LinkPrefix + b64("https://h/?Action=ListUsers&X-Amz-SignedHeaders=host%3Bx-skiff-console"), "identity"},
		// A kubectl token is a presigned GetCallerIdentity too.
		{"not for the console", LinkPrefix + b64("https://h/?Action=GetCallerIdentity&X-Amz-SignedHeaders=host%3Bx-k8s-aws-id"), "not for the console"},
		{"other path", LinkPrefix + b64("https://h/x?Action=GetCallerIdentity"), "damaged"},
	} {
		at := now.Add(time.Minute)
		if tc.name == "expired" {
			at = now.Add(LinkMaxAge + time.Second)
		}
		if _, err := parseLink(tc.token, at); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestTopology(t *testing.T) {
	seen := model.ControlPlaneStatus{Instances: []model.InstanceStatus{
		{Name: "scheduler-a", Role: "scheduler", Zone: "a", Running: true, Healthy: true},
		{Name: "apiserver-1", Role: "apiserver", Zone: "b", Running: true, Error: "livez: 500"},
		{Name: "etcd-b", Role: "etcd", Zone: "b", Running: true, Healthy: true},
		{Name: "etcd-a", Role: "etcd", Zone: "a", Running: false, Error: "exited"},
		{Name: "apiserver-0", Role: "apiserver", Zone: "a", Running: true},
		{Name: "etcd-c", Role: "etcd", Zone: "c", Running: true, Healthy: true},
	}}
	nodes := []nodeView{{Group: "ng", Name: "ip-1", Zone: "c", Addr: "172.31.0.1/20", State: stateHealthy}}
	zones := topology("us-east-1", seen, nodes)
	var got []string
	for _, z := range zones {
		for _, it := range z.Items {
			got = append(got, z.Name+" "+it.Kind+" "+it.Name+" "+it.State)
		}
	}
	want := []string{
		"us-east-1a etcd etcd-a down", "us-east-1a apiserver apiserver-0 starting", "us-east-1a scheduler scheduler-a healthy",
		"us-east-1b etcd etcd-b healthy", "us-east-1b apiserver apiserver-1 unhealthy",
		"us-east-1c etcd etcd-c healthy", "us-east-1c node ip-1 healthy",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("topology:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestLocalNext(t *testing.T) {
	for in, want := range map[string]string{
		"/console/clusters/a?tab=topology": "/console/clusters/a?tab=topology",
		"//evil.example/console/":          "/console/clusters",
		"https://evil.example/console/":    "/console/clusters",
		"/console/\\evil":                  "/console/clusters",
		"":                                 "/console/clusters",
	} {
		if got := localNext(in); got != want {
			t.Errorf("localNext(%q) = %q, want %q", in, got, want)
		}
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
