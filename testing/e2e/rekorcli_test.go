package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/stellaops/tlog/testing/stack"
)

// rekorCLI returns the path of a rekor-cli v1.5.4 binary, installed into
// <repo>/.cache/bin on first use.
func rekorCLI(t *testing.T) string {
	t.Helper()
	return stack.RekorCLI.Install(t)
}

// cliRun is one rekor-cli invocation's outcome.
type cliRun struct {
	stdout, stderr string
	code           int
}

func (r cliRun) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// rekorCLIEnv runs rekor-cli against one logserver with its own HOME (so
// its ~/.rekor tree state) and, if pinKey is set, the log key pinned.
type rekorCLIEnv struct {
	bin, url, home string
	pinKey         []byte
}

func (c *rekorCLIEnv) run(t *testing.T, args ...string) cliRun {
	t.Helper()
	cmd := exec.Command(c.bin, append(args, "--rekor_server", c.url, "--timeout", "60s")...)
	cmd.Env = []string{"HOME=" + c.home, "PATH=" + os.Getenv("PATH")}
	if c.pinKey != nil {
		cmd.Env = append(cmd.Env, "REKOR_REKOR_SERVER_PUBLIC_KEY="+string(c.pinKey))
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := cliRun{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("rekor-cli %v: %v", args, err)
	}
	return r
}

// must runs rekor-cli and requires exit code 0 and every line of want (a
// regexp each) in its standard output.
func (c *rekorCLIEnv) must(t *testing.T, want []string, args ...string) cliRun {
	t.Helper()
	r := c.run(t, args...)
	if r.code != 0 {
		t.Fatalf("rekor-cli %s: %s", strings.Join(args, " "), r)
	}
	for _, w := range want {
		if !regexp.MustCompile("(?m)" + w).MatchString(r.stdout) {
			t.Fatalf("rekor-cli %s: stdout lacks /%s/:\n%s", strings.Join(args, " "), w, r)
		}
	}
	return r
}

// fails runs rekor-cli and requires a non-zero exit and msg in its output.
func (c *rekorCLIEnv) fails(t *testing.T, msg string, args ...string) {
	t.Helper()
	r := c.run(t, args...)
	if r.code == 0 {
		t.Fatalf("rekor-cli %s: exit 0, want a failure:\n%s", strings.Join(args, " "), r)
	}
	if !strings.Contains(r.stdout+r.stderr, msg) {
		t.Fatalf("rekor-cli %s: output lacks %q:\n%s", strings.Join(args, " "), msg, r)
	}
}

func TestRekorCLI(t *testing.T) {
	bin := rekorCLI(t)
	e := newEnv(t)
	treeID := e.logInfo(t).treeID
	pemKey := e.logPublicKeyPEM(t)
	cli := &rekorCLIEnv{bin: bin, url: e.ls.URL, home: t.TempDir(), pinKey: pemKey}

	// A producer's key, artifacts and detached signatures, as files.
	dir := t.TempDir()
	s := newSigner(t)
	keyFile := filepath.Join(dir, "key.pub")
	if err := os.WriteFile(keyFile, s.PubPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	type artifact struct{ file, sig, sha string }
	var arts []artifact
	for i := range 3 {
		data := []byte(fmt.Sprintf("rekor-cli artifact %d\n", i))
		sig, err := s.SignBlob(data)
		if err != nil {
			t.Fatal(err)
		}
		a := artifact{file: filepath.Join(dir, fmt.Sprintf("a%d.txt", i)), sig: filepath.Join(dir, fmt.Sprintf("a%d.sig", i))}
		if err := os.WriteFile(a.file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(a.sig, sig, 0o644); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		a.sha = hex.EncodeToString(sum[:])
		arts = append(arts, a)
	}
	upload := func(a artifact) []string {
		return []string{"upload", "--artifact", a.file, "--signature", a.sig, "--public-key", keyFile, "--pki-format", "x509", "--type", "hashedrekord"}
	}
	entryURL := regexp.QuoteMeta(e.ls.URL+"/api/v1/log/entries/") + "([0-9a-f]{80})"
	created := regexp.MustCompile(`(?m)^Created entry at index (\d+), available at: ` + entryURL + `$`)

	var ids []string
	t.Run("upload", func(t *testing.T) {
		r := cli.must(t, nil, upload(arts[0])...)
		m := created.FindStringSubmatch(r.stdout)
		if m == nil || m[1] != "0" {
			t.Fatalf("upload output:\n%s", r)
		}
		ids = append(ids, m[2])
		if !strings.HasPrefix(m[2], fmt.Sprintf("%016x", treeID)) {
			t.Errorf("entry ID %s does not start with the tree ID %016x", m[2], treeID)
		}
	})
	if len(ids) != 1 {
		t.Fatal("first upload failed")
	}

	t.Run("upload duplicate", func(t *testing.T) {
		cli.must(t, []string{`^Entry already exists; available at: ` + regexp.QuoteMeta(e.ls.URL+"/api/v1/log/entries/"+ids[0]) + `$`}, upload(arts[0])...)
	})

	t.Run("loginfo", func(t *testing.T) {
		li := e.logInfo(t)
		r := cli.must(t, []string{
			`^Verification Successful!$`,
			`^Active Tree Size:\s+1$`,
			`^Total Tree Size:\s+1$`,
			`^Root Hash:\s+` + *li.RootHash + `$`,
			`^TreeID:\s+` + strconv.FormatInt(treeID, 10) + `$`,
		}, "loginfo")
		// Nothing to be consistent with yet (the second loginfo checks
		// that this message is gone).
		if !strings.Contains(r.stderr, "No previous log state stored") {
			t.Errorf("first loginfo: stderr lacks \"No previous log state stored\":\n%s", r)
		}
		if _, err := os.Stat(filepath.Join(cli.home, ".rekor", "state.json")); err != nil {
			t.Fatalf("rekor-cli kept no tree state: %v", err)
		}
	})

	t.Run("upload more", func(t *testing.T) {
		for i := 1; i < 3; i++ {
			r := cli.must(t, nil, upload(arts[i])...)
			m := created.FindStringSubmatch(r.stdout)
			if m == nil || m[1] != strconv.Itoa(i) {
				t.Fatalf("upload %d output:\n%s", i, r)
			}
			ids = append(ids, m[2])
		}
	})
	if len(ids) != 3 {
		t.Fatal("uploads failed")
	}
	li := e.logInfo(t)

	t.Run("loginfo again, consistency from stored state", func(t *testing.T) {
		r := cli.must(t, []string{
			`^Verification Successful!$`,
			`^Active Tree Size:\s+3$`,
			`^Root Hash:\s+` + *li.RootHash + `$`,
		}, "loginfo")
		if strings.Contains(r.stderr, "No previous log state stored") {
			t.Fatalf("second loginfo did not use the stored state:\n%s", r)
		}
	})

	t.Run("loginfo with the key fetched from the server", func(t *testing.T) {
		unpinned := &rekorCLIEnv{bin: bin, url: e.ls.URL, home: t.TempDir()}
		unpinned.must(t, []string{`^Verification Successful!$`, `^Active Tree Size:\s+3$`}, "loginfo")
	})

	t.Run("loginfo with a wrong pinned key", func(t *testing.T) {
		wrong := &rekorCLIEnv{bin: bin, url: e.ls.URL, home: t.TempDir(), pinKey: newSigner(t).PubPEM}
		wrong.fails(t, "signature on tree head did not verify", "loginfo")
	})

	t.Run("get", func(t *testing.T) {
		logIDLine := `^LogID: ` + e.logID + `$`
		cli.must(t, []string{logIDLine, `^Index: 1$`, `^IntegratedTime: \d{4}-\d\d-\d\dT`, `^UUID: ` + ids[1] + `$`, `^Body: \{`, `"HashedRekordObj"`, `"value": "` + arts[1].sha + `"`},
			"get", "--log-index", "1")
		cli.must(t, []string{logIDLine, `^Index: 0$`, `^UUID: ` + ids[0] + `$`}, "get", "--uuid", ids[0][16:])
		cli.must(t, []string{`^Index: 2$`, `^UUID: ` + ids[2] + `$`}, "get", "--uuid", ids[2])
		cli.fails(t, "404", "get", "--log-index", "99")
	})

	t.Run("verify", func(t *testing.T) {
		cli.must(t, []string{
			`^Current Root Hash: ` + *li.RootHash + `$`,
			`^Entry Hash: ` + ids[0][16:] + `$`,
			`^Entry Index in Current Tree: 0$`,
			`^Current Tree Size: 3$`,
			`^Inclusion Proof:$`,
		}, "verify", "--artifact", arts[0].file, "--signature", arts[0].sig, "--public-key", keyFile, "--pki-format", "x509", "--type", "hashedrekord")
		cli.must(t, []string{`^Entry Index in Current Tree: 2$`}, "verify", "--uuid", ids[2])
		cli.must(t, []string{`^Entry Index in Current Tree: 1$`}, "verify", "--log-index", "1")
	})

	t.Run("search", func(t *testing.T) {
		r := cli.must(t, []string{`^` + ids[1] + `$`}, "search", "--artifact", arts[1].file)
		if !strings.Contains(r.stderr, "Found matching entries (listed by UUID):") {
			t.Errorf("search: stderr lacks the header:\n%s", r)
		}
		if n := strings.Count(strings.TrimSpace(r.stdout), "\n") + 1; n != 1 {
			t.Errorf("search --artifact found %d entries, want 1:\n%s", n, r.stdout)
		}
		cli.must(t, []string{`^` + ids[2] + `$`}, "search", "--sha", "sha256:"+arts[2].sha)
		cli.must(t, []string{`^` + ids[0] + `$`}, "search", "--sha", arts[0].sha)
		cli.must(t, []string{`^` + ids[0] + `$`, `^` + ids[1] + `$`, `^` + ids[2] + `$`}, "search", "--public-key", keyFile, "--pki-format", "x509")
		other := sha256.Sum256([]byte("not logged"))
		cli.fails(t, "no matching entries found", "search", "--sha", "sha256:"+hex.EncodeToString(other[:]))
	})

	t.Run("logproof", func(t *testing.T) {
		r := cli.must(t, []string{`^Current Root Hash: ` + *li.RootHash + `$`, `^Hashes: \[`}, "logproof", "--first-size", "1", "--last-size", "3")
		m := regexp.MustCompile(`(?m)^Hashes: \[([0-9a-f,]*)\]$`).FindStringSubmatch(r.stdout)
		if m == nil {
			t.Fatalf("logproof output:\n%s", r)
		}
		var hashes [][]byte
		for _, h := range strings.Split(m[1], ",") {
			b, err := hex.DecodeString(h)
			if err != nil {
				t.Fatal(err)
			}
			hashes = append(hashes, b)
		}
		// Roots at sizes 1 and 3 from the entries' own leaf hashes.
		var leaves [][]byte
		for _, id := range ids {
			b, _ := hex.DecodeString(id[16:])
			leaves = append(leaves, b)
		}
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, 1, 3, hashes, mth(leaves[:1]), mth(leaves)); err != nil {
			t.Fatalf("rekor-cli logproof 1..3 does not verify: %v\n%s", err, r)
		}
		cli.fails(t, "the tree size requested(100) was greater than what is currently observable(3)", "logproof", "--first-size", "1", "--last-size", "100")
	})

	// The other kinds rekor-cli can upload from a signed DSSE envelope.
	t.Run("upload dsse and intoto", func(t *testing.T) {
		for i, typ := range []string{"dsse", "intoto"} {
			env, err := s.Envelope("application/vnd.in-toto+json", []byte(fmt.Sprintf(
				`{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"a","digest":{"sha256":"%s"}}],"predicateType":"https://example.com/%s","predicate":{}}`,
				arts[i].sha, typ)))
			if err != nil {
				t.Fatal(err)
			}
			envFile := filepath.Join(dir, typ+".json")
			if err := os.WriteFile(envFile, env, 0o644); err != nil {
				t.Fatal(err)
			}
			r := cli.must(t, nil, "upload", "--type", typ, "--artifact", envFile, "--public-key", keyFile, "--pki-format", "x509")
			m := created.FindStringSubmatch(r.stdout)
			if m == nil || m[1] != strconv.Itoa(3+i) {
				t.Fatalf("upload --type %s output:\n%s", typ, r)
			}
			g := cli.must(t, []string{`^Index: ` + m[1] + `$`, `^UUID: ` + m[2] + `$`}, "get", "--uuid", m[2])
			wantKind := map[string]string{"dsse": "DSSEObj", "intoto": "IntotoObj"}[typ]
			if !strings.Contains(g.stdout, wantKind) {
				t.Errorf("get of the %s entry: body lacks %s:\n%s", typ, wantKind, g)
			}
			// Found by the in-toto subject digest.
			cli.must(t, []string{`^` + m[2] + `$`}, "search", "--sha", "sha256:"+arts[i].sha)
		}
	})
}
