// Package rekorstack runs sigstore's rekor-server v1.5.4 the way it is
// deployed, as the peer our log is measured and checked against: Trillian
// v1.8.0's log server and log signer (built with batched_queue) over a
// MariaDB, rekor-server talking to them over gRPC, its search index in MySQL.
// testing/cmd/compare uses it for the benchmark, the side-by-side tests
// (testing/rekorpeer) for byte-for-byte checks.
package rekorstack

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	_ "github.com/go-sql-driver/mysql" // the Trillian schema is applied through database/sql

	"github.com/stellaops/tlog/internal/migrate"
	"github.com/stellaops/tlog/testing/stack"
)

// Tools are the peer binaries a Rekor stack needs, all in one directory
// (stack.CacheBin): trillian_log_server, trillian_log_signer, createtree and
// rekor-server.
var Tools = []stack.Tool{
	{Name: "trillian_log_server", Package: "github.com/google/trillian/cmd/trillian_log_server", Version: "v1.8.0", Tags: "batched_queue"},
	{Name: "trillian_log_signer", Package: "github.com/google/trillian/cmd/trillian_log_signer", Version: "v1.8.0", Tags: "batched_queue"},
	{Name: "createtree", Package: "github.com/google/trillian/cmd/createtree", Version: "v1.8.0", Tags: "batched_queue"},
	{Name: "rekor-server", Package: "github.com/sigstore/rekor/cmd/rekor-server", Version: "v1.5.4"},
}

// Options configure a Rekor stack.
type Options struct {
	Bin            string        // directory holding the Tools
	Dir            string        // where the processes' logs go
	Hostname       string        // --rekor_server.hostname (checkpoint origin); default rekor.local
	SignerInterval time.Duration // Trillian's --sequencer_interval; default 20ms
}

// Rekor is a running rekor-server with its Trillian.
type Rekor struct {
	URL    string // base URL of rekor-server's API
	TreeID string // Trillian tree rekor-server serves
	procs  []*Process
}

// Start creates databases trillian and rekorindex on db and starts Trillian
// and rekor-server on free loopback ports. Stop ends them.
func Start(ctx context.Context, db *stack.MariaDB, o Options) (r *Rekor, err error) {
	if o.Hostname == "" {
		o.Hostname = "rekor.local"
	}
	tr, err := StartTrillian(ctx, db, o)
	if err != nil {
		return nil, err
	}
	r = &Rekor{procs: tr.procs}
	defer func() {
		if err != nil {
			r.Stop()
		}
	}()
	for i := 0; i < 50 && r.TreeID == ""; i++ {
		out, err := exec.CommandContext(ctx, filepath.Join(o.Bin, "createtree"), "--admin_server="+tr.Address).Output()
		if err == nil {
			r.TreeID = strings.TrimSpace(string(out))
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if r.TreeID == "" {
		return nil, fmt.Errorf("createtree failed")
	}
	idsn, err := db.CreateDatabase(ctx, "rekorindex", "indexpw")
	if err != nil {
		return nil, err
	}
	port, err := stack.FreePort()
	if err != nil {
		return nil, err
	}
	_, trPort, _ := strings.Cut(tr.Address, ":")
	if err := r.start(o, "rekor-server", "serve",
		"--trillian_log_server.address=127.0.0.1", "--trillian_log_server.port="+trPort,
		"--trillian_log_server.tlog_id="+r.TreeID, "--rekor_server.address=127.0.0.1", "--port="+strconv.Itoa(port),
		"--rekor_server.hostname="+o.Hostname, "--rekor_server.signer=memory",
		"--search_index.storage_provider=mysql", "--search_index.mysql.dsn="+idsn); err != nil {
		return nil, err
	}
	r.URL = "http://127.0.0.1:" + strconv.Itoa(port)
	if err := WaitHTTP(ctx, r.URL+"/api/v1/log"); err != nil {
		return nil, fmt.Errorf("rekor-server: %w (log in %s)", err, o.Dir)
	}
	return r, nil
}

// Trillian is a running trillian_log_server and trillian_log_signer.
type Trillian struct {
	Address string // gRPC address of the log server (and its admin API)
	procs   []*Process
}

// StartTrillian creates database trillian on db, applies Trillian's schema
// and starts its log server and log signer on free loopback ports (the
// remote backend of logservers in trillian.mode remote). Only o.Bin, o.Dir
// and o.SignerInterval are used. Stop ends them.
func StartTrillian(ctx context.Context, db *stack.MariaDB, o Options) (tr *Trillian, err error) {
	if o.SignerInterval == 0 {
		o.SignerInterval = 20 * time.Millisecond
	}
	tr = &Trillian{}
	defer func() {
		if err != nil {
			tr.Stop()
		}
	}()
	tdsn, err := db.CreateDatabase(ctx, "trillian", "trillianpw")
	if err != nil {
		return nil, err
	}
	schema, err := migrate.TrillianSchemaFile("")
	if err != nil {
		return nil, err
	}
	if err := applySchema(ctx, tdsn, schema); err != nil {
		return nil, err
	}
	ports, err := stack.FreePorts(4) // trillian rpc+http, signer rpc+http
	if err != nil {
		return nil, err
	}
	addr := func(i int) string { return "127.0.0.1:" + strconv.Itoa(ports[i]) }
	common := []string{"--storage_system=mysql", "--mysql_uri=" + tdsn, "--quota_system=noop", "--logtostderr"}
	start := func(name string, args ...string) error {
		p, err := StartProcess(o.Dir, filepath.Join(o.Bin, name), args...)
		if err != nil {
			return err
		}
		tr.procs = append(tr.procs, p)
		return nil
	}
	if err := start("trillian_log_server", append(common,
		"--rpc_endpoint="+addr(0), "--http_endpoint="+addr(1))...); err != nil {
		return nil, err
	}
	if err := start("trillian_log_signer", append(common, "--force_master",
		"--rpc_endpoint="+addr(2), "--http_endpoint="+addr(3),
		"--batch_size=1000", "--sequencer_interval="+o.SignerInterval.String())...); err != nil {
		return nil, err
	}
	if err := WaitHTTP(ctx, "http://"+addr(1)+"/healthz"); err != nil {
		return nil, fmt.Errorf("trillian_log_server: %w (log in %s)", err, o.Dir)
	}
	tr.Address = addr(0)
	return tr, nil
}

// Stop ends the log signer and the log server (idempotent).
func (tr *Trillian) Stop() {
	for i := len(tr.procs) - 1; i >= 0; i-- {
		tr.procs[i].Stop()
	}
	tr.procs = nil
}

// Stop ends rekor-server and Trillian (idempotent).
func (r *Rekor) Stop() {
	for i := len(r.procs) - 1; i >= 0; i-- {
		r.procs[i].Stop()
	}
	r.procs = nil
}

func (r *Rekor) start(o Options, name string, args ...string) error {
	p, err := StartProcess(o.Dir, filepath.Join(o.Bin, name), args...)
	if err != nil {
		return err
	}
	r.procs = append(r.procs, p)
	return nil
}

// A Process is a peer server started by StartProcess.
type Process struct{ cmd *exec.Cmd }

// StartProcess starts path with args in its own process group, killed if
// the caller dies, its output in dir/<name>.log.
func StartProcess(dir, path string, args ...string) (*Process, error) {
	logf, err := os.Create(filepath.Join(dir, filepath.Base(path)+".log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child holds its own descriptor
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &Process{cmd}, nil
}

// Stop sends SIGTERM, then kills the process group after 10 s.
func (p *Process) Stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// WaitHTTP waits up to two minutes for url to answer 200.
func WaitHTTP(ctx context.Context, url string) error {
	for i := 0; i < 600; i++ {
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
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready", url)
}

func applySchema(ctx context.Context, dsn, file string) error {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	return migrate.ApplyTrillian(ctx, db, file)
}
