package controlplane

import (
	"testing"
	"time"
)

// TestStarts: apiservers start a few at a time across clusters; the
// first of a cluster with none serving goes before any second one and
// starts alone, and a slot frees when one is healthy or after the startup
// grace.
func TestStarts(t *testing.T) {
	now := time.Unix(1000, 0)
	s := &starts{limit: 2, running: map[string]start{}, waiting: map[string]start{}}
	steps := []struct {
		cluster, id string
		first       bool
		want        bool
		healthy     string // marked healthy before the step
		after       time.Duration
	}{
		{"a", "a/apiserver-0", true, true, "", 0},
		{"a", "a/apiserver-1", true, false, "", 0}, // a's first starts alone
		{"b", "b/apiserver-0", true, true, "", 0},
		{"c", "c/apiserver-0", true, false, "", 0},               // full: c waits
		{"e", "e/apiserver-1", false, false, "a/apiserver-0", 0}, // a slot frees, but the waiting first goes before e's second
		{"c", "c/apiserver-0", true, true, "", 0},
		{"a", "a/apiserver-1", false, false, "", 0},                        // full
		{"b", "b/apiserver-0", true, true, "", 0},                          // one admitted before starts again
		{"d", "d/apiserver-0", true, true, "", startupGrace + time.Second}, // the others' grace is over
		{"e", "e/apiserver-1", false, true, "", 0},                         // nobody waits
		{"f", "f/apiserver-0", true, false, "", 0},
		{"e", "e/apiserver-0", false, false, "e/apiserver-1", waitMemory - time.Second}, // f still waits
		{"e", "e/apiserver-0", false, true, "d/apiserver-0", 2 * time.Second},           // f stopped asking: its wait is forgotten
	}
	for i, st := range steps {
		now = now.Add(st.after)
		if st.healthy != "" {
			s.done(st.healthy)
		}
		if got := s.admit(st.cluster, st.id, st.first, now); got != st.want {
			t.Errorf("step %d: admit(%s) = %v, want %v (running %v, waiting %v)", i, st.id, got, st.want, s.running, s.waiting)
		}
	}
	s.forget("a")
	for id := range s.running {
		if id[0] == 'a' {
			t.Errorf("%s still running after forget", id)
		}
	}
}
