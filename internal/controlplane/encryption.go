package controlplane

// Envelope encryption of Secrets with a KMS key (EKS' encryptionConfig).
//
// A cluster with an encryption key runs a KMS v2 plugin (`skiff
// kms-plugin`, one instance, like the tunnel: its unix socket cannot be
// shared, and the apiservers cache their data keys, so a replacement
// costs nothing). Its apiservers name it in an EncryptionConfiguration:
// Secrets are written with the kms provider and read with it or, for
// those written before the key was associated, as plain (identity).
//
// The KMS step writes the plugin's material (the key's state and its
// sealed versions) and records the key's health issue. When the key
// becomes unusable (disabled, pending deletion, deleted) it counts a
// revocation, which rolls the apiservers: an apiserver keeps the data keys
// it unwrapped for a day, so without a roll a disabled key would go on
// reading. The Encryption step rewrites the Secrets stored before an
// AssociateEncryptionConfig once every apiserver encrypts.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"skiff.dev/skiff/internal/kms"
	"skiff.dev/skiff/internal/kmsplugin"
	"skiff.dev/skiff/internal/material"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/runtime"
	"skiff.dev/skiff/internal/status"
)

// Keys gives the clusters' KMS plugins their keys (package kms).
type Keys interface {
	// Keyring returns the key of account that ref names; kms.ErrNotFound
	// once it is gone.
	Keyring(account, ref string) (*kms.Keyring, error)
}

// KMSSocket is where the cluster's KMS plugin serves its apiservers.
func (l Layout) KMSSocket() string {
	sum := sha256.Sum256([]byte(l.Dir))
	return filepath.Join(EgressDir, hex.EncodeToString(sum[:10])+"-kms.sock")
}

// KMSMaterialPath is the KMS plugin's material (kmsplugin.Material).
func (l Layout) KMSMaterialPath() string { return filepath.Join(l.Dir, "kms", "material.json") }

// KMSStatusAddr is where the cluster's KMS plugin answers /healthz.
func (l Layout) KMSStatusAddr() string {
	return net.JoinHostPort(l.addr(runtime.KMSPlugin, 0).String(), strconv.Itoa(EndpointStatusPort))
}

// EncryptionConfigPath is the apiservers' EncryptionConfiguration.
func (l Layout) EncryptionConfigPath() string { return filepath.Join(l.Dir, "encryption-config.yaml") }

// encryptionConfig has Secrets written through the KMS plugin and read
// through it or, when written before encryption, as they are.
func (l Layout) encryptionConfig() string {
	return fmt.Sprintf(`apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
- resources:
  - secrets
  providers:
  - kms:
      apiVersion: v2
      name: %s
      endpoint: unix://%s
      timeout: 3s
  - identity: {}
`, kmsplugin.Name, l.KMSSocket())
}

// kmsPluginSpec is the cluster's KMS plugin (`skiff kms-plugin`); like
// the endpoint it does not depend on the Kubernetes version.
func (l Layout) kmsPluginSpec(c *model.Cluster) runtime.Spec {
	return runtime.Spec{
		ID:      c.ID + "/kms-plugin",
		Cluster: c.ID,
		Role:    runtime.KMSPlugin,
		Zone:    zoneOf(c, 0),
		Command: []string{l.Skiff, "kms-plugin",
			"--socket=" + l.KMSSocket(),
			"--material=" + l.KMSMaterialPath(),
			"--root-key=" + l.RootKey,
			"--status=" + l.KMSStatusAddr(),
		},
		Files: []string{filepath.Dir(l.KMSMaterialPath()), l.RootKey, EgressDir},
	}
}

// keyIssue is the cluster health issue a keyring's state makes.
func keyIssue(ring *kms.Keyring, err error) (string, string) {
	switch {
	case errors.Is(err, kms.ErrNotFound) || err == nil && ring.State == kms.StateGone:
		return model.IssueKmsKeyNotFound, "the cluster's KMS key is gone: Secrets encrypted with it cannot be read"
	case err != nil:
		return "", ""
	case ring.State == kms.StateDisabled:
		return model.IssueKmsKeyDisabled, fmt.Sprintf("KMS key %s is disabled: Secrets cannot be read or written; enable it ('aws kms enable-key') and the cluster recovers", ring.Arn)
	case ring.State == kms.StatePendingDeletion:
		return model.IssueKmsKeyMarkedForDeletion, fmt.Sprintf("KMS key %s is pending deletion: Secrets cannot be read or written; cancel the deletion ('aws kms cancel-key-deletion') and enable it", ring.Arn)
	}
	return "", ""
}

// stepKMS runs the cluster's KMS plugin with the key's current state, and
// records the key's health.
func (w *worker) stepKMS(ctx context.Context, p *pass) (outcome, error) {
	e := p.c.Encryption
	if e == nil {
		return done("None", "Secrets are not envelope-encrypted"), nil
	}
	if w.cfg.Keys == nil {
		return outcome{}, errors.New("this skiff has no KMS service")
	}
	ring, err := w.cfg.Keys.Keyring(p.c.Account, e.KeyArn)
	if errors.Is(err, kms.ErrNotFound) {
		// Deleted: the plugin keeps the key's ID, and refuses.
		old, rerr := (&material.File[kmsplugin.Material]{Path: p.l.KMSMaterialPath()}).Get()
		if rerr == nil {
			old.Key.State, old.Key.Sealed = kms.StateGone, nil
			ring = &old.Key
		} else {
			ring = &kms.Keyring{Arn: e.KeyArn, State: kms.StateGone}
		}
	} else if err != nil {
		return outcome{}, fmt.Errorf("the cluster's KMS key: %w", err)
	}
	if _, err := kmsplugin.WriteMaterial(p.l.KMSMaterialPath(), &kmsplugin.Material{Cluster: p.c.ID, Key: *ring}); err != nil {
		return outcome{}, fmt.Errorf("the KMS plugin's material: %w", err)
	}
	if err := writeIfChanged(p.l.EncryptionConfigPath(), []byte(p.l.encryptionConfig())); err != nil {
		return outcome{}, err
	}
	issue, msg := keyIssue(ring, nil)
	if issue != e.KeyIssue || msg != e.KeyIssueMessage {
		c, err := w.cfg.Store.UpdateCluster(p.c.Key(), func(c *model.Cluster) error {
			if c.Encryption == nil {
				return nil
			}
			if issue != "" && c.Encryption.KeyIssue == "" {
				c.Encryption.Revocations++
			}
			c.Encryption.KeyIssue, c.Encryption.KeyIssueMessage = issue, msg
			return nil
		})
		if err != nil {
			return outcome{}, err
		}
		if issue != "" {
			w.event(p.c, "", model.EventDetected, msg+"; the apiservers are replaced so that none keeps a data key")
		} else {
			w.event(p.c, "", model.EventDetected, "the cluster's KMS key is usable again")
		}
		p.c = c // the apiservers' specs carry the revocations: the next pass rolls them
	}
	o, err := w.converge(ctx, p, runtime.KMSPlugin)
	if err != nil {
		return o, err
	}
	// Just started: it serves within a fraction of a second.
	sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	for {
		if err := status.Get(sctx, p.l.KMSStatusAddr(), nil); err == nil {
			p.kmsUp = true
			break
		}
		select {
		case <-sctx.Done():
		case <-time.After(20 * time.Millisecond):
			continue
		}
		break
	}
	if !p.kmsUp {
		return o, nil
	}
	if issue != "" {
		return working(issue, "%s", msg), nil
	}
	return done("Ready", "Secrets are encrypted with %s (key ID %s)", ring.Arn, ring.KeyID()), nil
}

// stepEncryption rewrites, once, the Secrets stored before the cluster's
// key was associated, when every apiserver encrypts with it.
func (w *worker) stepEncryption(ctx context.Context, p *pass) (outcome, error) {
	e := p.c.Encryption
	switch {
	case e == nil:
		return done("None", "Secrets are not envelope-encrypted"), nil
	case e.Rewritten:
		return done("Encrypted", "Secrets are encrypted with %s", e.KeyArn), nil
	case !serving(p):
		return waiting("no apiserver serves yet"), nil
	case e.KeyIssue != "":
		return working(e.KeyIssue, "%s", e.KeyIssueMessage), nil
	}
	for i, s := range p.specs {
		if s.Role == runtime.APIServer && !p.snap[i].Healthy {
			return working("Rolling", "%s does not yet encrypt", s.Name()), nil
		}
	}
	n, err := rewriteSecrets(ctx, w, p)
	if err != nil {
		return outcome{}, fmt.Errorf("rewrite Secrets: %w", err)
	}
	c, err := w.cfg.Store.UpdateCluster(p.c.Key(), func(c *model.Cluster) error {
		if c.Encryption != nil && c.Encryption.KeyArn == e.KeyArn {
			c.Encryption.Rewritten = true
		}
		return nil
	})
	if err != nil {
		return outcome{}, err
	}
	p.c = c
	w.event(p.c, "", model.EventUpdated, fmt.Sprintf("%d Secrets rewritten, encrypted with %s", n, e.KeyArn))
	return done("Encrypted", "Secrets are encrypted with %s", e.KeyArn), nil
}

// rewriteSecrets writes every Secret again (an unchanged update: the
// apiserver stores it again since it read it through a provider other
// than the first), and returns how many.
func rewriteSecrets(ctx context.Context, w *worker, p *pass) (int, error) {
	list, err := w.admin.CoreV1().Secrets(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, err
	}
	n := 0
	for i := range list.Items {
		s := &list.Items[i]
		if err := rewriteSecret(ctx, w, s); err != nil {
			return n, fmt.Errorf("%s/%s: %w", s.Namespace, s.Name, err)
		}
		n++
	}
	return n, nil
}

func rewriteSecret(ctx context.Context, w *worker, s *corev1.Secret) error {
	for range 5 {
		_, err := w.admin.CoreV1().Secrets(s.Namespace).Update(ctx, s, metav1.UpdateOptions{})
		switch {
		case err == nil, apierrors.IsNotFound(err):
			return nil
		case !apierrors.IsConflict(err):
			return err
		}
		// Changed meanwhile: its new version was written encrypted, but
		// write it again to be sure.
		fresh, err := w.admin.CoreV1().Secrets(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		s = fresh
	}
	return errors.New("it kept changing")
}
