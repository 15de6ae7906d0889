package pkcs11

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/miekg/pkcs11"
)

// PKCS#11 v3.0 values that github.com/miekg/pkcs11 v1.1.2 (v2.40 headers)
// lacks. SoftHSM2 2.6.1 implements them although it reports cryptoki 2.40.
const (
	ckkECEdwards           = 0x00000040 // CKK_EC_EDWARDS
	ckmECEdwardsKeyPairGen = 0x00001055 // CKM_EC_EDWARDS_KEY_PAIR_GEN
	ckmEdDSA               = 0x00001057 // CKM_EDDSA
)

var (
	oidP256DER    = []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}
	oidEd25519DER = []byte{0x06, 0x03, 0x2b, 0x65, 0x70}
	// PrintableString "edwards25519", the older form of the Ed25519 parameters.
	nameEd25519DER = append([]byte{0x13, 0x0c}, "edwards25519"...)
)

// KeyType is the algorithm of a key pair.
type KeyType string

// Supported key types.
const (
	ECDSAP256 KeyType = "ecdsa-p256"
	Ed25519   KeyType = "ed25519"
)

// ParseKeyType accepts "ecdsa-p256" and "ed25519".
func ParseKeyType(s string) (KeyType, error) {
	switch KeyType(s) {
	case ECDSAP256, Ed25519:
		return KeyType(s), nil
	}
	return "", fmt.Errorf("%w: key type %q (want ecdsa-p256 or ed25519)", ErrUnsupported, s)
}

// KeyInfo describes a key pair found on a token.
type KeyInfo struct {
	Label       string
	ID          string // CKA_ID, hex
	Type        KeyType
	Public      crypto.PublicKey
	Sensitive   bool // CKA_SENSITIVE of the private key
	Extractable bool // CKA_EXTRACTABLE of the private key
}

// findOne returns the single object of class with CKA_LABEL label.
// Private objects are invisible to a session that is not logged in, so
// when none is found there, it reports CKR_USER_NOT_LOGGED_IN (which the
// Token recovers from) rather than ErrKeyNotFound.
func findOne(c *pkcs11.Ctx, h pkcs11.SessionHandle, class uint, label string) (pkcs11.ObjectHandle, error) {
	objs, err := find(c, h, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
	}, 2)
	if err != nil {
		return 0, err
	}
	switch len(objs) {
	case 0:
		if class == pkcs11.CKO_PRIVATE_KEY {
			if err := requireLogin(c, h); err != nil {
				return 0, err
			}
		}
		return 0, fmt.Errorf("%w: %q", ErrKeyNotFound, label)
	case 1:
		return objs[0], nil
	}
	return 0, fmt.Errorf("%w: %q", ErrAmbiguousKey, label)
}

// requireLogin fails with CKR_USER_NOT_LOGGED_IN if session h is public.
func requireLogin(c *pkcs11.Ctx, h pkcs11.SessionHandle) error {
	info, err := c.GetSessionInfo(h)
	if err != nil {
		return wrap("C_GetSessionInfo", err)
	}
	if info.State == pkcs11.CKS_RO_PUBLIC_SESSION || info.State == pkcs11.CKS_RW_PUBLIC_SESSION {
		return &Error{Op: "C_GetSessionInfo", Code: pkcs11.CKR_USER_NOT_LOGGED_IN}
	}
	return nil
}

// find returns up to max objects matching tmpl (all of them if max <= 0).
// C_FindObjectsFinal is always called once the search started.
func find(c *pkcs11.Ctx, h pkcs11.SessionHandle, tmpl []*pkcs11.Attribute, max int) (objs []pkcs11.ObjectHandle, err error) {
	if err := c.FindObjectsInit(h, tmpl); err != nil {
		return nil, wrap("C_FindObjectsInit", err)
	}
	defer func() {
		if ferr := c.FindObjectsFinal(h); ferr != nil && err == nil {
			err = wrap("C_FindObjectsFinal", ferr)
		}
	}()
	for {
		batch := 64
		if max > 0 {
			batch = max - len(objs)
		}
		got, _, err := c.FindObjects(h, batch)
		if err != nil {
			return nil, wrap("C_FindObjects", err)
		}
		objs = append(objs, got...)
		if len(got) == 0 || (max > 0 && len(objs) >= max) {
			return objs, nil
		}
	}
}

func attrs(c *pkcs11.Ctx, h pkcs11.SessionHandle, o pkcs11.ObjectHandle, types ...uint) (map[uint][]byte, error) {
	tmpl := make([]*pkcs11.Attribute, len(types))
	for i, ty := range types {
		tmpl[i] = pkcs11.NewAttribute(ty, nil)
	}
	got, err := c.GetAttributeValue(h, o, tmpl)
	if err != nil {
		return nil, wrap("C_GetAttributeValue", err)
	}
	m := make(map[uint][]byte, len(got))
	for _, a := range got {
		m[a.Type] = a.Value
	}
	return m, nil
}

// ulong decodes a CK_ULONG attribute, which tokens return in host order.
func ulong(b []byte) (uint64, bool) {
	switch len(b) {
	case 8:
		return binary.NativeEndian.Uint64(b), true
	case 4:
		return uint64(binary.NativeEndian.Uint32(b)), true
	}
	return 0, false
}

func boolAttr(b []byte) bool { return len(b) == 1 && b[0] != 0 }

// readPublic reads the public key object labelled label and returns its key.
func readPublic(c *pkcs11.Ctx, h pkcs11.SessionHandle, label string) (KeyType, crypto.PublicKey, error) {
	o, err := findOne(c, h, pkcs11.CKO_PUBLIC_KEY, label)
	if err != nil {
		return "", nil, err
	}
	a, err := attrs(c, h, o, pkcs11.CKA_KEY_TYPE, pkcs11.CKA_EC_PARAMS, pkcs11.CKA_EC_POINT)
	if err != nil {
		return "", nil, err
	}
	kt, _ := ulong(a[pkcs11.CKA_KEY_TYPE])
	return parsePublic(kt, a[pkcs11.CKA_EC_PARAMS], a[pkcs11.CKA_EC_POINT])
}

// parsePublic decodes CKA_EC_POINT (normally a DER OCTET STRING around the
// point; the raw point is accepted too) according to the key type and
// CKA_EC_PARAMS.
func parsePublic(keyType uint64, params, point []byte) (KeyType, crypto.PublicKey, error) {
	raw := point
	var inner []byte
	if rest, err := asn1.Unmarshal(point, &inner); err == nil && len(rest) == 0 {
		raw = inner
	}
	switch {
	case keyType == pkcs11.CKK_EC && bytes.Equal(params, oidP256DER):
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
		if err != nil {
			return "", nil, fmt.Errorf("pkcs11: bad P-256 CKA_EC_POINT: %w", err)
		}
		return ECDSAP256, pub, nil
	case keyType == ckkECEdwards && (bytes.Equal(params, oidEd25519DER) || bytes.Equal(params, nameEd25519DER)):
		if len(raw) != ed25519.PublicKeySize {
			return "", nil, fmt.Errorf("pkcs11: bad Ed25519 CKA_EC_POINT length %d", len(raw))
		}
		return Ed25519, ed25519.PublicKey(bytes.Clone(raw)), nil
	}
	return "", nil, fmt.Errorf("%w: key type 0x%x with parameters %x", ErrUnsupported, keyType, params)
}

// Signer returns a signer for the key pair labelled label (the private and
// the public key object share the label).
func (t *Token) Signer(ctx context.Context, label string) (*Signer, error) {
	s := &Signer{tok: t, label: label}
	err := t.do(ctx, func(h pkcs11.SessionHandle, gen uint64) error {
		kt, pub, err := readPublic(t.mod.ctx, h, label)
		if err != nil {
			return err
		}
		s.kt, s.pub = kt, pub
		_, err = s.handle(h, gen)
		return err
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Generate creates a key pair of type kt inside the token, labelled label,
// and returns its signer. The private key is a token object that is
// private, sensitive and not extractable: it never leaves the token.
// It fails with [ErrKeyExists] if any object already has that label.
func (t *Token) Generate(ctx context.Context, label string, kt KeyType) (*Signer, error) {
	if label == "" {
		return nil, fmt.Errorf("pkcs11: empty key label")
	}
	var mech uint
	var ckk uint
	var params []byte
	switch kt {
	case ECDSAP256:
		mech, ckk, params = pkcs11.CKM_EC_KEY_PAIR_GEN, pkcs11.CKK_EC, oidP256DER
	case Ed25519:
		mech, ckk, params = ckmECEdwardsKeyPairGen, ckkECEdwards, oidEd25519DER
	default:
		return nil, fmt.Errorf("%w: key type %q", ErrUnsupported, kt)
	}
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	c := t.mod.ctx
	err := t.do(ctx, func(h pkcs11.SessionHandle, _ uint64) error {
		// Logged out, private objects are hidden from the label check.
		if err := requireLogin(c, h); err != nil {
			return err
		}
		existing, err := find(c, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_LABEL, label)}, 1)
		if err != nil {
			return err
		}
		if len(existing) > 0 {
			return fmt.Errorf("%w: %q", ErrKeyExists, label)
		}
		common := func(class uint) []*pkcs11.Attribute {
			return []*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, class),
				pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, ckk),
				pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
				pkcs11.NewAttribute(pkcs11.CKA_LABEL, label),
				pkcs11.NewAttribute(pkcs11.CKA_ID, id),
			}
		}
		pubT := append(common(pkcs11.CKO_PUBLIC_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
			pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params))
		privT := append(common(pkcs11.CKO_PRIVATE_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false))
		_, _, err = c.GenerateKeyPair(h, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, pubT, privT)
		return wrap("C_GenerateKeyPair", err)
	})
	if err != nil {
		return nil, err
	}
	return t.Signer(ctx, label)
}

// Keys lists the key pairs on the token whose type this package supports,
// in the token's order. Private keys without a matching public key object
// are skipped.
func (t *Token) Keys(ctx context.Context) ([]KeyInfo, error) {
	var out []KeyInfo
	c := t.mod.ctx
	err := t.do(ctx, func(h pkcs11.SessionHandle, _ uint64) error {
		out = out[:0]
		if err := requireLogin(c, h); err != nil {
			return err
		}
		privs, err := find(c, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY)}, 0)
		if err != nil {
			return err
		}
		for _, o := range privs {
			a, err := attrs(c, h, o, pkcs11.CKA_LABEL, pkcs11.CKA_ID, pkcs11.CKA_SENSITIVE, pkcs11.CKA_EXTRACTABLE)
			if err != nil {
				return err
			}
			label := string(a[pkcs11.CKA_LABEL])
			kt, pub, err := readPublic(c, h, label)
			if err != nil {
				continue
			}
			out = append(out, KeyInfo{
				Label: label, ID: hex.EncodeToString(a[pkcs11.CKA_ID]), Type: kt, Public: pub,
				Sensitive: boolAttr(a[pkcs11.CKA_SENSITIVE]), Extractable: boolAttr(a[pkcs11.CKA_EXTRACTABLE]),
			})
		}
		return nil
	})
	return out, err
}
