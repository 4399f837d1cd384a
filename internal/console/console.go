// Package console is skiff's web console at /console/: sign-in with an
// access key pair or a one-time link (`skiff console`), the account's
// clusters, a cluster's overview, topology (every control-plane instance
// and node by zone, live), compute, events, and cluster and node group
// changes. It is a client of skiff's API like any other: every page is
// made from AWS SDK calls signed as the signed-in principal and handed to
// the API's handler in-process, so the same IAM policies and checks apply
// to a click as to `aws eks …`. Pages are Go templates that work without
// JavaScript; a small script swaps in live parts pushed by server-sent
// events.
package console

import (
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"skiff.dev/skiff/internal/sigv4"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config of a console.
type Config struct {
	// API is skiff's API handler (the router): every call goes through it.
	API http.Handler
	// Endpoint is the API's URL as clients name it (signed as the host;
	// the requests never leave the process).
	Endpoint string
	Region   string
	// Lookup finds the current secret of a session's access key.
	Lookup sigv4.Lookup
	// Secure marks cookies Secure (the API serves TLS).
	Secure bool
	// Refresh is how often live parts are re-read (default 500 ms: a
	// change shows within 2 s with room to spare).
	Refresh time.Duration
	Log     *slog.Logger
}

// Handler serves the console under /console/.
type Handler struct {
	cfg      Config
	sessions *sessions
	pages    map[string]*template.Template
	mux      *http.ServeMux
	done     chan struct{}
	once     sync.Once
	jobs     sync.WaitGroup
	// pendingGroups are first node groups waiting for their cluster to
	// be ACTIVE (EKS takes node groups of ACTIVE clusters only), by
	// account/cluster.
	pendingGroups sync.Map
	now           func() time.Time
}

// New returns a console.
func New(cfg Config) (*Handler, error) {
	if cfg.API == nil || cfg.Lookup == nil || cfg.Endpoint == "" {
		return nil, errors.New("console: API, Lookup and Endpoint are required")
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	if cfg.Refresh == 0 {
		cfg.Refresh = 500 * time.Millisecond
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	h := &Handler{cfg: cfg, sessions: newSessions(), pages: map[string]*template.Template{}, mux: http.NewServeMux(),
		done: make(chan struct{}), now: time.Now}
	for _, page := range []string{"signin", "clusters", "new", "cluster", "ecr", "iam"} {
		t, err := template.New(page).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html", "templates/"+page+".html")
		if err != nil {
			return nil, err
		}
		h.pages[page] = t
	}
	static, _ := fs.Sub(staticFS, "static")
	h.mux.Handle("GET /console/static/", http.StripPrefix("/console/static/", http.FileServerFS(static)))
	h.mux.HandleFunc("GET /console/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/console/clusters", http.StatusSeeOther)
	})
	h.mux.HandleFunc("GET /console/signin", h.signinPage)
	h.mux.HandleFunc("POST /console/signin", h.signin)
	// Every other page needs a session (and a change, its CSRF token).
	for pattern, fn := range map[string]func(*request){
		"POST /console/signout":                                h.signout,
		"GET /console/clusters":                                h.clusters,
		"GET /console/clusters/live":                           h.clustersLive,
		"GET /console/clusters/new":                            h.newCluster,
		"POST /console/clusters":                               h.createCluster,
		"GET /console/clusters/{name}":                         h.cluster,
		"GET /console/clusters/{name}/live":                    h.clusterLive,
		"POST /console/clusters/{name}/delete":                 h.deleteCluster,
		"POST /console/clusters/{name}/hibernate":              h.hibernate,
		"POST /console/clusters/{name}/wake":                   h.wake,
		"POST /console/clusters/{name}/nodegroups":             h.createNodegroup,
		"POST /console/clusters/{name}/nodegroups/{ng}/scale":  h.scaleNodegroup,
		"POST /console/clusters/{name}/nodegroups/{ng}/delete": h.deleteNodegroup,
		"POST /console/clusters/{name}/addons":                 h.createAddon,
		"POST /console/clusters/{name}/addons/{addon}/delete":  h.deleteAddon,
		"POST /console/clusters/{name}/access":                 h.createAccess,
		"POST /console/clusters/{name}/access/delete":          h.deleteAccess,
		"POST /console/clusters/{name}/updates":                h.startUpdate,
		"POST /console/clusters/{name}/tags":                   h.tag,
		"POST /console/clusters/{name}/tags/delete":            h.untag,
		"GET /console/ecr":                                     h.ecrPage,
		"GET /console/iam":                                     h.iamPage,
	} {
		h.mux.HandleFunc(pattern, h.authed(fn))
	}
	h.mux.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no such console page: "+r.URL.Path, http.StatusNotFound)
	})
	return h, nil
}

// Close ends the live streams and waits for background jobs (a node
// group created once its new cluster is ACTIVE) to notice.
func (h *Handler) Close() {
	h.once.Do(func() { close(h.done) })
	h.jobs.Wait()
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "same-origin") // "no-referrer" makes browsers send "Origin: null"
	w.Header().Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	w.Header().Set("Cache-Control", "no-store")
	h.mux.ServeHTTP(w, r)
}

// request is one authenticated console request.
type request struct {
	w    http.ResponseWriter
	r    *http.Request
	sess *session
	api  *client
	ctx  context.Context
}

// authed wraps a page that needs a session (and, for a change, the
// session's CSRF token and a same-origin request).
func (h *Handler) authed(fn func(*request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(cookieName)
		var sess *session
		ok := false
		if err == nil {
			sess, ok = h.sessions.get(c.Value, h.now())
		}
		if !ok {
			h.toSignin(w, r, "")
			return
		}
		if r.Method != http.MethodGet {
			if !sameOrigin(r) {
				http.Error(w, "refused: this change does not come from a console page (cross-site request)", http.StatusForbidden)
				return
			}
			if !validCSRF(sess, r.PostFormValue("csrf")) {
				http.Error(w, "refused: the form's CSRF token is missing or stale; reload the page and try again", http.StatusForbidden)
				return
			}
		}
		// A key deleted or deactivated ends its sessions.
		if _, err := h.cfg.Lookup(r.Context(), sess.AccessKeyID); err != nil {
			h.sessions.remove(c.Value)
			h.toSignin(w, r, "Your access key "+sess.AccessKeyID+" no longer works; sign in again.")
			return
		}
		ctx := withOrigin(r.Context(), r)
		fn(&request{w: w, r: r, sess: sess, ctx: ctx, api: h.client(sess.AccessKeyID)})
	}
}

// client signs as the access key akid, with its secret as the identity
// store holds it at each call.
func (h *Handler) client(akid string) *client {
	creds := aws.CredentialsProviderFunc(func(ctx context.Context) (aws.Credentials, error) {
		s, err := h.cfg.Lookup(ctx, akid)
		if err != nil {
			return aws.Credentials{}, err
		}
		return aws.Credentials{AccessKeyID: akid, SecretAccessKey: s.SecretAccessKey, SessionToken: s.SessionToken, Source: "skiff console"}, nil
	})
	return newClient(h.cfg.API, h.cfg.Endpoint, h.cfg.Region, creds)
}

// sameOrigin refuses a change whose Origin (or, without one, Referer)
// names another site. Browsers send Origin on every POST.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		o = r.Header.Get("Referer")
	}
	if o == "" {
		return true // not a browser: the CSRF token decides
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

func (h *Handler) toSignin(w http.ResponseWriter, r *http.Request, msg string) {
	if strings.HasSuffix(r.URL.Path, "/live") {
		// An event stream: tell the page's script to go.
		w.Header().Set("Content-Type", "text/event-stream")
		w.Write([]byte("event: signin\ndata: /console/signin\n\n"))
		return
	}
	q := url.Values{}
	if r.Method == http.MethodGet {
		q.Set("next", r.URL.RequestURI())
	}
	if msg != "" {
		q.Set("msg", msg)
	}
	http.Redirect(w, r, "/console/signin?"+q.Encode(), http.StatusSeeOther)
}

// render writes a page with the layout.
func (h *Handler) render(w http.ResponseWriter, status int, page string, sess *session, data map[string]any) {
	if data == nil {
		data = map[string]any{}
	}
	data["Session"] = sess
	data["Region"] = h.cfg.Region
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := h.pages[page].ExecuteTemplate(w, "layout", data); err != nil {
		h.cfg.Log.Error("console: render", "page", page, "err", err)
	}
}

// fail shows an API error in its own words (a signed-out key goes back to
// sign-in).
func (h *Handler) fail(q *request, err error) {
	if signedOut(err) {
		if c, e := q.r.Cookie(cookieName); e == nil {
			h.sessions.remove(c.Value)
		}
		h.toSignin(q.w, q.r, apiMessage(err))
		return
	}
	status := http.StatusBadGateway
	if code := apiCode(err); code == "ResourceNotFoundException" || code == "NoSuchEntity" {
		status = http.StatusNotFound
	} else if strings.Contains(code, "AccessDenied") || code == "UnauthorizedOperation" {
		status = http.StatusForbidden
	}
	h.render(q.w, status, "clusters", q.sess, map[string]any{"Error": apiMessage(err)})
}
