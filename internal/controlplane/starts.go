package controlplane

import (
	"runtime"
	"strings"
	"sync"
	"time"
)

// starts admits the starts of apiservers, the heavy instances, across
// clusters, a few at a time, so that each finishes its start on a busy
// machine: after a host reboot every cluster starts at once, and ten
// apiservers sharing two cores would each take minutes (and be replaced
// for it). A cluster with no apiserver serving goes first, one apiserver
// at a time: one serving apiserver makes a cluster usable.
type starts struct {
	mu      sync.Mutex
	limit   int
	running map[string]start // admitted and not yet healthy, by instance ID
	waiting map[string]start // first apiservers refused lately, by instance ID
}

type start struct {
	cluster string
	at      time.Time
}

// waitMemory is how long a refused first apiserver keeps the others back.
const waitMemory = 5 * time.Second

func newStarts() *starts {
	return &starts{limit: max(2, runtime.NumCPU()), running: map[string]start{}, waiting: map[string]start{}}
}

// admit says whether instance id (of cluster) may start now; first is true
// for an apiserver of a cluster that none serves yet.
func (s *starts) admit(cluster, id string, first bool, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range s.running {
		if now.Sub(v.at) > startupGrace {
			delete(s.running, k)
		}
	}
	for k, v := range s.waiting {
		if now.Sub(v.at) > waitMemory {
			delete(s.waiting, k)
		}
	}
	if _, ok := s.running[id]; ok {
		s.running[id] = start{cluster, now} // started again
		return true
	}
	// A cluster none serves starts one apiserver at a time: alone, the
	// first serves sooner (two starting at once share the cores, and each
	// takes about twice as long); the others follow once it serves.
	for _, v := range s.running {
		if first && v.cluster == cluster {
			return false
		}
	}
	if len(s.running) >= s.limit {
		if first {
			s.waiting[id] = start{cluster, now}
		}
		return false
	}
	if !first && len(s.waiting) > 0 {
		return false
	}
	delete(s.waiting, id)
	s.running[id] = start{cluster, now}
	return true
}

// done forgets instance id (healthy, or gone).
func (s *starts) done(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.running, id)
	delete(s.waiting, id)
}

// forget drops every instance of cluster.
func (s *starts) forget(cluster string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.running {
		if strings.HasPrefix(k, cluster+"/") {
			delete(s.running, k)
		}
	}
	for k := range s.waiting {
		if strings.HasPrefix(k, cluster+"/") {
			delete(s.waiting, k)
		}
	}
}
