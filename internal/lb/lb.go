// Package lb is a TCP load balancer with active health checks: the one
// stable endpoint in front of a cluster's apiservers. TLS passes through, so
// clients see the apiservers' own serving certificate.
//
// A backend joins the pool after one passing check. It leaves the pool
//   - at once when it answers that it is not ready (ErrNotReady): it is
//     alive and serves or drains the connections it holds itself, so they
//     stay open;
//   - after Fall checks in a row without an answer (a hung or dead
//     backend), or at once when a dial to it fails: then its connections
//     are closed too, so that their clients reconnect at once. One slow
//     check alone (a busy machine) does not count: leaving would cut every
//     watch and request the backend was serving well.
//
// When no backend is healthy the balancer panics, as Envoy does: it tries
// every backend that accepts a connection. All apiservers of a cluster
// fail /readyz together while their etcd elects a leader; refusing every
// client then would turn a one-second blip into a storm of errors, while an
// apiserver holds the request until etcd answers.
//
// Listeners opened with Listen are the public side: SetAccess decides which
// client addresses may use them (EKS' endpointPublicAccess and
// publicAccessCidrs); listeners given to Serve (the endpoint inside a VPC)
// are not filtered.
package lb

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Check probes one backend address; nil means healthy.
type Check func(ctx context.Context, addr string) error

// Config of a Balancer.
type Config struct {
	Name     string // for logs
	Check    Check
	Interval time.Duration // between checks of one backend; default 200ms
	Timeout  time.Duration // of one check; default 500ms
	Fall     int           // checks in a row without an answer before a backend leaves; default 3
	Log      *slog.Logger
}

// ErrNotReady is what a Check wraps when the backend answered that it is
// not ready (an apiserver's /readyz with a status other than 200).
var ErrNotReady = errors.New("not ready")

// Balancer forwards connections from its listeners to healthy backends.
type Balancer struct {
	cfg Config

	mu        sync.Mutex
	backends  map[string]*backend
	listeners []net.Listener
	next      int
	closed    bool
	wg        sync.WaitGroup
	stopCheck context.CancelFunc
	access    atomic.Pointer[func(netip.Addr) bool] // of public listeners; nil: everyone
	active    atomic.Int64                          // connections being forwarded
}

// SetAccess decides which client addresses may use the public listeners
// (nil: every one). Connections it refuses are closed at once; open ones
// are not cut.
func (b *Balancer) SetAccess(allow func(netip.Addr) bool) {
	if allow == nil {
		b.access.Store(nil)
		return
	}
	b.access.Store(&allow)
}

// allowed applies SetAccess's decision to a connection of a public listener.
func (b *Balancer) allowed(c net.Conn) bool {
	f := b.access.Load()
	if f == nil {
		return true
	}
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	return err == nil && (*f)(ap.Addr().Unmap())
}

type backend struct {
	addr    string
	healthy bool
	misses  int // checks in a row without an answer
	conns   map[net.Conn]struct{}
	cancel  context.CancelFunc
}

// New returns a balancer with no listeners and no backends.
func New(cfg Config) *Balancer {
	if cfg.Interval == 0 {
		cfg.Interval = 200 * time.Millisecond
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 500 * time.Millisecond
	}
	if cfg.Fall == 0 {
		cfg.Fall = 3
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Balancer{cfg: cfg, backends: map[string]*backend{}}
}

// Listen opens a listener on addr and serves it. The address may be
// shared (SO_REUSEPORT) with other balancers of the same user: the kernel
// spreads new connections over them, and one that closes leaves the others
// every new connection.
func (b *Balancer) Listen(addr string) error {
	l, err := ListenShared(addr)
	if err != nil {
		return fmt.Errorf("load balancer %s: listen %s: %w", b.cfg.Name, addr, err)
	}
	b.serve(l, true)
	return nil
}

// Serve forwards connections accepted on l until Close. Listeners from
// elsewhere (e.g. opened inside a network namespace) are welcome; they
// are private: SetAccess does not apply.
func (b *Balancer) Serve(l net.Listener) { b.serve(l, false) }

func (b *Balancer) serve(l net.Listener, public bool) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		l.Close()
		return
	}
	b.listeners = append(b.listeners, l)
	b.wg.Add(1)
	b.mu.Unlock()
	go func() {
		defer b.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if public && !b.allowed(c) {
				c.Close()
				continue
			}
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				b.forward(c)
			}()
		}
	}()
}

// ListenShared opens a TCP listener on addr with SO_REUSEPORT, so that
// several processes (the replicas of one endpoint) can serve it.
func ListenShared(addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	return lc.Listen(context.Background(), "tcp", addr)
}

// PublicAccess is who may use an endpoint's public listeners, as EKS
// enforces endpointPublicAccess and publicAccessCidrs: nobody when public
// access is off, else the sources in cidrs (all of them when there are
// none). own (the control plane owner's clients) always may.
func PublicAccess(public bool, cidrs []netip.Prefix, own netip.Addr) func(netip.Addr) bool {
	return func(a netip.Addr) bool {
		if a == own {
			return true
		}
		if !public {
			return false
		}
		if len(cidrs) == 0 {
			return true
		}
		for _, p := range cidrs {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
}

// Drain stops accepting (closing the listeners, so that the replicas that
// share their addresses take every new connection), waits until the
// connections being forwarded end or ctx is done, then closes the rest.
func (b *Balancer) Drain(ctx context.Context) {
	b.mu.Lock()
	for _, l := range b.listeners {
		l.Close()
	}
	b.mu.Unlock()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for b.active.Load() > 0 {
		select {
		case <-ctx.Done():
			b.Close()
			return
		case <-t.C:
		}
	}
	b.Close()
}

// SetBackends replaces the backend set. New backends start unhealthy and
// join after their first passing check; kept backends keep their state.
func (b *Balancer) SetBackends(addrs []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	for addr, be := range b.backends {
		if !slices.Contains(addrs, addr) {
			be.cancel()
			b.closeConnsLocked(be)
			delete(b.backends, addr)
		}
	}
	for _, addr := range addrs {
		if _, ok := b.backends[addr]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		be := &backend{addr: addr, conns: map[net.Conn]struct{}{}, cancel: cancel}
		b.backends[addr] = be
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			b.checkLoop(ctx, be)
		}()
	}
}

// Healthy returns the addresses of the backends in the pool, sorted.
func (b *Balancer) Healthy() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for addr, be := range b.backends {
		if be.healthy {
			out = append(out, addr)
		}
	}
	slices.Sort(out)
	return out
}

// Close stops the listeners, the checks and every connection.
func (b *Balancer) Close() {
	b.mu.Lock()
	b.closed = true
	for _, l := range b.listeners {
		l.Close()
	}
	for _, be := range b.backends {
		be.cancel()
		b.closeConnsLocked(be)
	}
	b.mu.Unlock()
	b.wg.Wait()
}

func (b *Balancer) checkLoop(ctx context.Context, be *backend) {
	t := time.NewTicker(b.cfg.Interval)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
		err := b.cfg.Check(cctx, be.addr)
		cancel()
		if ctx.Err() != nil {
			return
		}
		b.setHealth(be, err)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// setHealth records the result of one check.
func (b *Balancer) setHealth(be *backend, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case err == nil:
		be.misses = 0
		if !be.healthy {
			be.healthy = true
			b.cfg.Log.Info("backend joined the pool", "lb", b.cfg.Name, "backend", be.addr)
		}
	case errors.Is(err, ErrNotReady):
		be.misses = 0
		b.leaveLocked(be, err, false)
	default:
		be.misses++
		if be.misses == b.cfg.Fall {
			b.leaveLocked(be, fmt.Errorf("%d checks in a row: %w", be.misses, err), true)
		}
	}
}

// leaveLocked takes be out of the pool; closing its connections when it
// is unreachable.
func (b *Balancer) leaveLocked(be *backend, reason error, unreachable bool) {
	if be.healthy {
		be.healthy = false
		b.cfg.Log.Info("backend left the pool", "lb", b.cfg.Name, "backend", be.addr, "reason", reason)
	}
	if unreachable {
		b.closeConnsLocked(be)
	}
}

func (b *Balancer) closeConnsLocked(be *backend) {
	for c := range be.conns {
		c.Close()
	}
}

// pick returns the healthy backends in round-robin order, or all of them
// when none is healthy (panic mode).
func (b *Balancer) pick() []*backend {
	b.mu.Lock()
	defer b.mu.Unlock()
	var pool []*backend
	for _, be := range b.backends {
		if be.healthy {
			pool = append(pool, be)
		}
	}
	if len(pool) == 0 {
		for _, be := range b.backends {
			pool = append(pool, be)
		}
	}
	slices.SortFunc(pool, func(x, y *backend) int {
		if x.addr < y.addr {
			return -1
		}
		return 1
	})
	if len(pool) == 0 {
		return nil
	}
	b.next++
	n := b.next % len(pool)
	return append(pool[n:], pool[:n]...)
}

func (b *Balancer) forward(client net.Conn) {
	b.active.Add(1)
	defer b.active.Add(-1)
	defer client.Close()
	for _, be := range b.pick() {
		server, err := net.DialTimeout("tcp", be.addr, time.Second)
		if err != nil {
			b.mu.Lock()
			b.leaveLocked(be, fmt.Errorf("dial: %w", err), true)
			b.mu.Unlock()
			continue
		}
		b.mu.Lock()
		panicking := !be.healthy
		b.mu.Unlock()
		if panicking { // untracked: no check will close it
			pipe(client, server)
			return
		}
		if !b.track(be, client, server) {
			server.Close()
			return
		}
		defer b.untrack(be, client, server)
		pipe(client, server)
		return
	}
}

func (b *Balancer) track(be *backend, conns ...net.Conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || !be.healthy {
		return false
	}
	for _, c := range conns {
		be.conns[c] = struct{}{}
	}
	return true
}

func (b *Balancer) untrack(be *backend, conns ...net.Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range conns {
		delete(be.conns, c)
	}
}

// pipe copies both ways until either side ends, then closes both.
func pipe(a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	// One direction ended; give the other a moment to drain, then close.
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
	a.Close()
	b.Close()
}

// HTTPSCheck returns a Check that GETs https://ADDR/path and wants a 200;
// another answer is ErrNotReady (alive, but send it nothing new).
func HTTPSCheck(tlsConfig *tls.Config, path string) Check {
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   tlsConfig,
		DisableKeepAlives: true,
	}}
	return func(ctx context.Context, addr string) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+path, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%w: GET %s: %s", ErrNotReady, path, resp.Status)
		}
		return nil
	}
}
