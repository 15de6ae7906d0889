// Command bootstrap is the compose project's first-start job (service
// "bootstrap"): it runs deployment/bootstrap with the compose layout and
// exits. Every setting has a flag and an environment variable (the compose
// file passes the operator's .env through); the defaults are the compose
// project's names and paths.
//
//	bootstrap [-hostname stella.local] [-origin stella.local/log] ...
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/go-sql-driver/mysql"

	"github.com/stellaops/tlog/deployment/bootstrap"
	"github.com/stellaops/tlog/internal/service"
)

func main() {
	env := func(name, def string) string {
		if v := os.Getenv(name); v != "" {
			return v
		}
		return def
	}
	var p bootstrap.Plan
	flag.StringVar(&p.LogserverDir, "logserver-dir", "/var/lib/stella/logserver", "the logserver's volume")
	flag.StringVar(&p.SignerDir, "signer-dir", "/var/lib/stella/signer", "the signer's volume")
	flag.StringVar(&p.WitnessDir, "witness-dir", "/var/lib/stella/witness", "the witness's volume")
	flag.StringVar(&p.TrustDir, "trust-dir", "/var/lib/stella/trust", "where the client trust files go")
	socket := flag.String("db-socket", "/run/mysqld/mysqld.sock", "MariaDB's unix socket (administrator by peer credentials)")
	adminUser := flag.String("db-admin", env("STELLA_DB_ADMIN", "stella"), "administrator account on the socket (env STELLA_DB_ADMIN)")
	flag.StringVar(&p.DBAddr, "db-addr", env("STELLA_DB_ADDR", "mariadb:3306"), "database address the services use (env STELLA_DB_ADDR)")
	flag.StringVar(&p.AccountHost, "account-host", env("STELLA_DB_ACCOUNT_HOST", "%"), "host part of the services' database accounts (env STELLA_DB_ACCOUNT_HOST)")
	flag.StringVar(&p.Hostname, "hostname", env("STELLA_HOSTNAME", "stella.local"), "the log's hostname in Rekor checkpoints (env STELLA_HOSTNAME)")
	flag.StringVar(&p.Origin, "origin", os.Getenv("STELLA_ORIGIN"), "the C2SP checkpoint origin (env STELLA_ORIGIN; default <hostname>/log)")
	flag.StringVar(&p.WitnessName, "witness-name", os.Getenv("STELLA_WITNESS_NAME"), "the witness's name (env STELLA_WITNESS_NAME; default <hostname>/witness)")
	flag.StringVar(&p.LogURL, "log-url", os.Getenv("STELLA_LOG_URL"), "the v1 log's base URL as clients reach it, in the trust files (env STELLA_LOG_URL; default http://<hostname>:3000)")
	flag.StringVar(&p.V2URL, "v2-url", os.Getenv("STELLA_V2_URL"), "the Rekor v2 log's base URL as clients reach it; its host name is the v2 checkpoint origin (env STELLA_V2_URL; default the log URL)")
	flag.StringVar(&p.LogserverListen, "logserver-listen", "0.0.0.0:3000", "")
	flag.StringVar(&p.SignerListen, "signer-listen", "0.0.0.0:8090", "")
	flag.StringVar(&p.WitnessListen, "witness-listen", "0.0.0.0:7380", "")
	flag.StringVar(&p.SignerURL, "signer-url", "http://signer:8090", "the signer as the other services reach it")
	flag.StringVar(&p.WitnessURL, "witness-url", env("STELLA_WITNESS_URL", "http://witness:7380"), "the witness as the logserver reaches it (env STELLA_WITNESS_URL)")
	flag.StringVar(&p.PKCS11Module, "pkcs11-module", env("STELLA_PKCS11_MODULE", ""), "PKCS#11 library (env STELLA_PKCS11_MODULE; default SoftHSM2)")
	flag.StringVar(&p.TrillianSchemaFile, "trillian-schema", env("STELLA_TRILLIAN_SCHEMA", "/usr/share/stella/trillian-storage.sql"), "Trillian's MySQL schema")
	flag.StringVar(&p.LogFormat, "log-format", env("STELLA_LOG_FORMAT", "json"), "services' log format, text or json (env STELLA_LOG_FORMAT)")
	flag.Parse()
	if p.Origin == "" {
		p.Origin = p.Hostname + "/log"
	}
	if p.WitnessName == "" {
		p.WitnessName = p.Hostname + "/witness"
	}
	if p.LogURL == "" {
		p.LogURL = "http://" + p.Hostname + ":3000"
	}
	if p.V2URL == "" {
		p.V2URL = p.LogURL
	}
	c := mysql.NewConfig()
	c.User, c.Net, c.Addr = *adminUser, "unix", *socket
	p.AdminDSN = c.FormatDSN()

	ctx, stop := service.SignalContext()
	defer stop()
	res, err := bootstrap.Run(ctx, p)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, c := range res.Changed {
		fmt.Println("made:", c)
	}
	if len(res.Changed) == 0 {
		fmt.Println("bootstrap: nothing to do, the state is complete")
	}
	fmt.Printf("log note vkey: %s\nv2 note vkey:  %s\nwitness vkey:  %s\n", res.LogNoteVKey, res.V2NoteVKey, res.WitnessVKey)
}
