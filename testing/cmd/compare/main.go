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

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/stellaops/tlog/testing/loadgen"
	"github.com/stellaops/tlog/testing/rekorstack"
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

// ensure installs the missing Rekor stack binaries into cache (the same
// ones, built the same way, as testing/stack.Tool installs for the tests).
func ensure(cache string) error {
	for _, tl := range rekorstack.Tools {
		if _, err := os.Stat(filepath.Join(cache, tl.Name)); err == nil {
			continue
		}
		pkg := tl.Package + "@" + tl.Version
		fmt.Printf("installing %s (takes minutes the first time)\n", pkg)
		args := []string{"install"}
		if tl.Tags != "" {
			args = append(args, "-tags", tl.Tags)
		}
		cmd := exec.Command("go", append(args, pkg)...)
		cmd.Dir = os.TempDir()
		cmd.Env = append(os.Environ(), "GOBIN="+cache, "GOTOOLCHAIN=local", "GOFLAGS=")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("install %s: %w", pkg, err)
		}
	}
	return nil
}

func run(n int, conc, bin, cache string, interval time.Duration) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cache, _ = filepath.Abs(cache)
	if err := ensure(cache); err != nil {
		return err
	}
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
	rk, err := rekorstack.Start(ctx, db, rekorstack.Options{Bin: cache, Dir: dir, SignerInterval: interval})
	if err != nil {
		return err
	}
	defer rk.Stop()
	rekorURL := rk.URL

	// Ours: logserver with the embedded Trillian, its own database.
	sdsn, err := db.CreateDatabase(ctx, "stella", "stellapw")
	if err != nil {
		return err
	}
	lsPort, err := stack.FreePort()
	if err != nil {
		return err
	}
	cfg := fmt.Sprintf("listen: 127.0.0.1:%d\nhostname: stella.local\ndatabase:\n  dsn: %q\nkey:\n  file: %q\n  create: true\n  public_key_file: %q\nsequencer:\n  interval: %s\nlogging:\n  level: warn\n",
		lsPort, sdsn, filepath.Join(dir, "k.pem"), filepath.Join(dir, "k.pub.pem"), interval)
	if err := os.WriteFile(filepath.Join(dir, "ls.yaml"), []byte(cfg), 0o600); err != nil {
		return err
	}
	ls, err := rekorstack.StartProcess(dir, filepath.Join(bin, "logserver"), "-config", filepath.Join(dir, "ls.yaml"))
	if err != nil {
		return err
	}
	defer ls.Stop()
	ourURL := "http://127.0.0.1:" + strconv.Itoa(lsPort)
	if err := rekorstack.WaitHTTP(ctx, ourURL+"/readyz"); err != nil {
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
