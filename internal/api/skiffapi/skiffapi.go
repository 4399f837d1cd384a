// Package skiffapi serves what skiff's own CLI needs beyond the EKS API:
// a cluster's kubeconfig, its events, its instances and its node groups'
// nodes. Requests arrive verified and authorized by the router.
package skiffapi

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"skiff.dev/skiff/internal/access"
	"skiff.dev/skiff/internal/api/awserr"
	"skiff.dev/skiff/internal/clusters"
	"skiff.dev/skiff/internal/model"
)

// Handler serves /skiff/v1/.
type Handler struct {
	Clusters *clusters.Service
	Account  func(r *http.Request) string
	// Caller is the request's IAM principal as the cluster's access
	// entries see it.
	Caller   func(r *http.Request) access.Caller
	Region   string
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
	h.handle("POST /skiff/v1/clusters/{name}/hibernate", h.hibernate)
	h.handle("POST /skiff/v1/clusters/{name}/wake", h.wake)
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

// kubeconfig returns a kubeconfig for the caller: the cluster's endpoint
// and CA, and the caller's own IAM identity through `aws eks get-token`
// (what `aws eks update-kubeconfig` writes). It holds no credential, so
// what it can do is what the caller's access entries allow, token by
// short-lived token, and a deleted user or entry stops working within
// seconds. A caller without an access entry is refused: the kubeconfig
// would not work for it.
func (h *Handler) kubeconfig(w http.ResponseWriter, r *http.Request) {
	c, err := h.Clusters.Get(h.Account(r), r.PathValue("name"))
	if err != nil {
		fail(w, err)
		return
	}
	if c.Endpoint == "" || c.CertificateAuthority == "" {
		awserr.WriteJSON(w, awserr.New(http.StatusConflict, "ResourceNotReadyException",
			"the cluster's endpoint is not ready yet; retry in a few seconds"))
		return
	}
	caller := h.Caller(r)
	if _, ok := access.Resolve(c, caller, nil); !ok {
		awserr.WriteJSON(w, awserr.New(http.StatusForbidden, "AccessDeniedException", fmt.Sprintf(
			"%s has no access entry in cluster %s, so a kubeconfig would not authenticate it: ask a cluster admin for one "+
				"(aws eks create-access-entry --cluster-name %s --principal-arn ARN, then aws eks associate-access-policy); "+
				"a principal mapped by the aws-auth ConfigMap uses aws eks update-kubeconfig", caller.Arn, c.Name, c.Name)))
		return
	}
	data, err := clientcmd.Write(*Kubeconfig(c, h.Region))
	if err != nil {
		fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	w.Write(data)
}

// Kubeconfig is the kubeconfig of cluster c for whoever runs it with IAM
// credentials: exec `aws eks get-token`, as `aws eks update-kubeconfig`
// writes it.
func Kubeconfig(c *model.Cluster, region string) *clientcmdapi.Config {
	cfg := clientcmdapi.NewConfig()
	name := c.Name
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: c.Endpoint, CertificateAuthorityData: []byte(c.CertificateAuthority)}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Exec: &clientcmdapi.ExecConfig{
		APIVersion:      "client.authentication.k8s.io/v1beta1",
		Command:         "aws",
		Args:            []string{"--region", region, "eks", "get-token", "--cluster-name", name, "--output", "json"},
		InteractiveMode: clientcmdapi.NeverExecInteractiveMode,
	}}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	cfg.CurrentContext = name
	return cfg
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
// as the store holds it (the CLI's progress and `describe cluster`).
func (h *Handler) instances(w http.ResponseWriter, r *http.Request) {
	c, err := h.Clusters.Get(h.Account(r), r.PathValue("name"))
	if err != nil {
		fail(w, err)
		return
	}
	seen := model.ControlPlaneStatus{}
	if c.Observed != nil {
		seen = *c.Observed
	}
	awserr.WriteOK(w, seen)
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

// hibernate asks that the cluster hibernate (skiff hibernate), wake that
// it wake (skiff wake); both answer with the cluster's hibernation (null:
// awake, or waking).
func (h *Handler) hibernate(w http.ResponseWriter, r *http.Request) {
	c, err := h.Clusters.Hibernate(h.Account(r), r.PathValue("name"))
	if err != nil {
		fail(w, err)
		return
	}
	awserr.WriteOK(w, map[string]any{"hibernation": c.Hibernation})
}

func (h *Handler) wake(w http.ResponseWriter, r *http.Request) {
	c, err := h.Clusters.Wake(h.Account(r), r.PathValue("name"))
	if err != nil {
		fail(w, err)
		return
	}
	awserr.WriteOK(w, map[string]any{"hibernation": c.Hibernation})
}

func fail(w http.ResponseWriter, err error) {
	for _, k := range []struct {
		err    error
		status int
		code   string
	}{
		{clusters.ErrNotFound, http.StatusNotFound, "ResourceNotFoundException"},
		{clusters.ErrInvalidRequest, http.StatusBadRequest, "InvalidRequestException"},
		{clusters.ErrInvalid, http.StatusBadRequest, "InvalidParameterException"},
	} {
		if errors.Is(err, k.err) {
			awserr.WriteJSON(w, awserr.New(k.status, k.code, strings.TrimPrefix(err.Error(), k.err.Error()+": ")))
			return
		}
	}
	awserr.WriteJSON(w, awserr.New(http.StatusInternalServerError, "ServerException", err.Error()))
}
