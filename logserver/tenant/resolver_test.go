package tenant

import (
	"crypto/sha256"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestNewResolverRefusesAmbiguity(t *testing.T) {
	sum := sha256.Sum256([]byte("token-0123456789abcdef"))
	for _, c := range []struct {
		ids  []Identity
		want string
	}{
		{[]Identity{{Name: "a"}, {Name: "a"}}, "duplicate name"},
		{[]Identity{{Name: "a", TokenHashes: [][32]byte{sum}}, {Name: "b", TokenHashes: [][32]byte{sum}}}, "share a bearer token"},
		{[]Identity{{Name: "a", CertNames: []string{"cn:x"}}, {Name: "b", CertNames: []string{"cn:x"}}}, "share certificate name"},
		{[]Identity{{Name: "a", CertNames: []string{"subject:x"}}}, "want one of"},
		{[]Identity{{Name: "a", CertNames: []string{"uri:"}}}, "want one of"},
	} {
		if _, err := NewResolver(c.ids, "public"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.ids, err, c.want)
		}
	}
}

func TestResolveBearer(t *testing.T) {
	sum := sha256.Sum256([]byte("token-0123456789abcdef"))
	r, err := NewResolver([]Identity{{Name: "scanner", TokenHashes: [][32]byte{sum}}}, "public")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		header string
		want   Tenant
		fails  bool
	}{
		{"", Tenant{Name: "public"}, false},
		{"Bearer token-0123456789abcdef", Tenant{Name: "scanner", Authenticated: true}, false},
		{"bearer  token-0123456789abcdef ", Tenant{Name: "scanner", Authenticated: true}, false},
		{"Bearer token-0123456789abcdeX", Tenant{}, true},
		{"Bearer ", Tenant{}, true},
		{"Basic dXNlcjpwdw==", Tenant{}, true},
	} {
		req := httptest.NewRequest("POST", "/api/v1/log/entries", nil)
		if c.header != "" {
			req.Header.Set("Authorization", c.header)
		}
		got, err := r.Resolve(req)
		if c.fails != (err != nil) || got != c.want || (err != nil && !errors.Is(err, ErrUnauthenticated)) {
			t.Errorf("%q: %+v, %v; want %+v (error %v)", c.header, got, err, c.want, c.fails)
		}
	}
}
