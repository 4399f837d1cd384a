package status_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"skiff.dev/skiff/internal/status"
	"skiff.dev/skiff/internal/status/statustest"
)

// TestTimeouts: a status server cuts a client that sends nothing, half a
// header or its body too slowly, or idles on a keep-alive connection, and
// serves one that behaves (issue 15).
func TestTimeouts(t *testing.T) {
	to := status.Timeouts{Header: 200 * time.Millisecond, Read: time.Second, Idle: 2 * time.Second}
	srv, err := status.Start(status.Config{Addr: "127.0.0.1:0", Timeouts: to}, func() (any, error) { return map[string]int{"n": 1}, nil })
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	addr := srv.Addr
	statustest.Run(t, statustest.Harness{
		Timeouts: to,
		Dial:     func(t *testing.T) net.Conn { return dial(t, addr) },
		Request:  "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
		Status:   http.StatusOK,
	})
}

// TestDefaults: Serve (the endpoint's status server) gets DefaultTimeouts,
// Or fills only the missing ones; Get reads a report, or the 503's reason.
func TestDefaults(t *testing.T) {
	healthy := true
	srv, err := status.Serve("127.0.0.1:0", func() (any, error) {
		if !healthy {
			return nil, errors.New("no backend")
		}
		return map[string]int{"n": 1}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	d := status.DefaultTimeouts
	if srv.ReadHeaderTimeout != d.Header || srv.ReadTimeout != d.Read || srv.IdleTimeout != d.Idle || d.Header <= 0 || d.Read <= 0 || d.Idle <= 0 {
		t.Errorf("timeouts %v %v %v, want %+v", srv.ReadHeaderTimeout, srv.ReadTimeout, srv.IdleTimeout, d)
	}
	part := status.Timeouts{Read: time.Second}.Or(d)
	if part != (status.Timeouts{Header: d.Header, Read: time.Second, Idle: d.Idle}) {
		t.Errorf("Or: %+v", part)
	}
	addr := srv.Addr
	var v map[string]int
	if err := status.Get(context.Background(), addr, &v); err != nil || v["n"] != 1 {
		t.Errorf("Get: %v %v", v, err)
	}
	healthy = false
	if err := status.Get(context.Background(), addr, nil); err == nil {
		t.Error("Get of an unhealthy instance: no error")
	}
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
