package network

import (
	"errors"
	"path/filepath"
	"testing"

	"skiff.dev/skiff/internal/store"
)

func newService(t *testing.T) *Service {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &Service{Store: st, Region: "us-east-1"}
}

func TestDefaultVPC(t *testing.T) {
	s := newService(t)
	for range 2 { // idempotent
		if _, err := s.EnsureDefault("111111111111"); err != nil {
			t.Fatal(err)
		}
	}
	vpcs, _ := s.Vpcs("111111111111", nil)
	subnets, _ := s.Subnets("111111111111", nil)
	if len(vpcs) != 1 || !vpcs[0].IsDefault || vpcs[0].CidrBlock != "172.31.0.0/16" || len(subnets) != 3 {
		t.Fatalf("vpcs %v subnets %v", vpcs, subnets)
	}
	zones := map[string]bool{}
	for _, sn := range subnets {
		zones[sn.AvailabilityZone("us-east-1")] = sn.DefaultForAz && sn.AvailableIPs() == 4091
	}
	if !zones["us-east-1a"] || !zones["us-east-1b"] || !zones["us-east-1c"] {
		t.Errorf("zones = %v", zones)
	}
	if other, _ := s.Vpcs("222222222222", nil); len(other) != 0 {
		t.Errorf("another account sees %v", other)
	}
}

func TestZoneID(t *testing.T) {
	for _, tt := range []struct{ region, zone, want string }{
		{"us-east-1", "a", "use1-az1"}, {"eu-west-2", "c", "euw2-az3"},
	} {
		if got := ZoneID(tt.region, tt.zone); got != tt.want {
			t.Errorf("ZoneID(%s, %s) = %s, want %s", tt.region, tt.zone, got, tt.want)
		}
	}
}

func TestCreateAndDelete(t *testing.T) {
	s := newService(t)
	const acct = "111111111111"
	v, err := s.CreateVpc(acct, "10.0.0.0/16", nil)
	if err != nil {
		t.Fatal(err)
	}
	sn, err := s.CreateSubnet(acct, v.ID, "10.0.1.0/24", "use1-az2", nil)
	if err != nil || sn.Zone != "b" {
		t.Fatalf("CreateSubnet = %v, %v", sn, err)
	}
	for _, tt := range []struct {
		name string
		err  error
		fn   func() error
	}{
		{"vpc too big", ErrRange, func() error { _, err := s.CreateVpc(acct, "10.0.0.0/8", nil); return err }},
		{"host bits", ErrInvalid, func() error { _, err := s.CreateVpc(acct, "10.0.0.1/16", nil); return err }},
		{"not a cidr", ErrInvalid, func() error { _, err := s.CreateVpc(acct, "ten", nil); return err }},
		{"outside vpc", ErrRange, func() error { _, err := s.CreateSubnet(acct, v.ID, "10.1.0.0/24", "", nil); return err }},
		{"overlap", ErrConflict, func() error { _, err := s.CreateSubnet(acct, v.ID, "10.0.1.128/25", "", nil); return err }},
		{"bad zone", ErrInvalid, func() error { _, err := s.CreateSubnet(acct, v.ID, "10.0.2.0/24", "us-east-1z", nil); return err }},
		{"unknown vpc", ErrNotFound, func() error { _, err := s.CreateSubnet(acct, "vpc-0", "10.0.2.0/24", "", nil); return err }},
		{"vpc with subnet", ErrDependency, func() error { return s.DeleteVpc(acct, v.ID) }},
		{"unknown subnet", ErrNotFound, func() error { return s.DeleteSubnet(acct, "subnet-0") }},
		{"unknown id lookup", ErrNotFound, func() error { _, err := s.Subnets(acct, []string{"subnet-0"}); return err }},
	} {
		if err := tt.fn(); !errors.Is(err, tt.err) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.err)
		}
	}
	s.InUse = func(_, id string) string {
		if id == sn.ID {
			return "web"
		}
		return ""
	}
	if err := s.DeleteSubnet(acct, sn.ID); !errors.Is(err, ErrDependency) {
		t.Errorf("DeleteSubnet in use = %v", err)
	}
	s.InUse = nil
	if err := s.DeleteSubnet(acct, sn.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteVpc(acct, v.ID); err != nil {
		t.Fatal(err)
	}
	for range MaxVPCs - 1 { // the default VPC counts
		if _, err := s.CreateVpc(acct, "10.0.0.0/16", nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CreateVpc(acct, "10.0.0.0/16", nil); !errors.Is(err, ErrLimit) {
		t.Errorf("VPC beyond the quota: %v", err)
	}
}
