package localrun

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAdoptLegacyLayout: a run directory from before the bootstrap keeps its
// token, secrets, note key and head records, moved into the bootstrap's
// layout; a second pass changes nothing; a directory holding both layouts
// is refused and left as it is.
func TestAdoptLegacyLayout(t *testing.T) {
	dir := t.TempDir()
	legacy := map[string]string{
		"softhsm/tokens/0a1b/token.object": "token", "secrets/hsm-pin": "pin", "secrets/hsm-so-pin": "so",
		"secrets/signer-db-password": "audit", "secrets/rekor-db-password": "log",
		"secrets/logserver-signer-token": "lt", "secrets/witness-signer-token": "wt",
		"keys/log-note.pem": "note", "state/heads": "heads", "witness/witness.db": "db", "tuf/1.root.json": "root",
	}
	for f, c := range legacy {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if err := adoptLegacyLayout(dir); err != nil {
			t.Fatal(err)
		}
		for f, c := range map[string]string{
			"signer/tokens/0a1b/token.object": "token", "signer/secrets/hsm-pin": "pin", "signer/secrets/hsm-so-pin": "so",
			"signer/secrets/audit-db-password": "audit", "logserver/secrets/db-password": "log",
			"logserver/secrets/signer-token": "lt", "witness/secrets/signer-token": "wt",
			"logserver/keys/log-note.pem": "note", "logserver/state/heads": "heads", "witness/witness.db": "db",
			"logserver/tuf/1.root.json": "root",
		} {
			if b, err := os.ReadFile(filepath.Join(dir, f)); err != nil || string(b) != c {
				t.Fatalf("%s: %q %v, want %q", f, b, err, c)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "secrets", "hsm-pin"), []byte("other"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := adoptLegacyLayout(dir); err == nil || !strings.Contains(err.Error(), "mixes two layouts") {
		t.Fatalf("both layouts: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "signer", "secrets", "hsm-pin")); string(b) != "pin" {
		t.Fatalf("the bootstrap's PIN was overwritten: %q", b)
	}
}
