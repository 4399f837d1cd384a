package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eks"
)

// BenchmarkPolicyEvaluation measures a DescribeCluster's latency through
// skiff's API (SDK client, SigV4, the real handler) for a user whose 20
// attached customer managed policies must all be evaluated, against the
// account root (no evaluation) in the same run; issue 15's target is a
// ratio of at most 1.2.
func BenchmarkPolicyEvaluation(b *testing.B) {
	for range b.N {
		s := startServe(b, b.TempDir(), freePort(b))
		mustAWS(b, s, s.createArgs(b, "bench")...)
		mustAWS(b, s, "iam", "create-user", "--user-name", "busy")
		for i := range 20 {
			// Five statements each, none matching until the last policy.
			var stmts []string
			for j := range 5 {
				stmts = append(stmts, fmt.Sprintf(`{"Effect":"Allow","Action":["ec2:Describe*","ecr:Get*"],"Resource":"arn:aws:ec2:*:*:vpc/vpc-%d%d","Condition":{"StringEquals":{"aws:ResourceTag/team":"t%d"}}}`, i, j, j))
			}
			if i == 19 {
				stmts = append(stmts, `{"Effect":"Allow","Action":"eks:Describe*","Resource":"arn:aws:eks:*:*:cluster/*"}`)
			}
			arn := mustAWS(b, s, "iam", "create-policy", "--policy-name", fmt.Sprintf("p%d", i), "--policy-document",
				`{"Version":"2012-10-17","Statement":[`+strings.Join(stmts, ",")+`]}`)["Policy"].(map[string]any)["Arn"].(string)
			mustAWS(b, s, "iam", "attach-user-policy", "--user-name", "busy", "--policy-arn", arn)
		}
		key := mustAWS(b, s, "iam", "create-access-key", "--user-name", "busy")["AccessKey"].(map[string]any)
		root := eks.NewFromConfig(sdkConfig(s))
		cfg := sdkConfig(s)
		cfg.Credentials = credentials.NewStaticCredentialsProvider(key["AccessKeyId"].(string), key["SecretAccessKey"].(string), "")
		busy := eks.NewFromConfig(cfg)

		ctx := context.Background()
		call := func(c *eks.Client) time.Duration {
			start := time.Now()
			if _, err := c.DescribeCluster(ctx, &eks.DescribeClusterInput{Name: aws.String("bench")}); err != nil {
				b.Fatal(err)
			}
			return time.Since(start)
		}
		for range 20 { // warm up connections and caches
			call(root)
			call(busy)
		}
		var tr, tb []time.Duration
		for range 500 { // interleaved, so drift hits both alike
			tr = append(tr, call(root))
			tb = append(tb, call(busy))
		}
		mr, mb := median(tr), median(tb)
		b.ReportMetric(float64(mr.Microseconds()), "root-µs")
		b.ReportMetric(float64(mb.Microseconds()), "20policies-µs")
		b.ReportMetric(float64(mb)/float64(mr), "ratio")
		b.Logf("DescribeCluster median: root %v, user with 20 policies %v: %.2f× (target ≤ 1.2×)", mr, mb, float64(mb)/float64(mr))

		mustAWS(b, s, "eks", "delete-cluster", "--name", "bench")
		waitAWSStatus(b, s, "bench", "")
		s.stop(b)
	}
}
