package ecr

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"skiff.dev/skiff/internal/api/awserr"
	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/store"
)

// fuzzDir is a directory for the fuzz target's state: tmpfs if the machine
// has one, because every input gets a fresh store and bbolt syncs every
// write.
func fuzzDir(tb testing.TB) string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "skiff-fuzz-"); err == nil {
			tb.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return tb.TempDir()
}

// fuzzRegistry is one registry for all the inputs of a fuzz process (one is
// slow to open); each input gets a fresh store and an account of its own,
// so no input sees another's repositories or images.
type fuzzRegistry struct {
	reg     *registry.Registry
	tokens  *registry.Tokens
	host    string
	current atomic.Pointer[Handler] // the handler of the input being run
	n       atomic.Int64
}

func newFuzzRegistry(f *testing.F) *fuzzRegistry {
	reg, err := registry.New(context.Background(), fuzzDir(f), io.Discard)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { reg.Close() })
	fr := &fuzzRegistry{reg: reg, tokens: registry.NewTokens(bytes.Repeat([]byte("k"), 32))}
	srv := httptest.NewServer(nil)
	f.Cleanup(srv.Close)
	fr.host = strings.TrimPrefix(srv.URL, "http://")
	lookup := func(ctx context.Context, account, name string) (registry.Policy, bool, error) {
		return fr.current.Load().Lookup(ctx, account, name)
	}
	srv.Config.Handler = reg.Authenticated(registry.Auth{Tokens: fr.tokens, Host: fr.host, Lookup: lookup,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return fr
}

// input sets up one input's state: a fresh store, a fresh account with
// repository "img" holding one image tagged v1 and latest, and an empty
// immutable repository "team/web".
func (fr *fuzzRegistry) input(t *testing.T) *Handler {
	st, err := store.Open(filepath.Join(fuzzDir(t), "skiff.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	account := fmt.Sprintf("%012d", fr.n.Add(1))
	h := &Handler{Store: st, Registry: fr.reg, Tokens: fr.tokens, Region: "us-east-1", Host: fr.host,
		Account: func(*http.Request) string { return account }, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	fr.current.Store(h)
	for _, body := range []string{`{"repositoryName":"img"}`, `{"repositoryName":"team/web","imageTagMutability":"IMMUTABLE"}`} {
		if code, out := serveECR(h, "CreateRepository", body); code != 200 {
			t.Fatalf("create repository: %d %s", code, out.Body)
		}
	}
	img, err := random.Image(64, 1)
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := fr.tokens.Mint(account, time.Now())
	auth := remote.WithAuth(&authn.Basic{Username: "AWS", Password: pw})
	ref, err := name.NewTag(fr.host+"/"+account+"/img:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, auth); err != nil {
		t.Fatal(err)
	}
	if err := remote.Tag(ref.Context().Tag("latest"), img, auth); err != nil {
		t.Fatal(err)
	}
	return h
}

func serveECR(h *Handler, op, body string) (int, *httptest.ResponseRecorder) {
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	req.Header.Set("X-Amz-Target", TargetPrefix+op)
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec
}

// state is what a refused request must not change: the account's
// repositories and every repository's images.
func state(t *testing.T, h *Handler) string {
	repos, err := h.Store.ListRepositories(h.Account(nil))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, rp := range repos {
		images, err := h.Registry.Images(context.Background(), rp.Key())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%+v %+v\n", *rp, images)
	}
	return b.String()
}

// FuzzECR serves a sequence of JSON 1.1 requests, one a line ("OPERATION
// BODY"), to the ECR handler. Properties: no panic; no status >= 500;
// every answer is one JSON object in the JSON 1.1 content type, an error
// with a __type; a refused request changes no repository and no image.
func FuzzECR(f *testing.F) {
	fr := newFuzzRegistry(f)
	for _, seed := range []string{
		`CreateRepository {"repositoryName":"a/b","tags":[{"Key":"k","Value":"v"}],"imageScanningConfiguration":{"scanOnPush":true},"encryptionConfiguration":{"encryptionType":"AES256"}}` +
			"\nDescribeRepositories {\"repositoryNames\":[\"a/b\"]}\nDeleteRepository {\"repositoryName\":\"a/b\"}",
		`CreateRepository {"repositoryName":"x","imageTagMutability":"IMMUTABLE_WITH_EXCLUSION","imageTagMutabilityExclusionFilters":[{}]}`,
		`CreateRepository {"repositoryName":"` + strings.Repeat("a", 243) + `"}`,
		`CreateRepository {"repositoryName":"img","registryId":"000000000001"}`,
		`CreateRepository {"repositoryName":["a"]}`,
		`CreateRepository {"repositoryName":"\ud800"}`,
		`DescribeRepositories {}`,
		`DescribeRepositories {"maxResults":1}` + "\nDescribeRepositories {\"maxResults\":1,\"nextToken\":\"aW1n\"}",
		`DescribeRepositories {"maxResults":1e400}`,
		`DescribeRepositories {"maxResults":-9223372036854775809}`,
		`DescribeRepositories {"nextToken":"%%%"}`,
		`DescribeRepositories {"repositoryNames":["img","nope"]}`,
		`DeleteRepository {"repositoryName":"img"}` + "\nDeleteRepository {\"repositoryName\":\"img\",\"force\":true}\nListImages {\"repositoryName\":\"img\"}",
		`GetAuthorizationToken {}`,
		`GetAuthorizationToken {"registryIds":["000000000001","x"]}`,
		`ListImages {"repositoryName":"img","filter":{"tagStatus":"TAGGED"},"maxResults":1}`,
		`ListImages {"repositoryName":"img","filter":{"tagStatus":"BOGUS"}}`,
		`DescribeImages {"repositoryName":"img","imageIds":[{"imageTag":"v1"}]}`,
		`DescribeImages {"repositoryName":"img","imageIds":[{"imageDigest":"sha256:0000"},{"imageTag":""}],"filter":{"tagStatus":"ANY"}}`,
		`DescribeImages {"repositoryName":"img","nextToken":"c2hhMjU2","maxResults":1000}`,
		`BatchDeleteImage {"repositoryName":"img","imageIds":[{"imageTag":"v1"}]}` + "\nListImages {\"repositoryName\":\"img\"}",
		`BatchDeleteImage {"repositoryName":"img","imageIds":[{"imageTag":"latest"},{"imageTag":"v1"},{"imageTag":"nope"}]}`,
		`BatchDeleteImage {"repositoryName":"img","imageIds":[]}`,
		`BatchDeleteImage {"repositoryName":"img","imageIds":[{"imageDigest":"sha256:` + strings.Repeat("0", 64) + `","imageTag":"v1"}]}`,
		`BatchDeleteImage {"repositoryName":"team/web","imageIds":[{"imageDigest":"md5:x"}]}`,
		`PutImage {"repositoryName":"img"}`,
		`ListImages {"repositoryName":"img"`,
		`ListImages [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`,
		"DescribeImages \xff\xfe",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, requests string) {
		h := fr.input(t)
		lines := strings.Split(requests, "\n")
		if len(lines) > 20 {
			lines = lines[:20] // state machines, not throughput
		}
		for _, line := range lines {
			op, body, _ := strings.Cut(line, " ")
			before := state(t, h)
			code, rec := serveECR(h, op, body)
			out := rec.Body.Bytes()
			if code >= 500 {
				t.Fatalf("%q: status %d: %s", line, code, out)
			}
			if ct := rec.Header().Get("Content-Type"); ct != awserr.JSON11ContentType {
				t.Fatalf("%q: %d with Content-Type %q", line, code, ct)
			}
			var v map[string]any
			dec := json.NewDecoder(bytes.NewReader(out))
			if err := dec.Decode(&v); err != nil || dec.More() {
				t.Fatalf("%q: %d, not one JSON object: %v\n%s", line, code, err, out)
			}
			if code >= 400 {
				if typ, _ := v["__type"].(string); typ == "" {
					t.Fatalf("%q: %d without __type: %s", line, code, out)
				}
				if after := state(t, h); !reflect.DeepEqual(before, after) {
					t.Fatalf("%q: refused (%d %v) but the repositories changed:\nbefore %s\nafter  %s", line, code, v["__type"], before, after)
				}
			}
		}
	})
}
