package door

import (
	"encoding/json"
	"encoding/xml"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAPIProxy: the door forwards to skiff's socket with the caller's
// Host (SigV4 signs it) and address (a forged ClientHeader is replaced);
// a request that arrives while skiff restarts waits for it; one that
// finds nobody within the hold gets a 503 in its protocol's shape.
func TestAPIProxy(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "api.sock")
	serve := func() *http.Server {
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			json.NewEncoder(w).Encode(map[string]string{"host": r.Host, "client": r.Header.Get(ClientHeader), "body": string(body)})
		})}
		go srv.Serve(ln)
		return srv
	}
	door := httptest.NewServer(APIProxy(sock, 600*time.Millisecond, slog.New(slog.DiscardHandler)))
	defer door.Close()
	post := func(contentType, forged string) (*http.Response, []byte) {
		req, _ := http.NewRequest("POST", door.URL+"/", strings.NewReader("Action=GetCallerIdentity"))
		req.Host = "sts.skiff.local"
		req.Header.Set("Content-Type", contentType)
		if forged != "" {
			req.Header.Set(ClientHeader, forged)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}

	srv := serve()
	resp, body := post("application/x-www-form-urlencoded", "10.0.0.99:1234")
	var got map[string]string
	if err := json.Unmarshal(body, &got); resp.StatusCode != 200 || err != nil {
		t.Fatalf("through the door: %d %s", resp.StatusCode, body)
	}
	if got["host"] != "sts.skiff.local" || got["body"] != "Action=GetCallerIdentity" {
		t.Errorf("forwarded %v, want the caller's host and body", got)
	}
	if host, _, _ := net.SplitHostPort(got["client"]); host != "127.0.0.1" {
		t.Errorf("client %q, want the caller's own address (not the forged one)", got["client"])
	}

	// skiff goes away: each protocol gets its 503.
	srv.Close()
	for _, tc := range []struct{ contentType, want string }{
		{"application/x-www-form-urlencoded", "xml"},
		{"application/x-amz-json-1.1", "__type"},
		{"application/json", "x-amzn-ErrorType"},
	} {
		start := time.Now()
		resp, body := post(tc.contentType, "")
		if resp.StatusCode != 503 {
			t.Errorf("%s with skiff away: %d %s, want 503", tc.contentType, resp.StatusCode, body)
		}
		if time.Since(start) < 500*time.Millisecond {
			t.Errorf("%s: answered after %v, before the hold", tc.contentType, time.Since(start))
		}
		switch tc.want {
		case "xml":
			var e struct {
				Error struct{ Code string }
			}
			if err := xml.Unmarshal(body, &e); err != nil || e.Error.Code != "ServiceUnavailable" {
				t.Errorf("query protocol: %s", body)
			}
		case "__type":
			var e map[string]string
			if err := json.Unmarshal(body, &e); err != nil || e["__type"] != "ServiceUnavailable" {
				t.Errorf("JSON 1.1: %s", body)
			}
		default:
			if resp.Header.Get("x-amzn-ErrorType") != "ServiceUnavailable" {
				t.Errorf("restJson: %v %s", resp.Header, body)
			}
		}
	}

	// skiff comes back while a request waits: it is served.
	back := make(chan *http.Server, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		back <- serve()
	}()
	if resp, body := post("application/x-www-form-urlencoded", ""); resp.StatusCode != 200 {
		t.Errorf("skiff back within the hold: %d %s", resp.StatusCode, body)
	}
	(<-back).Close()
}
