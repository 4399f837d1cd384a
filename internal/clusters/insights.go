package clusters

import (
	"fmt"
	"slices"
	"time"

	"skiff.dev/skiff/internal/model"
)

// InsightsFilter is ListInsights' filter; empty fields match everything.
type InsightsFilter struct {
	Categories, KubernetesVersions, Statuses []string
}

var (
	insightCategories = []string{model.InsightUpgradeReadiness, "MISCONFIGURATION"}
	insightStatuses   = []string{model.InsightPassing, model.InsightWarning, model.InsightError, model.InsightUnknown}
)

// Insights returns a cluster's insights that match f, in a stable order.
func (s *Service) Insights(account, name string, f InsightsFilter) ([]model.Insight, error) {
	for _, c := range f.Categories {
		if !slices.Contains(insightCategories, c) {
			return nil, fmt.Errorf("%w: unknown insight category %q; the categories are %v", ErrInvalid, c, insightCategories)
		}
	}
	for _, st := range f.Statuses {
		if !slices.Contains(insightStatuses, st) {
			return nil, fmt.Errorf("%w: unknown insight status %q; the statuses are %v", ErrInvalid, st, insightStatuses)
		}
	}
	c, err := s.Get(account, name)
	if err != nil {
		return nil, err
	}
	var out []model.Insight
	for _, in := range c.Insights {
		if (len(f.Categories) == 0 || slices.Contains(f.Categories, in.Category)) &&
			(len(f.KubernetesVersions) == 0 || slices.Contains(f.KubernetesVersions, in.KubernetesVersion)) &&
			(len(f.Statuses) == 0 || slices.Contains(f.Statuses, in.Status)) {
			out = append(out, in)
		}
	}
	return out, nil
}

// Insight returns one of a cluster's insights.
func (s *Service) Insight(account, name, id string) (*model.Insight, error) {
	c, err := s.Get(account, name)
	if err != nil {
		return nil, err
	}
	for _, in := range c.Insights {
		if in.ID == id {
			return &in, nil
		}
	}
	return nil, fmt.Errorf("%w: No insight found for ID: %s", ErrNotFound, id)
}

// StartInsightsRefresh asks the reconciler to refresh a cluster's
// insights now; it returns the refresh's state.
func (s *Service) StartInsightsRefresh(account, name string) (model.InsightsRefresh, error) {
	var out model.InsightsRefresh
	_, err := s.nodegroupCluster(account, name, func(c *model.Cluster) error {
		if c.Status != model.StatusActive && c.Status != model.StatusUpdating {
			return fmt.Errorf("%w: cluster %s is %s; insights are refreshed while it serves", ErrInvalidRequest, name, c.Status)
		}
		if c.Refresh.Status != model.RefreshInProgress {
			c.Refresh = model.InsightsRefresh{Status: model.RefreshInProgress, Message: "Insights refresh requested", Started: time.Now().UTC()}
		}
		out = c.Refresh
		return nil
	})
	return out, err
}

// InsightsRefresh returns the state of a cluster's last insights refresh.
func (s *Service) InsightsRefresh(account, name string) (model.InsightsRefresh, error) {
	c, err := s.Get(account, name)
	if err != nil {
		return model.InsightsRefresh{}, err
	}
	if c.Refresh.Status == "" {
		return model.InsightsRefresh{}, fmt.Errorf("%w: no insights refresh has run for cluster %s yet; start one with 'aws eks start-insights-refresh'", ErrNotFound, name)
	}
	return c.Refresh, nil
}
