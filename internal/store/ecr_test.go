package store

import (
	"errors"
	"path/filepath"
	"testing"

	"skiff.dev/skiff/internal/model"
)

func TestRepositories(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "skiff.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, r := range []*model.Repository{
		{Account: "111111111111", Name: "web"},
		{Account: "111111111111", Name: "team/api", ImageTagMutability: model.TagImmutable},
		{Account: "222222222222", Name: "web"},
	} {
		if err := s.CreateRepository(r, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateRepository(&model.Repository{Account: "111111111111", Name: "web"}, 0); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate: %v", err)
	}
	list, err := s.ListRepositories("111111111111")
	if err != nil || len(list) != 2 || list[0].Name != "team/api" || list[1].Name != "web" {
		t.Fatalf("list = %v, %v", list, err)
	}
	if r, err := s.GetRepository("111111111111", "team/api"); err != nil || r.ImageTagMutability != model.TagImmutable {
		t.Errorf("get = %+v, %v", r, err)
	}
	if _, err := s.GetRepository("111111111111", "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("get missing: %v", err)
	}
	if err := s.DeleteRepository("111111111111", "web"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRepository("111111111111", "web"); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete twice: %v", err)
	}
	if r, err := s.GetRepository("222222222222", "web"); err != nil || r.Key() != "222222222222/web" {
		t.Errorf("another account's repository of the same name: %+v, %v", r, err)
	}
}

// TestRepositoryQuota: an account cannot hold more repositories than its
// quota; another account is not affected (issue 15).
func TestRepositoryQuota(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "skiff.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, n := range []string{"a", "b"} {
		if err := s.CreateRepository(&model.Repository{Account: "111111111111", Name: n}, 2); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateRepository(&model.Repository{Account: "111111111111", Name: "c"}, 2); !errors.Is(err, ErrQuota) {
		t.Fatalf("third repository: %v", err)
	}
	if err := s.CreateRepository(&model.Repository{Account: "222222222222", Name: "c"}, 2); err != nil {
		t.Fatalf("other account: %v", err)
	}
}
