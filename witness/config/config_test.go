package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stellaops/tlog/internal/service"
	"github.com/stellaops/tlog/witness/config"
)

const vkey = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"

const minimal = `
name: witness.example/w1
key_file: w.key
db_file: state/w.db
logs:
  - origin: example.com/foo
    vkeys: ["` + vkey + `"]
`

// hsm is a pkcs11 key in place of key_file.
const hsm = `pkcs11:
  token_label: witness
  key_label: witness-ed25519
  pin_file: secrets/pin
`

var noFile = strings.Replace(minimal, "key_file: w.key\n", "", 1)

func TestLoadPKCS11(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "witness.yaml")
	if err := os.WriteFile(p, []byte(noFile+hsm), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	want := config.PKCS11Key{Module: config.DefaultPKCS11Module, TokenLabel: "witness", KeyLabel: "witness-ed25519",
		PINFile: filepath.Join(dir, "secrets/pin")}
	if c.KeyFile != "" || c.PKCS11 == nil || *c.PKCS11 != want {
		t.Fatalf("key_file %q, pkcs11 %+v; want %+v", c.KeyFile, c.PKCS11, want)
	}
	c, err = config.Parse([]byte(noFile + "pkcs11: {module: libsofthsm2.so, token_label: t, key_label: k, pin_env: WITNESS_PIN, sessions: 3}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want = config.PKCS11Key{Module: "libsofthsm2.so", TokenLabel: "t", KeyLabel: "k", PINEnv: "WITNESS_PIN", Sessions: 3}
	if *c.PKCS11 != want {
		t.Fatalf("pkcs11 %+v, want %+v", c.PKCS11, want)
	}
}

func TestLoadDefaults(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "witness.yaml")
	if err := os.WriteFile(p, []byte(minimal+"read_timeout: 3s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.KeyFile != filepath.Join(dir, "w.key") || c.DBFile != filepath.Join(dir, "state/w.db") ||
		c.AdminSocket != filepath.Join(dir, "state/w.db.admin/socket") {
		t.Errorf("paths not resolved against the config dir: %q %q %q", c.KeyFile, c.DBFile, c.AdminSocket)
	}
	if c.Listen != ":7380" || c.HTTP.Read != 3*time.Second || c.HTTP.ReadHeader != 5*time.Second || c.HTTP.Shutdown != 15*time.Second ||
		c.MaxBodyBytes != 256<<10 || c.Budget.Rate != 20 || c.Budget.Burst != 200 || c.Logging != (service.Logging{Level: "info", Format: "text"}) {
		t.Errorf("defaults: %+v", c)
	}
}

// TestLegacyLogging: the former log_level and log_format still load, into
// logging; set with a different logging value they are an error.
func TestLegacyLogging(t *testing.T) {
	c, err := config.Parse([]byte(minimal + "log_level: warn\nlog_format: json\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Logging != (service.Logging{Level: "warn", Format: "json"}) {
		t.Fatalf("logging %+v", c.Logging)
	}
	if _, err := config.Parse([]byte(minimal + "log_format: json\nlogging: {format: text}\n")); err == nil || !strings.Contains(err.Error(), "set logging.format only") {
		t.Fatalf("conflicting log_format and logging.format: %v", err)
	}
}

func TestValidationErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		yaml string
		want string
	}{
		"unknown key":      {minimal + "listen_addr: x\n", "field listen_addr not found"},
		"no name":          {strings.Replace(minimal, "name: witness.example/w1", "", 1), "name \"\""},
		"name with space":  {strings.Replace(minimal, "witness.example/w1", "'a b'", 1), "name \"a b\""},
		"no key":           {strings.Replace(minimal, "key_file: w.key", "", 1), "key_file, pkcs11 or signer is required"},
		"two keys":         {minimal + hsm, "more than one of key_file, pkcs11 and signer"},
		"pkcs11 labels":    {noFile + "pkcs11: {pin_env: P}\n", "token_label is required"},
		"pkcs11 key label": {noFile + "pkcs11: {token_label: t, pin_env: P}\n", "key_label is required"},
		"pkcs11 no pin":    {noFile + "pkcs11: {token_label: t, key_label: k}\n", "exactly one of pin_file and pin_env"},
		"pkcs11 two pins":  {noFile + "pkcs11: {token_label: t, key_label: k, pin_env: P, pin_file: p}\n", "exactly one of pin_file and pin_env"},
		"pkcs11 sessions":  {noFile + "pkcs11: {token_label: t, key_label: k, pin_env: P, sessions: -1}\n", "sessions -1"},
		"pkcs11 module":    {noFile + "pkcs11: {token_label: t, key_label: k, pin_env: P, module: lib/x.so}\n", "module \"lib/x.so\""},
		"pkcs11 unknown":   {noFile + "pkcs11: {token_label: t, key_label: k, pin_env: P, pin: 1234}\n", "field pin not found"},
		"no db":            {strings.Replace(minimal, "db_file: state/w.db", "", 1), "db_file is required"},
		"bad vkey":         {strings.Replace(minimal, "530d903a", "530d903b", 1), "invalid verifier key"},
		"log budget rate":  {strings.Replace(minimal, "origin: example.com/foo", "origin: example.com/foo\n    budget: {rate: 0, burst: 1}", 1), "rate 0"},
		"duplicate origin": {minimal + "  - origin: example.com/foo\n    vkeys: [\"" + vkey + "\"]\n", "listed twice"},
		"no vkeys":         {minimal + "  - origin: example.com/bar\n", "no verifier key"},
		"bad prefix":       {minimal + "submission_prefix: witness/\n", "submission_prefix"},
		"small body cap":   {minimal + "max_body_bytes: 100\n", "max_body_bytes"},
		"negative timeout": {minimal + "read_timeout: -1s\n", "read_timeout"},
		"bad duration":     {minimal + "read_timeout: soon\n", "into time.Duration"},
		"budget burst":     {minimal + "budget: {rate: 1}\n", "burst 0"},
		"log level":        {minimal + "logging: {level: loud}\n", "logging.level \"loud\""},
		"old log level":    {minimal + "log_level: loud\n", "loud"},
		"same listeners":   {minimal + "listen: :80\nmetrics_listen: :80\n", "metrics_listen"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := config.Parse([]byte(tc.yaml))
			if !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrInvalid containing %q", err, tc.want)
			}
		})
	}
	if _, err := config.Parse([]byte(minimal)); err != nil {
		t.Fatalf("minimal config: %v", err)
	}
}

func TestAllErrorsReported(t *testing.T) {
	_, err := config.Parse([]byte("log_format: xml\n"))
	for _, want := range []string{"name", "key_file", "db_file", "logging.format \"xml\""} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

func TestExampleFile(t *testing.T) {
	c, err := config.Load("../witness.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Logs) != 1 || c.Name != "witness.example.com/w1" {
		t.Fatalf("%+v", c)
	}
}
