package e2e

import (
	"context"
	"errors"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	ekstypes "github.com/aws/aws-sdk-go-v2/service/eks/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
)

// sdkConfig returns an aws-sdk-go-v2 config for a skiff server's account.
func sdkConfig(s *server) aws.Config {
	get := func(k string) string {
		for _, kv := range s.env {
			if v, ok := strings.CutPrefix(kv, k+"="); ok {
				return v
			}
		}
		return ""
	}
	return aws.Config{
		Region:       get("AWS_DEFAULT_REGION"),
		BaseEndpoint: aws.String(get("AWS_ENDPOINT_URL")),
		Credentials:  credentials.NewStaticCredentialsProvider(get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY"), ""),
		HTTPClient:   s.client, // trusting skiff's CA, as AWS_CA_BUNDLE makes LoadDefaultConfig do
	}
}

// apiCode returns the AWS error code of err ("" if it is not an API error).
func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// TestSDKClients drives skiff with the AWS SDK for Go v2: STS, IAM, EC2 and
// EKS clients, their waiters and their typed errors.
func TestSDKClients(t *testing.T) {
	s := startServe(t, t.TempDir(), freePort(t))
	defer s.stop(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cfg := sdkConfig(s)
	stsc, iamc, ec2c, eksc := sts.NewFromConfig(cfg), iam.NewFromConfig(cfg), ec2.NewFromConfig(cfg), eks.NewFromConfig(cfg)

	id, err := stsc.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatal(err)
	}
	account := aws.ToString(id.Account)

	// IAM.
	if _, err := iamc.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("dev")}); err != nil {
		t.Fatal(err)
	}
	key, err := iamc.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("dev")})
	if err != nil || !strings.HasPrefix(aws.ToString(key.AccessKey.AccessKeyId), "AKIA") {
		t.Fatalf("CreateAccessKey = %v, %v", key, err)
	}
	if _, err := iamc.GetUser(ctx, &iam.GetUserInput{UserName: aws.String("nobody")}); apiCode(err) != "NoSuchEntity" {
		t.Errorf("GetUser(nobody) = %v, want NoSuchEntity", err)
	}
	role, err := iamc.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("cluster"),
		AssumeRolePolicyDocument: aws.String(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"eks.amazonaws.com"},"Action":"sts:AssumeRole"}]}`)})
	if err != nil {
		t.Fatal(err)
	}

	// EC2: the default VPC, its subnets and zones; a VPC of our own.
	azs, err := ec2c.DescribeAvailabilityZones(ctx, &ec2.DescribeAvailabilityZonesInput{})
	if err != nil || len(azs.AvailabilityZones) != 3 || aws.ToString(azs.AvailabilityZones[0].ZoneName) != cfg.Region+"a" {
		t.Fatalf("DescribeAvailabilityZones = %+v, %v", azs, err)
	}
	vpcs, err := ec2c.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{Filters: []ec2types.Filter{{Name: aws.String("is-default"), Values: []string{"true"}}}})
	if err != nil || len(vpcs.Vpcs) != 1 || aws.ToString(vpcs.Vpcs[0].CidrBlock) != "172.31.0.0/16" || aws.ToString(vpcs.Vpcs[0].OwnerId) != account {
		t.Fatalf("DescribeVpcs = %+v, %v", vpcs, err)
	}
	vpcID := aws.ToString(vpcs.Vpcs[0].VpcId)
	subnets, err := ec2c.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{Filters: []ec2types.Filter{{Name: aws.String("vpc-id"), Values: []string{vpcID}}}})
	if err != nil || len(subnets.Subnets) != 3 {
		t.Fatalf("DescribeSubnets = %+v, %v", subnets, err)
	}
	byZone := map[string]string{}
	for _, sn := range subnets.Subnets {
		byZone[aws.ToString(sn.AvailabilityZone)] = aws.ToString(sn.SubnetId)
	}
	own, err := ec2c.CreateVpc(ctx, &ec2.CreateVpcInput{CidrBlock: aws.String("10.1.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	ownSubnet, err := ec2c.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: own.Vpc.VpcId, CidrBlock: aws.String("10.1.1.0/24"), AvailabilityZone: aws.String(cfg.Region + "b")})
	if err != nil || aws.ToString(ownSubnet.Subnet.AvailabilityZone) != cfg.Region+"b" {
		t.Fatalf("CreateSubnet = %+v, %v", ownSubnet, err)
	}
	if _, err := ec2c.CreateSubnet(ctx, &ec2.CreateSubnetInput{VpcId: own.Vpc.VpcId, CidrBlock: aws.String("10.2.0.0/24")}); apiCode(err) != "InvalidSubnet.Range" {
		t.Errorf("CreateSubnet outside the VPC = %v, want InvalidSubnet.Range", err)
	}
	if _, err := ec2c.DeleteVpc(ctx, &ec2.DeleteVpcInput{VpcId: own.Vpc.VpcId}); apiCode(err) != "DependencyViolation" {
		t.Errorf("DeleteVpc with a subnet = %v, want DependencyViolation", err)
	}

	// EKS.
	versions, err := eksc.DescribeClusterVersions(ctx, &eks.DescribeClusterVersionsInput{})
	if err != nil || len(versions.ClusterVersions) != 2 || aws.ToString(versions.ClusterVersions[0].ClusterVersion) != "1.37" {
		t.Fatalf("DescribeClusterVersions = %+v, %v", versions, err)
	}
	create := func(name string, subnets ...string) (*eks.CreateClusterOutput, error) {
		return eksc.CreateCluster(ctx, &eks.CreateClusterInput{Name: aws.String(name), RoleArn: role.Role.Arn,
			ResourcesVpcConfig: &ekstypes.VpcConfigRequest{SubnetIds: subnets}, Tags: map[string]string{"team": "sdk"}})
	}
	var invalid *ekstypes.InvalidParameterException
	if _, err := create("onezone", byZone[cfg.Region+"a"]); !errors.As(err, &invalid) {
		t.Errorf("CreateCluster with one zone = %v, want InvalidParameterException", err)
	}
	if _, err := create("twovpcs", byZone[cfg.Region+"a"], aws.ToString(ownSubnet.Subnet.SubnetId)); !errors.As(err, &invalid) {
		t.Errorf("CreateCluster across VPCs = %v, want InvalidParameterException", err)
	}
	if _, err := create("ghost", "subnet-0000000000000000a", byZone[cfg.Region+"a"]); !errors.As(err, &invalid) {
		t.Errorf("CreateCluster with an unknown subnet = %v, want InvalidParameterException", err)
	}
	// Create, and time it as a client sees it: the create path's trace
	// (skiff events) must account for that time.
	start := time.Now()
	if _, err := create("sdk", byZone[cfg.Region+"a"], byZone[cfg.Region+"c"]); err != nil {
		t.Fatal(err)
	}
	for {
		d, err := eksc.DescribeCluster(ctx, &eks.DescribeClusterInput{Name: aws.String("sdk")})
		if err != nil {
			t.Fatal(err)
		}
		if d.Cluster.Status == ekstypes.ClusterStatusActive {
			break
		}
		if time.Since(start) > 2*time.Minute {
			t.Fatalf("cluster sdk is %s after 2 minutes", d.Cluster.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	checkTrace(t, s, "sdk", time.Since(start))
	if err := eks.NewClusterActiveWaiter(eksc, func(o *eks.ClusterActiveWaiterOptions) { o.MinDelay = time.Second }).
		Wait(ctx, &eks.DescribeClusterInput{Name: aws.String("sdk")}, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	d, err := eksc.DescribeCluster(ctx, &eks.DescribeClusterInput{Name: aws.String("sdk")})
	if err != nil {
		t.Fatal(err)
	}
	c := d.Cluster
	if c.Status != ekstypes.ClusterStatusActive || aws.ToString(c.ResourcesVpcConfig.VpcId) != vpcID || len(c.ResourcesVpcConfig.SubnetIds) != 2 ||
		c.AccessConfig.AuthenticationMode != ekstypes.AuthenticationModeApiAndConfigMap || c.CertificateAuthority.Data == nil {
		t.Errorf("DescribeCluster = %+v", c)
	}
	if _, err := ec2c.DeleteSubnet(ctx, &ec2.DeleteSubnetInput{SubnetId: aws.String(byZone[cfg.Region+"a"])}); apiCode(err) != "DependencyViolation" {
		t.Errorf("DeleteSubnet of a cluster's subnet = %v, want DependencyViolation", err)
	}

	// Tags.
	if _, err := eksc.TagResource(ctx, &eks.TagResourceInput{ResourceArn: c.Arn, Tags: map[string]string{"env": "test"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := eksc.UntagResource(ctx, &eks.UntagResourceInput{ResourceArn: c.Arn, TagKeys: []string{"team"}}); err != nil {
		t.Fatal(err)
	}
	tags, err := eksc.ListTagsForResource(ctx, &eks.ListTagsForResourceInput{ResourceArn: c.Arn})
	if err != nil || len(tags.Tags) != 1 || tags.Tags["env"] != "test" {
		t.Errorf("ListTagsForResource = %+v, %v", tags, err)
	}
	var notFound *ekstypes.NotFoundException
	if _, err := eksc.ListTagsForResource(ctx, &eks.ListTagsForResourceInput{ResourceArn: aws.String(strings.Replace(*c.Arn, "/sdk", "/nope", 1))}); !errors.As(err, &notFound) {
		t.Errorf("ListTagsForResource(unknown) = %v, want NotFoundException", err)
	}

	// A configuration update runs to Successful; a second identical one is refused.
	up, err := eksc.UpdateClusterConfig(ctx, &eks.UpdateClusterConfigInput{Name: aws.String("sdk"),
		Logging: &ekstypes.Logging{ClusterLogging: []ekstypes.LogSetup{{Types: []ekstypes.LogType{ekstypes.LogTypeApi, ekstypes.LogTypeAudit}, Enabled: aws.Bool(true)}}}})
	if err != nil || up.Update.Type != ekstypes.UpdateTypeLoggingUpdate {
		t.Fatalf("UpdateClusterConfig = %+v, %v", up, err)
	}
	waitUpdate(t, ctx, eksc, "sdk", aws.ToString(up.Update.Id))
	if _, err := eksc.UpdateClusterConfig(ctx, &eks.UpdateClusterConfigInput{Name: aws.String("sdk"),
		Logging: &ekstypes.Logging{ClusterLogging: []ekstypes.LogSetup{{Types: []ekstypes.LogType{ekstypes.LogTypeApi}, Enabled: aws.Bool(true)}}}}); !errors.As(err, &invalid) {
		t.Errorf("UpdateClusterConfig without a change = %v, want InvalidParameterException", err)
	}
	// A rollback needs an upgrade in place to roll back (issue 17).
	var badRequest *ekstypes.InvalidRequestException
	if _, err := eksc.UpdateClusterVersion(ctx, &eks.UpdateClusterVersionInput{Name: aws.String("sdk"), Version: aws.String("1.36")}); !errors.As(err, &badRequest) || !strings.Contains(err.Error(), "created at 1.37") {
		t.Errorf("UpdateClusterVersion to an older version of a cluster never upgraded = %v, want InvalidRequestException", err)
	}
	ups, err := eksc.ListUpdates(ctx, &eks.ListUpdatesInput{Name: aws.String("sdk")})
	if err != nil || len(ups.UpdateIds) != 1 {
		t.Errorf("ListUpdates = %+v, %v", ups, err)
	}

	if _, err := eksc.DeleteCluster(ctx, &eks.DeleteClusterInput{Name: aws.String("sdk")}); err != nil {
		t.Fatal(err)
	}
	if err := eks.NewClusterDeletedWaiter(eksc, func(o *eks.ClusterDeletedWaiterOptions) { o.MinDelay = time.Second }).
		Wait(ctx, &eks.DescribeClusterInput{Name: aws.String("sdk")}, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	var rnf *ekstypes.ResourceNotFoundException
	if _, err := eksc.DescribeCluster(ctx, &eks.DescribeClusterInput{Name: aws.String("sdk")}); !errors.As(err, &rnf) {
		t.Errorf("DescribeCluster after delete = %v, want ResourceNotFoundException", err)
	}
}

// waitUpdate polls DescribeUpdate until the update is Successful.
func waitUpdate(t *testing.T, ctx context.Context, c *eks.Client, name, id string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		u, err := c.DescribeUpdate(ctx, &eks.DescribeUpdateInput{Name: aws.String(name), UpdateId: aws.String(id)})
		if err != nil {
			t.Fatal(err)
		}
		switch u.Update.Status {
		case ekstypes.UpdateStatusSuccessful:
			return
		case ekstypes.UpdateStatusFailed, ekstypes.UpdateStatusCancelled:
			t.Fatalf("update %s: %+v", id, u.Update)
		}
		if time.Now().After(deadline) {
			t.Fatalf("update %s still %s", id, u.Update.Status)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkTrace checks cluster name's create-path trace (its Progress events)
// against the time a client measured from CreateCluster to ACTIVE: the
// milestones are there (the steps before the instances, each etcd member,
// an apiserver, the endpoint, ACTIVE), in time order, their own times add
// up to the last one's offset, and that offset is the measured time within
// 10 %.
func checkTrace(t *testing.T, s *server, name string, measured time.Duration) {
	t.Helper()
	trace := skiffEvents(t, s, name, "Progress")
	t.Logf("measured %.2fs; trace:\n%s", measured.Seconds(), trace)
	re := regexp.MustCompile(`Progress\s+(.*) at \+([0-9.]+)s \(\+([0-9.]+)s\)`)
	var sum, last float64
	var what []string
	for _, m := range re.FindAllStringSubmatch(trace, -1) {
		at, _ := strconv.ParseFloat(m[2], 64)
		own, _ := strconv.ParseFloat(m[3], 64)
		if at+0.01 < last {
			t.Errorf("%q at +%.2fs comes after a milestone at +%.2fs", m[1], at, last)
		}
		what, last, sum = append(what, m[1]), at, sum+own
	}
	all := strings.Join(what, "\n")
	for _, want := range []string{"step Network", "step PKI", "instance etcd-a healthy", "instance etcd-b healthy", "instance etcd-c healthy",
		"instance apiserver-", "instance endpoint-", "step Status Active"} {
		if !strings.Contains(all, want) {
			t.Errorf("no progress event %q", want)
		}
	}
	if len(what) == 0 || !strings.HasPrefix(what[len(what)-1], "step Status Active") {
		t.Errorf("the trace does not end with ACTIVE")
	}
	if math.Abs(sum-last) > 0.005*float64(len(what))+0.01 { // each printed to 0.01 s
		t.Errorf("the milestones' own times add up to %.2fs, the last is at +%.2fs", sum, last)
	}
	if d := math.Abs(last - measured.Seconds()); d > 0.1*measured.Seconds() {
		t.Errorf("the trace says ACTIVE at +%.2fs, the client measured %.2fs (more than 10%% apart)", last, measured.Seconds())
	}
}
