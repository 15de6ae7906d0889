package server

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/stellaops/tlog/signer/keys"
	"github.com/stellaops/tlog/signer/pkcs11"
)

// keyring holds every configured key version. A version whose key pair
// cannot be opened (missing label, unreadable file) stays in the ring as
// unavailable: signing with it fails with ErrKeyUnavailable and the service
// is not ready, and every readiness pass tries to open it again, so that an
// operator can add the key without restarting.
type keyring struct {
	tok   *pkcs11.Token // nil when no key lives in a token
	keys  map[string]*namedKey
	names []string // configuration order
}

type namedKey struct {
	cfg      KeyConfig
	versions []*keyVersion // oldest not_before first
}

type keyVersion struct {
	keyName string
	cfg     KeyVersionConfig

	mu  sync.Mutex
	key keys.Key
	err error // why key is nil
	id  [32]byte
}

func newKeyring(ctx context.Context, tok *pkcs11.Token, cfgs []KeyConfig) *keyring {
	r := &keyring{tok: tok, keys: map[string]*namedKey{}}
	for _, kc := range cfgs {
		nk := &namedKey{cfg: kc}
		for _, vc := range kc.Versions {
			v := &keyVersion{keyName: kc.Name, cfg: vc}
			v.open(ctx, tok)
			nk.versions = append(nk.versions, v)
		}
		slices.SortStableFunc(nk.versions, func(a, b *keyVersion) int {
			if c := a.cfg.NotBefore.Compare(b.cfg.NotBefore); c != 0 {
				return c
			}
			return a.cfg.Version - b.cfg.Version
		})
		r.keys[kc.Name] = nk
		r.names = append(r.names, kc.Name)
	}
	return r
}

// open tries to load the key pair if it is not loaded yet.
func (v *keyVersion) open(ctx context.Context, tok *pkcs11.Token) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.key != nil {
		return
	}
	var k keys.Key
	var err error
	if v.cfg.File != "" {
		k, err = keys.LoadFile(v.cfg.File)
	} else {
		k, err = keys.FromToken(ctx, tok, v.cfg.Label)
	}
	if err == nil {
		_, err = keys.AlgorithmOf(k.Public())
	}
	if err == nil {
		v.id, err = keys.ID(k.Public())
	}
	if err != nil {
		v.err = err
		return
	}
	v.key, v.err = k, nil
}

// get returns the key, or ErrKeyUnavailable.
func (v *keyVersion) get() (keys.Key, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.key == nil {
		return nil, fmt.Errorf("%w: %s version %d: %v", ErrKeyUnavailable, v.keyName, v.cfg.Version, v.err)
	}
	return v.key, nil
}

func (v *keyVersion) active(now time.Time) bool {
	return (v.cfg.NotBefore.IsZero() || !now.Before(v.cfg.NotBefore)) &&
		(v.cfg.NotAfter.IsZero() || now.Before(v.cfg.NotAfter))
}

func (v *keyVersion) state(now time.Time) string {
	switch {
	case !v.cfg.NotBefore.IsZero() && now.Before(v.cfg.NotBefore):
		return "pending"
	case !v.cfg.NotAfter.IsZero() && !now.Before(v.cfg.NotAfter):
		return "expired"
	}
	return "active"
}

// signingKey is one version chosen for a signature.
type signingKey struct {
	version int
	key     keys.Key
	id      [32]byte
}

// active returns every active version (oldest first), all of which must be
// available.
func (nk *namedKey) active(now time.Time) ([]signingKey, error) {
	var out []signingKey
	for _, v := range nk.versions {
		if !v.active(now) {
			continue
		}
		k, err := v.get()
		if err != nil {
			return nil, err
		}
		out = append(out, signingKey{v.cfg.Version, k, v.id})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: key %q", ErrNoActiveVersion, nk.cfg.Name)
	}
	return out, nil
}

// newest returns the active version with the latest not_before, or the
// active version numbered version when version > 0.
func (nk *namedKey) newest(now time.Time, version int) (signingKey, error) {
	for i := len(nk.versions) - 1; i >= 0; i-- {
		v := nk.versions[i]
		if !v.active(now) || (version > 0 && v.cfg.Version != version) {
			continue
		}
		k, err := v.get()
		if err != nil {
			return signingKey{}, err
		}
		return signingKey{v.cfg.Version, k, v.id}, nil
	}
	if version > 0 {
		return signingKey{}, fmt.Errorf("%w: key %q has no active version %d", ErrNoActiveVersion, nk.cfg.Name, version)
	}
	return signingKey{}, fmt.Errorf("%w: key %q", ErrNoActiveVersion, nk.cfg.Name)
}

func (nk *namedKey) hasPurpose(p string) bool { return slices.Contains(nk.cfg.Purposes, p) }

// canary signs a fixed message with every active version and verifies the
// signature with the public key. It first retries opening unavailable
// versions. It returns one problem per failing version.
func (r *keyring) canary(ctx context.Context, now time.Time) map[string]string {
	problems := map[string]string{}
	msg := fmt.Appendf(nil, "stella signer canary %d", now.UnixNano())
	for _, name := range r.names {
		for _, v := range r.keys[name].versions {
			if !v.active(now) {
				continue
			}
			id := fmt.Sprintf("%s/v%d", name, v.cfg.Version)
			v.open(ctx, r.tok)
			k, err := v.get()
			if err == nil {
				err = signVerify(ctx, k, msg)
			}
			if err != nil {
				problems[id] = err.Error()
			}
		}
	}
	return problems
}

func signVerify(ctx context.Context, k keys.Key, msg []byte) error {
	sig, err := keys.SignMessage(ctx, k, msg)
	if err != nil {
		return err
	}
	ok := false
	switch pub := k.Public().(type) {
	case *ecdsa.PublicKey:
		d := sha256.Sum256(msg)
		ok = ecdsa.VerifyASN1(pub, d[:], sig)
	case ed25519.PublicKey:
		ok = ed25519.Verify(pub, msg, sig)
	}
	if !ok {
		return fmt.Errorf("canary signature does not verify")
	}
	return nil
}

func hexID(id [32]byte) string { return hex.EncodeToString(id[:]) }

func spkiDER(pub crypto.PublicKey) []byte {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	return der
}
