package model

import (
	"testing"
	"time"
)

func TestHibernateAfter(t *testing.T) {
	for _, tc := range []struct {
		tags map[string]string
		want time.Duration
		bad  bool
	}{
		{nil, 0, false},
		{map[string]string{"other": "1h"}, 0, false},
		{map[string]string{HibernateAfterTag: "30m"}, 30 * time.Minute, false},
		{map[string]string{HibernateAfterTag: "1s"}, time.Second, false},
		{map[string]string{HibernateAfterTag: "0"}, 0, false},
		{map[string]string{HibernateAfterTag: "off"}, 0, false},
		{map[string]string{HibernateAfterTag: "soon"}, 0, true},
		{map[string]string{HibernateAfterTag: "10ms"}, 0, true},
		{map[string]string{HibernateAfterTag: "-5m"}, 0, true},
		{map[string]string{HibernateAfterTag: ""}, 0, true},
	} {
		got, err := HibernateAfter(tc.tags)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("HibernateAfter(%v) = %v, %v; want %v, error %v", tc.tags, got, err, tc.want, tc.bad)
		}
	}
}

func TestNodeCount(t *testing.T) {
	c := Cluster{Nodegroups: []Nodegroup{{Desired: 0}, {Desired: 2, Nodes: []Node{{}}}, {Desired: 0, Nodes: []Node{{}}}}}
	if n := c.NodeCount(); n != 3 {
		t.Errorf("NodeCount = %d, want 3 (2 wanted, 1 still there)", n)
	}
}
