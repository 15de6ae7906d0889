package cosig_test

import (
	"context"
	"errors"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/stellaops/tlog/signer/client"
	"github.com/stellaops/tlog/signer/pkcs11"
	"github.com/stellaops/tlog/signer/server"
	"github.com/stellaops/tlog/testing/signerstack"
	"github.com/stellaops/tlog/witness/cosig"
)

// TestRemoteThroughSigner cosigns with a key held by a real signer service
// (SoftHSM2 token, MariaDB audit trail): the lines verify against the vkey
// the Remote advertises, and a misnamed or unknown key is refused at start.
func TestRemoteThroughSigner(t *testing.T) {
	ctx := context.Background()
	hsm := signerstack.NewHSM(t, "witness-remote", nil, signerstack.Key{Label: "cosign-ed", Type: pkcs11.Ed25519})
	const token = "witness-test-token"
	url := signerstack.Serve(t, hsm.Config(1, []server.KeyConfig{{Name: "witness", Purposes: []string{"cosignature"}, NoteName: "w.example/witness",
		Versions: []server.KeyVersionConfig{{Version: 1, Label: "cosign-ed"}}}},
		signerstack.Tenant("witness", token, []string{"witness"}, "sign:cosignature")))
	c := client.New(url, token, nil)

	if _, err := cosig.NewRemote(ctx, c, "witness", "other.example/witness", time.Second, 4); !errors.Is(err, cosig.ErrBadKey) {
		t.Fatalf("misnamed key: %v, want ErrBadKey", err)
	}
	if _, err := cosig.NewRemote(ctx, c, "nope", "w.example/witness", time.Second, 4); !errors.Is(err, cosig.ErrBadKey) {
		t.Fatalf("unknown key: %v, want ErrBadKey", err)
	}
	r, err := cosig.NewRemote(ctx, c, "witness", "w.example/witness", 5*time.Second, 4)
	if err != nil {
		t.Fatal(err)
	}
	text := []byte("log.example/origin\n7\n" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
	lines, err := r.Sign(ctx, text, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	v, err := fnote.NewVerifierForCosignatureV1(r.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(append(append(text, '\n'), lines...), note.VerifierList(v))
	if err != nil || len(n.Sigs) != 1 {
		t.Fatalf("cosignature from the signer does not verify: %v", err)
	}
}
