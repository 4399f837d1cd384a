package main

import (
	"cmp"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"skiff.dev/skiff/internal/model"
)

// updatePoll is how often the upgrade commands ask DescribeUpdate.
const updatePoll = 500 * time.Millisecond

// upgradeOpts are the flags of `skiff upgrade cluster|nodegroup`.
type upgradeOpts struct {
	cluster, nodegroup, version string
	force                       bool
	timeout                     time.Duration
}

func (o *upgradeOpts) flags(cmd *cobra.Command, version, force string) {
	cmd.Flags().StringVar(&o.version, "version", "", version)
	cmd.Flags().BoolVar(&o.force, "force", false, force)
	cmd.Flags().DurationVar(&o.timeout, "timeout", 30*time.Minute, "how long to wait for the update")
}

func newUpgradeCmd() *cobra.Command {
	up := &cobra.Command{Use: "upgrade", Short: "Move a cluster or a node group to another Kubernetes version"}
	up.AddCommand(newUpgradeClusterCmd(), newUpgradeNodegroupCmd())
	return up
}

func newUpgradeClusterCmd() *cobra.Command {
	var o upgradeOpts
	cmd := &cobra.Command{
		Use:   "cluster NAME",
		Short: "Upgrade a cluster's control plane one minor version, one instance at a time",
		Long: `Upgrade a cluster's control plane (UpdateClusterVersion): show the upgrade
insights for the target version, start the update, then wait until it is
Successful while showing each zone's control-plane instances.

The cluster's node groups keep their version: upgrade them afterwards with
'skiff upgrade nodegroup'.

  skiff upgrade cluster demo                  # to the next minor (1.36 → 1.37)
  skiff upgrade cluster demo --version 1.36   # back to the version it was upgraded from
  skiff upgrade cluster demo --force          # despite blocking upgrade insights`,
		Args: cobra.ExactArgs(1),
	}
	ep := endpointFlag(cmd)
	o.flags(cmd, "Kubernetes version (default: the minor after the cluster's)",
		"upgrade even if upgrade readiness checks (insights) would block it")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		o.cluster = args[0]
		return upgradeCluster(newClient(*ep), o, cmd.ErrOrStderr())
	}
	return cmd
}

func newUpgradeNodegroupCmd() *cobra.Command {
	var o upgradeOpts
	cmd := &cobra.Command{
		Use:   "nodegroup NAME --cluster CLUSTER",
		Short: "Upgrade a node group's nodes: new nodes first, then the old ones drained and removed",
		Long: `Upgrade a managed node group (UpdateNodegroupVersion), by default to the
cluster's version, and wait until the update is Successful while showing
the group's nodes by zone. New nodes join before old ones are drained;
a PodDisruptionBudget that keeps refusing an eviction fails the update
(PodEvictionFailure) unless --force.

  skiff upgrade nodegroup ng-1 --cluster demo                 # to the cluster's version
  skiff upgrade nodegroup ng-1 --cluster demo --version 1.36  # or another (at most the cluster's)
  skiff upgrade nodegroup ng-1 --cluster demo --force         # evict despite PodDisruptionBudgets`,
		Aliases: []string{"ng"},
		Args:    cobra.ExactArgs(1),
	}
	ep := endpointFlag(cmd)
	cmd.Flags().StringVar(&o.cluster, "cluster", "", "the cluster (required)")
	o.flags(cmd, "Kubernetes version (default: the cluster's)",
		"delete pods whose PodDisruptionBudget refuses their eviction instead of failing the update")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if o.cluster == "" {
			return fmt.Errorf("name the cluster: skiff upgrade nodegroup %s --cluster CLUSTER", args[0])
		}
		o.nodegroup = args[0]
		return upgradeNodegroup(newClient(*ep), o, cmd.ErrOrStderr())
	}
	return cmd
}

// upgradeCluster shows the upgrade insights, calls UpdateClusterVersion
// and shows the control plane's instances until the update ends.
func upgradeCluster(c *client, o upgradeOpts, out io.Writer) error {
	cl, err := c.describe(o.cluster)
	if err != nil {
		return err
	}
	if o.version == "" {
		if o.version, err = nextMinor(cl.Version); err != nil {
			return fmt.Errorf("cluster %s: %w; pass --version", o.cluster, err)
		}
	}
	c.printInsights(o.cluster, o.version, out)
	start := time.Now()
	u, err := c.startUpdate("/clusters/"+url.PathEscape(o.cluster)+"/updates", map[string]any{"version": o.version, "force": o.force})
	if err != nil {
		return fmt.Errorf("upgrade cluster %s to %s: %w", o.cluster, o.version, err)
	}
	fmt.Fprintf(out, "upgrading cluster %s from %s to %s (update %s)\n", o.cluster, cl.Version, o.version, u.ID)
	last := ""
	u, err = c.waitUpdate(o.cluster, "", u.ID, o.timeout, func() {
		var snap instancesView
		if c.do("GET", "/skiff/v1/clusters/"+url.PathEscape(o.cluster)+"/instances", nil, &snap) != nil || len(snap.Instances) == 0 {
			return
		}
		if line := controlPlaneProgress(snap); line != last {
			fmt.Fprintf(out, "  %5.1fs  %s\n", time.Since(start).Seconds(), line)
			last = line
		}
	})
	if err != nil {
		return fmt.Errorf("upgrade cluster %s to %s: %w; see 'skiff describe cluster %s' and 'skiff events %s'", o.cluster, o.version, err, o.cluster, o.cluster)
	}
	if u.Status != model.UpdateSuccessful {
		return updateFailure("cluster "+o.cluster, o.version, o.cluster, u)
	}
	fmt.Fprintf(out, "cluster %s is at Kubernetes %s after %s\n", o.cluster, u.param("Version", o.version), time.Since(start).Round(100*time.Millisecond))
	return nil
}

// upgradeNodegroup calls UpdateNodegroupVersion and shows the group's
// nodes (as createNodegroup does) until the update ends.
func upgradeNodegroup(c *client, o upgradeOpts, out io.Writer) error {
	if o.version == "" {
		cl, err := c.describe(o.cluster)
		if err != nil {
			return err
		}
		o.version = cl.Version
	}
	path := "/clusters/" + url.PathEscape(o.cluster) + "/node-groups/" + url.PathEscape(o.nodegroup)
	var cur struct{ Nodegroup struct{ Version string } }
	if err := c.do("GET", path, nil, &cur); err != nil {
		return err
	}
	start := time.Now()
	u, err := c.startUpdate(path+"/update-version", map[string]any{"version": o.version, "force": o.force})
	if err != nil {
		return fmt.Errorf("upgrade node group %s to %s: %w", o.nodegroup, o.version, err)
	}
	fmt.Fprintf(out, "upgrading node group %s of cluster %s from %s to %s (update %s)\n", o.nodegroup, o.cluster, cur.Nodegroup.Version, o.version, u.ID)
	last := ""
	u, err = c.waitUpdate(o.cluster, o.nodegroup, u.ID, o.timeout, func() {
		var g model.Nodegroup
		if c.do("GET", "/skiff/v1/clusters/"+url.PathEscape(o.cluster)+"/nodegroups/"+url.PathEscape(o.nodegroup), nil, &g) != nil {
			return
		}
		if line := nodegroupUpgradeProgress(g, o.version); line != last {
			fmt.Fprintf(out, "  %5.1fs  %s\n", time.Since(start).Seconds(), line)
			last = line
		}
	})
	if err != nil {
		return fmt.Errorf("upgrade node group %s to %s: %w; see 'skiff events %s'", o.nodegroup, o.version, err, o.cluster)
	}
	if u.Status != model.UpdateSuccessful {
		return updateFailure("node group "+o.nodegroup, o.version, o.cluster, u)
	}
	fmt.Fprintf(out, "node group %s is at Kubernetes %s after %s\n", o.nodegroup, u.param("Version", o.version), time.Since(start).Round(100*time.Millisecond))
	return nil
}

// nextMinor returns the Kubernetes version one minor after v: "1.36" → "1.37".
func nextMinor(v string) (string, error) {
	major, minor, ok := strings.Cut(v, ".")
	ma, errMa := strconv.ParseUint(major, 10, 16)
	mi, errMi := strconv.ParseUint(minor, 10, 16)
	if !ok || errMa != nil || errMi != nil {
		return "", fmt.Errorf("version %q is not MAJOR.MINOR (like 1.36)", v)
	}
	return fmt.Sprintf("%d.%d", ma, mi+1), nil
}

// update is the part of EKS' Update shape the CLI reads (UpdateClusterVersion,
// UpdateNodegroupVersion and DescribeUpdate answer with it).
type update struct {
	ID     string              `json:"id"`
	Status string              `json:"status"`
	Type   string              `json:"type"`
	Params []model.UpdateParam `json:"params"`
	Errors []model.UpdateError `json:"errors"`
}

// param returns the value of the update's parameter of that type, or def.
func (u *update) param(typ, def string) string {
	for _, p := range u.Params {
		if p.Type == typ && p.Value != "" {
			return p.Value
		}
	}
	return def
}

// startUpdate POSTs an update request and returns the update it started.
func (c *client) startUpdate(path string, req any) (*update, error) {
	var out struct{ Update update }
	if err := c.do("POST", path, req, &out); err != nil {
		return nil, err
	}
	return &out.Update, nil
}

// waitUpdate asks DescribeUpdate every updatePoll until the update is no
// longer InProgress, calling progress after each answer; it gives up
// after timeout. The update of a node group is found with its name.
func (c *client) waitUpdate(cluster, nodegroup, id string, timeout time.Duration, progress func()) (*update, error) {
	path := "/clusters/" + url.PathEscape(cluster) + "/updates/" + url.PathEscape(id)
	if nodegroup != "" {
		path += "?" + url.Values{"nodegroupName": {nodegroup}}.Encode()
	}
	deadline := time.Now().Add(timeout)
	for {
		var out struct{ Update update }
		if err := c.do("GET", path, nil, &out); err != nil {
			return nil, fmt.Errorf("describe update %s: %w", id, err)
		}
		progress()
		if out.Update.Status != model.UpdateInProgress {
			return &out.Update, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("update %s is still %s after %s", id, out.Update.Status, timeout)
		}
		time.Sleep(updatePoll)
	}
}

// updateFailure is the error of an update that ended other than
// Successful: "upgrade of node group ng-1 to 1.37 failed: PodEvictionFailure: …".
func updateFailure(what, version, cluster string, u *update) error {
	ended := "failed"
	if u.Status != model.UpdateFailed {
		ended = "ended " + u.Status
	}
	return fmt.Errorf("upgrade of %s to %s %s: %s; see 'skiff events %s'", what, version, ended, updateErrors(u.Errors), cluster)
}

// updateErrors lists an update's errors: "Code: message; Code: message".
func updateErrors(errs []model.UpdateError) string {
	if len(errs) == 0 {
		return "no error reported"
	}
	parts := make([]string, len(errs))
	for i, e := range errs {
		parts[i] = e.Code + ": " + e.Message
	}
	return strings.Join(parts, "; ")
}

// controlPlaneProgress is progressLine, followed by the first step of the
// reconciler's last pass that is not done: "5/7 up  a: … | b: …  (Etcd: Upgrading)".
func controlPlaneProgress(snap instancesView) string {
	line := progressLine(snap.Instances)
	for _, cd := range snap.Conditions {
		if cd.Status != model.ConditionTrue {
			return fmt.Sprintf("%s  (%s: %s)", line, cd.Type, cd.Reason)
		}
	}
	return line
}

// nodegroupUpgradeProgress is nodegroupProgress preceded by how many of
// the group's nodes run version: "1/4 at 1.37 | UPDATING 3/3 Ready | a: …".
func nodegroupUpgradeProgress(g model.Nodegroup, version string) string {
	at := 0
	for _, n := range g.Nodes {
		if n.Version == version {
			at++
		}
	}
	return fmt.Sprintf("%d/%d at %s | %s", at, len(g.Nodes), version, nodegroupProgress(g))
}

// upgradeReadiness is the insight category of upgrade readiness checks.
const upgradeReadiness = "UPGRADE_READINESS"

// insight is the part of EKS' Insight shape (ListInsights) the CLI shows.
type insight struct {
	ID                string `json:"id"`
	Name              string `json:"name"`
	Category          string `json:"category"`
	KubernetesVersion string `json:"kubernetesVersion"`
	Description       string `json:"description"`
	InsightStatus     struct {
		Status string `json:"status"`
		Reason string `json:"reason"`
	} `json:"insightStatus"`
}

// listInsights returns a cluster's upgrade readiness insights, every page.
func (c *client) listInsights(cluster string) ([]insight, error) {
	var all []insight
	token := ""
	for {
		req := map[string]any{"filter": map[string]any{"categories": []string{upgradeReadiness}}}
		if token != "" {
			req["nextToken"] = token
		}
		var out struct {
			Insights  []insight `json:"insights"`
			NextToken string    `json:"nextToken"`
		}
		if err := c.do("POST", "/clusters/"+url.PathEscape(cluster)+"/insights", req, &out); err != nil {
			return nil, err
		}
		all = append(all, out.Insights...)
		if out.NextToken == "" || out.NextToken == token {
			return all, nil
		}
		token = out.NextToken
	}
}

// refreshInsights asks for fresh insights (StartInsightsRefresh) and
// waits up to timeout for the refresh to end; the insights listed after
// are the stored ones either way (the server refreshes them on its own
// every few minutes).
func (c *client) refreshInsights(cluster string, timeout time.Duration) {
	path := "/clusters/" + url.PathEscape(cluster) + "/insights-refresh"
	if err := c.do("POST", path, map[string]any{}, nil); err != nil {
		return
	}
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		var st struct {
			Status string `json:"status"`
		}
		if err := c.do("GET", path, nil, &st); err != nil || st.Status != "IN_PROGRESS" {
			return
		}
	}
}

// printInsights prints the upgrade insights for version; an error of
// ListInsights is a note, never the command's failure.
func (c *client) printInsights(cluster, version string, out io.Writer) {
	c.refreshInsights(cluster, 15*time.Second)
	all, err := c.listInsights(cluster)
	if err != nil {
		fmt.Fprintln(out, insightsUnavailable(err))
		return
	}
	shown, matched := upgradeInsights(all, version)
	switch {
	case len(shown) == 0:
		fmt.Fprintf(out, "upgrade insights: none\n")
		return
	case matched:
		fmt.Fprintf(out, "upgrade insights for Kubernetes %s:\n", version)
	default:
		fmt.Fprintf(out, "upgrade insights (none for Kubernetes %s):\n", version)
	}
	for _, in := range shown {
		fmt.Fprintf(out, "  %s\n", insightLine(in))
	}
}

// insightsUnavailable is the one-line note of a failed ListInsights.
func insightsUnavailable(err error) string {
	return fmt.Sprintf("upgrade insights: unavailable (%s)", strings.Join(strings.Fields(err.Error()), " "))
}

// upgradeInsights keeps the upgrade readiness insights for version, or,
// if none is for it, all upgrade readiness insights (matched false).
func upgradeInsights(all []insight, version string) (shown []insight, matched bool) {
	var readiness []insight
	for _, in := range all {
		if in.Category != "" && in.Category != upgradeReadiness {
			continue
		}
		readiness = append(readiness, in)
		if in.KubernetesVersion == version {
			shown = append(shown, in)
		}
	}
	if len(shown) > 0 {
		return shown, true
	}
	return readiness, false
}

// insightLine shows an insight as "STATUS   name: reason" (its
// description if it gives no reason).
func insightLine(in insight) string {
	status := cmp.Or(in.InsightStatus.Status, "UNKNOWN")
	why := cmp.Or(in.InsightStatus.Reason, in.Description)
	if why == "" {
		return fmt.Sprintf("%-7s  %s", status, in.Name)
	}
	return fmt.Sprintf("%-7s  %s: %s", status, in.Name, why)
}
