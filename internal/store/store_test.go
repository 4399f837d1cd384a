package store

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"skiff.dev/skiff/internal/model"
)

func TestClusters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "skiff.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	c := &model.Cluster{Name: "prod", ID: "prod-1", Version: "1.37", Status: model.StatusCreating}
	if err := s.CreateCluster(c, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateCluster(c, nil); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate create: %v", err)
	}
	c2 := &model.Cluster{Name: "dev", Account: "other", ID: "dev-1"}
	if err := s.CreateCluster(c2, func(slot int) bool { return slot != 2 }); err != nil || c.Slot != 1 || c2.Slot != 3 {
		t.Fatalf("slots %d, %d, %v", c.Slot, c2.Slot, err)
	}
	// Issue 15: another account's cluster of the same name never gets
	// an ID in use (IDs name data dirs).
	if err := s.CreateCluster(&model.Cluster{Name: "prod", Account: "other", ID: "prod-1"}, nil); !errors.Is(err, ErrIDTaken) {
		t.Fatalf("same ID, other account: %v", err)
	}
	// The per-account quota: "other" holds one cluster.
	if err := s.CreateClusterQuota(&model.Cluster{Name: "qa", Account: "other", ID: "qa-1"}, nil, 1); !errors.Is(err, ErrQuota) {
		t.Fatalf("over quota: %v", err)
	}
	if err := s.CreateClusterQuota(&model.Cluster{Name: "qa", Account: "third", ID: "qa-2"}, nil, 1); err != nil {
		t.Fatalf("another account under quota: %v", err)
	}
	if _, err := s.UpdateCluster(c.Key(), func(c *model.Cluster) error { c.Status = model.StatusActive; return nil }); err != nil {
		t.Fatal(err)
	}
	// A failing update changes nothing.
	boom := errors.New("boom")
	if _, err := s.UpdateCluster(c.Key(), func(c *model.Cluster) error { c.Status = "X"; return boom }); !errors.Is(err, boom) {
		t.Fatal(err)
	}
	s.AddEvent(model.Event{Time: time.Now(), Cluster: "prod-1", Type: model.EventCreated})
	s.AddEvent(model.Event{Time: time.Now(), Cluster: "other", Type: model.EventCreated})
	s.Close()

	// Reopen: the data survived.
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.GetCluster(c.Key())
	if err != nil || got.Status != model.StatusActive {
		t.Fatalf("after reopen: %+v, %v", got, err)
	}
	if ev, _ := s.Events("prod-1"); len(ev) != 1 {
		t.Fatalf("events = %v", ev)
	}
	if err := s.DeleteCluster(c.Key()); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetCluster(c.Key()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestEventsBounded(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "skiff.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.maxEvents = 5
	for i := 0; i < 12; i++ {
		s.AddEvent(model.Event{Time: time.Now(), Cluster: "c", Reason: string(rune('a' + i))})
	}
	ev, _ := s.Events("c")
	if len(ev) != 5 || ev[4].Reason != "l" {
		t.Fatalf("events = %v", ev)
	}
}
