package runtime

import (
	"testing"
	"time"
)

// TestBackoff: the first restart goes at once; each next one waits twice
// as long, up to Max; Reset starts over.
func TestBackoff(t *testing.T) {
	var b Backoff
	now := time.Unix(0, 0)
	wants := []time.Duration{0, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second,
		16 * time.Second, 30 * time.Second, 30 * time.Second}
	for i, want := range wants {
		if got := b.Wait("a", now); got != want {
			t.Errorf("restart %d: wait %v, want %v", i, got, want)
		}
		if want > 0 && b.Ready("a", now.Add(want-time.Millisecond)) {
			t.Errorf("restart %d: ready %v early", i, time.Millisecond)
		}
		now = now.Add(want)
		if !b.Ready("a", now) {
			t.Fatalf("restart %d: not ready after %v", i, want)
		}
	}
	if !b.Ready("b", now) {
		t.Error("another instance waits for a's backoff")
	}
	b.Reset("a")
	if !b.Ready("a", now) {
		t.Error("not ready after Reset")
	}
}
