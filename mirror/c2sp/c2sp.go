// Package c2sp holds the C2SP wire formats the mirror needs that the
// project's internal/c2sp does not have yet: tlog-tiles paths and entry
// bundles (c2sp.org/tlog-tiles) and tlog-proof files
// (c2sp.org/tlog-proof@v1). Checkpoints and signed notes come from
// internal/c2sp, vkeys from internal/notekey, tlog-policy files from
// logserver/witnessing. These functions belong in internal/c2sp; they are
// kept here, in one place, until they move.
package c2sp

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// TileHeight is the tlog-tiles tile height; a full tile has TileWidth
// hashes (or entries, for an entry bundle).
const (
	TileHeight = 8
	TileWidth  = 1 << TileHeight
	HashSize   = 32
)

// EntriesLevel is the pseudo level of entry bundles in TilePath.
const EntriesLevel = -1

// TilePath is the tlog-tiles path of tile (level, index) with width hashes
// (width 256 or 0 = a full tile, otherwise a partial tile ".p/<width>").
// Level EntriesLevel names the entry bundle. The index is written in
// 3-digit groups, all but the last prefixed with "x":
// 1234067 → x001/x234/067.
func TilePath(level int, index int64, width int) string {
	var b strings.Builder
	b.WriteString("tile/")
	if level == EntriesLevel {
		b.WriteString("entries")
	} else {
		b.WriteString(strconv.Itoa(level))
	}
	b.WriteByte('/')
	var groups []string
	for n := index; ; n /= 1000 {
		groups = append(groups, fmt.Sprintf("%03d", n%1000))
		if n < 1000 {
			break
		}
	}
	for i := len(groups) - 1; i >= 0; i-- {
		if i > 0 {
			b.WriteByte('x')
		}
		b.WriteString(groups[i])
		if i > 0 {
			b.WriteByte('/')
		}
	}
	if width > 0 && width < TileWidth {
		b.WriteString(".p/")
		b.WriteString(strconv.Itoa(width))
	}
	return b.String()
}

// TileRef names one tile of a tree: level (EntriesLevel for a bundle),
// index and width (1..256).
type TileRef struct {
	Level int
	Index int64
	Width int
}

// Path is the tile's tlog-tiles path.
func (r TileRef) Path() string { return TilePath(r.Level, r.Index, r.Width) }

// Tiles lists the tiles (hash tiles of every level, and the entry bundles)
// of a tree of size newSize that a copy holding the tree of size oldSize
// lacks: at each level the tile oldSize's rightmost tile grew into and
// every tile after it. Entry bundles are listed before hash tiles, lower
// levels first.
func Tiles(oldSize, newSize int64) []TileRef {
	var out []TileRef
	add := func(level, tileLevel int) {
		shift := uint(TileHeight * tileLevel)
		full := newSize >> (shift + TileHeight)
		width := int((newSize >> shift) % TileWidth)
		first := oldSize >> (shift + TileHeight)
		// The old rightmost tile is unchanged if the level did not grow.
		if oldSize>>shift == newSize>>shift {
			return
		}
		for i := first; i < full; i++ {
			out = append(out, TileRef{level, i, TileWidth})
		}
		if width > 0 {
			out = append(out, TileRef{level, full, width})
		}
	}
	add(EntriesLevel, 0)
	for l := 0; newSize>>(TileHeight*l) > 0; l++ {
		add(l, l)
	}
	return out
}

// MaxEntry is the largest entry an entry bundle can hold.
const MaxEntry = 1<<16 - 1

// AppendEntry appends one entry (uint16 big-endian length, bytes) to an
// entry bundle.
func AppendEntry(bundle, entry []byte) ([]byte, error) {
	if len(entry) > MaxEntry {
		return nil, fmt.Errorf("entry of %d bytes does not fit an entry bundle (max %d)", len(entry), MaxEntry)
	}
	bundle = binary.BigEndian.AppendUint16(bundle, uint16(len(entry)))
	return append(bundle, entry...), nil
}

// ParseEntryBundle splits an entry bundle into its entries; it must hold
// exactly want entries with no trailing bytes.
func ParseEntryBundle(data []byte, want int) ([][]byte, error) {
	out := make([][]byte, 0, want)
	for len(data) > 0 {
		if len(data) < 2 {
			return nil, errors.New("entry bundle: truncated length")
		}
		n := int(binary.BigEndian.Uint16(data))
		if len(data) < 2+n {
			return nil, fmt.Errorf("entry bundle: entry %d truncated", len(out))
		}
		out = append(out, data[2:2+n])
		data = data[2+n:]
	}
	if len(out) != want {
		return nil, fmt.Errorf("entry bundle holds %d entries, want %d", len(out), want)
	}
	return out, nil
}

// ProofHeader is the first line of a tlog-proof file.
const ProofHeader = "c2sp.org/tlog-proof@v1"

// Proof is a c2sp.org/tlog-proof@v1 file: an entry's index, its inclusion
// proof (hashes from the leaf's sibling up) and the checkpoint the proof
// is against, verbatim with its signatures.
type Proof struct {
	Extra      [][]byte
	Index      int64
	Hashes     [][HashSize]byte
	Checkpoint []byte
}

// ParseProof parses a tlog-proof file.
func ParseProof(data []byte) (*Proof, error) {
	head, cp, ok := bytes.Cut(data, []byte("\n\n"))
	if !ok {
		return nil, errors.New("tlog-proof: no blank line before the checkpoint")
	}
	lines := strings.Split(string(head), "\n")
	if len(lines) < 2 || lines[0] != ProofHeader {
		return nil, fmt.Errorf("tlog-proof: first line must be %q", ProofHeader)
	}
	p := &Proof{Checkpoint: cp}
	i := 1
	for ; i < len(lines) && strings.HasPrefix(lines[i], "extra "); i++ {
		e, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(lines[i], "extra "))
		if err != nil {
			return nil, fmt.Errorf("tlog-proof: line %d: bad extra data", i+1)
		}
		p.Extra = append(p.Extra, e)
	}
	if i >= len(lines) || !strings.HasPrefix(lines[i], "index ") {
		return nil, errors.New("tlog-proof: missing index line")
	}
	s := strings.TrimPrefix(lines[i], "index ")
	idx, err := strconv.ParseInt(s, 10, 64)
	if err != nil || idx < 0 || strconv.FormatInt(idx, 10) != s {
		return nil, fmt.Errorf("tlog-proof: bad index %q", s)
	}
	p.Index = idx
	for i++; i < len(lines); i++ {
		h, err := base64.StdEncoding.DecodeString(lines[i])
		if err != nil || len(h) != HashSize {
			return nil, fmt.Errorf("tlog-proof: line %d: not a base64 SHA-256 hash", i+1)
		}
		p.Hashes = append(p.Hashes, [HashSize]byte(h))
	}
	if len(p.Hashes) > 63 {
		return nil, errors.New("tlog-proof: more than 63 proof hashes")
	}
	return p, nil
}

// Marshal encodes the proof as a tlog-proof file.
func (p *Proof) Marshal() []byte {
	var b bytes.Buffer
	b.WriteString(ProofHeader + "\n")
	for _, e := range p.Extra {
		b.WriteString("extra " + base64.StdEncoding.EncodeToString(e) + "\n")
	}
	fmt.Fprintf(&b, "index %d\n", p.Index)
	for _, h := range p.Hashes {
		b.WriteString(base64.StdEncoding.EncodeToString(h[:]) + "\n")
	}
	b.WriteByte('\n')
	b.Write(p.Checkpoint)
	return b.Bytes()
}
