// Package notekey holds the C2SP signed-note keys every component shares:
// key names, key IDs, verifier keys (vkeys: formatting, SplitVKey, and the
// verifiers of log keys and witness cosignature/v1 keys built on x/mod's and
// transparency-dev/formats' implementations) and the cosignature/v1 signed
// message. Notes, checkpoints and the tlog-witness exchange are in package
// c2sp.
package notekey

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Signature types of c2sp.org/signed-note.
const (
	Ed25519       byte = 0x01 // Ed25519 note signature
	ECDSA         byte = 0x02 // ECDSA (Rekor-style: key ID from the SPKI)
	CosignatureV1 byte = 0x04 // Ed25519 cosignature/v1
)

// ValidName reports whether name is a signed-note key name: non-empty,
// valid UTF-8, without spaces, '+' or control characters.
func ValidName(name string) bool {
	return name != "" && utf8.ValidString(name) &&
		strings.IndexFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == '+' }) < 0
}

// KeyID is the key ID of an Ed25519-based key (types 0x01, 0x04):
// SHA-256(name || 0x0A || type || public key)[:4].
func KeyID(name string, typ byte, pub []byte) uint32 {
	h := KeyHash(name, typ, pub)
	return binary.BigEndian.Uint32(h[:])
}

// KeyHash is the whole SHA-256(name || 0x0A || type || public key) of which
// KeyID is the first four bytes: Rekor v2's log ID (logId.keyId in entries
// and trusted roots).
func KeyHash(name string, typ byte, pub []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', typ})
	h.Write(pub)
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// ECDSAKeyID is the key ID of an ECDSA key: SHA-256(DER SPKI)[:4], without
// the name (as Rekor and transparency-dev/formats compute it).
func ECDSAKeyID(spki []byte) uint32 {
	sum := sha256.Sum256(spki)
	return binary.BigEndian.Uint32(sum[:4])
}

// VKey formats a verifier key: name+hex(id)+base64(type || key).
func VKey(name string, id uint32, typ byte, key []byte) string {
	return fmt.Sprintf("%s+%08x+%s", name, id, base64.StdEncoding.EncodeToString(append([]byte{typ}, key...)))
}

// CosignatureMessage is the message a cosignature/v1 signature covers for a
// note text (ending in a newline, without signature lines) at timestamp.
func CosignatureMessage(text []byte, timestamp uint64) []byte {
	m := make([]byte, 0, len(text)+40)
	m = append(m, "cosignature/v1\ntime "...)
	m = strconv.AppendUint(m, timestamp, 10)
	m = append(m, '\n')
	return append(m, text...)
}
