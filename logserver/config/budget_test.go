package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const base = "hostname: log.example\ndatabase:\n  dsn: u:p@tcp(127.0.0.1:3306)/db\nkey:\n  file: k.pem\n"

func TestBudgetDefaults(t *testing.T) {
	c, err := load(t, base+"budgets:\n  enabled: true\n  tenants:\n    scanner: {hourly_limit: 1000}\n    open: {hourly_limit: -1}\n")
	if err != nil {
		t.Fatal(err)
	}
	seed := BudgetLimits{HourlyLimit: 100, BurstLimit: 200, BurstWindow: 10 * time.Minute, EdgeBundleDailyLimit: 50}
	if c.Budgets.Default != seed || c.Tenants.DefaultTenant != "default" {
		t.Fatalf("defaults %+v, tenant %q; want the seed's %+v and \"default\"", c.Budgets.Default, c.Tenants.DefaultTenant, seed)
	}
	if got := c.Budgets.Tenants["scanner"]; got != (BudgetLimits{1000, 200, 10 * time.Minute, 50}) {
		t.Fatalf("override %+v: unset fields must take the default's", got)
	}
	if got := c.Budgets.Tenants["open"]; got.HourlyLimit != -1 {
		t.Fatalf("unlimited override %+v", got)
	}
	if c, err := load(t, base); err != nil || c.Budgets.Enabled {
		t.Fatalf("budgets must be off unless enabled: %+v %v", c.Budgets, err)
	}
}

func TestBudgetValidation(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("abc\n"), 0o600)
	for _, c := range []struct{ yaml, want string }{
		{"budgets:\n  default: {burst_window: 7m}\n", "burst_window 7m0s: want whole seconds dividing 1h"},
		{"budgets:\n  default: {burst_window: 2h}\n", "burst_window 2h0m0s"},
		{"budgets:\n  default: {hourly_limit: -2}\n", "hourly_limit -2: want a positive limit or -1"},
		{"budgets:\n  tenants:\n    'bad name': {}\n", "budgets.tenants \"bad name\": not a tenant name"},
		{"budgets:\n  edge_kinds: [DSSE]\n", "edge_kinds \"DSSE\""},
		{"budgets:\n  max_retry_after: 1500ms\n", "max_retry_after 1.5s"},
		{"tenants:\n  identities:\n    - name: a\n", "needs token_sha256, token_files or client_certs"},
		{"tenants:\n  identities:\n    - {name: a, token_sha256: [abcd]}\n", "token_sha256 \"abcd\": want 64 hex digits"},
		{"tenants:\n  identities:\n    - {name: a, token_files: [" + short + "]}\n", "token shorter than 16 bytes"},
		{"tenants:\n  identities:\n    - {name: a, token_files: [" + filepath.Join(dir, "missing") + "]}\n", "no such file"},
		{"tenants:\n  identities:\n    - {name: a, client_certs: [cn:a]}\n", "client_certs need tls.client_ca_file"},
		{"tenants:\n  default_tenant: public\n  identities:\n    - {name: public, token_sha256: [" + strings.Repeat("ab", 32) + "]}\n", "not the default tenant"},
		{"tls:\n  cert_file: c.pem\n", "tls.cert_file and tls.key_file are required"},
		{"tls:\n  cert_file: c.pem\n  key_file: k.pem\n  require_client_cert: true\n", "require_client_cert needs tls.client_ca_file"},
	} {
		_, err := load(t, base+c.yaml)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error with %q", c.yaml, err, c.want)
		}
	}
}
