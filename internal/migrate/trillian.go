package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
)

// TrillianModule is the module whose MySQL schema the log's storage uses.
const TrillianModule = "github.com/google/trillian"

// trillianSchemaPath is the schema's path inside the Trillian module.
const trillianSchemaPath = "storage/mysql/schema/storage.sql"

// TrillianSchemaFile finds Trillian's MySQL schema file for the Trillian
// version this binary was built with. It is not copied into our tree: it is
// read from, in order, the explicit path (configuration), the
// STELLA_TRILLIAN_SCHEMA environment variable, or the Go module cache holding
// the module version linked into this binary (as `go mod download` leaves
// it), or, for binaries without Trillian, the version the go command resolves
// in the working directory. Container images
// copy the file at build time and set the path.
func TrillianSchemaFile(explicit string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	if p := os.Getenv("STELLA_TRILLIAN_SCHEMA"); p != "" {
		return p, nil
	}
	version := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == TrillianModule {
				version = d.Version
				if d.Replace != nil {
					version = d.Replace.Version
				}
			}
		}
	}
	if version == "" {
		// Not linked into this binary (a tool or test): ask the go command
		// which version the module in the working directory pins.
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", TrillianModule).Output()
		if err != nil {
			return "", fmt.Errorf("cannot tell which %s version to use; set the schema path: %v", TrillianModule, err)
		}
		return filepath.Join(strings.TrimSpace(string(out)), trillianSchemaPath), nil
	}
	modcache := os.Getenv("GOMODCACHE")
	if modcache == "" {
		if out, err := exec.Command("go", "env", "GOMODCACHE").Output(); err == nil {
			modcache = strings.TrimSpace(string(out))
		}
	}
	if modcache == "" {
		if gp := os.Getenv("GOPATH"); gp != "" {
			modcache = filepath.Join(gp, "pkg", "mod")
		} else if home, err := os.UserHomeDir(); err == nil {
			modcache = filepath.Join(home, "go", "pkg", "mod")
		}
	}
	p := filepath.Join(modcache, TrillianModule+"@"+version, trillianSchemaPath)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("trillian schema for %s not found at %s (run `go mod download %s@%s` or set the schema path): %w",
			version, p, TrillianModule, version, err)
	}
	return p, nil
}

// ApplyTrillian loads Trillian's schema from file into db. It is safe to run
// on every start: tables are created only if missing and existing indexes are
// skipped.
func ApplyTrillian(ctx context.Context, db *sql.DB, file string) error {
	text, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read trillian schema: %w", err)
	}
	if err := ExecScript(ctx, db, string(text)); err != nil {
		return fmt.Errorf("trillian schema %s: %w", file, err)
	}
	return nil
}
