package tlogtiles

import (
	"errors"
	"strconv"
	"strings"
)

// resource is a parsed tlog-tiles resource path below the prefix.
type resource struct {
	entries bool  // tile/entries/<N>: an entry bundle
	level   int   // tile level (0 for bundles)
	index   int64 // tile or bundle index
	width   int   // 1..255 for a partial resource, 256 for a full one
}

var errPath = errors.New("not a tlog-tiles resource path")

// parseTilePath parses "<L>/<N>[.p/<W>]" or "entries/<N>[.p/<W>]" (what
// follows "tile/") strictly as c2sp.org/tlog-tiles writes them: <L> 0..63
// without leading zeroes, <N> in 3-digit groups all but the last prefixed
// with "x", <W> 1..255 without leading zeroes.
func parseTilePath(p string) (resource, error) {
	var r resource
	head, rest, ok := strings.Cut(p, "/")
	if !ok {
		return r, errPath
	}
	if head == "entries" {
		r.entries = true
	} else {
		l, err := canonicalInt(head, 63)
		if err != nil {
			return r, err
		}
		r.level = int(l)
	}
	r.width = 256
	if i := strings.Index(rest, ".p/"); i >= 0 {
		w, err := canonicalInt(rest[i+3:], 255)
		if err != nil || w == 0 {
			return r, errPath
		}
		r.width = int(w)
		rest = rest[:i]
	}
	groups := strings.Split(rest, "/")
	for i, g := range groups {
		if i < len(groups)-1 {
			if !strings.HasPrefix(g, "x") {
				return r, errPath
			}
			g = g[1:]
		}
		if len(g) != 3 || g[0] < '0' || g[0] > '9' || g[1] < '0' || g[1] > '9' || g[2] < '0' || g[2] > '9' {
			return r, errPath
		}
		if r.index > (1<<62)/1000 {
			return r, errPath
		}
		d, _ := strconv.Atoi(g)
		r.index = r.index*1000 + int64(d)
	}
	// Leading all-zero groups are not how the index is written.
	if len(groups) > 1 && groups[0] == "x000" {
		return r, errPath
	}
	return r, nil
}

// canonicalInt parses a decimal with no sign and no leading zeroes, at most max.
func canonicalInt(s string, max int64) (int64, error) {
	if s == "" || len(s) > 1 && s[0] == '0' {
		return 0, errPath
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, errPath
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v > max {
		return 0, errPath
	}
	return v, nil
}
