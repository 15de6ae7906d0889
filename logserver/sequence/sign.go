package sequence

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"

	"github.com/stellaops/tlog/logserver/tree"
)

// setPayload is the RFC 8785 (JCS) form of the object Rekor signs as an
// entry's SET: {"body","integratedTime","logID","logIndex"}, keys sorted.
// Every value here is a base64/hex string or an integer, for which JCS equals
// this literal encoding (no escapes can occur).
func setPayload(body []byte, integratedTime int64, logID string, logIndex int64) []byte {
	var b strings.Builder
	b.Grow(len(body)*4/3 + 160)
	b.WriteString(`{"body":"`)
	b.WriteString(base64.StdEncoding.EncodeToString(body))
	b.WriteString(`","integratedTime":`)
	b.WriteString(strconv.FormatInt(integratedTime, 10))
	b.WriteString(`,"logID":"`)
	b.WriteString(logID)
	b.WriteString(`","logIndex":`)
	b.WriteString(strconv.FormatInt(logIndex, 10))
	b.WriteString(`}`)
	return []byte(b.String())
}

// rekorCheckpointText is the body of a Rekor v1 checkpoint: origin
// "<hostname> - <treeID>", size, base64 root hash, and no extension lines.
func rekorCheckpointText(hostname string, treeID, size int64, root tree.Hash) string {
	return fmt.Sprintf("%s - %d\n%d\n%s\n", hostname, treeID, size, base64.StdEncoding.EncodeToString(root[:]))
}

// rekorKeyHint is the 4-byte key hint Rekor puts in note signature lines:
// the first bytes of SHA-256 of the key's PKIX DER, for every key type.
func rekorKeyHint(pub any) ([4]byte, error) {
	var hint [4]byte
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return hint, err
	}
	sum := sha256.Sum256(der)
	copy(hint[:], sum[:4])
	return hint, nil
}

// rekorNote appends the one signature line Rekor clients accept.
func rekorNote(text, hostname string, hint [4]byte, sig []byte) []byte {
	line := make([]byte, 0, 4+len(sig))
	line = append(line, hint[:]...)
	line = append(line, sig...)
	return []byte(text + "\n\u2014 " + hostname + " " + base64.StdEncoding.EncodeToString(line) + "\n")
}

// noteKeyHint returns the key hint of a Rekor note's (only) signature line.
func noteKeyHint(note []byte) ([4]byte, bool) {
	var hint [4]byte
	_, sigs, ok := strings.Cut(string(note), "\n\n")
	if !ok {
		return hint, false
	}
	fields := strings.Fields(strings.TrimSpace(sigs))
	if len(fields) < 3 {
		return hint, false
	}
	raw, err := base64.StdEncoding.DecodeString(fields[2])
	if err != nil || len(raw) < 4 {
		return hint, false
	}
	copy(hint[:], raw)
	return hint, true
}
