package controlplane

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"time"

	"skiff.dev/skiff/internal/bundle"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/runtime"
)

// Bare is the smallest control plane a bundle can run: one etcd and one
// apiserver, no load balancer, no supervision. It is the bundle smoke test
// and the baseline that benchmarks compare the HA control plane with.
type Bare struct {
	rt     runtime.Runtime
	specs  []runtime.Spec
	layout Layout
	prober *prober
}

// StartBare starts a bare control plane from b, with its files under dir
// and its addresses in slot (127.1.SLOT.0/24), using rt.
func StartBare(ctx context.Context, rt runtime.Runtime, b bundle.Bundle, dir string, slot int) (*Bare, error) {
	c := &model.Cluster{Name: "bare", ID: fmt.Sprintf("bare-%d", slot), Slot: slot, APIServers: 1, Zones: []string{"a"}}
	l := Layout{Slot: slot, Cluster: c.ID, Dir: dir, Place: rt}
	if err := l.EnsurePKI(c); err != nil {
		return nil, err
	}
	p, err := newProber(l)
	if err != nil {
		return nil, err
	}
	bare := &Bare{rt: rt, layout: l, prober: p,
		specs: []runtime.Spec{l.etcdSpec(c, b, 0, "a"), l.apiserverSpec(c, b, 0)}}
	for _, s := range bare.specs {
		if err := rt.Start(ctx, s); err != nil {
			bare.Stop(ctx)
			return nil, err
		}
	}
	return bare, nil
}

// APIServerURL is the apiserver's address.
func (b *Bare) APIServerURL() string {
	return "https://" + hostPort(b.layout.APIServerIP(0), APIServerPort)
}

// WaitReady waits until the apiserver's /readyz answers ok.
func (b *Bare) WaitReady(ctx context.Context) error {
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := get(pctx, b.prober.apiserver, b.APIServerURL()+"/readyz")
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bare control plane not ready: %w (last: %v)", ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Version returns the gitVersion the apiserver reports on /version.
func (b *Bare) Version(ctx context.Context) (string, error) {
	body, err := get(ctx, b.prober.apiserver, b.APIServerURL()+"/version")
	if err != nil {
		return "", err
	}
	var v struct{ GitVersion string }
	if err := json.Unmarshal(body, &v); err != nil {
		return "", fmt.Errorf("parse /version: %w", err)
	}
	return v.GitVersion, nil
}

// PIDs returns the process IDs of the running instances.
func (b *Bare) PIDs(ctx context.Context) []int {
	return pidsOf(ctx, b.rt, func(id string) bool {
		for _, s := range b.specs {
			if s.ID == id {
				return true
			}
		}
		return false
	})
}

// Stop stops both instances and removes their files.
func (b *Bare) Stop(ctx context.Context) error {
	for _, s := range b.specs {
		if err := b.rt.Stop(ctx, s.ID, 2*time.Second); err != nil {
			return err
		}
	}
	return os.RemoveAll(b.layout.Dir)
}

func pidsOf(ctx context.Context, rt runtime.Runtime, match func(id string) bool) []int {
	all, _ := rt.List(ctx)
	var out []int
	for _, st := range all {
		if st.Running && match(st.ID) {
			out = append(out, st.PID)
		}
	}
	return out
}

// PIDs returns the process IDs of a cluster's running instances.
func (e *Engine) PIDs(ctx context.Context, c *model.Cluster) []int {
	return pidsOf(ctx, e.cfg.Runtime, func(id string) bool { return runtime.ClusterOf(id) == c.ID })
}

// Listening reports whether anything accepts TCP connections on addr.
func Listening(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}
