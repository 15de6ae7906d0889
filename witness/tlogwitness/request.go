package tlogwitness

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
)

// MaxProofLines is the most consistency proof lines a request may carry
// (c2sp.org/tlog-witness: "The client MUST NOT send more than 63").
const MaxProofLines = 63

// Request is a parsed add-checkpoint request body.
type Request struct {
	OldSize    uint64
	Proof      [][]byte
	Checkpoint []byte // the signed note, verbatim
}

// ParseRequest parses an add-checkpoint body:
//
//	old <size>\n
//	<base64 hash>\n   (0 to 63 lines)
//	\n
//	<signed checkpoint note>
//
// Errors wrap ErrMalformed.
func ParseRequest(body []byte) (Request, error) {
	var r Request
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

// Checkpoint is the parsed text of a checkpoint (c2sp.org/tlog-checkpoint).
type Checkpoint struct {
	Origin     string
	Size       uint64
	Hash       []byte
	Extensions []string
}

// ParseCheckpoint parses a note text: origin, decimal size without leading
// zeroes, base64 32-byte root hash, then optional non-empty extension lines,
// each line ending in a newline. Errors wrap ErrMalformed.
func ParseCheckpoint(text string) (Checkpoint, error) {
	var c Checkpoint
	if len(text) == 0 || text[len(text)-1] != '\n' {
		return c, fmt.Errorf("%w: checkpoint must end with a newline", ErrMalformed)
	}
	lines := bytes.Split([]byte(text[:len(text)-1]), []byte("\n"))
	if len(lines) < 3 {
		return c, fmt.Errorf("%w: checkpoint has fewer than 3 lines", ErrMalformed)
	}
	if len(lines[0]) == 0 {
		return c, fmt.Errorf("%w: empty origin", ErrMalformed)
	}
	c.Origin = string(lines[0])
	size, err := parseDecimal(lines[1])
	if err != nil {
		return c, fmt.Errorf("%w: checkpoint size: %v", ErrMalformed, err)
	}
	c.Size = size
	if c.Hash, err = decodeHash(lines[2]); err != nil {
		return c, fmt.Errorf("%w: checkpoint root hash: %v", ErrMalformed, err)
	}
	for _, ext := range lines[3:] {
		if len(ext) == 0 {
			return c, fmt.Errorf("%w: empty extension line", ErrMalformed)
		}
		c.Extensions = append(c.Extensions, string(ext))
	}
	return c, nil
}

// parseDecimal parses an ASCII decimal without sign or leading zeroes.
func parseDecimal(b []byte) (uint64, error) {
	n, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a decimal size", b)
	}
	if strconv.FormatUint(n, 10) != string(b) {
		return 0, fmt.Errorf("%q is not in canonical decimal form", b)
	}
	return n, nil
}

// decodeHash decodes a canonical standard-base64 SHA-256 hash.
func decodeHash(b []byte) ([]byte, error) {
	h, err := base64.StdEncoding.Strict().DecodeString(string(b))
	if err != nil || bytes.ContainsAny(b, "\r\n") {
		return nil, fmt.Errorf("bad base64 %q", b)
	}
	if len(h) != sha256.Size {
		return nil, fmt.Errorf("hash has %d bytes, want %d", len(h), sha256.Size)
	}
	return h, nil
}
