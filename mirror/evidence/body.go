package evidence

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Body is what the mirror reads from a Rekor entry body (v1 and v2 kinds).
type Body struct {
	Kind, APIVersion string
	// Digest is the signed artifact digest (hashedrekord) or payload
	// digest (dsse, intoto), of algorithm DigestAlg.
	Digest []byte
	// DigestAlg is SHA-256, or SHA-384/SHA-512 for hashedrekord (Ed25519
	// keys sign a SHA-512 digest, Ed25519ph, in Rekor v1 and v2).
	DigestAlg crypto.Hash
	// EnvelopeDigest is, for intoto 0.0.2, the SHA-256 of the DSSE envelope
	// exactly as it was submitted to the log.
	EnvelopeDigest []byte
	// Sigs are the signatures with the key or certificate (DER or PEM)
	// that verifies each.
	Sigs []BodySig
}

// BodySig is one signature of a body.
type BodySig struct {
	Sig []byte
	Key []byte
}

// ParseBody reads hashedrekord 0.0.1/0.0.2, dsse 0.0.1/0.0.2 and intoto
// 0.0.1/0.0.2 bodies; other kinds return only Kind and APIVersion. A Sig
// with a nil Sig (intoto 0.0.1) is a key any envelope signature may match.
func ParseBody(b []byte) (*Body, error) {
	var top struct {
		Kind       string          `json:"kind"`
		APIVersion string          `json:"apiVersion"`
		Spec       json.RawMessage `json:"spec"`
	}
	if err := json.Unmarshal(b, &top); err != nil || top.Kind == "" {
		return nil, errors.New("entry body is not a Rekor entry")
	}
	body := &Body{Kind: top.Kind, APIVersion: top.APIVersion, DigestAlg: crypto.SHA256}
	var err error
	switch top.Kind + "/" + top.APIVersion {
	case "hashedrekord/0.0.1":
		var s struct {
			Data struct {
				Hash struct{ Algorithm, Value string }
			}
			Signature struct {
				Content   []byte
				PublicKey struct{ Content []byte }
			}
		}
		if err = json.Unmarshal(top.Spec, &s); err == nil {
			body.DigestAlg, body.Digest, err = hexDigest(s.Data.Hash.Algorithm, s.Data.Hash.Value)
			body.Sigs = []BodySig{{s.Signature.Content, s.Signature.PublicKey.Content}}
		}
	case "hashedrekord/0.0.2":
		var s struct {
			HashedRekordV002 struct {
				Data struct {
					Algorithm string
					Digest    []byte
				}
				Signature struct {
					Content  []byte
					Verifier verifierV2
				}
			}
		}
		if err = json.Unmarshal(top.Spec, &s); err == nil {
			h := s.HashedRekordV002
			var ok bool
			body.DigestAlg, ok = map[string]crypto.Hash{"SHA2_256": crypto.SHA256, "SHA2_384": crypto.SHA384, "SHA2_512": crypto.SHA512}[h.Data.Algorithm]
			if !ok || len(h.Data.Digest) != body.DigestAlg.Size() {
				err = fmt.Errorf("digest algorithm %q with a %d-byte digest, want SHA2_256, SHA2_384 or SHA2_512", h.Data.Algorithm, len(h.Data.Digest))
			}
			body.Digest = h.Data.Digest
			body.Sigs = []BodySig{{h.Signature.Content, h.Signature.Verifier.der()}}
		}
	case "dsse/0.0.1":
		var s struct {
			PayloadHash struct{ Algorithm, Value string }
			Signatures  []struct {
				Signature []byte
				Verifier  []byte
			}
		}
		if err = json.Unmarshal(top.Spec, &s); err == nil {
			body.Digest, err = hexSHA256(s.PayloadHash.Algorithm, s.PayloadHash.Value)
			for _, x := range s.Signatures {
				body.Sigs = append(body.Sigs, BodySig{x.Signature, x.Verifier})
			}
		}
	case "dsse/0.0.2":
		var s struct {
			DsseV002 struct {
				PayloadHash struct {
					Algorithm string
					Digest    []byte
				}
				Signatures []struct {
					Content  []byte
					Verifier verifierV2
				}
			}
		}
		if err = json.Unmarshal(top.Spec, &s); err == nil {
			body.Digest = s.DsseV002.PayloadHash.Digest
			for _, x := range s.DsseV002.Signatures {
				body.Sigs = append(body.Sigs, BodySig{x.Content, x.Verifier.der()})
			}
		}
	case "intoto/0.0.1":
		// Rekor's canonical body keeps the key that verified the envelope,
		// the SHA-256 of the envelope as submitted (hash) and, but for old
		// entries, of its payload (payloadHash); not the envelope.
		var s struct {
			PublicKey []byte
			Content   struct {
				Hash        struct{ Algorithm, Value string }
				PayloadHash *struct{ Algorithm, Value string }
			}
		}
		if err = json.Unmarshal(top.Spec, &s); err == nil {
			body.EnvelopeDigest, err = hexSHA256(s.Content.Hash.Algorithm, s.Content.Hash.Value)
		}
		if err == nil && s.Content.PayloadHash != nil {
			body.Digest, err = hexSHA256(s.Content.PayloadHash.Algorithm, s.Content.PayloadHash.Value)
		}
		if err == nil && len(s.PublicKey) == 0 {
			err = errors.New("no public key")
		}
		body.Sigs = []BodySig{{nil, s.PublicKey}}
	case "intoto/0.0.2":
		// Rekor's canonical body keeps the envelope's payload type and
		// signatures (each sig the base64 text of the envelope's sig, each
		// with the PEM key or certificate that verified it), the SHA-256 of
		// the envelope as submitted (hash) and of the payload (payloadHash).
		var s struct {
			Content struct {
				Hash        struct{ Algorithm, Value string }
				PayloadHash struct{ Algorithm, Value string }
				Envelope    struct {
					Signatures []struct {
						PublicKey []byte
						Sig       []byte
					}
				}
			}
		}
		if err = json.Unmarshal(top.Spec, &s); err == nil {
			body.Digest, err = hexSHA256(s.Content.PayloadHash.Algorithm, s.Content.PayloadHash.Value)
		}
		if err == nil {
			body.EnvelopeDigest, err = hexSHA256(s.Content.Hash.Algorithm, s.Content.Hash.Value)
		}
		for _, x := range s.Content.Envelope.Signatures {
			if err != nil {
				break
			}
			var sig []byte
			if sig, err = base64.StdEncoding.DecodeString(string(x.Sig)); err != nil {
				err = errors.New("an envelope signature is not base64")
				break
			}
			body.Sigs = append(body.Sigs, BodySig{sig, x.PublicKey})
		}
		if err == nil && len(body.Sigs) == 0 {
			err = errors.New("no envelope signature")
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s body: %w", top.Kind, top.APIVersion, err)
	}
	return body, nil
}

type verifierV2 struct {
	PublicKey       *struct{ RawBytes []byte }
	X509Certificate *struct{ RawBytes []byte }
}

func (v verifierV2) der() []byte {
	if v.X509Certificate != nil {
		return pemOf("CERTIFICATE", v.X509Certificate.RawBytes)
	}
	if v.PublicKey != nil {
		return pemOf("PUBLIC KEY", v.PublicKey.RawBytes)
	}
	return nil
}

// hexDigest reads a hashedrekord 0.0.1 digest: sha256, sha384 or sha512.
func hexDigest(alg, value string) (crypto.Hash, []byte, error) {
	h, ok := map[string]crypto.Hash{"sha256": crypto.SHA256, "sha384": crypto.SHA384, "sha512": crypto.SHA512}[alg]
	if !ok {
		return 0, nil, fmt.Errorf("hash algorithm %q, want sha256, sha384 or sha512", alg)
	}
	d, err := hex.DecodeString(value)
	if err != nil || len(d) != h.Size() {
		return 0, nil, fmt.Errorf("hash value is not a hex %s", alg)
	}
	return h, d, nil
}

func hexSHA256(alg, value string) ([]byte, error) {
	if alg != "sha256" {
		return nil, fmt.Errorf("hash algorithm %q, want sha256", alg)
	}
	d, err := hex.DecodeString(value)
	if err != nil || len(d) != sha256.Size {
		return nil, errors.New("hash value is not a hex SHA-256")
	}
	return d, nil
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// Identity is who and what an entry names: key fingerprints (SHA256:<hex
// of the SPKI>), certificate subjects (CN, e-mail, URI and DNS SANs) and
// artifact digests (sha256:<hex>).
type Identity struct {
	Keys     []string `json:"keys"`
	Subjects []string `json:"subjects"`
	Digests  []string `json:"digests"`
}

// KeyMaterial parses a PEM (or base64 PEM, or DER) key or certificate and
// returns the public key and the certificate (nil for a bare key).
func KeyMaterial(b []byte) (crypto.PublicKey, *x509.Certificate, error) {
	if blk, _ := pem.Decode(b); blk != nil {
		b = blk.Bytes
	} else if dec, err := base64.StdEncoding.DecodeString(string(b)); err == nil {
		if blk, _ := pem.Decode(dec); blk != nil {
			b = blk.Bytes
		} else {
			b = dec
		}
	}
	if c, err := x509.ParseCertificate(b); err == nil {
		return c.PublicKey, c, nil
	}
	k, err := x509.ParsePKIXPublicKey(b)
	if err != nil {
		return nil, nil, errors.New("neither a certificate nor a PKIX public key")
	}
	return k, nil, nil
}

// Fingerprint is SHA256:<hex of the key's PKIX DER>.
func Fingerprint(pub crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return ""
	}
	s := sha256.Sum256(der)
	return "SHA256:" + hex.EncodeToString(s[:])
}

// Identities lists the identities a body names.
func (b *Body) Identities() Identity {
	id := Identity{Keys: []string{}, Subjects: []string{}, Digests: []string{}}
	seen := map[string]bool{}
	add := func(list *[]string, s string) {
		if s != "" && !seen[s] {
			seen[s] = true
			*list = append(*list, s)
		}
	}
	for _, s := range b.Sigs {
		pub, cert, err := KeyMaterial(s.Key)
		if err != nil {
			continue
		}
		add(&id.Keys, Fingerprint(pub))
		if cert != nil {
			add(&id.Subjects, cert.Subject.CommonName)
			for _, e := range cert.EmailAddresses {
				add(&id.Subjects, e)
			}
			for _, u := range cert.URIs {
				add(&id.Subjects, u.String())
			}
			for _, d := range cert.DNSNames {
				add(&id.Subjects, d)
			}
		}
	}
	if len(b.Digest) > 0 {
		add(&id.Digests, digestName(b.DigestAlg)+":"+hex.EncodeToString(b.Digest))
	}
	sort.Strings(id.Keys)
	sort.Strings(id.Subjects)
	return id
}

// String is a one-line summary.
func (i Identity) String() string {
	var parts []string
	parts = append(parts, i.Keys...)
	parts = append(parts, i.Subjects...)
	parts = append(parts, i.Digests...)
	return strings.Join(parts, " ")
}

// EntryDigest is sha256:<hex> of a raw log entry.
func EntryDigest(entry []byte) string {
	d := sha256.Sum256(entry)
	return "sha256:" + hex.EncodeToString(d[:])
}

// digestName is the lower-case name Rekor gives a digest algorithm.
func digestName(h crypto.Hash) string {
	switch h {
	case crypto.SHA384:
		return "sha384"
	case crypto.SHA512:
		return "sha512"
	}
	return "sha256"
}
