package nodes

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

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
