package main

import (
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"skiff.dev/skiff/internal/model"
)

// nodegroupOpts are the flags of `skiff create nodegroup`.
type nodegroupOpts struct {
	cluster, name, role, instanceType string
	nodes, min, max                   int
	zones, taints                     []string
	labels                            map[string]string
	wait                              bool
	timeout                           time.Duration
}

func (o *nodegroupOpts) flags(cmd *cobra.Command, prefix string) {
	f := cmd.Flags()
	f.IntVar(&o.nodes, prefix+"nodes", o.nodes, "number of nodes (the node group's desired size)")
	f.IntVar(&o.min, prefix+"nodes-min", 0, "minimum size (default: --nodes)")
	f.IntVar(&o.max, prefix+"nodes-max", 0, "maximum size (default: --nodes)")
	f.StringVar(&o.instanceType, prefix+"node-type", "t3.medium", "instance type: the nodes' advertised CPU and memory")
	f.StringVar(&o.role, prefix+"node-role", "", "node IAM role ARN (default: skiff-node-role, created on first use)")
	f.StringToStringVar(&o.labels, prefix+"node-labels", nil, "Kubernetes labels of the nodes (k=v,…)")
	f.StringSliceVar(&o.taints, prefix+"node-taints", nil, "taints of the nodes (key=value:NoSchedule|NoExecute|PreferNoSchedule,…)")
}

func newCreateNodegroupCmd() *cobra.Command {
	o := nodegroupOpts{nodes: 2}
	cmd := &cobra.Command{
		Use:   "nodegroup [NAME] --cluster CLUSTER",
		Short: "Create a managed node group: real kubelet + containerd nodes spread over the cluster's zones",
		Long: `Create a managed node group in a cluster's subnets (or those of --zones), wait
until every node is Ready while showing each node's progress by zone.

  skiff create nodegroup --cluster demo                       # 2 nodes
  skiff create nodegroup workers --cluster demo --nodes 3 --zones a,b,c
  skiff create nodegroup gpu --cluster demo --nodes 1 --node-labels team=ml --node-taints gpu=true:NoSchedule`,
		Aliases: []string{"ng"},
		Args:    cobra.MaximumNArgs(1),
	}
	ep := endpointFlag(cmd)
	cmd.Flags().StringVar(&o.cluster, "cluster", "", "the cluster (required)")
	cmd.Flags().StringVar(&o.name, "name", "", "node group name (or the first argument; default ng-1)")
	cmd.Flags().StringSliceVar(&o.zones, "zones", nil, "zones of the cluster's subnets to use (a,b or us-east-1a,…); default all")
	cmd.Flags().BoolVar(&o.wait, "wait", true, "wait until every node is Ready, showing progress")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 5*time.Minute, "how long to wait")
	o.flags(cmd, "")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) == 1 && o.name != "" && o.name != args[0]:
			return fmt.Errorf("two names given (%s and %s): pass the name once", args[0], o.name)
		case len(args) == 1:
			o.name = args[0]
		}
		if o.cluster == "" {
			return fmt.Errorf("name the cluster: skiff create nodegroup --cluster CLUSTER")
		}
		return createNodegroup(newClient(*ep), o, cmd.ErrOrStderr())
	}
	return cmd
}

// effects maps kubectl's taint effects to EKS'.
var effects = map[string]string{"NoSchedule": "NO_SCHEDULE", "NoExecute": "NO_EXECUTE", "PreferNoSchedule": "PREFER_NO_SCHEDULE"}

// parseTaint reads key[=value]:Effect (kubectl's form; EKS' effect names too).
func parseTaint(s string) (map[string]string, error) {
	kv, effect, ok := strings.Cut(s, ":")
	if e, known := effects[effect]; known {
		effect = e
	}
	if !ok || kv == "" || !strings.Contains("NO_SCHEDULE NO_EXECUTE PREFER_NO_SCHEDULE", effect) || effect == "" {
		return nil, fmt.Errorf("taint %q: want key=value:NoSchedule, NoExecute or PreferNoSchedule", s)
	}
	k, v, _ := strings.Cut(kv, "=")
	t := map[string]string{"key": k, "effect": effect}
	if v != "" {
		t["value"] = v
	}
	return t, nil
}

// createNodegroup calls CreateNodegroup and, with o.wait, shows the nodes
// joining until the group is ACTIVE.
func createNodegroup(c *client, o nodegroupOpts, out io.Writer) error {
	if o.name == "" {
		o.name = "ng-1"
	}
	if o.min == 0 {
		o.min = o.nodes // as eksctl does
	}
	if o.max == 0 {
		o.max = max(o.nodes, o.min, 1)
	}
	cl, err := c.describe(o.cluster)
	if err != nil {
		return err
	}
	subnets, err := c.subnetsInZones(cl.Vpc.SubnetIDs, o.zones)
	if err != nil {
		return err
	}
	if o.role == "" {
		if o.role, err = c.ensureNodeRole(); err != nil {
			return fmt.Errorf("ensure the node role: %w", err)
		}
	}
	var taints []map[string]string
	for _, s := range o.taints {
		t, err := parseTaint(s)
		if err != nil {
			return err
		}
		taints = append(taints, t)
	}
	req := map[string]any{
		"nodegroupName": o.name, "nodeRole": o.role, "subnets": subnets, "instanceTypes": []string{o.instanceType},
		"scalingConfig": map[string]int{"minSize": o.min, "maxSize": o.max, "desiredSize": o.nodes},
	}
	if len(o.labels) > 0 {
		req["labels"] = o.labels
	}
	if len(taints) > 0 {
		req["taints"] = taints
	}
	start := time.Now()
	if err := c.do("POST", "/clusters/"+url.PathEscape(o.cluster)+"/node-groups", req, nil); err != nil {
		return err
	}
	fmt.Fprintf(out, "creating node group %s in cluster %s: %d × %s in subnets %s\n", o.name, o.cluster, o.nodes, o.instanceType, strings.Join(subnets, ", "))
	if !o.wait {
		return nil
	}
	last := ""
	var g model.Nodegroup
	err = poll(o.timeout, func() (bool, error) {
		if err := c.do("GET", "/skiff/v1/clusters/"+url.PathEscape(o.cluster)+"/nodegroups/"+url.PathEscape(o.name), nil, &g); err != nil {
			return false, err
		}
		if line := nodegroupProgress(g); line != last {
			fmt.Fprintf(out, "  %5.1fs  %s\n", time.Since(start).Seconds(), line)
			last = line
		}
		switch g.Status {
		case model.NodegroupActive:
			return true, nil
		case model.NodegroupCreateFailed:
			return false, fmt.Errorf("node group %s failed: %v; see 'aws eks describe-nodegroup' and 'skiff events %s'", o.name, g.Issues, o.cluster)
		}
		return false, nil
	})
	if err != nil {
		if strings.Contains(err.Error(), "timed out") {
			return fmt.Errorf("node group %s is still %s after %s; see 'skiff events %s'", o.name, g.Status, o.timeout, o.cluster)
		}
		return err
	}
	fmt.Fprintf(out, "node group %s is ACTIVE: %d nodes Ready after %s\n", o.name, len(g.Nodes), time.Since(start).Round(100*time.Millisecond))
	return nil
}

// nodegroupProgress summarizes a group by zone:
// "CREATING 1/3 Ready | a: ip-172-31-0-4 ✓ | b: ip-172-31-16-4 …".
func nodegroupProgress(g model.Nodegroup) string {
	byZone := map[string][]string{}
	ready := 0
	for _, n := range g.Nodes {
		mark := "…"
		if n.Ready {
			mark, ready = "✓", ready+1
		}
		if n.Draining {
			mark = "draining"
		}
		host, _, _ := strings.Cut(n.Name, ".")
		byZone[n.Zone] = append(byZone[n.Zone], host+" "+mark)
	}
	zones := make([]string, 0, len(byZone))
	for z := range byZone {
		zones = append(zones, z)
	}
	sort.Strings(zones)
	parts := []string{fmt.Sprintf("%s %d/%d Ready", g.Status, ready, g.Desired)}
	for _, z := range zones {
		parts = append(parts, z+": "+strings.Join(byZone[z], " "))
	}
	return strings.Join(parts, " | ")
}

// subnetsInZones keeps the subnets in the given zones (all if none).
func (c *client) subnetsInZones(ids, zones []string) ([]string, error) {
	if len(zones) == 0 {
		return ids, nil
	}
	params := url.Values{}
	for i, id := range ids {
		params.Set(fmt.Sprintf("SubnetId.%d", i+1), id)
	}
	var out struct {
		Subnets []struct {
			ID   string `xml:"subnetId"`
			Zone string `xml:"availabilityZone"`
		} `xml:"subnetSet>item"`
	}
	if err := c.query("ec2", "DescribeSubnets", params, &out); err != nil {
		return nil, fmt.Errorf("find the cluster's subnets: %w", err)
	}
	var keep []string
	for _, z := range zones {
		if len(z) == 1 {
			z = c.region + z
		}
		found := false
		for _, s := range out.Subnets {
			if s.Zone == z {
				keep, found = append(keep, s.ID), true
			}
		}
		if !found {
			return nil, fmt.Errorf("the cluster has no subnet in zone %s; pick among its subnets' zones ('aws ec2 describe-subnets')", z)
		}
	}
	return keep, nil
}
