package server

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/stellaops/tlog/internal/service"
	"github.com/stellaops/tlog/signer/pkcs11"
	"github.com/stellaops/tlog/signer/policy"
)

// Config is the whole signer service configuration (signer.yaml). Every
// field is checked by [Config.Validate] at start-up; unknown YAML fields are
// errors.
type Config struct {
	// Listen is the address of the API (/api/v1/signer/...), /healthz,
	// /readyz and /metrics. Default 127.0.0.1:8090.
	Listen string `yaml:"listen"`
	// TLS, when set, serves HTTPS and optionally authenticates callers by
	// client certificate (mTLS).
	TLS *TLSConfig `yaml:"tls"`
	// Token is the PKCS#11 token holding the keys ("pkcs11" keys below).
	// Its session pool bounds how many signatures are computed at once;
	// other requests wait (the pool-wait histogram shows it).
	Token *pkcs11.Config `yaml:"token"`
	// Audit is the MySQL/MariaDB database of the audit trail.
	Audit AuditConfig `yaml:"audit"`
	// Keys are the signing keys, each with one or more versions.
	Keys []KeyConfig `yaml:"keys"`
	// Tenants are the callers and what they may do.
	Tenants []TenantConfig `yaml:"tenants"`
	// Unauthenticated bounds what callers without valid credentials cost.
	Unauthenticated UnauthenticatedConfig `yaml:"unauthenticated"`
	// MaxDigests is the most digests one sign/digests call may carry.
	// Default 4096.
	MaxDigests int `yaml:"max_digests"`
	// ReadinessInterval is how often the readiness pass runs while the
	// service is ready: a canary sign+verify with every active key (one
	// signature at a time, so readiness never holds more than one token
	// session), missing keys looked up again, the audit database pinged.
	// While the service is not ready, or signing found the token lost,
	// the pass repeats every second (or every ReadinessInterval if
	// shorter), which is also when a lost token is reconnected. /readyz
	// only reports the last pass (and a token lost since): it never starts
	// one, so polling it costs the token nothing. Default 10 s.
	ReadinessInterval time.Duration `yaml:"readiness_interval"`
	// HTTP are the HTTP server's timeouts and graceful shutdown, the same
	// keys in every service (internal/service.Timeouts).
	HTTP service.Timeouts `yaml:",inline"`
	// Logging configures the structured log on stderr, as in every
	// service; `signer serve -log-level`/`-log-json` override it.
	Logging service.Logging `yaml:"logging"`
	// Entitlements is the entitlement store and its outage rules, needed
	// when a tenant sets require_entitlement (package entitlement).
	Entitlements *EntitlementsConfig `yaml:"entitlements"`
	// Releases is the release-integrity check of scanner images through
	// OCI referrers, needed when a tenant sets require_release_verification
	// (package referrers); it also serves GET /api/v1/signer/verify/referrers.
	Releases *ReleasesConfig `yaml:"releases"`
}

// TLSConfig serves HTTPS.
type TLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile, when set, asks callers for a client certificate signed
	// by one of these CAs. A verified certificate whose subject is listed
	// in a tenant's mtls_subjects authenticates that tenant; requests with
	// a bearer token use the token instead.
	ClientCAFile string `yaml:"client_ca_file"`
	// RequireClientCert refuses TLS connections without a valid client
	// certificate.
	RequireClientCert bool `yaml:"require_client_cert"`
}

// AuditConfig is where audit records go. Exactly one of DSN, DSNFile and
// DSNEnv is set.
type AuditConfig struct {
	// DSN is a go-sql-driver/mysql DSN, user:pass@tcp(host:3306)/signer.
	// The user needs INSERT and SELECT on signer_audit only. Prefer
	// DSNFile to keep the password out of the config.
	DSN string `yaml:"dsn"`
	// DSNFile is a file holding the DSN (surrounding whitespace ignored;
	// keep it mode 0600), as the logserver's database.dsn_file.
	DSNFile string `yaml:"dsn_file"`
	// DSNEnv names an environment variable holding the DSN.
	DSNEnv string `yaml:"dsn_env"`
	// MigrateDSN, when set, is used once at start-up to apply the schema
	// migrations (a user allowed to CREATE TABLE). Otherwise run
	// `signer migrate` beforehand.
	MigrateDSN string `yaml:"migrate_dsn"`
	// MaxBatch is the most audit rows in one INSERT. Default 256.
	MaxBatch int `yaml:"max_batch"`
	// MaxBatchBytes is the most bytes of audit rows in one INSERT, so that
	// one tenant's large rows (statements with many subjects) cannot push
	// an INSERT past the database's max_allowed_packet and fail other
	// tenants' requests; a larger row is inserted alone. Default 1 MiB.
	// The database's max_allowed_packet must exceed twice the largest
	// tenant max_payload_bytes (a lone row's size is bounded by its
	// statement's; escaping can double it).
	MaxBatchBytes int `yaml:"max_batch_bytes"`
	// Committers is the most audit INSERTs in flight at once. Rows are
	// group-committed: while one INSERT is in flight the rows arriving
	// meanwhile accumulate and go together into the next; a second INSERT
	// starts in parallel only when a full batch (max_batch rows or
	// max_batch_bytes) is waiting. Default 8, at most 24.
	Committers int `yaml:"committers"`
}

// UnauthenticatedConfig is the global budget of requests that fail
// authentication. Such requests are never audited (they would let anyone
// fill the trail); they are counted (signer_unauthenticated_total) and
// logged at most once per LogInterval. Past the budget they get 429 with
// Retry-After instead of 401. Authenticated callers never draw on it.
type UnauthenticatedConfig struct {
	// RPS is the sustained rate of unauthenticated requests answered 401,
	// all callers together. Default 10.
	RPS float64 `yaml:"rps"`
	// Burst is the bucket size. Default max(1, 2×RPS).
	Burst int `yaml:"burst"`
	// LogInterval is the least time between two log lines about refused
	// unauthenticated requests. Default 10 s.
	LogInterval time.Duration `yaml:"log_interval"`
}

// Purposes a key version may serve.
const (
	PurposeDSSE        = "dsse"        // DSSE envelopes for producers
	PurposeCheckpoint  = "checkpoint"  // signed-note checkpoints
	PurposeDigests     = "digests"     // batches of SHA-256 digests (SETs), ECDSA only
	PurposeCosignature = "cosignature" // cosignature/v1 for the witness, Ed25519 only
)

var purposes = []string{PurposeDSSE, PurposeCheckpoint, PurposeDigests, PurposeCosignature}

// KeyConfig is one named key and its versions.
type KeyConfig struct {
	// Name is how callers and tenants refer to the key.
	Name string `yaml:"name"`
	// Purposes lists what the key signs: dsse, checkpoint, digests,
	// cosignature.
	Purposes []string `yaml:"purposes"`
	// NoteName is the signed-note key name (checkpoint, cosignature):
	// for C2SP checkpoints the log's origin, for a witness its name.
	NoteName string `yaml:"note_name"`
	// Versions of the key. At any time the "active" versions are those
	// whose window [not_before, not_after) holds now. Checkpoints and
	// cosignatures are signed by every active version (two lines during a
	// rotation overlap); DSSE envelopes and digests by the newest active
	// version (the one with the latest not_before), unless a digests call
	// names a version.
	Versions []KeyVersionConfig `yaml:"versions"`
}

// KeyVersionConfig is one key pair.
type KeyVersionConfig struct {
	// Version is a positive number, unique within the key.
	Version int `yaml:"version"`
	// Label is the CKA_LABEL of the key pair in the token.
	Label string `yaml:"label"`
	// File is a PEM private key instead (development only).
	File string `yaml:"file"`
	// NotBefore and NotAfter bound the version's active window; zero means
	// unbounded on that side.
	NotBefore time.Time `yaml:"not_before"`
	NotAfter  time.Time `yaml:"not_after"`
}

// Scopes a caller may hold.
const (
	ScopeDSSE        = "sign:dsse"
	ScopeCheckpoint  = "sign:checkpoint"
	ScopeDigests     = "sign:digests"
	ScopeCosignature = "sign:cosignature"
	// ScopeApproveRelease records manual approvals of scanner images.
	ScopeApproveRelease = "approve:release"
)

var scopes = []string{ScopeDSSE, ScopeCheckpoint, ScopeDigests, ScopeCosignature, ScopeApproveRelease}

// TenantConfig is one caller organisation or component.
type TenantConfig struct {
	// Name identifies the tenant in the audit trail and metrics.
	Name string `yaml:"name"`
	// Tokens are bearer tokens ("Authorization: Bearer <token>"), stored
	// as the hex SHA-256 of the token (`signer token` makes one). A plain
	// hash suffices because tokens are 256-bit random values: no guess
	// list or brute force reaches them, so a slow password hash would only
	// add latency to every request.
	Tokens []TokenConfig `yaml:"tokens"`
	// MTLSSubjects are client certificate subjects (RFC 2253 form, as
	// Go's pkix.Name.String prints them, e.g. "CN=ci,O=Acme") that
	// authenticate as this tenant, with MTLSScopes.
	MTLSSubjects []string `yaml:"mtls_subjects"`
	MTLSScopes   []string `yaml:"mtls_scopes"`
	// Keys lists the key names this tenant may sign with.
	Keys []string `yaml:"keys"`
	// AllowedPredicateTypes lists the in-toto predicate types (canonical
	// URI or alias) the tenant may sign. Empty: every type of the
	// built-in catalog.
	AllowedPredicateTypes []string `yaml:"allowed_predicate_types"`
	// AllowedPayloadTypes lists DSSE payload types other than in-toto
	// statements that the tenant may sign as they are (no statement
	// validation; the pii flag still needs a redaction ticket).
	AllowedPayloadTypes []string `yaml:"allowed_payload_types"`
	// Quota limits the tenant.
	Quota QuotaConfig `yaml:"quota"`
	// RequireEntitlement makes every sign/dsse request of the tenant need
	// an entitlement (plan: predicate types, keys, daily signatures,
	// payload size) from the entitlements store.
	RequireEntitlement bool `yaml:"require_entitlement"`
	// RequireReleaseVerification signs a Stella payload whose
	// predicate.producer.image names a scanner image only if that image
	// passes release verification (trusted referrers, the allow-list of
	// trusted scanner digests, or an unexpired manual approval).
	RequireReleaseVerification bool `yaml:"require_release_verification"`
}

// TokenConfig is one bearer token of a tenant.
type TokenConfig struct {
	// ID names the token in the audit trail (never the token itself).
	ID string `yaml:"id"`
	// SHA256 is the lowercase hex SHA-256 of the token string.
	SHA256 string `yaml:"sha256"`
	// Scopes: sign:dsse, sign:checkpoint, sign:digests, sign:cosignature,
	// approve:release.
	Scopes []string `yaml:"scopes"`
}

// QuotaConfig is a tenant's resource limits. Excess requests get 429 with
// Retry-After; oversize bodies get 413.
type QuotaConfig struct {
	// RPS is the sustained request rate (token bucket). Default 50.
	RPS float64 `yaml:"rps"`
	// Burst is the bucket size. Default max(1, 2×RPS).
	Burst int `yaml:"burst"`
	// Concurrency is the most requests of the tenant in progress at once.
	// Default 16.
	Concurrency int `yaml:"concurrency"`
	// MaxPayloadBytes bounds a request body. Default 1 MiB.
	MaxPayloadBytes int64 `yaml:"max_payload_bytes"`
}

// LoadConfig reads and validates a YAML configuration file.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(b)
}

// ParseConfig parses and validates YAML configuration.
func ParseConfig(b []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate fills defaults and checks the configuration.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf("config: "+format, a...)) }
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8090"
	}
	if c.MaxDigests <= 0 {
		c.MaxDigests = 4096
	}
	if c.ReadinessInterval <= 0 {
		c.ReadinessInterval = 10 * time.Second
	}
	if err := c.HTTP.Check(); err != nil {
		bad("%v", err)
	}
	if err := c.Logging.Check("logging"); err != nil {
		bad("%v", err)
	}
	u := &c.Unauthenticated
	if u.RPS <= 0 {
		u.RPS = 10
	}
	if u.Burst <= 0 {
		u.Burst = max(1, int(2*u.RPS))
	}
	if u.LogInterval <= 0 {
		u.LogInterval = 10 * time.Second
	}
	if c.Audit.Committers > 24 {
		bad("audit: committers must be at most 24 (the connection pool has 32)")
	}
	if c.TLS != nil && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
		bad("tls needs cert_file and key_file")
	}
	if n := countSet(c.Audit.DSN, c.Audit.DSNFile, c.Audit.DSNEnv); n != 1 {
		bad("audit: set exactly one of dsn, dsn_file and dsn_env")
	}
	keyNames := map[string]*KeyConfig{}
	for i := range c.Keys {
		k := &c.Keys[i]
		if k.Name == "" {
			bad("keys[%d]: no name", i)
			continue
		}
		if keyNames[k.Name] != nil {
			bad("key %q listed twice", k.Name)
		}
		keyNames[k.Name] = k
		if len(k.Purposes) == 0 {
			bad("key %q: no purposes", k.Name)
		}
		for _, p := range k.Purposes {
			if !slices.Contains(purposes, p) {
				bad("key %q: unknown purpose %q (want one of %s)", k.Name, p, strings.Join(purposes, ", "))
			}
		}
		if slices.Contains(k.Purposes, PurposeDigests) {
			for _, p := range k.Purposes {
				if p != PurposeDigests {
					bad("key %q: a digests key signs any SHA-256 digest it is given, so it cannot also be a %s key "+
						"(a digests caller could then sign what the %s endpoint would refuse, bypassing its checks and the statement policy): "+
						"give the %s purpose its own key pair", k.Name, p, p, p)
				}
			}
		}
		if (slices.Contains(k.Purposes, PurposeCheckpoint) || slices.Contains(k.Purposes, PurposeCosignature)) && k.NoteName == "" {
			bad("key %q: checkpoint and cosignature keys need note_name", k.Name)
		}
		if len(k.Versions) == 0 {
			bad("key %q: no versions", k.Name)
		}
		seen := map[int]bool{}
		for _, v := range k.Versions {
			if v.Version <= 0 || seen[v.Version] {
				bad("key %q: version %d is not positive or listed twice", k.Name, v.Version)
			}
			seen[v.Version] = true
			if (v.Label == "") == (v.File == "") {
				bad("key %q version %d: set exactly one of label and file", k.Name, v.Version)
			}
			if v.Label != "" && c.Token == nil {
				bad("key %q version %d: a label needs a token section", k.Name, v.Version)
			}
			if !v.NotBefore.IsZero() && !v.NotAfter.IsZero() && !v.NotAfter.After(v.NotBefore) {
				bad("key %q version %d: not_after is not after not_before", k.Name, v.Version)
			}
		}
	}
	// The same key pair under a digests key and another key would be the
	// same bypass as one key with both purposes.
	type use struct {
		key     string
		digests bool
	}
	material := map[string]use{}
	for _, k := range c.Keys {
		digests := slices.Contains(k.Purposes, PurposeDigests)
		for _, v := range k.Versions {
			id := "label " + v.Label
			if v.File != "" {
				id = "file " + v.File
			}
			if u, ok := material[id]; ok && u.digests != digests {
				bad("keys %q and %q use the same key pair (%s), and one of them is a digests key: a digests key pair must serve nothing else", u.key, k.Name, id)
			}
			if _, ok := material[id]; !ok || digests {
				material[id] = use{k.Name, digests}
			}
		}
	}
	tenants := map[string]bool{}
	hashes := map[string]bool{}
	subjects := map[string]bool{}
	for i := range c.Tenants {
		t := &c.Tenants[i]
		if t.Name == "" {
			bad("tenants[%d]: no name", i)
			continue
		}
		if tenants[t.Name] {
			bad("tenant %q listed twice", t.Name)
		}
		tenants[t.Name] = true
		if len(t.Tokens) == 0 && len(t.MTLSSubjects) == 0 {
			bad("tenant %q: no tokens and no mtls_subjects: nobody can act as it", t.Name)
		}
		for j, tok := range t.Tokens {
			h, err := hex.DecodeString(tok.SHA256)
			if err != nil || len(h) != sha256.Size || strings.ToLower(tok.SHA256) != tok.SHA256 {
				bad("tenant %q token %d: sha256 must be 64 lowercase hex digits", t.Name, j)
			}
			if tok.ID == "" {
				bad("tenant %q token %d: no id", t.Name, j)
			}
			if hashes[tok.SHA256] {
				bad("tenant %q token %q: the same token is configured twice", t.Name, tok.ID)
			}
			hashes[tok.SHA256] = true
			errs = append(errs, checkScopes(t.Name, tok.Scopes)...)
		}
		for _, s := range t.MTLSSubjects {
			if subjects[s] {
				bad("mtls subject %q listed twice", s)
			}
			subjects[s] = true
		}
		if len(t.MTLSSubjects) > 0 {
			errs = append(errs, checkScopes(t.Name, t.MTLSScopes)...)
			if c.TLS == nil || c.TLS.ClientCAFile == "" {
				bad("tenant %q: mtls_subjects need tls.client_ca_file", t.Name)
			}
		}
		for _, k := range t.Keys {
			if keyNames[k] == nil {
				bad("tenant %q: unknown key %q", t.Name, k)
			}
		}
		for _, p := range t.AllowedPredicateTypes {
			if _, ok := policy.DefaultCatalog.Canonical(p); !ok {
				bad("tenant %q: predicate type %q is not in the catalog", t.Name, p)
			}
		}
		q := &t.Quota
		if q.RPS <= 0 {
			q.RPS = 50
		}
		if q.Burst <= 0 {
			q.Burst = max(1, int(2*q.RPS))
		}
		if q.Concurrency <= 0 {
			q.Concurrency = 16
		}
		if q.MaxPayloadBytes <= 0 {
			q.MaxPayloadBytes = 1 << 20
		}
	}
	errs = append(errs, c.validateStella()...)
	return errors.Join(errs...)
}

func checkScopes(tenant string, ss []string) []error {
	var errs []error
	if len(ss) == 0 {
		errs = append(errs, fmt.Errorf("config: tenant %q: a credential without scopes", tenant))
	}
	for _, s := range ss {
		if !slices.Contains(scopes, s) {
			errs = append(errs, fmt.Errorf("config: tenant %q: unknown scope %q (want one of %s)", tenant, s, strings.Join(scopes, ", ")))
		}
	}
	return errs
}

func countSet(ss ...string) int {
	n := 0
	for _, s := range ss {
		if s != "" {
			n++
		}
	}
	return n
}

// dsn returns the audit DSN.
func (a AuditConfig) dsn() (string, error) {
	if a.DSN != "" {
		return a.DSN, nil
	}
	if a.DSNFile != "" {
		v, err := service.ReadSecret(a.DSNFile)
		if err != nil {
			return "", fmt.Errorf("config: audit.dsn_file: %w", err)
		}
		return v, nil
	}
	v := os.Getenv(a.DSNEnv)
	if v == "" {
		return "", fmt.Errorf("config: audit: environment variable %s is empty", a.DSNEnv)
	}
	return v, nil
}
