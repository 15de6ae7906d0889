// Package migrate applies ordered, idempotent SQL migrations to MySQL/MariaDB.
//
// Each component keeps its migrations as files named NNN_description.sql in
// one folder. Applied versions are recorded in schema_migrations (component,
// version); a file is applied once, in order. Files must be safe to re-run up
// to their last statement (MySQL DDL is not transactional, so a crash in the
// middle of a file re-runs it): use IF NOT EXISTS forms.
package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// Apply runs the migrations of component found in dir of fsys that are not
// yet recorded in db.
func Apply(ctx context.Context, db *sql.DB, fsys fs.FS, dir, component string) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		component  VARCHAR(64) NOT NULL,
		version    INT NOT NULL,
		name       VARCHAR(255) NOT NULL,
		applied_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
		PRIMARY KEY (component, version))`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	files, err := fs.Glob(fsys, path.Join(dir, "*.sql"))
	if err != nil {
		return err
	}
	type mig struct {
		version int
		file    string
	}
	var migs []mig
	seen := map[int]string{}
	for _, f := range files {
		base := path.Base(f)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return fmt.Errorf("migration %s: name must be NNN_description.sql", f)
		}
		if prev, dup := seen[v]; dup {
			return fmt.Errorf("migrations %s and %s share version %d", prev, f, v)
		}
		seen[v] = f
		migs = append(migs, mig{v, f})
	}
	sort.Slice(migs, func(i, j int) bool { return migs[i].version < migs[j].version })

	applied := map[int]bool{}
	rows, err := db.QueryContext(ctx, "SELECT version FROM schema_migrations WHERE component = ?", component)
	if err != nil {
		return err
	}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return err
		}
		applied[v] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, m := range migs {
		if applied[m.version] {
			continue
		}
		text, err := fs.ReadFile(fsys, m.file)
		if err != nil {
			return err
		}
		if err := ExecScript(ctx, db, string(text)); err != nil {
			return fmt.Errorf("migration %s: %w", m.file, err)
		}
		if _, err := db.ExecContext(ctx, "INSERT INTO schema_migrations (component, version, name) VALUES (?, ?, ?)",
			component, m.version, path.Base(m.file)); err != nil {
			return fmt.Errorf("record migration %s: %w", m.file, err)
		}
	}
	return nil
}

// ExecScript runs the ;-separated statements of a SQL script one by one.
// Comment lines (--, #) are dropped. A CREATE INDEX of an index that already
// exists is skipped, so scripts written without IF NOT EXISTS on indexes (as
// Trillian's is) can be re-run.
func ExecScript(ctx context.Context, db *sql.DB, script string) error {
	for _, stmt := range Statements(script) {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			var me *mysql.MySQLError
			if errors.As(err, &me) && me.Number == 1061 { // ER_DUP_KEYNAME
				continue
			}
			return fmt.Errorf("%s: %w", firstLine(stmt), err)
		}
	}
	return nil
}

// Statements splits a script into statements. It understands comment lines
// and ';' at the end of a line, which is all our and Trillian's scripts use.
func Statements(script string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(script, "\n") {
		t := strings.TrimSpace(line)
		if t == "" || strings.HasPrefix(t, "--") || strings.HasPrefix(t, "#") {
			continue
		}
		cur.WriteString(line)
		cur.WriteString("\n")
		if strings.HasSuffix(t, ";") {
			s := strings.TrimSpace(cur.String())
			out = append(out, strings.TrimSuffix(s, ";"))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
