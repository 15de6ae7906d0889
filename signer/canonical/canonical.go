// Package canonical puts JSON texts in the JSON Canonicalization Scheme
// form (RFC 8785, JCS): object members sorted by their UTF-16 code units,
// no insignificant whitespace, strings with the minimal escapes, numbers
// in the ECMAScript Number-to-String form. The same JSON value, however it
// was written, gives the same bytes, so a signer that canonicalises before
// signing gives the same DSSE PAE for the same request.
//
// RFC 8785 numbers are IEEE 754 doubles. An integer beyond ±2^53 that a
// double does not hold exactly would be silently rounded (a different
// value would be signed than the one sent), so [Transform] refuses it: I-JSON (RFC 7493) says to send such numbers
// as strings. Duplicate member names are refused too (RFC 8785 §3.1 needs
// I-JSON input). Pure functions, safe for concurrent use.
package canonical

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
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
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotIJSON, err)
	}
	return Encode(v)
}

// Encode returns the RFC 8785 form of a JSON value decoded with
// json.Decoder.UseNumber (map[string]any, []any, json.Number, string,
// bool, nil). Decoding has already merged duplicate member names, so
// callers refuse those beforehand ([Transform] does).
func Encode(v any) ([]byte, error) {
	e := encoder{buf: make([]byte, 0, 1024)}
	if err := e.value(v, ""); err != nil {
		return nil, err
	}
	return e.buf, nil
}

type encoder struct{ buf []byte }

func (e *encoder) value(v any, ptr string) error {
	switch x := v.(type) {
	case nil:
		e.buf = append(e.buf, "null"...)
	case bool:
		e.buf = strconv.AppendBool(e.buf, x)
	case string:
		e.str(x)
	case json.Number:
		if err := checkNumber(or(ptr), string(x)); err != nil {
			return err
		}
		f, _ := strconv.ParseFloat(string(x), 64)
		e.buf = appendES6(e.buf, f)
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return fmt.Errorf("%w: %s: not a finite number", ErrNotIJSON, or(ptr))
		}
		e.buf = appendES6(e.buf, x)
	case []any:
		e.buf = append(e.buf, '[')
		for i, el := range x {
			if i > 0 {
				e.buf = append(e.buf, ',')
			}
			if err := e.value(el, ptr+"/"+strconv.Itoa(i)); err != nil {
				return err
			}
		}
		e.buf = append(e.buf, ']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, compareUTF16)
		e.buf = append(e.buf, '{')
		for i, k := range keys {
			if i > 0 {
				e.buf = append(e.buf, ',')
			}
			e.str(k)
			e.buf = append(e.buf, ':')
			if err := e.value(x[k], ptr+"/"+escape(k)); err != nil {
				return err
			}
		}
		e.buf = append(e.buf, '}')
	default:
		return fmt.Errorf("%w: %s: unsupported Go type %T", ErrNotIJSON, or(ptr), v)
	}
	return nil
}

const hexDigits = "0123456789abcdef"

// str writes a string with the escapes of RFC 8785 §3.2.2.2: \" \\ \b
// \f \n \r \t, \u00xx for the other control characters, everything else
// as it is.
func (e *encoder) str(s string) {
	e.buf = append(e.buf, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		e.buf = append(e.buf, s[start:i]...)
		switch c {
		case '"', '\\':
			e.buf = append(e.buf, '\\', c)
		case '\b':
			e.buf = append(e.buf, '\\', 'b')
		case '\f':
			e.buf = append(e.buf, '\\', 'f')
		case '\n':
			e.buf = append(e.buf, '\\', 'n')
		case '\r':
			e.buf = append(e.buf, '\\', 'r')
		case '\t':
			e.buf = append(e.buf, '\\', 't')
		default:
			e.buf = append(e.buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	e.buf = append(e.buf, s[start:]...)
	e.buf = append(e.buf, '"')
}

// appendES6 writes f as ECMAScript's Number.prototype.toString does
// (RFC 8785 §3.2.2.3): the shortest digits that read back as f, fixed
// notation for 1e-6 <= |f| < 1e21, exponent notation otherwise.
func appendES6(b []byte, f float64) []byte {
	if f == 0 {
		return append(b, '0') // -0 too
	}
	format := byte('f')
	if a := math.Abs(f); a < 1e-6 || a >= 1e21 {
		format = 'e'
	}
	n := len(b)
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// Go writes two exponent digits (1e-07), ECMAScript the fewest.
		if m := len(b); m-n >= 4 && b[m-4] == 'e' && b[m-2] == '0' {
			b = append(b[:m-2], b[m-1])
		}
	}
	return b
}

// compareUTF16 orders member names by their UTF-16 code units.
func compareUTF16(a, b string) int {
	for a != "" && b != "" {
		ra, na := utf8.DecodeRuneInString(a)
		rb, nb := utf8.DecodeRuneInString(b)
		if ra != rb {
			return cmp.Compare(utf16Key(ra), utf16Key(rb))
		}
		a, b = a[na:], b[nb:]
	}
	return cmp.Compare(len(a), len(b))
}

// utf16Key is the first UTF-16 code unit of r, which decides the order
// (runes differ, so a tie on it is settled by the second unit, which
// grows with r like the rune itself).
func utf16Key(r rune) int {
	if r >= 0x10000 {
		hi, lo := utf16.EncodeRune(r)
		return int(hi)<<16 | int(lo)
	}
	return int(r) << 16
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
	if i, err := strconv.ParseInt(lit, 10, 64); err == nil && i <= maxExact && i >= -maxExact {
		return nil
	}
	if string(appendES6(nil, f)) != lit {
		return fmt.Errorf("%w: %s: integer %s is beyond ±2^53 and would change when canonicalised (to %s); send it as a string", ErrNotIJSON, ptr, lit, appendES6(nil, f))
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
