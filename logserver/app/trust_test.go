package app

import (
	"crypto/ed25519"
	"testing"
	"time"
)

// Every version of a signer key is listed, none valid before the tree's
// creation; a version that expired before the tree existed is left out.
func TestV2LogsFromVersions(t *testing.T) {
	created := time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC)
	pub := func(b byte) ed25519.PublicKey {
		k := make(ed25519.PublicKey, ed25519.PublicKeySize)
		k[0] = b
		return k
	}
	v := &rekorV2{pub: pub(2), versions: []keyVersion{
		{version: 1, pub: pub(1), notAfter: created.Add(-time.Hour)}, // retired before the tree
		{version: 2, pub: pub(2), notBefore: created.Add(-24 * time.Hour), notAfter: created.Add(30 * 24 * time.Hour)},
		{version: 3, pub: pub(3), notBefore: created.Add(29 * 24 * time.Hour)},
	}}
	logs := v2Logs("https://log.example", v, created)
	if len(logs) != 2 {
		t.Fatalf("%d logs: %+v", len(logs), logs)
	}
	if !logs[0].PublicKey.(ed25519.PublicKey).Equal(pub(2)) || !logs[0].Start.Equal(created) || !logs[0].End.Equal(created.Add(30*24*time.Hour)) {
		t.Fatalf("version 2: %+v", logs[0])
	}
	if !logs[1].PublicKey.(ed25519.PublicKey).Equal(pub(3)) || !logs[1].Start.Equal(created.Add(29*24*time.Hour)) || !logs[1].End.IsZero() {
		t.Fatalf("version 3: %+v", logs[1])
	}
	if l := v2Logs("https://log.example", &rekorV2{pub: pub(9)}, created); len(l) != 1 || !l[0].Start.Equal(created) || !l[0].End.IsZero() {
		t.Fatalf("key file: %+v", l)
	}
}
