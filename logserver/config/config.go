// Package config is the logserver's configuration: one YAML file mapped onto
// Config. The field comments below are the operator manual; Load validates
// every field at start-up and fills in the documented defaults.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/stellaops/tlog/internal/service"
	"github.com/stellaops/tlog/logserver/tlogtiles"
	signerclient "github.com/stellaops/tlog/signer/client"
)

// Config is the whole logserver configuration.
type Config struct {
	// Listen is the address of the HTTP server: the Rekor v1 API under
	// /api/v1, /healthz, /readyz and /metrics. Default 127.0.0.1:3000.
	Listen string `yaml:"listen"`

	// DebugListen, if set, serves Go's pprof profiles (/debug/pprof/) on
	// this address. Keep it on loopback. Default: off.
	DebugListen string `yaml:"debug_listen"`

	// Hostname names the log in its checkpoints: the Rekor checkpoint origin
	// is "<hostname> - <treeID>". Clients pin it through the checkpoint, so
	// keep it stable. Default: the machine's hostname.
	Hostname string `yaml:"hostname"`

	// Database is the MySQL/MariaDB database holding the logserver's tables
	// and, with the embedded Trillian, Trillian's tables too.
	Database Database `yaml:"database"`

	// Trillian selects the Merkle tree backend.
	Trillian Trillian `yaml:"trillian"`

	// Key is the log's signing key (checkpoints and SETs).
	Key Key `yaml:"key"`

	// Sequencer tunes the write path.
	Sequencer Sequencer `yaml:"sequencer"`

	// API sets request limits.
	API API `yaml:"api"`

	// Witnessing publishes the log's C2SP checkpoint at GET /checkpoint and
	// collects witness cosignatures for it.
	Witnessing Witnessing `yaml:"witnessing"`

	// Tiles serves the log as C2SP tlog-tiles (package logserver/tlogtiles):
	// <prefix>checkpoint (the witnessed C2SP checkpoint), <prefix>tile/…,
	// <prefix>checkpoints/<size> (every checkpoint published).
	Tiles Tiles `yaml:"tiles"`

	// RekorV2, if set, runs a Rekor v2 log (package logserver/rekorv2)
	// beside the v1 one: same database and Trillian, its own tree, origin
	// and Ed25519 key, POST /api/v2/log/entries, tiled and witnessed.
	RekorV2 *RekorV2 `yaml:"rekor_v2"`

	// Freeze makes the Rekor v1 log read-only, to retire its tree: writes
	// get 403 naming the successor; entries, proofs, tiles, checkpoints
	// and witnessing go on; the trust files end its validity (type Freeze;
	// deployment/README.md, "Freezing a tree and starting a new one").
	Freeze Freeze `yaml:"freeze"`

	// Trust, if set, generates the files clients trust the logs with
	// (package logserver/trust) at every start, serves them under
	// GET /trust/ and writes them into Trust.Dir.
	Trust *Trust `yaml:"trust"`

	// Upstream, if set, replays every entry logged here to an upstream
	// Rekor-compatible log (package logserver/upstream; see upstream.go).
	Upstream *Upstream `yaml:"upstream"`
	// TLS, if set, makes Listen serve HTTPS (and accept client
	// certificates for tenants).
	TLS *TLS `yaml:"tls"`
	// Tenants attributes entry submissions (POST /api/v1/log/entries and
	// /api/v2/log/entries) to tenants: by bearer token (Authorization:
	// Bearer), by verified client certificate (tls.client_ca_file), or,
	// with neither, to default_tenant. A credential that names no tenant
	// gets 401, never the default tenant.
	Tenants Tenants `yaml:"tenants"`
	// Budgets are per-tenant submission budgets, kept in the database
	// (table budget_counters, shared by replicas). Tier graph (ordinary
	// submissions) is admitted when the tenant's count in the current UTC
	// hour is below hourly_limit AND its count in the current burst window
	// is below burst_limit*burst_window/1h rounded down (burst_limit is a
	// rate per hour measured over burst_window: the seed's 200/h over 10m
	// admits 33 per 10 minutes). Tier edge (large bundles, no burst) is
	// admitted when the count in the current UTC day is below
	// edge_bundle_daily_limit. Windows are fixed and aligned on UTC (10m
	// windows start at :00, :10, …), so up to twice a limit can be
	// admitted across a window boundary. A submission's tier, first rule
	// that applies: header X-Stella-Tier "graph" or "edge" (any other
	// value is 400 and charges nothing); entry kind in edge_kinds; in-toto
	// predicate type in edge_predicate_types; body of at least
	// edge_min_bytes; else graph. Over budget: 429 with Retry-After and a
	// message naming tenant, tier, limit and reset, or 202 when the caller
	// sent "Prefer: respond-async" and the pending queue is configured. A
	// charged submission that is not logged (any answer but 201, except
	// 504, which may still be logged) is refunded; a database error is 503
	// with Retry-After.
	Budgets Budgets `yaml:"budgets"`

	// HTTP are the HTTP server's timeouts and its graceful shutdown, the
	// same keys in every service (internal/service.Timeouts).
	HTTP service.Timeouts `yaml:",inline"`

	// Queue is the durable pending queue of submissions (asynchronous API,
	// drainer, admin commands).
	Queue Queue `yaml:"queue"`

	// Logging configures the structured log on stderr.
	Logging service.Logging `yaml:"logging"`
}

// RekorV2 configures the Rekor v2 log.
type RekorV2 struct {
	// URL is the log's base URL as clients get it (signing_config's
	// rekorTlogUrls, trusted_root's baseUrl), e.g. https://rekor.example
	// or http://127.0.0.1:3000. Its host name, without port, is the
	// checkpoint origin and the note key name: sigstore-go verifies a v2
	// checkpoint under the host name of baseUrl. It must differ from the
	// v1 log's witnessing.origin. A new tree is a new log: give it a new
	// host name.
	URL string `yaml:"url"`
	// Signer names the log's Ed25519 note key in the signer service
	// (purpose checkpoint, note name = the origin), which signs every
	// checkpoint. The token needs scope sign:checkpoint. Its newest active
	// version signs (chosen at start); the trusted root lists all its
	// versions with their windows (key rotation: see README).
	Signer *signerclient.Config `yaml:"signer"`
	// KeyFile is the log's Ed25519 note key (PEM PKCS#8), instead of Signer.
	KeyFile string `yaml:"key_file"`
	// CreateKey generates KeyFile (mode 0600) on first start if missing.
	CreateKey bool `yaml:"create_key"`
	// VKeyFile, if set, receives the log's note verifier key at every start.
	VKeyFile string `yaml:"vkey_file"`
	// PublicKeyFile, if set, receives the PEM public key at every start
	// (for trusted_root.json and cosign trusted-root create).
	PublicKeyFile string `yaml:"public_key_file"`
	// TreeID pins the log's Trillian tree. 0: the tree recorded for the v2
	// log, or a new one on the first start.
	TreeID int64 `yaml:"tree_id"`
	// TilesPrefix is where the v2 log is served as tlog-tiles (checkpoint,
	// tiles, bundles, checkpoint history). Default "/api/v2/" (rekor-tiles'
	// own routes for them, which its write server leaves unimplemented).
	TilesPrefix string `yaml:"tiles_prefix"`
	// PolicyFile is the c2sp.org/tlog-policy file of its witnesses (same
	// format as witnessing.policy_file; the witnesses must know this log's
	// origin and vkey). Empty: no witnesses. The timing settings of
	// witnessing apply.
	PolicyFile string `yaml:"policy_file"`
	// Freeze makes the v2 log read-only, as freeze does the v1 log.
	Freeze Freeze `yaml:"freeze"`
}

// Origin is the v2 log's checkpoint origin: the host name of URL.
func (r *RekorV2) Origin() string {
	u, err := url.Parse(r.URL)
	if err != nil {
		return ""
	}
	return u.Hostname()
}

// Trust configures the generated trust files: trusted_root.json and
// signing_config.json (v0.2) naming the v1 log and, if configured, the v2
// log, with their keys, log IDs and validity (from the trees' creation).
type Trust struct {
	// URL is the v1 log's base URL as clients reach it (baseUrl and the
	// signing config's URL), e.g. https://rekor.example.
	URL string `yaml:"url"`
	// Dir, if set, receives trusted_root.json, signing_config.json and the
	// logs' PEM public keys at every start.
	Dir string `yaml:"dir"`
	// Operator names the operator in signing_config.json. Default: the
	// v1 log's host name.
	Operator string `yaml:"operator"`
	// TUF, if set, also serves the trust files from the appliance's own
	// TUF repository, so that clients need only its root.json and URL.
	TUF *TUF `yaml:"tuf"`
}

// TUF configures the appliance's TUF repository (package logserver/tufrepo):
// targets trusted_root.json and signing_config.v0.2.json (the names cosign
// v3 and sigstore-go look up), consistent snapshots, served under Path;
// clients run `cosign initialize --mirror <trust.url><Path without the
// final "/"> --root <Dir>/root.json`. The targets are published at every
// start, as a new targets version when the trust files changed (a key
// added to a log with its validity window). A background loop signs a new
// timestamp (and snapshot, targets, root) version before the current one
// expires: with the defaults, a timestamp lives 1 day and is replaced 12h
// before it expires, so clients keep working through a half-day outage of
// the signer.
type TUF struct {
	// Path is the URL path the repository is served under; it starts and
	// ends with "/". Default "/tuf/".
	Path string `yaml:"path"`
	// Dir holds the repository: every version of the metadata and every
	// target ever published, as served (never delete it: versions must
	// only go up). Default: <trust.dir>/tuf. root.json is also written to
	// trust.dir at every start.
	Dir string `yaml:"dir"`
	// RootKey signs root.json. In production a dedicated key of the signer
	// (purpose digests, ECDSA P-256, e.g. "tuf-root"); a key file for
	// tests and development. It cannot change: a new root key is a new
	// repository (a new Dir, a new root.json for clients).
	RootKey Key `yaml:"root_key"`
	// OnlineKey signs targets, snapshot and timestamp: a dedicated key of
	// the signer (purpose digests, ECDSA P-256, e.g. "tuf-online"), or a
	// key file. Changing it publishes a new root version naming the new
	// key, signed by the root key; clients follow it.
	OnlineKey Key `yaml:"online_key"`
	// RootExpiry is how long a root version is valid. Default 8760h.
	RootExpiry time.Duration `yaml:"root_expiry"`
	// TargetsExpiry is how long a targets or snapshot version is valid.
	// Default 2160h.
	TargetsExpiry time.Duration `yaml:"targets_expiry"`
	// TimestampExpiry is how long a timestamp version is valid. Default 24h.
	TimestampExpiry time.Duration `yaml:"timestamp_expiry"`
	// RefreshMargin: a version is replaced once it expires within the
	// margin. Less than TimestampExpiry. Default TimestampExpiry / 2.
	RefreshMargin time.Duration `yaml:"refresh_margin"`
}

func (t *TUF) validate(tr *Trust, c *Config, bad func(string, ...any)) {
	if t.Path == "" {
		t.Path = "/tuf/"
	}
	if !strings.HasPrefix(t.Path, "/") || !strings.HasSuffix(t.Path, "/") || len(t.Path) < 3 || strings.Contains(t.Path, "//") {
		bad("trust.tuf.path %q: want /name/", t.Path)
	} else if t.Path == "/trust/" || t.Path == c.Tiles.Prefix || (c.RekorV2 != nil && t.Path == c.RekorV2.TilesPrefix) || strings.HasPrefix(t.Path, "/api/") {
		bad("trust.tuf.path %q is taken by another API", t.Path)
	}
	if t.Dir == "" {
		if tr.Dir == "" {
			bad("trust.tuf.dir: required without trust.dir")
		}
		t.Dir = filepath.Join(tr.Dir, "tuf")
	}
	t.RootKey.validate("trust.tuf.root_key", bad)
	t.OnlineKey.validate("trust.tuf.online_key", bad)
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{{"root_expiry", &t.RootExpiry, 8760 * time.Hour}, {"targets_expiry", &t.TargetsExpiry, 2160 * time.Hour},
		{"timestamp_expiry", &t.TimestampExpiry, 24 * time.Hour}, {"refresh_margin", &t.RefreshMargin, 0}} {
		if *d.v == 0 {
			*d.v = d.def
		}
		if *d.v < 0 {
			bad("trust.tuf.%s %v: must be positive", d.name, *d.v)
		}
	}
	if t.RefreshMargin == 0 {
		t.RefreshMargin = t.TimestampExpiry / 2
	}
	if t.RefreshMargin >= t.TimestampExpiry || t.RefreshMargin >= t.TargetsExpiry || t.RefreshMargin >= t.RootExpiry {
		bad("trust.tuf.refresh_margin %v: must be less than every expiry", t.RefreshMargin)
	}
}

// validate checks k (named name in errors) and sets its defaults.
func (k *Key) validate(name string, bad func(string, ...any)) {
	switch {
	case k.File == "" && k.Signer == nil:
		bad("%s.file or %s.signer is required", name, name)
	case k.File != "" && k.Signer != nil:
		bad("%s.file and %s.signer are exclusive", name, name)
	case k.Signer != nil:
		if err := k.Signer.Check(name+".signer", 0); err != nil {
			bad("%v", err)
		}
		if k.Create {
			bad("%s.create applies to %s.file only (the signer's keys are made with `signer keys generate`)", name, name)
		}
	}
}

// Tiles configures the tlog-tiles read API.
type Tiles struct {
	// Prefix is the URL path the tiles are served under; it starts and
	// ends with "/". Default "/": /checkpoint, /tile/0/000, … The
	// tlog-tiles URL of the log is the listen URL plus Prefix.
	Prefix string `yaml:"prefix"`
}

// Witnessing configures the C2SP checkpoint and its witnesses. It is on
// when KeyFile is set.
type Witnessing struct {
	// Origin is the C2SP checkpoint origin and the name of the log's Ed25519
	// note key. Witnesses and verifiers pin it. No spaces or '+'. Default:
	// Hostname. A new tree is a new log: give it a new origin.
	Origin string `yaml:"origin"`
	// KeyFile is the log's Ed25519 note key (PEM PKCS#8, e.g.
	// `openssl genpkey -algorithm ed25519`). Empty: no C2SP checkpoint and
	// no witnessing.
	KeyFile string `yaml:"key_file"`
	// CreateKey generates KeyFile (mode 0600) on first start if missing.
	CreateKey bool `yaml:"create_key"`
	// VKeyFile, if set, receives the log's note verifier key (vkey) at
	// every start: witnesses and the policy's `log` line use it.
	VKeyFile string `yaml:"vkey_file"`
	// PolicyFile is a c2sp.org/tlog-policy file naming the witnesses (with
	// their submission URLs), groups and the quorum. Empty: no witnesses,
	// and /checkpoint serves the checkpoint signed by the log alone.
	PolicyFile string `yaml:"policy_file"`
	// RequestTimeout bounds one add-checkpoint request. Default 10s.
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// MaxParallel caps requests to witnesses in flight. Default 8.
	MaxParallel int `yaml:"max_parallel"`
	// RetryMin and RetryMax bound the backoff before a failing witness is
	// tried again (a Retry-After is honoured). Defaults 5s and 5m.
	RetryMin time.Duration `yaml:"retry_min"`
	RetryMax time.Duration `yaml:"retry_max"`
	// QuorumGrace is how long to wait for slower witnesses once the quorum
	// is met before publishing; later cosignatures are published as a new
	// version of the same checkpoint. Default 250ms.
	QuorumGrace time.Duration `yaml:"quorum_grace"`
	// MaxClockSkew is how far a cosignature timestamp may be from our
	// clock. Default 10m.
	MaxClockSkew time.Duration `yaml:"max_clock_skew"`
}

// Database is a MySQL/MariaDB connection.
type Database struct {
	// DSN in go-sql-driver/mysql form, e.g.
	// "rekor:secret@tcp(127.0.0.1:3306)/rekor". Required. parseTime is not
	// needed. Prefer DSNFile to keep the password out of the config.
	DSN string `yaml:"dsn"`
	// DSNFile is a file holding the DSN (surrounding whitespace ignored;
	// keep it mode 0600); used when DSN is empty.
	DSNFile string `yaml:"dsn_file"`
	// MaxConns caps open connections of each pool (ours and Trillian's).
	// Default 32.
	MaxConns int `yaml:"max_conns"`
	// AllowNonDurable lets the logserver start on a server that does not
	// flush every commit (innodb_flush_log_at_trx_commit other than 1, or
	// the binary log on with sync_binlog other than 1). Start-up refuses
	// such a server by default: a power cut could lose entries already
	// acknowledged. For tests and throw-away logs only. Default false.
	AllowNonDurable bool `yaml:"allow_non_durable"`
}

// Trillian selects the tree backend.
type Trillian struct {
	// Mode is "embedded" (default): Trillian's storage and sequencer run in
	// this process against Database; run exactly one logserver per tree.
	// "remote": external trillian_log_server/trillian_log_signer at Address
	// do the work (scale-out, etcd election).
	Mode string `yaml:"mode"`
	// Address of the remote Trillian log server's gRPC endpoint (remote mode).
	Address string `yaml:"address"`
	// TreeID pins the tree. 0 (default): the tree recorded in the database
	// is used, and on the very first start a new one is created and
	// recorded. A restart never creates a new tree. If set and a different
	// tree is recorded, start-up fails.
	TreeID int64 `yaml:"tree_id"`
	// SchemaFile is Trillian's MySQL schema, applied idempotently at start-up
	// (embedded mode). Default: read from the Trillian module version built
	// into this binary, in the Go module cache (see internal/migrate).
	// Container images set it to the copy they ship.
	SchemaFile string `yaml:"schema_file"`
}

// Key is the log's ECDSA P-256 signing key: either in the signer service
// (an HSM; production) or in a PEM file (development). Exactly one.
type Key struct {
	// Signer names the key in the signer service, which signs every SET and
	// checkpoint of a sequencing pass in one batched call (purpose
	// digests, ECDSA P-256; token scope sign:digests).
	Signer *signerclient.Config `yaml:"signer"`
	// File is a PEM private key (PKCS#8 or SEC 1).
	File string `yaml:"file"`
	// Create generates the key into File on first start if it is missing.
	Create bool `yaml:"create"`
	// PublicKeyFile, if set, receives the PEM public key at every start
	// (what clients pin: rekor-cli, cosign's SIGSTORE_REKOR_PUBLIC_KEY).
	PublicKeyFile string `yaml:"public_key_file"`
}

// Sequencer tunes batching and latency of writes.
type Sequencer struct {
	// BatchSize caps leaves per queue transaction and per sequencing pass.
	// Default 1000.
	BatchSize int `yaml:"batch_size"`
	// AdmitWorkers is the number of queue transactions in flight. Default 1:
	// one worker lets submissions pile up into larger batches while its
	// transaction runs, which measured faster than two.
	AdmitWorkers int `yaml:"admit_workers"`
	// Interval is the longest a queued leaf waits for a sequencing pass when
	// no new submission wakes the sequencer (a submission wakes it at once).
	// In remote mode it is the tree-head poll period while writers wait.
	// Default 50ms.
	Interval time.Duration `yaml:"interval"`
	// TileCache is how many full Merkle tiles stay in memory for proofs,
	// each with its interior hashes (16 KiB). Default 4096 (64 MiB): the
	// top of a billion-entry tree plus a million recent leaves.
	TileCache int `yaml:"tile_cache"`
	// MaxEntryBytes caps the canonical entry (the Merkle leaf Rekor's
	// types make of a request): larger entries get 413 and nothing is
	// stored. At most 16 MiB - 1 (the body column). The database's
	// max_allowed_packet must be at least twice this plus 1 MiB (checked at
	// start-up; MariaDB's default 16 MiB allows up to 7.5 MiB). Default
	// 4 MiB.
	MaxEntryBytes int `yaml:"max_entry_bytes"`
	// MaxPendingBytes bounds the canonical entries admitted but not yet
	// queued in Trillian, and MaxPending the writers waiting for their
	// entry to be published; past either, writes get 503 with Retry-After
	// at once instead of holding memory. Defaults 256 MiB and 10000.
	MaxPendingBytes int64 `yaml:"max_pending_bytes"`
	MaxPending      int   `yaml:"max_pending"`
	// StateDir receives, for the Rekor checkpoint (hostname and log key)
	// and the C2SP checkpoint (origin and note key), the highest tree head
	// published, written durably before the head is served. With the same
	// records in the database, it makes the log refuse to sign a second
	// history after its database is wiped, replaced or restored from an
	// older backup. Keep it on durable storage, apart from the database,
	// and never delete it while the log lives. Default: the directory of
	// key.file; required with key.signer.
	StateDir string `yaml:"state_dir"`
}

// API sets limits on requests.
type API struct {
	// MaxRequestBytes caps request bodies; larger ones get 413. Default
	// 32 MiB (in-toto and DSSE entries can carry large attestations).
	MaxRequestBytes int64 `yaml:"max_request_bytes"`
	// MaxInflightWrites and MaxInflightWriteBytes bound the entry
	// submissions being read and processed at once, by count and by body
	// bytes (Content-Length, or max_request_bytes when unknown); past
	// either, a submission gets 503 with Retry-After before its body is
	// read. Defaults 1024 and 1 GiB.
	MaxInflightWrites     int   `yaml:"max_inflight_writes"`
	MaxInflightWriteBytes int64 `yaml:"max_inflight_write_bytes"`
	// WriteTimeout bounds how long a write waits for integration before it
	// answers 504 (the entry is still logged; a retry gets 409). Default 30s.
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// SigningAlgorithms restricts the key/hash combinations accepted in
	// hashedrekord entries, in Rekor's --client-signing-algorithms form
	// (e.g. "ecdsa-sha2-256-nistp256", "ed25519-ph", "rsa-sign-pkcs1-2048-sha256").
	// Default: Rekor's default list (RSA 2048-4096 PKCS#1v1.5, ECDSA
	// P-256/384/521, Ed25519, Ed25519ph).
	SigningAlgorithms []string `yaml:"signing_algorithms"`
}

// Load reads, defaults and validates the YAML file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return &c, nil
}

// Validate fills in defaults and checks every field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.Listen == "" {
		c.Listen = "127.0.0.1:3000"
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen %q: %v", c.Listen, err)
	}
	if c.DebugListen != "" {
		if _, _, err := net.SplitHostPort(c.DebugListen); err != nil {
			bad("debug_listen %q: %v", c.DebugListen, err)
		}
	}
	if c.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			bad("hostname: not set and os.Hostname failed: %v", err)
		}
		c.Hostname = h
	}
	if len(c.Hostname) > 255 {
		bad("hostname: %d bytes, want at most 255", len(c.Hostname))
	}
	for _, r := range c.Hostname {
		if r <= ' ' || r == '+' || r == '\u2014' {
			bad("hostname %q: must not contain spaces, '+' or control characters", c.Hostname)
			break
		}
	}
	if c.Database.DSN == "" && c.Database.DSNFile != "" {
		dsn, err := service.ReadSecret(c.Database.DSNFile)
		if err != nil {
			bad("database.dsn_file: %v", err)
		}
		c.Database.DSN = dsn
	}
	if c.Database.DSN == "" {
		bad("database.dsn or database.dsn_file is required")
	}
	if c.Database.MaxConns == 0 {
		c.Database.MaxConns = 32
	}
	if c.Database.MaxConns < 2 {
		bad("database.max_conns %d: need at least 2", c.Database.MaxConns)
	}
	switch c.Trillian.Mode {
	case "":
		c.Trillian.Mode = "embedded"
	case "embedded":
	case "remote":
		if c.Trillian.Address == "" {
			bad("trillian.address is required in remote mode")
		}
	default:
		bad("trillian.mode %q: want embedded or remote", c.Trillian.Mode)
	}
	if c.Trillian.TreeID < 0 {
		bad("trillian.tree_id %d: must be positive", c.Trillian.TreeID)
	}
	c.Key.validate("key", bad)
	if c.Sequencer.BatchSize == 0 {
		c.Sequencer.BatchSize = 1000
	}
	if c.Sequencer.BatchSize < 1 || c.Sequencer.BatchSize > 10000 {
		bad("sequencer.batch_size %d: want 1..10000", c.Sequencer.BatchSize)
	}
	if c.Sequencer.AdmitWorkers == 0 {
		c.Sequencer.AdmitWorkers = 1
	}
	if c.Sequencer.AdmitWorkers < 1 || c.Sequencer.AdmitWorkers > 64 {
		bad("sequencer.admit_workers %d: want 1..64", c.Sequencer.AdmitWorkers)
	}
	if c.Sequencer.Interval == 0 {
		c.Sequencer.Interval = 50 * time.Millisecond
	}
	if c.Sequencer.Interval < time.Millisecond || c.Sequencer.Interval > time.Minute {
		bad("sequencer.interval %v: want 1ms..1m", c.Sequencer.Interval)
	}
	if c.Sequencer.TileCache == 0 {
		c.Sequencer.TileCache = 4096
	}
	if c.Sequencer.TileCache < 16 {
		bad("sequencer.tile_cache %d: want at least 16", c.Sequencer.TileCache)
	}
	if c.Sequencer.MaxEntryBytes == 0 {
		c.Sequencer.MaxEntryBytes = 4 << 20
	}
	if c.Sequencer.MaxEntryBytes < 1024 || c.Sequencer.MaxEntryBytes > 1<<24-1 {
		bad("sequencer.max_entry_bytes %d: want 1024..16777215", c.Sequencer.MaxEntryBytes)
	}
	if c.Sequencer.MaxPendingBytes == 0 {
		c.Sequencer.MaxPendingBytes = 256 << 20
	}
	if c.Sequencer.MaxPendingBytes < int64(c.Sequencer.MaxEntryBytes) {
		bad("sequencer.max_pending_bytes %d: want at least max_entry_bytes (%d)", c.Sequencer.MaxPendingBytes, c.Sequencer.MaxEntryBytes)
	}
	if c.Sequencer.MaxPending == 0 {
		c.Sequencer.MaxPending = 10000
	}
	if c.Sequencer.MaxPending < 1 {
		bad("sequencer.max_pending %d: want at least 1", c.Sequencer.MaxPending)
	}
	if c.Sequencer.StateDir == "" && c.Key.File != "" {
		c.Sequencer.StateDir = filepath.Dir(c.Key.File)
	}
	if c.Sequencer.StateDir == "" {
		bad("sequencer.state_dir is required with key.signer")
	}
	if c.API.MaxRequestBytes == 0 {
		c.API.MaxRequestBytes = 32 << 20
	}
	if c.API.MaxRequestBytes < 4096 {
		bad("api.max_request_bytes %d: want at least 4096", c.API.MaxRequestBytes)
	}
	if c.API.MaxInflightWrites == 0 {
		c.API.MaxInflightWrites = 1024
	}
	if c.API.MaxInflightWrites < 1 {
		bad("api.max_inflight_writes %d: want at least 1", c.API.MaxInflightWrites)
	}
	if c.API.MaxInflightWriteBytes == 0 {
		c.API.MaxInflightWriteBytes = 1 << 30
	}
	if c.API.MaxInflightWriteBytes < c.API.MaxRequestBytes {
		bad("api.max_inflight_write_bytes %d: want at least max_request_bytes (%d)", c.API.MaxInflightWriteBytes, c.API.MaxRequestBytes)
	}
	if c.API.WriteTimeout == 0 {
		c.API.WriteTimeout = 30 * time.Second
	}
	if c.API.WriteTimeout < time.Second {
		bad("api.write_timeout %v: want at least 1s", c.API.WriteTimeout)
	}
	if c.Witnessing.KeyFile != "" {
		w := &c.Witnessing
		if w.Origin == "" {
			w.Origin = c.Hostname
		}
		if strings.ContainsAny(w.Origin, " +\n") || w.Origin == "" || len(w.Origin) > 255 {
			bad("witnessing.origin %q: must be non-empty, at most 255 bytes, without spaces or '+'", w.Origin)
		}
		for _, d := range []struct {
			name string
			v    *time.Duration
			def  time.Duration
		}{{"request_timeout", &w.RequestTimeout, 10 * time.Second}, {"retry_min", &w.RetryMin, 5 * time.Second},
			{"retry_max", &w.RetryMax, 5 * time.Minute}, {"quorum_grace", &w.QuorumGrace, 250 * time.Millisecond},
			{"max_clock_skew", &w.MaxClockSkew, 10 * time.Minute}} {
			if *d.v == 0 {
				*d.v = d.def
			}
			if *d.v < 0 {
				bad("witnessing.%s %v: must be positive", d.name, *d.v)
			}
		}
		if w.RetryMin > w.RetryMax {
			bad("witnessing.retry_min %v exceeds retry_max %v", w.RetryMin, w.RetryMax)
		}
		if w.MaxParallel == 0 {
			w.MaxParallel = 8
		}
		if w.MaxParallel < 1 {
			bad("witnessing.max_parallel %d: want at least 1", w.MaxParallel)
		}
	} else if c.Witnessing.PolicyFile != "" {
		bad("witnessing.policy_file needs witnessing.key_file (the log's note key)")
	}
	if c.Tiles.Prefix == "" {
		c.Tiles.Prefix = "/"
	}
	if err := tlogtiles.CheckPrefix(c.Tiles.Prefix); err != nil {
		bad("tiles.prefix: %v", err)
	}
	c.Freeze.validate("freeze", bad)
	if v2 := c.RekorV2; v2 != nil {
		v2.Freeze.validate("rekor_v2.freeze", bad)
		if u, err := url.Parse(v2.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
			bad("rekor_v2.url %q: want http(s)://host[:port]", v2.URL)
		} else if v2.Origin() == c.Witnessing.Origin {
			bad("rekor_v2.url: its host name %q is the v1 log's witnessing.origin; two logs need two origins", v2.Origin())
		}
		switch {
		case v2.KeyFile == "" && v2.Signer == nil:
			bad("rekor_v2.key_file or rekor_v2.signer: required")
		case v2.KeyFile != "" && v2.Signer != nil:
			bad("rekor_v2.key_file and rekor_v2.signer are exclusive")
		case v2.Signer != nil:
			if err := v2.Signer.Check("rekor_v2.signer", 0); err != nil {
				bad("%v", err)
			}
		}
		if v2.TilesPrefix == "" {
			v2.TilesPrefix = "/api/v2/"
		}
		if err := tlogtiles.CheckPrefix(v2.TilesPrefix); err != nil {
			bad("rekor_v2.tiles_prefix: %v", err)
		} else if v2.TilesPrefix == c.Tiles.Prefix {
			bad("rekor_v2.tiles_prefix %q is also tiles.prefix", v2.TilesPrefix)
		}
	}
	if tr := c.Trust; tr != nil {
		if u, err := url.Parse(tr.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
			bad("trust.url %q: want http(s)://host[:port]", tr.URL)
		} else if tr.Operator == "" {
			tr.Operator = u.Hostname()
		}
		if t := tr.TUF; t != nil {
			t.validate(tr, c, bad)
		}
	}
	if c.Upstream != nil {
		c.Upstream.validate(c, bad)
	}
	c.Queue.validate(c, bad)
	c.validateAdmission(bad)
	if err := c.HTTP.Check(); err != nil {
		bad("%v", err)
	}
	if c.HTTP.Write <= c.API.WriteTimeout {
		bad("write_timeout %v: must exceed api.write_timeout %v (a write waits that long for integration, then answers)", c.HTTP.Write, c.API.WriteTimeout)
	}
	if err := c.Logging.Check("logging"); err != nil {
		bad("%v", err)
	}
	return errors.Join(errs...)
}
