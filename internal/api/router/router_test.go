package router

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestRegistryRoute: /v2 and /v2/… go to the registry as they come (no
// SigV4, no body limit); other paths do not.
func TestRegistryRoute(t *testing.T) {
	var got int64
	rt := &Router{Registry: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		got = n
		w.WriteHeader(http.StatusAccepted)
	})}
	big := bytes.Repeat([]byte("x"), 3*maxBody)
	for _, path := range []string{"/v2", "/v2/", "/v2/111111111111/web/blobs/uploads/abc"} {
		got = 0
		rec := httptest.NewRecorder()
		rt.ServeHTTP(rec, httptest.NewRequest(http.MethodPatch, path, bytes.NewReader(big)))
		if rec.Code != http.StatusAccepted || got != int64(len(big)) {
			t.Errorf("%s: %d, registry read %d bytes", path, rec.Code, got)
		}
	}
	rec := httptest.NewRecorder()
	rt.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v2x", bytes.NewReader(big)))
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("/v2x: %d, want the API's body limit", rec.Code)
	}
}
