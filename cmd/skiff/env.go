package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"skiff.dev/skiff/internal/api/router"
	"skiff.dev/skiff/internal/apitls"
	"skiff.dev/skiff/internal/iam"
	"skiff.dev/skiff/internal/server"
	"skiff.dev/skiff/internal/store"
)

func newEnvCmd() *cobra.Command {
	var dataDir = defaultDataDir()
	var account string
	cmd := &cobra.Command{
		Use:   "env",
		Short: "Print export lines with an account's admin credentials and skiff's endpoint",
		Long: `Print export lines for an account's admin identity, creating the account on
first use:

  eval "$(skiff env --data-dir DIR [--account NAME])"
  aws eks list-clusters

Accounts are isolated: one account neither sees nor changes another's resources.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env, err := localEnv(dataDir, account)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, `export AWS_ENDPOINT_URL=%q
export AWS_ENDPOINT_URL_STS=%q
export SKIFF_ENDPOINT=%q
export AWS_ACCESS_KEY_ID=%q
export AWS_SECRET_ACCESS_KEY=%q
export AWS_DEFAULT_REGION=%q
export AWS_REGION=%q
`, env.Endpoint, env.Endpoint, env.Endpoint, env.AccessKeyID, env.SecretAccessKey, env.Region, env.Region)
			unset := "AWS_SESSION_TOKEN AWS_PROFILE"
			if env.CABundle != "" {
				fmt.Fprintf(out, "export AWS_CA_BUNDLE=%q\n", env.CABundle)
			} else {
				unset += " AWS_CA_BUNDLE"
			}
			fmt.Fprintf(out, "unset %s\n# account %s (%s), user admin\n", unset, env.Account, env.AccountID)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", dataDir, "the data dir of the skiff (env SKIFF_DATA_DIR)")
	cmd.Flags().StringVar(&account, "account", "default", "account name (created on first use)")
	return cmd
}

// localEnv asks the running skiff (proving access to its data dir with the
// local token) or, if none runs, opens the store itself.
type localEnvironment struct {
	router.LocalEnv
	CABundle string // what clients trust to reach Endpoint ("" for the system's roots)
}

func localEnv(dataDir, account string) (*localEnvironment, error) {
	info, infoErr := server.ReadInfo(dataDir)
	token, tokErr := os.ReadFile(filepath.Join(dataDir, "local-token"))
	if infoErr == nil && tokErr == nil {
		tr, err := apitls.Transport(info.CABundle)
		if err != nil {
			return nil, err
		}
		req, _ := http.NewRequest("POST", info.Endpoint+"/skiff/v1/local/env?account="+account, nil)
		req.Header.Set("X-Skiff-Local-Token", string(token))
		resp, err := (&http.Client{Timeout: 10 * time.Second, Transport: tr}).Do(req)
		if err == nil {
			defer resp.Body.Close()
			env := &localEnvironment{CABundle: info.CABundle}
			if resp.StatusCode != http.StatusOK {
				var e struct{ Message string }
				json.NewDecoder(resp.Body).Decode(&e)
				return nil, errors.New(e.Message)
			}
			return env, json.NewDecoder(resp.Body).Decode(&env.LocalEnv)
		}
	}
	// No skiff serving: create the account offline.
	if _, err := os.Stat(dataDir); err != nil {
		return nil, fmt.Errorf("data dir %s: %w (start 'skiff serve --data-dir %s' first)", dataDir, err, dataDir)
	}
	st, err := store.Open(filepath.Join(dataDir, "skiff.db"))
	if err != nil {
		return nil, err
	}
	defer st.Close()
	acct, key, err := (&iam.Service{Store: st}).EnsureAccount(account)
	if err != nil {
		return nil, err
	}
	// Where skiff served last, else its defaults.
	endpoint, region, bundle := "https://127.0.0.1:7443", "us-east-1", filepath.Join(dataDir, "tls", "ca.crt")
	if infoErr == nil {
		endpoint, region, bundle = info.Endpoint, info.Region, info.CABundle
	}
	return &localEnvironment{LocalEnv: router.LocalEnv{Account: acct.Name, AccountID: acct.ID, AccessKeyID: key.ID, SecretAccessKey: key.Secret,
		Region: region, Endpoint: endpoint}, CABundle: bundle}, nil
}
