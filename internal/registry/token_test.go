package registry

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTokens(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	tok := NewTokens([]byte(strings.Repeat("k", 32)))
	pw, exp := tok.Mint("123456789012", now)
	if want := now.Add(12 * time.Hour); !exp.Equal(want) {
		t.Errorf("expiry %v, want %v", exp, want)
	}
	other := NewTokens([]byte(strings.Repeat("o", 32)))
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	forged := func() string {
		// A valid payload for another account with the original signature.
		p, _ := tok.Mint("210987654321", now)
		i, j := strings.LastIndexByte(p, '.'), strings.LastIndexByte(pw, '.')
		return p[:i] + pw[j:]
	}()
	for _, tc := range []struct {
		name  string
		token string
		at    time.Time
		tk    *Tokens
		want  error
	}{
		{"valid", pw, now, tok, nil},
		{"valid until just before expiry", pw, exp.Add(-time.Second), tok, nil},
		{"expired", pw, exp, tok, ErrTokenExpired},
		{"other key", pw, now, other, ErrTokenInvalid},
		{"payload changed", flip(pw, len(tokenPrefix)+2), now, tok, ErrTokenInvalid},
		{"signature changed", flip(pw, len(pw)-3), now, tok, ErrTokenInvalid},
		{"payload of another account", forged, now, tok, ErrTokenInvalid},
		{"no prefix", strings.TrimPrefix(pw, tokenPrefix), now, tok, ErrTokenInvalid},
		{"empty", "", now, tok, ErrTokenInvalid},
		{"garbage", "skiff1.x.y", now, tok, ErrTokenInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			acct, err := tc.tk.Verify(tc.token, tc.at)
			if !errors.Is(err, tc.want) || tc.want == nil && acct != "123456789012" {
				t.Errorf("Verify = %q, %v; want %v", acct, err, tc.want)
			}
		})
	}
}

func TestOpenTokensPersists(t *testing.T) {
	file := filepath.Join(t.TempDir(), "key")
	a, err := OpenTokens(file)
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := a.Mint("123456789012", time.Now())
	b, err := OpenTokens(file) // a restart
	if err != nil {
		t.Fatal(err)
	}
	if acct, err := b.Verify(pw, time.Now()); err != nil || acct != "123456789012" {
		t.Fatalf("token after reopening the key: %q, %v", acct, err)
	}
}
