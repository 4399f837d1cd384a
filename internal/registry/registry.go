// Package registry is skiff's built-in image registry: the CNCF
// distribution registry (the reference OCI registry) with its filesystem
// storage under skiff's data dir, so images survive restarts and cluster
// deletion (they are account-level, like ECR).
//
// skiff serves it in every VPC that has nodes (read-only: nodes pull, they
// never push) and pushes its system images (pause, …) in-process. No
// component ever pulls from outside this machine.
//
// Naming: system images live at the root (pause, coredns/…); an account's
// ECR repository NAME lives at ACCOUNT/NAME (the 12-digit account ID as
// first component). On skiff's API listener the registry is served with
// ECR's authentication (Authenticated: HTTP Basic, user AWS, a token from
// GetAuthorizationToken); the ECR API reads and deletes images directly in
// the storage (Images, DeleteImage, …), with no HTTP round trip.
package registry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/distribution/distribution/v3"
	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/distribution/distribution/v3/registry/storage"
	storagedriver "github.com/distribution/distribution/v3/registry/storage/driver"
	"github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	"github.com/sirupsen/logrus"
)

// Registry is a running registry; it is an http.Handler with full access.
type Registry struct {
	app *handlers.App
	// driver and ns reach the same storage as app, for the ECR API (no
	// cache is configured, so both see every change at once).
	driver storagedriver.StorageDriver
	ns     distribution.Namespace
}

// New opens the registry stored in dir (created if missing); its own log
// (distribution logs through logrus' standard logger, a 404 as an error)
// goes to logw.
func New(ctx context.Context, dir string, logw io.Writer) (*Registry, error) {
	return open(ctx, dir, logw, true)
}

// OpenShared opens the registry stored in dir beside the one skiff serves
// (a VPC's front door, package door): to read it, with no garbage
// collection.
func OpenShared(ctx context.Context, dir string, logw io.Writer) (*Registry, error) {
	return open(ctx, dir, logw, false)
}

func open(ctx context.Context, dir string, logw io.Writer, sweep bool) (reg *Registry, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create registry dir: %w", err)
	}
	logrus.SetOutput(logw)
	logrus.SetLevel(logrus.WarnLevel)
	// The secret signs upload state; uploads do not outlive a skiff run.
	secret := make([]byte, 32)
	rand.Read(secret)
	cfg := &configuration.Configuration{
		Storage: configuration.Storage{
			"filesystem": configuration.Parameters{"rootdirectory": dir},
			"delete":     configuration.Parameters{"enabled": true},
			// Blobs are served by the registry itself, never by redirect.
			"redirect": configuration.Parameters{"disable": true},
		},
	}
	cfg.HTTP.Secret = hex.EncodeToString(secret)
	drv := filesystem.New(filesystem.DriverParameters{RootDirectory: dir, MaxThreads: 100})
	ns, err := storage.NewRegistry(ctx, drv, storage.EnableDelete)
	if err != nil {
		return nil, fmt.Errorf("open registry storage in %s: %w", dir, err)
	}
	// Deleted images and repositories leave their blobs behind; sweep them
	// now, while no upload can be in progress (an empty registry has none).
	if _, err := drv.Stat(ctx, storageRoot); err == nil && sweep {
		if err := storage.MarkAndSweep(ctx, drv, ns, storage.GCOpts{Quiet: true}); err != nil {
			fmt.Fprintf(logw, "registry garbage collection in %s: %v\n", dir, err)
		}
	}
	// NewApp panics on a bad configuration or storage.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("open registry in %s: %v", dir, p)
		}
	}()
	return &Registry{app: handlers.NewApp(ctx, cfg), driver: drv, ns: ns}, nil
}

// ServeHTTP serves the OCI distribution API with full access.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) { r.app.ServeHTTP(w, req) }

// ReadOnly returns a handler that serves pulls and refuses pushes and
// deletes with the distribution API's DENIED error.
func (r *Registry) ReadOnly() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			Deny(w, "this registry endpoint is read-only: push from the host with credentials from `aws ecr get-login-password`")
			return
		}
		r.app.ServeHTTP(w, req)
	})
}

// Deny writes the distribution API's DENIED error (403).
func Deny(w http.ResponseWriter, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusForbidden)
	json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": "DENIED", "message": msg}}})
}

// Close stops the registry's background work.
func (r *Registry) Close() error { return r.app.Shutdown() }
