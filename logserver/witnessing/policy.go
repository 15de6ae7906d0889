package witnessing

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/stellaops/tlog/internal/notekey"
)

// maxPolicyBytes caps a policy file; real ones are a few KiB.
const maxPolicyBytes = 1 << 20

// Policy is a parsed c2sp.org/tlog-policy file: the logs it accepts, the
// witnesses it knows and the quorum rule over them.
//
// Grammar (one item per line, fields separated by spaces or tabs, "#"
// comments and blank lines ignored):
//
//	log <vkey> [<url>]
//	witness <name> <vkey> [<url>]
//	group <name> <k|any|all> <member>...
//	quorum <name|none>
//
// Names of witnesses and groups share one namespace; "none" is reserved.
// Groups and the quorum may only refer to names defined on earlier lines;
// every name is a group member at most once in the whole file, so each
// witness counts towards the quorum in only one way. Exactly one quorum line
// is required. Witness vkeys must be Ed25519 cosignature/v1 keys (type 0x04)
// whose key ID matches; log vkeys must be Ed25519 (0x01) or ECDSA (0x02)
// note keys. Two logs or two witnesses wrapping the same public key are an
// error. A URL must be absolute http(s) without query or fragment; for a
// witness it is its tlog-witness submission prefix (the feeder POSTs to
// <url>/add-checkpoint).
type Policy struct {
	Logs      []PolicyLog
	Witnesses []*PolicyWitness
	// QuorumName is the name on the quorum line ("none" for no quorum).
	QuorumName string

	quorum *node // nil: quorum none
}

// PolicyLog is a "log" line.
type PolicyLog struct {
	VKey string
	URL  string // "" if absent
	Line int
}

// PolicyWitness is a "witness" line.
type PolicyWitness struct {
	Name string // local name in the policy file
	VKey string
	URL  string // submission prefix without trailing slash; "" if absent
	Line int

	// KeyName and KeyID identify the witness's cosignature lines.
	KeyName  string
	KeyID    uint32
	verifier note.Verifier
	pub      ed25519.PublicKey
}

// Verifier returns the cosignature/v1 verifier of the witness.
func (w *PolicyWitness) Verifier() note.Verifier { return w.verifier }

// node is a witness or a k-of-n group.
type node struct {
	name    string
	line    int
	witness *PolicyWitness // set for a witness
	k       int
	members []*node
}

func (n *node) satisfied(has func(*PolicyWitness) bool) bool {
	if n.witness != nil {
		return has(n.witness)
	}
	c := 0
	for _, m := range n.members {
		if m.satisfied(has) {
			c++
			if c >= n.k {
				return true
			}
		}
	}
	return false
}

// PolicyError is a policy syntax or consistency error at a line (1-based;
// 0 for the file as a whole).
type PolicyError struct {
	Line int
	Msg  string
}

func (e *PolicyError) Error() string {
	if e.Line == 0 {
		return "policy: " + e.Msg
	}
	return fmt.Sprintf("policy line %d: %s", e.Line, e.Msg)
}

// ParsePolicyFile reads and parses a policy file; errors name the file.
func ParsePolicyFile(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPolicyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	p, err := ParsePolicy(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

// ParsePolicy parses and validates a c2sp.org/tlog-policy file. It reports
// the first error, as a *PolicyError with its line number.
func ParsePolicy(data []byte) (*Policy, error) {
	if len(data) > maxPolicyBytes {
		return nil, &PolicyError{0, "larger than 1 MiB"}
	}
	p := &Policy{}
	names := map[string]*node{}
	memberOf := map[string]int{} // name -> line of the group listing it
	logKeys := map[string]int{}  // key material -> line
	witnessKeys := map[string]*PolicyWitness{}
	quorumLine := 0

	lines := strings.Split(string(data), "\n")
	if len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	for i, raw := range lines {
		ln := i + 1
		bad := func(format string, a ...any) error { return &PolicyError{ln, fmt.Sprintf(format, a...)} }
		for j := 0; j < len(raw); j++ {
			c := raw[j]
			if c == '\r' {
				return nil, bad("carriage return (CRLF line endings are not allowed; use LF)")
			}
			if (c < 0x20 && c != '\t') || c == 0x7f {
				return nil, bad("control character 0x%02x is not allowed", c)
			}
		}
		fields := strings.FieldsFunc(raw, func(r rune) bool { return r == ' ' || r == '\t' })
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		switch kw, args := fields[0], fields[1:]; kw {
		case "log":
			if len(args) < 1 || len(args) > 2 {
				return nil, bad("want \"log <vkey> [<url>]\", got %d fields", len(fields))
			}
			material, err := parseLogVKey(args[0])
			if err != nil {
				return nil, bad("log vkey: %v", err)
			}
			if prev, ok := logKeys[material]; ok {
				return nil, bad("duplicate log: same public key as the log on line %d", prev)
			}
			logKeys[material] = ln
			l := PolicyLog{VKey: args[0], Line: ln}
			if len(args) == 2 {
				if l.URL, err = parseURL(args[1]); err != nil {
					return nil, bad("log url: %v", err)
				}
			}
			p.Logs = append(p.Logs, l)
		case "witness":
			if len(args) < 2 || len(args) > 3 {
				return nil, bad("want \"witness <name> <vkey> [<url>]\", got %d fields", len(fields))
			}
			name := args[0]
			if err := checkNewName(name, names); err != nil {
				return nil, bad("witness %q: %v", name, err)
			}
			w, err := parseWitnessVKey(args[1])
			if err != nil {
				return nil, bad("witness %q: vkey: %v", name, err)
			}
			if prev, ok := witnessKeys[string(w.pub)]; ok {
				return nil, bad("witness %q: duplicate witness: same public key as witness %q on line %d", name, prev.Name, prev.Line)
			}
			w.Name, w.VKey, w.Line = name, args[1], ln
			if len(args) == 3 {
				if w.URL, err = parseURL(args[2]); err != nil {
					return nil, bad("witness %q: url: %v", name, err)
				}
			}
			witnessKeys[string(w.pub)] = w
			names[name] = &node{name: name, line: ln, witness: w}
			p.Witnesses = append(p.Witnesses, w)
		case "group":
			if len(args) < 3 {
				return nil, bad("want \"group <name> <k|any|all> <member>...\" with at least one member")
			}
			name, kword, members := args[0], args[1], args[2:]
			if err := checkNewName(name, names); err != nil {
				return nil, bad("group %q: %v", name, err)
			}
			g := &node{name: name, line: ln}
			for _, m := range members {
				if m == "none" {
					return nil, bad("group %q: \"none\" cannot be a group member", name)
				}
				mn, ok := names[m]
				if !ok {
					return nil, bad("group %q: member %q is not defined on an earlier line", name, m)
				}
				if prev, ok := memberOf[m]; ok {
					if prev == ln {
						return nil, bad("group %q: member %q is listed twice", name, m)
					}
					return nil, bad("group %q: %q is already a member of the group on line %d (a name may be a group member only once)", name, m, prev)
				}
				memberOf[m] = ln
				g.members = append(g.members, mn)
			}
			switch kword {
			case "any":
				g.k = 1
			case "all":
				g.k = len(members)
			default:
				k, err := strconv.Atoi(kword)
				if err != nil || kword[0] == '+' || kword[0] == '-' || (len(kword) > 1 && kword[0] == '0') {
					return nil, bad("group %q: threshold %q is not \"any\", \"all\" or a decimal number", name, kword)
				}
				if k < 1 || k > len(members) {
					return nil, bad("group %q: threshold %d outside 1..%d (the number of members)", name, k, len(members))
				}
				g.k = k
			}
			names[name] = g
		case "quorum":
			if len(args) != 1 {
				return nil, bad("want \"quorum <name|none>\"")
			}
			if quorumLine != 0 {
				return nil, bad("second quorum line (the first is on line %d)", quorumLine)
			}
			quorumLine = ln
			p.QuorumName = args[0]
			if args[0] != "none" {
				q, ok := names[args[0]]
				if !ok {
					return nil, bad("quorum %q is not a witness or group defined on an earlier line", args[0])
				}
				p.quorum = q
			}
		default:
			return nil, bad("unknown keyword %q (want log, witness, group or quorum)", kw)
		}
	}
	if quorumLine == 0 {
		return nil, &PolicyError{0, "no quorum line (use \"quorum none\" for no witness requirement)"}
	}
	return p, nil
}

func checkNewName(name string, names map[string]*node) error {
	if name == "none" {
		return errors.New("\"none\" is reserved")
	}
	if prev, ok := names[name]; ok {
		return fmt.Errorf("name already defined on line %d", prev.line)
	}
	return nil
}

func parseURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return "", err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("%q: scheme must be http or https", s)
	}
	if u.Host == "" {
		return "", fmt.Errorf("%q: no host", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", fmt.Errorf("%q: no query, fragment or user info allowed", s)
	}
	return strings.TrimRight(s, "/"), nil
}

func parseWitnessVKey(vkey string) (*PolicyWitness, error) {
	v, pub, err := notekey.CosignatureVerifier(vkey)
	if err != nil {
		return nil, err
	}
	return &PolicyWitness{KeyName: v.Name(), KeyID: v.KeyHash(), verifier: v, pub: pub}, nil
}

// parseLogVKey checks a log vkey and returns its key material (type || key),
// which identifies the key whatever its name.
func parseLogVKey(vkey string) (string, error) {
	if _, err := notekey.LogVerifier(vkey); err != nil {
		return "", err
	}
	_, _, typ, key, _ := notekey.SplitVKey(vkey)
	return string(append([]byte{typ}, key...)), nil
}

// QuorumNone reports whether the policy requires no cosignature.
func (p *Policy) QuorumNone() bool { return p == nil || p.quorum == nil }

// Satisfied reports whether cosignatures from the named witnesses (policy
// names, each already verified by the caller) meet the quorum. With quorum
// none it is always true.
func (p *Policy) Satisfied(witnesses []string) bool {
	if p.QuorumNone() {
		return true
	}
	set := make(map[string]bool, len(witnesses))
	for _, w := range witnesses {
		set[w] = true
	}
	return p.quorum.satisfied(func(w *PolicyWitness) bool { return set[w.Name] })
}

// reachable reports whether the witnesses that have a URL can meet the
// quorum on their own.
func (p *Policy) reachable() bool {
	if p.QuorumNone() {
		return true
	}
	return p.quorum.satisfied(func(w *PolicyWitness) bool { return w.URL != "" })
}

// Witness returns the witness with the policy name, or nil.
func (p *Policy) Witness(name string) *PolicyWitness {
	if p == nil {
		return nil
	}
	for _, w := range p.Witnesses {
		if w.Name == name {
			return w
		}
	}
	return nil
}

// HasLog reports whether the policy lists the log vkey (or lists no log).
func (p *Policy) HasLog(vkey string) bool {
	if p == nil || len(p.Logs) == 0 {
		return true
	}
	want, err := parseLogVKey(vkey)
	if err != nil {
		return false
	}
	for _, l := range p.Logs {
		got, _ := parseLogVKey(l.VKey)
		name, _, _ := strings.Cut(l.VKey, "+")
		wantName, _, _ := strings.Cut(vkey, "+")
		if got == want && name == wantName {
			return true
		}
	}
	return false
}
