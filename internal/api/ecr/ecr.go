// Package ecr serves the Amazon ECR API (JSON 1.1 protocol: POST with
// X-Amz-Target AmazonEC2ContainerRegistry_V20150921.<Operation>) over the
// store's repository records and the built-in registry's storage, so the
// stock aws CLI and the SDKs manage repositories and images and log in to
// the registry (`aws ecr get-login-password`). Shapes, operation and error
// names follow botocore's ECR model (data/ecr/2015-09-21/service-2.json).
package ecr

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"

	"skiff.dev/skiff/internal/api/awserr"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/registry"
	"skiff.dev/skiff/internal/store"
)

// TargetPrefix is the X-Amz-Target prefix of ECR's operations.
const TargetPrefix = "AmazonEC2ContainerRegistry_V20150921."

// MaxRepositories is how many repositories an account may have here.
const MaxRepositories = 1000

// Handler serves the ECR API.
type Handler struct {
	Store    *store.Store
	Registry *registry.Registry
	Tokens   *registry.Tokens
	Region   string
	// Host is the registry host as clients reach it: repositoryUri is
	// HOST/ACCOUNT/NAME, proxyEndpoint SCHEME://HOST.
	Host string
	// Scheme is the API listener's: https, or http when skiff serves
	// plain HTTP (the default when empty).
	Scheme string
	// Account resolves the caller's account ID from the request.
	Account func(r *http.Request) string
	// AccessKey, if set, resolves the access key the request was signed
	// with: registry passwords are minted for its principal.
	AccessKey func(r *http.Request) string
	// Repositories is an account's repository quota (zero:
	// MaxRepositories).
	Repositories int
	Log          *slog.Logger
}

// call is one request: the caller's account and the JSON body.
type call struct {
	ctx     context.Context
	account string
	key     string // the caller's access key ID, if known
	body    []byte
}

type operation func(h *Handler, c *call) (any, error)

var operations = map[string]operation{
	"CreateRepository":      (*Handler).createRepository,
	"DescribeRepositories":  (*Handler).describeRepositories,
	"DeleteRepository":      (*Handler).deleteRepository,
	"GetAuthorizationToken": (*Handler).getAuthorizationToken,
	"ListImages":            (*Handler).listImages,
	"DescribeImages":        (*Handler).describeImages,
	"BatchDeleteImage":      (*Handler).batchDeleteImage,
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	name, ok := strings.CutPrefix(target, TargetPrefix)
	op := operations[name]
	if r.Method != http.MethodPost || !ok || op == nil {
		names := make([]string, 0, len(operations))
		for n := range operations {
			names = append(names, n)
		}
		sort.Strings(names)
		awserr.WriteJSON11(w, awserr.New(http.StatusBadRequest, "UnknownOperationException", fmt.Sprintf(
			"%s %q is not an ECR operation skiff implements (POST with X-Amz-Target %sOPERATION); it implements %s",
			r.Method, target, TargetPrefix, strings.Join(names, ", "))))
		return
	}
	var body []byte
	if r.Body != nil {
		var err error
		if body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20)); err != nil {
			awserr.WriteJSON11(w, awserr.New(http.StatusBadRequest, "SerializationException", "read the request body: "+err.Error()))
			return
		}
	}
	c := &call{ctx: r.Context(), account: h.Account(r), body: body}
	if h.AccessKey != nil {
		c.key = h.AccessKey(r)
	}
	out, err := op(h, c)
	if err != nil {
		var ae *awserr.Error
		if !errors.As(err, &ae) {
			h.log().Error("ecr: "+name, "account", h.Account(r), "err", err)
			ae = awserr.New(http.StatusInternalServerError, "ServerException", err.Error())
		}
		awserr.WriteJSON11(w, ae)
		return
	}
	awserr.WriteJSON11OK(w, out)
}

func (h *Handler) log() *slog.Logger {
	if h.Log == nil {
		return slog.Default()
	}
	return h.Log
}

// Lookup tells the registry front end about an account's repository: a
// registry.Lookup.
func (h *Handler) Lookup(_ context.Context, account, name string) (registry.Policy, bool, error) {
	rp, err := h.Store.GetRepository(account, name)
	if errors.Is(err, store.ErrNotFound) {
		return registry.Policy{}, false, nil
	}
	if err != nil {
		return registry.Policy{}, false, err
	}
	return registry.Policy{Immutable: rp.ImageTagMutability == model.TagImmutable}, true, nil
}

// decode reads the JSON body into v.
func (c *call) decode(v any) error {
	if len(c.body) == 0 {
		return nil
	}
	if err := json.Unmarshal(c.body, v); err != nil {
		return awserr.New(http.StatusBadRequest, "SerializationException", "the request body is not valid JSON for this operation: "+err.Error())
	}
	return nil
}

func invalid(format string, args ...any) *awserr.Error {
	return awserr.New(http.StatusBadRequest, "InvalidParameterException", fmt.Sprintf(format, args...))
}

// namePattern is RepositoryName's pattern in ECR's model (anchored).
const namePattern = `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`

var nameRE = regexp.MustCompile(`^` + namePattern + `$`)

// maxName is the longest name skiff stores: ACCOUNT/NAME must fit the
// registry's 255 characters (ECR itself allows 256).
const maxName = 255 - 13

// validateName checks a repository name as ECR does.
func validateName(name string) error {
	switch {
	case name == "":
		return invalid("repositoryName is required: pass --repository-name")
	case !nameRE.MatchString(name) || len(name) < 2 || len(name) > 256:
		return invalid("Invalid parameter at 'repositoryName' failed to satisfy constraint: 'must satisfy regular expression '%s' and have length 2 to 256': "+
			"lowercase letters and digits, components separated by '/', words by '.', '_', '__' or '-'; got %q", namePattern, name)
	case len(name) > maxName:
		return invalid("repositoryName %q is %d characters long; skiff stores ACCOUNT/NAME in a registry that allows 255 characters: use at most %d", name, len(name), maxName)
	}
	return nil
}

var registryIDRE = regexp.MustCompile(`^[0-9]{12}$`)

// checkRegistry checks an optional registryId: it must be the caller's
// account (skiff has no cross-account repository policies).
func (c *call) checkRegistry(id string) error {
	switch {
	case id == "" || id == c.account:
		return nil
	case !registryIDRE.MatchString(id):
		return invalid("Invalid parameter at 'registryId' failed to satisfy constraint: 'must satisfy regular expression '[0-9]{12}'': got %q", id)
	default:
		return invalid("registryId %s is not your account's registry (%s): skiff has no cross-account repository policies; omit --registry-id", id, c.account)
	}
}

func repoNotFound(account, name string) error {
	return awserr.New(http.StatusBadRequest, "RepositoryNotFoundException", fmt.Sprintf(
		"The repository with name '%s' does not exist in the registry with id '%s': create it with `aws ecr create-repository --repository-name %s`",
		name, account, name))
}

// repository returns the caller's repository name, validated and existing.
func (h *Handler) repository(c *call, registryID, name string) (*model.Repository, error) {
	if err := c.checkRegistry(registryID); err != nil {
		return nil, err
	}
	if err := validateName(name); err != nil {
		return nil, err
	}
	rp, err := h.Store.GetRepository(c.account, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, repoNotFound(c.account, name)
	}
	if err != nil {
		return nil, fmt.Errorf("get repository %s: %w", name, err)
	}
	return rp, nil
}

// epoch is a JSON 1.1 timestamp: seconds since the epoch, with milliseconds.
func epoch(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }

// repoJSON is ECR's Repository shape.
func (h *Handler) repoJSON(rp *model.Repository) map[string]any {
	return map[string]any{
		"repositoryArn":              repositoryArn(h.Region, rp.Account, rp.Name),
		"registryId":                 rp.Account,
		"repositoryName":             rp.Name,
		"repositoryUri":              h.Host + "/" + rp.Key(),
		"createdAt":                  epoch(rp.CreatedAt),
		"imageTagMutability":         rp.ImageTagMutability,
		"imageScanningConfiguration": map[string]bool{"scanOnPush": rp.ScanOnPush},
		"encryptionConfiguration":    map[string]string{"encryptionType": rp.EncryptionType},
	}
}

type createRepositoryRequest struct {
	RegistryID     string `json:"registryId"`
	RepositoryName string `json:"repositoryName"`
	Tags           []struct {
		Key   string `json:"Key"`
		Value string `json:"Value"`
	} `json:"tags"`
	ImageTagMutability                 string            `json:"imageTagMutability"`
	ImageTagMutabilityExclusionFilters []json.RawMessage `json:"imageTagMutabilityExclusionFilters"`
	ImageScanningConfiguration         *struct {
		ScanOnPush bool `json:"scanOnPush"`
	} `json:"imageScanningConfiguration"`
	EncryptionConfiguration *struct {
		EncryptionType string `json:"encryptionType"`
		KmsKey         string `json:"kmsKey"`
	} `json:"encryptionConfiguration"`
}

func (h *Handler) createRepository(c *call) (any, error) {
	var req createRepositoryRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if err := c.checkRegistry(req.RegistryID); err != nil {
		return nil, err
	}
	if err := validateName(req.RepositoryName); err != nil {
		return nil, err
	}
	rp := &model.Repository{Account: c.account, Name: req.RepositoryName, CreatedAt: time.Now().UTC(),
		ImageTagMutability: model.TagMutable, EncryptionType: "AES256"}
	switch req.ImageTagMutability {
	case "", model.TagMutable:
	case model.TagImmutable:
		rp.ImageTagMutability = model.TagImmutable
	case "IMMUTABLE_WITH_EXCLUSION", "MUTABLE_WITH_EXCLUSION":
		return nil, invalid("imageTagMutability %s is not supported by skiff: use MUTABLE or IMMUTABLE", req.ImageTagMutability)
	default:
		return nil, invalid("Invalid parameter at 'imageTagMutability' failed to satisfy constraint: 'Member must satisfy enum value set: [MUTABLE, IMMUTABLE]': got %q", req.ImageTagMutability)
	}
	if len(req.ImageTagMutabilityExclusionFilters) > 0 {
		return nil, invalid("imageTagMutabilityExclusionFilters are not supported by skiff: omit them")
	}
	if s := req.ImageScanningConfiguration; s != nil {
		rp.ScanOnPush = s.ScanOnPush // recorded; skiff scans nothing
	}
	if e := req.EncryptionConfiguration; e != nil && e.EncryptionType != "AES256" {
		return nil, invalid("encryptionType %q is not supported by skiff: use AES256 (or omit encryptionConfiguration)", e.EncryptionType)
	}
	for _, t := range req.Tags {
		if t.Key == "" {
			return nil, awserr.New(http.StatusBadRequest, "InvalidTagParameterException", "a tag key must not be empty")
		}
		if rp.Tags == nil {
			rp.Tags = map[string]string{}
		}
		rp.Tags[t.Key] = t.Value
	}
	quota := cmp.Or(h.Repositories, MaxRepositories)
	if err := h.Store.CreateRepository(rp, quota); err != nil {
		if errors.Is(err, store.ErrQuota) {
			return nil, awserr.New(http.StatusBadRequest, "LimitExceededException", fmt.Sprintf(
				"The operation did not succeed because it would have exceeded a service limit for your account: at most %d repositories", quota))
		}
		if errors.Is(err, store.ErrExists) {
			return nil, awserr.New(http.StatusBadRequest, "RepositoryAlreadyExistsException", fmt.Sprintf(
				"The repository with name '%s' already exists in the registry with id '%s'", rp.Name, rp.Account))
		}
		return nil, fmt.Errorf("create repository %s: %w", rp.Name, err)
	}
	// A new repository starts empty, even if a failed delete left content.
	if err := h.Registry.RemoveRepository(c.ctx, rp.Key()); err != nil {
		h.log().Warn("ecr: clear a new repository's storage", "repository", rp.Key(), "err", err)
	}
	h.log().Info("ecr: repository created", "account", rp.Account, "repository", rp.Name)
	return map[string]any{"repository": h.repoJSON(rp)}, nil
}

type describeRepositoriesRequest struct {
	RegistryID      string   `json:"registryId"`
	RepositoryNames []string `json:"repositoryNames"`
	NextToken       string   `json:"nextToken"`
	MaxResults      *int     `json:"maxResults"`
}

func (h *Handler) describeRepositories(c *call) (any, error) {
	var req describeRepositoriesRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	if err := c.checkRegistry(req.RegistryID); err != nil {
		return nil, err
	}
	out := []map[string]any{}
	if len(req.RepositoryNames) > 0 {
		if req.MaxResults != nil || req.NextToken != "" {
			return nil, invalid("maxResults and nextToken cannot be used with repositoryNames")
		}
		if len(req.RepositoryNames) > 100 {
			return nil, invalid("repositoryNames: at most 100 names, got %d", len(req.RepositoryNames))
		}
		for _, name := range req.RepositoryNames {
			rp, err := h.repository(c, "", name)
			if err != nil {
				return nil, err
			}
			out = append(out, h.repoJSON(rp))
		}
		return map[string]any{"repositories": out}, nil
	}
	max, err := maxResults(req.MaxResults)
	if err != nil {
		return nil, err
	}
	repos, err := h.Store.ListRepositories(c.account)
	if err != nil {
		return nil, fmt.Errorf("list repositories: %w", err)
	}
	page, next, err := paginate(repos, func(r *model.Repository) string { return r.Name }, req.NextToken, max)
	if err != nil {
		return nil, err
	}
	for _, rp := range page {
		out = append(out, h.repoJSON(rp))
	}
	return withNext(map[string]any{"repositories": out}, next), nil
}

type deleteRepositoryRequest struct {
	RegistryID     string `json:"registryId"`
	RepositoryName string `json:"repositoryName"`
	Force          bool   `json:"force"`
}

func (h *Handler) deleteRepository(c *call) (any, error) {
	var req deleteRepositoryRequest
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	rp, err := h.repository(c, req.RegistryID, req.RepositoryName)
	if err != nil {
		return nil, err
	}
	if !req.Force {
		images, err := h.Registry.Images(c.ctx, rp.Key())
		if err != nil {
			return nil, err
		}
		if len(images) > 0 {
			return nil, awserr.New(http.StatusBadRequest, "RepositoryNotEmptyException", fmt.Sprintf(
				"The repository with name '%s' in registry with id '%s' cannot be deleted because it still contains images: delete them with `aws ecr batch-delete-image` or pass --force",
				rp.Name, rp.Account))
		}
	}
	// The record goes first: from then on the registry refuses pushes.
	if err := h.Store.DeleteRepository(rp.Account, rp.Name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, repoNotFound(rp.Account, rp.Name)
		}
		return nil, fmt.Errorf("delete repository %s: %w", rp.Name, err)
	}
	if err := h.Registry.RemoveRepository(c.ctx, rp.Key()); err != nil {
		return nil, err
	}
	h.log().Info("ecr: repository deleted", "account", rp.Account, "repository", rp.Name, "force", req.Force)
	return map[string]any{"repository": h.repoJSON(rp)}, nil
}

func (h *Handler) getAuthorizationToken(c *call) (any, error) {
	var req struct {
		RegistryIDs []string `json:"registryIds"`
	}
	if err := c.decode(&req); err != nil {
		return nil, err
	}
	for _, id := range req.RegistryIDs {
		if err := c.checkRegistry(id); err != nil {
			return nil, err
		}
	}
	pw, exp := h.Tokens.MintFor(c.account, c.key, time.Now())
	data := map[string]any{
		"authorizationToken": base64.StdEncoding.EncodeToString([]byte("AWS:" + pw)),
		"expiresAt":          epoch(exp),
		"proxyEndpoint":      cmp.Or(h.Scheme, "http") + "://" + h.Host,
	}
	return map[string]any{"authorizationData": []any{data}}, nil
}

// maxResults checks an optional maxResults (1–1000; default 100).
func maxResults(v *int) (int, error) {
	if v == nil {
		return 100, nil
	}
	if *v < 1 || *v > 1000 {
		return 0, invalid("Invalid parameter at 'maxResults' failed to satisfy constraint: 'Member must have value between 1 and 1000': got %d", *v)
	}
	return *v, nil
}

// paginate returns the items (sorted by key) after the nextToken's key, at
// most max, and the token of the next page ("" at the end).
func paginate[T any](items []T, key func(T) string, token string, max int) ([]T, string, error) {
	sort.SliceStable(items, func(i, j int) bool { return key(items[i]) < key(items[j]) })
	start := 0
	if token != "" {
		last, err := base64.RawURLEncoding.DecodeString(token)
		if err != nil {
			return nil, "", invalid("Invalid parameter at 'nextToken': not a token of a previous response of this operation")
		}
		start = sort.Search(len(items), func(i int) bool { return key(items[i]) > string(last) })
	}
	end := min(start+max, len(items))
	next := ""
	if end < len(items) {
		next = base64.RawURLEncoding.EncodeToString([]byte(key(items[end-1])))
	}
	return items[start:end], next, nil
}

func withNext(out map[string]any, next string) map[string]any {
	if next != "" {
		out["nextToken"] = next
	}
	return out
}

// Resolve finds a repository of account for IAM authorization (an
// authz.Resolver for kind "repository"): its ARN and tags.
func (h *Handler) Resolve(account, kind string, names ...string) (string, map[string]string, bool) {
	if kind != "repository" || len(names) != 1 {
		return "", nil, false
	}
	rp, err := h.Store.GetRepository(account, names[0])
	if err != nil {
		return "", nil, false
	}
	return repositoryArn(h.Region, account, rp.Name), rp.Tags, true
}

func repositoryArn(region, account, name string) string {
	return fmt.Sprintf("arn:aws:ecr:%s:%s:repository/%s", region, account, name)
}
