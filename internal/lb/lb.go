// Package lb is a TCP load balancer with active health checks: the one
// stable endpoint in front of a cluster's apiservers. TLS passes through, so
// clients see the apiservers' own serving certificate.
//
// A backend joins the pool after one passing check. It leaves the pool
//   - at once when it answers that it is not ready (ErrNotReady): it is
//     alive and serves or drains the connections it holds itself, so they
//     stay open;
//   - at once when it refuses connections (its listener is closed): an
//     apiserver past its shutdown delay still finishes the requests on
//     the connections it holds, and a dead process's connections end by
//     themselves (the kernel closes them), so they stay open too;
//   - after Fall checks in a row without an answer (a hung backend), or at
//     once when a dial to it fails otherwise: then its connections are
//     closed too, so that their clients reconnect at once. One slow check
//     alone (a busy machine) does not count: leaving would cut every watch
//     and request the backend was serving well.
//
// When no backend is healthy the balancer panics, as Envoy does (unless it
// was put to sleep: then connections wait for a ready one): it tries
// every backend that accepts a connection. All apiservers of a cluster
// fail /readyz together while their etcd elects a leader; refusing every
// client then would turn a one-second blip into a storm of errors, while an
// apiserver holds the request until etcd answers.
//
// Connections are relays (relay.go): their state is in the kernel, so that
// a sibling balancer joined with Pair (link.go) carries them on when this
// one ends, killed or stopped, and serves its listening sockets' queues.
//
// Public listeners (Listen, or ListenKey with public set) are filtered by
// SetAccess (EKS' endpointPublicAccess and publicAccessCidrs); the others
// (the endpoint inside a VPC) are not.
package lb

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
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
	// IdleInterval is the time between checks while the balancer is idle:
	// awake, every backend in the pool with its last check answered, and
	// no client connection open or waiting for IdleAfter (default 10s;
	// the balancer's start counts as a client's); and while it is asleep
	// with no backend in the pool and no connection waiting. An idle
	// control plane's apiservers then answer a fifth of the /readyz
	// checks (most of their idle CPU), and a client that comes finds the
	// pool at most this old. Default Interval.
	IdleInterval, IdleAfter time.Duration
	Timeout                 time.Duration // of one check; default 500ms
	Fall                    int           // checks in a row without an answer before a backend leaves; default 3
	// Grace is how long one direction of a connection may go on after the
	// other ended; default 5s.
	Grace time.Duration
	// Settle is how long Listen waits for a sibling's listening sockets
	// after Pair before it opens its own; default 1s.
	Settle time.Duration
	// Wait is how long a new connection waits, while the balancer is
	// asleep (Sleep: its backends are stopped on purpose, a control plane
	// hibernating), for a backend that is ready: its bytes wait in the
	// kernel meanwhile, and Waiting counts it. Awake, a connection that
	// no backend accepts is closed at once, as ever.
	Wait time.Duration
	// WakeCheck, when set, lets a backend that Check calls not ready
	// (ErrNotReady) join while the balancer is asleep, and stay for
	// WakeGrace after it joined so, if it passes: a waking control
	// plane's apiserver may take requests a second before its last
	// post-start hooks end. Check is tried first; once it passes, the
	// grace ends. WakeGrace's default is 5s.
	WakeCheck Check
	WakeGrace time.Duration
	// WakeInterval is the time between checks while a connection waits
	// for a backend (Wait); default Interval.
	WakeInterval time.Duration
	// Own is the control plane owner's source address: its connections
	// are not clients' (Clients).
	Own netip.Addr
	Log *slog.Logger
}

// ErrNotReady is what a Check wraps when the backend answered that it is
// not ready (an apiserver's /readyz with a status other than 200).
var ErrNotReady = errors.New("not ready")

// Balancer forwards connections from its listeners to healthy backends.
type Balancer struct {
	cfg Config

	mu        sync.Mutex
	backends  map[string]*backend
	listeners map[string][]*listener // by key
	retired   map[string]bool        // keys no longer served
	relays    map[uint64]*relay      // pumped here
	held      map[uint64]*relay      // the sibling's, held to carry on
	link      *link                  // to the sibling, when up
	pair      *pairing
	next      int
	closed    bool
	stopping  bool // handing over: no new relay is attached here

	accepts  sync.WaitGroup                        // accept loops
	carriers sync.WaitGroup                        // relays being carried
	wg       sync.WaitGroup                        // checks, the pairing
	access   atomic.Pointer[func(netip.Addr) bool] // of public listeners; nil: everyone
	gate     gate                                  // Hold

	asleep     bool          // Sleep: until a backend joins the pool
	waiting    int           // connections waiting for a backend (Config.Wait)
	waitSignal chan struct{} // closed when a connection starts waiting (AwaitClient)
	lastClient time.Time     // a client's connection last opened or ended here
}

type backend struct {
	addr    string
	healthy bool
	misses  int       // checks in a row without an answer
	wokeAt  time.Time // joined on Config.WakeCheck while asleep; zero once Check passed
	relays  map[*relay]struct{}
	cancel  context.CancelFunc
}

// New returns a balancer with no listeners and no backends.
func New(cfg Config) *Balancer {
	if cfg.Interval == 0 {
		cfg.Interval = 200 * time.Millisecond
	}
	if cfg.IdleInterval == 0 {
		cfg.IdleInterval = cfg.Interval
	}
	if cfg.IdleAfter == 0 {
		cfg.IdleAfter = 10 * time.Second
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 500 * time.Millisecond
	}
	if cfg.Fall == 0 {
		cfg.Fall = 3
	}
	if cfg.Grace == 0 {
		cfg.Grace = 5 * time.Second
	}
	if cfg.Settle == 0 {
		cfg.Settle = time.Second
	}
	if cfg.WakeInterval == 0 {
		cfg.WakeInterval = cfg.Interval
	}
	if cfg.WakeGrace == 0 {
		cfg.WakeGrace = 5 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Balancer{cfg: cfg, backends: map[string]*backend{}, listeners: map[string][]*listener{},
		retired: map[string]bool{}, relays: map[uint64]*relay{}, held: map[uint64]*relay{}, lastClient: time.Now()}
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

// allowed applies SetAccess's decision to a client of a public listener.
func (b *Balancer) allowed(a netip.Addr) bool {
	f := b.access.Load()
	return f == nil || (*f)(a.Unmap())
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

// Drain ends this balancer's part. With a sibling linked, it stops
// accepting, stops pumping and hands every connection over at once. Alone,
// it stops accepting and waits until the connections end or ctx is done,
// then closes the rest.
func (b *Balancer) Drain(ctx context.Context) {
	b.mu.Lock()
	b.stopping = true
	l, p := b.link, b.pair
	b.mu.Unlock()
	if p != nil {
		p.close() // no new link: the sibling carries on alone
	}
	b.stopAccepting()
	if l != nil {
		b.mu.Lock()
		rs := make([]*relay, 0, len(b.relays))
		for _, r := range b.relays {
			rs = append(rs, r)
		}
		b.mu.Unlock()
		for _, r := range rs {
			r.stop()
		}
		b.carriers.Wait()
		l.post(message{Op: opBye})
		l.flush(time.Second)
		b.cfg.Log.Info("connections handed over", "lb", b.cfg.Name, "relays", len(rs))
		b.Close()
		return
	}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for b.Active() > 0 {
		select {
		case <-ctx.Done():
			b.Close()
			return
		case <-t.C:
		}
	}
	b.Close()
}

// Active is the number of connections pumped here.
func (b *Balancer) Active() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.relays)
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
			b.killRelaysLocked(be)
			delete(b.backends, addr)
		}
	}
	for _, addr := range addrs {
		if _, ok := b.backends[addr]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		be := &backend{addr: addr, relays: map[*relay]struct{}{}, cancel: cancel}
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

// Close stops the listeners, the checks, the link and every connection
// pumped here; the sibling's copies are let go, not ended.
func (b *Balancer) Close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	b.stopAccepting()
	b.mu.Lock()
	for _, lns := range b.listeners {
		for _, ln := range lns {
			ln.f.Close()
		}
	}
	b.listeners = map[string][]*listener{}
	for _, be := range b.backends {
		be.cancel()
	}
	for _, r := range b.relays {
		r.kill()
	}
	for id, r := range b.held {
		r.release()
		delete(b.held, id)
	}
	l, p := b.link, b.pair
	b.mu.Unlock()
	if l != nil {
		l.close()
	}
	if p != nil {
		p.close()
	}
	b.carriers.Wait()
	b.wg.Wait()
}

func (b *Balancer) checkLoop(ctx context.Context, be *backend) {
	t := time.NewTimer(b.cfg.Interval)
	defer t.Stop()
	for {
		start := time.Now()
		cctx, cancel := context.WithTimeout(ctx, b.cfg.Timeout)
		err := b.cfg.Check(cctx, be.addr)
		early := false
		if errors.Is(err, ErrNotReady) && b.cfg.WakeCheck != nil && b.waking(be, time.Now()) {
			early = b.cfg.WakeCheck(cctx, be.addr) == nil
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		if early {
			err = nil
		}
		b.setHealth(be, err, early)
		t.Reset(max(0, b.every(time.Now())-time.Since(start)))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// every is the time from one check of a backend to the next:
// WakeInterval while a connection waits for a backend (a control plane
// wakes), IdleInterval while the balancer is idle or asleep with its
// backends out of the pool and nobody waiting (they are stopped on
// purpose: a thousand hibernating clusters must not dial theirs five
// times a second), Interval otherwise.
func (b *Balancer) every(now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	inPool := false
	for _, be := range b.backends {
		inPool = inPool || be.healthy
	}
	switch {
	case b.waiting > 0:
		return b.cfg.WakeInterval
	case b.asleep && !inPool, b.idleLocked(now):
		return b.cfg.IdleInterval
	}
	return b.cfg.Interval
}

// idleLocked says whether the balancer is idle (Config.IdleInterval).
func (b *Balancer) idleLocked(now time.Time) bool {
	if b.asleep || b.waiting > 0 || now.Sub(b.lastClient) < b.cfg.IdleAfter {
		return false
	}
	for _, r := range b.relays {
		if r.peer != b.cfg.Own {
			return false
		}
	}
	for _, be := range b.backends {
		if !be.healthy || be.misses > 0 { // a check went unanswered: look closely
			return false
		}
	}
	return true
}

// waking says whether be may join, or stay, on Config.WakeCheck.
func (b *Balancer) waking(be *backend, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.asleep || (!be.wokeAt.IsZero() && now.Sub(be.wokeAt) < b.cfg.WakeGrace)
}

// setHealth records the result of one check; early: it passed on
// Config.WakeCheck only.
func (b *Balancer) setHealth(be *backend, err error, early bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case err == nil:
		be.misses = 0
		if !early {
			be.wokeAt = time.Time{}
		}
		if !be.healthy {
			be.healthy = true
			if early {
				be.wokeAt = time.Now()
			}
			b.asleep = false // awake: a backend is ready
			b.cfg.Log.Info("backend joined the pool", "lb", b.cfg.Name, "backend", be.addr, "early", early)
		}
	case errors.Is(err, ErrNotReady), errors.Is(err, syscall.ECONNREFUSED):
		be.misses = 0
		b.leaveLocked(be, err, false)
	default:
		be.misses++
		if be.misses == b.cfg.Fall {
			b.leaveLocked(be, fmt.Errorf("%d checks in a row: %w", be.misses, err), true)
		}
	}
}

// leaveLocked takes be out of the pool; ending its connections when it is
// unreachable.
func (b *Balancer) leaveLocked(be *backend, reason error, unreachable bool) {
	if be.healthy {
		be.healthy = false
		b.cfg.Log.Info("backend left the pool", "lb", b.cfg.Name, "backend", be.addr, "reason", reason)
	}
	if unreachable {
		b.killRelaysLocked(be)
	}
}

func (b *Balancer) killRelaysLocked(be *backend) {
	for r := range be.relays {
		r.kill()
	}
}

// pick returns the healthy backends in round-robin order, or all of them
// when none is healthy (panic mode), and whether they are healthy.
func (b *Balancer) pick() ([]*backend, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var pool []*backend
	for _, be := range b.backends {
		if be.healthy {
			pool = append(pool, be)
		}
	}
	healthy := len(pool) > 0
	if !healthy {
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
		return nil, false
	}
	b.next++
	n := b.next % len(pool)
	return append(pool[n:], pool[:n]...), healthy
}

// start carries r here: a new connection, or one adopted from the sibling.
func (b *Balancer) start(r *relay) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		r.end()
		return
	}
	b.relays[r.id] = r
	if r.peer != b.cfg.Own {
		b.lastClient = time.Now()
	}
	b.mirrorLocked(r)
	b.carriers.Add(1)
	b.mu.Unlock()
	go func() {
		defer b.carriers.Done()
		b.carry(r)
	}()
}

// mirrorLocked gives the sibling a copy of r's descriptors.
func (b *Balancer) mirrorLocked(r *relay) {
	if b.link == nil {
		return
	}
	if err := b.link.postDup(message{Op: opRelay, ID: r.id, Addr: r.addr}, r.fds()...); err != nil {
		b.cfg.Log.Warn("copy of a connection for the sibling", "lb", b.cfg.Name, "err", err)
	}
}

// carry attaches r to a backend if it has none, pumps it until it ends
// (or is handed over), and forgets it.
func (b *Balancer) carry(r *relay) {
	ended := true
	defer func() {
		b.mu.Lock()
		delete(b.relays, r.id)
		if r.peer != b.cfg.Own {
			b.lastClient = time.Now()
		}
		if ended && b.link != nil {
			b.link.post(message{Op: opEnd, ID: r.id})
		}
		b.mu.Unlock()
		if ended {
			r.end()
		} else {
			r.release()
		}
	}()
	if !r.attached() && !b.connect(r) {
		ended = !r.isStopped()
		return
	}
	be := b.track(r)
	var err error
	ended, err = r.run(b.cfg.Grace, &b.gate)
	if r.adopted {
		b.cfg.Log.Debug("adopted connection ended", "lb", b.cfg.Name, "id", r.id, "err", err)
	}
	if be != nil {
		b.mu.Lock()
		delete(be.relays, r)
		b.mu.Unlock()
	}
}

// connect dials a backend for r, trying the pool in turn.
func (b *Balancer) connect(r *relay) bool {
	deadline := time.Now().Add(b.cfg.Wait)
	waiting := false
	defer func() {
		if waiting {
			b.mu.Lock()
			b.waiting--
			b.mu.Unlock()
		}
	}()
	for {
		pool, healthy := b.pick()
		b.mu.Lock()
		asleep := b.asleep
		b.mu.Unlock()
		if asleep && !healthy {
			// Asleep, a connection waits for a backend that is ready rather
			// than try one that only accepts: an apiserver starting would
			// fail it before it is ready.
			pool = nil
		}
		for _, be := range pool {
			fd, err := dial(be.addr)
			if err != nil {
				b.mu.Lock()
				b.leaveLocked(be, fmt.Errorf("dial: %w", err), !errors.Is(err, syscall.ECONNREFUSED))
				b.mu.Unlock()
				continue
			}
			b.mu.Lock()
			if b.stopping || r.isStopped() { // the sibling dials for it
				b.mu.Unlock()
				unix.Close(fd)
				return false
			}
			if err := r.attach(be.addr, fd); err != nil {
				b.mu.Unlock()
				unix.Close(fd)
				b.cfg.Log.Warn("connection", "lb", b.cfg.Name, "err", err)
				return false
			}
			b.mirrorLocked(r)
			b.mu.Unlock()
			return true
		}
		// Asleep: wait for a backend, as long as Config.Wait allows.
		b.mu.Lock()
		stop := !asleep || b.stopping || b.closed || time.Now().After(deadline)
		if !stop && !waiting {
			waiting = true
			b.waiting++
			if b.waitSignal != nil {
				close(b.waitSignal)
				b.waitSignal = nil
			}
		}
		b.mu.Unlock()
		if stop {
			return false
		}
		select {
		case <-r.quit:
			return false
		case <-time.After(waitRetry):
		}
	}
}

// waitRetry is how often a waiting connection tries the backends again.
const waitRetry = 50 * time.Millisecond

// Sleep puts the balancer asleep until a backend joins the pool again:
// its backends are being stopped on purpose, and a new connection that
// finds none ready waits for one (Config.Wait) instead of being closed,
// while AwaitClient tells whoever can start them.
func (b *Balancer) Sleep() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.asleep = true
}

// Asleep reports whether the balancer is asleep (Sleep).
func (b *Balancer) Asleep() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.asleep
}

// Waiting is how many connections wait for a backend (Config.Wait).
func (b *Balancer) Waiting() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.waiting
}

// AwaitClient returns true as soon as a connection waits for a backend
// (at once if one does), false when ctx ends first: what wakes a
// hibernating control plane.
func (b *Balancer) AwaitClient(ctx context.Context) bool {
	b.mu.Lock()
	if b.waiting > 0 {
		b.mu.Unlock()
		return true
	}
	if b.waitSignal == nil {
		b.waitSignal = make(chan struct{})
	}
	ch := b.waitSignal
	b.mu.Unlock()
	select {
	case <-ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// Clients are the connections forwarded here that are not the owner's
// (Config.Own), and when a client's connection last opened or ended here.
func (b *Balancer) Clients() (open int, last time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range b.relays {
		if r.peer != b.cfg.Own {
			open++
		}
	}
	return open, b.lastClient
}

// track counts r among its backend's connections (which end with it when
// it becomes unreachable); nil when the backend is not in the pool (panic
// mode, or gone).
func (b *Balancer) track(r *relay) *backend {
	b.mu.Lock()
	defer b.mu.Unlock()
	be := b.backends[r.addr]
	if be == nil || !be.healthy {
		return nil
	}
	be.relays[r] = struct{}{}
	return be
}

// dial connects to addr and returns the socket's descriptor (non-blocking).
func dial(addr string) (int, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return -1, err
	}
	defer c.Close()
	return dupConn(c.(*net.TCPConn))
}

// dupConn returns a copy of c's descriptor.
func dupConn(c syscall.Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	return fd, derr
}

// newID names a relay (unique across siblings).
func newID() uint64 { return rand.Uint64() }

// HTTPSCheck returns a Check that GETs https://ADDR/path and wants a 200;
// another answer is ErrNotReady (alive, but send it nothing new).
//
// The checks of a backend share one kept-alive connection: a TLS handshake
// per check (five a second per backend and balancer) was most of an idle
// endpoint's CPU and a share of its apiservers'. A backend that dies or
// closes its listener ends that connection; the next check dials anew and
// sees the refusal, as before.
func HTTPSCheck(tlsConfig *tls.Config, path string) Check {
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig:     tlsConfig,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     30 * time.Second,
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
