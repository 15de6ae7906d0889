package c2sp

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/note"
)

// ErrBadSignature means a signature line's key name and key ID match a
// trusted key but the signature does not verify (c2sp.org/tlog-witness:
// 403).
var ErrBadSignature = errors.New("checkpoint has a failing signature from a trusted log key")

// ErrUntrusted means no signature line verifies with a trusted key (403).
var ErrUntrusted = errors.New("checkpoint has no valid signature from a trusted log key")

// Open parses and verifies a signed note against the trusted keys vs.
//
// It is x/mod's note.Open (format rules, at most 100 signatures) made
// strict: note.Open verifies only the first line of each (key name, key ID)
// and drops later ones silently, so a valid line followed by a corrupt line
// of the same key would pass. Open verifies every line whose (name, ID) is
// a trusted key's. Errors: ErrMalformed (not a signed note), ErrUntrusted
// (no line verifies with a trusted key), ErrBadSignature (some trusted
// key's line fails).
func Open(msg []byte, vs note.Verifiers) (*note.Note, error) {
	n, err := note.Open(msg, vs)
	if err != nil {
		var inv *note.InvalidSignatureError
		var unv *note.UnverifiedNoteError
		switch {
		case errors.As(err, &inv):
			return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
		case errors.As(err, &unv):
			return nil, fmt.Errorf("%w: %v", ErrUntrusted, err)
		default:
			return nil, fmt.Errorf("%w: signed note: %v", ErrMalformed, err)
		}
	}
	// note.Open accepted the format: text, "\n\n", then signature lines,
	// the text ending at the last blank line.
	sigs := msg[len(n.Text)+1:]
	for len(sigs) > 0 {
		line, rest, _ := bytes.Cut(sigs, []byte("\n"))
		sigs = rest
		name, id, sig, err := ParseSignatureLine(line)
		if err != nil {
			return nil, err // note.Open already refuses these
		}
		v, err := vs.Verifier(name, id)
		if err != nil {
			continue // an unknown key: ignored, as the spec says
		}
		if !v.Verify([]byte(n.Text), sig) {
			return nil, fmt.Errorf("%w: %s+%08x", ErrBadSignature, name, id)
		}
	}
	return n, nil
}

// ParseSignatureLine parses one signature line without its newline,
// "— <name> <base64(key ID || signature)>", into its parts.
func ParseSignatureLine(line []byte) (name string, id uint32, sig []byte, err error) {
	rest, ok := bytes.CutPrefix(line, []byte("\u2014 "))
	if !ok {
		return "", 0, nil, fmt.Errorf("%w: %q is not a signature line", ErrMalformed, snip(line))
	}
	nm, b64, ok := bytes.Cut(rest, []byte(" "))
	if !ok || len(nm) == 0 {
		return "", 0, nil, fmt.Errorf("%w: signature line %q has no key name", ErrMalformed, snip(line))
	}
	raw, err := base64.StdEncoding.DecodeString(string(b64))
	if err != nil || len(raw) < 5 {
		return "", 0, nil, fmt.Errorf("%w: signature line %q: bad base64", ErrMalformed, snip(line))
	}
	return string(nm), binary.BigEndian.Uint32(raw), raw[4:], nil
}

func snip(b []byte) string {
	if len(b) > 120 {
		return string(b[:120]) + "…"
	}
	return string(b)
}
