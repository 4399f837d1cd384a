package main

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"skiff.dev/skiff/internal/model"
)

// newHibernateCmd and newWakeCmd: a cluster's control plane stopped with
// its data kept, and started again (docs/architecture.md, "Hibernation").
func newHibernateCmd() *cobra.Command {
	var wait bool
	cmd := &cobra.Command{Use: "hibernate NAME", Short: "Stop a cluster's control plane, keeping its data; the first request through its endpoint wakes it",
		Long: "Stop every control-plane instance of an ACTIVE cluster without nodes but its endpoint, keeping the etcd data.\n" +
			"The cluster stays ACTIVE; the first connection to its endpoint (kubectl, an SDK) wakes it and is answered once\n" +
			"the apiservers serve. A cluster tagged " + model.HibernateAfterTag + "=DURATION hibernates by itself after that long without nodes and clients.",
		Args: cobra.ExactArgs(1)}
	ep := endpointFlag(cmd)
	cmd.Flags().BoolVar(&wait, "wait", true, "wait until the control plane is stopped")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c := newClient(*ep)
		if err := c.do("POST", "/skiff/v1/clusters/"+url.PathEscape(args[0])+"/hibernate", nil, nil); err != nil {
			return err
		}
		if wait {
			if err := waitRest(c, args[0], true, 2*time.Minute); err != nil {
				return err
			}
		}
		fmt.Fprintf(cmd.OutOrStdout(), "cluster %s hibernates\n", args[0])
		return nil
	}
	return cmd
}

func newWakeCmd() *cobra.Command {
	var wait bool
	cmd := &cobra.Command{Use: "wake NAME", Short: "Start a hibernating cluster's control plane again", Args: cobra.ExactArgs(1)}
	ep := endpointFlag(cmd)
	cmd.Flags().BoolVar(&wait, "wait", true, "wait until every control-plane instance is healthy")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c := newClient(*ep)
		if err := c.do("POST", "/skiff/v1/clusters/"+url.PathEscape(args[0])+"/wake", nil, nil); err != nil {
			return err
		}
		if wait {
			if err := waitRest(c, args[0], false, 2*time.Minute); err != nil {
				return err
			}
		}
		fmt.Fprintf(cmd.OutOrStdout(), "cluster %s is awake\n", args[0])
		return nil
	}
	return cmd
}

// waitRest waits until the reconciler's last pass over cluster name found
// it hibernating (asleep) or awake with every instance healthy.
func waitRest(c *client, name string, asleep bool, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var seen model.ControlPlaneStatus
		if err := c.do("GET", "/skiff/v1/clusters/"+url.PathEscape(name)+"/instances", nil, &seen); err != nil {
			return err
		}
		if rested(seen) == asleep && (asleep || allHealthy(seen)) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster %s: not there after %v; see 'skiff events %s'", name, timeout, name)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// rested: the pass found the cluster hibernating.
func rested(s model.ControlPlaneStatus) bool {
	for _, c := range s.Conditions {
		if c.Reason == "Hibernating" {
			return true
		}
	}
	return false
}

func allHealthy(s model.ControlPlaneStatus) bool {
	for _, in := range s.Instances {
		if !in.Healthy {
			return false
		}
	}
	for _, c := range s.Conditions {
		if c.Status != model.ConditionTrue {
			return false
		}
	}
	return len(s.Instances) > 0
}

// hibernating reports whether DescribeCluster's health says the cluster
// hibernates (skiff get clusters).
func (c *cluster) hibernating() bool {
	for _, i := range c.Health.Issues {
		if strings.HasPrefix(i.Message, "Hibernating") {
			return true
		}
	}
	return false
}
