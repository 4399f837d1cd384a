package server

import (
	"path/filepath"
	"testing"

	"skiff.dev/skiff/internal/apitls"
	"skiff.dev/skiff/internal/clusters"
	"skiff.dev/skiff/internal/nodes"
)

func TestValidate(t *testing.T) {
	cfg := Config{DataDir: "rel"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(cfg.DataDir) || cfg.Listen != "127.0.0.1:7443" || cfg.Region != "us-east-1" ||
		cfg.Sandbox != nodes.SandboxUserNS || cfg.Quotas != clusters.DefaultQuotas || cfg.Log == nil {
		t.Errorf("defaults: %+v", cfg)
	}
	for name, bad := range map[string]Config{
		"no data dir":            {},
		"unknown sandbox":        {DataDir: "d", Sandbox: "vm"},
		"plain HTTP on 0.0.0.0":  {DataDir: "d", Listen: "0.0.0.0:7443", TLS: apitls.Config{Insecure: true}},
		"a key without its cert": {DataDir: "d", TLS: apitls.Config{KeyFile: "k.pem"}},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%s: valid", name)
		}
	}
}
