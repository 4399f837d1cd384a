// Package kmsplugin is a cluster's KMS v2 plugin (`skiff kms-plugin`): the
// gRPC service (k8s.io/kms/apis/v2) on a unix socket through which the
// cluster's apiservers envelope-encrypt Secrets with the user's KMS key
// (EKS' encryptionConfig). The apiservers make their own data keys and
// ask the plugin only to wrap and unwrap them with the KMS key, as EKS'
// apiservers ask AWS KMS.
//
// The plugin runs as an instance of its own, from material the reconciler
// writes (the key's state and its material sealed by skiff's root key,
// kms.Keyring), so Secrets stay readable while skiff is down. A disabled
// key, or one pending deletion, refuses to wrap and unwrap and makes the
// plugin report itself unhealthy to the apiservers; a rotated key is a new
// key ID (the apiservers then wrap new data keys under the new version,
// and data keys wrapped under older versions still unwrap).
package kmsplugin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
	kmsapi "k8s.io/kms/apis/v2"

	"skiff.dev/skiff/internal/kms"
	"skiff.dev/skiff/internal/material"
	"skiff.dev/skiff/internal/status"
)

// Name is the provider's name in the apiservers' EncryptionConfiguration;
// it is part of every stored value's prefix (k8s:enc:kms:v2:NAME:), so it
// never changes.
const Name = "skiff-kms"

// ContextKey is the encryption context's key under which every data key is
// bound to its cluster's ID.
const ContextKey = "skiff:cluster"

// Material is what the plugin wraps data keys with: the cluster's key.
type Material struct {
	Cluster string      `json:"cluster"` // the cluster's ID: the encryption context of every data key
	Key     kms.Keyring `json:"key"`
}

// WriteMaterial writes m to path (mode 0600, atomically) unless the file
// already holds it; it reports whether it wrote.
func WriteMaterial(path string, m *Material) (bool, error) { return material.Write(path, m) }

// Config of a plugin.
type Config struct {
	Socket   string // the gRPC unix socket
	Material string // the material file the reconciler keeps up to date
	RootKey  string // skiff's KMS root key file
	Status   string // where GET /healthz answers (host:port)
	Log      *slog.Logger
}

// Validate checks cfg and fills in defaults.
func (cfg *Config) Validate() error {
	var errs []error
	for name, v := range map[string]string{"socket": cfg.Socket, "material": cfg.Material, "root key": cfg.RootKey, "status address": cfg.Status} {
		if v == "" {
			errs = append(errs, fmt.Errorf("no %s", name))
		}
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return errors.Join(errs...)
}

// Server implements the KMS v2 service.
type Server struct {
	kmsapi.UnimplementedKeyManagementServiceServer
	Root *kms.RootKey
	Mat  *material.File[Material]
	Log  *slog.Logger
}

func (s *Server) material() (*Material, error) {
	m, err := s.Mat.Get()
	if err != nil {
		return nil, grpcstatus.Errorf(codes.Unavailable, "the KMS plugin's material: %v", err)
	}
	return &m, nil
}

// context binds every data key to its cluster: a wrapped key of one
// cluster does not unwrap for another, even with the same KMS key.
func encryptionContext(m *Material) map[string]string {
	return map[string]string{ContextKey: m.Cluster}
}

// Status reports the key ID (ARN and version) and whether the key is
// usable.
func (s *Server) Status(ctx context.Context, _ *kmsapi.StatusRequest) (*kmsapi.StatusResponse, error) {
	m, err := s.material()
	if err != nil {
		return nil, err
	}
	healthz := "ok"
	if err := m.Key.Usable(); err != nil {
		healthz = err.Error()
	}
	return &kmsapi.StatusResponse{Version: "v2", Healthz: healthz, KeyId: m.Key.KeyID()}, nil
}

// Encrypt wraps a data key under the key's current version.
func (s *Server) Encrypt(ctx context.Context, req *kmsapi.EncryptRequest) (*kmsapi.EncryptResponse, error) {
	m, err := s.material()
	if err != nil {
		return nil, err
	}
	blob, err := m.Key.Encrypt(s.Root, req.Plaintext, encryptionContext(m))
	if err != nil {
		s.Log.Warn("kms plugin: encrypt refused", "uid", req.Uid, "err", err)
		return nil, grpcError(err)
	}
	return &kmsapi.EncryptResponse{Ciphertext: blob, KeyId: m.Key.KeyID()}, nil
}

// Decrypt unwraps a data key wrapped under any version of the key.
func (s *Server) Decrypt(ctx context.Context, req *kmsapi.DecryptRequest) (*kmsapi.DecryptResponse, error) {
	m, err := s.material()
	if err != nil {
		return nil, err
	}
	out, err := m.Key.Decrypt(s.Root, req.Ciphertext, encryptionContext(m))
	if err != nil {
		s.Log.Warn("kms plugin: decrypt refused", "uid", req.Uid, "err", err)
		return nil, grpcError(err)
	}
	return &kmsapi.DecryptResponse{Plaintext: out}, nil
}

// grpcError carries a KMS error to the apiserver, named as KMS names it
// (the apiserver puts the message in its error).
func grpcError(err error) error {
	name, code := "KMSInternalException", codes.Internal
	switch {
	case errors.Is(err, kms.ErrDisabled):
		name, code = "DisabledException", codes.FailedPrecondition
	case errors.Is(err, kms.ErrInvalidState):
		name, code = "KMSInvalidStateException", codes.FailedPrecondition
	case errors.Is(err, kms.ErrNotFound):
		name, code = "NotFoundException", codes.NotFound
	case errors.Is(err, kms.ErrInvalidCiphertext):
		name, code = "InvalidCiphertextException", codes.InvalidArgument
	case errors.Is(err, kms.ErrInvalid):
		name, code = "ValidationException", codes.InvalidArgument
	}
	return grpcstatus.Errorf(code, "KMS %s: %v", name, err)
}

// Run serves until ctx is done.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("kms plugin: %w", err)
	}
	rk, err := kms.ReadRootKey(cfg.RootKey)
	if err != nil {
		return fmt.Errorf("kms plugin: %w", err)
	}
	srv := &Server{Root: rk, Mat: &material.File[Material]{Path: cfg.Material}, Log: cfg.Log}
	if _, err := srv.Mat.Get(); err != nil {
		return fmt.Errorf("kms plugin: material: %w", err)
	}
	ln, err := listenUnix(cfg.Socket)
	if err != nil {
		return fmt.Errorf("kms plugin: %w", err)
	}
	g := grpc.NewServer()
	kmsapi.RegisterKeyManagementServiceServer(g, srv)
	go g.Serve(ln)
	st, err := status.Start(status.Config{Addr: cfg.Status}, func() (any, error) {
		m, err := srv.Mat.Get()
		if err != nil {
			return nil, err
		}
		// The plugin serves whatever the key's state: a disabled key is
		// the user's choice, reported by the apiservers and the cluster's
		// health, not a reason to replace the plugin.
		return map[string]string{"keyId": m.Key.KeyID(), "state": m.Key.State}, nil
	})
	if err != nil {
		g.Stop()
		return err
	}
	cfg.Log.Info("kms plugin serving", "socket", cfg.Socket)
	<-ctx.Done()
	st.Close()
	done := make(chan struct{})
	go func() { g.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
		g.Stop()
	}
	return nil
}

// listenUnix listens on path, replacing a socket a previous instance left
// (only a socket: any other file there is an error), reachable by root
// alone.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}
