// Package localrun brings the local appliance up in the foreground for
// `make run`: a private MariaDB with its data under the run directory, then
// each service as a child process on loopback. Once every service is ready it
// writes <dir>/env, shell export lines other tools rely on:
//
//	LOG_URL         base URL of the Rekor API
//	LOG_PUBLIC_KEY  path of the log's PEM public key
//
// State (database, keys, chosen ports) persists in the run directory, so a
// second run serves the same tree with the same key. Stop with SIGINT or
// SIGTERM: services stop in reverse order and env is removed.
package localrun

import (
	"context"
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

	"github.com/stellaops/tlog/testing/stack"
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

	db, err := stack.StartMariaDB(ctx, filepath.Join(dir, "mariadb"), stack.MariaDBOptions{
		Port: p.MariaDB, Durable: true, BufferPoolMB: 512})
	if err != nil {
		return err
	}
	defer db.Stop()
	p.MariaDB = db.Port
	dsn, err := db.CreateDatabase(ctx, "rekor", secret(filepath.Join(dir, "secrets", "rekor-db-password")))
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "secrets", "rekor-dsn"), []byte(dsn), 0o600); err != nil {
		return err
	}

	keys := filepath.Join(dir, "keys")
	lsAddr := "127.0.0.1:" + strconv.Itoa(p.Logserver)
	cfg := fmt.Sprintf(`# Written by make run; see logserver/config for every field.
listen: %q
debug_listen: "127.0.0.1:%d"
hostname: "stella.local"
database:
  dsn_file: %q
key:
  file: %q
  create: true
  public_key_file: %q
sequencer:
  interval: 20ms
`, lsAddr, p.Debug, filepath.Join(dir, "secrets", "rekor-dsn"), filepath.Join(keys, "log-key.pem"), filepath.Join(keys, "log-key.pub.pem"))
	cfgPath := filepath.Join(dir, "logserver.yaml")
	if err := writeFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	if err := savePorts(filepath.Join(dir, "ports.json"), p); err != nil {
		return err
	}

	ls, err := startChild(filepath.Join(o.BinDir, "logserver"), filepath.Join(dir, "logserver.log"), "-config", cfgPath)
	if err != nil {
		return err
	}
	defer ls.stop()
	logURL := "http://" + lsAddr
	if err := waitReady(ctx, logURL+"/readyz", ls); err != nil {
		return fmt.Errorf("logserver: %w (see %s)", err, filepath.Join(dir, "logserver.log"))
	}

	env := exportLine("LOG_URL", logURL) + exportLine("LOG_PUBLIC_KEY", filepath.Join(keys, "log-key.pub.pem"))
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
  MariaDB:                      127.0.0.1:%d (data in %s)
  logs:                         %s
Load the variables with:  . %s
Press Ctrl-C to stop.
`, logURL, filepath.Join(keys, "log-key.pub.pem"), logURL, logURL, p.Debug, db.Port, filepath.Join(dir, "mariadb"),
		filepath.Join(dir, "logserver.log"), envFile)

	select {
	case <-ctx.Done():
		fmt.Fprintln(o.Out, "stopping...")
		return nil
	case err := <-ls.exited:
		return fmt.Errorf("logserver exited: %v (see %s)", err, filepath.Join(dir, "logserver.log"))
	}
}

type child struct {
	cmd    *exec.Cmd
	exited chan error
}

func startChild(bin, logPath string, args ...string) (*child, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
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
	pick := func(prefer int) (int, error) {
		if prefer != 0 {
			if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(prefer)); err == nil {
				l.Close()
				return prefer, nil
			}
		}
		return stack.FreePort()
	}
	if p.MariaDB, err = pick(p.MariaDB); err != nil {
		return p, err
	}
	if p.Logserver == 0 {
		p.Logserver = 3000
	}
	if p.Logserver, err = pick(p.Logserver); err != nil {
		return p, err
	}
	p.Debug, err = pick(p.Debug)
	return p, err
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
