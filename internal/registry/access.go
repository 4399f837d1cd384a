package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	v2 "github.com/distribution/distribution/v3/registry/api/v2"
	"github.com/gorilla/mux"
	"github.com/opencontainers/go-digest"
)

// Host returns the registry host clients use for skiff's API listener:
// its address, or localhost:PORT if it listens on every address.
func Host(addr net.Addr) string {
	if tcp, ok := addr.(*net.TCPAddr); ok && (tcp.IP == nil || tcp.IP.IsUnspecified()) {
		return net.JoinHostPort("localhost", strconv.Itoa(tcp.Port))
	}
	return addr.String()
}

// SplitName splits a registry repository name into the account that owns
// it and the ECR repository name: "123456789012/web" → ("123456789012",
// "web"). A name whose first component is not an account ID is a system
// repository: account "".
func SplitName(repo string) (account, name string) {
	first, rest, ok := strings.Cut(repo, "/")
	if accountRE.MatchString(first) {
		if !ok {
			return first, "" // the bare account: no repository
		}
		return first, rest
	}
	return "", repo
}

// Decisions about a request to a repository.
type decision int

const (
	allow       decision = iota
	denySystem           // a write to a system repository
	denyAccount          // another account's repository
	ownRepo              // the caller's account: allowed if the ECR repository exists
	unknownName          // not a repository name the caller could ever use
)

// decide is the access rule: anyone with a valid token pulls system
// repositories; an account reads and writes its own (existing) ones; no
// account touches another's.
func decide(account, repo string, write bool) (decision, string) {
	owner, name := SplitName(repo)
	switch {
	case owner == "" && write:
		return denySystem, name
	case owner == "":
		return allow, name
	case name == "":
		return unknownName, name
	case owner != account:
		return denyAccount, name
	default:
		return ownRepo, name
	}
}

// Policy is what the registry needs to know about an ECR repository.
type Policy struct {
	Immutable bool // tags may not move to another manifest
}

// Lookup finds an account's ECR repository (found false if it does not
// exist).
type Lookup func(ctx context.Context, account, name string) (p Policy, found bool, err error)

// Auth configures Authenticated.
type Auth struct {
	Tokens *Tokens
	// Host is the registry host as clients reach it (messages, realm).
	Host   string
	Lookup Lookup
	Log    *slog.Logger
	// Authorize, if set, decides whether the principal of the access key
	// a password was minted for may do an ECR action ("BatchGetImage",
	// "PutImage", …) on a repository of its account; it returns the
	// refusal's message. Passwords minted without a key are refused then.
	Authorize func(req *http.Request, account, accessKeyID, action, name string) error
}

// ecrAction is the ECR API action a registry request stands for, as ECR
// documents for `docker pull` and `docker push`.
func ecrAction(route, method string) string {
	read := method == http.MethodGet || method == http.MethodHead
	switch {
	case route == v2.RouteNameManifest && read:
		return "BatchGetImage"
	case route == v2.RouteNameManifest && method == http.MethodDelete:
		return "BatchDeleteImage"
	case route == v2.RouteNameManifest:
		return "PutImage"
	case route == v2.RouteNameBlob && method == http.MethodHead:
		return "BatchCheckLayerAvailability"
	case route == v2.RouteNameBlob && read:
		return "GetDownloadUrlForLayer"
	case route == v2.RouteNameBlob:
		return "BatchDeleteImage"
	case route == v2.RouteNameBlobUpload:
		return "InitiateLayerUpload"
	case route == v2.RouteNameBlobUploadChunk && method == http.MethodPatch:
		return "UploadLayerPart"
	case route == v2.RouteNameBlobUploadChunk && method == http.MethodPut:
		return "CompleteLayerUpload"
	case route == v2.RouteNameBlobUploadChunk:
		return "InitiateLayerUpload"
	case route == v2.RouteNameTags:
		return "ListImages"
	case read:
		return "BatchGetImage"
	}
	return "PutImage"
}

// permit asks Authorize about an action on an account's own repository.
func (a *Auth) permit(req *http.Request, account, key, action, name string) error {
	if a.Authorize == nil {
		return nil
	}
	if key == "" {
		return fmt.Errorf("this password names no principal: get a new one with `aws ecr get-login-password`")
	}
	return a.Authorize(req, account, key, action, name)
}

// Authenticated serves the distribution API with ECR's authentication:
// HTTP Basic, user AWS, a password from GetAuthorizationToken. A token of
// account A pulls system repositories and pulls, pushes and deletes in
// A's existing ECR repositories (ACCOUNT/NAME); nothing else.
func (r *Registry) Authenticated(a Auth) http.Handler {
	if a.Log == nil {
		a.Log = slog.Default()
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
		account, key, ok := a.authenticate(w, req)
		if !ok {
			return
		}
		var m mux.RouteMatch
		if !v2.Router().Match(req, &m) || m.Route == nil {
			r.app.ServeHTTP(w, req) // not an API path: the registry's 404
			return
		}
		switch m.Route.GetName() {
		case v2.RouteNameBase:
			r.app.ServeHTTP(w, req)
			return
		case v2.RouteNameCatalog:
			r.catalog(w, req, func(repo string) bool {
				d, name := decide(account, repo, false)
				if d == ownRepo {
					_, found, err := a.Lookup(req.Context(), account, name)
					return err == nil && found && a.permit(req, account, key, "DescribeRepositories", name) == nil
				}
				return d == allow
			})
			return
		}
		repo := m.Vars["name"]
		write := req.Method != http.MethodGet && req.Method != http.MethodHead
		if !a.allowed(w, req, account, repo, write) {
			return
		}
		if d, name := decide(account, repo, write); d == ownRepo {
			if err := a.permit(req, account, key, ecrAction(m.Route.GetName(), req.Method), name); err != nil {
				Deny(w, err.Error())
				return
			}
		}
		switch {
		case m.Route.GetName() == v2.RouteNameManifest && req.Method == http.MethodPut:
			if !r.tagWritable(w, req, a, account, repo, m.Vars["reference"]) {
				return
			}
		case m.Route.GetName() == v2.RouteNameBlobUpload && req.Method == http.MethodPost:
			// A cross-repository mount reads the source repository: without
			// access to it, upload as usual (the registry's answer when a
			// mount fails).
			if from := req.URL.Query().Get("from"); from != "" && !a.mayPull(req, account, key, from) {
				q := req.URL.Query()
				q.Del("mount")
				q.Del("from")
				req.URL.RawQuery = q.Encode()
			}
		}
		r.app.ServeHTTP(w, req)
	})
}

// authenticate checks the request's Basic credentials: user AWS and a
// valid token; it answers 401 itself otherwise.
func (a *Auth) authenticate(w http.ResponseWriter, req *http.Request) (account, key string, ok bool) {
	login := fmt.Sprintf("aws ecr get-login-password | docker login --username AWS --password-stdin %s", a.Host)
	user, pw, ok := req.BasicAuth()
	var msg string
	switch {
	case !ok:
		msg = "no basic auth credentials: log in with user AWS and the password from `aws ecr get-login-password` (" + login + ")"
	case user != "AWS":
		msg = fmt.Sprintf("the user name must be AWS, not %q, with the password from `aws ecr get-login-password` (%s)", user, login)
	default:
		account, key, err := a.Tokens.VerifyKey(pw, time.Now())
		if err == nil {
			return account, key, true
		}
		if errors.Is(err, ErrTokenExpired) {
			msg = "Your authorization token has expired. Reauthenticate and try again: get a new password with `aws ecr get-login-password` (" + login + ")"
		} else {
			msg = "Your authorization token is invalid: the password must come from `aws ecr get-login-password` of this skiff (" + login + ")"
		}
	}
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Basic realm="http://%s/",service="ecr.amazonaws.com"`, a.Host))
	errcode.ServeJSON(w, errcode.ErrorCodeUnauthorized.WithMessage(msg))
	return "", "", false
}

// allowed applies decide (and the repository's existence) to a request; it
// answers a refusal itself.
func (a *Auth) allowed(w http.ResponseWriter, req *http.Request, account, repo string, write bool) bool {
	d, name := decide(account, repo, write)
	switch d {
	case allow:
		return true
	case denySystem:
		Deny(w, fmt.Sprintf("%s is a skiff system repository: it is read-only; push to a repository of your account instead: %s/%s/%s (create it with `aws ecr create-repository --repository-name %s`)",
			repo, a.Host, account, repo, repo))
	case denyAccount:
		owner, _ := SplitName(repo)
		Deny(w, fmt.Sprintf("User of account %s is not authorized to access repository %s of account %s: a token of `aws ecr get-login-password` grants access to its own account's repositories and read access to system images only",
			account, name, owner))
	case unknownName:
		errcode.ServeJSON(w, errcode.ErrorCodeNameUnknown.WithMessage(fmt.Sprintf("%s is not a repository: use %s/%s/NAME", repo, a.Host, account)))
	case ownRepo:
		_, found, err := a.Lookup(req.Context(), account, name)
		if err != nil {
			a.Log.Error("registry: look up ECR repository", "account", account, "repository", name, "err", err)
			errcode.ServeJSON(w, errcode.ErrorCodeUnknown.WithMessage("looking up the repository failed: "+err.Error()))
			return false
		}
		if found {
			return true
		}
		errcode.ServeJSON(w, errcode.ErrorCodeNameUnknown.WithMessage(fmt.Sprintf(
			"The repository with name '%s' does not exist in the registry with id '%s': create it with `aws ecr create-repository --repository-name %s`",
			name, account, name)))
	}
	return false
}

// mayPull reports, without answering, whether account may pull repo.
func (a *Auth) mayPull(req *http.Request, account, key, repo string) bool {
	d, name := decide(account, repo, false)
	if d == ownRepo {
		_, found, err := a.Lookup(req.Context(), account, name)
		return err == nil && found && a.permit(req, account, key, "BatchGetImage", name) == nil
	}
	return d == allow
}

// maxManifest bounds a manifest read for the immutability check (the
// registry's own limit).
const maxManifest = 4 << 20

// tagWritable enforces IMMUTABLE tag mutability on a manifest PUT by tag:
// an existing tag may only be pushed again with the same manifest.
func (r *Registry) tagWritable(w http.ResponseWriter, req *http.Request, a Auth, account, repo, ref string) bool {
	if _, err := digest.Parse(ref); err == nil {
		return true // by digest: no tag moves
	}
	_, name := SplitName(repo)
	p, _, err := a.Lookup(req.Context(), account, name)
	if err != nil || !p.Immutable {
		return err == nil
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, maxManifest+1))
	if err != nil {
		errcode.ServeJSON(w, errcode.ErrorCodeManifestInvalid.WithMessage("read the manifest: "+err.Error()))
		return false
	}
	req.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), req.Body))
	old, err := r.TagDigest(req.Context(), repo, ref)
	if errors.Is(err, ErrImageNotFound) {
		return true
	}
	if err != nil {
		errcode.ServeJSON(w, errcode.ErrorCodeUnknown.WithMessage(err.Error()))
		return false
	}
	if old == digest.FromBytes(body).String() {
		return true
	}
	errcode.ServeJSON(w, errcode.ErrorCodeTagInvalid.WithMessage(fmt.Sprintf(
		"The image tag '%s' already exists in the '%s' repository and cannot be overwritten because the repository is immutable: push it under a new tag, or delete the tag first with `aws ecr batch-delete-image`",
		ref, name)))
	return false
}

// catalog serves /v2/_catalog with the repositories visible passes, with
// the API's n/last pagination.
func (r *Registry) catalog(w http.ResponseWriter, req *http.Request, visible func(repo string) bool) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		Deny(w, "the catalog is read-only")
		return
	}
	all, err := r.Repositories(req.Context())
	if err != nil {
		errcode.ServeJSON(w, errcode.ErrorCodeUnknown.WithMessage(err.Error()))
		return
	}
	q := req.URL.Query()
	last := q.Get("last")
	n := -1
	if s := q.Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			errcode.ServeJSON(w, errcode.ErrorCodePaginationNumberInvalid.WithDetail(map[string]string{"n": s}))
			return
		}
		n = v
	}
	sort.Strings(all)
	repos := []string{}
	more := false
	for _, repo := range all {
		if last != "" && repo <= last || !visible(repo) {
			continue
		}
		if n >= 0 && len(repos) == n {
			more = true
			break
		}
		repos = append(repos, repo)
	}
	if more && len(repos) > 0 {
		next := url.Values{"n": {strconv.Itoa(n)}, "last": {repos[len(repos)-1]}}
		w.Header().Set("Link", fmt.Sprintf(`</v2/_catalog?%s>; rel="next"`, next.Encode()))
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string][]string{"repositories": repos})
}

// ReadOnlyFor serves pulls of the system repositories (to anyone, as a
// public registry does) and of account's own ones (ACCOUNT/…: only to
// requests node accepts, the account's nodes, as ECR wants the node's
// credentials); other names are unknown and writes are refused. It is the
// registry nodes of account's VPCs pull from.
func (r *Registry) ReadOnlyFor(account string, node func(*http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			Deny(w, "this registry endpoint is read-only: push from the host with credentials from `aws ecr get-login-password`")
			return
		}
		var m mux.RouteMatch
		if !v2.Router().Match(req, &m) || m.Route == nil {
			r.app.ServeHTTP(w, req)
			return
		}
		visible := func(repo string) bool {
			d, _ := decide(account, repo, false)
			return d == allow || d == ownRepo
		}
		switch m.Route.GetName() {
		case v2.RouteNameBase:
			r.app.ServeHTTP(w, req)
		case v2.RouteNameCatalog:
			r.catalog(w, req, visible)
		default:
			repo := m.Vars["name"]
			if !visible(repo) {
				errcode.ServeJSON(w, errcode.ErrorCodeNameUnknown.WithMessage("repository name not known to registry: "+repo))
				return
			}
			if d, _ := decide(account, repo, false); d == ownRepo {
				if err := node(req); err != nil {
					errcode.ServeJSON(w, errcode.ErrorCodeUnauthorized.WithMessage("pulling "+repo+" needs a node's credentials: "+err.Error()))
					return
				}
			}
			r.app.ServeHTTP(w, req)
		}
	})
}
