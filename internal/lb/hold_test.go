package lb

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

// TestHold: while held, what a client sends waits (on an open connection
// and on a new one) and what the backend sends still arrives; Release, or
// the hold's end, lets it through in order, with nothing lost.
func TestHold(t *testing.T) {
	// The backend answers each line with its own copy, and greets each
	// connection first (bytes from the backend, which a hold lets through).
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				fmt.Fprintln(c, "hello")
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					fmt.Fprint(c, "echo "+line)
				}
			}()
		}
	}()
	check := func(ctx context.Context, addr string) error {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
	b := New(Config{Name: "hold", Check: check, Interval: 20 * time.Millisecond, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer b.Close()
	if err := b.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	b.SetBackends([]string{l.Addr().String()})
	waitFor(t, "healthy", func() bool { return len(b.Healthy()) == 1 })
	addr := publicAddr(t, b)

	open, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	rd := bufio.NewReader(open)
	line := func(c net.Conn, r *bufio.Reader, within time.Duration) (string, error) {
		c.SetReadDeadline(time.Now().Add(within))
		return r.ReadString('\n')
	}
	if got, err := line(open, rd, 2*time.Second); got != "hello\n" {
		t.Fatalf("greeting: %q %v", got, err)
	}
	fmt.Fprintln(open, "before")
	if got, err := line(open, rd, 2*time.Second); got != "echo before\n" {
		t.Fatalf("before the hold: %q %v", got, err)
	}

	b.Hold(time.Minute) // MaxHold at most
	if !b.Holding() {
		t.Fatal("not holding")
	}
	fmt.Fprintln(open, "held-1")
	fmt.Fprintln(open, "held-2")
	fresh, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	frd := bufio.NewReader(fresh)
	// The backend's bytes pass: the new connection is greeted.
	if got, err := line(fresh, frd, 2*time.Second); got != "hello\n" {
		t.Fatalf("greeting while held: %q %v", got, err)
	}
	fmt.Fprintln(fresh, "fresh")
	// The clients' bytes wait.
	if got, err := line(open, rd, 300*time.Millisecond); err == nil {
		t.Fatalf("an answer while held: %q", got)
	}
	if got, err := line(fresh, frd, 10*time.Millisecond); err == nil {
		t.Fatalf("an answer on the new connection while held: %q", got)
	}
	b.Release()
	for _, want := range []string{"echo held-1\n", "echo held-2\n"} {
		if got, err := line(open, rd, 2*time.Second); got != want {
			t.Fatalf("after the release: %q %v, want %q", got, err, want)
		}
	}
	if got, err := line(fresh, frd, 2*time.Second); got != "echo fresh\n" {
		t.Fatalf("new connection after the release: %q %v", got, err)
	}

	// A hold ends by itself after MaxHold.
	b.Hold(time.Minute)
	start := time.Now()
	fmt.Fprintln(open, "late")
	if got, err := line(open, rd, MaxHold+2*time.Second); got != "echo late\n" {
		t.Fatalf("after the hold's end: %q %v", got, err)
	}
	if took := time.Since(start); took < MaxHold-100*time.Millisecond || took > MaxHold+time.Second {
		t.Errorf("the hold lasted %v, want about %v", took, MaxHold)
	}
	if b.Holding() {
		t.Error("still holding after MaxHold")
	}
}
