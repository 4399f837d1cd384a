package controlplane

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"skiff.dev/skiff/internal/insights"
	"skiff.dev/skiff/internal/model"
)

// InsightsInterval is how often a serving cluster's upgrade insights are
// refreshed without being asked (StartInsightsRefresh asks at once).
const InsightsInterval = 2 * time.Minute

// stepInsights refreshes the cluster's upgrade insights when asked or due:
// each apiserver's deprecated-API metrics, their audit logs (the clients),
// the nodes' kubelets and kube-proxy, against the next version.
func (w *worker) stepInsights(ctx context.Context, p *pass) (outcome, error) {
	if !serving(p) || w.admin == nil || w.adminCfg == nil {
		return waiting("no apiserver serves yet"), nil
	}
	asked := p.c.Refresh.Status == model.RefreshInProgress
	if !asked && time.Since(w.insightsAt) < InsightsInterval {
		return done("Fresh", "%d insights", len(p.c.Insights)), nil
	}
	w.insightsAt = time.Now()
	src := insights.Sources{Admin: w.admin}
	for i := range p.c.APIServers {
		cfg := rest.CopyConfig(w.adminCfg)
		cfg.Host = "https://" + hostPort(p.l.APIServerIP(i), APIServerPort)
		cfg.Dial = nil // straight to the apiserver, not through the endpoint
		cfg.Timeout = 5 * time.Second
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return outcome{}, fmt.Errorf("apiserver %d's client: %w", i, err)
		}
		src.APIServers = append(src.APIServers, cs.CoreV1().RESTClient())
	}
	logs, _ := filepath.Glob(filepath.Join(p.l.AuditDir(), "*.log"))
	src.AuditLogs = logs
	now := time.Now().UTC()
	obs, err := insights.Collect(ctx, src, now)
	_, serr := w.cfg.Store.UpdateCluster(p.c.Key(), func(c *model.Cluster) error {
		if c.Refresh.Started.IsZero() || c.Refresh.Status != model.RefreshInProgress {
			c.Refresh.Started = now
		}
		c.Refresh.Ended = time.Now().UTC()
		if err != nil {
			c.Refresh.Status, c.Refresh.Message = model.RefreshFailed, err.Error()
			return nil
		}
		c.Insights = insights.Compute(c, obs, w.cfg.AddonCatalog, c.Insights, now)
		c.Refresh.Status, c.Refresh.Message = model.RefreshCompleted, "Insights refreshed: "+strconv.Itoa(len(c.Insights))+" checks"
		return nil
	})
	if serr != nil {
		return outcome{}, serr
	}
	if err != nil {
		// Recorded (DescribeInsightsRefresh says why); not an error of
		// the pass, which must not hold anything else up for it.
		w.cfg.Log.Warn("refresh insights", "cluster", p.c.Name, "err", err)
		return done("Failed", "refresh: %v", err), nil
	}
	return done("Refreshed", "at %s", now.Format(time.TimeOnly)), nil
}
