package router

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestRegistryRoute: /v2 and /v2/… go to the registry as they come (no
// SigV4, no body limit); other paths do not.
func TestRegistryRoute(t *testing.T) {
	var got int64
	rt := &Router{Registry: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		got = n
		w.WriteHeader(http.StatusAccepted)
	})}
	big := bytes.Repeat([]byte("x"), 3*maxBody)
	for _, path := range []string{"/v2", "/v2/", "/v2/111111111111/web/blobs/uploads/abc"} {
		got = 0
		rec := httptest.NewRecorder()
		rt.ServeHTTP(rec, httptest.NewRequest(http.MethodPatch, path, bytes.NewReader(big)))
		if rec.Code != http.StatusAccepted || got != int64(len(big)) {
			t.Errorf("%s: %d, registry read %d bytes", path, rec.Code, got)
		}
	}
	rec := httptest.NewRecorder()
	rt.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v2x", bytes.NewReader(big)))
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("/v2x: %d, want the API's body limit", rec.Code)
	}
}

// TestSlowBody: a client that sends headers and then trickles its body
// is cut off at the body deadline, before any authentication (issue 15).
func TestSlowBody(t *testing.T) {
	rt := &Router{BodyTimeout: 300 * time.Millisecond}
	srv := httptest.NewServer(rt)
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nAction=")
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	if resp.StatusCode != http.StatusRequestTimeout || time.Since(start) > 3*time.Second {
		t.Fatalf("status %d after %v", resp.StatusCode, time.Since(start))
	}
}
