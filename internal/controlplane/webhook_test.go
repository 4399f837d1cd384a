package controlplane

import (
	"slices"
	"testing"

	"skiff.dev/skiff/internal/authenticator"
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
		{[]string{authenticator.APIAudience}, []string{authenticator.APIAudience}, true},
		{[]string{"vault", authenticator.APIAudience}, []string{authenticator.APIAudience}, true},
		{[]string{"vault"}, nil, false},
		{[]string{"sts.amazonaws.com"}, nil, false},
	}
	for _, tt := range tests {
		got, ok := authenticator.Audiences(tt.asked)
		if ok != tt.ok || !slices.Equal(got, tt.want) {
			t.Errorf("authenticator.Audiences(%q) = %q, %v; want %q, %v", tt.asked, got, ok, tt.want, tt.ok)
		}
	}
}
