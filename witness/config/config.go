// Package config is the witness configuration: one YAML file mapped onto
// Config, whose field comments are the operator manual. Load rejects unknown
// keys and Validate checks everything at start-up, so a witness that starts
// has a usable configuration.
//
// Example:
//
//	name: witness.example.com/w1
//	key_file: /var/lib/witness/witness.key   # or pkcs11: {token_label: …, key_label: …, pin_file: …}
//	db_file: /var/lib/witness/witness.db
//	listen: ":7380"
//	budget: {rate: 20, burst: 200}
//	logs:
//	  - origin: example.com/log
//	    vkeys: ["example.com/log+a1b2c3d4+AeVs…"]
//	  - origin: rekor.example.com - 1193050959916656506
//	    vkeys: ["rekor.example.com+c0d23d6a+AjBZMBMG…"]
//	    budget: {rate: 5, burst: 50}
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/stellaops/tlog/internal/notekey"
	"github.com/stellaops/tlog/internal/service"
	"github.com/stellaops/tlog/signer/client"
)

// ErrInvalid wraps every validation error.
var ErrInvalid = errors.New("invalid witness configuration")

// Config is the witness configuration file.
type Config struct {
	// Name is the witness's cosigner name, the key name in its signature
	// lines and vkey: a schema-less URL such as "witness.example.com/w1"
	// (no spaces, no '+'). Required. Logs configure the witness by its vkey,
	// which `witness keygen` or the start-up log prints.
	Name string `yaml:"name"`

	// KeyFile is the path of the witness's Ed25519 private key, a PEM
	// "PRIVATE KEY" (PKCS #8) file as written by `witness keygen` or
	// `openssl genpkey -algorithm ed25519`; keep it mode 0600. Exactly one
	// of key_file, pkcs11 and signer must be set.
	KeyFile string `yaml:"key_file"`

	// PKCS11 takes the witness key from a PKCS#11 token (an HSM, or SoftHSM2)
	// instead of key_file; the private key never leaves the token. The key
	// pair must be Ed25519 (CKK_EC_EDWARDS, signed with CKM_EDDSA); the
	// witness refuses to start with any other key. Create one with
	// `signer keys generate -type ed25519 -label LABEL` (see signer/README.md).
	// Exactly one of key_file, pkcs11 and signer must be set.
	PKCS11 *PKCS11Key `yaml:"pkcs11"`

	// Signer has the signer service cosign (POST /api/v1/signer/sign/
	// cosignature) with a key it holds in its HSM: the witness then holds
	// no private key and no PIN. The key must have the cosignature purpose
	// and note name equal to Name. Exactly one of key_file, pkcs11 and
	// signer must be set.
	Signer *SignerKey `yaml:"signer"`

	// DBFile is the path of the state database (bbolt), created if missing.
	// It holds the registered logs and the latest cosigned checkpoint of
	// each. Required. Losing it lets the witness be rolled back: back it up
	// and never restore an older copy onto a witness that has since cosigned.
	DBFile string `yaml:"db_file"`

	// AdminSocket is the Unix socket on which the running server accepts the
	// `witness logs ...` commands (the database is locked while it runs).
	// Default: DBFile + ".admin/socket". Its directory must be one only the
	// witness's user can enter (owned by it, no group or other
	// permissions): the server creates it mode 0700 if missing and refuses
	// to start otherwise, so no other user can reach the socket.
	AdminSocket string `yaml:"admin_socket"`

	// Listen is the address of the public HTTP listener (add-checkpoint,
	// monitoring, /healthz, /readyz). Default ":7380".
	Listen string `yaml:"listen"`

	// MetricsListen, if set, serves /metrics (and /healthz, /readyz) on this
	// separate address instead of on Listen, e.g. "127.0.0.1:9380".
	MetricsListen string `yaml:"metrics_listen"`

	// SubmissionPrefix is the path prefix of add-checkpoint, e.g. "/witness"
	// for POST /witness/add-checkpoint. Default "" (POST /add-checkpoint).
	// Must start with "/" and not end with "/".
	SubmissionPrefix string `yaml:"submission_prefix"`

	// MonitoringPrefix is the path prefix of the monitoring API,
	// GET <prefix>/<hex SHA-256(origin)>/checkpoint. Default "".
	MonitoringPrefix string `yaml:"monitoring_prefix"`

	// MaxBodyBytes caps add-checkpoint request bodies; larger ones get 413.
	// Default 262144 (256 KiB), at least 16384.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`

	// HTTP are the HTTP servers' timeouts and graceful shutdown, the same
	// keys in every service (internal/service.Timeouts).
	HTTP service.Timeouts `yaml:",inline"`

	// Budget is the default request budget of each log: a token bucket of
	// Burst requests refilled at Rate per second. Only requests that would
	// advance the log's state are charged: a valid log signature, the
	// right old size and a consistent tree, with a new size (or new note
	// text) to cosign. Stale or replayed requests (409), refused ones
	// (4xx) and repeats of the latest checkpoint are never charged, so
	// nobody but the log itself can spend its budget. Requests over budget
	// get 429 with Retry-After. Default {rate: 20, burst: 200}: twice the
	// highest rate of this project's log feeder (at most one checkpoint
	// per witness every 100 ms, logserver/witnessing.DefaultMinInterval),
	// so it is never throttled.
	Budget Budget `yaml:"budget"`

	// Logs are the logs this witness cosigns. Each is stored in the database
	// at start-up (source "config"), replacing the keys of a log with the
	// same origin; a config log that disappears from this list is disabled,
	// and enabled again if it comes back (unless `witness logs disable` was
	// used on it).
	// Logs can also be added at run time with `witness logs add`.
	Logs []Log `yaml:"logs"`

	// Logging configures the structured log on stderr, as in every
	// service.
	Logging service.Logging `yaml:"logging"`

	// LogLevel is the former name of logging.level, still read (not with
	// logging.level).
	LogLevel string `yaml:"log_level"`

	// LogFormat is the former name of logging.format, still read (not with
	// logging.format). Its default was json; logging.format's is text.
	LogFormat string `yaml:"log_format"`
}

// SignerKey is a cosigning key held by the signer service: where it is
// (signer/client.Config: url, token_file with scope sign:cosignature, key,
// timeout, default 5s here) and how many calls may be in flight.
type SignerKey struct {
	client.Config `yaml:",inline"`
	// MaxInFlight is the most cosigning calls the witness has in flight at
	// once; more wait for a slot (requests for one log never overlap, so
	// this bounds calls across logs). Keep it at most the witness tenant's
	// quota.concurrency in the signer (default 16; make run sets 8), so
	// the witness never causes the signer's concurrency pushback. Default 8.
	MaxInFlight int `yaml:"max_in_flight"`
}

// DefaultPKCS11Module is where Debian installs the SoftHSM2 module.
const DefaultPKCS11Module = "/usr/lib/softhsm/libsofthsm2.so"

// PKCS11Key is an Ed25519 key pair in a PKCS#11 token. The witness opens
// the token at start-up, logs in with the user PIN and keeps the session
// pool open until it stops; a token that is missing, a wrong PIN or a
// missing key stops start-up. Example:
//
//	pkcs11:
//	  token_label: witness
//	  key_label: witness-ed25519
//	  pin_file: /run/secrets/witness-pin
type PKCS11Key struct {
	// Module is the PKCS#11 library: an absolute path, or a bare file name
	// that the dynamic loader looks up. Default
	// /usr/lib/softhsm/libsofthsm2.so (SoftHSM2 on Debian).
	Module string `yaml:"module"`

	// TokenLabel is the label of the token, as shown by
	// `softhsm2-util --show-slots` or `pkcs11-tool -L`. Required. Slot
	// numbers are not used: SoftHSM2 assigns random ones.
	TokenLabel string `yaml:"token_label"`

	// KeyLabel is the CKA_LABEL shared by the private and the public key
	// object of the Ed25519 key pair. Required; it must name exactly one
	// key pair.
	KeyLabel string `yaml:"key_label"`

	// PINFile is a file holding the token's user PIN (surrounding
	// whitespace ignored); relative to the configuration file's directory.
	// Keep it mode 0600.
	PINFile string `yaml:"pin_file"`

	// PINEnv is the name of an environment variable holding the user PIN,
	// e.g. WITNESS_PKCS11_PIN. Exactly one of pin_file and pin_env must be
	// set. The PIN itself never appears in the configuration, logs or errors.
	PINEnv string `yaml:"pin_env"`

	// Sessions is the size of the token's session pool: how many
	// cosignatures are computed at once (more requests wait, at most 30s).
	// Default 0 means GOMAXPROCS, at most 4.
	Sessions int `yaml:"sessions"`
}

// Budget is a token bucket.
type Budget struct {
	// Rate is the sustained number of requests per second (> 0).
	Rate float64 `yaml:"rate"`
	// Burst is the bucket size (≥ 1).
	Burst int `yaml:"burst"`
}

// Log is a witnessed log.
type Log struct {
	// Origin is the checkpoint's first line, exactly, e.g.
	// "example.com/log" or, for Rekor v1, "rekor.example.com - <treeID>".
	Origin string `yaml:"origin"`

	// VKeys are the log's signed-note verifier keys; a checkpoint needs a
	// valid signature from at least one and no failing one. Two forms:
	//
	//   Ed25519: <name>+<hex key ID>+base64(0x01 || 32-byte key), the form
	//   of golang.org/x/mod/sumdb/note; the key ID is
	//   SHA-256(name || 0x0A || 0x01 || key)[:4].
	//
	//   ECDSA (Rekor v1): <name>+<hex key ID>+base64(0x02 || DER SPKI), the
	//   form of github.com/transparency-dev/formats/note; the key ID is
	//   SHA-256(DER SPKI)[:4] and name is the signature line's name, the bare
	//   hostname for Rekor. `witness vkey -name <host> -pubkey rekor.pem`
	//   converts Rekor's PEM public key.
	VKeys []string `yaml:"vkeys"`

	// Budget overrides the default budget for this log.
	Budget *Budget `yaml:"budget"`
}

// Load reads and validates a configuration file. Relative paths in it are
// resolved against the file's directory and made absolute.
func Load(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	c, err := Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	paths := []*string{&c.KeyFile, &c.DBFile, &c.AdminSocket}
	if c.PKCS11 != nil {
		paths = append(paths, &c.PKCS11.PINFile)
	}
	for _, p := range paths {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	return c, nil
}

// Parse decodes YAML strictly (unknown keys are errors), applies defaults
// and validates.
func Parse(raw []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	c.setDefaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) setDefaults() {
	if c.Listen == "" {
		c.Listen = ":7380"
	}
	if c.PKCS11 != nil && c.PKCS11.Module == "" {
		c.PKCS11.Module = DefaultPKCS11Module
	}
	if c.AdminSocket == "" && c.DBFile != "" {
		c.AdminSocket = filepath.Join(c.DBFile+".admin", "socket")
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 256 << 10
	}
	if c.Budget == (Budget{}) {
		c.Budget = Budget{Rate: 20, Burst: 200}
	}
	if c.Logging.Level == "" {
		c.Logging.Level = c.LogLevel
	}
	if c.Logging.Format == "" {
		c.Logging.Format = c.LogFormat
	}
}

// Validate checks every field and returns all problems at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !notekey.ValidName(c.Name) {
		bad("name %q: must be a non-empty key name without spaces or '+'", c.Name)
	}
	keysSet := 0
	for _, set := range []bool{c.KeyFile != "", c.PKCS11 != nil, c.Signer != nil} {
		if set {
			keysSet++
		}
	}
	switch {
	case keysSet == 0:
		bad("key_file, pkcs11 or signer is required")
	case keysSet > 1:
		bad("more than one of key_file, pkcs11 and signer is set: configure exactly one witness key")
	case c.Signer != nil:
		if err := c.Signer.Check("signer", 5*time.Second); err != nil {
			bad("%v", err)
		}
		if c.Signer.MaxInFlight == 0 {
			c.Signer.MaxInFlight = 8
		}
		if c.Signer.MaxInFlight < 0 {
			bad("signer.max_in_flight %d: must be positive", c.Signer.MaxInFlight)
		}
	case c.PKCS11 != nil:
		for _, err := range c.PKCS11.problems() {
			bad("pkcs11: %v", err)
		}
	}
	if c.DBFile == "" {
		bad("db_file is required")
	}
	for field, p := range map[string]string{"submission_prefix": c.SubmissionPrefix, "monitoring_prefix": c.MonitoringPrefix} {
		if p != "" && (!strings.HasPrefix(p, "/") || strings.HasSuffix(p, "/") || strings.ContainsAny(p, "{}# ?")) {
			bad("%s %q: must start with '/', not end with '/', and hold no '{', '}', '#', '?' or space", field, p)
		}
	}
	if c.MetricsListen != "" && c.MetricsListen == c.Listen {
		bad("metrics_listen must differ from listen")
	}
	if c.MaxBodyBytes < 16<<10 {
		bad("max_body_bytes %d: must be at least 16384", c.MaxBodyBytes)
	}
	if err := c.HTTP.Check(); err != nil {
		bad("%v", err)
	}
	if err := c.Budget.check(); err != nil {
		bad("budget: %v", err)
	}
	if c.LogLevel != "" && c.LogLevel != c.Logging.Level {
		bad("log_level %q and logging.level %q: set logging.level only", c.LogLevel, c.Logging.Level)
	}
	if c.LogFormat != "" && c.LogFormat != c.Logging.Format {
		bad("log_format %q and logging.format %q: set logging.format only", c.LogFormat, c.Logging.Format)
	}
	if err := c.Logging.Check("logging"); err != nil {
		bad("%v", err)
	}
	seen := make(map[string]bool)
	for i, l := range c.Logs {
		if seen[l.Origin] {
			bad("logs[%d]: origin %q listed twice", i, l.Origin)
		}
		seen[l.Origin] = true
		if _, err := notekey.LogVerifiers(l.Origin, l.VKeys); err != nil {
			bad("logs[%d] (%q): %v", i, l.Origin, err)
		}
		if l.Budget != nil {
			if err := l.Budget.check(); err != nil {
				bad("logs[%d] (%q) budget: %v", i, l.Origin, err)
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return nil
}

func (k *PKCS11Key) problems() []error {
	var errs []error
	if k.Module == "" || (!filepath.IsAbs(k.Module) && strings.Contains(k.Module, "/")) {
		errs = append(errs, fmt.Errorf("module %q: want an absolute path or a bare library name", k.Module))
	}
	if k.TokenLabel == "" {
		errs = append(errs, errors.New("token_label is required"))
	}
	if k.KeyLabel == "" {
		errs = append(errs, errors.New("key_label is required"))
	}
	if (k.PINFile == "") == (k.PINEnv == "") {
		errs = append(errs, errors.New("set exactly one of pin_file and pin_env"))
	}
	if k.Sessions < 0 {
		errs = append(errs, fmt.Errorf("sessions %d: must not be negative", k.Sessions))
	}
	return errs
}

func (b Budget) check() error {
	if !(b.Rate > 0) {
		return fmt.Errorf("rate %v: must be > 0 requests per second", b.Rate)
	}
	if b.Burst < 1 {
		return fmt.Errorf("burst %d: must be at least 1", b.Burst)
	}
	return nil
}
