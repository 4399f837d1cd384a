package controlplane

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
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
	e, err := startEgress(sock, dial, slog.New(slog.DiscardHandler))
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

// TestControlPlaneDialer: only the cluster's own authenticator is dialled
// from the host; every other webhook URL goes to the VPC dialer (issue 15).
func TestControlPlaneDialer(t *testing.T) {
	l := Layout{Slot: 9, Dir: t.TempDir()}
	own, err := net.Listen("tcp", hostPort(l.WebhookIP(), WebhookPort))
	if err != nil {
		t.Fatalf("listen on the webhook address: %v", err)
	}
	defer own.Close()
	var asked []string
	d := l.controlPlaneDialer(func(_ context.Context, addr string) (net.Conn, error) {
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
