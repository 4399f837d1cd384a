package controlplane

import (
	"net/netip"
	"slices"
	"testing"

	"skiff.dev/skiff/internal/model"
)

// TestTokenAudiences: the webhook no longer echoes whatever audiences a
// TokenReview asks about (issue 15).
func TestTokenAudiences(t *testing.T) {
	tests := []struct {
		asked []string
		want  []string
		ok    bool
	}{
		{nil, nil, true},
		{[]string{ServiceAccountIssuer}, []string{ServiceAccountIssuer}, true},
		{[]string{"vault", ServiceAccountIssuer}, []string{ServiceAccountIssuer}, true},
		{[]string{"vault"}, nil, false},
		{[]string{"sts.amazonaws.com"}, nil, false},
	}
	for _, tt := range tests {
		got, ok := tokenAudiences(tt.asked)
		if ok != tt.ok || !slices.Equal(got, tt.want) {
			t.Errorf("tokenAudiences(%q) = %q, %v; want %q, %v", tt.asked, got, ok, tt.want, tt.ok)
		}
	}
}

// TestPublicAccess: who may use the endpoint's host-facing address.
func TestPublicAccess(t *testing.T) {
	own := netip.MustParseAddr("127.1.7.1")
	a, b := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("10.1.2.3")
	tests := []struct {
		n          model.ClusterNetwork
		a, b, self bool
	}{
		{model.ClusterNetwork{EndpointPublicAccess: true, PublicAccessCidrs: []string{"0.0.0.0/0"}}, true, true, true},
		{model.ClusterNetwork{EndpointPublicAccess: true, PublicAccessCidrs: []string{"10.0.0.0/8"}}, false, true, true},
		{model.ClusterNetwork{EndpointPublicAccess: false, EndpointPrivateAccess: true, PublicAccessCidrs: []string{"0.0.0.0/0"}}, false, false, true},
	}
	for _, tt := range tests {
		f := publicAccess(tt.n, own)
		if f(a) != tt.a || f(b) != tt.b || f(own) != tt.self {
			t.Errorf("%+v: %v %v %v, want %v %v %v", tt.n, f(a), f(b), f(own), tt.a, tt.b, tt.self)
		}
	}
}
