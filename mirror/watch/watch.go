// Package watch finds the entries of new snapshots that name watched
// identities, offline, the way sigstore's rekor-monitor watches the public
// log: public keys (by SHA-256 fingerprint of the SPKI), certificate
// subjects (CN, e-mail, URI or DNS SAN) and artifact digests.
//
// A watch list is a text file, one identity per line ("#" comments):
//
//	key <path to a PEM public key or certificate>
//	fingerprint SHA256:<hex>
//	subject <e-mail, URI, DNS name or CN>
//	digest sha256:<hex>
//
// Contract: Scan reads entries from the mirror's tiles only; it never
// touches the network. The state (the last snapshot scanned) is written by
// the caller after a successful scan, so an interrupted scan is redone.
package watch

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/stellaops/tlog/mirror/c2sp"
	"github.com/stellaops/tlog/mirror/evidence"
	"github.com/stellaops/tlog/mirror/snapshot"
	"github.com/stellaops/tlog/mirror/store"
)

// List is a watch list.
type List struct {
	Keys, Subjects, Digests map[string]bool
}

// Empty reports whether nothing is watched.
func (l *List) Empty() bool { return len(l.Keys)+len(l.Subjects)+len(l.Digests) == 0 }

// NewList returns an empty list.
func NewList() *List {
	return &List{Keys: map[string]bool{}, Subjects: map[string]bool{}, Digests: map[string]bool{}}
}

// Add adds one watch-list line.
func (l *List) Add(kind, value, baseDir string) error {
	switch kind {
	case "key":
		p := value
		if !filepath.IsAbs(p) {
			p = filepath.Join(baseDir, p)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		pub, _, err := evidence.KeyMaterial(data)
		if err != nil {
			return fmt.Errorf("key %s: %w", value, err)
		}
		l.Keys[evidence.Fingerprint(pub)] = true
	case "fingerprint":
		if !strings.HasPrefix(value, "SHA256:") || len(value) != 7+64 {
			return fmt.Errorf("fingerprint %q: want SHA256:<64 hex>", value)
		}
		l.Keys["SHA256:"+strings.ToLower(value[7:])] = true
	case "subject":
		l.Subjects[value] = true
	case "digest":
		if !strings.HasPrefix(value, "sha256:") || len(value) != 7+64 {
			return fmt.Errorf("digest %q: want sha256:<64 hex>", value)
		}
		l.Digests[strings.ToLower(value)] = true
	default:
		return fmt.Errorf("unknown identity kind %q (key, fingerprint, subject, digest)", kind)
	}
	return nil
}

// ReadList reads a watch-list file.
func ReadList(file string) (*List, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	l := NewList()
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		kind, value, _ := strings.Cut(line, " ")
		if err := l.Add(kind, strings.TrimSpace(value), filepath.Dir(file)); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", file, n, err)
		}
	}
	return l, nil
}

// Match is an entry naming a watched identity.
type Match struct {
	Snapshot string   `json:"snapshot"`
	Index    int64    `json:"index"`
	Kind     string   `json:"kind"`
	Matched  []string `json:"matched"`
	// Identity is everything the entry names.
	Identity evidence.Identity `json:"identity"`
}

// State is where the last scan ended.
type State struct {
	Snapshot string `json:"snapshot"`
	Size     int64  `json:"size"`
}

// ReadState reads a state file (a missing one is the empty state).
func ReadState(file string) (State, error) {
	var s State
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(data, &s)
}

// WriteState writes a state file durably.
func WriteState(file string, s State) error {
	data, _ := json.Marshal(s)
	return store.WriteFile(file, append(data, '\n'))
}

// Result is one scan.
type Result struct {
	Matches []Match
	// Scanned counts the entries read; Unparsed those that are not Rekor
	// entry bodies (plain tlog-tiles entries are matched by digest of the
	// entry itself only).
	Scanned, Unparsed int
	// Snapshots are the snapshots scanned, oldest first.
	Snapshots []string
	State     State
}

// Scan reads the entries the snapshots after from added, in the mirror or
// kit at root, and returns those matching l.
func Scan(root string, from State, l *List) (*Result, error) {
	fsys := os.DirFS(root)
	dates, err := snapshot.List(fsys)
	if err != nil {
		return nil, err
	}
	res := &Result{State: from, Matches: []Match{}}
	ft := store.FileTiles{Root: root}
	for _, d := range dates {
		if d <= from.Snapshot {
			continue
		}
		s, err := snapshot.Read(fsys, d)
		if err != nil {
			return nil, err
		}
		for i := res.State.Size; i < s.Meta.Size; {
			b := i / c2sp.TileWidth
			width := int(min(s.Meta.Size-b*c2sp.TileWidth, c2sp.TileWidth))
			ref := c2sp.TileRef{Level: c2sp.EntriesLevel, Index: b, Width: width}
			data, err := ft.Tile(ref)
			if err != nil {
				return nil, fmt.Errorf("snapshot %s: %w", d, err)
			}
			es, err := c2sp.ParseEntryBundle(data, width)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", ref.Path(), err)
			}
			for ; i < b*c2sp.TileWidth+int64(width); i++ {
				res.Scanned++
				if m, ok := l.match(es[i-b*c2sp.TileWidth]); ok {
					m.Snapshot, m.Index = d, i
					res.Matches = append(res.Matches, m)
				} else if m.Kind == "" {
					res.Unparsed++
				}
			}
		}
		res.Snapshots = append(res.Snapshots, d)
		res.State = State{Snapshot: d, Size: s.Meta.Size}
	}
	return res, nil
}

func (l *List) match(entry []byte) (Match, bool) {
	var m Match
	b, err := evidence.ParseBody(entry)
	if err != nil {
		d := evidence.EntryDigest(entry)
		if l.Digests[d] {
			return Match{Kind: "entry", Matched: []string{"digest " + d}, Identity: evidence.Identity{Keys: []string{}, Subjects: []string{}, Digests: []string{d}}}, true
		}
		return m, false
	}
	m.Kind = b.Kind + "/" + b.APIVersion
	m.Identity = b.Identities()
	for _, k := range m.Identity.Keys {
		if l.Keys[k] {
			m.Matched = append(m.Matched, "key "+k)
		}
	}
	for _, s := range m.Identity.Subjects {
		if l.Subjects[s] {
			m.Matched = append(m.Matched, "subject "+s)
		}
	}
	for _, d := range m.Identity.Digests {
		if l.Digests[d] {
			m.Matched = append(m.Matched, "digest "+d)
		}
	}
	return m, len(m.Matched) > 0
}
