package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	ekstypes "github.com/aws/aws-sdk-go-v2/service/eks/types"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// BenchmarkSecretsEncryption is issue 18's cost of envelope encryption,
// measured in one run: CreateCluster → ACTIVE with and without
// encryptionConfig (3 of each, alternated; medians), and 1000 Secrets
// written (8 writers) to a cluster with and without it. Target: both
// ratios ≤ 1.10.
func BenchmarkSecretsEncryption(b *testing.B) {
	for range b.N {
		dataDir := b.TempDir()
		s := startServe(b, dataDir, freePort(b))
		key := mustAWS(b, s, "kms", "create-key")["KeyMetadata"].(map[string]any)["Arn"].(string)
		withKey := func(in *eks.CreateClusterInput) {
			in.EncryptionConfig = []ekstypes.EncryptionConfig{{Resources: []string{"secrets"}, Provider: &ekstypes.Provider{KeyArn: aws.String(key)}}}
		}
		// Each create on a quiet machine (the one before deleted), the
		// order alternated: a cluster still starting its standbys would
		// slow the next.
		var plain, enc []time.Duration
		for i := range 3 {
			for j, withEnc := range []bool{i%2 == 1, i%2 == 0} {
				name := fmt.Sprintf("c-%d-%d", i, j)
				if withEnc {
					d, _ := createActiveSDK(b, s, name, withKey)
					enc = append(enc, d)
				} else {
					d, _ := createActiveSDK(b, s, name)
					plain = append(plain, d)
				}
				mustAWS(b, s, "eks", "delete-cluster", "--name", name)
				waitAWSStatus(b, s, name, "")
			}
		}
		b.Logf("create→ACTIVE without encryption %v, with %v", plain, enc)
		mp, me := median(plain), median(enc)
		_, cPlain := createActiveSDK(b, s, "plain")
		_, cEnc := createActiveSDK(b, s, "enc", withKey)
		time.Sleep(10 * time.Second) // both settled (standbys, controllers)
		// No client-side rate limit: the apiservers are what is measured.
		wp := writeSecrets(b, sdkClientQPS(b, s, cPlain, -1), 1000)
		we := writeSecrets(b, sdkClientQPS(b, s, cEnc, -1), 1000)
		b.ReportMetric(mp.Seconds(), "create-plain-s")
		b.ReportMetric(me.Seconds(), "create-enc-s")
		b.ReportMetric(me.Seconds()/mp.Seconds(), "create-ratio")
		b.ReportMetric(wp.Seconds(), "secrets1000-plain-s")
		b.ReportMetric(we.Seconds(), "secrets1000-enc-s")
		b.ReportMetric(we.Seconds()/wp.Seconds(), "secrets-ratio")
		fmt.Printf("BenchmarkSecretsEncryption: create→ACTIVE %.2fs plain, %.2fs encrypted (%.3f×); 1000 Secrets %.2fs plain, %.2fs encrypted (%.3f×); target ≤ 1.10×\n",
			mp.Seconds(), me.Seconds(), me.Seconds()/mp.Seconds(), wp.Seconds(), we.Seconds(), we.Seconds()/wp.Seconds())
		for _, name := range []string{"plain", "enc"} {
			mustAWS(b, s, "eks", "delete-cluster", "--name", name)
			waitAWSStatus(b, s, name, "")
		}
		s.stop(b)
	}
}

// writeSecrets creates n Secrets of 1 KiB with 8 writers and returns the
// time it took (after one warm-up write, retried while RBAC settles).
func writeSecrets(b *testing.B, cs *kubernetes.Clientset, n int) time.Duration {
	b.Helper()
	ctx := context.Background()
	value := make([]byte, 1024)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	secret := func(name string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string][]byte{"v": value}}
	}
	if err := eventually(30*time.Second, func() error {
		_, err := cs.CoreV1().Secrets("default").Create(ctx, secret("warm-up"), metav1.CreateOptions{})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				if _, err := cs.CoreV1().Secrets("default").Create(ctx, secret(fmt.Sprintf("s-%d", i)), metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	d := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return d
}
