package lb

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// pairing keeps the balancer linked with its sibling.
type pairing struct {
	ln       *net.UnixListener
	settled  chan struct{}
	once     sync.Once
	mu       sync.Mutex
	closed   bool
	stopDial chan struct{}
}

func (p *pairing) settle() { p.once.Do(func() { close(p.settled) }) }

func (p *pairing) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	p.ln.Close()
	close(p.stopDial)
}

func (p *pairing) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// Pair links the balancer with its sibling (link.go): it listens for it on
// the unix socket self and reaches it at peer; of the two, the one whose
// path sorts first dials. It returns once listening; the link is made, and
// made again whenever it breaks, until Close. Call it before Listen.
func (b *Balancer) Pair(self, peer string) error {
	if err := os.MkdirAll(filepath.Dir(self), 0o700); err != nil {
		return err
	}
	os.Remove(self) // a predecessor's
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: self, Net: "unixpacket"})
	if err != nil {
		return err
	}
	p := &pairing{ln: ln, settled: make(chan struct{}), stopDial: make(chan struct{})}
	b.mu.Lock()
	b.pair = p
	b.mu.Unlock()
	time.AfterFunc(b.cfg.Settle, p.settle)
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for !p.isClosed() {
			c, err := b.meet(p, self < peer, peer)
			if err != nil {
				continue
			}
			l, err := newLink(c)
			if err != nil {
				b.cfg.Log.Warn("link to the sibling refused", "lb", b.cfg.Name, "err", err)
				c.Close()
				continue
			}
			b.serveLink(p, l)
		}
	}()
	return nil
}

// meet returns the next connection with the sibling: dialled, or accepted.
func (b *Balancer) meet(p *pairing, dialer bool, peer string) (*net.UnixConn, error) {
	if !dialer {
		return p.ln.AcceptUnix()
	}
	for {
		c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: peer, Net: "unixpacket"})
		if err == nil {
			return c, nil
		}
		select {
		case <-p.stopDial:
			return nil, errors.New("closed")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Linked reports whether the link with the sibling is up: whether the
// sibling would carry this balancer's connections on.
func (b *Balancer) Linked() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.link != nil
}

// Held is the number of the sibling's connections held here.
func (b *Balancer) Held() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.held)
}

func (b *Balancer) waitSettled() {
	b.mu.Lock()
	p := b.pair
	b.mu.Unlock()
	if p != nil {
		<-p.settled
	}
}

// serveLink runs one link: it gives the sibling its snapshot, takes the
// sibling's copies, and when the link ends adopts them if the sibling is
// gone.
func (b *Balancer) serveLink(p *pairing, l *link) {
	b.mu.Lock()
	if b.closed || b.stopping {
		b.mu.Unlock()
		l.close()
		return
	}
	b.link = l
	for key, lns := range b.listeners {
		for _, ln := range lns {
			l.postDup(message{Op: opListener, Key: key, Public: ln.public}, ln.fd)
		}
	}
	for _, r := range b.relays {
		b.mirrorLocked(r)
	}
	l.post(message{Op: opReady})
	b.mu.Unlock()
	b.cfg.Log.Info("linked with the sibling", "lb", b.cfg.Name)

	bye := false
	for !bye {
		m, err := l.receive()
		if err != nil {
			break
		}
		bye = b.take(p, m)
	}
	b.mu.Lock()
	if b.link == l {
		b.link = nil
	}
	closing := b.closed || b.stopping // it handed over itself
	b.mu.Unlock()
	l.close()
	defer closeAll([]int{l.pidfd})
	switch {
	case closing:
	case bye || l.peerGone(10*time.Second):
		b.adopt()
	default:
		b.cfg.Log.Error("link to the sibling broke while it lives; dropping its copies", "lb", b.cfg.Name)
		b.dropHeld()
	}
}

// take handles one message from the sibling; true for its bye.
func (b *Balancer) take(p *pairing, m message) bool {
	switch m.Op {
	case opListener:
		if len(m.fds) == 1 {
			b.addListener(m.Key, m.Public, m.fds[0], false)
			return false
		}
	case opReady:
		p.settle()
	case opRelay:
		if len(m.fds) == 1 || len(m.fds) == 6 {
			r := adoptRelay(m.ID, m.Addr, m.fds)
			b.mu.Lock()
			old := b.held[m.ID]
			b.held[m.ID] = r
			b.mu.Unlock()
			if old != nil {
				old.release()
			}
			return false
		}
	case opEnd:
		b.mu.Lock()
		r := b.held[m.ID]
		delete(b.held, m.ID)
		b.mu.Unlock()
		if r != nil {
			r.release()
		}
	case opBye:
		return true
	}
	closeAll(m.fds)
	return false
}

// adopt carries on every relay held for the sibling.
func (b *Balancer) adopt() {
	b.mu.Lock()
	rs := make([]*relay, 0, len(b.held))
	for id, r := range b.held {
		rs = append(rs, r)
		delete(b.held, id)
	}
	b.mu.Unlock()
	if len(rs) > 0 {
		b.cfg.Log.Info("carrying on the sibling's connections", "lb", b.cfg.Name, "relays", len(rs))
	}
	for _, r := range rs {
		b.start(r)
	}
}

func (b *Balancer) dropHeld() {
	b.mu.Lock()
	rs := b.held
	b.held = map[uint64]*relay{}
	b.mu.Unlock()
	for _, r := range rs {
		r.release()
	}
}
