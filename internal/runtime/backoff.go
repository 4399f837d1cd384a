package runtime

import (
	"sync"
	"time"
)

// Backoff spaces the restarts of instances that keep exiting, for every
// reconciler that restarts instances (control planes' and nodes'): the
// first restart goes at once, the next after Base, then twice as long each
// time, at most Max, until Reset (the instance proved healthy, or ran long
// enough). The zero value uses 500 ms and 30 s.
type Backoff struct {
	Base, Max time.Duration

	mu sync.Mutex
	m  map[string]*backoffState // by instance ID
}

type backoffState struct {
	n    int       // restarts in a row
	next time.Time // no restart before
}

// Ready says whether instance id, found exited, may be restarted now; when
// it says so, it counts the restart.
func (b *Backoff) Ready(id string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil {
		b.m = map[string]*backoffState{}
	}
	s := b.m[id]
	if s == nil {
		s = &backoffState{}
		b.m[id] = s
	}
	if now.Before(s.next) {
		return false
	}
	base, maxWait := b.Base, b.Max
	if base == 0 {
		base = 500 * time.Millisecond
	}
	if maxWait == 0 {
		maxWait = 30 * time.Second
	}
	s.next = now.Add(min(base<<min(s.n, 16), maxWait))
	s.n++
	return true
}

// Wait is how long instance id's next restart waits from now (0: none).
func (b *Backoff) Wait(id string, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s := b.m[id]; s != nil && now.Before(s.next) {
		return s.next.Sub(now)
	}
	return 0
}

// Reset forgets instance id's restarts.
func (b *Backoff) Reset(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.m, id)
}
