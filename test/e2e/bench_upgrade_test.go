package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	ekstypes "github.com/aws/aws-sdk-go-v2/service/eks/types"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// EKS' published figures for comparison (they cannot run here): a
// control-plane upgrade takes 10–25 minutes, a managed node group's
// upgrade is reported at 24 to 60 minutes (eksctl #2096, #3309).
const (
	eksControlPlaneUpgrade = 10 * time.Minute
	eksNodegroupUpgrade    = 24 * time.Minute
)

// BenchmarkUpgrade is issue 17's benchmark: a 1.36 cluster with a 3-node
// group and a Deployment of 3 under a PodDisruptionBudget (minAvailable
// 2), and a client that writes and reads through the endpoint all along.
// It times the control-plane upgrade to 1.37, the node group's upgrade,
// the node group's rollback and the control plane's, with the client's
// failed requests during each (target 0) and the Deployment's fewest
// ready replicas, and prints each time's ratio to EKS' published figure
// (the lower end).
func BenchmarkUpgrade(b *testing.B) {
	for range b.N {
		s, _ := serveTest(b)
		ctx, cancel := context.WithCancel(context.Background())
		cli := eks.NewFromConfig(sdkConfig(s))
		role := nodeRole(b, s, "bu-nodes")
		c := createActive(b, s, cli, "bu", "1.36")
		if _, err := cli.CreateNodegroup(ctx, &eks.CreateNodegroupInput{ClusterName: aws.String("bu"), NodegroupName: aws.String("ng"),
			NodeRole: aws.String(role), Subnets: s.defaultSubnets(b), UpdateConfig: &ekstypes.NodegroupUpdateConfig{MaxUnavailable: aws.Int32(1)},
			ScalingConfig: &ekstypes.NodegroupScalingConfig{MinSize: aws.Int32(1), MaxSize: aws.Int32(6), DesiredSize: aws.Int32(3)}}); err != nil {
			b.Fatal(err)
		}
		waitNodegroup(b, s, "bu", "ng", "ACTIVE", 3*time.Minute)
		cs := sdkClient(b, s, c)
		labels := map[string]string{"app": "app"}
		grace := int64(1)
		dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "app"}, Spec: appsv1.DeploymentSpec{Replicas: aws.Int32(3),
			Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{TerminationGracePeriodSeconds: &grace, Containers: []corev1.Container{{Name: "app", Image: "busybox",
					Command: []string{"sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"}}}}}}}
		if _, err := cs.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		two := intstr.FromInt32(2)
		if _, err := cs.PolicyV1().PodDisruptionBudgets("default").Create(ctx, &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "app"},
			Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &two, Selector: &metav1.LabelSelector{MatchLabels: labels}}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		if err := eventually(2*time.Minute, func() error {
			d, err := cs.AppsV1().Deployments("default").Get(ctx, "app", metav1.GetOptions{})
			if err == nil && d.Status.ReadyReplicas != 3 {
				err = fmt.Errorf("%d ready", d.Status.ReadyReplicas)
			}
			return err
		}); err != nil {
			b.Fatal(err)
		}

		// The client: a write and a read back, then the Deployment's ready
		// replicas, over and over.
		var mu sync.Mutex
		var failures []string
		minReady := 3
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			writeLoop(ctx, cs, "bu", func(err error) {
				d, derr := cs.AppsV1().Deployments("default").Get(ctx, "app", metav1.GetOptions{})
				mu.Lock()
				defer mu.Unlock()
				for _, e := range []error{err, derr} {
					if e != nil && ctx.Err() == nil {
						failures = append(failures, e.Error())
					}
				}
				if derr == nil {
					minReady = min(minReady, int(d.Status.ReadyReplicas))
				}
			})
		}()
		// phase runs an update to Successful and reports its time, the
		// client's failures and the fewest ready replicas meanwhile.
		phase := func(what string, eksTime time.Duration, start func() (*ekstypes.Update, error), nodegroup bool) {
			b.Helper()
			mu.Lock()
			failures, minReady = nil, 3
			mu.Unlock()
			t0 := time.Now()
			u, err := start()
			if err != nil {
				b.Fatalf("%s: %v", what, err)
			}
			in := &eks.DescribeUpdateInput{Name: aws.String("bu"), UpdateId: u.Id}
			if nodegroup {
				in.NodegroupName = aws.String("ng")
			}
			if err := eventually(10*time.Minute, func() error {
				out, err := cli.DescribeUpdate(ctx, in)
				if err != nil {
					return err
				}
				switch out.Update.Status {
				case ekstypes.UpdateStatusSuccessful:
					return nil
				case ekstypes.UpdateStatusFailed:
					b.Fatalf("%s failed: %+v", what, out.Update.Errors)
				}
				return fmt.Errorf("%s", out.Update.Status)
			}); err != nil {
				b.Fatal(err)
			}
			took := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			ratio := ""
			if eksTime > 0 {
				ratio = fmt.Sprintf(" (%.3f× EKS' published %s)", took.Seconds()/eksTime.Seconds(), eksTime)
			}
			report(b, "%-26s %6.1fs%s; failed requests %d; fewest ready replicas %d", what+":", took.Seconds(), ratio, len(failures), minReady)
			for _, f := range failures {
				report(b, "  failed: %s", strings.TrimSpace(f))
			}
			b.ReportMetric(took.Seconds(), strings.ReplaceAll(what, " ", "-")+"-s")
			b.ReportMetric(float64(len(failures)), strings.ReplaceAll(what, " ", "-")+"-failures")
		}
		phase("control-plane upgrade", eksControlPlaneUpgrade, func() (*ekstypes.Update, error) {
			out, err := cli.UpdateClusterVersion(ctx, &eks.UpdateClusterVersionInput{Name: aws.String("bu"), Version: aws.String("1.37")})
			if err != nil {
				return nil, err
			}
			return out.Update, nil
		}, false)
		ngVersion := func(v string) func() (*ekstypes.Update, error) {
			return func() (*ekstypes.Update, error) {
				out, err := cli.UpdateNodegroupVersion(ctx, &eks.UpdateNodegroupVersionInput{ClusterName: aws.String("bu"), NodegroupName: aws.String("ng"), Version: aws.String(v)})
				if err != nil {
					return nil, err
				}
				return out.Update, nil
			}
		}
		phase("node group upgrade", eksNodegroupUpgrade, ngVersion("1.37"), true)
		phase("node group rollback", 0, ngVersion("1.36"), true)
		phase("control-plane rollback", 0, func() (*ekstypes.Update, error) {
			out, err := cli.UpdateClusterVersion(ctx, &eks.UpdateClusterVersionInput{Name: aws.String("bu"), Version: aws.String("1.36")})
			if err != nil {
				return nil, err
			}
			return out.Update, nil
		}, false)
		cancel()
		wg.Wait()
	}
}
