package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// client talks to a skiff server's EKS and skiff APIs.
type client struct {
	endpoint string
	http     *http.Client
}

func defaultEndpoint() string {
	if e := os.Getenv("SKIFF_ENDPOINT"); e != "" {
		return e
	}
	return "http://127.0.0.1:7443"
}

func newClient(endpoint string) *client {
	return &client{endpoint: endpoint, http: &http.Client{Timeout: 30 * time.Second}}
}

// do sends a JSON request and decodes a JSON answer into out (if not nil).
func (c *client) do(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, c.endpoint+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("reach skiff at %s (is 'skiff serve' running? set --endpoint or SKIFF_ENDPOINT): %w", c.endpoint, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Message string }
		json.Unmarshal(data, &e)
		if code := resp.Header.Get("x-amzn-ErrorType"); code != "" {
			return fmt.Errorf("%s: %s", code, e.Message)
		}
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, data)
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = data
		return nil
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// cluster is the part of EKS' Cluster shape the CLI shows.
type cluster struct {
	Name      string  `json:"name"`
	Version   string  `json:"version"`
	Status    string  `json:"status"`
	Endpoint  string  `json:"endpoint"`
	CreatedAt float64 `json:"createdAt"`
}

func (c *client) describe(name string) (*cluster, error) {
	var out struct{ Cluster cluster }
	if err := c.do("GET", "/clusters/"+name, nil, &out); err != nil {
		return nil, err
	}
	return &out.Cluster, nil
}
