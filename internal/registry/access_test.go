package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v2 "github.com/distribution/distribution/v3/registry/api/v2"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

const (
	acctA = "111111111111"
	acctB = "222222222222"
)

func TestSplitName(t *testing.T) {
	for _, tc := range []struct{ repo, account, name string }{
		{"pause", "", "pause"},
		{"coredns/coredns", "", "coredns/coredns"},
		{acctA + "/web", acctA, "web"},
		{acctA + "/team/web", acctA, "team/web"},
		{acctA, acctA, ""},
		{"12345/web", "", "12345/web"}, // not an account ID
	} {
		if a, n := SplitName(tc.repo); a != tc.account || n != tc.name {
			t.Errorf("SplitName(%q) = %q, %q; want %q, %q", tc.repo, a, n, tc.account, tc.name)
		}
	}
}

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		account, repo string
		write         bool
		want          decision
	}{
		{acctA, "pause", false, allow},
		{acctA, "pause", true, denySystem},
		{acctA, "coredns/coredns", false, allow},
		{acctA, acctA + "/web", false, ownRepo},
		{acctA, acctA + "/web", true, ownRepo},
		{acctA, acctB + "/web", false, denyAccount},
		{acctA, acctB + "/web", true, denyAccount},
		{acctA, acctA, false, unknownName},
	} {
		if got, _ := decide(tc.account, tc.repo, tc.write); got != tc.want {
			t.Errorf("decide(%s, %s, write=%v) = %d, want %d", tc.account, tc.repo, tc.write, got, tc.want)
		}
	}
}

func TestHost(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 7443}, "127.0.0.1:7443"},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 7443}, "localhost:7443"},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 80}, "localhost:80"},
		{&net.TCPAddr{IP: net.ParseIP("10.0.0.5"), Port: 443}, "10.0.0.5:443"},
	} {
		if got := Host(tc.addr); got != tc.want {
			t.Errorf("Host(%v) = %q, want %q", tc.addr, got, tc.want)
		}
	}
}

// TestAuthenticated drives the authenticated front end with
// go-containerregistry: pushes, pulls and refusals per account, the
// catalog, immutable tags, and the storage functions the ECR API uses.
func TestAuthenticated(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var regLog bytes.Buffer
	reg, err := New(ctx, dir, &regLog)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { reg.Close() }()
	tokens := NewTokens([]byte(strings.Repeat("k", 32)))
	repos := map[string]Policy{acctA + "/web": {}, acctA + "/fixed": {Immutable: true}, acctB + "/db": {}}
	srv := httptest.NewServer(nil)
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	srv.Config.Handler = reg.Authenticated(Auth{Tokens: tokens, Host: host,
		Lookup: func(_ context.Context, account, name string) (Policy, bool, error) {
			p, ok := repos[account+"/"+name]
			return p, ok, nil
		}})
	pwA, _ := tokens.Mint(acctA, time.Now())
	pwB, _ := tokens.Mint(acctB, time.Now())
	expired, _ := tokens.Mint(acctA, time.Now().Add(-13*time.Hour))
	as := func(pw string) remote.Option { return remote.WithAuth(&authn.Basic{Username: "AWS", Password: pw}) }
	ref := func(s string) name.Reference {
		r, err := name.ParseReference(host+"/"+s, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	digest, _ := img.Digest()

	// Pushes.
	if err := remote.Write(ref(acctA+"/web:v1"), img, as(pwA)); err != nil {
		t.Fatalf("push to own repository: %v", err)
	}
	if err := remote.Write(ref("pause:evil"), img, as(pwA)); !denied(err) {
		t.Errorf("push to a system repository: %v, want DENIED", err)
	}
	if err := remote.Write(ref(acctB+"/db:x"), img, as(pwA)); !denied(err) {
		t.Errorf("push to another account's repository: %v, want DENIED", err)
	}
	if err := remote.Write(ref(acctA+"/nope:x"), img, as(pwA)); err == nil || !strings.Contains(err.Error(), "NAME_UNKNOWN") || !strings.Contains(err.Error(), "create-repository") {
		t.Errorf("push to a missing repository: %v, want NAME_UNKNOWN with advice", err)
	}
	// The system image: pushed with full access, as images.Push does.
	sys := httptest.NewServer(reg)
	defer sys.Close()
	if err := remote.Write(must(name.ParseReference(strings.TrimPrefix(sys.URL, "http://")+"/pause:3.10", name.Insecure)), img); err != nil {
		t.Fatal(err)
	}

	// Pulls.
	if _, err := remote.Image(ref(acctA+"/web:v1"), as(pwA)); err != nil {
		t.Errorf("pull own image: %v", err)
	}
	if _, err := remote.Image(ref(acctA+"/web:v1"), as(pwB)); err == nil || !strings.Contains(err.Error(), "DENIED") {
		t.Errorf("another account pulls A's image: %v, want DENIED", err)
	}
	if _, err := remote.Image(ref("pause:3.10"), as(pwB)); err != nil {
		t.Errorf("pull a system image: %v", err)
	}
	if _, err := remote.Image(ref(acctA+"/web:v1"), as(expired)); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("pull with an expired token: %v", err)
	}

	// Raw requests: 401s and the catalog.
	get := func(path, user, pw string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if user != "" {
			req.SetBasicAuth(user, pw)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	for _, tc := range []struct{ user, pw string }{{"", ""}, {"AWS", "nope"}, {"bob", pwA}, {"AWS", expired}} {
		resp, body := get("/v2/", tc.user, tc.pw)
		if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic realm=") ||
			!strings.Contains(body, "UNAUTHORIZED") || !strings.Contains(body, "get-login-password") {
			t.Errorf("/v2/ as %q: %d %q %s", tc.user, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
		}
	}
	if resp, body := get("/v2/", "AWS", pwA); resp.StatusCode != 200 {
		t.Errorf("/v2/ with a token: %d %s", resp.StatusCode, body)
	}
	catalog := func(pw, query string) []string {
		_, body := get("/v2/_catalog"+query, "AWS", pw)
		var c struct{ Repositories []string }
		json.Unmarshal([]byte(body), &c)
		return c.Repositories
	}
	if got := strings.Join(catalog(pwA, ""), ","); got != acctA+"/web,pause" {
		t.Errorf("A's catalog = %s", got)
	}
	if got := strings.Join(catalog(pwB, ""), ","); got != "pause" {
		t.Errorf("B's catalog = %s", got)
	}
	if got := strings.Join(catalog(pwA, "?n=1"), ","); got != acctA+"/web" {
		t.Errorf("A's catalog, n=1 = %s", got)
	}

	// Immutable tags: the same manifest again is fine, another is refused.
	if err := remote.Write(ref(acctA+"/fixed:v1"), img, as(pwA)); err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref(acctA+"/fixed:v1"), img, as(pwA)); err != nil {
		t.Errorf("push the same manifest to an immutable tag: %v", err)
	}
	img2, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	digest2, _ := img2.Digest()
	if err := remote.Write(ref(acctA+"/fixed:v1"), img2, as(pwA)); err == nil || !strings.Contains(err.Error(), "TAG_INVALID") || !strings.Contains(err.Error(), "immutable") {
		t.Errorf("move an immutable tag: %v, want TAG_INVALID", err)
	}
	// A mutable tag moves; the old image stays, untagged.
	if err := remote.Write(ref(acctA+"/web:v1"), img2, as(pwA)); err != nil {
		t.Fatal(err)
	}
	if err := remote.Tag(ref(acctA+"/web:v1").Context().Tag("v2"), img2, as(pwA)); err != nil {
		t.Fatal(err)
	}

	// The storage functions of the ECR API.
	images, err := reg.Images(ctx, acctA+"/web")
	if err != nil {
		t.Fatal(err)
	}
	byDigest := map[string]Image{}
	for _, i := range images {
		byDigest[i.Digest] = i
	}
	if len(images) != 2 || len(byDigest[digest.String()].Tags) != 0 || strings.Join(byDigest[digest2.String()].Tags, ",") != "v1,v2" {
		t.Fatalf("images = %+v", images)
	}
	m2, _ := img2.Manifest()
	var want int64
	for _, l := range m2.Layers {
		want += l.Size
	}
	if got := byDigest[digest2.String()]; got.Size != want || got.MediaType == "" || time.Since(got.PushedAt) > time.Minute {
		t.Errorf("image %+v: want size %d, a media type and a push time", got, want)
	}
	if d, err := reg.TagDigest(ctx, acctA+"/web", "v2"); err != nil || d != digest2.String() {
		t.Errorf("TagDigest = %s, %v", d, err)
	}
	if err := reg.Untag(ctx, acctA+"/web", "v2"); err != nil {
		t.Fatal(err)
	}
	if err := reg.Untag(ctx, acctA+"/web", "v2"); !errors.Is(err, ErrImageNotFound) {
		t.Errorf("untag twice: %v", err)
	}
	if err := reg.DeleteImage(ctx, acctA+"/web", digest2.String()); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.TagDigest(ctx, acctA+"/web", "v1"); !errors.Is(err, ErrImageNotFound) {
		t.Errorf("a deleted image's tag: %v", err)
	}
	if err := reg.DeleteImage(ctx, acctA+"/web", digest2.String()); !errors.Is(err, ErrImageNotFound) {
		t.Errorf("delete twice: %v", err)
	}
	if images, _ := reg.Images(ctx, acctA+"/web"); len(images) != 1 || images[0].Digest != digest.String() {
		t.Errorf("images after deletes = %+v", images)
	}
	if err := reg.RemoveRepository(ctx, acctA+"/web"); err != nil {
		t.Fatal(err)
	}
	if images, err := reg.Images(ctx, acctA+"/web"); len(images) != 0 || err != nil {
		t.Errorf("images of a removed repository = %+v, %v", images, err)
	}
	if images, err := reg.Images(ctx, acctA+"/never"); len(images) != 0 || err != nil {
		t.Errorf("images of a repository never pushed = %+v, %v", images, err)
	}
	if _, err := remote.Image(ref(acctA+"/fixed:v1"), as(pwA)); err != nil {
		t.Errorf("another repository after a removal: %v", err)
	}

	// ReadOnlyFor: pulls of system and own repositories, nothing else.
	nodeOK := errors.New("no node header")
	ro := httptest.NewServer(reg.ReadOnlyFor(acctA, func(req *http.Request) error {
		if req.Header.Get("X-Node") == "yes" {
			return nil
		}
		return nodeOK
	}))
	defer ro.Close()
	roHost := strings.TrimPrefix(ro.URL, "http://")
	roRef := func(s string) name.Reference { return must(name.ParseReference(roHost+"/"+s, name.Insecure)) }
	if _, err := remote.Image(roRef("pause:3.10")); err != nil {
		t.Errorf("read-only: system image: %v", err)
	}
	if _, err := remote.Image(roRef(acctA + "/fixed:v1")); err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Errorf("read-only: own image without a node's credentials: %v, want UNAUTHORIZED", err)
	}
	asNode := remote.WithTransport(headerTransport{"X-Node", "yes"})
	if _, err := remote.Image(roRef(acctA+"/fixed:v1"), asNode); err != nil {
		t.Errorf("read-only: own image as a node: %v", err)
	}
	if err := remote.Write(ref(acctB+"/db:x"), img, as(pwB)); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Image(roRef(acctB+"/db:x"), asNode); err == nil || !strings.Contains(err.Error(), "NAME_UNKNOWN") {
		t.Errorf("read-only: another account's image: %v, want NAME_UNKNOWN", err)
	}
	if err := remote.Write(roRef(acctA+"/fixed:v9"), img, asNode); err == nil || !strings.Contains(err.Error(), "DENIED") {
		t.Errorf("read-only: push: %v, want DENIED", err)
	}

	// A restart collects the garbage (img2's layer, referenced by nothing
	// now) and keeps what is referenced.
	reg.Close()
	if reg, err = New(ctx, dir, &regLog); err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(regLog.String(), "\n") {
		if strings.Contains(l, "garbage") {
			t.Errorf("registry log: %s", l)
		}
	}
	srv.Config.Handler = reg.Authenticated(Auth{Tokens: tokens, Host: host,
		Lookup: func(_ context.Context, account, name string) (Policy, bool, error) { return Policy{}, true, nil }})
	if _, err := remote.Image(ref(acctA+"/fixed:v1"), as(pwA)); err != nil {
		t.Errorf("pull after a restart: %v", err)
	}
	blob := func(i interface{ Layers() ([]v1.Layer, error) }) string {
		ls, _ := i.Layers()
		d, _ := ls[0].Digest()
		return filepath.Join(dir, "docker/registry/v2/blobs/sha256", d.Hex[:2], d.Hex, "data")
	}
	if _, err := os.Stat(blob(img2)); !os.IsNotExist(err) {
		t.Errorf("a deleted image's layer after a restart: %v, want it collected", err)
	}
	if _, err := os.Stat(blob(img)); err != nil {
		t.Errorf("a kept image's layer after a restart: %v", err)
	}
}

// denied reports a DENIED error (a HEAD's 403 has no body).
func denied(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "DENIED") || strings.Contains(err.Error(), "403 Forbidden"))
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// headerTransport adds a header to every request.
type headerTransport struct{ key, value string }

func (h headerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set(h.key, h.value)
	return http.DefaultTransport.RoundTrip(req)
}

// TestAuthorizedPasswords: with Auth.Authorize, a password does what the
// IAM principal it was minted for may do (issue 15), and a password
// minted without a principal does nothing in the account's repositories.
func TestAuthorizedPasswords(t *testing.T) {
	ctx := context.Background()
	reg, err := New(ctx, t.TempDir(), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	tokens := NewTokens([]byte(strings.Repeat("k", 32)))
	srv := httptest.NewServer(nil)
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	var asked []string
	srv.Config.Handler = reg.Authenticated(Auth{Tokens: tokens, Host: host,
		Lookup: func(_ context.Context, account, name string) (Policy, bool, error) {
			return Policy{}, name == "web", nil
		},
		Authorize: func(_ *http.Request, account, key, action, name string) error {
			asked = append(asked, key+" "+action)
			if key == "AKIAREADER" && action != "BatchGetImage" && action != "GetDownloadUrlForLayer" && action != "BatchCheckLayerAvailability" && action != "ListImages" {
				return errors.New("User: arn:aws:iam::" + account + ":user/reader is not authorized to perform: ecr:" + action)
			}
			return nil
		}})
	writer, _ := tokens.MintFor(acctA, "AKIAWRITER", time.Now())
	reader, _ := tokens.MintFor(acctA, "AKIAREADER", time.Now())
	nobody, _ := tokens.Mint(acctA, time.Now())
	as := func(pw string) remote.Option { return remote.WithAuth(&authn.Basic{Username: "AWS", Password: pw}) }
	ref := must(name.ParseReference(host+"/"+acctA+"/web:v1", name.Insecure))
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, as(reader)); !denied(err) || !strings.Contains(err.Error(), "not authorized to perform: ecr:") {
		t.Errorf("a reader pushes: %v, want DENIED", err)
	}
	if err := remote.Write(ref, img, as(writer)); err != nil {
		t.Fatalf("a writer pushes: %v", err)
	}
	if _, err := remote.Image(ref, as(reader)); err != nil {
		t.Errorf("a reader pulls: %v", err)
	}
	if _, err := remote.Image(ref, as(nobody)); !denied(err) {
		t.Errorf("a password of no principal pulls: %v, want DENIED", err)
	}
	for _, want := range []string{"AKIAWRITER InitiateLayerUpload", "AKIAWRITER PutImage", "AKIAREADER BatchGetImage"} {
		if !slices.Contains(asked, want) {
			t.Errorf("Authorize was not asked %q (asked %v)", want, asked)
		}
	}
}

func TestECRAction(t *testing.T) {
	for _, tc := range []struct{ route, method, want string }{
		{v2.RouteNameManifest, http.MethodGet, "BatchGetImage"},
		{v2.RouteNameManifest, http.MethodHead, "BatchGetImage"},
		{v2.RouteNameManifest, http.MethodPut, "PutImage"},
		{v2.RouteNameManifest, http.MethodDelete, "BatchDeleteImage"},
		{v2.RouteNameBlob, http.MethodHead, "BatchCheckLayerAvailability"},
		{v2.RouteNameBlob, http.MethodGet, "GetDownloadUrlForLayer"},
		{v2.RouteNameBlobUpload, http.MethodPost, "InitiateLayerUpload"},
		{v2.RouteNameBlobUploadChunk, http.MethodPatch, "UploadLayerPart"},
		{v2.RouteNameBlobUploadChunk, http.MethodPut, "CompleteLayerUpload"},
		{v2.RouteNameTags, http.MethodGet, "ListImages"},
	} {
		if got := ecrAction(tc.route, tc.method); got != tc.want {
			t.Errorf("ecrAction(%s, %s) = %s, want %s", tc.route, tc.method, got, tc.want)
		}
	}
}
