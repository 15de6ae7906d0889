// Command c2sp-vkey prints the vkey of the logserver's C2SP checkpoint key:
// what witnesses (`witness logs add -origin ORIGIN -vkey VKEY`) and the
// tlog-policy "log" line are configured with. With -create it generates the
// key file first if it is missing (PEM PKCS #8 Ed25519, mode 0600), so a
// deployment script can set up the log and its witnesses before the
// logserver's first start.
//
//	c2sp-vkey -origin log.example.com/prod -key c2sp.key [-create]
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/stellaops/tlog/logserver/witnessing"
)

func main() {
	origin := flag.String("origin", "", "checkpoint origin = note key name (required)")
	keyFile := flag.String("key", "", "Ed25519 PEM PKCS #8 private key file (required)")
	create := flag.Bool("create", false, "generate the key file if it does not exist")
	flag.Parse()
	if *origin == "" || *keyFile == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	key, err := witnessing.LoadOrCreateKey(*keyFile, *create)
	if err != nil {
		fmt.Fprintln(os.Stderr, "c2sp-vkey:", err)
		os.Exit(1)
	}
	s, err := witnessing.NewCheckpointSigner(*origin, key)
	if err != nil {
		fmt.Fprintln(os.Stderr, "c2sp-vkey:", err)
		os.Exit(1)
	}
	fmt.Println(s.VerifierKey())
}
