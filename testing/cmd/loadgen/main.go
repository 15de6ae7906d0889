// Command loadgen measures a Rekor v1 API: write throughput and latency with
// unique signed hashedrekord entries, then random reads by index and UUID.
//
//	loadgen -url $LOG_URL -key $LOG_PUBLIC_KEY -n 5000 -c 1,16,64
package main

import (
	"context"
	"crypto"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"

	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/stellaops/tlog/testing/loadgen"
)

func main() {
	url := flag.String("url", os.Getenv("LOG_URL"), "Rekor API base URL")
	key := flag.String("key", os.Getenv("LOG_PUBLIC_KEY"), "log public key (PEM) to verify answers")
	n := flag.Int("n", 2000, "requests per run")
	conc := flag.String("c", "1,16,64", "comma-separated concurrency levels")
	verifyEvery := flag.Int("verify-every", 50, "verify every k-th answer (0: none)")
	reads := flag.Int("reads", 0, "read requests per level after the writes (0: none)")
	flag.Parse()
	if err := run(*url, *key, *n, *conc, *verifyEvery, *reads); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(url, keyPath string, n int, conc string, verifyEvery, reads int) error {
	if url == "" {
		return fmt.Errorf("-url (or LOG_URL) is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var v signature.Verifier
	if keyPath != "" {
		pemBytes, err := os.ReadFile(keyPath)
		if err != nil {
			return err
		}
		pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemBytes)
		if err != nil {
			return err
		}
		if v, err = signature.LoadVerifier(pub, crypto.SHA256); err != nil {
			return err
		}
	}
	var levels []int
	for _, s := range strings.Split(conc, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || c < 1 {
			return fmt.Errorf("bad concurrency %q", s)
		}
		levels = append(levels, c)
	}
	for _, c := range levels {
		res, err := loadgen.Write(ctx, loadgen.Config{URL: url, N: n, Concurrency: c, VerifyEvery: verifyEvery, Verifier: v})
		if err != nil {
			return err
		}
		fmt.Println(res)
	}
	if reads > 0 {
		size, err := treeSize(url)
		if err != nil {
			return err
		}
		for _, c := range levels {
			res, err := loadgen.Read(ctx, loadgen.Config{URL: url, N: reads, Concurrency: c, VerifyEvery: verifyEvery, Verifier: v}, size)
			if err != nil {
				return err
			}
			fmt.Println(res)
		}
	}
	return nil
}

func treeSize(url string) (int64, error) {
	resp, err := http.Get(url + "/api/v1/log")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var li models.LogInfo
	if err := json.NewDecoder(resp.Body).Decode(&li); err != nil {
		return 0, err
	}
	if li.TreeSize == nil {
		return 0, fmt.Errorf("log info without treeSize")
	}
	return *li.TreeSize, nil
}
