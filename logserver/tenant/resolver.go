package tenant

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// Identity is how one configured tenant is recognised.
type Identity struct {
	Name string
	// TokenHashes are the SHA-256 of the tenant's bearer tokens.
	TokenHashes [][32]byte
	// CertNames match a client certificate (verified by the TLS server
	// against its client CA): "cn:<subject common name>", "dns:<DNS SAN>",
	// "uri:<URI SAN>" or "email:<email SAN>".
	CertNames []string
}

// ErrUnauthenticated wraps every credential that does not name exactly one
// tenant. A request that sends a credential never falls back to the
// default tenant.
var ErrUnauthenticated = errors.New("unauthenticated")

// Resolver attributes requests to tenants.
type Resolver struct {
	defaultTenant string
	tokens        []tokenHash
	certs         map[string]string // cert name -> tenant
}

type tokenHash struct {
	sum    [32]byte
	tenant string
}

// CertNamePrefixes are the kinds of certificate names Identity.CertNames
// takes.
var CertNamePrefixes = []string{"cn:", "dns:", "uri:", "email:"}

// NewResolver returns a resolver for ids, attributing requests without
// credentials to defaultTenant. Names, tokens and certificate names must
// be unique.
func NewResolver(ids []Identity, defaultTenant string) (*Resolver, error) {
	r := &Resolver{defaultTenant: defaultTenant, certs: map[string]string{}}
	seen := map[string]bool{}
	for _, id := range ids {
		if id.Name == "" || seen[id.Name] {
			return nil, fmt.Errorf("tenant %q: empty or duplicate name", id.Name)
		}
		seen[id.Name] = true
		for _, h := range id.TokenHashes {
			for _, t := range r.tokens {
				if t.sum == h {
					return nil, fmt.Errorf("tenants %q and %q share a bearer token", t.tenant, id.Name)
				}
			}
			r.tokens = append(r.tokens, tokenHash{h, id.Name})
		}
		for _, n := range id.CertNames {
			if !slices.ContainsFunc(CertNamePrefixes, func(p string) bool { return strings.HasPrefix(n, p) && len(n) > len(p) }) {
				return nil, fmt.Errorf("tenant %q: certificate name %q: want one of %v followed by the name", id.Name, n, CertNamePrefixes)
			}
			if other, ok := r.certs[n]; ok {
				return nil, fmt.Errorf("tenants %q and %q share certificate name %q", other, id.Name, n)
			}
			r.certs[n] = id.Name
		}
	}
	return r, nil
}

// Default is the tenant of requests without credentials.
func (r *Resolver) Default() Tenant { return Tenant{Name: r.defaultTenant} }

// Resolve attributes req: by its bearer token (Authorization: Bearer), its
// verified client certificate, or, with neither, to the default tenant
// (Authenticated false). A token or certificate that names no tenant, or
// both naming different tenants, is an error wrapping ErrUnauthenticated.
func (r *Resolver) Resolve(req *http.Request) (Tenant, error) {
	var byToken, byCert string
	if h := req.Header.Get("Authorization"); h != "" {
		scheme, tok, _ := strings.Cut(h, " ")
		tok = strings.TrimSpace(tok)
		if !strings.EqualFold(scheme, "Bearer") || tok == "" {
			return Tenant{}, fmt.Errorf("%w: the Authorization header must be \"Bearer <token>\"", ErrUnauthenticated)
		}
		sum := sha256.Sum256([]byte(tok))
		// Every configured hash is compared, in constant time each.
		for _, t := range r.tokens {
			if subtle.ConstantTimeCompare(sum[:], t.sum[:]) == 1 {
				byToken = t.tenant
			}
		}
		if byToken == "" {
			return Tenant{}, fmt.Errorf("%w: the bearer token is not valid for any tenant", ErrUnauthenticated)
		}
	}
	if req.TLS != nil && len(req.TLS.PeerCertificates) > 0 {
		leaf := req.TLS.PeerCertificates[0]
		for _, n := range certNames(leaf) {
			t, ok := r.certs[n]
			if !ok {
				continue
			}
			if byCert != "" && byCert != t {
				return Tenant{}, fmt.Errorf("%w: the client certificate names tenants %q and %q", ErrUnauthenticated, byCert, t)
			}
			byCert = t
		}
		if byCert == "" {
			return Tenant{}, fmt.Errorf("%w: the client certificate (subject %q) is not mapped to a tenant", ErrUnauthenticated, leaf.Subject.String())
		}
	}
	switch {
	case byToken != "" && byCert != "" && byToken != byCert:
		return Tenant{}, fmt.Errorf("%w: the bearer token (tenant %q) and the client certificate (tenant %q) disagree", ErrUnauthenticated, byToken, byCert)
	case byToken != "":
		return Tenant{Name: byToken, Authenticated: true}, nil
	case byCert != "":
		return Tenant{Name: byCert, Authenticated: true}, nil
	}
	return r.Default(), nil
}

// certNames lists the names a certificate can be mapped by.
func certNames(c *x509.Certificate) []string {
	var names []string
	if c.Subject.CommonName != "" {
		names = append(names, "cn:"+c.Subject.CommonName)
	}
	for _, d := range c.DNSNames {
		names = append(names, "dns:"+d)
	}
	for _, u := range c.URIs {
		names = append(names, "uri:"+u.String())
	}
	for _, e := range c.EmailAddresses {
		names = append(names, "email:"+e)
	}
	return names
}
