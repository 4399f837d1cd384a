package clusters

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"skiff.dev/skiff/internal/access"
	"skiff.dev/skiff/internal/model"
	"skiff.dev/skiff/internal/network"
	"skiff.dev/skiff/internal/store"
)

// TestAccessEntryProbing: CreateAccessEntry checks that the account's own
// principals exist, and answers alike for another account's whether they
// exist or not (issue 15: no probing of other tenants' users and roles).
func TestAccessEntryProbing(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const own, other = "111111111111", "222222222222"
	existing := map[string]bool{"arn:aws:iam::" + other + ":user/exists": true, "arn:aws:iam::" + own + ":user/me": true}
	s := &Service{Store: st, PrincipalExists: func(p access.Principal) bool { return existing[p.Arn()] }}
	if err := st.CreateCluster(&model.Cluster{Name: "web", Account: own, ID: "web-1", Status: model.StatusActive}, nil); err != nil {
		t.Fatal(err)
	}
	try := func(arn string) error {
		_, err := s.CreateAccessEntry(own, "web", AccessEntryRequest{PrincipalArn: arn})
		return err
	}
	if err := try("arn:aws:iam::" + own + ":user/me"); err != nil {
		t.Fatalf("own existing user: %v", err)
	}
	if err := try("arn:aws:iam::" + own + ":user/ghost"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("own missing user: %v", err)
	}
	a, b := try("arn:aws:iam::"+other+":user/exists"), try("arn:aws:iam::"+other+":user/ghost")
	if (a == nil) != (b == nil) {
		t.Fatalf("another account's principals are told apart: exists → %v, missing → %v", a, b)
	}
}

// TestNodeQuota: an account's node groups, over all its clusters, stay
// within its node quota.
func TestNodeQuota(t *testing.T) {
	s := &Service{Quotas: Quotas{Nodes: 5}}
	c := &model.Cluster{Nodegroups: []model.Nodegroup{{Desired: 2}, {Desired: 1}}}
	if err := s.checkNodeQuota(c, 2); err != nil {
		t.Fatalf("5 of 5: %v", err)
	}
	if err := s.checkNodeQuota(c, 3); !errors.Is(err, ErrLimit) {
		t.Fatalf("6 of 5: %v", err)
	}
}

// TestNodegroupQuota: a cluster has at most MaxNodegroups managed node
// groups, as on EKS; the refused one is not recorded.
func TestNodegroupQuota(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const own = "111111111111"
	nets := &network.Service{Store: st, Region: "us-east-1"}
	vpc, err := nets.EnsureDefault(own)
	if err != nil {
		t.Fatal(err)
	}
	subnets, err := nets.Subnets(own, nil)
	if err != nil || len(subnets) == 0 {
		t.Fatal(err, subnets)
	}
	s := &Service{Store: st, Network: nets}
	if err := st.CreateCluster(&model.Cluster{Name: "web", Account: own, ID: "web-1", Status: model.StatusActive,
		Network: model.ClusterNetwork{VpcID: vpc.ID}}, nil); err != nil {
		t.Fatal(err)
	}
	zero, one := 0, 1
	create := func(i int) error {
		_, _, err := s.CreateNodegroup(own, "web", NodegroupRequest{Name: fmt.Sprintf("ng-%d", i), NodeRole: "arn:aws:iam::" + own + ":role/nodes",
			Subnets: []string{subnets[0].ID}, Min: &zero, Max: &one, Desired: &zero})
		return err
	}
	for i := range MaxNodegroups {
		if err := create(i); err != nil {
			t.Fatalf("node group %d of %d: %v", i+1, MaxNodegroups, err)
		}
	}
	if err := create(MaxNodegroups); !errors.Is(err, ErrLimit) {
		t.Fatalf("node group %d: %v, want ErrLimit", MaxNodegroups+1, err)
	}
	if c, err := st.GetCluster(model.ClusterKey(own, "web")); err != nil || len(c.Nodegroups) != MaxNodegroups {
		t.Fatalf("after the refusal: %v node groups, %v", len(c.Nodegroups), err)
	}
}
