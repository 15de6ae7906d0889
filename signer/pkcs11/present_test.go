package pkcs11

import (
	"crypto"
	"crypto/sha256"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestPresentAndPoolWaitObserver(t *testing.T) {
	var waits atomic.Int64
	tok, err := Open(t.Context(), Config{Module: testModule, TokenLabel: testToken, PIN: testPIN, Sessions: 1,
		ObservePoolWait: func(time.Duration) { waits.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	if tok.Sessions() != 1 {
		t.Errorf("Sessions() = %d", tok.Sessions())
	}
	if err := tok.Present(); err != nil {
		t.Fatalf("Present: %v", err)
	}
	s, err := tok.Generate(t.Context(), "present-test-"+time.Now().Format("150405.000000000"), ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	before := waits.Load()
	d := sha256.Sum256([]byte("x"))
	if _, err := s.SignContext(t.Context(), d[:], crypto.SHA256); err != nil {
		t.Fatal(err)
	}
	if waits.Load() != before+1 {
		t.Errorf("pool wait observed %d times for one signature", waits.Load()-before)
	}
	tok.Close()
	if err := tok.Present(); !errors.Is(err, ErrClosed) {
		t.Errorf("Present after Close: %v", err)
	}
}
