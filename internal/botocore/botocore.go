// Package botocore reads the service models (service-2.json) that ship
// with the installed AWS CLI, for tests that check skiff's APIs against
// AWS's own definitions of them.
package botocore

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// roots are the places botocore is installed: where the python3 on PATH
// finds it, then the usual install locations.
func roots() []string {
	var out []string
	if p, err := exec.Command("python3", "-c", "import botocore, os; print(os.path.dirname(botocore.__file__))").Output(); err == nil {
		out = append(out, strings.TrimSpace(string(p)))
	}
	for _, g := range []string{"/root/.pyenv/versions/*/lib/python*/site-packages/botocore", "/usr/lib/python3/dist-packages/botocore",
		"/usr/local/lib/python3*/*-packages/botocore", "/usr/local/aws-cli/v2/current/dist/awscli/botocore"} {
		m, _ := filepath.Glob(g)
		out = append(out, m...)
	}
	return out
}

// Model returns the JSON of a service's newest model ("eks", "iam", …).
func Model(service string) ([]byte, error) {
	for _, root := range roots() {
		files, _ := filepath.Glob(filepath.Join(root, "data", service, "*", "service-2.json*"))
		if len(files) == 0 {
			continue
		}
		sort.Strings(files)
		name := files[len(files)-1]
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, err
		}
		if strings.HasSuffix(name, ".gz") {
			zr, err := gzip.NewReader(bytes.NewReader(data))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			return io.ReadAll(zr)
		}
		return data, nil
	}
	return nil, fmt.Errorf("botocore's %s model not found: install the AWS CLI (the README's set-up does)", service)
}
