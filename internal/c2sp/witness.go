package c2sp

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"time"
)

// MaxProofLines is the most consistency proof lines an add-checkpoint
// request may carry (c2sp.org/tlog-witness: "The client MUST NOT send more
// than 63").
const MaxProofLines = 63

// SizeContentType is the media type of a 409 body (the witness's size).
const SizeContentType = "text/x.tlog.size"

// AddCheckpoint is an add-checkpoint request body (c2sp.org/tlog-witness):
//
//	old <size>\n
//	<base64 hash>\n   (0 to 63 lines)
//	\n
//	<signed checkpoint note>
type AddCheckpoint struct {
	OldSize    uint64
	Proof      [][sha256.Size]byte
	Checkpoint []byte // the signed note, verbatim
}

// ParseAddCheckpoint parses an add-checkpoint body. It does not look inside
// the checkpoint note.
func ParseAddCheckpoint(body []byte) (AddCheckpoint, error) {
	var r AddCheckpoint
	line, rest, ok := bytes.Cut(body, []byte("\n"))
	if !ok {
		return r, fmt.Errorf("%w: missing old size line", ErrMalformed)
	}
	num, ok := bytes.CutPrefix(line, []byte("old "))
	if !ok {
		return r, fmt.Errorf("%w: first line must be \"old <size>\"", ErrMalformed)
	}
	size, err := parseDecimal(num)
	if err != nil {
		return r, fmt.Errorf("%w: old size: %v", ErrMalformed, err)
	}
	r.OldSize = size
	for {
		line, rest, ok = bytes.Cut(rest, []byte("\n"))
		if !ok {
			return r, fmt.Errorf("%w: missing empty line before the checkpoint", ErrMalformed)
		}
		if len(line) == 0 {
			break
		}
		if len(r.Proof) == MaxProofLines {
			return r, fmt.Errorf("%w: more than %d consistency proof lines", ErrMalformed, MaxProofLines)
		}
		h, err := decodeHash(line)
		if err != nil {
			return r, fmt.Errorf("%w: proof line %d: %v", ErrMalformed, len(r.Proof)+1, err)
		}
		r.Proof = append(r.Proof, h)
	}
	if len(rest) == 0 {
		return r, fmt.Errorf("%w: missing checkpoint", ErrMalformed)
	}
	r.Checkpoint = rest
	return r, nil
}

// Marshal encodes the request body.
func (r AddCheckpoint) Marshal() ([]byte, error) {
	if len(r.Proof) > MaxProofLines {
		return nil, fmt.Errorf("consistency proof has %d lines, at most %d allowed", len(r.Proof), MaxProofLines)
	}
	b := make([]byte, 0, 32+45*len(r.Proof)+len(r.Checkpoint))
	b = append(b, "old "...)
	b = strconv.AppendUint(b, r.OldSize, 10)
	b = append(b, '\n')
	for _, h := range r.Proof {
		b = base64.StdEncoding.AppendEncode(b, h[:])
		b = append(b, '\n')
	}
	b = append(b, '\n')
	return append(b, r.Checkpoint...), nil
}

// FormatSizeBody is the body of a 409 answer: the witness's size.
func FormatSizeBody(size uint64) []byte {
	return append(strconv.AppendUint(nil, size, 10), '\n')
}

// ParseSizeBody parses a 409 body, "<decimal size>\n" (the trailing newline
// optional).
func ParseSizeBody(body []byte) (uint64, error) {
	n, err := parseDecimal(bytes.TrimSuffix(body, []byte("\n")))
	if err != nil {
		return 0, fmt.Errorf("%w: size body: %v", ErrMalformed, err)
	}
	return n, nil
}

// CosignatureTime returns the timestamp of a cosignature/v1 signature (the
// bytes after the key ID of a signature line: 8-byte big-endian seconds,
// then the Ed25519 signature).
func CosignatureTime(sig []byte) (time.Time, error) {
	if len(sig) != 8+ed25519.SignatureSize {
		return time.Time{}, fmt.Errorf("%w: cosignature/v1 has %d bytes, want 72", ErrMalformed, len(sig))
	}
	ts := binary.BigEndian.Uint64(sig)
	if ts == 0 || ts > math.MaxInt64 {
		return time.Time{}, fmt.Errorf("%w: cosignature timestamp %d out of range", ErrMalformed, ts)
	}
	return time.Unix(int64(ts), 0), nil
}
