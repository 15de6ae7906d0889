package e2e

import (
	"fmt"
	"os"
	"testing"
)

// TestMain gives the package a private TMPDIR: t.TempDir, and the MariaDB
// servers the tests start (mariadb-install-db, mariadbd temp tables), then
// never share /tmp with other processes running tests on the machine.
func TestMain(m *testing.M) {
	if cfg := os.Getenv(childLogserverEnv); cfg != "" {
		runChildLogserver(cfg) // the power-cut test's logserver process
		return
	}
	dir, err := os.MkdirTemp("", "e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("TMPDIR", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
