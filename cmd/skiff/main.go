// Command skiff is the whole of skiff in one binary: the server (`skiff
// serve`) and its eksctl-like command line (`skiff create cluster`, …).
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"skiff.dev/skiff/internal/bundle"
	"skiff.dev/skiff/internal/instancecmd"
)

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "skiff:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "skiff",
		Short:         "Self-hosted, EKS-compatible managed Kubernetes",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newBundlesCmd(), newServeCmd(), newNodeCmd(), newCreateCmd(), newUpgradeCmd(), newGetCmd(), newDeleteCmd(),
		newDescribeCmd(), newWriteKubeconfigCmd(), newKubeconfigCmd(), newEventsCmd(), newEnvCmd(), newConsoleCmd(), newAuthenticatorCmd(), newDoorCmd(), newKMSPluginCmd(),
		newHibernateCmd(), newWakeCmd())
	root.AddCommand(instancecmd.Commands()...)
	return root
}

// defaultBundles finds the bundles next to the binary (bin/skiff →
// _output/bundles), the layout `make build` produces; SKIFF_BUNDLES overrides.
func defaultBundles() string {
	if d := os.Getenv("SKIFF_BUNDLES"); d != "" {
		return d
	}
	exe, err := os.Executable()
	if err != nil {
		return "_output/bundles"
	}
	exe, _ = filepath.EvalSymlinks(exe)
	return filepath.Join(filepath.Dir(exe), "..", "_output", "bundles")
}

// defaultImages is where `make images` puts the system images' sources.
func defaultImages() string {
	if d := os.Getenv("SKIFF_IMAGES"); d != "" {
		return d
	}
	return filepath.Join(filepath.Dir(defaultBundles()), "images")
}

func newBundlesCmd() *cobra.Command {
	dir := defaultBundles()
	cmd := &cobra.Command{
		Use:   "bundles",
		Short: "List the Kubernetes release bundles this skiff can run",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cat, err := bundle.Load(dir)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%-8s %-10s %-8s %s\n", "VERSION", "KUBERNETES", "ETCD", "PATH")
			for _, b := range cat.All() {
				fmt.Fprintf(cmd.OutOrStdout(), "%-8s %-10s %-8s %s\n", b.Minor(), b.KubernetesVersion, b.EtcdVersion, b.Path())
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "bundles", dir, "directory of Kubernetes bundles")
	return cmd
}
