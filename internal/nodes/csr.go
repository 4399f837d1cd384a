package nodes

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"time"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/pki"
)

// ApproveCSRs approves the kubelets' certificate requests that name the
// requesting node itself (and signs them), and denies the other kubelet
// requests: a node
// (authenticated as system:node:NAME through its EC2_LINUX access entry)
// gets a client certificate for NAME only, and a serving certificate for
// NAME and its own addresses only.
func (r *Reconciler) ApproveCSRs(ctx context.Context, c *model.Cluster, admin kubernetes.Interface) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	list, err := admin.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("list CSRs: %w", err)
	}
	for _, csr := range list.Items {
		if len(csr.Status.Conditions) > 0 {
			continue
		}
		if csr.Spec.SignerName != certv1.KubeAPIServerClientKubeletSignerName && csr.Spec.SignerName != certv1.KubeletServingSignerName {
			continue
		}
		ok, why := judge(&csr)
		cond := certv1.CertificateSigningRequestCondition{Type: certv1.CertificateApproved, Status: corev1.ConditionTrue,
			Reason: "SkiffNodeIdentity", Message: "the node requests a certificate for itself"}
		if !ok {
			cond.Type, cond.Reason, cond.Message = certv1.CertificateDenied, "SkiffNodeIdentity", why
		}
		csr.Status.Conditions = append(csr.Status.Conditions, cond)
		approved, err := admin.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, &csr, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("approve CSR %s: %w", csr.Name, err)
		}
		r.cfg.Log.Info("kubelet CSR", "csr", csr.Name, "user", csr.Spec.Username, "approved", ok, "why", why)
		if ok {
			if err := r.sign(ctx, c, admin, approved); err != nil {
				return err
			}
		}
	}
	return nil
}

// sign issues an approved kubelet certificate at once, with the cluster's
// CA, as the controller-manager's signer would: a node's first
// certificate does not wait for a controller-manager to start and win its
// election (the signer skips a request that has its certificate; if it
// signed first, the update here conflicts and the request keeps its).
func (r *Reconciler) sign(ctx context.Context, c *model.Cluster, admin kubernetes.Interface, csr *certv1.CertificateSigningRequest) error {
	block, _ := pem.Decode(csr.Spec.Request)
	if block == nil {
		return fmt.Errorf("CSR %s: the request is not PEM", csr.Name)
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return fmt.Errorf("CSR %s: %w", csr.Name, err)
	}
	var validity time.Duration
	if s := csr.Spec.ExpirationSeconds; s != nil {
		validity = max(time.Duration(*s)*time.Second, 10*time.Minute) // the API's minimum
	}
	cert, err := pki.Sign(filepath.Join(r.cfg.DataDir, "clusters", c.ID, "pki"), pki.ClusterCA, pki.Request{CSR: req, Validity: validity,
		Server: csr.Spec.SignerName == certv1.KubeletServingSignerName, Client: csr.Spec.SignerName == certv1.KubeAPIServerClientKubeletSignerName})
	if err != nil {
		return fmt.Errorf("sign CSR %s: %w", csr.Name, err)
	}
	csr.Status.Certificate = cert
	if _, err := admin.CertificatesV1().CertificateSigningRequests().UpdateStatus(ctx, csr, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
		return fmt.Errorf("issue the certificate of CSR %s: %w", csr.Name, err)
	}
	return nil
}

// judge decides a kubelet CSR.
func judge(csr *certv1.CertificateSigningRequest) (bool, string) {
	node, ok := strings.CutPrefix(csr.Spec.Username, "system:node:")
	if !ok || !slices.Contains(csr.Spec.Groups, "system:nodes") {
		return false, fmt.Sprintf("requester %s is not a node", csr.Spec.Username)
	}
	block, _ := pem.Decode(csr.Spec.Request)
	if block == nil {
		return false, "the request is not PEM"
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return false, "the request does not parse: " + err.Error()
	}
	if req.Subject.CommonName != "system:node:"+node || !slices.Equal(req.Subject.Organization, []string{"system:nodes"}) {
		return false, fmt.Sprintf("node %s may request a certificate for CN system:node:%s, O system:nodes only", node, node)
	}
	// The usages a kubelet asks for (upstream's approver accepts these
	// only): key encipherment with an RSA key only.
	purpose := certv1.UsageServerAuth
	if csr.Spec.SignerName == certv1.KubeAPIServerClientKubeletSignerName {
		purpose = certv1.UsageClientAuth
	}
	for _, u := range csr.Spec.Usages {
		if u != certv1.UsageDigitalSignature && u != certv1.UsageKeyEncipherment && u != purpose {
			return false, fmt.Sprintf("usage %q: a kubelet certificate has digital signature, %s and key encipherment only", u, purpose)
		}
	}
	if !slices.Contains(csr.Spec.Usages, certv1.UsageDigitalSignature) || !slices.Contains(csr.Spec.Usages, purpose) {
		return false, fmt.Sprintf("a kubelet certificate has usages digital signature and %s", purpose)
	}
	if csr.Spec.SignerName == certv1.KubeAPIServerClientKubeletSignerName {
		if len(req.DNSNames)+len(req.IPAddresses)+len(req.EmailAddresses)+len(req.URIs) > 0 {
			return false, "a client certificate carries no SANs"
		}
		return true, ""
	}
	if len(req.EmailAddresses)+len(req.URIs) > 0 {
		return false, "a serving certificate carries DNS and IP SANs only"
	}
	for _, d := range req.DNSNames {
		if d != node {
			return false, fmt.Sprintf("node %s may not serve as %s", node, d)
		}
	}
	for _, ip := range req.IPAddresses {
		if !nodeIP(node, ip) {
			return false, fmt.Sprintf("node %s may not serve on %s", node, ip)
		}
	}
	return true, ""
}

// nodeIP reports whether ip is the address a node name encodes
// (ip-172-31-0-10.ec2.internal → 172.31.0.10).
func nodeIP(node string, ip net.IP) bool {
	host, _, _ := strings.Cut(node, ".")
	return strings.TrimPrefix(host, "ip-") == strings.ReplaceAll(ip.String(), ".", "-")
}

// cordon marks node name unschedulable.
func cordon(ctx context.Context, admin kubernetes.Interface, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	patch := []byte(`{"spec":{"unschedulable":true}}`)
	_, err := admin.CoreV1().Nodes().Patch(ctx, name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("cordon %s: %w", name, err)
	}
	return err
}
