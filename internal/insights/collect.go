package insights

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"skiff.dev/skiff/internal/model"
)

// ParseMetrics reads the apiserver_requested_deprecated_apis series of an
// apiserver's /metrics (Prometheus text): one Use per API requested.
func ParseMetrics(r io.Reader) ([]Use, error) {
	var out []Use
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, "apiserver_requested_deprecated_apis{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok || strings.TrimSpace(value) == "0" {
			continue
		}
		l := parseLabels(labels)
		if l["subresource"] != "" {
			continue // the resource's own entry names the API
		}
		out = append(out, Use{Group: l["group"], Version: l["version"], Resource: l["resource"], RemovedRelease: l["removed_release"]})
	}
	return out, sc.Err()
}

// parseLabels parses `a="x",b="y"` (values without escaped quotes, as
// these labels are).
func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for s != "" {
		k, rest, ok := strings.Cut(s, `="`)
		if !ok {
			break
		}
		v, rest, _ := strings.Cut(rest, `"`)
		out[k] = v
		s = strings.TrimPrefix(rest, ",")
	}
	return out
}

// auditEvent is what ParseAudit reads of an audit.k8s.io/v1 Event.
type auditEvent struct {
	Stage     string `json:"stage"`
	UserAgent string `json:"userAgent"`
	User      struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource   string `json:"resource"`
		APIGroup   string `json:"apiGroup"`
		APIVersion string `json:"apiVersion"`
	} `json:"objectRef"`
	Received    time.Time         `json:"requestReceivedTimestamp"`
	Annotations map[string]string `json:"annotations"`
}

// ParseAudit reads an apiserver's audit log (JSON lines) and counts the
// requests to deprecated APIs since since, by API key (Use.Key) and
// client (user agent and user).
func ParseAudit(r io.Reader, since time.Time, into map[string]map[string]*model.ClientStat) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !strings.Contains(string(line), `"k8s.io/deprecated":"true"`) {
			continue // most lines: skip the decoding
		}
		var ev auditEvent
		if err := json.Unmarshal(line, &ev); err != nil || ev.ObjectRef == nil || ev.Received.Before(since) {
			continue
		}
		key := ev.ObjectRef.APIGroup + "/" + ev.ObjectRef.APIVersion + "/" + ev.ObjectRef.Resource
		client := ev.UserAgent + "\x00" + ev.User.Username
		if into[key] == nil {
			into[key] = map[string]*model.ClientStat{}
		}
		st := into[key][client]
		if st == nil {
			st = &model.ClientStat{UserAgent: ev.UserAgent, Username: ev.User.Username}
			into[key][client] = st
		}
		st.Requests++
		if ev.Received.After(st.Last) {
			st.Last = ev.Received
		}
	}
	return sc.Err()
}

// Sources are where Collect looks.
type Sources struct {
	Admin kubernetes.Interface
	// APIServers read each apiserver's /metrics (deprecated APIs are
	// counted per apiserver).
	APIServers []rest.Interface
	// AuditLogs are the apiservers' audit logs, rotated files included.
	AuditLogs []string
}

// AuditWindow is how far back the audit logs are read (as EKS counts a
// client's requests over the last 30 days).
const AuditWindow = 30 * 24 * time.Hour

// Collect gathers what Compute needs. An apiserver that does not answer
// is skipped (its deprecated requests are missed until the next refresh);
// the nodes and kube-proxy must be read.
func Collect(ctx context.Context, src Sources, now time.Time) (Observed, error) {
	obs := Observed{Kubelets: map[string]string{}}
	seen := map[string]*Use{}
	for _, api := range src.APIServers {
		body, err := api.Get().AbsPath("/metrics").DoRaw(ctx)
		if err != nil {
			continue
		}
		uses, err := ParseMetrics(strings.NewReader(string(body)))
		if err != nil {
			return obs, fmt.Errorf("parse an apiserver's metrics: %w", err)
		}
		for _, u := range uses {
			if seen[u.Key()] == nil {
				u := u
				seen[u.Key()] = &u
			}
		}
	}
	clients := map[string]map[string]*model.ClientStat{}
	for _, path := range src.AuditLogs {
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		err = ParseAudit(f, now.Add(-AuditWindow), clients)
		f.Close()
		if err != nil {
			return obs, fmt.Errorf("read audit log %s: %w", path, err)
		}
	}
	// The audit log may know APIs that no apiserver running now counted
	// (one replaced since): they were used all the same.
	for key := range clients {
		if seen[key] == nil {
			parts := strings.SplitN(key, "/", 3)
			seen[key] = &Use{Group: parts[0], Version: parts[1], Resource: parts[2]}
		}
	}
	for key, u := range seen {
		for _, st := range clients[key] {
			u.Clients = append(u.Clients, *st)
		}
		sort.Slice(u.Clients, func(i, j int) bool { return u.Clients[i].Last.After(u.Clients[j].Last) })
		obs.Deprecated = append(obs.Deprecated, *u)
	}
	sort.Slice(obs.Deprecated, func(i, j int) bool { return obs.Deprecated[i].Key() < obs.Deprecated[j].Key() })

	nodes, err := src.Admin.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return obs, fmt.Errorf("list nodes: %w", err)
	}
	for _, n := range nodes.Items {
		obs.Kubelets[n.Name] = n.Status.NodeInfo.KubeletVersion
	}
	ds, err := src.Admin.AppsV1().DaemonSets("kube-system").Get(ctx, "kube-proxy", metav1.GetOptions{})
	switch {
	case err == nil && len(ds.Spec.Template.Spec.Containers) > 0:
		image := ds.Spec.Template.Spec.Containers[0].Image
		if i := strings.LastIndex(image, ":"); i >= 0 {
			obs.KubeProxy, _, _ = strings.Cut(image[i+1:], "-")
		}
	case err != nil && !isNotFound(err):
		return obs, fmt.Errorf("read kube-proxy: %w", err)
	}
	return obs, nil
}

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }
