// Package eks serves the Amazon EKS wire API (restJson1) over skiff's
// cluster service, so the stock aws CLI and the AWS SDKs drive skiff.
// Shapes, operation names and error names follow botocore's EKS model
// (data/eks/2017-11-01/service-2.json of the installed AWS CLI).
package eks

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"skiff.dev/skiff/internal/api/awserr"
	"skiff.dev/skiff/internal/clusters"
	"skiff.dev/skiff/internal/iam"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/network"
)

// APIServersTag sets a cluster's apiserver count at creation (EKS has no
// such parameter; default 2).
const APIServersTag = "skiff.dev/apiservers"

// Handler serves the EKS API.
type Handler struct {
	Clusters *clusters.Service
	IAM      *iam.Service // roleArn must name a role of the caller's account
	Region   string
	// Account resolves the caller's account ID from the request.
	Account func(r *http.Request) string
	// CallerArn, if set, resolves the caller's ARN (the cluster creator).
	CallerArn func(r *http.Request) string
	Log       *slog.Logger
	mux       *http.ServeMux
	patterns  []string
}

// New returns the handler with its routes.
func New(h Handler) *Handler {
	h.mux = http.NewServeMux()
	h.handle("POST /clusters", h.createCluster)
	h.handle("GET /clusters", h.listClusters)
	h.handle("GET /clusters/{name}", h.describeCluster)
	h.handle("DELETE /clusters/{name}", h.deleteCluster)
	h.handle("POST /clusters/{name}/update-config", h.updateClusterConfig)
	h.handle("POST /clusters/{name}/encryption-config/associate", h.associateEncryptionConfig)
	h.handle("POST /clusters/{name}/updates", h.updateClusterVersion)
	h.handle("GET /clusters/{name}/updates", h.listUpdates)
	h.handle("GET /clusters/{name}/updates/{id}", h.describeUpdate)
	h.handle("GET /cluster-versions", h.describeClusterVersions)
	h.handle("POST /tags/{arn...}", h.tagResource)
	h.handle("DELETE /tags/{arn...}", h.untagResource)
	h.handle("GET /tags/{arn...}", h.listTags)
	h.accessRoutes()
	h.nodegroupRoutes()
	h.insightRoutes()
	h.addonRoutes()
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		awserr.WriteJSON(w, awserr.New(http.StatusNotFound, "UnknownOperationException",
			fmt.Sprintf("%s %s is not an EKS operation skiff implements; see 'aws eks help' for the operations", r.Method, r.URL.Path)))
	})
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

// vpcConfig is EKS' VpcConfigRequest.
type vpcConfig struct {
	SubnetIDs             []string `json:"subnetIds"`
	SecurityGroupIDs      []string `json:"securityGroupIds"`
	EndpointPublicAccess  *bool    `json:"endpointPublicAccess"`
	EndpointPrivateAccess *bool    `json:"endpointPrivateAccess"`
	PublicAccessCidrs     []string `json:"publicAccessCidrs"`
}

// logging is EKS' Logging shape.
type logging struct {
	ClusterLogging []struct {
		Types   []string `json:"types"`
		Enabled *bool    `json:"enabled"`
	} `json:"clusterLogging"`
}

// settings returns the log types switched on or off.
func (l *logging) settings() map[string]bool {
	out := map[string]bool{}
	for _, s := range l.ClusterLogging {
		for _, t := range s.Types {
			out[t] = s.Enabled == nil || *s.Enabled
		}
	}
	return out
}

// createClusterRequest is the part of CreateClusterRequest skiff reads.
type createClusterRequest struct {
	Name               *string           `json:"name"`
	Version            string            `json:"version"`
	RoleArn            *string           `json:"roleArn"`
	ResourcesVpcConfig *vpcConfig        `json:"resourcesVpcConfig"`
	Logging            *logging          `json:"logging"`
	Tags               map[string]string `json:"tags"`
	ClientRequestToken string            `json:"clientRequestToken"`
	AccessConfig       *struct {
		BootstrapClusterCreatorAdminPermissions *bool  `json:"bootstrapClusterCreatorAdminPermissions"`
		AuthenticationMode                      string `json:"authenticationMode"`
	} `json:"accessConfig"`
	KubernetesNetworkConfig *struct {
		ServiceIpv4Cidr string `json:"serviceIpv4Cidr"`
		IPFamily        string `json:"ipFamily"`
	} `json:"kubernetesNetworkConfig"`
	EncryptionConfig           []encryptionConfig `json:"encryptionConfig"`
	BootstrapSelfManagedAddons *bool              `json:"bootstrapSelfManagedAddons"`
}

// decode reads a JSON request body into v, answering a bad one itself.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(v); err != nil {
		awserr.WriteJSON(w, awserr.New(http.StatusBadRequest, "InvalidRequestException", "the request body is not valid JSON: "+err.Error()))
		return false
	}
	return true
}

func (h *Handler) createCluster(w http.ResponseWriter, r *http.Request) {
	var req createClusterRequest
	if !decode(w, r, &req) {
		return
	}
	switch {
	case req.Name == nil || *req.Name == "":
		awserr.WriteJSON(w, invalid("name is required: pass the cluster's name"))
		return
	case req.RoleArn == nil || *req.RoleArn == "":
		awserr.WriteJSON(w, invalid("roleArn is required: pass the ARN of the cluster's IAM role"))
		return
	case req.ResourcesVpcConfig == nil:
		awserr.WriteJSON(w, invalid("resourcesVpcConfig is required: pass subnetIds of at least two zones (see 'aws ec2 describe-subnets')"))
		return
	}
	if k := req.KubernetesNetworkConfig; k != nil && (k.ServiceIpv4Cidr != "" && k.ServiceIpv4Cidr != model.ServiceCIDR || k.IPFamily != "" && k.IPFamily != "ipv4") {
		awserr.WriteJSON(w, invalid(fmt.Sprintf("skiff clusters use serviceIpv4Cidr %s and ipFamily ipv4; omit kubernetesNetworkConfig or pass those", model.ServiceCIDR)))
		return
	}
	if _, err := h.IAM.RoleByArn(h.Account(r), *req.RoleArn); err != nil {
		awserr.WriteJSON(w, invalid(fmt.Sprintf("Role %s does not exist in your account: create it with 'aws iam create-role' and pass its ARN", *req.RoleArn)))
		return
	}
	apis := 0
	if v, ok := req.Tags[APIServersTag]; ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			awserr.WriteJSON(w, invalid(fmt.Sprintf("tag %s must be a number of apiservers, got %q", APIServersTag, v)))
			return
		}
		apis = n
	}
	vpc := req.ResourcesVpcConfig
	creq := clusters.CreateRequest{Account: h.Account(r), Name: *req.Name, Version: req.Version, APIServers: apis,
		RoleArn: *req.RoleArn, Tags: req.Tags, ClientRequestToken: req.ClientRequestToken,
		SubnetIDs: vpc.SubnetIDs, SecurityGroupIDs: vpc.SecurityGroupIDs, EndpointPublicAccess: vpc.EndpointPublicAccess,
		EndpointPrivateAccess: vpc.EndpointPrivateAccess, PublicAccessCidrs: vpc.PublicAccessCidrs}
	creq.SkipSelfManagedAddons = req.BootstrapSelfManagedAddons != nil && !*req.BootstrapSelfManagedAddons
	creq.Encryption = encryptionIn(req.EncryptionConfig)
	if h.CallerArn != nil {
		creq.CreatorArn = h.CallerArn(r)
	}
	if req.Logging != nil {
		for t, on := range req.Logging.settings() {
			if on {
				creq.Logging = append(creq.Logging, t)
			}
		}
	}
	if a := req.AccessConfig; a != nil {
		creq.AuthenticationMode, creq.BootstrapAdmin = a.AuthenticationMode, a.BootstrapClusterCreatorAdminPermissions
	}
	c, err := h.Clusters.Create(creq)
	if err != nil {
		h.fail(w, err, *req.Name)
		return
	}
	h.writeCluster(w, c)
}

func (h *Handler) describeCluster(w http.ResponseWriter, r *http.Request) {
	c, err := h.Clusters.Get(h.Account(r), r.PathValue("name"))
	if err != nil {
		h.fail(w, err, r.PathValue("name"))
		return
	}
	out := h.Cluster(c)
	// Inside the cluster's VPC the endpoint is its address there, as the
	// private endpoint's DNS name resolves inside a VPC on EKS.
	if p, err := netip.ParsePrefix(c.EndpointAddr); err == nil && network.VPCOf(r.Context()) == c.Network.VpcID {
		out["endpoint"] = "https://" + p.Addr().String()
	}
	awserr.WriteOK(w, map[string]any{"cluster": out})
}

func (h *Handler) deleteCluster(w http.ResponseWriter, r *http.Request) {
	c, err := h.Clusters.Delete(h.Account(r), r.PathValue("name"))
	if err != nil {
		h.fail(w, err, r.PathValue("name"))
		return
	}
	out := h.Cluster(c)
	// Inside the cluster's VPC the endpoint is its address there, as the
	// private endpoint's DNS name resolves inside a VPC on EKS.
	if p, err := netip.ParsePrefix(c.EndpointAddr); err == nil && network.VPCOf(r.Context()) == c.Network.VpcID {
		out["endpoint"] = "https://" + p.Addr().String()
	}
	awserr.WriteOK(w, map[string]any{"cluster": out})
}

func (h *Handler) listClusters(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	max, ok := maxResults(w, r)
	if !ok {
		return
	}
	names, err := h.Clusters.List(h.Account(r))
	if err != nil {
		h.fail(w, err, "")
		return
	}
	page, next, err := Page(names, q.Get("nextToken"), max)
	if err != nil {
		awserr.WriteJSON(w, invalid(err.Error()))
		return
	}
	out := map[string]any{"clusters": page}
	if next != "" {
		out["nextToken"] = next
	}
	awserr.WriteOK(w, out)
}

// Page returns up to max names after the one encoded in token, and the
// token of the next page ("" at the end).
func Page(names []string, token string, max int) ([]string, string, error) {
	start := 0
	if token != "" {
		after, err := base64.RawURLEncoding.DecodeString(token)
		if err != nil {
			return nil, "", fmt.Errorf("nextToken %q is not a token from a previous response; start again without it", token)
		}
		for start < len(names) && names[start] <= string(after) {
			start++
		}
	}
	end := min(start+max, len(names))
	page := append([]string{}, names[start:end]...)
	next := ""
	if end < len(names) {
		next = base64.RawURLEncoding.EncodeToString([]byte(names[end-1]))
	}
	return page, next, nil
}

func invalid(msg string) *awserr.Error {
	return awserr.New(http.StatusBadRequest, "InvalidParameterException", msg)
}

// fail maps a cluster-service error to its EKS exception.
func (h *Handler) fail(w http.ResponseWriter, err error, name string) {
	var e *awserr.Error
	switch {
	case errors.Is(err, clusters.ErrInvalid):
		e = invalid(strings.TrimPrefix(err.Error(), clusters.ErrInvalid.Error()+": "))
	case errors.Is(err, clusters.ErrNotFound):
		e = awserr.New(http.StatusNotFound, "ResourceNotFoundException", strings.TrimPrefix(err.Error(), clusters.ErrNotFound.Error()+": "))
	case errors.Is(err, clusters.ErrInUse):
		e = awserr.New(http.StatusConflict, "ResourceInUseException", strings.TrimPrefix(err.Error(), clusters.ErrInUse.Error()+": "))
	case errors.Is(err, clusters.ErrInvalidRequest):
		e = awserr.New(http.StatusBadRequest, "InvalidRequestException", strings.TrimPrefix(err.Error(), clusters.ErrInvalidRequest.Error()+": "))
	case errors.Is(err, clusters.ErrLimit):
		e = awserr.New(http.StatusBadRequest, "ResourceLimitExceededException", strings.TrimPrefix(err.Error(), clusters.ErrLimit.Error()+": "))
	default:
		h.Log.Error("EKS request failed", "err", err)
		e = awserr.New(http.StatusInternalServerError, "ServerException", "skiff could not complete the request; retry, and see the skiff serve log if it persists")
	}
	if name != "" {
		e.Fields = map[string]string{"clusterName": name}
	}
	awserr.WriteJSON(w, e)
}

func (h *Handler) writeCluster(w http.ResponseWriter, c *model.Cluster) {
	awserr.WriteOK(w, map[string]any{"cluster": h.Cluster(c)})
}

// Cluster renders a cluster in EKS' Cluster shape.
func (h *Handler) Cluster(c *model.Cluster) map[string]any {
	out := map[string]any{
		"name":            c.Name,
		"arn":             h.clusterArn(c),
		"createdAt":       float64(c.CreatedAt.UnixMilli()) / 1000,
		"version":         c.Version,
		"status":          c.Status,
		"platformVersion": clusters.PlatformVersion,
		"id":              c.ID,
		"resourcesVpcConfig": map[string]any{
			"subnetIds": nonNil(c.Network.SubnetIDs), "securityGroupIds": nonNil(c.Network.SecurityGroupIDs),
			"clusterSecurityGroupId": c.Network.ClusterSecurityGroupID, "vpcId": c.Network.VpcID,
			"endpointPublicAccess": c.Network.EndpointPublicAccess, "endpointPrivateAccess": c.Network.EndpointPrivateAccess,
			"publicAccessCidrs": nonNil(c.Network.PublicAccessCidrs),
		},
		"kubernetesNetworkConfig": map[string]any{"serviceIpv4Cidr": model.ServiceCIDR, "ipFamily": "ipv4",
			"elasticLoadBalancing": map[string]any{"enabled": false}},
		"logging":              loggingOut(c.Logging),
		"certificateAuthority": map[string]any{},
		"tags":                 map[string]string{},
		"health":               map[string]any{"issues": health(c)},
		"accessConfig": map[string]any{"authenticationMode": c.AuthenticationMode,
			"bootstrapClusterCreatorAdminPermissions": c.BootstrapAdmin},
		"upgradePolicy": map[string]any{"supportType": "STANDARD"},
	}
	if c.ClientRequestToken != "" {
		out["clientRequestToken"] = c.ClientRequestToken
	}
	if e := clusters.EncryptionOut(c.Encryption); e != nil {
		out["encryptionConfig"] = e
	}
	if c.RoleArn != "" {
		out["roleArn"] = c.RoleArn
	}
	if c.Tags != nil {
		out["tags"] = c.Tags
	}
	if c.Endpoint != "" {
		out["endpoint"] = c.Endpoint
	}
	if c.CertificateAuthority != "" {
		out["certificateAuthority"] = map[string]any{"data": base64.StdEncoding.EncodeToString([]byte(c.CertificateAuthority))}
	}
	return out
}
