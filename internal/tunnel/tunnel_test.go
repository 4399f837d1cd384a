package tunnel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"skiff.dev/skiff/internal/material"
	"skiff.dev/skiff/internal/status"
	"skiff.dev/skiff/internal/status/statustest"
)

// The egress proxy tunnels a CONNECT to what the dialer allows and answers
// 502 for what it refuses, as the apiservers' HTTPConnect client expects.
func TestEgressConnect(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	allowed := "10.0.0.5:10250"
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		if addr != allowed {
			return nil, errors.New("not a node or pod of cluster x")
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", echo.Addr().String())
	}
	sock := filepath.Join(t.TempDir(), "egress.sock")
	e, err := Serve(sock, dial, status.Timeouts{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()

	for _, tc := range []struct {
		target string
		status int
	}{{allowed, 200}, {"10.0.0.6:10250", 502}} {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", tc.target, tc.target)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tc.status {
			t.Errorf("CONNECT %s: %d, want %d", tc.target, resp.StatusCode, tc.status)
		}
		if tc.status == 200 {
			fmt.Fprint(c, "ping\n")
			line, err := br.ReadString('\n')
			if err != nil || line != "ping\n" {
				t.Errorf("tunnel echoed %q, %v", line, err)
			}
		} else if body, _ := io.ReadAll(resp.Body); !strings.Contains(string(body), "not a node or pod") {
			t.Errorf("refusal says %q", body)
		}
		c.Close()
	}
}

// echoServer is a TCP echo server; it returns its address.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// TestProxyTimeouts: the egress proxy cuts a client that sends nothing,
// half a header or a request too slowly, and an idle connection, after
// its timeouts; a tunnel it established has none: quiet or busy for
// longer than every timeout, it still carries data (issue 15).
func TestProxyTimeouts(t *testing.T) {
	echo := echoServer(t)
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", echo)
	}
	to := status.Timeouts{Header: 200 * time.Millisecond, Read: time.Second, Idle: 2 * time.Second}
	sock := filepath.Join(t.TempDir(), "egress.sock")
	e, err := Serve(sock, dial, to, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	unix := func(t *testing.T) net.Conn {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	t.Run("Requests", func(t *testing.T) {
		t.Parallel()
		statustest.Run(t, statustest.Harness{Timeouts: to, Dial: unix,
			Request: "GET / HTTP/1.1\r\nHost: x\r\n\r\n", Status: http.StatusMethodNotAllowed})
	})
	for _, tc := range []struct {
		name  string
		every time.Duration // between two pings
		pings int
	}{
		{"quiet", to.Read + to.Idle, 1},
		{"busy", to.Header, int((to.Read + to.Idle) / to.Header)},
	} {
		t.Run("Stream/"+tc.name, func(t *testing.T) {
			t.Parallel()
			c := unix(t)
			fmt.Fprintf(c, "CONNECT 10.0.0.5:10250 HTTP/1.1\r\nHost: 10.0.0.5:10250\r\n\r\n")
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("CONNECT: %v %v", resp, err)
			}
			for i := range tc.pings {
				time.Sleep(tc.every)
				c.SetDeadline(time.Now().Add(2 * time.Second))
				fmt.Fprintf(c, "ping %d\n", i)
				if line, err := br.ReadString('\n'); err != nil || line != fmt.Sprintf("ping %d\n", i) {
					t.Fatalf("after %v: the tunnel echoed %q, %v", time.Duration(i+1)*tc.every, line, err)
				}
			}
		})
	}
}

// TestControlPlaneDialer: only the direct addresses (the cluster's own
// authenticator) are dialled from the host; every other webhook URL goes
// to the VPC dialer (issue 15).
func TestControlPlaneDialer(t *testing.T) {
	own, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer own.Close()
	var asked []string
	d := ControlPlane([]string{own.Addr().String()}, func(_ context.Context, addr string) (net.Conn, error) {
		asked = append(asked, addr)
		return nil, errors.New("not in the VPC")
	})
	c, err := d(context.Background(), own.Addr().String())
	if err != nil {
		t.Fatalf("own authenticator: %v", err)
	}
	c.Close()
	for _, addr := range []string{"127.0.0.1:7443", "127.1.9.20:6443", "10.0.0.5:443", "webhook.example.com:443"} {
		if _, err := d(context.Background(), addr); err == nil {
			t.Errorf("%s dialled from the host", addr)
		}
	}
	if len(asked) != 4 {
		t.Errorf("VPC dialer asked %v", asked)
	}
}

// TestInVPCRefuses: the apiservers' egress reaches a cluster's own nodes
// (the node file) and pods only.
func TestInVPCRefuses(t *testing.T) {
	nodesFile := filepath.Join(t.TempDir(), "nodes.json")
	if err := WriteNodes(nodesFile, []netip.Addr{netip.MustParseAddr("172.31.0.5")}); err != nil {
		t.Fatal(err)
	}
	nodes := &nodeList{f: material.File[[]netip.Addr]{Path: nodesFile}}
	pods := netip.MustParsePrefix("100.64.0.0/10")
	dial := InVPC("a", "skiff-test-no-such-namespace", func(a netip.Addr) bool { return pods.Contains(a) || nodes.has(a) })
	for _, addr := range []string{
		"172.31.0.6:10250", // in the VPC, not a node of the cluster
		"127.0.0.1:2379",   // the host
		"10.100.0.1:443",   // a Service address (not routed in the VPC)
		"ip-172-31-0-5:10250",
		"172.31.0.5",
	} {
		if _, err := dial(context.Background(), addr); err == nil || strings.Contains(err.Error(), "namespace") {
			t.Errorf("dial(%s) = %v, want a refusal before any namespace", addr, err)
		}
	}
	// A node's or a pod's address gets through the check (and fails only
	// because this test has no VPC namespace).
	for _, addr := range []string{"172.31.0.5:10250", "100.64.1.66:8080"} {
		if _, err := dial(context.Background(), addr); err == nil || !strings.Contains(err.Error(), "namespace") {
			t.Errorf("dial(%s) = %v, want it to try the VPC's namespace", addr, err)
		}
	}
	// A node added to the file is let in.
	time.Sleep(10 * time.Millisecond)
	if err := WriteNodes(nodesFile, []netip.Addr{netip.MustParseAddr("172.31.0.5"), netip.MustParseAddr("172.31.0.6")}); err != nil {
		t.Fatal(err)
	}
	if _, err := dial(context.Background(), "172.31.0.6:10250"); err == nil || !strings.Contains(err.Error(), "namespace") {
		t.Errorf("a new node: %v", err)
	}
}
