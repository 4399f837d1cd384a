package lb

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// echoServer answers each line with its own name.
func echoServer(t *testing.T, name string) net.Listener {
	t.Helper()
	return echoServerAt(t, "127.0.0.1:0", name)
}

// echoServerAt is echoServer on addr.
func echoServerAt(t *testing.T, addr, name string) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
					fmt.Fprintln(c, name)
				}
			}()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return l
}

func ask(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintln(c, "hi")
	return bufio.NewReader(c).ReadString('\n')
}

// publicAddr is the address of b's one public listener.
func publicAddr(t *testing.T, b *Balancer) string {
	t.Helper()
	for k, addrs := range b.Addrs() {
		if strings.HasPrefix(k, "public ") {
			return addrs[0]
		}
	}
	t.Fatal("no public listener")
	return ""
}

func waitFor(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func TestBalancer(t *testing.T) {
	a, b := echoServer(t, "a"), echoServer(t, "b")
	var bDown atomic.Bool
	check := func(ctx context.Context, addr string) error {
		if addr == b.Addr().String() && bDown.Load() {
			return errors.New("unhealthy")
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
	lb := New(Config{Name: "test", Check: check, Interval: 50 * time.Millisecond, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer lb.Close()
	if err := lb.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	addr := publicAddr(t, lb)
	lb.SetBackends([]string{a.Addr().String(), b.Addr().String()})
	waitFor(t, "both healthy", func() bool { return len(lb.Healthy()) == 2 })

	seen := map[string]bool{}
	for i := 0; i < 4; i++ {
		got, err := ask(addr)
		if err != nil {
			t.Fatal(err)
		}
		seen[got] = true
	}
	if len(seen) != 2 {
		t.Fatalf("round robin reached %v", seen)
	}

	// A held connection to b is closed when b fails its check.
	held, _ := net.Dial("tcp", addr)
	defer held.Close()
	// Find a held connection that lands on b.
	fmt.Fprintln(held, "hi")
	first, _ := bufio.NewReader(held).ReadString('\n')
	bDown.Store(true)
	took := waitFor(t, "b to leave", func() bool { return slices.Equal(lb.Healthy(), []string{a.Addr().String()}) })
	if took > time.Second {
		t.Errorf("unhealthy backend left after %v, want < 1s", took)
	}
	if first == "b\n" {
		held.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := held.Read(make([]byte, 1)); err == nil {
			t.Error("connection to the failed backend stayed open")
		}
	}
	for i := 0; i < 4; i++ {
		if got, err := ask(addr); err != nil || got != "a\n" {
			t.Fatalf("with b down got %q, %v", got, err)
		}
	}

	// A backend that refuses connections fails over on dial, without waiting for a check.
	bDown.Store(false)
	waitFor(t, "b back", func() bool { return len(lb.Healthy()) == 2 })
	a.Close()
	for i := 0; i < 4; i++ {
		if got, err := ask(addr); err != nil || got != "b\n" {
			t.Fatalf("with a dead got %q, %v", got, err)
		}
	}

	// Panic mode: every backend fails its check, yet one accepts connections:
	// clients still get through rather than being refused.
	bDown.Store(true)
	waitFor(t, "pool empty", func() bool { return len(lb.Healthy()) == 0 })
	if got, err := ask(addr); err != nil || got != "b\n" {
		t.Fatalf("panic mode got %q, %v", got, err)
	}

	// Removing backends empties the pool: connections are refused politely (closed).
	lb.SetBackends(nil)
	if got, err := ask(addr); err == nil {
		t.Fatalf("no backends, got %q", got)
	}
}

// TestBalancerKeepsBusyBackends: a backend whose checks time out now and
// then (a busy machine) stays in the pool with its connections; one that
// answers "not ready", or refuses connections (a draining apiserver past
// its shutdown delay), leaves at once but its connections stay open (it
// drains them itself); only Fall misses in a row cut them.
func TestBalancerKeepsBusyBackends(t *testing.T) {
	a := echoServer(t, "a")
	var mode atomic.Value // "ok", "slow" (every other check misses), "notready", "refused", "hung"
	mode.Store("ok")
	var n atomic.Int64
	check := func(ctx context.Context, addr string) error {
		switch mode.Load() {
		case "slow":
			if n.Add(1)%2 == 0 {
				return context.DeadlineExceeded
			}
		case "notready":
			return fmt.Errorf("%w: 500", ErrNotReady)
		case "refused":
			return &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
		case "hung":
			return context.DeadlineExceeded
		}
		return nil
	}
	lb := New(Config{Name: "test", Check: check, Interval: 10 * time.Millisecond, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	defer lb.Close()
	if err := lb.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	addr := publicAddr(t, lb)
	lb.SetBackends([]string{a.Addr().String()})
	waitFor(t, "a healthy", func() bool { return len(lb.Healthy()) == 1 })

	held, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	r := bufio.NewReader(held)
	open := func() bool {
		held.SetDeadline(time.Now().Add(time.Second))
		fmt.Fprintln(held, "hi")
		got, err := r.ReadString('\n')
		return err == nil && got == "a\n"
	}
	if !open() {
		t.Fatal("held connection does not work")
	}

	mode.Store("slow")
	time.Sleep(300 * time.Millisecond) // ~30 checks, half of them missed, never 3 in a row
	if len(lb.Healthy()) != 1 || !open() {
		t.Fatalf("a busy backend left the pool (healthy %v) or lost its connection", lb.Healthy())
	}

	mode.Store("notready")
	waitFor(t, "a to leave", func() bool { return len(lb.Healthy()) == 0 })
	if !open() {
		t.Fatal("a backend that answered not ready had its connection cut")
	}

	mode.Store("ok")
	waitFor(t, "a back", func() bool { return len(lb.Healthy()) == 1 })
	mode.Store("refused")
	waitFor(t, "a to leave", func() bool { return len(lb.Healthy()) == 0 })
	time.Sleep(100 * time.Millisecond) // ~10 refused checks
	if !open() {
		t.Fatal("a backend that refuses new connections had its held connection cut")
	}

	mode.Store("ok")
	waitFor(t, "a back", func() bool { return len(lb.Healthy()) == 1 })
	mode.Store("hung")
	waitFor(t, "a to leave", func() bool { return len(lb.Healthy()) == 0 })
	held.SetDeadline(time.Now().Add(time.Second))
	if _, err := r.ReadString('\n'); err == nil {
		t.Fatal("the connection to a hung backend stayed open")
	}
}

// askFrom is ask from a given local address.
func askFrom(src, addr string) (string, error) {
	d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintln(c, "hi")
	return bufio.NewReader(c).ReadString('\n')
}

// TestAccess: SetAccess filters the public listeners by client address;
// a listener given to Serve (the private side) is not filtered.
func TestAccess(t *testing.T) {
	be := echoServer(t, "a")
	b := New(Config{Name: "t", Check: func(context.Context, string) error { return nil }, Log: slog.New(slog.DiscardHandler)})
	defer b.Close()
	if err := b.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if err := b.ListenKey("private", false, func() (int, error) { return ListenFD("127.0.0.1:0") }); err != nil {
		t.Fatal(err)
	}
	b.SetBackends([]string{be.Addr().String()})
	pub := publicAddr(t, b)
	private := b.Addrs()["private"][0]
	waitFor(t, "a healthy backend", func() bool { return len(b.Healthy()) == 1 })

	b.SetAccess(func(a netip.Addr) bool { return netip.MustParsePrefix("127.0.0.2/32").Contains(a) })
	if got, err := askFrom("127.0.0.2", pub); err != nil || got != "a\n" {
		t.Errorf("allowed source: %q %v", got, err)
	}
	if got, err := askFrom("127.0.0.3", pub); err == nil {
		t.Errorf("refused source got an answer: %q", got)
	}
	if got, err := askFrom("127.0.0.3", private); err != nil || got != "a\n" {
		t.Errorf("private listener from any source: %q %v", got, err)
	}
	b.SetAccess(nil)
	if got, err := askFrom("127.0.0.3", pub); err != nil || got != "a\n" {
		t.Errorf("after SetAccess(nil): %q %v", got, err)
	}
}

// TestPublicAccess: who may use the endpoint's host-facing address.
func TestPublicAccess(t *testing.T) {
	own := netip.MustParseAddr("127.1.7.1")
	a, b := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.1.2.3")
	all, ten := []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	tests := []struct {
		public     bool
		cidrs      []netip.Prefix
		a, b, self bool
	}{
		{true, all, true, true, true},
		{true, nil, true, true, true},
		{true, ten, false, true, true},
		{false, all, false, false, true},
	}
	for _, tt := range tests {
		f := PublicAccess(tt.public, tt.cidrs, own)
		if f(a) != tt.a || f(b) != tt.b || f(own) != tt.self {
			t.Errorf("%v %v: %v %v %v, want %v %v %v", tt.public, tt.cidrs, f(a), f(b), f(own), tt.a, tt.b, tt.self)
		}
	}
}

// TestWait: asleep (Sleep), a connection that finds no backend ready
// waits (Waiting, AwaitClient) and is served by the first one that comes
// up, with the bytes it sent meanwhile, which wakes the balancer; awake,
// it is closed at once, whatever Config.Wait. Clients counts connections
// other than the owner's.
func TestWait(t *testing.T) {
	// An address that refuses connections until the backend comes up.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	backend := ln.Addr().String()
	ln.Close()
	check := func(ctx context.Context, addr string) error {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
	own := netip.MustParseAddr("127.0.0.9")
	for _, asleep := range []bool{false, true} {
		t.Run(fmt.Sprint("asleep=", asleep), func(t *testing.T) {
			b := New(Config{Name: "t", Check: check, Interval: 50 * time.Millisecond, Wait: 10 * time.Second, Own: own, Log: slog.New(slog.DiscardHandler)})
			defer b.Close()
			if err := b.Listen("127.0.0.1:0"); err != nil {
				t.Fatal(err)
			}
			b.SetBackends([]string{backend})
			addr := publicAddr(t, b)
			if !asleep {
				if got, err := ask(addr); err == nil {
					t.Fatalf("no backend, awake: got %q", got)
				}
				if b.Waiting() != 0 {
					t.Fatalf("Waiting = %d", b.Waiting())
				}
				return
			}
			b.Sleep()
			awaited := make(chan bool, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			go func() { awaited <- b.AwaitClient(ctx) }()
			answer := make(chan string, 1)
			go func() {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					answer <- err.Error()
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(8 * time.Second))
				fmt.Fprintln(c, "hi") // sent before any backend is up
				got, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					got = err.Error()
				}
				answer <- got
			}()
			if !<-awaited {
				t.Fatal("AwaitClient did not report the waiting connection")
			}
			if n := b.Waiting(); n != 1 {
				t.Fatalf("Waiting = %d, want 1", n)
			}
			if open, _ := b.Clients(); open != 1 {
				t.Errorf("Clients while one waits: %d, want 1", open)
			}
			time.Sleep(300 * time.Millisecond)
			echoServerAt(t, backend, "up")
			if got := <-answer; got != "up\n" {
				t.Fatalf("the waiting connection got %q, want the backend's answer", got)
			}
			waitFor(t, "no connection waiting", func() bool { return b.Waiting() == 0 })
			if b.Asleep() {
				t.Error("still asleep with a backend in the pool")
			}
			// A client's open connection counts; the owner's does not.
			_, before := b.Clients()
			c1, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c1.Close()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: own.AsSlice()}}
			c2, err := d.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c2.Close()
			waitFor(t, "one client", func() bool { open, last := b.Clients(); return open == 1 && last.After(before) })
			short, stop := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer stop()
			if b.AwaitClient(short) {
				t.Error("AwaitClient with no connection waiting returned true")
			}
		})
	}
}

// TestIdleInterval: an idle balancer checks its backends every
// IdleInterval; one with a client connection open, every Interval.
func TestIdleInterval(t *testing.T) {
	be := echoServer(t, "a")
	var checks atomic.Int64
	var hung atomic.Bool
	check := func(ctx context.Context, addr string) error {
		checks.Add(1)
		if hung.Load() {
			return errors.New("no answer")
		}
		return nil
	}
	b := New(Config{Name: "t", Check: check, Interval: 20 * time.Millisecond, IdleInterval: 400 * time.Millisecond, IdleAfter: 100 * time.Millisecond, Log: slog.New(slog.DiscardHandler)})
	defer b.Close()
	if err := b.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	b.SetBackends([]string{be.Addr().String()})
	addr := publicAddr(t, b)
	waitFor(t, "the backend in the pool", func() bool { return checks.Load() > 0 })
	time.Sleep(500 * time.Millisecond) // IdleAfter the start; the last fast wait ends
	count := func() int64 {
		n := checks.Load()
		time.Sleep(time.Second)
		return checks.Load() - n
	}
	if n := count(); n > 5 {
		t.Errorf("idle: %d checks in 1s, want about 2.5 (every 400ms)", n)
	}
	// A client's connection stays open.
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintln(c, "hi")
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if got, err := bufio.NewReader(c).ReadString('\n'); err != nil || got != "a\n" {
		t.Fatalf("through the balancer: %q, %v", got, err)
	}
	time.Sleep(500 * time.Millisecond) // the slow wait ends
	if n := count(); n < 20 {
		t.Errorf("a client connected: %d checks in 1s, want about 50 (every 20ms)", n)
	}
	// Idle again, a backend that stops answering leaves after one slow
	// check and Fall-1 fast ones, not Fall slow ones.
	c.Close()
	time.Sleep(time.Second)
	if n := count(); n > 5 {
		t.Fatalf("idle again: %d checks in 1s", n)
	}
	hung.Store(true)
	if d := waitFor(t, "the hung backend to leave", func() bool { return len(b.Healthy()) == 0 }); d > 700*time.Millisecond {
		t.Errorf("a hung backend left the pool after %v, want within one idle interval and two fast ones (~440ms)", d)
	}
}

// TestWakeCheck: Config.WakeCheck lets a backend that Check calls not
// ready join only while the balancer is asleep, and keeps it for
// WakeGrace; a backend that passed Check since is held to Check alone.
func TestWakeCheck(t *testing.T) {
	var ready, early atomic.Bool
	check := func(ctx context.Context, addr string) error {
		if ready.Load() {
			return nil
		}
		return fmt.Errorf("%w: hooks pending", ErrNotReady)
	}
	wake := func(ctx context.Context, addr string) error {
		if early.Load() {
			return nil
		}
		return errors.New("not yet")
	}
	const grace = 400 * time.Millisecond
	b := New(Config{Name: "t", Check: check, WakeCheck: wake, WakeGrace: grace, Interval: 20 * time.Millisecond, Log: slog.New(slog.DiscardHandler)})
	defer b.Close()
	early.Store(true)
	b.SetBackends([]string{"192.0.2.1:443"})
	time.Sleep(200 * time.Millisecond)
	if h := b.Healthy(); len(h) != 0 {
		t.Fatalf("awake, a backend that is not ready joined on the wake check: %v", h)
	}

	early.Store(false)
	b.Sleep()
	time.Sleep(100 * time.Millisecond)
	if h := b.Healthy(); len(h) != 0 || !b.Asleep() {
		t.Fatalf("asleep, joined with both checks failing: %v", h)
	}
	early.Store(true)
	waitFor(t, "the backend to join on the wake check", func() bool { return len(b.Healthy()) == 1 })
	joined := time.Now()
	if b.Asleep() {
		t.Error("still asleep with a backend in the pool")
	}
	waitFor(t, "the backend to leave after the grace", func() bool { return len(b.Healthy()) == 0 })
	if held := time.Since(joined); held < grace-50*time.Millisecond {
		t.Errorf("left %v after joining early, want the grace (%v)", held, grace)
	}

	b.Sleep()
	waitFor(t, "the backend to join again", func() bool { return len(b.Healthy()) == 1 })
	rejoined := time.Now()
	ready.Store(true)
	time.Sleep(100 * time.Millisecond) // Check passes: the grace ends
	ready.Store(false)
	waitFor(t, "the backend to leave on Check", func() bool { return len(b.Healthy()) == 0 })
	if held := time.Since(rejoined); held >= grace {
		t.Errorf("a backend that had passed Check stayed %v on the wake check, want it gone at once", held)
	}
}

// TestAsleepInterval: asleep, a balancer whose backends are out of the
// pool checks them every IdleInterval, and every WakeInterval once a
// connection waits for one.
func TestAsleepInterval(t *testing.T) {
	var checks atomic.Int64
	check := func(ctx context.Context, addr string) error {
		checks.Add(1)
		return syscall.ECONNREFUSED
	}
	b := New(Config{Name: "t", Check: check, Interval: 100 * time.Millisecond, IdleInterval: 500 * time.Millisecond,
		WakeInterval: 10 * time.Millisecond, Wait: 10 * time.Second, Log: slog.New(slog.DiscardHandler)})
	defer b.Close()
	if err := b.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	b.Sleep()
	b.SetBackends([]string{"127.0.0.1:1"})
	count := func() int64 {
		n := checks.Load()
		time.Sleep(time.Second)
		return checks.Load() - n
	}
	time.Sleep(600 * time.Millisecond)
	if n := count(); n > 3 {
		t.Errorf("asleep, nobody waiting: %d checks in 1s, want about 2 (every 500ms)", n)
	}
	c, err := net.Dial("tcp", publicAddr(t, b))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitFor(t, "the connection to wait", func() bool { return b.Waiting() == 1 })
	time.Sleep(600 * time.Millisecond)
	if n := count(); n < 30 {
		t.Errorf("asleep, a connection waiting: %d checks in 1s, want about 100 (every 10ms)", n)
	}
}
