package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestECR is issue 7's registry half with the stock aws CLI and
// go-containerregistry: repositories through the ECR API, a login
// password from `aws ecr get-login-password`, pushes and pulls on skiff's
// API listener, per-account isolation, system images, deletes, and images
// surviving a restart.
func TestECR(t *testing.T) {
	s, dataDir := serveTest(t)
	host := s.host()
	account := mustAWS(t, s, "sts", "get-caller-identity")["Account"].(string)

	// Repositories.
	repo := mustAWS(t, s, "ecr", "create-repository", "--repository-name", "team/web")["repository"].(map[string]any)
	uri := host + "/" + account + "/team/web"
	if repo["repositoryUri"] != uri || repo["registryId"] != account ||
		repo["repositoryArn"] != "arn:aws:ecr:us-east-1:"+account+":repository/team/web" || repo["imageTagMutability"] != "MUTABLE" {
		t.Errorf("create-repository: %v", repo)
	}
	mustAWS(t, s, "ecr", "create-repository", "--repository-name", "empty", "--image-tag-mutability", "IMMUTABLE")
	for _, tc := range []struct {
		code string
		args []string
	}{
		{"RepositoryAlreadyExistsException", []string{"create-repository", "--repository-name", "team/web"}},
		{"InvalidParameterException", []string{"create-repository", "--repository-name", "Team_Web"}},
		{"InvalidParameterException", []string{"create-repository", "--repository-name", "team//web"}},
		{"RepositoryNotFoundException", []string{"describe-repositories", "--repository-names", "nope"}},
	} {
		if out, err := awsCLI(t, s, append([]string{"ecr"}, tc.args...)...); err == nil || !strings.Contains(out, tc.code) {
			t.Errorf("aws ecr %v: %v %s, want %s", tc.args, err, out, tc.code)
		}
	}
	// SigV4 failures in ECR's (JSON 1.1) error form.
	if out, err := awsCLIEnv(t, s, []string{"AWS_SECRET_ACCESS_KEY=wrong"}, "ecr", "describe-repositories"); err == nil || !strings.Contains(out, "InvalidSignatureException") {
		t.Errorf("a bad signature: %v %s, want InvalidSignatureException", err, out)
	}
	// Pagination through the CLI's own paginator (2 pages of 1).
	var names []string
	for _, r := range mustAWS(t, s, "ecr", "describe-repositories", "--page-size", "1")["repositories"].([]any) {
		names = append(names, r.(map[string]any)["repositoryName"].(string))
	}
	if strings.Join(names, ",") != "empty,team/web" {
		t.Errorf("describe-repositories: %v", names)
	}

	// Log in and push.
	login := func(env []string) string {
		t.Helper()
		out, err := awsCLIEnv(t, s, env, "ecr", "get-login-password")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	tr := remote.WithTransport(s.client.Transport) // trusting skiff's CA
	basic := func(pw string) remote.Option { return remote.WithAuth(&authn.Basic{Username: "AWS", Password: pw}) }
	authA := basic(login(nil))
	ref := func(s string) name.Reference {
		t.Helper()
		r, err := name.ParseReference(s, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	img, err := random.Image(4096, 3)
	if err != nil {
		t.Fatal(err)
	}
	digest, _ := img.Digest()
	if err := remote.Write(ref(uri+":v1"), img, authA, tr); err != nil {
		t.Fatalf("push: %v", err)
	}
	if err := remote.Tag(ref(uri+":v1").Context().Tag("latest"), img, authA, tr); err != nil {
		t.Fatalf("tag: %v", err)
	}
	pull := func(r string, auth remote.Option) (v1.Hash, error) {
		got, err := remote.Image(ref(r), auth, tr)
		if err != nil {
			return v1.Hash{}, err
		}
		if _, err := got.RawConfigFile(); err != nil {
			return v1.Hash{}, err
		}
		layers, _ := got.Layers()
		for _, l := range layers {
			rc, err := l.Compressed()
			if err != nil {
				return v1.Hash{}, err
			}
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil {
				return v1.Hash{}, err
			}
		}
		return got.Digest()
	}
	if got, err := pull(uri+":latest", authA); err != nil || got != digest {
		t.Fatalf("pull back: %v %v, want %v", got, err, digest)
	}

	// A password does what its principal's IAM policies allow (issue 15):
	// AmazonEC2ContainerRegistryReadOnly pulls but does not push; the
	// password dies with the user's key.
	mustAWS(t, s, "iam", "create-user", "--user-name", "puller")
	mustAWS(t, s, "iam", "attach-user-policy", "--user-name", "puller", "--policy-arn", "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly")
	pk := mustAWS(t, s, "iam", "create-access-key", "--user-name", "puller")["AccessKey"].(map[string]any)
	authPuller := basic(login(withKey(nil, pk["AccessKeyId"].(string), pk["SecretAccessKey"].(string))))
	if got, err := pull(uri+":v1", authPuller); err != nil || got != digest {
		t.Errorf("read-only principal pulls: %v %v", got, err)
	}
	if err := remote.Tag(ref(uri+":v1").Context().Tag("puller"), img, authPuller, tr); err == nil || !strings.Contains(err.Error(), "DENIED") ||
		!strings.Contains(err.Error(), "is not authorized to perform: ecr:PutImage") {
		t.Errorf("read-only principal pushes a tag: %v, want DENIED", err)
	}
	mustAWS(t, s, "iam", "delete-access-key", "--user-name", "puller", "--access-key-id", pk["AccessKeyId"].(string))
	if _, err := pull(uri+":v1", authPuller); err == nil || !strings.Contains(err.Error(), "DENIED") {
		t.Errorf("pull with the password of a deleted key: %v, want DENIED", err)
	}

	// What the ECR API sees.
	ids := mustAWS(t, s, "ecr", "list-images", "--repository-name", "team/web")["imageIds"].([]any)
	var tags []string
	for _, id := range ids {
		m := id.(map[string]any)
		if m["imageDigest"] != digest.String() {
			t.Errorf("list-images: %v", m)
		}
		tags = append(tags, m["imageTag"].(string))
	}
	if strings.Join(tags, ",") != "latest,v1" {
		t.Errorf("list-images tags %v", tags)
	}
	m, _ := img.Manifest()
	var size int64
	for _, l := range m.Layers {
		size += l.Size
	}
	det := mustAWS(t, s, "ecr", "describe-images", "--repository-name", "team/web", "--image-ids", "imageTag=v1")["imageDetails"].([]any)
	if len(det) != 1 {
		t.Fatalf("describe-images: %v", det)
	}
	d := det[0].(map[string]any)
	if d["imageDigest"] != digest.String() || int64(d["imageSizeInBytes"].(float64)) != size || d["registryId"] != account ||
		d["repositoryName"] != "team/web" || d["imageManifestMediaType"] == nil || d["imagePushedAt"] == nil || len(d["imageTags"].([]any)) != 2 {
		t.Errorf("describe-images: %v (layers %d bytes)", d, size)
	}

	// Refusals.
	if err := remote.Write(ref(host+"/"+account+"/nope:v1"), img, authA, tr); err == nil ||
		!strings.Contains(err.Error(), "NAME_UNKNOWN") || !strings.Contains(err.Error(), "create-repository") {
		t.Errorf("push to a missing repository: %v, want NAME_UNKNOWN", err)
	}
	resp, err := s.client.Get(s.endpoint + "/v2/" + account + "/team/web/manifests/v1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") ||
		!strings.Contains(string(body), "UNAUTHORIZED") || !strings.Contains(string(body), "get-login-password") {
		t.Errorf("no credentials: %d %q %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
	}
	if _, err := pull(uri+":v1", remote.WithAuth(&authn.Basic{Username: "AWS", Password: "forged"})); err == nil || !strings.Contains(err.Error(), "401") && !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Errorf("a forged password: %v, want 401", err)
	}
	other := skiffEnv(t, dataDir, "other")
	pwB := login(other)
	authB := basic(pwB)
	if _, err := pull(uri+":v1", authB); err == nil || !strings.Contains(err.Error(), "DENIED") {
		t.Errorf("another account pulls A's image: %v, want DENIED", err)
	}
	if err := remote.Write(ref(uri+":evil"), img, authB, tr); err == nil {
		t.Error("another account pushed into A's repository")
	}
	if _, err := pull(host+"/pause:3.10", authB); err != nil {
		t.Errorf("pull the system image pause:3.10 with another account's token: %v", err)
	}
	if err := remote.Write(ref(host+"/pause:evil"), img, authA, tr); err == nil {
		t.Error("pushed into a system repository")
	}
	var catalog struct{ Repositories []string }
	req, _ := http.NewRequest(http.MethodGet, s.endpoint+"/v2/_catalog", nil)
	req.SetBasicAuth("AWS", pwB)
	if resp, err := s.client.Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("catalog: %v %v", resp, err)
	} else {
		json.NewDecoder(resp.Body).Decode(&catalog)
		resp.Body.Close()
	}
	if !strings.Contains(strings.Join(catalog.Repositories, ","), "pause") {
		t.Errorf("another account's catalog: %v, want the system images", catalog.Repositories)
	}
	for _, r := range catalog.Repositories {
		if strings.HasPrefix(r, account+"/") {
			t.Errorf("another account's catalog shows %s: %v", r, catalog.Repositories)
		}
	}

	// A restart: images and login passwords survive.
	s.restart(t)
	if got, err := pull(uri+":v1", authA); err != nil || got != digest {
		t.Fatalf("pull after a restart with the old password: %v %v", got, err)
	}

	// Deletes: the last tag of an image takes the image with it.
	out := mustAWS(t, s, "ecr", "batch-delete-image", "--repository-name", "team/web", "--image-ids", "imageTag=latest", "imageTag=nope")
	if len(out["imageIds"].([]any)) != 1 || len(out["failures"].([]any)) != 1 ||
		out["failures"].([]any)[0].(map[string]any)["failureCode"] != "ImageNotFound" {
		t.Errorf("batch-delete-image latest, nope: %v", out)
	}
	if _, err := pull(uri+":v1", authA); err != nil {
		t.Errorf("v1 after deleting latest: %v", err)
	}
	if out, err := awsCLI(t, s, "ecr", "delete-repository", "--repository-name", "team/web"); err == nil || !strings.Contains(out, "RepositoryNotEmptyException") {
		t.Errorf("delete a non-empty repository: %v %s", err, out)
	}
	mustAWS(t, s, "ecr", "batch-delete-image", "--repository-name", "team/web", "--image-ids", "imageTag=v1")
	if ids := mustAWS(t, s, "ecr", "list-images", "--repository-name", "team/web")["imageIds"].([]any); len(ids) != 0 {
		t.Errorf("list-images after deleting the last tag: %v", ids)
	}
	if err := remote.Write(ref(uri+":v2"), img, authA, tr); err != nil {
		t.Fatal(err)
	}
	mustAWS(t, s, "ecr", "delete-repository", "--repository-name", "team/web", "--force")
	if out, err := awsCLI(t, s, "ecr", "describe-repositories", "--repository-names", "team/web"); err == nil || !strings.Contains(out, "RepositoryNotFoundException") {
		t.Errorf("describe a deleted repository: %v %s", err, out)
	}
	if _, err := pull(uri+":v2", authA); err == nil || !strings.Contains(err.Error(), "NAME_UNKNOWN") {
		t.Errorf("pull from a deleted repository: %v, want NAME_UNKNOWN", err)
	}
	mustAWS(t, s, "ecr", "delete-repository", "--repository-name", "empty")
}
