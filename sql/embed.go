// Package sqlschema holds the appliance's own MySQL/MariaDB schema as ordered
// migration files, one folder per component (sql/<component>/NNN_name.sql).
// Trillian's schema is not here: it is read from the pinned Trillian module
// (see internal/migrate.TrillianSchema).
package sqlschema

import "embed"

// FS holds every component's migrations.
//
//go:embed logserver/*.sql signer/*.sql
var FS embed.FS
