package keys

import (
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

func TestConfigYAML(t *testing.T) {
	const doc = `
pkcs11:
  module: /usr/lib/softhsm/libsofthsm2.so
  token_label: prod
  pin_file: /run/secrets/signer-pin
  pin: "1234"
  sessions: 2
  pool_wait: 5s
  label: log-checkpoint
`
	var c Config
	if err := yaml.Unmarshal([]byte(doc), &c); err != nil {
		t.Fatal(err)
	}
	p := c.PKCS11
	if p == nil || p.Module != "/usr/lib/softhsm/libsofthsm2.so" || p.TokenLabel != "prod" || p.PINFile != "/run/secrets/signer-pin" ||
		p.Sessions != 2 || p.PoolWait != 5*time.Second || p.Label != "log-checkpoint" {
		t.Fatalf("decoded %+v", p)
	}
	if p.PIN != "" {
		t.Fatal("a PIN was read from the configuration file")
	}
}
