package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

var skiffBin string // built once by TestMain

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "skiff-e2e-bin")
	if err != nil {
		panic(err)
	}
	skiffBin = filepath.Join(dir, "skiff")
	if out, err := exec.Command("go", "build", "-o", skiffBin, "../../cmd/skiff").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build skiff: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is a `skiff serve` process.
type server struct {
	dataDir, endpoint string
	cmd               *exec.Cmd
	log               *os.File
}

func freePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startServe(t *testing.T, dataDir, listen string) *server {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(dataDir, "serve.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(skiffBin, "serve", "--data-dir", dataDir, "--listen", listen, "--bundles", bundlesDir(t))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{dataDir: dataDir, endpoint: "http://" + listen, cmd: cmd, log: logf}
	deadline := time.Now().Add(20 * time.Second)
	for !listening(listen) {
		if time.Now().After(deadline) {
			s.kill()
			t.Fatalf("skiff serve did not listen on %s", listen)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
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
				out[id]++
			}
		}
	}
	return out
}

// awsCLI runs the stock aws CLI against a skiff server.
func awsCLI(t testing.TB, endpoint string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "aws", args...)
	cmd.Env = append(os.Environ(), "AWS_ENDPOINT_URL="+endpoint, "AWS_ACCESS_KEY_ID=skiff-test",
		"AWS_SECRET_ACCESS_KEY=skiff-test", "AWS_DEFAULT_REGION=us-east-1", "AWS_PAGER=",
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("aws %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func mustAWS(t testing.TB, endpoint string, args ...string) map[string]any {
	t.Helper()
	out, err := awsCLI(t, endpoint, args...)
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

func createArgs(name string, extra ...string) []string {
	return append([]string{"eks", "create-cluster", "--name=" + name, "--role-arn",
		"arn:aws:iam::000000000000:role/skiff-test", "--resources-vpc-config", "subnetIds=[]"}, extra...)
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
	mustAWS(t, s.endpoint, createArgs("phoenix")...)
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
	desc := mustAWS(t, s.endpoint, "eks", "describe-cluster", "--name", "phoenix")
	t.Logf("killed skiff with %d instances up; status then %v", up, desc["cluster"].(map[string]any)["status"])
	waitAWSStatus(t, s.endpoint, "phoenix", "ACTIVE")
	got := instances(dataDir)
	if len(got) != 9 {
		t.Errorf("instances after restart = %v, want 9", got)
	}
	for id, n := range got {
		if n != 1 {
			t.Errorf("instance %s runs %d times", id, n)
		}
	}
	// The cluster works through its endpoint.
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if out, err := exec.Command(skiffBin, "kubeconfig", "phoenix", "--endpoint", s.endpoint, "-o", kc).CombinedOutput(); err != nil {
		t.Fatalf("skiff kubeconfig: %v %s", err, out)
	}
	if out := mustKubectl(t, kc, "get", "--raw", "/readyz"); strings.TrimSpace(out) != "ok" {
		t.Errorf("/readyz = %q", out)
	}
	// Delete: nothing remains.
	mustAWS(t, s.endpoint, "eks", "delete-cluster", "--name", "phoenix")
	waitAWSStatus(t, s.endpoint, "phoenix", "")
	if left := instances(dataDir); len(left) > 0 {
		t.Errorf("instances left after delete: %v", left)
	}
	if entries, _ := os.ReadDir(filepath.Join(dataDir, "clusters")); len(entries) > 0 {
		t.Errorf("cluster files left after delete: %v", entries)
	}
}

// waitAWSStatus polls describe-cluster with the aws CLI until the cluster
// has status ("" = until it is gone). (The CLI's own waiters sleep 30 s.)
func waitAWSStatus(t testing.TB, endpoint, name, status string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		out, err := awsCLI(t, endpoint, "eks", "describe-cluster", "--name", name, "--query", "cluster.status", "--output", "text")
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
