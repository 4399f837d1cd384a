// Package regdoor is the registry's front door in a cluster's VPC, run as
// an instance of its own (`skiff registry-door`) so that nodes pull while
// skiff is down or being replaced: it serves skiff's registry storage,
// read-only, on the VPC's service address (RegistryPort), to anyone for
// the system images and to the account's nodes (their pull credentials)
// for the account's own, as skiff serve did in-process.
//
// What it needs of skiff's store, the pull key and the account's node IDs,
// comes in a material file that the cluster's reconciler writes (0600) and
// that it reads again when it changes. Several clusters of one VPC each run
// one; they share the address with SO_REUSEPORT.
package regdoor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/netutil"

	"skiff.dev/skiff/internal/lb"
	"skiff.dev/skiff/internal/material"
	"skiff.dev/skiff/internal/network"
	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/status"
	"skiff.dev/skiff/internal/vpcnet"
)

// Material is what the door checks node credentials with.
type Material struct {
	Account string   `json:"account"`
	Key     []byte   `json:"key"`   // the pull key (registry.PullToken)
	Nodes   []string `json:"nodes"` // the account's node IDs, sorted
}

// Door is what a cluster's door serves, as the node reconciler knows it.
type Door struct {
	VPC      string // the VPC's ID
	Netns    string // the VPC's network namespace
	Listen   string // the registry's address there (HOST:PORT)
	Dir      string // the registry's storage
	Material Material
}

// WriteMaterial writes m to path (0600) unless it holds m already.
func WriteMaterial(path string, m Material) error {
	slices.Sort(m.Nodes)
	_, err := material.Write(path, m)
	return err
}

// Config of a door.
type Config struct {
	Name     string // for logs: the cluster's
	VPC      string // requests carry it in their context
	Netns    string // the namespace to listen in
	Listen   string // HOST:PORT in Netns
	Dir      string // the registry's storage
	Material string // the material file
	Status   string // the status server's address (HOST:PORT)
	// Limits of the clients in the VPC (nodes, and pods: anything in the
	// VPC can reach the service address).
	Header, Read, Idle time.Duration // defaults 10s, 30s, 90s
	Conns              int           // served at once; default 256
	Log                *slog.Logger
}

// Validate checks cfg and fills in defaults.
func (cfg *Config) Validate() error {
	var errs []error
	for name, v := range map[string]string{"namespace": cfg.Netns, "listen address": cfg.Listen, "registry dir": cfg.Dir,
		"material file": cfg.Material, "status address": cfg.Status} {
		if v == "" {
			errs = append(errs, errors.New("no "+name))
		}
	}
	if cfg.Header == 0 {
		cfg.Header = 10 * time.Second
	}
	if cfg.Read == 0 {
		cfg.Read = 30 * time.Second
	}
	if cfg.Idle == 0 {
		cfg.Idle = 90 * time.Second
	}
	if cfg.Conns == 0 {
		cfg.Conns = 256
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return errors.Join(errs...)
}

// Run serves until ctx is done.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("registry door: %w", err)
	}
	reg, err := registry.OpenShared(ctx, cfg.Dir, io.Discard)
	if err != nil {
		return err
	}
	defer reg.Close()
	mat := &material.File[Material]{Path: cfg.Material}
	if _, err := mat.Get(); err != nil {
		return fmt.Errorf("registry door: %w", err)
	}
	srv := &http.Server{Handler: handler(reg, mat), ReadHeaderTimeout: cfg.Header, ReadTimeout: cfg.Read, IdleTimeout: cfg.Idle,
		BaseContext: func(net.Listener) context.Context { return network.WithVPC(context.Background(), cfg.VPC) }}
	var listening sync.Map
	st, err := status.Serve(cfg.Status, func() (any, error) {
		if _, ok := listening.Load(cfg.Listen); !ok {
			return nil, errors.New("not listening in " + cfg.Netns + " yet")
		}
		return map[string]string{"listening": cfg.Netns + "=" + cfg.Listen}, nil
	})
	if err != nil {
		return err
	}
	defer st.Close()
	cfg.Log.Info("registry door serving", "cluster", cfg.Name, "at", cfg.Netns+"="+cfg.Listen)
	var ln net.Listener
	var ino uint64
	defer func() {
		if ln != nil {
			ln.Close()
		}
	}()
	for {
		cur, err := nsInode(cfg.Netns)
		if ln != nil && (err != nil || cur != ino) { // the namespace was made anew
			ln.Close()
			ln = nil
			listening.Delete(cfg.Listen)
		}
		if ln == nil && err == nil {
			var l net.Listener
			if lerr := vpcnet.In(cfg.Netns, func() error {
				var err error
				l, err = lb.ListenShared(cfg.Listen)
				return err
			}); lerr == nil {
				ln, ino = l, cur
				go srv.Serve(netutil.LimitListener(l, cfg.Conns))
				listening.Store(cfg.Listen, true)
			} else {
				cfg.Log.Debug("listen in namespace; retrying", "err", lerr)
			}
		}
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			srv.Shutdown(sctx)
			return nil
		case <-time.After(time.Second):
		}
	}
}

// handler serves reg read-only to the account's nodes as the material
// file says now.
func handler(reg *registry.Registry, mat *material.File[Material]) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		m, err := mat.Get()
		if err != nil {
			http.Error(w, "registry door: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		reg.ReadOnlyFor(m.Account, registry.NodePull(m.Key, m.Account, func(id string) (bool, error) {
			return slices.Contains(m.Nodes, id), nil
		})).ServeHTTP(w, req)
	})
}

// nsInode identifies the namespace now at a name.
func nsInode(ns string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(vpcnet.NamespacePath(ns), &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}
