// Command witness is a c2sp.org/tlog-witness witness: it cosigns checkpoints
// of the logs it is configured for, keeping its state in an embedded store.
//
//	witness serve -config witness.yaml                 run the server
//	witness keygen -name NAME -out FILE                new Ed25519 key; prints the vkey
//	witness vkey -c witness.yaml                       print the witness vkey
//	witness log-vkey -name NAME -pubkey FILE.pem       vkey of a log's PEM public key
//	witness logs list|add|disable|enable -c witness.yaml ...
//
// The logs commands work on the database directly when the server is
// stopped and through its admin socket while it runs; a running server
// applies them to the next request. See package config for the file format;
// the witness key is a key file or an Ed25519 key in a PKCS#11 token.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/stellaops/tlog/internal/service"
)

func main() {
	ctx, stop := service.SignalContext()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "witness: %v\n", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
