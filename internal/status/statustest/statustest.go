// Package statustest checks, from the client's side, that an HTTP server
// of skiff's applies its status.Timeouts: a client that sends nothing,
// half a header or a request too slowly, and an idle keep-alive
// connection, are cut after their timeout, while a client that behaves is
// served. Each case can fail: the timeouts must be distinct (Header < Read
// < Idle), so that a timeout missing from the server, which net/http then
// takes from another, closes the connection at the wrong time.
package statustest

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"skiff.dev/skiff/internal/status"
)

// Harness is a server under test.
type Harness struct {
	// Timeouts are the server's: short, and Header < Read < Idle.
	Timeouts status.Timeouts
	// Dial opens a connection ready for HTTP/1.1 (a TLS handshake done);
	// Raw, if set, one before any handshake (a TLS server must cut a
	// client that never starts it).
	Dial, Raw func(t *testing.T) net.Conn
	// Request is a whole request the server answers with Status.
	Request string
	Status  int
}

// slack is what the machine may add to a timeout (a loaded CI host).
const slack = 2 * time.Second

// Run checks the server's timeouts; its cases run in parallel, and Run
// returns when they are done.
func Run(t *testing.T, h Harness) {
	t.Helper()
	to := h.Timeouts
	if to.Header <= 0 || to.Header >= to.Read || to.Read >= to.Idle {
		t.Fatalf("statustest: timeouts %+v: want 0 < Header < Read < Idle", to)
	}
	t.Run("Timeouts", func(t *testing.T) { run(t, h) })
}

func run(t *testing.T, h Harness) {
	to := h.Timeouts
	raw := h.Raw
	if raw == nil {
		raw = h.Dial
	}
	t.Run("ServedThenIdle", func(t *testing.T) {
		t.Parallel()
		c := h.Dial(t)
		br := bufio.NewReader(c)
		for i := range 2 { // one connection, two requests: keep-alive works
			if code, err := roundTrip(c, br, h.Request); err != nil || code != h.Status {
				t.Fatalf("request %d: status %d, %v; want %d", i+1, code, err, h.Status)
			}
		}
		cut(t, c, br, (to.Read+to.Idle)/2, to.Idle+slack, "an idle keep-alive connection")
	})
	t.Run("Silent", func(t *testing.T) {
		t.Parallel()
		c := raw(t)
		cut(t, c, bufio.NewReader(c), to.Header/2, to.Read, "a client that sends nothing")
	})
	t.Run("HalfHeader", func(t *testing.T) {
		t.Parallel()
		c := h.Dial(t)
		write(t, c, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
		cut(t, c, bufio.NewReader(c), to.Header/2, to.Read, "a client that sends half a header")
	})
	t.Run("SlowBody", func(t *testing.T) {
		t.Parallel()
		c := h.Dial(t)
		// The server reads the body, or discards it before answering.
		write(t, c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
		cut(t, c, bufio.NewReader(c), to.Header, to.Idle, "a client that sends its body too slowly")
	})
}

func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// roundTrip sends a request and reads its answer.
func roundTrip(c net.Conn, br *bufio.Reader, req string) (int, error) {
	c.SetDeadline(time.Now().Add(slack))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, req); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, err
}

// cut checks that the server closes c no sooner than lo and before hi
// (whatever it answers first).
func cut(t *testing.T, c net.Conn, br *bufio.Reader, lo, hi time.Duration, who string) {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(hi))
	_, err := io.Copy(io.Discard, br)
	took := time.Since(start)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Errorf("%s is still open after %v", who, hi)
	case err != nil && !closedErr(err):
		t.Errorf("%s: %v", who, err)
	case took < lo:
		t.Errorf("%s was closed after %v, before %v: not by its timeout", who, took.Round(time.Millisecond), lo)
	}
}

// closedErr is how a peer's close shows on a read (io.Copy returns nil
// for EOF).
func closedErr(err error) bool {
	s := err.Error()
	return strings.Contains(s, "connection reset") || strings.Contains(s, "broken pipe") || strings.Contains(s, "EOF")
}
