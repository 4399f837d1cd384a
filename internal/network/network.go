// Package network holds each account's virtual networks as EC2 models them:
// VPCs and their subnets, one subnet per zone in the default VPC. It keeps
// the records; the node runtime realizes a VPC as a Linux bridge in a
// network namespace of its own (so VPC ranges may overlap, as in AWS).
package network

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"skiff.dev/skiff/internal/store"
)

// Error kinds; the EC2 front end maps them to EC2 error codes.
var (
	ErrNotFound   = errors.New("not found")
	ErrInvalid    = errors.New("invalid parameter")
	ErrRange      = errors.New("invalid range")
	ErrConflict   = errors.New("conflict")
	ErrDependency = errors.New("dependency violation")
	ErrLimit      = errors.New("limit exceeded")
)

// Zones are the zone suffixes of a region: REGIONa, REGIONb, REGIONc.
var Zones = []string{"a", "b", "c"}

// MaxVPCs is the VPCs an account may have (AWS' default quota).
const MaxVPCs = 5

// The default VPC of every account, as AWS creates it.
const (
	DefaultVPCCidr = "172.31.0.0/16"
)

var defaultSubnetCidrs = []string{"172.31.0.0/20", "172.31.16.0/20", "172.31.32.0/20"}

// VPC is a virtual network of an account.
type VPC struct {
	ID        string            `json:"id"` // vpc-…
	Account   string            `json:"account"`
	CidrBlock string            `json:"cidrBlock"`
	IsDefault bool              `json:"isDefault"`
	State     string            `json:"state"`
	Tags      map[string]string `json:"tags,omitempty"`
	CreatedAt time.Time         `json:"createdAt"`
}

// Subnet is a range of a VPC in one zone.
type Subnet struct {
	ID                  string            `json:"id"` // subnet-…
	Account             string            `json:"account"`
	VpcID               string            `json:"vpcId"`
	CidrBlock           string            `json:"cidrBlock"`
	Zone                string            `json:"zone"` // "a", "b" or "c"
	DefaultForAz        bool              `json:"defaultForAz"`
	MapPublicIPOnLaunch bool              `json:"mapPublicIpOnLaunch"`
	State               string            `json:"state"`
	Tags                map[string]string `json:"tags,omitempty"`
	CreatedAt           time.Time         `json:"createdAt"`
}

// AvailabilityZone is the subnet's zone name ("us-east-1a").
func (s *Subnet) AvailabilityZone(region string) string { return region + s.Zone }

// ZoneID is the subnet's zone ID ("use1-az1").
func (s *Subnet) ZoneID(region string) string { return ZoneID(region, s.Zone) }

// AvailableIPs is the subnet's size less the 5 addresses AWS reserves.
func (s *Subnet) AvailableIPs() int {
	p, err := netip.ParsePrefix(s.CidrBlock)
	if err != nil {
		return 0
	}
	return 1<<(32-p.Bits()) - 5
}

// ZoneNames lists a region's zone names.
func ZoneNames(region string) []string {
	out := make([]string, len(Zones))
	for i, z := range Zones {
		out[i] = region + z
	}
	return out
}

// ZoneID is EC2's zone ID of zone suffix z: "use1-az1" for us-east-1 a.
func ZoneID(region, z string) string {
	parts := strings.Split(region, "-")
	prefix := ""
	for i, p := range parts {
		if i == len(parts)-1 {
			prefix += p
		} else if p != "" {
			prefix += p[:1]
		}
	}
	if len(parts) > 0 && len(parts[0]) >= 2 {
		prefix = parts[0] + prefix[1:]
	}
	return fmt.Sprintf("%s-az%d", prefix, slices.Index(Zones, z)+1)
}

// Service manages the networks of accounts.
type Service struct {
	Store  *store.Store
	Region string
	// InUse, if set, names a cluster placed in a VPC or subnet id ("" if none).
	InUse func(account, id string) string
}

func vpcKey(account, id string) string    { return "vpc/" + account + "/" + id }
func subnetKey(account, id string) string { return "subnet/" + account + "/" + id }
func initKey(account string) string       { return "init/" + account }

func newID(prefix string) string {
	b := make([]byte, 9)
	rand.Read(b)
	return prefix + hex.EncodeToString(b)[:17]
}

// EnsureDefault gives an account its default VPC and subnets on first use;
// a default VPC the account deleted is not made again.
func (s *Service) EnsureDefault(account string) (*VPC, error) {
	var out *VPC
	done := false
	err := s.Store.NetworkView(func(tx *store.Tx) error {
		done = tx.Has(initKey(account))
		return nil
	})
	if err != nil || done {
		return nil, err
	}
	err = s.Store.Network(func(tx *store.Tx) error {
		if tx.Has(initKey(account)) {
			return nil
		}
		now := time.Now().UTC()
		v := &VPC{ID: newID("vpc-"), Account: account, CidrBlock: DefaultVPCCidr, IsDefault: true, State: "available", CreatedAt: now}
		if err := tx.Put(vpcKey(account, v.ID), v); err != nil {
			return err
		}
		for i, z := range Zones {
			sn := &Subnet{ID: newID("subnet-"), Account: account, VpcID: v.ID, CidrBlock: defaultSubnetCidrs[i], Zone: z,
				DefaultForAz: true, MapPublicIPOnLaunch: true, State: "available", CreatedAt: now}
			if err := tx.Put(subnetKey(account, sn.ID), sn); err != nil {
				return err
			}
		}
		out = v
		return tx.Put(initKey(account), now)
	})
	return out, err
}

// Vpcs returns the account's VPCs with the given IDs (all if none), by ID.
func (s *Service) Vpcs(account string, ids []string) ([]VPC, error) {
	var out []VPC
	err := s.Store.NetworkView(func(tx *store.Tx) error {
		return scan(tx, "vpc/"+account+"/", ids, "vpc", &out)
	})
	return out, err
}

// Subnets returns the account's subnets with the given IDs (all if none), by ID.
func (s *Service) Subnets(account string, ids []string) ([]Subnet, error) {
	var out []Subnet
	err := s.Store.NetworkView(func(tx *store.Tx) error {
		return scan(tx, "subnet/"+account+"/", ids, "subnet", &out)
	})
	return out, err
}

// scan reads the records under prefix (only ids, if given) into out.
func scan[T any](tx *store.Tx, prefix string, ids []string, kind string, out *[]T) error {
	found := map[string]bool{}
	err := tx.Scan(prefix, func(key string, data []byte) error {
		id := strings.TrimPrefix(key, prefix)
		if len(ids) > 0 && !slices.Contains(ids, id) {
			return nil
		}
		var v T
		if err := json.Unmarshal(data, &v); err != nil {
			return err
		}
		found[id] = true
		*out = append(*out, v)
		return nil
	})
	if err != nil {
		return err
	}
	for _, id := range ids {
		if !found[id] {
			return fmt.Errorf("%w: The %s ID '%s' does not exist", ErrNotFound, kind, id)
		}
	}
	return nil
}

// CreateVpc makes a VPC; its range may overlap others, as in AWS.
func (s *Service) CreateVpc(account, cidr string, tags map[string]string) (*VPC, error) {
	p, err := parseBlock(cidr, "VPC")
	if err != nil {
		return nil, err
	}
	if _, err := s.EnsureDefault(account); err != nil {
		return nil, err
	}
	v := &VPC{ID: newID("vpc-"), Account: account, CidrBlock: p.String(), State: "available", Tags: tags, CreatedAt: time.Now().UTC()}
	err = s.Store.Network(func(tx *store.Tx) error {
		n := 0
		tx.Scan("vpc/"+account+"/", func(string, []byte) error { n++; return nil })
		if n >= MaxVPCs {
			return fmt.Errorf("%w: The maximum number of VPCs (%d) has been reached; delete one first", ErrLimit, MaxVPCs)
		}
		return tx.Put(vpcKey(account, v.ID), v)
	})
	if err != nil {
		return nil, err
	}
	return v, nil
}

// parseBlock checks an IPv4 network block of size /16 to /28.
func parseBlock(cidr, what string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(cidr)
	switch {
	case err != nil || !p.Addr().Is4():
		return p, fmt.Errorf("%w: Value (%s) for parameter cidrBlock is invalid. This is not a valid IPv4 CIDR block; pass one like 10.0.0.0/16", ErrInvalid, cidr)
	case p.Masked() != p:
		return p, fmt.Errorf("%w: Value (%s) for parameter cidrBlock is invalid. The host bits must be zero: did you mean %s?", ErrInvalid, cidr, p.Masked())
	case p.Bits() < 16 || p.Bits() > 28:
		return p, fmt.Errorf("%w: The CIDR '%s' is invalid: a %s block must be between /16 and /28", ErrRange, cidr, what)
	}
	return p, nil
}

// zoneOf resolves a zone name ("us-east-1a") or ID ("use1-az1") to its suffix.
func (s *Service) zoneOf(zone string) (string, error) {
	for _, z := range Zones {
		if zone == s.Region+z || zone == ZoneID(s.Region, z) {
			return z, nil
		}
	}
	return "", fmt.Errorf("%w: Value (%s) for parameter availabilityZone is invalid. Subnets can currently only be created in the following availability zones: %s",
		ErrInvalid, zone, strings.Join(ZoneNames(s.Region), ", "))
}

// CreateSubnet makes a subnet of a VPC in a zone (name, ID, or "" for the
// zone with the fewest subnets of that VPC).
func (s *Service) CreateSubnet(account, vpcID, cidr, zone string, tags map[string]string) (*Subnet, error) {
	if vpcID == "" {
		return nil, fmt.Errorf("%w: The request must contain the parameter VpcId", ErrInvalid)
	}
	p, err := parseBlock(cidr, "subnet")
	if err != nil {
		return nil, err
	}
	z := ""
	if zone != "" {
		if z, err = s.zoneOf(zone); err != nil {
			return nil, err
		}
	}
	if _, err := s.EnsureDefault(account); err != nil {
		return nil, err
	}
	sn := &Subnet{ID: newID("subnet-"), Account: account, VpcID: vpcID, CidrBlock: p.String(), State: "available", Tags: tags, CreatedAt: time.Now().UTC()}
	err = s.Store.Network(func(tx *store.Tx) error {
		var v VPC
		if err := tx.Get(vpcKey(account, vpcID), &v); errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: The vpc ID '%s' does not exist", ErrNotFound, vpcID)
		} else if err != nil {
			return err
		}
		vp := netip.MustParsePrefix(v.CidrBlock)
		if !vp.Contains(p.Addr()) || p.Bits() < vp.Bits() {
			return fmt.Errorf("%w: The CIDR '%s' is invalid: it is not inside the VPC's %s", ErrRange, cidr, v.CidrBlock)
		}
		count := map[string]int{}
		err := tx.Scan("subnet/"+account+"/", func(_ string, data []byte) error {
			var other Subnet
			if err := json.Unmarshal(data, &other); err != nil {
				return err
			}
			if other.VpcID != vpcID {
				return nil
			}
			count[other.Zone]++
			if op := netip.MustParsePrefix(other.CidrBlock); op.Overlaps(p) {
				return fmt.Errorf("%w: The CIDR '%s' conflicts with another subnet (%s, %s)", ErrConflict, cidr, other.ID, other.CidrBlock)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if z == "" {
			z = Zones[0]
			for _, c := range Zones {
				if count[c] < count[z] {
					z = c
				}
			}
		}
		sn.Zone = z
		return tx.Put(subnetKey(account, sn.ID), sn)
	})
	if err != nil {
		return nil, err
	}
	return sn, nil
}

// DeleteSubnet removes a subnet no cluster uses.
func (s *Service) DeleteSubnet(account, id string) error {
	if user := s.inUse(account, id); user != "" {
		return fmt.Errorf("%w: The subnet '%s' has dependencies and cannot be deleted: cluster %s uses it; delete the cluster first", ErrDependency, id, user)
	}
	return s.Store.Network(func(tx *store.Tx) error {
		if !tx.Has(subnetKey(account, id)) {
			return fmt.Errorf("%w: The subnet ID '%s' does not exist", ErrNotFound, id)
		}
		return tx.Delete(subnetKey(account, id))
	})
}

// DeleteVpc removes a VPC that has no subnets and no cluster.
func (s *Service) DeleteVpc(account, id string) error {
	if user := s.inUse(account, id); user != "" {
		return fmt.Errorf("%w: The vpc '%s' has dependencies and cannot be deleted: cluster %s uses it; delete the cluster first", ErrDependency, id, user)
	}
	return s.Store.Network(func(tx *store.Tx) error {
		if !tx.Has(vpcKey(account, id)) {
			return fmt.Errorf("%w: The vpc ID '%s' does not exist", ErrNotFound, id)
		}
		var subnets []string
		err := tx.Scan("subnet/"+account+"/", func(_ string, data []byte) error {
			var sn Subnet
			if err := json.Unmarshal(data, &sn); err != nil {
				return err
			}
			if sn.VpcID == id {
				subnets = append(subnets, sn.ID)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(subnets) > 0 {
			sort.Strings(subnets)
			return fmt.Errorf("%w: The vpc '%s' has dependencies and cannot be deleted: delete its subnets first (%s)", ErrDependency, id, strings.Join(subnets, ", "))
		}
		return tx.Delete(vpcKey(account, id))
	})
}

func (s *Service) inUse(account, id string) string {
	if s.InUse == nil {
		return ""
	}
	return s.InUse(account, id)
}

func addrKey(subnetID, addr string) string { return "addr/" + subnetID + "/" + addr }

// AllocateAddr reserves an address of a subnet for owner ("node/ID",
// "endpoint/CLUSTER") and returns it with the subnet's prefix length. An
// owner that holds an address of the subnet gets it again. As in AWS, the
// first four addresses of a subnet and its last are not handed out.
func (s *Service) AllocateAddr(account, subnetID, owner string) (netip.Prefix, error) {
	var out netip.Prefix
	err := s.Store.Network(func(tx *store.Tx) error {
		var sn Subnet
		if err := tx.Get(subnetKey(account, subnetID), &sn); errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: The subnet ID '%s' does not exist", ErrNotFound, subnetID)
		} else if err != nil {
			return err
		}
		p := netip.MustParsePrefix(sn.CidrBlock)
		used := map[string]bool{}
		err := tx.Scan("addr/"+subnetID+"/", func(key string, data []byte) error {
			var o string
			if err := json.Unmarshal(data, &o); err != nil {
				return err
			}
			a := strings.TrimPrefix(key, "addr/"+subnetID+"/")
			if o == owner && !out.IsValid() {
				out = netip.PrefixFrom(netip.MustParseAddr(a), p.Bits())
			}
			used[a] = true
			return nil
		})
		if err != nil || out.IsValid() {
			return err
		}
		a := p.Masked().Addr()
		for range 4 {
			a = a.Next()
		}
		for ; p.Contains(a) && p.Contains(a.Next()); a = a.Next() {
			if !used[a.String()] {
				out = netip.PrefixFrom(a, p.Bits())
				return tx.Put(addrKey(subnetID, a.String()), owner)
			}
		}
		return fmt.Errorf("%w: subnet %s has no free address left; use another subnet", ErrLimit, subnetID)
	})
	return out, err
}

// ReleaseAddrs frees every address owner holds.
func (s *Service) ReleaseAddrs(owner string) error {
	return s.Store.Network(func(tx *store.Tx) error { return tx.DeleteOwned("addr/", owner) })
}

// Realization is what the node runtime needs to build a VPC.
func (s *Service) Realization(account, vpcID string) (cidr netip.Prefix, subnets map[string]netip.Prefix, err error) {
	vpcs, err := s.Vpcs(account, []string{vpcID})
	if err != nil {
		return netip.Prefix{}, nil, err
	}
	if len(vpcs) != 1 {
		return netip.Prefix{}, nil, fmt.Errorf("%w: The vpc ID '%s' does not exist", ErrNotFound, vpcID)
	}
	all, err := s.Subnets(account, nil)
	if err != nil {
		return netip.Prefix{}, nil, err
	}
	subnets = map[string]netip.Prefix{}
	for _, sn := range all {
		if sn.VpcID == vpcID {
			subnets[sn.ID] = netip.MustParsePrefix(sn.CidrBlock)
		}
	}
	return netip.MustParsePrefix(vpcs[0].CidrBlock), subnets, nil
}

type originKey struct{}

// WithVPC marks a request context as coming from inside a VPC (skiff's
// listeners in the VPC's namespace set it).
func WithVPC(ctx context.Context, vpcID string) context.Context {
	return context.WithValue(ctx, originKey{}, vpcID)
}

// VPCOf returns the VPC a request came from ("" from the host).
func VPCOf(ctx context.Context) string {
	v, _ := ctx.Value(originKey{}).(string)
	return v
}
