package c2sp

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
)

// Checkpoint is the parsed text of a checkpoint (c2sp.org/tlog-checkpoint).
type Checkpoint struct {
	Origin     string
	Size       uint64
	Hash       [sha256.Size]byte
	Extensions []string // extension lines, without newlines
}

// ParseCheckpoint parses a note text: origin, decimal size without leading
// zeroes, base64 32-byte root hash, then optional non-empty extension lines,
// each line ending in a newline.
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

// FormatCheckpoint returns the text of a checkpoint without extension lines.
func FormatCheckpoint(origin string, size uint64, hash [sha256.Size]byte) string {
	return origin + "\n" + strconv.FormatUint(size, 10) + "\n" + base64.StdEncoding.EncodeToString(hash[:]) + "\n"
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
func decodeHash(b []byte) ([sha256.Size]byte, error) {
	var h [sha256.Size]byte
	raw, err := base64.StdEncoding.Strict().DecodeString(string(b))
	if err != nil || bytes.ContainsAny(b, "\r\n") {
		return h, fmt.Errorf("bad base64 %q", b)
	}
	if len(raw) != sha256.Size {
		return h, fmt.Errorf("hash has %d bytes, want %d", len(raw), sha256.Size)
	}
	return [sha256.Size]byte(raw), nil
}
