package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"skiff.dev/skiff/internal/api/eks"
	"skiff.dev/skiff/internal/eksctl"
	"skiff.dev/skiff/internal/model"
)

func newCreateCmd() *cobra.Command {
	create := &cobra.Command{Use: "create", Short: "Create a resource"}
	var (
		name, version, file, kubeconfig string
		zones                           []string
		apiservers                      int
		wait, writeKubeconfig           bool
		timeout                         time.Duration
		ng                              nodegroupOpts
	)
	cl := &cobra.Command{
		Use:   "cluster [NAME]",
		Short: "Create an HA cluster: 3 etcd members, apiservers behind one endpoint, controller-managers and schedulers",
		Long: `Create an HA cluster in the default VPC of your account (or in the subnets a
ClusterConfig file names), wait until it is ACTIVE while showing which
instances are up in each zone, and write its kubeconfig.

With --nodes N it then adds a managed node group (ng-1) of N nodes spread
over the cluster's zones and waits until they are Ready.

  skiff create cluster demo
  skiff create cluster demo --nodes 3
  skiff create cluster --name demo --version 1.36 --zones a,b
  skiff create cluster -f cluster.yaml     # eksctl's ClusterConfig (eksctl.io/v1alpha5)`,
		Args: cobra.MaximumNArgs(1),
	}
	ep := endpointFlag(cl)
	cl.Flags().StringVar(&name, "name", "", "cluster name (or the first argument)")
	cl.Flags().StringVarP(&file, "config-file", "f", "", "an eksctl ClusterConfig file (apiVersion eksctl.io/v1alpha5)")
	cl.Flags().StringVar(&version, "version", "", "Kubernetes version (e.g. 1.37); default the newest")
	cl.Flags().StringSliceVar(&zones, "zones", nil, "zones of the default VPC to use (a,b,c or us-east-1a,…); default all")
	cl.Flags().IntVar(&apiservers, "apiservers", 0, "number of apiservers (2-5; default 2)")
	cl.Flags().BoolVar(&wait, "wait", true, "wait until the cluster is ACTIVE, showing progress")
	cl.Flags().BoolVar(&writeKubeconfig, "write-kubeconfig", true, "write the cluster's kubeconfig once it is ACTIVE")
	cl.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file to write (default $KUBECONFIG or ~/.kube/config)")
	cl.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long to wait")
	ng.flags(cl, "")
	cl.RunE = func(cmd *cobra.Command, args []string) error {
		c := newClient(*ep)
		req := map[string]any{}
		vpc := map[string]any{}
		tags := map[string]string{}
		if file != "" {
			cfg, err := readClusterConfig(file)
			if err != nil {
				return err
			}
			name, version = cfg.Metadata.Name, firstNonEmpty(version, cfg.Metadata.Version)
			if cfg.Metadata.Region != "" && cfg.Metadata.Region != c.region {
				return fmt.Errorf("%s is for region %s but this skiff serves %s; fix metadata.region", file, cfg.Metadata.Region, c.region)
			}
			for k, v := range cfg.Metadata.Tags {
				tags[k] = v
			}
			if len(cfg.AvailabilityZones) > 0 {
				zones = cfg.AvailabilityZones
			}
			if ids := cfg.SubnetIDs(); len(ids) > 0 {
				vpc["subnetIds"] = ids
			}
			if v := cfg.VPC; v != nil {
				if e := v.ClusterEndpoints; e != nil {
					if e.PublicAccess != nil {
						vpc["endpointPublicAccess"] = *e.PublicAccess
					}
					if e.PrivateAccess != nil {
						vpc["endpointPrivateAccess"] = *e.PrivateAccess
					}
				}
				if len(v.PublicAccessCIDRs) > 0 {
					vpc["publicAccessCidrs"] = v.PublicAccessCIDRs
				}
			}
			if cw := cfg.CloudWatch; cw != nil && cw.ClusterLogging != nil && len(cw.ClusterLogging.EnableTypes) > 0 {
				types := cw.ClusterLogging.EnableTypes
				if slices.Contains(types, "*") || slices.Contains(types, "all") {
					types = []string{"api", "audit", "authenticator", "controllerManager", "scheduler"}
				}
				req["logging"] = map[string]any{"clusterLogging": []any{map[string]any{"types": types, "enabled": true}}}
			}
			if a := cfg.AccessConfig; a != nil {
				ac := map[string]any{}
				if a.AuthenticationMode != "" {
					ac["authenticationMode"] = a.AuthenticationMode
				}
				if a.BootstrapClusterCreatorAdminPermissions != nil {
					ac["bootstrapClusterCreatorAdminPermissions"] = *a.BootstrapClusterCreatorAdminPermissions
				}
				req["accessConfig"] = ac
			}
			if e := cfg.SecretsEncryption; e != nil && e.KeyARN != "" {
				req["encryptionConfig"] = []any{map[string]any{"resources": []string{"secrets"}, "provider": map[string]string{"keyArn": e.KeyARN}}}
			}
		}
		switch {
		case len(args) == 1 && name != "" && name != args[0]:
			return fmt.Errorf("two names given (%s and %s): pass the name once", args[0], name)
		case len(args) == 1:
			name = args[0]
		case name == "":
			return fmt.Errorf("name the cluster: skiff create cluster NAME (or --name NAME, or -f FILE)")
		}
		if vpc["subnetIds"] == nil {
			ids, err := c.defaultSubnets(zones)
			if err != nil {
				return err
			}
			vpc["subnetIds"] = ids
		}
		role, err := c.ensureClusterRole()
		if err != nil {
			return fmt.Errorf("ensure the cluster role: %w", err)
		}
		req["name"], req["roleArn"], req["resourcesVpcConfig"] = name, role, vpc
		if version != "" {
			req["version"] = version
		}
		if apiservers != 0 {
			tags[eks.APIServersTag] = strconv.Itoa(apiservers)
		}
		if len(tags) > 0 {
			req["tags"] = tags
		}
		if ng.nodes > 0 && !wait {
			return fmt.Errorf("--nodes needs --wait: node groups are added once the cluster is ACTIVE")
		}
		start := time.Now()
		if err := c.do("POST", "/clusters", req, nil); err != nil {
			return err
		}
		out := cmd.ErrOrStderr()
		fmt.Fprintf(out, "creating cluster %s in subnets %s\n", name, strings.Join(vpc["subnetIds"].([]string), ", "))
		if !wait {
			return nil
		}
		got, err := waitProgress(c, name, model.StatusActive, timeout, out)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "cluster %s is ACTIVE at %s after %s\n", got.Name, got.Endpoint, time.Since(start).Round(100*time.Millisecond))
		if ng.nodes > 0 {
			ng.cluster, ng.wait, ng.timeout = name, true, timeout
			if err := createNodegroup(c, ng, out); err != nil {
				return err
			}
		}
		if !writeKubeconfig {
			fmt.Fprintf(out, "use it: skiff write-kubeconfig %s && kubectl get ns\n", name)
			return nil
		}
		path, ctxName, err := writeKubeconfigFor(c, name, kubeconfig)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "wrote context %s to %s\nuse it: kubectl --kubeconfig %s get ns\n", ctxName, path, path)
		return nil
	}
	create.AddCommand(cl, newCreateNodegroupCmd())
	return create
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func readClusterConfig(path string) (*eksctl.ClusterConfig, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	cfg, err := eksctl.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// defaultSubnets returns the default subnets of the account's default VPC
// in the given zones ("a" or "us-east-1a"; all if none).
func (c *client) defaultSubnets(zones []string) ([]string, error) {
	var out struct {
		Subnets []struct {
			ID   string `xml:"subnetId"`
			Zone string `xml:"availabilityZone"`
		} `xml:"subnetSet>item"`
	}
	if err := c.query("ec2", "DescribeSubnets", url.Values{"Filter.1.Name": {"default-for-az"}, "Filter.1.Value.1": {"true"}}, &out); err != nil {
		return nil, fmt.Errorf("find the default subnets: %w", err)
	}
	want := map[string]bool{}
	for _, z := range zones {
		if len(z) == 1 {
			z = c.region + z
		}
		want[z] = true
	}
	var ids []string
	found := map[string]bool{}
	for _, s := range out.Subnets {
		if len(want) == 0 || want[s.Zone] {
			ids = append(ids, s.ID)
			found[s.Zone] = true
		}
	}
	for z := range want {
		if !found[z] {
			return nil, fmt.Errorf("the default VPC has no subnet in zone %s; pick zones of 'aws ec2 describe-availability-zones'", z)
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("your account has no default subnets; pass subnets with -f (vpc.subnets)")
	}
	sort.Strings(ids)
	return ids, nil
}

// waitProgress waits for a cluster's status like waitFor, printing a line
// whenever the set of healthy instances changes.
func waitProgress(c *client, name, status string, timeout time.Duration, out io.Writer) (*cluster, error) {
	start, last := time.Now(), ""
	var got *cluster
	err := poll(timeout, func() (bool, error) {
		var err error
		if got, err = c.describe(name); err != nil {
			return false, err
		}
		var snap instancesView
		if c.do("GET", "/skiff/v1/clusters/"+url.PathEscape(name)+"/instances", nil, &snap) == nil && len(snap.Instances) > 0 {
			if line := progressLine(snap.Instances); line != last {
				fmt.Fprintf(out, "  %5.1fs  %s\n", time.Since(start).Seconds(), line)
				last = line
			}
		}
		switch got.Status {
		case status:
			return true, nil
		case model.StatusFailed:
			return false, fmt.Errorf("cluster %s FAILED; see 'skiff describe cluster %s' and 'skiff events %s'", name, name, name)
		}
		return false, nil
	})
	if err != nil && got != nil && strings.Contains(err.Error(), "timed out") {
		return nil, fmt.Errorf("cluster %s is still %s after %s; see 'skiff events %s'", name, got.Status, timeout, name)
	}
	return got, err
}

func poll(timeout time.Duration, fn func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		done, err := fn()
		if done || err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s", timeout)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// instancesView is the skiff API's view of a control plane's instances
// (GET /skiff/v1/clusters/NAME/instances).
type instancesView struct {
	Instances  []instanceView  `json:"instances"`
	Backends   []string        `json:"backends"`
	Conditions []conditionView `json:"conditions"`
}

// conditionView is one step of the reconciler's last pass.
type conditionView struct {
	Type, Status, Reason, Message string
	Since                         time.Time
}

type instanceView struct {
	Name, Role, Zone, Error string
	PID                     int
	Running, Healthy        bool
}

// progressLine summarizes instances by zone: "a: etcd ✓ apiserver-0 ✓ | b: …".
func progressLine(insts []instanceView) string {
	byZone := map[string][]string{}
	up := 0
	for _, in := range insts {
		mark := "…"
		if in.Healthy {
			mark, up = "✓", up+1
		}
		byZone[in.Zone] = append(byZone[in.Zone], in.Name+" "+mark)
	}
	var zones []string
	for z := range byZone {
		zones = append(zones, z)
	}
	sort.Strings(zones)
	parts := make([]string, len(zones))
	for i, z := range zones {
		parts[i] = z + ": " + strings.Join(byZone[z], " ")
	}
	return fmt.Sprintf("%d/%d up  %s", up, len(insts), strings.Join(parts, " | "))
}

func newDescribeCmd() *cobra.Command {
	describe := &cobra.Command{Use: "describe", Short: "Show a resource in detail"}
	var output string
	cl := &cobra.Command{Use: "cluster NAME", Short: "Show a cluster: EKS fields, instances per zone, recent events", Args: cobra.ExactArgs(1)}
	ep := endpointFlag(cl)
	cl.Flags().StringVarP(&output, "output", "o", "", "json: print DescribeCluster's answer")
	cl.RunE = func(cmd *cobra.Command, args []string) error {
		c := newClient(*ep)
		var raw []byte
		if err := c.do("GET", "/clusters/"+url.PathEscape(args[0]), nil, &raw); err != nil {
			return err
		}
		if output == "json" {
			_, err := cmd.OutOrStdout().Write(raw)
			return err
		}
		var resp struct{ Cluster clusterDetail }
		if err := json.Unmarshal(raw, &resp); err != nil {
			return err
		}
		d := resp.Cluster
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
		row("Name", d.Name)
		row("ARN", d.Arn)
		row("Status", d.Status)
		row("Version", d.Version+" (platform "+d.PlatformVersion+")")
		row("Endpoint", d.Endpoint)
		row("Created", time.UnixMilli(int64(d.CreatedAt*1000)).UTC().Format(time.RFC3339))
		row("Role", d.RoleArn)
		row("VPC", d.Vpc.VpcID)
		row("Subnets", strings.Join(d.Vpc.SubnetIDs, ", "))
		row("Endpoint access", fmt.Sprintf("public %t (%s), private %t", d.Vpc.Public, strings.Join(d.Vpc.Cidrs, ", "), d.Vpc.Private))
		row("Authentication", d.Access.Mode)
		var logs []string
		for _, l := range d.Logging.ClusterLogging {
			if l.Enabled {
				logs = append(logs, l.Types...)
			}
		}
		row("Logging", firstNonEmpty(strings.Join(logs, ", "), "none"))
		var tags []string
		for k, v := range d.Tags {
			tags = append(tags, k+"="+v)
		}
		sort.Strings(tags)
		row("Tags", firstNonEmpty(strings.Join(tags, ", "), "none"))
		for _, is := range d.Health.Issues {
			row("Issue", is.Code+": "+is.Message)
		}
		tw.Flush()
		var snap instancesView
		if err := c.do("GET", "/skiff/v1/clusters/"+url.PathEscape(args[0])+"/instances", nil, &snap); err == nil && len(snap.Instances) > 0 {
			fmt.Fprintln(cmd.OutOrStdout(), "\nInstances:")
			tw = tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "  ZONE\tNAME\tROLE\tPID\tHEALTHY\tERROR")
			insts := snap.Instances
			sort.SliceStable(insts, func(i, j int) bool { return insts[i].Zone < insts[j].Zone })
			for _, in := range insts {
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%t\t%s\n", in.Zone, in.Name, in.Role, in.PID, in.Healthy, in.Error)
			}
			tw.Flush()
			fmt.Fprintf(cmd.OutOrStdout(), "Endpoint backends: %s\n", strings.Join(snap.Backends, ", "))
		}
		if len(snap.Conditions) > 0 {
			fmt.Fprintln(cmd.OutOrStdout(), "\nConditions:")
			tw = tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "  STEP\tSTATUS\tREASON\tSINCE\tMESSAGE")
			for _, cd := range snap.Conditions {
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", cd.Type, cd.Status, cd.Reason, cd.Since.Local().Format(time.DateTime), cd.Message)
			}
			tw.Flush()
		}
		return nil
	}
	describe.AddCommand(cl)
	return describe
}

// clusterDetail is the part of EKS' Cluster shape `describe cluster` shows.
type clusterDetail struct {
	Name, Arn, Status, Version, PlatformVersion, Endpoint, RoleArn string
	CreatedAt                                                      float64
	Vpc                                                            struct {
		VpcID     string   `json:"vpcId"`
		SubnetIDs []string `json:"subnetIds"`
		Public    bool     `json:"endpointPublicAccess"`
		Private   bool     `json:"endpointPrivateAccess"`
		Cidrs     []string `json:"publicAccessCidrs"`
	} `json:"resourcesVpcConfig"`
	Access struct {
		Mode string `json:"authenticationMode"`
	} `json:"accessConfig"`
	Logging struct {
		ClusterLogging []struct {
			Types   []string
			Enabled bool
		}
	}
	Tags   map[string]string
	Health struct {
		Issues []struct{ Code, Message string }
	}
}

func newWriteKubeconfigCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "write-kubeconfig NAME",
		Short: "Merge a cluster's kubeconfig into your kubeconfig file and make it the current context",
		Args:  cobra.ExactArgs(1),
	}
	ep := endpointFlag(cmd)
	cmd.Flags().StringVar(&path, "kubeconfig", "", "file to write (default $KUBECONFIG or ~/.kube/config)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		file, ctxName, err := writeKubeconfigFor(newClient(*ep), args[0], path)
		if err != nil {
			return err
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "wrote context %s to %s\n", ctxName, file)
		return nil
	}
	return cmd
}

// writeKubeconfigFor merges cluster name's kubeconfig into path (or the
// default kubeconfig file) as context USER@NAME.REGION.skiff, made current.
func writeKubeconfigFor(c *client, name, path string) (string, string, error) {
	var data []byte
	if err := c.do("GET", "/skiff/v1/clusters/"+url.PathEscape(name)+"/kubeconfig", nil, &data); err != nil {
		return "", "", err
	}
	src, err := clientcmd.Load(data)
	if err != nil {
		return "", "", fmt.Errorf("the cluster's kubeconfig: %w", err)
	}
	srcCtx := src.Contexts[src.CurrentContext]
	if srcCtx == nil || src.Clusters[srcCtx.Cluster] == nil || src.AuthInfos[srcCtx.AuthInfo] == nil {
		return "", "", fmt.Errorf("the cluster's kubeconfig has no usable current context")
	}
	if path == "" {
		path = clientcmd.NewDefaultPathOptions().GetDefaultFilename()
	}
	dst, err := clientcmd.LoadFromFile(path)
	if os.IsNotExist(err) {
		dst, err = clientcmdapi.NewConfig(), nil
	}
	if err != nil {
		return "", "", fmt.Errorf("read %s: %w", path, err)
	}
	clusterName := fmt.Sprintf("%s.%s.skiff", name, c.region)
	ctxName := "admin@" + clusterName
	dst.Clusters[clusterName] = src.Clusters[srcCtx.Cluster]
	dst.AuthInfos[ctxName] = src.AuthInfos[srcCtx.AuthInfo]
	dst.Contexts[ctxName] = &clientcmdapi.Context{Cluster: clusterName, AuthInfo: ctxName}
	dst.CurrentContext = ctxName
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", "", err
	}
	if err := clientcmd.WriteToFile(*dst, path); err != nil {
		return "", "", fmt.Errorf("write %s: %w", path, err)
	}
	return path, ctxName, os.Chmod(path, 0o600)
}
