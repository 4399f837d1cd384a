package lb

import (
	"errors"
	"sync"
	"time"
)

// MaxHold bounds one Hold: a caller that dies while it holds the endpoint
// must not freeze it.
const MaxHold = 2 * time.Second

// A gate holds the bytes clients send on their way to the backends while
// it is closed (Balancer.Hold). Bytes from the backends keep flowing, so
// watches and answers to requests sent before go on.
type gate struct {
	mu    sync.Mutex
	open  chan struct{} // closed when the gate opens; nil while open
	timer *time.Timer
}

// hold closes the gate for d at most (MaxHold at most); holding again
// while held sets the new end.
func (g *gate) hold(d time.Duration) {
	d = min(d, MaxHold)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.open == nil {
		g.open = make(chan struct{})
	}
	if g.timer != nil {
		g.timer.Stop()
	}
	g.timer = time.AfterFunc(d, g.release)
}

// release opens the gate.
func (g *gate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.timer != nil {
		g.timer.Stop()
		g.timer = nil
	}
	if g.open != nil {
		close(g.open)
		g.open = nil
	}
}

// held reports whether the gate is closed.
func (g *gate) held() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.open != nil
}

// errStopped ends a pump that waited at the gate when its relay was
// stopped (handed over) or killed.
var errStopped = errors.New("relay stopped")

// wait returns once the gate is open, or errStopped when quit closes
// first.
func (g *gate) wait(quit <-chan struct{}) error {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	if open == nil {
		return nil
	}
	select {
	case <-open:
		return nil
	case <-quit:
		return errStopped
	}
}

// Hold keeps what clients send from reaching any backend for d (MaxHold at
// most) or until Release: new connections are accepted and their bytes
// wait in the kernel, and nothing from the backends is held. A control
// plane uses it for the moment its etcd's leadership moves, when a write
// that reached etcd would be dropped.
func (b *Balancer) Hold(d time.Duration) { b.gate.hold(d) }

// Release ends a Hold.
func (b *Balancer) Release() { b.gate.release() }

// Holding reports whether a Hold is on.
func (b *Balancer) Holding() bool { return b.gate.held() }
