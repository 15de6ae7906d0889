// Command compare measures our logserver side by side with sigstore/rekor
// v1.5.4 on the same machine, the same MariaDB and the same Trillian v1.8.0
// (built with batched_queue; Rekor talks to trillian_log_server and
// trillian_log_signer over gRPC, as it is deployed), with the same load.
//
//	compare -n 3000 -c 1,16,64
//
// Missing binaries (trillian_log_server, trillian_log_signer, createtree,
// rekor-server) are installed into .cache/bin with `go install`; logserver
// must be built (make build).
package main

import (
	"context"
	"crypto"
	"database/sql"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/stellaops/tlog/internal/migrate"
	"github.com/stellaops/tlog/testing/loadgen"
	"github.com/stellaops/tlog/testing/stack"
)

func main() {
	n := flag.Int("n", 3000, "entries per run")
	conc := flag.String("c", "1,16,64", "concurrency levels")
	bin := flag.String("bin", "bin", "directory with our built logserver")
	cache := flag.String("cache", ".cache/bin", "directory for installed peer binaries")
	interval := flag.Duration("interval", 20*time.Millisecond, "Trillian signer interval for Rekor (our embedded sequencer is woken per batch)")
	flag.Parse()
	if err := run(*n, *conc, *bin, *cache, *interval); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

var installs = map[string]string{
	"trillian_log_server": "github.com/google/trillian/cmd/trillian_log_server@v1.8.0",
	"trillian_log_signer": "github.com/google/trillian/cmd/trillian_log_signer@v1.8.0",
	"createtree":          "github.com/google/trillian/cmd/createtree@v1.8.0",
	"rekor-server":        "github.com/sigstore/rekor/cmd/rekor-server@v1.5.4",
}

func ensure(cache string) error {
	cache, _ = filepath.Abs(cache)
	for name, pkg := range installs {
		if _, err := os.Stat(filepath.Join(cache, name)); err == nil {
			continue
		}
		fmt.Printf("installing %s (takes minutes the first time)\n", pkg)
		cmd := exec.Command("go", "install", "-tags", "batched_queue", pkg)
		cmd.Dir = os.TempDir()
		cmd.Env = append(os.Environ(), "GOBIN="+cache, "GOTOOLCHAIN=local")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("install %s: %w", pkg, err)
		}
	}
	return nil
}

type proc struct{ cmd *exec.Cmd }

func start(dir, name string, args ...string) (*proc, error) {
	logf, err := os.Create(filepath.Join(dir, filepath.Base(name)+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &proc{cmd}, nil
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
}

func waitHTTP(url string) error {
	for i := 0; i < 600; i++ {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready", url)
}

func run(n int, conc, bin, cache string, interval time.Duration) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := ensure(cache); err != nil {
		return err
	}
	cache, _ = filepath.Abs(cache)
	bin, _ = filepath.Abs(bin)
	dir, err := os.MkdirTemp("", "compare-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	db, err := stack.StartMariaDB(ctx, filepath.Join(dir, "mariadb"), stack.MariaDBOptions{Durable: true, BufferPoolMB: 512})
	if err != nil {
		return err
	}
	defer db.Stop()

	// Rekor: Trillian servers + rekor-server, index in MySQL.
	tdsn, err := db.CreateDatabase(ctx, "trillian", "trillianpw")
	if err != nil {
		return err
	}
	schema, err := migrate.TrillianSchemaFile("")
	if err != nil {
		return err
	}
	if err := applySchema(ctx, tdsn, schema); err != nil {
		return err
	}
	ports, err := stack.FreePorts(6) // trillian rpc+http, signer rpc+http, rekor, ours
	if err != nil {
		return err
	}
	common := []string{"--storage_system=mysql", "--mysql_uri=" + tdsn, "--quota_system=noop", "--logtostderr"}
	ts, err := start(dir, filepath.Join(cache, "trillian_log_server"), append(common,
		"--rpc_endpoint=127.0.0.1:"+strconv.Itoa(ports[0]), "--http_endpoint=127.0.0.1:"+strconv.Itoa(ports[1]))...)
	if err != nil {
		return err
	}
	defer ts.stop()
	sg, err := start(dir, filepath.Join(cache, "trillian_log_signer"), append(common, "--force_master",
		"--rpc_endpoint=127.0.0.1:"+strconv.Itoa(ports[2]), "--http_endpoint=127.0.0.1:"+strconv.Itoa(ports[3]),
		"--batch_size=1000", "--sequencer_interval="+interval.String())...)
	if err != nil {
		return err
	}
	defer sg.stop()
	if err := waitHTTP("http://127.0.0.1:" + strconv.Itoa(ports[1]) + "/healthz"); err != nil {
		return err
	}
	var treeID string
	for i := 0; i < 50; i++ {
		out, err := exec.Command(filepath.Join(cache, "createtree"), "--admin_server=127.0.0.1:"+strconv.Itoa(ports[0])).Output()
		if err == nil {
			treeID = strings.TrimSpace(string(out))
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if treeID == "" {
		return fmt.Errorf("createtree failed")
	}
	idsn, err := db.CreateDatabase(ctx, "rekorindex", "indexpw")
	if err != nil {
		return err
	}
	rk, err := start(dir, filepath.Join(cache, "rekor-server"), "serve",
		"--trillian_log_server.address=127.0.0.1", "--trillian_log_server.port="+strconv.Itoa(ports[0]),
		"--trillian_log_server.tlog_id="+treeID, "--rekor_server.address=127.0.0.1", "--port="+strconv.Itoa(ports[4]),
		"--rekor_server.hostname=rekor.local", "--rekor_server.signer=memory",
		"--search_index.storage_provider=mysql", "--search_index.mysql.dsn="+idsn)
	if err != nil {
		return err
	}
	defer rk.stop()
	rekorURL := "http://127.0.0.1:" + strconv.Itoa(ports[4])
	if err := waitHTTP(rekorURL + "/api/v1/log"); err != nil {
		return fmt.Errorf("rekor-server: %w (log in %s)", err, dir)
	}

	// Ours: logserver with the embedded Trillian, its own database.
	sdsn, err := db.CreateDatabase(ctx, "stella", "stellapw")
	if err != nil {
		return err
	}
	lsPort := ports[5]
	cfg := fmt.Sprintf("listen: 127.0.0.1:%d\nhostname: stella.local\ndatabase:\n  dsn: %q\nkey:\n  file: %q\n  create: true\n  public_key_file: %q\nsequencer:\n  interval: %s\nlogging:\n  level: warn\n",
		lsPort, sdsn, filepath.Join(dir, "k.pem"), filepath.Join(dir, "k.pub.pem"), interval)
	if err := os.WriteFile(filepath.Join(dir, "ls.yaml"), []byte(cfg), 0o600); err != nil {
		return err
	}
	ls, err := start(dir, filepath.Join(bin, "logserver"), "-config", filepath.Join(dir, "ls.yaml"))
	if err != nil {
		return err
	}
	defer ls.stop()
	ourURL := "http://127.0.0.1:" + strconv.Itoa(lsPort)
	if err := waitHTTP(ourURL + "/readyz"); err != nil {
		return err
	}
	ourKey, err := verifier(filepath.Join(dir, "k.pub.pem"))
	if err != nil {
		return err
	}
	rekorKey, err := fetchVerifier(rekorURL)
	if err != nil {
		return err
	}

	fmt.Printf("same MariaDB (durable), Trillian v1.8.0 batched_queue, signer interval %v, n=%d\n", interval, n)
	for _, s := range strings.Split(conc, ",") {
		c, err := strconv.Atoi(s)
		if err != nil {
			return err
		}
		for _, target := range []struct {
			name, url string
			v         signature.Verifier
		}{{"rekor v1.5.4", rekorURL, rekorKey}, {"stella", ourURL, ourKey}} {
			res, err := loadgen.Write(ctx, loadgen.Config{URL: target.url, N: n, Concurrency: c, VerifyEvery: 50, Verifier: target.v})
			if err != nil {
				return err
			}
			fmt.Printf("%-13s %s\n", target.name, res)
		}
	}
	for _, target := range []struct{ name, url string }{{"rekor v1.5.4", rekorURL}, {"stella", ourURL}} {
		res, err := loadgen.Read(ctx, loadgen.Config{URL: target.url, N: 5 * n, Concurrency: 16}, int64(n))
		if err != nil {
			return err
		}
		fmt.Printf("%-13s %s\n", target.name, res)
	}
	return nil
}

func applySchema(ctx context.Context, dsn, file string) error {
	db, err := openDB(dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	return migrate.ApplyTrillian(ctx, db, file)
}

func verifier(path string) (signature.Verifier, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return verifierFromPEM(b)
}

func verifierFromPEM(b []byte) (signature.Verifier, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(b)
	if err != nil {
		return nil, err
	}
	return signature.LoadVerifier(pub, crypto.SHA256)
}

func fetchVerifier(url string) (signature.Verifier, error) {
	resp, err := http.Get(url + "/api/v1/log/publicKey")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return verifierFromPEM(b)
}

func openDB(dsn string) (*sql.DB, error) { return sql.Open("mysql", dsn) }
