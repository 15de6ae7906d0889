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
//
// A key pair that serves a digests key must serve nothing else (see
// [Config.Validate], which refuses shared labels and files); the ring also
// checks the opened public keys, so that the same key pair reached by two
// labels or files is caught: the version opened second stays unavailable.
type keyring struct {
	tok   *pkcs11.Token // nil when no key lives in a token
	keys  map[string]*namedKey
	names []string // configuration order

	mu  sync.Mutex
	ids [2]map[[32]byte]*keyVersion // opened versions by key ID: [0] other keys, [1] digests keys
}

type namedKey struct {
	cfg      KeyConfig
	versions []*keyVersion // oldest not_before first
}

type keyVersion struct {
	keyName string
	cfg     KeyVersionConfig
	digests bool // the key has the digests purpose

	mu  sync.Mutex
	key keys.Key
	err error // why key is nil
	id  [32]byte
}

func newKeyring(ctx context.Context, tok *pkcs11.Token, cfgs []KeyConfig) *keyring {
	r := &keyring{tok: tok, keys: map[string]*namedKey{}, ids: [2]map[[32]byte]*keyVersion{{}, {}}}
	for _, kc := range cfgs {
		nk := &namedKey{cfg: kc}
		for _, vc := range kc.Versions {
			v := &keyVersion{keyName: kc.Name, cfg: vc, digests: slices.Contains(kc.Purposes, PurposeDigests)}
			r.open(ctx, v)
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

// open tries to load v's key pair if it is not loaded yet.
func (r *keyring) open(ctx context.Context, v *keyVersion) {
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
		k, err = keys.FromToken(ctx, r.tok, v.cfg.Label)
	}
	if err == nil {
		_, err = keys.AlgorithmOf(k.Public())
	}
	if err == nil {
		v.id, err = keys.ID(k.Public())
	}
	if err == nil {
		err = r.claim(v)
	}
	if err != nil {
		v.err = err
		return
	}
	v.key, v.err = k, nil
}

// claim records v's key ID, refusing a key pair that already serves a key
// on the other side of the digests / everything-else divide.
func (r *keyring) claim(v *keyVersion) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	side, other := 0, 1
	if v.digests {
		side, other = 1, 0
	}
	if o := r.ids[other][v.id]; o != nil {
		return fmt.Errorf("its key pair (key id %s) is also %s version %d, and a digests key pair must serve nothing else", hexID(v.id), o.keyName, o.cfg.Version)
	}
	r.ids[side][v.id] = v
	return nil
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
			r.open(ctx, v)
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
