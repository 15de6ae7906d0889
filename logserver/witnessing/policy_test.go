package witnessing

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

type keys struct {
	log, log2, ecdsaLog  string
	w1, w2, w3, w4, w1b  string
	logNote01, mldsaLike string
}

func testKeys(t *testing.T) keys {
	t.Helper()
	var k keys
	_, k.log, _ = note.GenerateKey(rand.Reader, "log.example")
	_, k.log2, _ = note.GenerateKey(rand.Reader, "log2.example")
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&ek.PublicKey)
	k.ecdsaLog = fmt.Sprintf("rekor.example+%08x+%s", keyHashECDSA(der), base64.StdEncoding.EncodeToString(append([]byte{0x02}, der...)))
	w1 := mustPriv(t)
	k.w1 = mustCosigVKey(t, "w1.example", w1)
	k.w1b = mustCosigVKey(t, "w1-renamed.example", w1) // same key, other name
	k.w2 = mustCosigVKey(t, "w2.example", mustPriv(t))
	k.w3 = mustCosigVKey(t, "w3.example", mustPriv(t))
	k.w4 = mustCosigVKey(t, "w4.example", mustPriv(t))
	_, k.logNote01, _ = note.GenerateKey(rand.Reader, "w5.example")
	name, _, _ := strings.Cut(k.w4, "+")
	k.mldsaLike = name + "+00000000+" + base64.StdEncoding.EncodeToString(append([]byte{0x06}, make([]byte, 1312)...))
	return k
}

func keyHashECDSA(der []byte) uint32 {
	h := sha256.Sum256(der)
	return uint32(h[0])<<24 | uint32(h[1])<<16 | uint32(h[2])<<8 | uint32(h[3])
}

func TestParsePolicyValid(t *testing.T) {
	k := testKeys(t)
	text := fmt.Sprintf(`# C2SP tlog-policy example with tabs and comments
log %s https://log.example/
log	%s
   # indented comment

witness X1 %s https://w1.example/witness/
witness X2	%s http://127.0.0.1:8080
witness X3 %s
group X-witnesses 2 X1 X2 X3
witness Y1 %s https://w4.example
group Y-witnesses any Y1
group X-and-Y all X-witnesses Y-witnesses
quorum X-and-Y
`, k.log, k.ecdsaLog, k.w1, k.w2, k.w3, k.w4)
	p, err := ParsePolicy([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Logs) != 2 || p.Logs[0].URL != "https://log.example" || p.Logs[1].Line != 3 {
		t.Errorf("logs %+v", p.Logs)
	}
	if len(p.Witnesses) != 4 || p.Witnesses[0].URL != "https://w1.example/witness" || p.Witnesses[2].URL != "" || p.Witnesses[1].Line != 7 {
		t.Errorf("witnesses %+v", p.Witnesses)
	}
	if p.QuorumName != "X-and-Y" || p.QuorumNone() {
		t.Errorf("quorum %q", p.QuorumName)
	}
	for _, c := range []struct {
		cosigners []string
		want      bool
	}{
		{nil, false},
		{[]string{"X1", "X2"}, false},       // no Y
		{[]string{"Y1"}, false},             // no X
		{[]string{"X1", "Y1"}, false},       // 1 of 3 X
		{[]string{"X1", "X3", "Y1"}, true},  // 2 of 3 X and Y
		{[]string{"X2", "X3", "Y1"}, true},  //
		{[]string{"X1", "X1", "Y1"}, false}, // duplicates count once
		{[]string{"X1", "X2", "X3", "Y1"}, true},
		{[]string{"X1", "X2", "X-witnesses", "Y-witnesses"}, false}, // group names are not cosigners
	} {
		if got := p.Satisfied(c.cosigners); got != c.want {
			t.Errorf("Satisfied(%v) = %v, want %v", c.cosigners, got, c.want)
		}
	}
	if !p.reachable() {
		t.Error("X3 has no URL but X1, X2 and Y1 meet the quorum: want reachable")
	}
	p2, err := ParsePolicy([]byte(fmt.Sprintf("witness A %s https://a.example\nwitness B %s\ngroup g all A B\nquorum g\n", k.w1, k.w2)))
	if err != nil {
		t.Fatal(err)
	}
	if p2.reachable() {
		t.Error("B has no URL and is needed: want unreachable")
	}
	if !p.HasLog(k.log) || !p.HasLog(k.ecdsaLog) || p.HasLog(k.log2) {
		t.Error("HasLog")
	}
}

func TestParsePolicyQuorumForms(t *testing.T) {
	k := testKeys(t)
	for _, c := range []struct {
		text      string
		cosigners []string
		want      bool
	}{
		{"quorum none\n", nil, true},
		{fmt.Sprintf("witness A %s\nquorum A\n", k.w1), []string{"A"}, true},
		{fmt.Sprintf("witness A %s\nquorum A\n", k.w1), nil, false},
		{fmt.Sprintf("witness A %s\nwitness B %s\ngroup g any A B\nquorum g", k.w1, k.w2), []string{"B"}, true}, // no final newline
		{fmt.Sprintf("witness A %s\nwitness B %s\ngroup g all A B\nquorum g\n", k.w1, k.w2), []string{"B"}, false},
		{fmt.Sprintf("witness A %s\nwitness B %s\nwitness C %s\ngroup g 2 A B C\nquorum g\n", k.w1, k.w2, k.w3), []string{"A", "C"}, true},
		{fmt.Sprintf("witness A %s\nwitness B %s\nwitness C %s\ngroup g 3 A B C\nquorum g\n", k.w1, k.w2, k.w3), []string{"A", "C"}, false},
	} {
		p, err := ParsePolicy([]byte(c.text))
		if err != nil {
			t.Fatalf("%q: %v", c.text, err)
		}
		if got := p.Satisfied(c.cosigners); got != c.want {
			t.Errorf("%q: Satisfied(%v) = %v", c.text, c.cosigners, got)
		}
	}
	var nilPolicy *Policy
	if !nilPolicy.QuorumNone() || !nilPolicy.Satisfied(nil) {
		t.Error("nil policy is quorum none")
	}
}

func TestParsePolicyErrors(t *testing.T) {
	k := testKeys(t)
	w := func(name, vkey string) string { return fmt.Sprintf("witness %s %s\n", name, vkey) }
	for _, c := range []struct {
		name, text string
		line       int
		msg        string
	}{
		{"empty", "", 0, "no quorum line"},
		{"comments only", "# nothing\n\n", 0, "no quorum line"},
		{"unknown keyword", "logs " + k.log + "\nquorum none\n", 1, `unknown keyword "logs"`},
		{"crlf", "quorum none\r\n", 1, "CRLF"},
		{"control char", "# \x01\nquorum none\n", 1, "control character 0x01"},
		{"two quorums", "quorum none\nquorum none\n", 2, "second quorum line (the first is on line 1)"},
		{"quorum arity", "quorum a b\n", 1, "want \"quorum <name|none>\""},
		{"quorum undefined", "quorum W\n", 1, `quorum "W" is not a witness or group defined on an earlier line`},
		{"quorum before witness", "quorum A\n" + w("A", k.w1), 1, `quorum "A" is not`},
		{"log bad vkey", "log nonsense\nquorum none\n", 1, "is not of the form <name>+<hex key ID>+<base64 key>"},
		{"log witness key", "log " + k.w1 + "\nquorum none\n", 1, "not a log checkpoint key"},
		{"log bad url", "log " + k.log + " ftp://x\nquorum none\n", 1, "scheme must be http or https"},
		{"log extra field", "log " + k.log + " https://x y\nquorum none\n", 1, "want \"log <vkey> [<url>]\""},
		{"duplicate log", "log " + k.log + "\nlog " + k.log + "\nquorum none\n", 2, "duplicate log: same public key as the log on line 1"},
		{"witness no vkey", "witness A\nquorum none\n", 1, "want \"witness <name> <vkey> [<url>]\""},
		{"witness log key", w("A", k.logNote01) + "quorum none\n", 1, "type 0x01 is an Ed25519 log key"},
		{"witness mldsa", w("A", k.mldsaLike) + "quorum none\n", 1, "ML-DSA-44"},
		{"witness ecdsa", w("A", k.ecdsaLog) + "quorum none\n", 1, "not a cosignature/v1 key"},
		{"witness bad key id", w("A", badID(k.w1)) + "quorum none\n", 1, "does not match the key"},
		{"witness bad base64", "witness A w.example+01020304+!!!\nquorum none\n", 1, "not valid base64"},
		{"witness url query", "witness A " + k.w1 + " https://w.example/?x=1\nquorum none\n", 1, "no query"},
		{"witness url relative", "witness A " + k.w1 + " w.example/add\nquorum none\n", 1, "scheme must be http or https"},
		{"witness named none", w("none", k.w1) + "quorum none\n", 1, `"none" is reserved`},
		{"duplicate name", w("A", k.w1) + w("A", k.w2) + "quorum none\n", 2, "name already defined on line 1"},
		{"duplicate witness key", w("A", k.w1) + w("B", k.w1b) + "quorum none\n", 2, `duplicate witness: same public key as witness "A" on line 1`},
		{"group no members", w("A", k.w1) + "group g 1\nquorum none\n", 2, "at least one member"},
		{"group undefined member", w("A", k.w1) + "group g any A B\nquorum none\n", 2, `member "B" is not defined on an earlier line`},
		{"group self reference", w("A", k.w1) + "group g any A g\nquorum none\n", 2, `member "g" is not defined`},
		{"group none member", w("A", k.w1) + "group g any A none\nquorum none\n", 2, `"none" cannot be a group member`},
		{"group member twice", w("A", k.w1) + "group g any A A\nquorum none\n", 2, `member "A" is listed twice`},
		{"member of two groups", w("A", k.w1) + w("B", k.w2) + "group g any A B\ngroup h any A\nquorum g\n", 4, `"A" is already a member of the group on line 3`},
		{"threshold zero", w("A", k.w1) + "group g 0 A\nquorum g\n", 2, "threshold 0 outside 1..1"},
		{"threshold too big", w("A", k.w1) + w("B", k.w2) + "group g 3 A B\nquorum g\n", 3, "threshold 3 outside 1..2"},
		{"threshold word", w("A", k.w1) + "group g most A\nquorum g\n", 2, `threshold "most" is not`},
		{"threshold signed", w("A", k.w1) + "group g +1 A\nquorum g\n", 2, `threshold "+1"`},
		{"threshold leading zero", w("A", k.w1) + "group g 01 A\nquorum g\n", 2, `threshold "01"`},
		{"group name taken", w("A", k.w1) + "group A any A\nquorum A\n", 2, "name already defined on line 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParsePolicy([]byte(c.text))
			var pe *PolicyError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a *PolicyError", err)
			}
			if pe.Line != c.line || !strings.Contains(pe.Msg, c.msg) {
				t.Fatalf("got line %d %q, want line %d containing %q", pe.Line, pe.Msg, c.line, c.msg)
			}
		})
	}
}

func badID(vkey string) string {
	name, rest, _ := strings.Cut(vkey, "+")
	id, key, _ := strings.Cut(rest, "+")
	if id == "00000000" {
		id = "00000001"
	} else {
		id = "00000000"
	}
	return name + "+" + id + "+" + key
}

func TestParsePolicyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.txt")
	os.WriteFile(path, []byte("quorum none\nbogus\n"), 0o644)
	_, err := ParsePolicyFile(path)
	if err == nil || !strings.Contains(err.Error(), path+": policy line 2: unknown keyword") {
		t.Fatalf("err = %v", err)
	}
	os.WriteFile(path, []byte("quorum none\n"), 0o644)
	if p, err := ParsePolicyFile(path); err != nil || !p.QuorumNone() {
		t.Fatalf("%v", err)
	}
	os.WriteFile(path, []byte(strings.Repeat("#", maxPolicyBytes+1)), 0o644)
	if _, err := ParsePolicyFile(path); err == nil || !strings.Contains(err.Error(), "larger than 1 MiB") {
		t.Fatalf("big file: %v", err)
	}
}
