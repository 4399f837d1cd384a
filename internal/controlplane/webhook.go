package controlplane

import (
	"context"
	"slices"

	"skiff.dev/skiff/internal/access"
	"skiff.dev/skiff/internal/authenticator"
	"skiff.dev/skiff/internal/model"
)

// The apiservers' client certificate for the token-review webhook (the
// cluster's authenticator instances).
const (
	webhookClient   = "authn-webhook"
	webhookClientCN = "kube-apiserver-authn-webhook"
)

// Credentials returns the usable IAM keys of accounts, by key ID, with
// their callers (iam.Service.Credentials): the authenticator's material.
type Credentials func(accounts []string) (map[string]authenticator.Credential, error)

// material is what cluster c's authenticator verifies tokens with: its
// access configuration and the keys of its account and of the accounts
// its access entries name.
func (w *worker) material(c *model.Cluster) (*authenticator.Material, error) {
	m := &authenticator.Material{Cluster: *c, Hosts: w.cfg.TokenHosts, VPCPort: w.cfg.TokenVPCPort,
		Credentials: map[string]authenticator.Credential{}}
	m.Cluster.Observed = nil // changes often; the authenticator needs none of it
	if w.cfg.Credentials == nil {
		return m, nil
	}
	accounts := []string{c.Account}
	for _, e := range c.AccessEntries {
		if p, err := access.ParsePrincipalArn(e.PrincipalArn); err == nil && !slices.Contains(accounts, p.Account) {
			accounts = append(accounts, p.Account)
		}
	}
	if p, err := access.ParsePrincipalArn(c.CreatorArn); err == nil && !slices.Contains(accounts, p.Account) {
		accounts = append(accounts, p.Account)
	}
	creds, err := w.cfg.Credentials(accounts)
	if err != nil {
		return nil, err
	}
	m.Credentials = creds
	return m, nil
}

// writeMaterial keeps the authenticator's material file up to date: a
// deleted key or access entry stops working at the next pass.
func (w *worker) writeMaterial(_ context.Context, c *model.Cluster, l Layout) error {
	m, err := w.material(c)
	if err != nil {
		return err
	}
	_, err = authenticator.WriteMaterial(l.AuthnMaterialPath(), m)
	return err
}
