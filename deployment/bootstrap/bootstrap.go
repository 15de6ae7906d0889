// Package bootstrap makes the appliance's state on its first start and
// checks it on every later one: the first-start procedure of the compose
// project's `bootstrap` service (deployment/cmd/bootstrap) and of `make run`
// (deployment/localrun), with the services on loopback.
//
// [Run] is idempotent: whatever exists is kept (secrets, the SoftHSM2 token
// and its keys, the log's note key, database accounts and schema), whatever
// is missing is made, and the configuration files are written only when
// their content would change. A second run on the same state therefore
// reports nothing in [Result.Changed].
//
// What it makes, in order:
//
//   - secrets (PINs, bearer tokens, database passwords), random, mode 0600,
//     each in the directory of the service that uses it;
//   - the databases "rekor" and "signer", migrated (Trillian's schema and
//     sql/logserver; sql/signer), and one account per service with only the
//     privileges it needs: "logserver" may read and write rekor.* and create
//     (never drop) its tables, because it applies its migrations at start-up;
//     "signer_audit" may only INSERT and SELECT signer.signer_audit;
//   - the signer's SoftHSM2 token "stella" and, inside it, the log key
//     (ECDSA P-256, label log-rekor), the witness key (Ed25519, label
//     witness-ed25519) and the Rekor v2 log's note key (Ed25519, label
//     rekor-v2-ed25519, signer key rekor-v2 with purpose checkpoint and
//     note name = the v2 origin), generated in the token, never extractable;
//   - the v1 log's Ed25519 note key for its C2SP checkpoint;
//   - the three configurations, marshalled from the services' own Config
//     structs and loaded back with their own loaders before anything starts:
//     the logserver runs the v1 log, the Rekor v2 log (rekor_v2, tiled under
//     /api/v2/) and writes the client trust files (trust) into TrustDir at
//     every start;
//   - the witness registered with both logs (the witness trusts each log's
//     vkey, each log's tlog-policy names the witness), and the trust
//     directory operators hand to clients.
//
// Layout, one directory per service (a volume each under compose):
//
//	<signer>/    signer.yaml softhsm2.conf tokens/ secrets/{hsm-pin,hsm-so-pin}
//	<logserver>/ logserver.yaml witness-policy witness-policy-v2 log-key.pub.pem
//	             keys/log-note.pem state/ (highest published heads)
//	             secrets/{rekor-dsn,signer-token}
//	<witness>/   witness.yaml witness.db secrets/signer-token
//	<trust>/     log-key.pub.pem log-note.vkey witness.vkey witness-policy
//	             rekor-v2.vkey witness-policy-v2 (by the bootstrap);
//	             trusted_root.json signing_config.json rekor-v*.pub.pem
//	             (by the logserver at every start)
package bootstrap

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"gopkg.in/yaml.v3"

	"github.com/stellaops/tlog/internal/migrate"
	"github.com/stellaops/tlog/internal/service"
	lsconfig "github.com/stellaops/tlog/logserver/config"
	"github.com/stellaops/tlog/logserver/witnessing"
	"github.com/stellaops/tlog/signer/audit"
	signerclient "github.com/stellaops/tlog/signer/client"
	"github.com/stellaops/tlog/signer/note"
	"github.com/stellaops/tlog/signer/pkcs11"
	"github.com/stellaops/tlog/signer/server"
	sqlschema "github.com/stellaops/tlog/sql"
	wconfig "github.com/stellaops/tlog/witness/config"
)

// Names fixed by the bootstrap: the token, its key labels, the signer's key
// and tenant names, the databases and their accounts.
const (
	TokenLabel      = "stella"
	LogKeyLabel     = "log-rekor"
	WitnessKeyLabel = "witness-ed25519"
	LogKeyName      = "log-rekor" // the signer's name of the log key
	WitnessKeyName  = "witness"   // the signer's name of the witness key
	V2KeyLabel      = "rekor-v2-ed25519"
	V2KeyName       = "rekor-v2"   // the signer's name of the Rekor v2 log's note key
	TUFRootKey      = "tuf-root"   // label and signer name of the TUF repository's root key
	TUFOnlineKey    = "tuf-online" // label and signer name of its online key

	LogDatabase   = "rekor"
	LogAccount    = "logserver"
	AuditDatabase = "signer"
	AuditAccount  = "signer_audit"
)

// Plan is what the bootstrap needs to know about the installation.
type Plan struct {
	// LogserverDir, SignerDir and WitnessDir hold each service's
	// configuration, secrets and keys (created mode 0700). TrustDir receives
	// the public trust files for clients.
	LogserverDir, SignerDir, WitnessDir, TrustDir string

	// AdminDSN is a database account allowed to create databases, accounts
	// and grants (go-sql-driver form; the unix-socket administrator of
	// deployment/mariadb, or of the compose MariaDB over its shared socket).
	AdminDSN string
	// DBAddr is host:port at which the services reach the database.
	DBAddr string
	// AccountHost is the host part of the services' accounts: "127.0.0.1"
	// for `make run`, "%" on the compose network.
	AccountHost string

	// Hostname names the Rekor checkpoints ("<hostname> - <treeID>").
	Hostname string
	// Origin is the log's C2SP checkpoint origin and note key name.
	Origin string
	// WitnessName is the witness's cosigner name.
	WitnessName string
	// LogURL is the v1 log's base URL as clients reach it (trust.url: the
	// trusted root's and the signing config's v1 URL).
	LogURL string
	// V2URL is the Rekor v2 log's base URL as clients reach it
	// (rekor_v2.url). Its host name is the v2 log's checkpoint origin and
	// note key name: choose once, never change (see logserver/config).
	V2URL string

	// Listen addresses of the services, and how they reach one another.
	LogserverListen, LogserverDebugListen, SignerListen, WitnessListen string
	SignerURL                                                          string // the signer, as the logserver and the witness reach it
	WitnessURL                                                         string // the witness, as the logserver reaches it (tlog-policy)

	// PKCS11Module is the PKCS#11 library. Default SoftHSM2's; with another
	// module the token must already exist (SOFTHSM2_CONF is only written
	// for SoftHSM2).
	PKCS11Module string
	// TrillianSchemaFile is Trillian's MySQL schema; "" finds it as the
	// logserver does (internal/migrate).
	TrillianSchemaFile string
	// LogFormat is the services' log format, text or json.
	LogFormat string
	// DBWait bounds the wait for the database to accept connections.
	// Default 2 minutes.
	DBWait time.Duration
}

// Result is what the bootstrap made or found.
type Result struct {
	// Changed lists what this run created or rewrote; empty when the state
	// was complete already.
	Changed []string

	LogserverConfig, SignerConfig, WitnessConfig string // configuration files
	SoftHSMConf                                  string // SOFTHSM2_CONF for the signer ("" for another module)
	LogPublicKeyFile                             string // PEM of the log key, in TrustDir
	LogNoteVKey                                  string // the C2SP checkpoint's verifier key
	WitnessVKey                                  string // the witness's cosignature/v1 verifier key
	V2Origin                                     string // the Rekor v2 log's checkpoint origin
	V2NoteVKey                                   string // the Rekor v2 log's note verifier key
}

// Run brings the state described by p to completion (see the package
// documentation).
func Run(ctx context.Context, p Plan) (*Result, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	b := &run{p: p, r: &Result{}}
	for _, d := range []string{p.LogserverDir, p.SignerDir, p.WitnessDir, p.TrustDir,
		filepath.Join(p.LogserverDir, "secrets"), filepath.Join(p.LogserverDir, "keys"), filepath.Join(p.LogserverDir, "state"),
		filepath.Join(p.SignerDir, "secrets"), filepath.Join(p.WitnessDir, "secrets")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	steps := []struct {
		name string
		f    func(context.Context) error
	}{
		{"secrets", b.secrets}, {"database", b.database}, {"token", b.token},
		{"note key", b.noteKey}, {"configuration", b.configs}, {"trust", b.trust},
	}
	for _, s := range steps {
		if err := s.f(ctx); err != nil {
			return nil, fmt.Errorf("bootstrap %s: %w", s.name, err)
		}
	}
	return b.r, nil
}

func (p *Plan) check() error {
	var errs []error
	for name, v := range map[string]string{"LogserverDir": p.LogserverDir, "SignerDir": p.SignerDir,
		"WitnessDir": p.WitnessDir, "TrustDir": p.TrustDir, "AdminDSN": p.AdminDSN, "DBAddr": p.DBAddr,
		"AccountHost": p.AccountHost, "Hostname": p.Hostname, "Origin": p.Origin, "WitnessName": p.WitnessName,
		"LogserverListen": p.LogserverListen, "SignerListen": p.SignerListen, "WitnessListen": p.WitnessListen,
		"SignerURL": p.SignerURL, "WitnessURL": p.WitnessURL, "LogURL": p.LogURL, "V2URL": p.V2URL} {
		if v == "" {
			errs = append(errs, fmt.Errorf("bootstrap: %s is required", name))
		}
	}
	if p.V2URL != "" {
		if o := (&lsconfig.RekorV2{URL: p.V2URL}).Origin(); o == "" {
			errs = append(errs, fmt.Errorf("bootstrap: V2URL %q has no host name", p.V2URL))
		} else if o == p.Origin {
			errs = append(errs, fmt.Errorf("bootstrap: the v2 log's origin %q (the host of V2URL) is the v1 log's Origin", o))
		}
	}
	if strings.ContainsAny(p.AccountHost, "'\\`") {
		errs = append(errs, fmt.Errorf("bootstrap: account host %q: no quotes", p.AccountHost))
	}
	if p.PKCS11Module == "" {
		p.PKCS11Module = pkcs11.DefaultModule
	}
	if p.LogFormat == "" {
		p.LogFormat = "text"
	}
	if p.DBWait == 0 {
		p.DBWait = 2 * time.Minute
	}
	return errors.Join(errs...)
}

type run struct {
	p Plan
	r *Result

	hsmPIN, hsmSOPIN             string
	logDBPass, auditDBPass       string
	logserverToken, witnessToken string
	logPub                       []byte // PEM
	noteVKey                     string
}

func (b *run) changed(format string, a ...any) {
	b.r.Changed = append(b.r.Changed, fmt.Sprintf(format, a...))
}

func (b *run) secrets(context.Context) error {
	p := b.p
	for _, s := range []struct {
		v      *string
		path   string
		prefix string
	}{
		{&b.hsmPIN, filepath.Join(p.SignerDir, "secrets", "hsm-pin"), ""},
		{&b.hsmSOPIN, filepath.Join(p.SignerDir, "secrets", "hsm-so-pin"), ""},
		{&b.auditDBPass, filepath.Join(p.SignerDir, "secrets", "audit-db-password"), ""},
		{&b.logDBPass, filepath.Join(p.LogserverDir, "secrets", "db-password"), ""},
		{&b.logserverToken, filepath.Join(p.LogserverDir, "secrets", "signer-token"), "stsk_"},
		{&b.witnessToken, filepath.Join(p.WitnessDir, "secrets", "signer-token"), "stsk_"},
	} {
		v, made, err := secret(s.path, s.prefix)
		if err != nil {
			return err
		}
		if made {
			b.changed("secret %s", s.path)
		}
		*s.v = v
	}
	return nil
}

// secret returns the secret in path, creating it (32 random bytes, hex, or
// base64url after prefix) if it is missing.
func secret(path, prefix string) (string, bool, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		s := strings.TrimSpace(string(data))
		if s == "" {
			return "", false, fmt.Errorf("secret %s is empty", path)
		}
		return s, false, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", false, err
	}
	var buf [32]byte
	if _, err := rand.Read(buf[:]); err != nil {
		return "", false, err
	}
	s := hex.EncodeToString(buf[:])
	if prefix != "" {
		s = prefix + base64.RawURLEncoding.EncodeToString(buf[:])
	}
	return s, true, writeAtomic(path, []byte(s+"\n"), 0o600)
}

func (b *run) database(ctx context.Context) error {
	p := b.p
	db, err := sql.Open("mysql", p.AdminDSN)
	if err != nil {
		return err
	}
	defer db.Close()
	deadline := time.Now().Add(p.DBWait)
	for {
		err = db.PingContext(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("database not reachable after %v: %w", p.DBWait, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	for _, name := range []string{LogDatabase, AuditDatabase} {
		var n int
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name = ?", name).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			if _, err := db.ExecContext(ctx, "CREATE DATABASE `"+name+"` CHARACTER SET utf8mb4"); err != nil {
				return err
			}
			b.changed("database %s", name)
		}
	}
	// Privileges are written in the server's canonical order, as SHOW
	// GRANTS prints them (account compares).
	// Migrations run as the administrator. The logserver re-applies its own
	// at every start (idempotent), which is why its account may CREATE.
	logDB, err := b.adminDB(LogDatabase)
	if err != nil {
		return err
	}
	defer logDB.Close()
	schema, err := migrate.TrillianSchemaFile(p.TrillianSchemaFile)
	if err != nil {
		return err
	}
	if err := b.countingMigrations(ctx, logDB, LogDatabase, func() error {
		if err := migrate.ApplyTrillian(ctx, logDB, schema); err != nil {
			return err
		}
		return migrate.Apply(ctx, logDB, sqlschema.FS, "logserver", "logserver")
	}); err != nil {
		return err
	}
	auditDB, err := b.adminDB(AuditDatabase)
	if err != nil {
		return err
	}
	defer auditDB.Close()
	if err := b.countingMigrations(ctx, auditDB, AuditDatabase, func() error { return audit.Migrate(ctx, auditDB) }); err != nil {
		return err
	}
	for _, a := range []struct {
		user, pass string
		grants     []string
	}{
		{LogAccount, b.logDBPass, []string{"SELECT, INSERT, UPDATE, DELETE, CREATE, INDEX, ALTER ON `" + LogDatabase + "`.*"}},
		{AuditAccount, b.auditDBPass, []string{"SELECT, INSERT ON `" + AuditDatabase + "`.`signer_audit`"}},
	} {
		if err := b.account(ctx, db, a.user, a.pass, a.grants); err != nil {
			return err
		}
	}
	return nil
}

func (b *run) adminDB(name string) (*sql.DB, error) {
	c, err := mysql.ParseDSN(b.p.AdminDSN)
	if err != nil {
		return nil, fmt.Errorf("admin DSN: %w", err)
	}
	c.DBName = name
	return sql.Open("mysql", c.FormatDSN())
}

// countingMigrations runs apply and reports whether it recorded new
// migrations.
func (b *run) countingMigrations(ctx context.Context, db *sql.DB, name string, apply func() error) error {
	count := func() int {
		var n int
		_ = db.QueryRowContext(ctx, "SELECT COUNT(*) FROM schema_migrations").Scan(&n)
		return n
	}
	before := count()
	if err := apply(); err != nil {
		return err
	}
	if after := count(); after != before {
		b.changed("migrations %s: %d applied", name, after-before)
	}
	return nil
}

// account makes user@AccountHost with password pass and exactly grants.
// An existing account gets its password reset to pass (the secret file is
// the truth) and any privilege beyond grants revoked.
func (b *run) account(ctx context.Context, db *sql.DB, user, pass string, grants []string) error {
	if strings.Trim(pass, "0123456789abcdef") != "" {
		return fmt.Errorf("password of %s is not the hex the bootstrap generates", user)
	}
	id := "'" + user + "'@'" + b.p.AccountHost + "'"
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM mysql.user WHERE user = ? AND host = ?", user, b.p.AccountHost).Scan(&n); err != nil {
		return err
	}
	stmts := []string{"ALTER USER " + id + " IDENTIFIED BY '" + pass + "'"}
	if n == 0 {
		stmts = []string{"CREATE USER " + id + " IDENTIFIED BY '" + pass + "'"}
		b.changed("database account %s", id)
	} else {
		want := map[string]bool{"GRANT USAGE ON *.* TO " + strings.ReplaceAll(id, "'", "`"): true}
		for _, g := range grants {
			want["GRANT "+g+" TO "+strings.ReplaceAll(id, "'", "`")] = true
		}
		have, err := showGrants(ctx, db, id)
		if err != nil {
			return err
		}
		for _, g := range have {
			if !want[g] {
				stmts = append(stmts, "REVOKE ALL PRIVILEGES, GRANT OPTION FROM "+id)
				b.changed("database account %s: privileges reset (had %q)", id, g)
				break
			}
		}
	}
	for _, g := range grants {
		stmts = append(stmts, "GRANT "+g+" TO "+id)
	}
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", strings.Replace(s, pass, "…", 1), err)
		}
	}
	return nil
}

// showGrants lists the account's grants, without password clauses.
func showGrants(ctx context.Context, db *sql.DB, id string) ([]string, error) {
	rows, err := db.QueryContext(ctx, "SHOW GRANTS FOR "+id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var g string
		if err := rows.Scan(&g); err != nil {
			return nil, err
		}
		g, _, _ = strings.Cut(g, " IDENTIFIED BY")
		out = append(out, g)
	}
	return out, rows.Err()
}

func (b *run) token(ctx context.Context) error {
	p := b.p
	if p.PKCS11Module == pkcs11.DefaultModule {
		conf := filepath.Join(p.SignerDir, "softhsm2.conf")
		tokens := filepath.Join(p.SignerDir, "tokens")
		if err := os.MkdirAll(tokens, 0o700); err != nil {
			return err
		}
		text := fmt.Sprintf("# Written by the bootstrap: the signer's SoftHSM2 token store.\ndirectories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
		if err := b.write(conf, []byte(text), 0o600); err != nil {
			return err
		}
		// SoftHSM2 reads it when the module is first initialised (below).
		if err := os.Setenv("SOFTHSM2_CONF", conf); err != nil {
			return err
		}
		b.r.SoftHSMConf = conf
	}
	cfg := pkcs11.Config{Module: p.PKCS11Module, TokenLabel: TokenLabel, PIN: b.hsmPIN, Sessions: 1}
	tok, err := pkcs11.Open(ctx, cfg)
	if errors.Is(err, pkcs11.ErrTokenNotFound) && p.PKCS11Module == pkcs11.DefaultModule {
		if err := pkcs11.InitToken(p.PKCS11Module, TokenLabel, b.hsmSOPIN, b.hsmPIN); err != nil {
			return err
		}
		b.changed("token %s", TokenLabel)
		tok, err = pkcs11.Open(ctx, cfg)
	}
	if err != nil {
		return err
	}
	defer tok.Close()
	key := func(label string, kt pkcs11.KeyType) (*pkcs11.Signer, error) {
		s, err := tok.Signer(ctx, label)
		if errors.Is(err, pkcs11.ErrKeyNotFound) {
			if s, err = tok.Generate(ctx, label, kt); err == nil {
				b.changed("key %s (%s) in token %s", label, kt, TokenLabel)
			}
		}
		if err == nil && s.KeyType() != kt {
			err = fmt.Errorf("key %s is %s, want %s", label, s.KeyType(), kt)
		}
		return s, err
	}
	logKey, err := key(LogKeyLabel, pkcs11.ECDSAP256)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKIXPublicKey(logKey.Public())
	if err != nil {
		return err
	}
	b.logPub = pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	witKey, err := key(WitnessKeyLabel, pkcs11.Ed25519)
	if err != nil {
		return err
	}
	if b.r.WitnessVKey, err = note.CosignerVerifierKey(p.WitnessName, witKey.Public()); err != nil {
		return err
	}
	v2Key, err := key(V2KeyLabel, pkcs11.Ed25519)
	if err != nil {
		return err
	}
	for _, l := range []string{TUFRootKey, TUFOnlineKey} {
		if _, err := key(l, pkcs11.ECDSAP256); err != nil {
			return err
		}
	}
	b.r.V2Origin = (&lsconfig.RekorV2{URL: p.V2URL}).Origin()
	b.r.V2NoteVKey, err = note.VerifierKey(b.r.V2Origin, v2Key.Public())
	return err
}

func (b *run) noteKey(context.Context) error {
	path := filepath.Join(b.p.LogserverDir, "keys", "log-note.pem")
	_, statErr := os.Stat(path)
	k, err := witnessing.LoadOrCreateKey(path, true)
	if err != nil {
		return err
	}
	if errors.Is(statErr, os.ErrNotExist) {
		b.changed("log note key %s", path)
	}
	s, err := witnessing.NewCheckpointSigner(b.p.Origin, k)
	if err != nil {
		return err
	}
	b.noteVKey = s.VerifierKey()
	b.r.LogNoteVKey = b.noteVKey
	return nil
}

// policy is a log's c2sp.org/tlog-policy: the log with verifier key vkey,
// its one witness, and a quorum of that witness.
func (b *run) policy(vkey string) []byte {
	return fmt.Appendf(nil, "log %s\nwitness w1 %s %s\nquorum w1\n", vkey, b.r.WitnessVKey, b.p.WitnessURL)
}

func (b *run) configs(context.Context) error {
	p := b.p
	tokenHash := func(tok string) string { s := sha256.Sum256([]byte(tok)); return hex.EncodeToString(s[:]) }

	auditDSN := mysql.NewConfig()
	auditDSN.User, auditDSN.Passwd, auditDSN.Net, auditDSN.Addr, auditDSN.DBName = AuditAccount, b.auditDBPass, "tcp", p.DBAddr, AuditDatabase
	auditDSN.ParseTime = true
	// The audit DSN in a secret file, as the logserver's.
	auditDSNFile := filepath.Join(p.SignerDir, "secrets", "audit-dsn")
	if err := b.write(auditDSNFile, []byte(auditDSN.FormatDSN()+"\n"), 0o600); err != nil {
		return err
	}
	sc := server.Config{
		Listen:  p.SignerListen,
		Token:   &pkcs11.Config{Module: p.PKCS11Module, TokenLabel: TokenLabel, PINFile: filepath.Join(p.SignerDir, "secrets", "hsm-pin"), Sessions: 4},
		Audit:   server.AuditConfig{DSNFile: auditDSNFile},
		Logging: service.Logging{Format: p.LogFormat},
		Keys: []server.KeyConfig{
			{Name: LogKeyName, Purposes: []string{server.PurposeDigests}, Versions: []server.KeyVersionConfig{{Version: 1, Label: LogKeyLabel}}},
			{Name: WitnessKeyName, Purposes: []string{server.PurposeCosignature}, NoteName: p.WitnessName,
				Versions: []server.KeyVersionConfig{{Version: 1, Label: WitnessKeyLabel}}},
			{Name: V2KeyName, Purposes: []string{server.PurposeCheckpoint}, NoteName: b.r.V2Origin,
				Versions: []server.KeyVersionConfig{{Version: 1, Label: V2KeyLabel}}},
			{Name: TUFRootKey, Purposes: []string{server.PurposeDigests}, Versions: []server.KeyVersionConfig{{Version: 1, Label: TUFRootKey}}},
			{Name: TUFOnlineKey, Purposes: []string{server.PurposeDigests}, Versions: []server.KeyVersionConfig{{Version: 1, Label: TUFOnlineKey}}},
		},
		Tenants: []server.TenantConfig{
			{Name: "logserver", Tokens: []server.TokenConfig{{ID: "logserver", SHA256: tokenHash(b.logserverToken), Scopes: []string{server.ScopeDigests, server.ScopeCheckpoint}}},
				Keys: []string{LogKeyName, V2KeyName, TUFRootKey, TUFOnlineKey}, Quota: server.QuotaConfig{RPS: 2000, Burst: 4000, Concurrency: 16, MaxPayloadBytes: 8 << 20}},
			{Name: "witness", Tokens: []server.TokenConfig{{ID: "witness", SHA256: tokenHash(b.witnessToken), Scopes: []string{server.ScopeCosignature}}},
				// Sized for the witness's cosigning of both logs' checkpoints
				// (its signer.max_in_flight is 32).
				Keys: []string{WitnessKeyName}, Quota: server.QuotaConfig{RPS: 3000, Burst: 6000, Concurrency: 32}},
		},
	}
	b.r.SignerConfig = filepath.Join(p.SignerDir, "signer.yaml")
	if err := b.writeConfig(b.r.SignerConfig, "signer/server/config.go", &sc, func(path string) error {
		_, err := server.LoadConfig(path)
		return err
	}); err != nil {
		return err
	}

	logDSN := mysql.NewConfig()
	logDSN.User, logDSN.Passwd, logDSN.Net, logDSN.Addr, logDSN.DBName = LogAccount, b.logDBPass, "tcp", p.DBAddr, LogDatabase
	dsnFile := filepath.Join(p.LogserverDir, "secrets", "rekor-dsn")
	if err := b.write(dsnFile, []byte(logDSN.FormatDSN()+"\n"), 0o600); err != nil {
		return err
	}
	policyFile := filepath.Join(p.LogserverDir, "witness-policy")
	if err := b.write(policyFile, b.policy(b.noteVKey), 0o644); err != nil {
		return err
	}
	policyV2File := filepath.Join(p.LogserverDir, "witness-policy-v2")
	if err := b.write(policyV2File, b.policy(b.r.V2NoteVKey), 0o644); err != nil {
		return err
	}
	signerKey := func(key string) *signerclient.Config {
		return &signerclient.Config{URL: p.SignerURL, TokenFile: filepath.Join(p.LogserverDir, "secrets", "signer-token"), Key: key}
	}
	lc := lsconfig.Config{
		Listen: p.LogserverListen, DebugListen: p.LogserverDebugListen, Hostname: p.Hostname,
		Database: lsconfig.Database{DSNFile: dsnFile},
		Trillian: lsconfig.Trillian{SchemaFile: p.TrillianSchemaFile},
		Key: lsconfig.Key{
			Signer:        signerKey(LogKeyName),
			PublicKeyFile: filepath.Join(p.LogserverDir, "log-key.pub.pem"),
		},
		// The highest published heads, kept apart from the database: the
		// log refuses to sign a second history after a restore.
		Sequencer: lsconfig.Sequencer{Interval: 20 * time.Millisecond, StateDir: filepath.Join(p.LogserverDir, "state")},
		Witnessing: lsconfig.Witnessing{Origin: p.Origin, KeyFile: filepath.Join(p.LogserverDir, "keys", "log-note.pem"),
			PolicyFile: policyFile, RetryMin: time.Second, RetryMax: 30 * time.Second},
		// The Rekor v2 log, its note key in the token, witnessed by the same
		// witness; tiled under the default /api/v2/.
		RekorV2: &lsconfig.RekorV2{URL: p.V2URL, Signer: signerKey(V2KeyName), PolicyFile: policyV2File},
		// trusted_root.json, signing_config.json and the logs' PEM keys,
		// regenerated into the trust directory at every start.
		// and the appliance's TUF repository serving them (root.json into
		// the trust directory too), its keys in the token.
		Trust: &lsconfig.Trust{URL: p.LogURL, Dir: p.TrustDir, TUF: &lsconfig.TUF{
			Dir:     filepath.Join(p.LogserverDir, "tuf"),
			RootKey: lsconfig.Key{Signer: signerKey(TUFRootKey)}, OnlineKey: lsconfig.Key{Signer: signerKey(TUFOnlineKey)}}},
		// Submission budgets on, with limits far above what the local
		// appliance and its tests write (deployment/README.md: Budgets
		// gives the seed's production values).
		Budgets: lsconfig.Budgets{Enabled: true, Default: lsconfig.BudgetLimits{HourlyLimit: 1000000, BurstLimit: 6000000, EdgeBundleDailyLimit: 100000}},
		Logging: service.Logging{Format: p.LogFormat},
	}
	b.r.LogserverConfig = filepath.Join(p.LogserverDir, "logserver.yaml")
	if err := b.writeConfig(b.r.LogserverConfig, "logserver/config/config.go", &lc, func(path string) error {
		_, err := lsconfig.Load(path)
		return err
	}); err != nil {
		return err
	}

	wc := wconfig.Config{
		Name: p.WitnessName,
		Signer: &wconfig.SignerKey{Config: signerclient.Config{URL: p.SignerURL, TokenFile: filepath.Join(p.WitnessDir, "secrets", "signer-token"), Key: WitnessKeyName},
			MaxInFlight: 32},
		DBFile:  filepath.Join(p.WitnessDir, "witness.db"),
		Listen:  p.WitnessListen,
		Logs:    []wconfig.Log{{Origin: p.Origin, VKeys: []string{b.noteVKey}}, {Origin: b.r.V2Origin, VKeys: []string{b.r.V2NoteVKey}}},
		Logging: service.Logging{Format: p.LogFormat},
	}
	b.r.WitnessConfig = filepath.Join(p.WitnessDir, "witness.yaml")
	return b.writeConfig(b.r.WitnessConfig, "witness/config/config.go", &wc, func(path string) error {
		_, err := wconfig.Load(path)
		return err
	})
}

// writeConfig marshals cfg (a service's Config struct) to YAML without
// zero fields (an absent field decodes to the same zero, so nothing
// changes meaning), writes it if its content changed, and loads it back
// with the service's own loader.
func (b *run) writeConfig(path, doc string, cfg any, load func(string) error) error {
	var n yaml.Node
	if err := n.Encode(cfg); err != nil {
		return err
	}
	prune(&n)
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# Written by the Stella bootstrap (deployment/bootstrap); every field is\n# documented in %s. Edits are overwritten at the next start.\n", doc)
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return err
	}
	if err := b.write(path, buf.Bytes(), 0o600); err != nil {
		return err
	}
	if err := load(path); err != nil {
		return fmt.Errorf("the generated %s does not load: %w", path, err)
	}
	return nil
}

// prune removes zero scalars, nulls and empty collections from mapping
// nodes, recursively.
func prune(n *yaml.Node) bool {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			prune(c)
		}
		return false
	case yaml.MappingNode:
		var keep []*yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if !prune(n.Content[i+1]) {
				keep = append(keep, n.Content[i], n.Content[i+1])
			}
		}
		n.Content = keep
		return len(keep) == 0
	case yaml.SequenceNode:
		for _, c := range n.Content {
			prune(c)
		}
		return len(n.Content) == 0
	case yaml.ScalarNode:
		switch {
		case n.Tag == "!!null", n.Tag == "!!str" && n.Value == "", n.Tag == "!!bool" && n.Value == "false",
			(n.Tag == "!!int" || n.Tag == "!!float") && (n.Value == "0" || n.Value == "0.0"),
			n.Value == "0s", n.Tag == "!!timestamp" && strings.HasPrefix(n.Value, "0001-01-01T00:00:00"):
			return true
		}
	}
	return false
}

func (b *run) trust(context.Context) error {
	p := b.p
	b.r.LogPublicKeyFile = filepath.Join(p.TrustDir, "log-key.pub.pem")
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"log-key.pub.pem", b.logPub},
		{"log-note.vkey", []byte(b.noteVKey + "\n")},
		{"witness.vkey", []byte(b.r.WitnessVKey + "\n")},
		{"witness-policy", b.policy(b.noteVKey)},
		{"rekor-v2.vkey", []byte(b.r.V2NoteVKey + "\n")},
		{"witness-policy-v2", b.policy(b.r.V2NoteVKey)},
	} {
		if err := b.write(filepath.Join(p.TrustDir, f.name), f.data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// write writes data to path unless it holds exactly that already.
func (b *run) write(path string, data []byte, mode os.FileMode) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	b.changed("file %s", path)
	return writeAtomic(path, data, mode)
}

// writeAtomic writes a temporary file, syncs it, renames it over path and
// syncs the directory: a crash leaves the old file or the new one.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
