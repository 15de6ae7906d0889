package rekorpeer

import (
	"fmt"
	"os"
	"testing"
)

// TestMain gives the package a private TMPDIR (MariaDB, Trillian, Rekor's
// e2e binaries), never shared with other processes running tests.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "rekorpeer-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("TMPDIR", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
