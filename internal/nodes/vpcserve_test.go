package nodes

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"skiff.dev/skiff/internal/door"
	"skiff.dev/skiff/internal/network"
)

// TestServeVPCLimits: a client in a VPC (a pod, say) cannot hold skiff's
// listeners there: a request sent too slowly and an idle keep-alive
// connection are closed, and connections beyond the limit wait until
// one is gone. Each case first shows the listener serving, so it can fail.
func TestServeVPCLimits(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, network.VPCOf(r.Context()))
	})
	l := vpcLimits{Header: 300 * time.Millisecond, Read: 400 * time.Millisecond, Idle: 300 * time.Millisecond, Conns: 2}
	srv := serveVPC(ln, h, "vpc-1", l)
	defer srv.Close()

	dial := func() (net.Conn, *bufio.Reader) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	// get sends a request and reads its answer within d.
	get := func(c net.Conn, br *bufio.Reader, d time.Duration) (string, error) {
		c.SetDeadline(time.Now().Add(d))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return "", err
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	closed := func(c net.Conn, br *bufio.Reader, within time.Duration) bool {
		c.SetReadDeadline(time.Now().Add(within))
		_, err := br.ReadByte()
		return err == io.EOF || err != nil && !strings.Contains(err.Error(), "timeout")
	}

	// Served, with the VPC in the request's context.
	a, ar := dial()
	if got, err := get(a, ar, time.Second); err != nil || got != "vpc-1" {
		t.Fatalf("a request: %q %v", got, err)
	}
	// Idle keep-alive: closed after Idle.
	if !closed(a, ar, 2*time.Second) {
		t.Error("an idle keep-alive connection stays open")
	}

	// Half a request: closed after Header.
	b, br := dial()
	io.WriteString(b, "GET / HTTP/1.1\r\nHost: x\r\n")
	if !closed(b, br, 2*time.Second) {
		t.Error("a connection that never finishes its headers stays open")
	}

	// The limit: two connections held open (mid-headers); a third waits
	// and is served once one of them is gone.
	c1, _ := dial()
	c2, _ := dial()
	io.WriteString(c1, "GET / HTTP/1.1\r\n")
	io.WriteString(c2, "GET / HTTP/1.1\r\n")
	time.Sleep(50 * time.Millisecond)
	c3, c3r := dial()
	start := time.Now()
	got, err := get(c3, c3r, 3*time.Second)
	if err != nil || got != "vpc-1" {
		t.Fatalf("the third connection, after the others were cut: %q %v", got, err)
	}
	if waited := time.Since(start); waited < 200*time.Millisecond {
		t.Errorf("the third connection was served after %v, while two others held the limit of 2", waited)
	}
}

// TestServeInVPC: skiff serves its API to a VPC on a socket only root may
// use, replacing one an earlier run left; through a door, a request carries
// the VPC and the caller's address, not one the caller claims.
func TestServeInVPC(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, network.VPCOf(r.Context())+" "+r.RemoteAddr+" "+r.Header.Get(door.ClientHeader))
	})
	r := New(Config{DataDir: t.TempDir(), SocketDir: t.TempDir(), API: h, Host: Host{MilliCPU: 1000, KiB: 1 << 20}})
	defer r.Close()
	path := r.APISocket("vpc-1")
	if other := r.APISocket("vpc-2"); other == path {
		t.Fatalf("two VPCs share socket %s", path)
	}
	// An earlier run's socket, that nobody answers.
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	if err := r.serveInVPC("vpc-1"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %s: %v %v, want mode 0600", path, fi.Mode(), err)
	}
	d := httptest.NewServer(door.APIProxy(path, time.Second, slog.New(slog.DiscardHandler)))
	defer d.Close()
	req, _ := http.NewRequest("GET", d.URL, nil)
	req.Header.Set(door.ClientHeader, "10.9.9.9:1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if f := strings.Fields(string(b)); len(f) != 2 || f[0] != "vpc-1" || !strings.HasPrefix(f[1], "127.0.0.1:") {
		t.Errorf("got %q, want the VPC and the caller's own address, and no header", b)
	}
	r.stopServing("vpc-1")
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket left after the VPC stopped being served: %v", err)
	}
	// A socket an earlier run left for a VPC this run never served (its
	// cluster is gone): removed with the VPC.
	other := r.APISocket("vpc-2")
	left, err := net.Listen("unix", other)
	if err != nil {
		t.Fatal(err)
	}
	left.(*net.UnixListener).SetUnlinkOnClose(false)
	left.Close()
	r.stopServing("vpc-2")
	if _, err := os.Stat(other); !os.IsNotExist(err) {
		t.Errorf("an earlier run's socket left after its VPC went: %v", err)
	}
}
