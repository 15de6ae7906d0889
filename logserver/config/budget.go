package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// TLS makes the HTTP server listen with TLS (and, with ClientCAFile,
// accept client certificates that attribute requests to tenants).
type TLS struct {
	// CertFile and KeyFile are the server's certificate chain and private
	// key (PEM). Required.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile, if set, holds the CA certificates (PEM) client
	// certificates are verified against; a verified certificate is mapped
	// to a tenant by tenants.identities[].client_certs. Clients may still
	// connect without one (cosign, rekor-cli) unless RequireClientCert.
	ClientCAFile string `yaml:"client_ca_file"`
	// RequireClientCert refuses TLS connections without a client
	// certificate verified against ClientCAFile. Default false.
	RequireClientCert bool `yaml:"require_client_cert"`
}

// Tenants attributes entry submissions (POST /api/v1/log/entries,
// POST /api/v2/log/entries) to tenants (package logserver/tenant), for
// budgets and the pending queue. A request is attributed by its bearer
// token (Authorization: Bearer <token>), by its client certificate (with
// tls.client_ca_file), or, when it sends neither, to DefaultTenant. A
// credential that names no tenant gets 401: it never falls back to the
// default tenant.
type Tenants struct {
	// DefaultTenant names the tenant of submissions without credentials
	// (cosign and rekor-cli send none). Default "default".
	DefaultTenant string `yaml:"default_tenant"`
	// RequireAuthentication refuses submissions without a credential with
	// 401 (reads stay open). Default false.
	RequireAuthentication bool `yaml:"require_authentication"`
	// Identities are the tenants that authenticate.
	Identities []TenantIdentity `yaml:"identities"`
}

// TenantIdentity is one authenticating tenant. No secret is written in the
// configuration: tokens are given as their SHA-256 or in files.
type TenantIdentity struct {
	// Name is the tenant's name in budgets, metrics and logs. Letters,
	// digits, '-', '_' and '.', at most 128 bytes.
	Name string `yaml:"name"`
	// TokenSHA256 are hex SHA-256 digests of the tenant's bearer tokens
	// (`printf %s "$TOKEN" | sha256sum`).
	TokenSHA256 []string `yaml:"token_sha256"`
	// TokenFiles hold one bearer token each (surrounding white space
	// ignored), read at start-up.
	TokenFiles []string `yaml:"token_files"`
	// ClientCerts map verified client certificates to the tenant, each as
	// "cn:<subject common name>", "dns:<DNS SAN>", "uri:<URI SAN>" (e.g.
	// "uri:spiffe://stella/scanner") or "email:<email SAN>". A certificate
	// matching no entry gets 401.
	ClientCerts []string `yaml:"client_certs"`
}

// TokenHashes reads TokenFiles and decodes TokenSHA256: the SHA-256 of
// every token of the tenant.
func (t *TenantIdentity) TokenHashes() ([][32]byte, error) {
	var out [][32]byte
	for _, h := range t.TokenSHA256 {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("token_sha256 %q: want 64 hex digits", h)
		}
		out = append(out, [32]byte(b))
	}
	for _, f := range t.TokenFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("token_files: %w", err)
		}
		b = bytes.TrimSpace(b)
		if len(b) < 16 {
			return nil, fmt.Errorf("token_files %s: token shorter than 16 bytes", f)
		}
		out = append(out, sha256.Sum256(b))
	}
	return out, nil
}

// Budgets are per-tenant submission budgets (package logserver/budget),
// kept in the database (table budget_counters) so that they survive
// restarts and hold across replicas sharing it. Over budget, a submission
// gets 429 with Retry-After (or, with "Prefer: respond-async" and the
// pending queue, 202). A charged submission that is not logged (any answer
// but 201, except 504, which may still be logged) is refunded.
//
// Two tiers. graph (ordinary submissions): admitted when the tenant's
// count in the current UTC hour is below hourly_limit AND its count in the
// current burst window is below burst_limit*burst_window/1h, rounded down
// (burst_limit is a rate per hour measured over burst_window: the seed's
// 200/h over 10m admits 33 per 10 minutes). edge (large bundles, no
// burst): admitted when the count in the current UTC day is below
// edge_bundle_daily_limit. Windows are fixed, aligned on UTC (10m windows
// start at :00, :10, …): a tenant can get up to twice a limit across a
// window boundary (a full window just before it, another just after).
//
// A submission's tier, first rule that applies: the X-Stella-Tier header
// ("graph" or "edge"; another value is 400 and charges nothing); its
// entry kind in edge_kinds; its in-toto predicate type in
// edge_predicate_types (DSSE and in-toto entries); a body of at least
// edge_min_bytes; else graph.
type Budgets struct {
	// Enabled turns budgets on. Default false: submissions are attributed
	// to tenants but never counted or refused.
	Enabled bool `yaml:"enabled"`
	// Default is the budget of tenants not listed in Tenants, and what
	// their unset fields take.
	Default BudgetLimits `yaml:"default"`
	// Tenants are per-tenant budgets by tenant name; a field left out
	// takes Default's.
	Tenants map[string]BudgetLimits `yaml:"tenants"`
	// EdgeKinds are entry kinds charged to the edge tier, e.g. ["dsse"]
	// (Rekor v1 kinds; v2 requests are "dsse" or "hashedrekord").
	EdgeKinds []string `yaml:"edge_kinds"`
	// EdgePredicateTypes are in-toto predicate types charged to the edge
	// tier (read from the DSSE envelope's statement).
	EdgePredicateTypes []string `yaml:"edge_predicate_types"`
	// EdgeMinBytes charges request bodies of at least this size to the
	// edge tier. Default 0: size does not decide.
	EdgeMinBytes int64 `yaml:"edge_min_bytes"`
	// MaxRetryAfter caps the Retry-After header of a 429 (the message
	// still names the window's real reset). cosign and rekor-cli
	// (go-retryablehttp) sleep for Retry-After up to 3 times before they
	// give up: with the exact value (up to an hour) they wait, as
	// backpressure, until their own timeout; with a cap of e.g. 1s they
	// fail within seconds, printing the 429 message. Default 0: no cap.
	MaxRetryAfter time.Duration `yaml:"max_retry_after"`
}

// BudgetLimits are one tenant's budget. -1 means unlimited.
type BudgetLimits struct {
	// HourlyLimit caps graph submissions per UTC hour. Default 100.
	HourlyLimit int64 `yaml:"hourly_limit"`
	// BurstLimit is the graph burst rate per hour, measured over
	// BurstWindow. Default 200.
	BurstLimit int64 `yaml:"burst_limit"`
	// BurstWindow divides the hour evenly (1m, 5m, 10m, 15m, 20m, 30m,
	// 1h…). Default 10m.
	BurstWindow time.Duration `yaml:"burst_window"`
	// EdgeBundleDailyLimit caps edge submissions per UTC day. Default 50.
	EdgeBundleDailyLimit int64 `yaml:"edge_bundle_daily_limit"`
}

func validTenantName(n string) bool {
	if n == "" || len(n) > 128 {
		return false
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// validateAdmission checks and defaults tls, tenants and budgets.
func (c *Config) validateAdmission(bad func(string, ...any)) {
	if t := c.TLS; t != nil {
		if t.CertFile == "" || t.KeyFile == "" {
			bad("tls.cert_file and tls.key_file are required")
		}
		if t.RequireClientCert && t.ClientCAFile == "" {
			bad("tls.require_client_cert needs tls.client_ca_file")
		}
	}
	tn := &c.Tenants
	if tn.DefaultTenant == "" {
		tn.DefaultTenant = "default"
	}
	if !validTenantName(tn.DefaultTenant) {
		bad("tenants.default_tenant %q: letters, digits, '-', '_', '.', at most 128 bytes", tn.DefaultTenant)
	}
	for i := range tn.Identities {
		id := &tn.Identities[i]
		if !validTenantName(id.Name) || id.Name == tn.DefaultTenant {
			bad("tenants.identities[%d].name %q: letters, digits, '-', '_', '.', at most 128 bytes, not the default tenant", i, id.Name)
		}
		if _, err := id.TokenHashes(); err != nil {
			bad("tenants.identities[%d] (%s): %v", i, id.Name, err)
		}
		if len(id.TokenSHA256)+len(id.TokenFiles)+len(id.ClientCerts) == 0 {
			bad("tenants.identities[%d] (%s): needs token_sha256, token_files or client_certs", i, id.Name)
		}
		if len(id.ClientCerts) > 0 && (c.TLS == nil || c.TLS.ClientCAFile == "") {
			bad("tenants.identities[%d] (%s): client_certs need tls.client_ca_file", i, id.Name)
		}
	}
	b := &c.Budgets
	b.Default.fill(BudgetLimits{HourlyLimit: 100, BurstLimit: 200, BurstWindow: 10 * time.Minute, EdgeBundleDailyLimit: 50})
	b.Default.validate("budgets.default", bad)
	for name, l := range b.Tenants {
		if !validTenantName(name) {
			bad("budgets.tenants %q: not a tenant name", name)
		}
		l.fill(b.Default)
		l.validate("budgets.tenants."+name, bad)
		b.Tenants[name] = l
	}
	for _, k := range b.EdgeKinds {
		if k == "" || strings.ToLower(k) != k {
			bad("budgets.edge_kinds %q: want a lower-case kind name (e.g. dsse, intoto)", k)
		}
	}
	if slices.Contains(b.EdgePredicateTypes, "") {
		bad("budgets.edge_predicate_types: empty type")
	}
	if b.MaxRetryAfter < 0 || b.MaxRetryAfter%time.Second != 0 {
		bad("budgets.max_retry_after %v: want whole seconds, 0 for no cap", b.MaxRetryAfter)
	}
	if b.EdgeMinBytes < 0 {
		bad("budgets.edge_min_bytes %d: must not be negative", b.EdgeMinBytes)
	}
}

func (l *BudgetLimits) fill(d BudgetLimits) {
	if l.HourlyLimit == 0 {
		l.HourlyLimit = d.HourlyLimit
	}
	if l.BurstLimit == 0 {
		l.BurstLimit = d.BurstLimit
	}
	if l.BurstWindow == 0 {
		l.BurstWindow = d.BurstWindow
	}
	if l.EdgeBundleDailyLimit == 0 {
		l.EdgeBundleDailyLimit = d.EdgeBundleDailyLimit
	}
}

func (l *BudgetLimits) validate(name string, bad func(string, ...any)) {
	for _, v := range []struct {
		field string
		n     int64
	}{{"hourly_limit", l.HourlyLimit}, {"burst_limit", l.BurstLimit}, {"edge_bundle_daily_limit", l.EdgeBundleDailyLimit}} {
		if v.n < -1 {
			bad("%s.%s %d: want a positive limit or -1 (unlimited)", name, v.field, v.n)
		}
	}
	if l.BurstWindow < time.Second || l.BurstWindow > time.Hour || time.Hour%l.BurstWindow != 0 || l.BurstWindow%time.Second != 0 {
		bad("%s.burst_window %v: want whole seconds dividing 1h (e.g. 10m)", name, l.BurstWindow)
	}
}
