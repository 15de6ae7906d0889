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
// The state is made by deployment/bootstrap, as compose's first start
// makes it (one directory per service: logserver/, signer/, witness/, and
// trust/), and persists in the run directory with the database and the
// chosen ports, so a second run serves the same tree with the same keys. Stop with SIGINT or
// SIGTERM: services stop in reverse order and env is removed.
package localrun

import (
	"context"
	"database/sql"
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
	if err := adoptLegacyLayout(dir); err != nil {
		return err
	}
	p, err := loadPorts(filepath.Join(dir, "ports.json"))
	if err != nil {
		return err
	}
	if err := mariadb.EnsurePackages(ctx, map[string]string{"softhsm2-util": "softhsm2"}); err != nil {
		return err
	}
	db, err := mariadb.Start(ctx, filepath.Join(dir, "mariadb"), mariadb.Options{
		Port: p.MariaDB, Durable: true, BufferPoolMB: 512})
	if err != nil {
		return err
	}
	defer db.Stop()
	p.MariaDB = db.Port

	// Everything else is the compose first start's bootstrap, with the
	// services on loopback: database accounts with least privilege, the
	// SoftHSM2 token and its keys, the note key, the three configurations,
	// the witness registered with both logs, and the trust files. The Rekor
	// v2 log's origin is the host name of its URL (sigstore-go checks it
	// against the trusted root's baseUrl).
	addr := func(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }
	logURL := "http://" + addr(p.Logserver)
	witnessURL, signerURL := "http://"+addr(p.Witness), "http://"+addr(p.Signer)
	trust := filepath.Join(dir, "trust")
	res, err := bootstrap.Run(ctx, bootstrap.Plan{
		LogserverDir: filepath.Join(dir, "logserver"), SignerDir: filepath.Join(dir, "signer"),
		WitnessDir: filepath.Join(dir, "witness"), TrustDir: trust,
		AdminDSN: db.AdminDSN(""), DBAddr: addr(db.Port), AccountHost: "127.0.0.1",
		Hostname: "stella.local", Origin: "stella.local/log", WitnessName: "stella.local/witness",
		LogURL: logURL, V2URL: logURL,
		LogserverListen: addr(p.Logserver), LogserverDebugListen: addr(p.Debug),
		SignerListen: addr(p.Signer), WitnessListen: addr(p.Witness),
		SignerURL: signerURL, WitnessURL: witnessURL,
		LogFormat: "text",
	})
	if err != nil {
		return err
	}
	if err := dropLegacyAccounts(ctx, db); err != nil {
		return err
	}
	if err := savePorts(filepath.Join(dir, "ports.json"), p); err != nil {
		return err
	}

	sg, err := startChild(filepath.Join(o.BinDir, "signer"), filepath.Join(dir, "signer.log"), []string{"SOFTHSM2_CONF=" + res.SoftHSMConf},
		"serve", "-config", res.SignerConfig)
	if err != nil {
		return err
	}
	defer sg.stop()
	if err := waitReady(ctx, signerURL+"/readyz", sg); err != nil {
		return fmt.Errorf("signer: %w (see %s)", err, filepath.Join(dir, "signer.log"))
	}
	wit, err := startChild(filepath.Join(o.BinDir, "witness"), filepath.Join(dir, "witness.log"), nil, "serve", "-config", res.WitnessConfig)
	if err != nil {
		return err
	}
	defer wit.stop()
	if err := waitReady(ctx, witnessURL+"/readyz", wit); err != nil {
		return fmt.Errorf("witness: %w (see %s)", err, filepath.Join(dir, "witness.log"))
	}
	ls, err := startChild(filepath.Join(o.BinDir, "logserver"), filepath.Join(dir, "logserver.log"), nil, "-config", res.LogserverConfig)
	if err != nil {
		return err
	}
	defer ls.stop()
	if err := waitReady(ctx, logURL+"/readyz", ls); err != nil {
		return fmt.Errorf("logserver: %w (see %s)", err, filepath.Join(dir, "logserver.log"))
	}

	env := exportLine("LOG_URL", logURL) + exportLine("LOG_PUBLIC_KEY", res.LogPublicKeyFile) +
		exportLine("SIGNER_URL", signerURL) +
		exportLine("LOG_NOTE_VKEY", res.LogNoteVKey) +
		exportLine("WITNESS_URL", witnessURL) + exportLine("WITNESS_VKEY", res.WitnessVKey) +
		exportLine("TRUST_DIR", trust) +
		exportLine("LOG_TILES_URL", logURL+"/") + exportLine("LOG_V2_URL", logURL) +
		exportLine("TRUSTED_ROOT", filepath.Join(trust, "trusted_root.json")) +
		exportLine("SIGNING_CONFIG", filepath.Join(trust, "signing_config.json")) +
		exportLine("TUF_URL", logURL+"/tuf")
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
  TUF repository (TUF_URL):     %s/tuf (cosign initialize --mirror $TUF_URL --root $TRUST_DIR/root.json)
  MariaDB:                      127.0.0.1:%d (data in %s)
  logs:                         %s
Load the variables with:  . %s
Press Ctrl-C to stop.
`, logURL, res.LogPublicKeyFile, logURL, logURL, p.Debug, logURL, logURL, logURL, witnessURL, signerURL, trust, logURL, db.Port, filepath.Join(dir, "mariadb"),
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

// adoptLegacyLayout moves the state of a run directory made before make
// run used deployment/bootstrap into the bootstrap's layout, so the same
// token, keys, secrets and head records serve on: nothing is regenerated.
func adoptLegacyLayout(dir string) error {
	for _, m := range [][2]string{
		{"softhsm/tokens", "signer/tokens"},
		{"secrets/hsm-pin", "signer/secrets/hsm-pin"},
		{"secrets/hsm-so-pin", "signer/secrets/hsm-so-pin"},
		{"secrets/signer-db-password", "signer/secrets/audit-db-password"},
		{"secrets/rekor-db-password", "logserver/secrets/db-password"},
		{"secrets/logserver-signer-token", "logserver/secrets/signer-token"},
		{"secrets/witness-signer-token", "witness/secrets/signer-token"},
		{"keys/log-note.pem", "logserver/keys/log-note.pem"},
		{"state", "logserver/state"},
		{"tuf", "logserver/tuf"},
	} {
		from, to := filepath.Join(dir, m[0]), filepath.Join(dir, m[1])
		if _, err := os.Stat(from); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if _, err := os.Stat(to); err == nil {
			return fmt.Errorf("%s and %s both exist: the run directory mixes two layouts", from, to)
		}
		if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
			return err
		}
		if err := os.Rename(from, to); err != nil {
			return err
		}
	}
	return nil
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
