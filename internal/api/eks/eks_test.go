package eks

import (
	"slices"
	"testing"
)

func TestPage(t *testing.T) {
	names := []string{"a", "b", "c", "d", "e"}
	var got []string
	token := ""
	for pages := 0; ; pages++ {
		page, next, err := Page(names, token, 2)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, page...)
		if next == "" {
			if pages != 2 {
				t.Errorf("%d pages, want 3", pages+1)
			}
			break
		}
		token = next
	}
	if !slices.Equal(got, names) {
		t.Fatalf("pages gave %v", got)
	}
	if _, _, err := Page(names, "%%%", 2); err == nil {
		t.Error("bad token accepted")
	}
	if page, next, _ := Page(nil, "", 10); len(page) != 0 || next != "" {
		t.Errorf("empty list: %v %q", page, next)
	}
}
