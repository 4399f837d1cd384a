package lb

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	if os.Getenv("LB_TEST_CHILD") != "" {
		child()
		return
	}
	os.Exit(m.Run())
}

// child is one replica of TestHandover: a balancer paired with its
// sibling, until SIGTERM (drain) or SIGKILL.
func child() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	check := func(ctx context.Context, addr string) error {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
	b := New(Config{Name: os.Getenv("LB_NAME"), Check: check, Interval: 50 * time.Millisecond, Log: log})
	b.SetBackends([]string{os.Getenv("LB_BACKEND")})
	if err := b.Pair(os.Getenv("LB_SELF"), os.Getenv("LB_PEER")); err != nil {
		log.Error("pair", "err", err)
		os.Exit(1)
	}
	if err := b.Listen(os.Getenv("LB_LISTEN")); err != nil {
		log.Error("listen", "err", err)
		os.Exit(1)
	}
	log.Info("serving")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	b.Drain(ctx)
	log.Info("drained")
}

// replica is a child process and what it logged.
type replica struct {
	cmd *exec.Cmd
	mu  sync.Mutex
	log strings.Builder
}

func startReplica(t *testing.T, name, self, peer, listen, backend string) *replica {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "LB_TEST_CHILD=1", "LB_NAME="+name, "LB_SELF="+self, "LB_PEER="+peer,
		"LB_LISTEN="+listen, "LB_BACKEND="+backend)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &replica{cmd: cmd}
	go func() {
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			r.mu.Lock()
			r.log.WriteString(s.Text() + "\n")
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s logged:\n%s", name, r.logged())
		}
	})
	return r
}

func (r *replica) logged() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.log.String()
}

func (r *replica) waitLog(t *testing.T, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(r.logged(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log:\n%s", s, r.logged())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// echoBytes echoes every byte back.
func echoBytes(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
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
				first, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if first == "stream\n" { // numbered lines, until the client goes
					for i := 0; ; i++ {
						if _, err := fmt.Fprintf(c, "%d\n", i); err != nil {
							return
						}
						time.Sleep(time.Millisecond)
					}
				}
				c.Write([]byte(first))
				io.Copy(c, r)
			}()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return l
}

// talker keeps a connection busy with numbered lines and checks each echo.
type talker struct {
	sent, failed chan int
	mu           sync.Mutex
	count        int
	err          error
}

func talk(addr string, stop <-chan struct{}) *talker {
	tk := &talker{}
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		tk.err = err
		return tk
	}
	go func() {
		defer c.Close()
		r := bufio.NewReader(c)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			line := fmt.Sprintf("%d %s\n", i, strings.Repeat("x", i%3000))
			c.SetDeadline(time.Now().Add(5 * time.Second))
			_, err := io.WriteString(c, line)
			var got string
			if err == nil {
				got, err = r.ReadString('\n')
			}
			if err == nil && got != line {
				err = fmt.Errorf("line %d came back as %.40q", i, got)
			}
			tk.mu.Lock()
			tk.count++
			tk.err = err
			tk.mu.Unlock()
			if err != nil {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return tk
}

// listen reads a stream of numbered lines and checks none is lost.
func listenTo(addr string, stop <-chan struct{}) *talker {
	tk := &talker{}
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		tk.err = err
		return tk
	}
	fmt.Fprintln(c, "stream")
	go func() {
		defer c.Close()
		r := bufio.NewReader(c)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := r.ReadString('\n')
			if err == nil && got != fmt.Sprintf("%d\n", i) {
				err = fmt.Errorf("line %d came as %q", i, got)
			}
			tk.mu.Lock()
			tk.count++
			tk.err = err
			tk.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return tk
}

func (tk *talker) state() (int, error) {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	return tk.count, tk.err
}

// TestHandover: two replicas share an address and each other's
// connections. A SIGKILL of one, then a SIGTERM of the other, break no
// connection and lose or reorder no byte; connections made meanwhile are
// served.
func TestHandover(t *testing.T) {
	be := echoBytes(t)
	listen, sa, sb := places(t)

	a := startReplica(t, "a", sa, sb, listen, be.Addr().String())
	b := startReplica(t, "b", sb, sa, listen, be.Addr().String())
	a.waitLog(t, "linked with the sibling")
	a.waitLog(t, "serving") // it listens after it links
	b.waitLog(t, "linked with the sibling")
	b.waitLog(t, "serving") // it listens after it links
	a.waitLog(t, "backend joined")
	b.waitLog(t, "backend joined")

	stop := make(chan struct{})
	defer close(stop)
	var talkers []*talker
	for range 16 {
		talkers = append(talkers, talk(listen, stop), listenTo(listen, stop))
	}
	t0 := time.Now()
	progress := func(what string) {
		t.Logf("%v: %s", time.Since(t0).Round(time.Millisecond), what)
		t.Helper()
		before := make([]int, len(talkers))
		for i, tk := range talkers {
			before[i], _ = tk.state()
		}
		time.Sleep(700 * time.Millisecond)
		for i, tk := range talkers {
			n, err := tk.state()
			if err != nil {
				t.Fatalf("%s: connection %d failed after %d lines: %v", what, i, n, err)
			}
			if n <= before[i] {
				t.Fatalf("%s: connection %d stalled at %d lines", what, i, n)
			}
		}
		if got, err := askBytes(listen); err != nil {
			t.Fatalf("%s: a new connection: %q %v", what, got, err)
		}
	}
	progress("both replicas")

	a.cmd.Process.Kill() // SIGKILL: no chance to hand anything over
	a.cmd.Wait()
	b.waitLog(t, "carrying on the sibling's connections")
	progress("after a's SIGKILL")

	a2 := startReplica(t, "a2", sa, sb, listen, be.Addr().String())
	a2.waitLog(t, "linked with the sibling")
	a2.waitLog(t, "serving") // it listens after it links
	a2.waitLog(t, "backend joined")
	progress("with a's replacement")

	// b's connections reached a2 in the snapshot it got on linking.
	b.cmd.Process.Kill()
	b.cmd.Wait()
	a2.waitLog(t, "carrying on the sibling's connections")
	progress("after b's SIGKILL")

	b2 := startReplica(t, "b2", sb, sa, listen, be.Addr().String())
	b2.waitLog(t, "linked with the sibling")
	b2.waitLog(t, "serving") // it listens after it links
	b2.waitLog(t, "backend joined")
	progress("with b's replacement")

	a2.cmd.Process.Signal(syscall.SIGTERM)
	a2.waitLog(t, "connections handed over")
	a2.cmd.Wait()
	b2.waitLog(t, "carrying on the sibling's connections")
	progress("after a2's SIGTERM")
	if os.Getenv("LB_SHOW") != "" {
		t.Logf("b:\n%s\na2:\n%s\nb2:\n%s", b.logged(), a2.logged(), b2.logged())
	}
}

// places are a free TCP address for two replicas and their link sockets.
func places(t *testing.T) (listen, sa, sb string) {
	t.Helper()
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen = probe.Addr().String()
	probe.Close()
	dir, err := os.MkdirTemp("/tmp", "lbt") // a unix socket's path is short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return listen, filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
}

// askBytes sends a line through addr and reads the echo.
func askBytes(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintln(c, "hello")
	return bufio.NewReader(c).ReadString('\n')
}

// TestHandoverHTTP2: one HTTP/2 connection over TLS carries a long
// response stream (as a watch does) and requests; a SIGKILL of the replica
// carrying it ends neither.
func TestHandoverHTTP2(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			for i := 0; r.Context().Err() == nil; i++ {
				fmt.Fprintf(w, "%d %s\n", i, strings.Repeat("y", i%5000))
				w.(http.Flusher).Flush()
				time.Sleep(2 * time.Millisecond)
			}
			return
		}
		io.Copy(w, r.Body)
	}))
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the checks' bare dials
	srv.StartTLS()
	defer srv.Close()
	listen, sa, sb := places(t)
	backend := srv.Listener.Addr().String()
	a := startReplica(t, "a", sa, sb, listen, backend)
	b := startReplica(t, "b", sb, sa, listen, backend)
	for _, r := range []*replica{a, b} {
		r.waitLog(t, "linked with the sibling")
		r.waitLog(t, "serving") // it listens after it links
		r.waitLog(t, "backend joined")
	}
	client := srv.Client()
	tr := client.Transport.(*http.Transport)
	tr.ForceAttemptHTTP2 = true
	tr.TLSClientConfig.NextProtos = []string{"h2"}
	url := "https://" + listen
	resp, err := client.Get(url + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("protocol %s", resp.Proto)
	}
	var mu sync.Mutex
	lines, streamErr := 0, error(nil)
	go func() {
		r := bufio.NewReader(resp.Body)
		for i := 0; ; i++ {
			got, err := r.ReadString('\n')
			if err == nil && got != fmt.Sprintf("%d %s\n", i, strings.Repeat("y", i%5000)) {
				err = fmt.Errorf("line %d came as %.40q", i, got)
			}
			mu.Lock()
			lines, streamErr = i, err
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	check := func(what string) {
		t.Helper()
		mu.Lock()
		before := lines
		mu.Unlock()
		for i := range 20 {
			body := strings.Repeat("z", 1000*i)
			r, err := client.Post(url+"/echo", "text/plain", strings.NewReader(body))
			if err != nil {
				t.Fatalf("%s: request %d: %v", what, i, err)
			}
			got, _ := io.ReadAll(r.Body)
			r.Body.Close()
			if string(got) != body {
				t.Fatalf("%s: request %d: %d bytes back, want %d", what, i, len(got), len(body))
			}
		}
		time.Sleep(300 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		if streamErr != nil || lines <= before {
			t.Fatalf("%s: stream at line %d (was %d): %v", what, lines, before, streamErr)
		}
	}
	check("both replicas")
	for _, r := range []*replica{a, b} { // one of them carries the connection
		r.cmd.Process.Kill()
		r.cmd.Wait()
		check("after a SIGKILL")
		if r == a {
			a2 := startReplica(t, "a2", sa, sb, listen, backend)
			a2.waitLog(t, "linked with the sibling")
			a2.waitLog(t, "serving") // it listens after it links
			a2.waitLog(t, "backend joined")
			check("with a's replacement")
		}
	}
}
