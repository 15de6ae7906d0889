// Package stack starts the real parts the appliance depends on for tests: a
// private MariaDB (deployment/mariadb), a logserver in the test process, and
// the peer tools the tests run (rekor-cli, cosign, ...).
package stack

import "github.com/stellaops/tlog/deployment/mariadb"

// MariaDB is a private MariaDB server (see deployment/mariadb).
type MariaDB = mariadb.Server

// MariaDBOptions tune it.
type MariaDBOptions = mariadb.Options

// StartMariaDB starts a private MariaDB with its data in dir.
var StartMariaDB = mariadb.Start

// FreePort, FreePorts and EnsurePackages are deployment/mariadb's.
var (
	FreePort       = mariadb.FreePort
	FreePorts      = mariadb.FreePorts
	EnsurePackages = mariadb.EnsurePackages
)
