package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"skiff.dev/skiff/internal/console"
)

func newConsoleCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "console", Short: "Print a one-time link that signs you in to skiff's web console (good for five minutes)", Args: cobra.NoArgs}
	ep := endpointFlag(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c := newClient(*ep)
		if c.err != nil {
			return c.err
		}
		if c.creds.AccessKeyID == "" {
			return fmt.Errorf("no credentials: run eval \"$(skiff env --data-dir DIR)\" first")
		}
		// Presigned here, checked by skiff when the link is opened: the
		// secret never leaves this machine's environment.
		link, err := console.SignInLink(context.Background(), c.endpoint, c.region, c.creds, time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), link)
		return nil
	}
	return cmd
}
