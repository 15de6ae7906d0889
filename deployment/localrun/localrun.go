// Package localrun brings the local appliance up in the foreground for
// `make run`: a private MariaDB with its data under the run directory, then
// each service as a child process on loopback. Once every service is ready it
// writes <dir>/env, shell export lines other tools rely on:
//
//	LOG_URL         base URL of the Rekor API
//	LOG_PUBLIC_KEY  path of the log's PEM public key
//	SIGNER_URL      base URL of the signer (keys in a SoftHSM2 token)
//	LOG_NOTE_VKEY   the C2SP checkpoint's verifier key (GET $LOG_URL/checkpoint)
//	WITNESS_URL     base URL of the witness (POST /add-checkpoint)
//	WITNESS_VKEY    the witness's cosignature/v1 verifier key
//	TRUST_DIR       client trust files: log-key.pub.pem, log-note.vkey,
//	                witness.vkey, witness-policy (c2sp.org/tlog-policy),
//	                trusted_root.json, signing_config.json, rekor-v*.pub.pem
//	LOG_TILES_URL   the v1 log as C2SP tlog-tiles (checkpoint, tile/…)
//	LOG_V2_URL      base URL of the Rekor v2 log (POST /api/v2/log/entries;
//	                its tiles under $LOG_V2_URL/api/v2/)
//	TRUSTED_ROOT    sigstore trusted_root.json naming both logs
//	SIGNING_CONFIG  sigstore signing_config.json (v0.2) naming both logs
//	TUF_URL         the appliance's TUF repository serving those two files
//	                (its root.json is in TRUST_DIR)
//
// State (database, keys, chosen ports) persists in the run directory, so a
// second run serves the same tree with the same key. Stop with SIGINT or
// SIGTERM: services stop in reverse order and env is removed.
package localrun

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/stellaops/tlog/deployment/bootstrap"
	"github.com/stellaops/tlog/deployment/mariadb"
	"github.com/stellaops/tlog/logserver/witnessing"
	signerclient "github.com/stellaops/tlog/signer/client"
)

// Options say where state and binaries live.
type Options struct {
	Dir    string // run directory (.run)
	BinDir string // directory holding the built service binaries
	Out    io.Writer
}

// ports are remembered between runs so URLs stay stable when possible.
type ports struct {
	MariaDB   int `json:"mariadb"`
	Logserver int `json:"logserver"`
	Debug     int `json:"debug"` // logserver pprof
	Witness   int `json:"witness"`
	Signer    int `json:"signer"`
}

// Run starts everything and blocks until ctx ends or a service dies.
func Run(ctx context.Context, o Options) error {
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	envFile := filepath.Join(dir, "env")
	_ = os.Remove(envFile) // never advertise services that are not up
	p, err := loadPorts(filepath.Join(dir, "ports.json"))
	if err != nil {
		return err
	}

	db, err := mariadb.Start(ctx, filepath.Join(dir, "mariadb"), mariadb.Options{
		Port: p.MariaDB, Durable: true, BufferPoolMB: 512})
	if err != nil {
		return err
	}
	defer db.Stop()
	p.MariaDB = db.Port
	// One account per service with only what it needs (deployment/bootstrap,
	// as compose's first start makes them); the administrator is reachable
	// only over the server's private socket.
	logPass := secret(filepath.Join(dir, "secrets", "rekor-db-password"))
	auditPass := secret(filepath.Join(dir, "secrets", "signer-db-password"))
	if _, err := bootstrap.Databases(ctx, db.AdminDSN(""), "127.0.0.1", logPass, auditPass); err != nil {
		return err
	}
	if err := dropLegacyAccounts(ctx, db); err != nil {
		return err
	}
	dsn := db.DSN(bootstrap.LogAccount, logPass, bootstrap.LogDatabase)
	if err := writeFile(filepath.Join(dir, "secrets", "rekor-dsn"), []byte(dsn), 0o600); err != nil {
		return err
	}

	keys := filepath.Join(dir, "keys")
	trust := filepath.Join(dir, "trust")

	// The signer holds the log key and the witness key in a SoftHSM2 token
	// under dir/softhsm; the logserver and the witness hold no private key
	// of their own but the log's C2SP note key (see witnessing).
	sgn, err := startSigner(ctx, dir, o.BinDir, db.DSN(bootstrap.AuditAccount, auditPass, bootstrap.AuditDatabase), p.Signer)
	if err != nil {
		return err
	}
	defer sgn.child.stop()
	signerURL, lsToken, sg := sgn.url, sgn.logserverToken, sgn.child
	lsAddr := "127.0.0.1:" + strconv.Itoa(p.Logserver)

	// Witnessing: the log's note key and the witness key are made once; the
	// witness trusts the log's vkey, the log's policy names the witness.
	const origin = "stella.local/log"
	if err := os.MkdirAll(keys, 0o700); err != nil {
		return err
	}
	noteKey, err := witnessing.LoadOrCreateKey(filepath.Join(keys, "log-note.pem"), true)
	if err != nil {
		return err
	}
	noteSigner, err := witnessing.NewCheckpointSigner(origin, noteKey)
	if err != nil {
		return err
	}
	// The Rekor v2 log: origin = the host name of its URL (sigstore-go
	// checks it against the trusted root's baseUrl), its own note key in
	// the token (signer key rekor-v2).
	v2URL, v2Origin := "http://"+lsAddr, "127.0.0.1"
	witnessURL := "http://127.0.0.1:" + strconv.Itoa(p.Witness)
	files := map[string]string{
		filepath.Join(trust, "rekor-v2.vkey"): sgn.v2VKey + "\n",
		filepath.Join(trust, "witness-policy-v2"): fmt.Sprintf("log %s\nwitness w1 %s %s\nquorum w1\n",
			sgn.v2VKey, sgn.witnessVKey, witnessURL),
		filepath.Join(trust, "log-note.vkey"): noteSigner.VerifierKey() + "\n",
		filepath.Join(trust, "witness.vkey"):  sgn.witnessVKey + "\n",
		filepath.Join(trust, "witness-policy"): fmt.Sprintf("log %s\nwitness w1 %s %s\nquorum w1\n",
			noteSigner.VerifierKey(), sgn.witnessVKey, witnessURL),
		filepath.Join(dir, "witness.yaml"): fmt.Sprintf(`# Written by make run; see witness/config for every field.
name: stella.local/witness
signer:
  url: %q
  token_file: %q
  key: witness
  max_in_flight: 32 # the signer's witness tenant allows concurrency 32
db_file: %q
listen: "127.0.0.1:%d"
log_format: text
logs:
  - origin: %q
    vkeys: [%q]
  - origin: %q
    vkeys: [%q]
`, signerURL, sgn.witnessToken, filepath.Join(dir, "witness", "witness.db"), p.Witness, origin, noteSigner.VerifierKey(),
			v2Origin, sgn.v2VKey),
	}
	for path, content := range files {
		if err := writeFile(path, []byte(content), 0o644); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "witness"), 0o700); err != nil {
		return err
	}
	wit, err := startChild(filepath.Join(o.BinDir, "witness"), filepath.Join(dir, "witness.log"), nil, "serve", "-c", filepath.Join(dir, "witness.yaml"))
	if err != nil {
		return err
	}
	defer wit.stop()
	if err := waitReady(ctx, witnessURL+"/readyz", wit); err != nil {
		return fmt.Errorf("witness: %w (see %s)", err, filepath.Join(dir, "witness.log"))
	}
	cfg := fmt.Sprintf(`# Written by make run; see logserver/config for every field.
listen: %q
debug_listen: "127.0.0.1:%d"
hostname: "stella.local"
database:
  dsn_file: %q
key:
  signer:
    url: %q
    token_file: %q
    key: log-rekor
  public_key_file: %q
sequencer:
  interval: 20ms
  state_dir: %q
witnessing:
  origin: %q
  key_file: %q
  policy_file: %q
  retry_min: 1s
  retry_max: 30s
rekor_v2:
  url: %q
  signer:
    url: %q
    token_file: %q
    key: rekor-v2
  policy_file: %q
trust:
  url: %q
  dir: %q
  tuf:
    dir: %q
    root_key:
      signer: {url: %q, token_file: %q, key: tuf-root}
    online_key:
      signer: {url: %q, token_file: %q, key: tuf-online}
`, lsAddr, p.Debug, filepath.Join(dir, "secrets", "rekor-dsn"), signerURL, lsToken, filepath.Join(keys, "log-key.pub.pem"),
		filepath.Join(dir, "state"), origin, filepath.Join(keys, "log-note.pem"), filepath.Join(trust, "witness-policy"),
		v2URL, signerURL, lsToken, filepath.Join(trust, "witness-policy-v2"), "http://"+lsAddr, trust,
		filepath.Join(dir, "tuf"), signerURL, lsToken, signerURL, lsToken)
	cfgPath := filepath.Join(dir, "logserver.yaml")
	if err := writeFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	if err := savePorts(filepath.Join(dir, "ports.json"), p); err != nil {
		return err
	}

	ls, err := startChild(filepath.Join(o.BinDir, "logserver"), filepath.Join(dir, "logserver.log"), nil, "-config", cfgPath)
	if err != nil {
		return err
	}
	defer ls.stop()
	logURL := "http://" + lsAddr
	if err := waitReady(ctx, logURL+"/readyz", ls); err != nil {
		return fmt.Errorf("logserver: %w (see %s)", err, filepath.Join(dir, "logserver.log"))
	}

	pubKey := filepath.Join(keys, "log-key.pub.pem")
	if err := copyFile(pubKey, filepath.Join(trust, "log-key.pub.pem")); err != nil {
		return err
	}
	env := exportLine("LOG_URL", logURL) + exportLine("LOG_PUBLIC_KEY", pubKey) +
		exportLine("SIGNER_URL", signerURL) +
		exportLine("LOG_NOTE_VKEY", noteSigner.VerifierKey()) +
		exportLine("WITNESS_URL", witnessURL) + exportLine("WITNESS_VKEY", sgn.witnessVKey) +
		exportLine("TRUST_DIR", trust) +
		exportLine("LOG_TILES_URL", logURL+"/") + exportLine("LOG_V2_URL", v2URL) +
		exportLine("TRUSTED_ROOT", filepath.Join(trust, "trusted_root.json")) +
		exportLine("SIGNING_CONFIG", filepath.Join(trust, "signing_config.json")) +
		exportLine("TUF_URL", "http://"+lsAddr+"/tuf")
	if err := writeFile(envFile, []byte(env), 0o644); err != nil {
		return err
	}
	defer os.Remove(envFile)
	fmt.Fprintf(o.Out, `
Stella appliance is up.
  Rekor API (LOG_URL):          %s
  log public key (LOG_PUBLIC_KEY): %s
  health / metrics:             %s/readyz  %s/metrics
  pprof:                        http://127.0.0.1:%d/debug/pprof/
  C2SP checkpoint (witnessed):  %s/checkpoint
  Rekor v2 (LOG_V2_URL):        %s (tiles: %s/api/v2/)
  witness (WITNESS_URL):        %s
  signer (SIGNER_URL):          %s
  trust files (TRUST_DIR):      %s
  TUF repository (TUF_URL):     http://%s/tuf (cosign initialize --mirror $TUF_URL --root $TRUST_DIR/root.json)
  MariaDB:                      127.0.0.1:%d (data in %s)
  logs:                         %s
Load the variables with:  . %s
Press Ctrl-C to stop.
`, logURL, filepath.Join(keys, "log-key.pub.pem"), logURL, logURL, p.Debug, logURL, v2URL, v2URL, witnessURL, signerURL, trust, lsAddr, db.Port, filepath.Join(dir, "mariadb"),
		filepath.Join(dir, "*.log"), envFile)

	select {
	case <-ctx.Done():
		fmt.Fprintln(o.Out, "stopping...")
		return nil
	case err := <-ls.exited:
		return fmt.Errorf("logserver exited: %v (see %s)", err, filepath.Join(dir, "logserver.log"))
	case err := <-wit.exited:
		return fmt.Errorf("witness exited: %v (see %s)", err, filepath.Join(dir, "witness.log"))
	case err := <-sg.exited:
		return fmt.Errorf("signer exited: %v (see %s)", err, filepath.Join(dir, "signer.log"))
	}
}

// signerRun is the started signer and what its callers need.
type signerRun struct {
	url            string
	child          *child
	logserverToken string // file holding the logserver's bearer token
	witnessToken   string // file holding the witness's bearer token
	witnessVKey    string // the witness's cosignature/v1 vkey
	v2VKey         string // the Rekor v2 log's note vkey (key in the token)
}

// startSigner initialises the SoftHSM2 token and the keys on first run,
// writes the signer's configuration (the logserver and the witness as
// tenants with generated bearer tokens) and starts it.
func startSigner(ctx context.Context, dir, binDir, auditDSN string, port int) (*signerRun, error) {
	hsm := filepath.Join(dir, "softhsm")
	secrets := filepath.Join(dir, "secrets")
	conf := filepath.Join(hsm, "softhsm2.conf")
	pinFile, soPinFile := filepath.Join(secrets, "hsm-pin"), filepath.Join(secrets, "hsm-so-pin")
	secret(pinFile)
	secret(soPinFile)
	signer := filepath.Join(binDir, "signer")
	if err := mariadb.EnsurePackages(ctx, map[string]string{"softhsm2-util": "softhsm2"}); err != nil {
		return nil, err
	}
	tool := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, signer, args...)
		cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+conf)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("signer %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out), nil
	}
	if _, err := os.Stat(filepath.Join(hsm, "tokens")); errors.Is(err, os.ErrNotExist) {
		if _, err := tool("keys", "init-token", "-softhsm-conf", conf, "-token-dir", filepath.Join(hsm, "tokens"),
			"-label", "stella", "-so-pin-file", soPinFile, "-pin-file", pinFile); err != nil {
			return nil, err
		}
	}
	list, err := tool("keys", "list", "-token", "stella", "-pin-file", pinFile)
	if err != nil {
		return nil, err
	}
	// Generated inside the token, non-extractable, once: the public keys
	// never change across runs.
	for label, typ := range map[string]string{"log-rekor": "ecdsa-p256", "witness-ed25519": "ed25519", "rekor-v2-ed25519": "ed25519",
		"tuf-root": "ecdsa-p256", "tuf-online": "ecdsa-p256"} {
		if !strings.Contains(list, label) {
			if _, err := tool("keys", "generate", "-token", "stella", "-pin-file", pinFile, "-label", label, "-type", typ); err != nil {
				return nil, err
			}
		}
	}
	tokenHash := func(name string) string {
		sum := sha256.Sum256([]byte(secret(filepath.Join(secrets, name))))
		return hex.EncodeToString(sum[:])
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cfg := fmt.Sprintf(`# Written by make run; see signer/server/config.go for every field.
listen: %q
token:
  token_label: stella
  pin_file: %q
  sessions: 4
audit:
  dsn: %q
keys:
  - name: log-rekor
    purposes: [digests]
    versions:
      - {version: 1, label: log-rekor}
  - name: witness
    purposes: [cosignature]
    note_name: stella.local/witness
    versions:
      - {version: 1, label: witness-ed25519}
  - name: rekor-v2
    purposes: [checkpoint]
    note_name: "127.0.0.1"
    versions:
      - {version: 1, label: rekor-v2-ed25519}
  - name: tuf-root
    purposes: [digests]
    versions:
      - {version: 1, label: tuf-root}
  - name: tuf-online
    purposes: [digests]
    versions:
      - {version: 1, label: tuf-online}
tenants:
  - name: logserver
    tokens:
      - {id: logserver, sha256: %s, scopes: [sign:digests, sign:checkpoint]}
    keys: [log-rekor, rekor-v2, tuf-root, tuf-online]
    quota: {rps: 2000, burst: 4000, concurrency: 16, max_payload_bytes: 8388608}
  - name: witness
    tokens:
      - {id: witness, sha256: %s, scopes: [sign:cosignature]}
    keys: [witness]
    quota: {rps: 3000, burst: 6000, concurrency: 32}
`, addr, pinFile, auditDSN, tokenHash("logserver-signer-token"), tokenHash("witness-signer-token"))
	cfgPath := filepath.Join(dir, "signer.yaml")
	if err := writeFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	c, err := startChild(signer, filepath.Join(dir, "signer.log"), []string{"SOFTHSM2_CONF=" + conf}, "serve", "-config", cfgPath)
	if err != nil {
		return nil, err
	}
	r := &signerRun{url: "http://" + addr, child: c,
		logserverToken: filepath.Join(secrets, "logserver-signer-token"),
		witnessToken:   filepath.Join(secrets, "witness-signer-token")}
	if err := waitReady(ctx, r.url+"/readyz", c); err != nil {
		c.stop()
		return nil, fmt.Errorf("signer: %w (see %s)", err, filepath.Join(dir, "signer.log"))
	}
	ks, err := signerclient.New(r.url, "", nil).Keys(ctx)
	if err != nil {
		c.stop()
		return nil, err
	}
	for _, k := range ks.Keys {
		for _, v := range k.Versions {
			if k.Name == "witness" && v.State == "active" {
				r.witnessVKey = v.CosignatureVerifierKey
			}
			if k.Name == "rekor-v2" && v.State == "active" {
				r.v2VKey = v.NoteVerifierKey
			}
		}
	}
	if r.witnessVKey == "" || r.v2VKey == "" {
		c.stop()
		return nil, fmt.Errorf("signer publishes no active witness or rekor-v2 key")
	}
	return r, nil
}

func copyFile(from, to string) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return writeFile(to, data, 0o644)
}

type child struct {
	cmd    *exec.Cmd
	exited chan error
}

func startChild(bin, logPath string, env []string, args ...string) (*child, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	c := &child{cmd: cmd, exited: make(chan error, 1)}
	go func() { c.exited <- cmd.Wait(); logf.Close() }()
	return c, nil
}

// stop sends SIGTERM and waits up to 30 s before killing.
func (c *child) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-c.exited
	}
}

func waitReady(ctx context.Context, url string, c *child) error {
	deadline := time.Now().Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-c.exited:
			return fmt.Errorf("exited before ready: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	return errors.New("not ready after 3 minutes")
}

func loadPorts(path string) (ports, error) {
	var p ports
	data, err := os.ReadFile(path)
	if err == nil {
		if err := json.Unmarshal(data, &p); err != nil {
			return p, fmt.Errorf("%s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return p, err
	}
	// Keep a remembered port if it is still free; otherwise take a new one.
	// Every port stays bound until all are chosen, so no two services get
	// the same one (the kernel reuses a port freed a moment ago).
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	pick := func(prefer int) (int, error) {
		if prefer != 0 {
			if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(prefer)); err == nil {
				held = append(held, l)
				return prefer, nil
			}
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		held = append(held, l)
		return l.Addr().(*net.TCPAddr).Port, nil
	}
	if p.Logserver == 0 {
		p.Logserver = 3000
	}
	for _, port := range []*int{&p.MariaDB, &p.Logserver, &p.Debug, &p.Witness, &p.Signer} {
		if *port, err = pick(*port); err != nil {
			return p, err
		}
	}
	return p, nil
}

func savePorts(path string, p ports) error {
	data, _ := json.Marshal(p)
	return writeFile(path, data, 0o644)
}

// secret returns the content of a generated secret file, creating it once.
func secret(path string) string {
	if b, err := os.ReadFile(path); err == nil {
		return string(b)
	}
	var buf [18]byte
	f, _ := os.Open("/dev/urandom")
	_, _ = io.ReadFull(f, buf[:])
	f.Close()
	s := fmt.Sprintf("%x", buf)
	_ = writeFile(path, []byte(s), 0o600)
	return s
}

// dropLegacyAccounts removes the all-privileges accounts earlier versions
// of make run gave the services ('rekor' and 'signer'), so an existing .run
// keeps only the least-privilege ones.
func dropLegacyAccounts(ctx context.Context, db *mariadb.Server) error {
	admin, err := sql.Open("mysql", db.AdminDSN(""))
	if err != nil {
		return err
	}
	defer admin.Close()
	_, err = admin.ExecContext(ctx, "DROP USER IF EXISTS 'rekor'@'127.0.0.1', 'signer'@'127.0.0.1'")
	return err
}

// exportLine is a shell export of a single-quoted value.
func exportLine(name, value string) string {
	return "export " + name + "='" + strings.ReplaceAll(value, "'", `'\''`) + "'\n"
}

func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
