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
		var plain, enc []time.Duration
		var cPlain, cEnc *ekstypes.Cluster
		for i := range 3 {
			d, c := createActiveSDK(b, s, fmt.Sprintf("plain-%d", i))
			plain, cPlain = append(plain, d), c
			d, c = createActiveSDK(b, s, fmt.Sprintf("enc-%d", i), withKey)
			enc, cEnc = append(enc, d), c
			if i < 2 { // keep the last pair for the writes
				mustAWS(b, s, "eks", "delete-cluster", "--name", fmt.Sprintf("plain-%d", i))
				mustAWS(b, s, "eks", "delete-cluster", "--name", fmt.Sprintf("enc-%d", i))
				waitAWSStatus(b, s, fmt.Sprintf("plain-%d", i), "")
				waitAWSStatus(b, s, fmt.Sprintf("enc-%d", i), "")
			}
		}
		b.Logf("create→ACTIVE without encryption %v, with %v", plain, enc)
		mp, me := median(plain), median(enc)
		wp := writeSecrets(b, sdkClient(b, s, cPlain), 1000)
		we := writeSecrets(b, sdkClient(b, s, cEnc), 1000)
		b.ReportMetric(mp.Seconds(), "create-plain-s")
		b.ReportMetric(me.Seconds(), "create-enc-s")
		b.ReportMetric(me.Seconds()/mp.Seconds(), "create-ratio")
		b.ReportMetric(wp.Seconds(), "secrets1000-plain-s")
		b.ReportMetric(we.Seconds(), "secrets1000-enc-s")
		b.ReportMetric(we.Seconds()/wp.Seconds(), "secrets-ratio")
		fmt.Printf("BenchmarkSecretsEncryption: create→ACTIVE %.2fs plain, %.2fs encrypted (%.3f×); 1000 Secrets %.2fs plain, %.2fs encrypted (%.3f×); target ≤ 1.10×\n",
			mp.Seconds(), me.Seconds(), me.Seconds()/mp.Seconds(), wp.Seconds(), we.Seconds(), we.Seconds()/wp.Seconds())
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
