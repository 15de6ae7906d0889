package canonical

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/cyberphone/json-canonicalization/go/src/webpki.org/jsoncanonicalizer"
)

// The examples of RFC 8785 §3.2.2 (values) and §3.2.3 (sorting).
func TestRFC8785Examples(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"values", `{
  "numbers": [333333333.33333329, 1E30, 4.50,
              2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}`, `{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`},
		{"sorting", `{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}`, "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"ö\":\"Latin Small Letter O With Diaeresis\",\"€\":\"Euro Sign\",\"😀\":\"Emoji: Grinning Face\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}"},
		{"nested and whitespace", " { \"b\" : [ 1 , { \"d\" : 1.0 , \"c\" : -0 } ] , \"a\" : \"x\" } ", `{"a":"x","b":[1,{"c":0,"d":1}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Transform([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
			again, err := Transform(got)
			if err != nil || string(again) != string(got) {
				t.Fatalf("not idempotent: %s, %v", again, err)
			}
		})
	}
}

// Number serialisation samples of RFC 8785 Appendix B (IEEE 754 bits →
// expected text).
func TestRFC8785Numbers(t *testing.T) {
	for _, tc := range []struct {
		bits uint64
		want string
	}{
		{0x0000000000000000, "0"},
		{0x8000000000000000, "0"},
		{0x0000000000000001, "5e-324"},
		{0x8000000000000001, "-5e-324"},
		{0x7fefffffffffffff, "1.7976931348623157e+308"},
		{0xffefffffffffffff, "-1.7976931348623157e+308"},
		{0x4340000000000000, "9007199254740992"},
		{0xc340000000000000, "-9007199254740992"},
		{0x4430000000000000, "295147905179352830000"},
		{0x44b52d02c7e14af5, "9.999999999999997e+22"},
		{0x44b52d02c7e14af6, "1e+23"},
		{0x44b52d02c7e14af7, "1.0000000000000001e+23"},
		{0x444b1ae4d6e2ef4e, "999999999999999700000"},
		{0x444b1ae4d6e2ef4f, "999999999999999900000"},
		{0x444b1ae4d6e2ef50, "1e+21"},
		{0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"},
		{0x3eb0c6f7a0b5ed8d, "0.000001"},
		{0x41b3de4355555553, "333333333.3333332"},
		{0x41b3de4355555554, "333333333.33333325"},
		{0x41b3de4355555555, "333333333.3333333"},
		{0x41b3de4355555556, "333333333.3333334"},
		{0x41b3de4355555557, "333333333.33333343"},
		{0xbecbf647612f3696, "-0.0000033333333333333333"},
		{0x43143ff3c1cb0959, "1424953923781206.2"},
	} {
		in := "[" + strconv.FormatFloat(math.Float64frombits(tc.bits), 'e', -1, 64) + "]"
		got, err := Transform([]byte(in))
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if string(got) != "["+tc.want+"]" {
			t.Errorf("%016x (%s): got %s, want %s", tc.bits, in, got, tc.want)
		}
	}
}

func TestRefusals(t *testing.T) {
	for _, tc := range []struct{ name, in, field string }{
		{"integer beyond 2^53", `{"a":{"n":9007199254740993}}`, "/a/n"},
		{"negative integer beyond 2^53", `{"a":[1,-9007199254740993]}`, "/a/1"},
		{"integer a double rounds", `{"id":12345678901234567890}`, "/id"},
		{"out of double range", `{"x":1e400}`, "/x"},
		{"duplicate member", `{"a":1,"b":{"c":1,"c":2}}`, "/b"},
		{"trailing data", `{"a":1} {}`, ""},
		{"not JSON", `{"a":}`, ""},
		{"invalid UTF-8", "{\"a\":\"\xff\"}", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Transform([]byte(tc.in))
			if !errors.Is(err, ErrNotIJSON) {
				t.Fatalf("got %v, want ErrNotIJSON", err)
			}
			if tc.field != "" && !strings.Contains(err.Error(), tc.field+":") {
				t.Errorf("error %q does not name %s", err, tc.field)
			}
		})
	}
	if _, err := Transform([]byte(`[9007199254740992, 1.5e300, 12345678901234567890.0, 26798450047706354000, -0]`)); err != nil {
		t.Errorf("exact integer / float refused: %v", err)
	}
}

// TestAgainstReferenceImplementation compares Transform with the RFC
// author's implementation (cyberphone/json-canonicalization, test only) on
// random JSON values: nested objects with BMP and supplementary-plane
// member names, control characters, and doubles across the whole range.
func TestAgainstReferenceImplementation(t *testing.T) {
	rng := rand.New(rand.NewPCG(8785, 1))
	runes := []rune{'a', 'Z', '0', '\t', '\n', 0x01, 0x1f, '"', '\\', '/', 0x7f, 0x80, 0xe9, 0x20ac, 0x2028, 0xfb33, 0xffff, 0x1f600, 0x10000, 0x10ffff, '<', '&'}
	str := func() string {
		var b strings.Builder
		for range rng.IntN(6) {
			b.WriteRune(runes[rng.IntN(len(runes))])
		}
		return b.String()
	}
	var gen func(depth int) any
	gen = func(depth int) any {
		switch k := rng.IntN(7); {
		case depth > 3 || k == 0:
			switch rng.IntN(4) {
			case 0:
				return str()
			case 1:
				return math.Float64frombits(rng.Uint64()&^(0x7ff<<52) | uint64(rng.IntN(0x7ff))<<52) // finite
			case 2:
				return float64(rng.Int64N(1<<53)) * float64(1-2*rng.IntN(2))
			default:
				return []any{nil, true, false}[rng.IntN(3)]
			}
		case k < 4:
			m := map[string]any{}
			for range rng.IntN(5) {
				m[str()] = gen(depth + 1)
			}
			return m
		default:
			var a []any
			for range rng.IntN(4) {
				a = append(a, gen(depth+1))
			}
			return a
		}
	}
	for i := range 1000 {
		v := map[string]any{"v": gen(0), str(): gen(1)} // the reference wants an object or array
		in, err := json.Marshal(v)
		if err != nil {
			continue // NaN/Inf cannot be JSON
		}
		want, err := jsoncanonicalizer.Transform(in)
		if err != nil {
			t.Fatalf("reference refused %s: %v", in, err)
		}
		got, err := Transform(in)
		if err != nil {
			t.Fatalf("case %d: %s: %v", i, in, err)
		}
		if string(got) != string(want) {
			t.Fatalf("case %d: %s\ngot  %s\nwant %s", i, in, got, want)
		}
	}
}
