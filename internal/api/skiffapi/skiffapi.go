// Package skiffapi serves what skiff's own CLI needs beyond the EKS API:
// a cluster's admin kubeconfig, its events, its instances and its node
// groups' nodes.
//
// Until IAM authentication lands, this API (like the EKS one) trusts every
// caller that reaches skiff's listen address: keep it on loopback.
package skiffapi

import (
	"errors"
	"net/http"
	"os"

	"skiff.dev/skiff/internal/api/awserr"
	"skiff.dev/skiff/internal/clusters"
	"skiff.dev/skiff/internal/controlplane"
)

// Handler serves /skiff/v1/.
type Handler struct {
	Clusters *clusters.Service
	Engine   *controlplane.Engine
	Account  func(r *http.Request) string
	mux      *http.ServeMux
	patterns []string
}

// New returns the handler with its routes.
func New(h Handler) *Handler {
	h.mux = http.NewServeMux()
	h.handle("GET /skiff/v1/clusters/{name}/kubeconfig", h.kubeconfig)
	h.handle("GET /skiff/v1/clusters/{name}/events", h.events)
	h.handle("GET /skiff/v1/clusters/{name}/instances", h.instances)
	h.handle("GET /skiff/v1/clusters/{name}/nodegroups/{nodegroup}", h.nodegroup)
	return &h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Handler) handle(pattern string, fn http.HandlerFunc) {
	h.mux.HandleFunc(pattern, fn)
	h.patterns = append(h.patterns, pattern)
}

// Patterns are the operations' HTTP patterns (for IAM authorization,
// which names each one's action: a test keeps the two lists equal).
func (h *Handler) Patterns() []string { return h.patterns }

func (h *Handler) kubeconfig(w http.ResponseWriter, r *http.Request) {
	c, err := h.Clusters.Get(h.Account(r), r.PathValue("name"))
	if err != nil {
		fail(w, err)
		return
	}
	data, err := os.ReadFile(h.Engine.Layout(c).KubeconfigPath("admin"))
	if err != nil {
		awserr.WriteJSON(w, awserr.New(http.StatusConflict, "ResourceNotReadyException",
			"the cluster's credentials are not created yet; retry in a few seconds"))
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.Write(data)
}

func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	ev, err := h.Clusters.Events(h.Account(r), r.PathValue("name"))
	if err != nil {
		fail(w, err)
		return
	}
	awserr.WriteOK(w, map[string]any{"events": ev})
}

// instances reports what the reconciler saw of each control-plane instance
// in its last pass (the CLI's progress and `describe cluster`).
func (h *Handler) instances(w http.ResponseWriter, r *http.Request) {
	c, err := h.Clusters.Get(h.Account(r), r.PathValue("name"))
	if err != nil {
		fail(w, err)
		return
	}
	awserr.WriteOK(w, h.Engine.Snapshot(c))
}

// nodegroup returns a node group with its nodes (zone, address, Ready):
// the CLI's progress while nodes join.
func (h *Handler) nodegroup(w http.ResponseWriter, r *http.Request) {
	_, g, err := h.Clusters.Nodegroup(h.Account(r), r.PathValue("name"), r.PathValue("nodegroup"))
	if err != nil {
		fail(w, err)
		return
	}
	awserr.WriteOK(w, g)
}

func fail(w http.ResponseWriter, err error) {
	if errors.Is(err, clusters.ErrNotFound) {
		awserr.WriteJSON(w, awserr.New(http.StatusNotFound, "ResourceNotFoundException", err.Error()))
		return
	}
	awserr.WriteJSON(w, awserr.New(http.StatusInternalServerError, "ServerException", err.Error()))
}
