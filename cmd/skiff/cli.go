package main

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"skiff.dev/skiff/internal/model"
)

func endpointFlag(cmd *cobra.Command) *string {
	ep := defaultEndpoint()
	cmd.Flags().StringVar(&ep, "endpoint", ep, "skiff API (env SKIFF_ENDPOINT)")
	return &ep
}

// waitFor polls a cluster until it reaches status (or is gone, for "").
func waitFor(c *client, name, status string, timeout time.Duration) (*cluster, error) {
	deadline := time.Now().Add(timeout)
	for {
		got, err := c.describe(name)
		switch {
		case status == "" && err != nil && strings.HasPrefix(err.Error(), "ResourceNotFoundException"):
			return nil, nil
		case err != nil:
			return nil, err
		case got.Status == status:
			return got, nil
		case got.Status == model.StatusFailed:
			return nil, fmt.Errorf("cluster %s FAILED; see 'skiff events %s'", name, name)
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("cluster %s is still %s after %s; see 'skiff events %s'", name, got.Status, timeout, name)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func newGetCmd() *cobra.Command {
	get := &cobra.Command{Use: "get", Short: "Show resources"}
	cl := &cobra.Command{Use: "clusters [NAME]", Aliases: []string{"cluster"}, Short: "List clusters", Args: cobra.MaximumNArgs(1)}
	ep := endpointFlag(cl)
	cl.RunE = func(cmd *cobra.Command, args []string) error {
		c := newClient(*ep)
		names := args
		if len(names) == 0 {
			var out struct{ Clusters []string }
			if err := c.do("GET", "/clusters", nil, &out); err != nil {
				return err
			}
			names = out.Clusters
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tVERSION\tSTATUS\tENDPOINT\tAGE")
		for _, n := range names {
			got, err := c.describe(n)
			if err != nil {
				return err
			}
			age := time.Since(time.UnixMilli(int64(got.CreatedAt * 1000))).Round(time.Second)
			status := got.Status
			if got.hibernating() {
				status += " (hibernating)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", got.Name, got.Version, status, got.Endpoint, age)
		}
		return tw.Flush()
	}
	get.AddCommand(cl)
	return get
}

func newDeleteCmd() *cobra.Command {
	del := &cobra.Command{Use: "delete", Short: "Delete a resource"}
	var wait bool
	var name string
	cl := &cobra.Command{Use: "cluster NAME", Short: "Delete a cluster and everything it runs", Args: cobra.MaximumNArgs(1)}
	ep := endpointFlag(cl)
	cl.Flags().BoolVar(&wait, "wait", true, "wait until the cluster is gone")
	cl.Flags().StringVar(&name, "name", "", "cluster name (or the argument)")
	cl.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			if name == "" {
				return fmt.Errorf("name the cluster: skiff delete cluster NAME")
			}
			args = []string{name}
		}
		c := newClient(*ep)
		// Like eksctl: the cluster's node groups go first (EKS refuses to
		// delete a cluster that has some).
		var ngs struct{ Nodegroups []string }
		if err := c.do("GET", "/clusters/"+url.PathEscape(args[0])+"/node-groups", nil, &ngs); err != nil {
			return err
		}
		for _, ng := range ngs.Nodegroups {
			if err := deleteNodegroup(c, args[0], ng, cmd.ErrOrStderr()); err != nil {
				return err
			}
		}
		if err := c.do("DELETE", "/clusters/"+url.PathEscape(args[0]), nil, nil); err != nil {
			return err
		}
		if wait {
			if _, err := waitFor(c, args[0], "", 2*time.Minute); err != nil {
				return err
			}
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "cluster %s deleted\n", args[0])
		return nil
	}
	var cluster string
	ng := &cobra.Command{Use: "nodegroup NAME --cluster CLUSTER", Aliases: []string{"ng"}, Short: "Delete a node group: its nodes are drained, then removed", Args: cobra.ExactArgs(1)}
	ngEP := endpointFlag(ng)
	ng.Flags().StringVar(&cluster, "cluster", "", "the cluster (required)")
	ng.RunE = func(cmd *cobra.Command, args []string) error {
		if cluster == "" {
			return fmt.Errorf("name the cluster: skiff delete nodegroup %s --cluster CLUSTER", args[0])
		}
		return deleteNodegroup(newClient(*ngEP), cluster, args[0], cmd.ErrOrStderr())
	}
	del.AddCommand(cl, ng)
	return del
}

// deleteNodegroup deletes a node group and waits until it is gone.
func deleteNodegroup(c *client, cluster, name string, out io.Writer) error {
	path := "/clusters/" + url.PathEscape(cluster) + "/node-groups/" + url.PathEscape(name)
	if err := c.do("DELETE", path, nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(out, "deleting node group %s: draining and removing its nodes\n", name)
	err := poll(3*time.Minute, func() (bool, error) {
		err := c.do("GET", path, nil, nil)
		if err != nil && strings.HasPrefix(err.Error(), "ResourceNotFoundException") {
			return true, nil
		}
		return false, err
	})
	if err != nil {
		return fmt.Errorf("delete node group %s: %w", name, err)
	}
	fmt.Fprintf(out, "node group %s deleted\n", name)
	return nil
}

func newKubeconfigCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{Use: "kubeconfig NAME", Short: "Print (or write) a cluster's kubeconfig (your IAM identity through `aws eks get-token`; needs an access entry)", Args: cobra.ExactArgs(1)}
	ep := endpointFlag(cmd)
	cmd.Flags().StringVarP(&out, "output", "o", "", "write to this file (mode 0600) instead of stdout")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var data []byte
		if err := newClient(*ep).do("GET", "/skiff/v1/clusters/"+args[0]+"/kubeconfig", nil, &data); err != nil {
			return err
		}
		if out == "" {
			_, err := cmd.OutOrStdout().Write(data)
			return err
		}
		return os.WriteFile(out, data, 0o600)
	}
	return cmd
}

func newEventsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "events NAME", Short: "Show what skiff detected and replaced in a cluster", Args: cobra.ExactArgs(1)}
	ep := endpointFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var out struct{ Events []model.Event }
		if err := newClient(*ep).do("GET", "/skiff/v1/clusters/"+args[0]+"/events", nil, &out); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tINSTANCE\tTYPE\tREASON")
		for _, e := range out.Events {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Time.Format(time.RFC3339), e.Instance, e.Type, e.Reason)
		}
		return tw.Flush()
	}
	return cmd
}
