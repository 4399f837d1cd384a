package e2e

import (
	"context"
	"encoding/xml"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"skiff.dev/skiff/internal/bundle"
	"skiff.dev/skiff/test/conformance"
)

// ciConformance is the fixed subset of upstream's [Conformance] tests that
// every CI run goes through (a few minutes): one or more tests for each
// root cause fixed so far, and the networking, DNS, service-account,
// webhook and kubectl groups' fast members. `make conformance` runs them
// all (SKIFF_CONFORMANCE=full).
var ciConformance = []string{
	`ServiceAccountIssuerDiscovery should support OIDC discovery of service account issuer`,
	`ServiceAccounts should mount an API token into pods`,
	`Networking Granular Checks: Pods should function for intra-pod communication: (udp|http)`,
	`Networking Granular Checks: Pods should function for node-pod communication: udp`,
	`Services should have session affinity work for NodePort service`,
	`Services should be able to create a functioning NodePort service`,
	`DNS should provide DNS for services`,
	`DNS should provide /etc/hosts entries for the cluster`,
	`AdmissionWebhook \[Privileged:ClusterAdmin\] should be able to deny pod and configmap creation`,
	`Pods should delete a collection of pods`,
	`ConfigMap should be consumable as environment variable names with various prefixes`,
	`Kubectl client Kubectl describe should check if kubectl describe prints relevant information for rc and pods`,
	`Kubectl logs logs should be able to retrieve and filter logs`,
	`Proxy version v1 A set of valid responses are returned for both pod and service Proxy`,
	`ImageVolume should succeed with pod and pull policy of Always`,
}

// TestConformance runs upstream's conformance suite (its own e2e.test,
// built by `make conformance-build` from the release's module) against a
// fresh skiff cluster of each version, reached as a user reaches it:
// `aws eks update-kubeconfig`, with the test images built here and pushed
// through the ECR API. By default it runs ciConformance on the newest
// version; SKIFF_CONFORMANCE=full runs every [Conformance] test (first the
// parallel ones, then [Serial]) on every version in SKIFF_CONFORMANCE_VERSIONS
// (default: all bundles). SKIFF_CONFORMANCE_FOCUS=REGEX runs only the
// [Conformance] tests it matches (a re-run of failures);
// SKIFF_CONFORMANCE_PARTS=serial,parallel-1,… runs only those parts of the
// full run. Reports go to
// SKIFF_CONFORMANCE_REPORT (default: the test's temp dir): JUnit per part
// and summary.txt.
func TestConformance(t *testing.T) {
	full := os.Getenv("SKIFF_CONFORMANCE") == "full"
	cat := catalog(t)
	versions := []string{cat.Latest().KubernetesVersion}
	if full {
		versions = cat.Versions()
	}
	if v := os.Getenv("SKIFF_CONFORMANCE_VERSIONS"); v != "" {
		versions = strings.Split(v, ",")
	}
	for _, v := range versions {
		b, err := cat.Lookup(v)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(b.Minor(), func(t *testing.T) { runConformance(t, b, full) })
	}
}

func runConformance(t *testing.T, b bundle.Bundle, full bool) {
	bin := filepath.Join(b.Dir, "conformance")
	if _, err := os.Stat(filepath.Join(bin, "e2e.test")); err != nil {
		t.Fatalf("%v (run `make conformance-build`)", err)
	}
	report := os.Getenv("SKIFF_CONFORMANCE_REPORT")
	if report == "" {
		report = t.TempDir()
	}
	report = filepath.Join(report, b.KubernetesVersion)
	if err := os.MkdirAll(report, 0o755); err != nil {
		t.Fatal(err)
	}

	s, _ := serveTest(t)
	const cluster = "conformance"
	kc := clusterWithNodes(t, s, cluster, "--kubernetes-version", b.Minor())
	repoList := pushConformanceImages(t, s, b, bin, report)
	readyNodes(t, s, kc, 3)

	env := append(os.Environ(), s.env...)
	env = append(env, "KUBE_TEST_REPO_LIST="+repoList, "KUBECONFIG="+kc)
	start := time.Now()
	var parts []conformancePart
	if focus := os.Getenv("SKIFF_CONFORMANCE_FOCUS"); focus != "" {
		// A re-run of chosen tests (say, the failures of a full run).
		parts = []conformancePart{
			{name: "focus-parallel", focus: `(` + focus + `).*\[Conformance\]`, skip: `\[Serial\]`, procs: 3},
			{name: "focus-serial", focus: `(` + focus + `).*(\[Conformance\].*\[Serial\]|\[Serial\].*\[Conformance\])`, procs: 1},
		}
	} else if full {
		// The parallel tests in three runs of well under an hour each (one
		// run of all 433 was cut at one hour, its last spec unreported),
		// then the [Serial] ones. The third run takes whatever the first
		// two did not, so that no test is left out.
		a, b := `api-machinery|apps|auth|architecture|instrumentation|scheduling`, `network|cli`
		parts = []conformancePart{
			{name: "parallel-1", focus: `\[sig-(` + a + `)\].*\[Conformance\]`, skip: `\[Serial\]`, procs: 3},
			{name: "parallel-2", focus: `\[sig-(` + b + `)\].*\[Conformance\]`, skip: `\[Serial\]`, procs: 3},
			{name: "parallel-3", focus: `\[Conformance\]`, skip: `\[Serial\]|\[sig-(` + a + `|` + b + `)\]`, procs: 3},
			// [Serial] comes after [Conformance] in 1.37's spec texts,
			// before it in 1.36's.
			{name: "serial", focus: `\[Conformance\].*\[Serial\]|\[Serial\].*\[Conformance\]`, procs: 1},
		}
		// SKIFF_CONFORMANCE_PARTS=serial,parallel-2 runs just those.
		if only := os.Getenv("SKIFF_CONFORMANCE_PARTS"); only != "" {
			names := strings.Split(only, ",")
			parts = slices.DeleteFunc(parts, func(p conformancePart) bool { return !slices.Contains(names, p.name) })
			if len(parts) == 0 {
				t.Fatalf("SKIFF_CONFORMANCE_PARTS=%s names none of parallel-1, parallel-2, parallel-3, serial", only)
			}
		}
	} else {
		parts = []conformancePart{{name: "ci", focus: `(` + strings.Join(ciConformance, "|") + `).*\[Conformance\]`, skip: `\[Serial\]`, procs: 2}}
	}
	var all []junitCase
	for _, p := range parts {
		cases := p.run(t, bin, kc, report, env)
		all = append(all, cases...)
	}
	sum := summarize(all, time.Since(start))
	kind := "CI subset"
	switch {
	case os.Getenv("SKIFF_CONFORMANCE_FOCUS") != "":
		kind = "focus " + os.Getenv("SKIFF_CONFORMANCE_FOCUS")
	case full && os.Getenv("SKIFF_CONFORMANCE_PARTS") != "":
		kind = "[Conformance] parts " + os.Getenv("SKIFF_CONFORMANCE_PARTS")
	case full:
		kind = "full [Conformance]"
	}
	summary := fmt.Sprintf("Kubernetes %s on skiff (3 nodes, %s): %s\n", b.KubernetesVersion, kind, sum.line)
	for _, f := range sum.failed {
		summary += "FAILED " + f.Name + "\n"
	}
	os.WriteFile(filepath.Join(report, "summary.txt"), []byte(summary), 0o644)
	t.Log(summary)
	if sum.passed == 0 {
		t.Errorf("no conformance test passed: %s", sum.line)
	}
	if !full && os.Getenv("SKIFF_CONFORMANCE_FOCUS") == "" && sum.passed < len(ciConformance) {
		t.Errorf("the CI subset ran %d tests, want at least %d (one per pattern): %s", sum.passed+len(sum.failed), len(ciConformance), sum.line)
	}
	for _, f := range sum.failed {
		t.Errorf("FAILED %s\n%s", f.Name, tail(f.Failure.Message+"\n"+f.Failure.Text, 25))
	}
}

// conformancePart is one ginkgo run of e2e.test.
type conformancePart struct {
	name, focus, skip string
	procs             int
}

func (p conformancePart) run(t *testing.T, bin, kubeconfig, report string, env []string) []junitCase {
	t.Helper()
	// A directory per part: e2e.test writes its own junit_01.xml there.
	report = filepath.Join(report, p.name)
	if err := os.MkdirAll(report, 0o755); err != nil {
		t.Fatal(err)
	}
	junit := "junit_" + p.name + ".xml"
	args := []string{"--procs=" + fmt.Sprint(p.procs), "--focus=" + p.focus, "--no-color", "--timeout=10h",
		"--output-dir=" + report, "--junit-report=" + junit, "--silence-skips"}
	if p.skip != "" {
		args = append(args, "--skip="+p.skip)
	}
	args = append(args, filepath.Join(bin, "e2e.test"), "--",
		"--kubeconfig="+kubeconfig, "--provider=skeleton", "--report-dir="+report,
		"--disable-log-dump", "--e2e-output-dir="+report, "--kubectl-path="+filepath.Join(bin, "kubectl"))
	log, err := os.Create(filepath.Join(report, p.name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(filepath.Join(bin, "ginkgo"), args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, log, log
	start := time.Now()
	runErr := cmd.Run() // a failed test exits 1; the report says which
	cases, err := readJUnit(filepath.Join(report, junit))
	if err != nil || len(cases) == 0 {
		// ginkgo writes no report of its own when a parallel process
		// disappears; e2e.test's is written by whichever process remains.
		cases, err = readJUnit(filepath.Join(report, "junit_01.xml"))
	}
	if err != nil {
		out, _ := os.ReadFile(log.Name())
		t.Fatalf("ginkgo %s: %v, %v\n%s", p.name, runErr, err, tail(string(out), 40))
	}
	t.Logf("%s part: %s (log %s)", p.name, summarize(cases, time.Since(start)).line, log.Name())
	return cases
}

type junitCase struct {
	Name    string  `xml:"name,attr"`
	Status  string  `xml:"status,attr"`
	Time    float64 `xml:"time,attr"`
	Failure struct {
		Message string `xml:"message,attr"`
		Text    string `xml:",chardata"`
	} `xml:"failure"`
}

func readJUnit(path string) ([]junitCase, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc struct {
		Suites []struct {
			Cases []junitCase `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []junitCase
	for _, s := range doc.Suites {
		out = append(out, s.Cases...)
	}
	return out, nil
}

type conformanceSummary struct {
	passed int
	failed []junitCase
	line   string
}

// summarize counts the specs that ran ("[It] …"; ginkgo's suite nodes
// such as [SynchronizedBeforeSuite] count only when they failed).
func summarize(cases []junitCase, took time.Duration) conformanceSummary {
	var s conformanceSummary
	for _, c := range cases {
		switch {
		case c.Status == "passed" && strings.HasPrefix(c.Name, "[It] "):
			s.passed++
		case c.Status == "failed" || c.Status == "panicked" || c.Status == "timedout" || c.Status == "interrupted" || c.Status == "aborted":
			s.failed = append(s.failed, c)
		}
	}
	sort.Slice(s.failed, func(i, j int) bool { return s.failed[i].Name < s.failed[j].Name })
	total := s.passed + len(s.failed)
	perMin := 0.0
	if took > 0 {
		perMin = float64(total) / took.Minutes()
	}
	s.line = fmt.Sprintf("%d passed, %d failed (%d/%d) in %s, %.1f tests/min", s.passed, len(s.failed), s.passed, total, took.Round(time.Second), perMin)
	return s
}

// pushConformanceImages builds the images e2e.test lists (test/conformance)
// and pushes them into ECR repositories of the account, as a user would
// with `aws ecr create-repository` and a registry client logged in with
// `aws ecr get-login-password`. It returns the KUBE_TEST_REPO_LIST file
// that points e2e.test at them.
func pushConformanceImages(t *testing.T, s *server, b bundle.Bundle, bin, report string) string {
	t.Helper()
	host := s.host()
	account := strings.TrimSpace(mustAWSText(t, s, "sts", "get-caller-identity", "--query", "Account", "--output", "text"))
	base := host + "/" + account
	list := filepath.Join(report, "repo-list.yaml")
	// Every public registry of upstream's list maps into the account; the
	// private and invalid ones stay as they are (tests expect them to fail).
	yaml := fmt.Sprintf(`promoterE2eRegistry: %[1]s/e2e-test-images
buildImageRegistry: %[1]s/build-image
gcEtcdRegistry: %[1]s
gcRegistry: %[1]s
sigStorageRegistry: %[1]s/sig-storage
dockerLibraryRegistry: %[1]s/library
cloudProviderGcpRegistry: %[1]s/cloud-provider-gcp
`, base)
	if err := os.WriteFile(list, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bin, "e2e.test"), "--list-images")
	cmd.Env = append(os.Environ(), "KUBE_TEST_REPO_LIST="+list)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("e2e.test --list-images: %v", err)
	}
	var refs []string
	for _, l := range strings.Fields(string(out)) {
		if strings.HasPrefix(l, base+"/") {
			refs = append(refs, l)
		}
	}
	imgs, missing, err := conformance.Images(refs, conformance.Sources{
		Dir: bin, Kube: b.Path(), Pause: filepath.Join(imagesDir(t), "pause"),
		Busybox: filepath.Join(filepath.Dir(bundlesDir(t)), "conformance", "busybox"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d test images built here, %d without a recipe (no [Conformance] test uses them): %v", len(imgs), len(missing), missing)
	auth := remote.WithAuth(&authn.Basic{Username: "AWS", Password: strings.TrimSpace(mustAWSText(t, s, "ecr", "get-login-password"))})
	repos := map[string]bool{}
	for _, img := range imgs {
		repo := strings.TrimPrefix(img.Repo, account+"/")
		if !repos[repo] {
			repos[repo] = true
			mustAWS(t, s, "ecr", "create-repository", "--repository-name", repo)
		}
		v1img, err := img.Build()
		if err != nil {
			t.Fatalf("build %s: %v", img.Ref(), err)
		}
		ref, err := name.ParseReference(host+"/"+img.Ref(), name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(ref, v1img, auth, remote.WithTransport(s.client.Transport), remote.WithContext(context.Background())); err != nil {
			t.Fatalf("push %s: %v", ref, err)
		}
	}
	return list
}

// mustAWSText runs the stock aws CLI and returns its output.
func mustAWSText(t testing.TB, s *server, args ...string) string {
	t.Helper()
	out, err := awsCLI(t, s, args...)
	if err != nil {
		t.Fatalf("aws %v: %v %s", args, err, out)
	}
	return out
}
