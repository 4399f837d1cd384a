package controlplane

import (
	"slices"
	"testing"
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
