// Package canonical puts JSON texts in the JSON Canonicalization Scheme
// form (RFC 8785, JCS): object members sorted by their UTF-16 code units,
// no insignificant whitespace, strings with the minimal escapes, numbers
// in the ECMAScript Number-to-String form. The same JSON value, however it
// was written, gives the same bytes, so a signer that canonicalises before
// signing gives the same DSSE PAE for the same request.
//
// RFC 8785 numbers are IEEE 754 doubles. An integer beyond ±2^53 would be
// silently rounded (a different value would be signed than the one sent),
// so [Transform] refuses it: I-JSON (RFC 7493) says to send such numbers
// as strings. Duplicate member names are refused too (RFC 8785 §3.1 needs
// I-JSON input). Pure functions, safe for concurrent use.
package canonical

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/cyberphone/json-canonicalization/go/src/webpki.org/jsoncanonicalizer"
)

// ErrNotIJSON is wrapped by every refusal of Transform.
var ErrNotIJSON = errors.New("canonical: not I-JSON")

// maxExact is 2^53: every integer up to it is exact in a double.
const maxExact = 1 << 53

// Transform returns the RFC 8785 form of the JSON text b.
func Transform(b []byte) ([]byte, error) {
	if err := check(b); err != nil {
		return nil, err
	}
	out, err := jsoncanonicalizer.Transform(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotIJSON, err)
	}
	return out, nil
}

// check walks b and refuses duplicate member names, integers that a
// double cannot hold exactly, and numbers out of the double range; errors
// name the value by JSON pointer.
func check(b []byte) error {
	if !utf8.Valid(b) {
		return fmt.Errorf("%w: not UTF-8", ErrNotIJSON)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var walk func(ptr string) error
	walk = func(ptr string) error {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrNotIJSON, err)
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				seen := map[string]bool{}
				for dec.More() {
					k, err := dec.Token()
					if err != nil {
						return fmt.Errorf("%w: %v", ErrNotIJSON, err)
					}
					key := k.(string)
					if seen[key] {
						return fmt.Errorf("%w: %s: member %q twice", ErrNotIJSON, or(ptr), key)
					}
					seen[key] = true
					if err := walk(ptr + "/" + escape(key)); err != nil {
						return err
					}
				}
			case '[':
				for i := 0; dec.More(); i++ {
					if err := walk(ptr + "/" + strconv.Itoa(i)); err != nil {
						return err
					}
				}
			}
			if _, err := dec.Token(); err != nil {
				return fmt.Errorf("%w: %v", ErrNotIJSON, err)
			}
		case json.Number:
			return checkNumber(or(ptr), string(v))
		}
		return nil
	}
	if err := walk(""); err != nil {
		return err
	}
	if _, err := dec.Token(); err == nil {
		return fmt.Errorf("%w: data after the JSON value", ErrNotIJSON)
	}
	return nil
}

func checkNumber(ptr, lit string) error {
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil || math.IsInf(f, 0) {
		return fmt.Errorf("%w: %s: number %s is outside the IEEE 754 double range", ErrNotIJSON, ptr, lit)
	}
	if strings.ContainsAny(lit, ".eE") {
		return nil
	}
	if i, err := strconv.ParseInt(lit, 10, 64); err != nil || i > maxExact || i < -maxExact {
		return fmt.Errorf("%w: %s: integer %s is beyond ±2^53 and would change when canonicalised; send it as a string", ErrNotIJSON, ptr, lit)
	}
	return nil
}

func or(ptr string) string {
	if ptr == "" {
		return "/"
	}
	return ptr
}

func escape(k string) string {
	return strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}
