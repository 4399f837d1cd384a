package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"skiff.dev/skiff/internal/apitls"
	"skiff.dev/skiff/internal/cryptvol"
)

var skiffBin string // built once by TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "skiff-e2e-bin")
	if err != nil {
		panic(err)
	}
	skiffBin = filepath.Join(dir, "skiff")
	// skiff-instance next to skiff: the program of skiff's own instances.
	for _, b := range [][2]string{{skiffBin, "../../cmd/skiff"}, {filepath.Join(dir, "skiff-instance"), "../../cmd/skiff-instance"}} {
		if out, err := exec.Command("go", "build", "-o", b[0], b[1]).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", b[1], err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is a `skiff serve` process, with the default account's admin
// credentials (from `skiff env`).
type server struct {
	dataDir, endpoint string
	bin               string       // the skiff binary it runs
	client            *http.Client // trusts skiff's CA (AWS_CA_BUNDLE of env)
	cmd               *exec.Cmd
	log               *os.File
	env               []string // AWS_* variables for the stock clients
	role              string   // ARN of a cluster role, once made
	subnets           []string // the default VPC's subnets, once looked up
}

// hostEnvMarker is a variable of skiff serve's environment that no
// instance may see (TestClusterIsolation looks for it in a node).
const hostEnvMarker = "SKIFF_E2E_HOST_ONLY"

func freePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// serveTest starts skiff on a fresh data dir for one test; at the end it
// logs the tails of skiff's and the kubelets' logs if the test failed,
// deletes every cluster, checks that nothing of them is left on the
// machine (namespaces, sockets, …) and stops skiff.
func serveTest(t testing.TB, flags ...string) (*server, string) {
	dataDir := t.TempDir()
	s := startServe(t, dataDir, freePort(t), flags...)
	t.Cleanup(func() { s.stop(t) })
	t.Cleanup(func() { noLeftovers(t, dataDir) })
	t.Cleanup(func() { deleteAll(t, s) })
	t.Cleanup(func() {
		if !t.Failed() && os.Getenv("SKIFF_E2E_KEEP_LOGS") == "" { // kept on request too
			return
		}
		data, _ := os.ReadFile(filepath.Join(dataDir, "serve.log"))
		t.Logf("serve log:\n%s", tail(string(data), 40))
		logs, _ := filepath.Glob(filepath.Join(dataDir, "clusters", "*", "logs", "node-*kubelet.log"))
		for _, l := range logs {
			data, _ := os.ReadFile(l)
			t.Logf("%s:\n%s", l, tail(string(data), 15))
		}
		keep := filepath.Join(os.TempDir(), "skiff-e2e-failed", t.Name())
		os.RemoveAll(keep)
		os.MkdirAll(keep, 0o700)
		copyLogs(dataDir, keep)
		t.Logf("logs kept in %s", keep)
	})
	return s, dataDir
}

// restart stops skiff and starts it again on the same data dir and
// address, in place (cleanups registered with s see the new process).
func (s *server) restart(t testing.TB) {
	s.stop(t)
	*s = *startServeBin(t, s.bin, s.dataDir, s.host())
}

// upgrade stops skiff and starts binary bin in its place, on the same data
// dir and address.
func (s *server) upgrade(t testing.TB, bin string) {
	s.stop(t)
	*s = *startServeBin(t, bin, s.dataDir, s.host())
}

func startServe(t testing.TB, dataDir, listen string, flags ...string) *server {
	t.Helper()
	return startServeBin(t, skiffBin, dataDir, listen, flags...)
}

func startServeBin(t testing.TB, bin, dataDir, listen string, flags ...string) *server {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(dataDir, "serve.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, seen := sweptDirs.LoadOrStore(dataDir, true); !seen {
		// Before the data dir goes (t.TempDir's cleanup runs after this
		// one): control planes outlive skiff, and their etcd volumes are
		// mounts under it.
		t.Cleanup(func() { sweepDataDir(t, dataDir) })
	}
	cmd := exec.Command(bin, append([]string{"serve", "--data-dir", dataDir, "--listen", listen, "--bundles", bundlesDir(t),
		"--images", filepath.Join(filepath.Dir(bundlesDir(t)), "images")}, flags...)...)
	cmd.Env = append(os.Environ(), hostEnvMarker+"=in-skiff-serve-only")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.WaitDelay = 5 * time.Second
	started := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	scheme := "https"
	if slices.Contains(flags, "--insecure-http") {
		scheme = "http"
	}
	s := &server{dataDir: dataDir, endpoint: scheme + "://" + listen, bin: bin, cmd: cmd, log: logf}
	deadline := time.Now().Add(60 * time.Second) // a fresh data dir: the registry seeds the system images
	// Listening, and serve.json written by this process (not left from an
	// earlier run on the data dir).
	written := func() bool {
		fi, err := os.Stat(filepath.Join(dataDir, "serve.json"))
		return err == nil && !fi.ModTime().Before(started)
	}
	for !listening(listen) || !written() {
		if time.Now().After(deadline) {
			s.kill()
			data, _ := os.ReadFile(filepath.Join(dataDir, "serve.log"))
			t.Fatalf("skiff serve did not listen on %s (and write serve.json) in 60 s; its log:\n%s", listen, tail(string(data), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.env = skiffEnv(t, dataDir, "default")
	s.client = caClient(t, envValue(s.env, "AWS_CA_BUNDLE"))
	if got := envValue(s.env, "AWS_ENDPOINT_URL"); got != s.endpoint {
		s.kill()
		t.Fatalf("skiff env: AWS_ENDPOINT_URL=%s, want %s", got, s.endpoint)
	}
	return s
}

// sweptDirs are the data dirs whose sweep is registered.
var sweptDirs sync.Map

// sweepDataDir kills what a test left running of a data dir (the
// instances of clusters it did not delete) and removes their volumes.
func sweepDataDir(t testing.TB, dataDir string) {
	pids := instancePIDs(dataDir)
	for _, pid := range pids {
		syscall.Kill(-pid, syscall.SIGKILL)
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, pid := range pids {
		for i := 0; i < 500 && syscall.Kill(pid, 0) == nil; i++ {
			time.Sleep(10 * time.Millisecond)
		}
	}
	images, _ := filepath.Glob(filepath.Join(dataDir, "clusters", "*", "*", "*.img"))
	for _, img := range images {
		if err := cryptvol.Remove(cryptvol.Volume{Image: img, Mount: strings.TrimSuffix(img, ".img")}); err != nil {
			t.Errorf("remove a volume left by the test: %v", err)
		}
	}
}

// host is the server's host:port.
func (s *server) host() string {
	u, _ := url.Parse(s.endpoint)
	return u.Host
}

// caClient is an HTTP client trusting the CA bundle as the AWS CLI does
// with AWS_CA_BUNDLE ("" for plain HTTP), never following redirects.
func caClient(t testing.TB, bundle string) *http.Client {
	t.Helper()
	tr, err := apitls.Transport(bundle)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: tr, Timeout: 60 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// skiffEnv runs `skiff env` and returns its variables.
func skiffEnv(t testing.TB, dataDir, account string) []string {
	t.Helper()
	out, err := exec.Command(skiffBin, "env", "--data-dir", dataDir, "--account", account).CombinedOutput()
	if err != nil {
		t.Fatalf("skiff env: %v: %s", err, out)
	}
	var env []string
	for _, line := range strings.Split(string(out), "\n") {
		if kv, ok := strings.CutPrefix(line, "export "); ok {
			k, v, _ := strings.Cut(kv, "=")
			uq, err := strconv.Unquote(v)
			if err != nil {
				t.Fatalf("skiff env line %q: %v", line, err)
			}
			env = append(env, k+"="+uq)
		}
	}
	return env
}

// clusterRole returns the ARN of a role for clusters, creating it once.
func (s *server) clusterRole(t testing.TB) string {
	if s.role == "" {
		out := mustAWS(t, s, "iam", "create-role", "--role-name", "skiff-e2e",
			"--assume-role-policy-document", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"eks.amazonaws.com"},"Action":"sts:AssumeRole"}]}`)
		s.role = out["Role"].(map[string]any)["Arn"].(string)
	}
	return s.role
}

// defaultSubnets returns the IDs of the account's default subnets, sorted
// by zone (a, b, c), as the stock CLI finds them.
func (s *server) defaultSubnets(t testing.TB) []string {
	if s.subnets == nil {
		out := mustAWS(t, s, "ec2", "describe-subnets", "--filters", "Name=default-for-az,Values=true")
		byZone := map[string]string{}
		var zones []string
		for _, sn := range out["Subnets"].([]any) {
			m := sn.(map[string]any)
			byZone[m["AvailabilityZone"].(string)] = m["SubnetId"].(string)
			zones = append(zones, m["AvailabilityZone"].(string))
		}
		sort.Strings(zones)
		for _, z := range zones {
			s.subnets = append(s.subnets, byZone[z])
		}
		if len(s.subnets) != 3 {
			t.Fatalf("default subnets = %v, want 3", out)
		}
	}
	return s.subnets
}

func (s *server) createArgs(t testing.TB, name string, extra ...string) []string {
	return append([]string{"eks", "create-cluster", "--name=" + name, "--role-arn", s.clusterRole(t),
		"--resources-vpc-config", "subnetIds=" + strings.Join(s.defaultSubnets(t), ",")}, extra...)
}

func listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
	if err == nil {
		c.Close()
	}
	return err == nil
}

func (s *server) kill() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

// stop ends serve with SIGTERM, bounded: a hung shutdown fails the test.
func (s *server) stop(t testing.TB) {
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		s.kill()
		t.Error("skiff serve did not stop within 30 s of SIGTERM")
	}
}

// instances counts the live instance processes of a data dir by instance
// ID, straight from /proc: duplicates show as counts above one.
func instances(dataDir string) map[string]int {
	out := map[string]int{}
	scanInstances(dataDir, func(id string, _ int) { out[id]++ })
	return out
}

// scanInstances calls fn for each live process group leader that carries
// the instance markers of dataDir's runtime.
func scanInstances(dataDir string, fn func(id string, pid int)) {
	marker := []byte("SKIFF_ROOT=" + dataDir + "\x00")
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !bytes.Contains(env, marker) {
			continue
		}
		if pgid, _ := syscall.Getpgid(pid); pgid != pid {
			continue
		}
		stat, _ := os.ReadFile("/proc/" + e.Name() + "/stat")
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && len(stat) > i+2 && stat[i+2] == 'Z' {
			continue
		}
		for _, kv := range strings.Split(string(env), "\x00") {
			if id, ok := strings.CutPrefix(kv, "SKIFF_INSTANCE="); ok {
				fn(id, pid)
			}
		}
	}
}

// awsCLI runs the stock aws CLI against a skiff server with its admin
// credentials; extra variables (later wins) may replace them.
func awsCLI(t testing.TB, s *server, args ...string) (string, error) {
	return awsCLIEnv(t, s, nil, args...)
}

func awsCLIEnv(t testing.TB, s *server, extra []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "aws", args...)
	cmd.Env = append(append(append(os.Environ(), "AWS_PAGER=", "AWS_CONFIG_FILE=/dev/null",
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_SESSION_TOKEN="), s.env...), extra...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("aws %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func mustAWS(t testing.TB, s *server, args ...string) map[string]any {
	t.Helper()
	out, err := awsCLI(t, s, args...)
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if strings.TrimSpace(out) != "" {
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("aws %v: not JSON: %s", args, out)
		}
	}
	return v
}

// TestServeRestartMidCreate: kill -9 skiff while a cluster is being created,
// start it again: the cluster finishes, with no duplicate and no orphan.
func TestServeRestartMidCreate(t *testing.T) {
	dataDir := t.TempDir()
	listen := freePort(t)
	s := startServe(t, dataDir, listen)
	defer func() {
		if t.Failed() {
			data, _ := os.ReadFile(filepath.Join(dataDir, "serve.log"))
			t.Logf("serve log:\n%s", tail(string(data), 40))
		}
	}()
	mustAWS(t, s, s.createArgs(t, "phoenix")...)
	// Wait until some instances run, then kill skiff before the cluster is ACTIVE.
	deadline := time.Now().Add(30 * time.Second)
	for len(instances(dataDir)) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("no instances started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	up := len(instances(dataDir))
	s.kill()
	s = startServe(t, dataDir, listen)
	defer s.stop(t)
	desc := mustAWS(t, s, "eks", "describe-cluster", "--name", "phoenix")
	t.Logf("killed skiff with %d instances up; status then %v", up, desc["cluster"].(map[string]any)["status"])
	waitAWSStatus(t, s, "phoenix", "ACTIVE")
	// ACTIVE needs one apiserver: the rest may still be (re)starting (one
	// the killed skiff started but never let run exits at once).
	if err := eventually(30*time.Second, func() error {
		got := instances(dataDir)
		if len(got) != 15 {
			return fmt.Errorf("instances after restart = %v, want 15", got)
		}
		for id, n := range got {
			if n != 1 {
				return fmt.Errorf("instance %s runs %d times", id, n)
			}
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	// The cluster works through its endpoint.
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	kcmd := exec.Command(skiffBin, "kubeconfig", "phoenix", "-o", kc)
	kcmd.Env = append(os.Environ(), s.env...)
	if out, err := kcmd.CombinedOutput(); err != nil {
		t.Fatalf("skiff kubeconfig: %v %s", err, out)
	}
	if out, err := kubectlEnv(t, s.env, kc, "get", "--raw", "/readyz"); err != nil || strings.TrimSpace(out) != "ok" {
		t.Errorf("/readyz = %q %v", out, err)
	}
	// Delete: nothing remains.
	mustAWS(t, s, "eks", "delete-cluster", "--name", "phoenix")
	waitAWSStatus(t, s, "phoenix", "")
	if left := instances(dataDir); len(left) > 0 {
		t.Errorf("instances left after delete: %v", left)
	}
	if entries, _ := os.ReadDir(filepath.Join(dataDir, "clusters")); len(entries) > 0 {
		t.Errorf("cluster files left after delete: %v", entries)
	}
}

// waitAWSStatus polls describe-cluster with the aws CLI until the cluster
// has status ("" = until it is gone). (The CLI's own waiters sleep 30 s.)
func waitAWSStatus(t testing.TB, s *server, name, status string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		out, err := awsCLI(t, s, "eks", "describe-cluster", "--name", name, "--query", "cluster.status", "--output", "text")
		got := strings.TrimSpace(out)
		if status == "" && err != nil && strings.Contains(out, "ResourceNotFoundException") {
			return
		}
		if err == nil && got == status {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster %s: want status %q, have %q (%v)", name, status, got, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
