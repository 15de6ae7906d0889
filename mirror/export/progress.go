package export

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress shows long downloads: a bar redrawn in place on a terminal,
// a line every few seconds otherwise.
type progress struct {
	w     io.Writer
	tty   bool
	every time.Duration

	mu           sync.Mutex
	phase        string
	n, total     int
	bytes        int64
	began, shown time.Time
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w, every: 5 * time.Second}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty, p.every = true, 200*time.Millisecond
		}
	}
	return p
}

func (p *progress) start(phase string, total int) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.phase, p.n, p.total, p.bytes = phase, 0, total, 0
	p.began, p.shown = time.Now(), time.Now()
}

// add counts n more items of size bytes.
func (p *progress) add(n, size int) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n += n
	p.bytes += int64(size)
	p.show(false)
}

// update sets the count (tiles.Progress).
func (p *progress) update(done, total int) {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n, p.total = done, total
	p.show(false)
}

func (p *progress) done() {
	if p.w == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.total > 0 || p.n > 0 {
		p.show(true)
		if p.tty {
			fmt.Fprintln(p.w)
		}
	}
}

func (p *progress) show(final bool) {
	if !final && time.Since(p.shown) < p.every {
		return
	}
	p.shown = time.Now()
	el := time.Since(p.began).Seconds()
	rate := float64(p.n) / max(el, 1e-3)
	if p.tty {
		const width = 30
		fill := width
		if p.total > 0 {
			fill = width * p.n / p.total
		}
		fmt.Fprintf(p.w, "\r%-8s [%s%s] %d/%d  %.1f MiB  %.0f/s ", p.phase, strings.Repeat("#", fill), strings.Repeat(" ", width-fill),
			p.n, p.total, float64(p.bytes)/(1<<20), rate)
		return
	}
	fmt.Fprintf(p.w, "mirror: %s %d/%d tiles, %.1f MiB, %.0f/s\n", p.phase, p.n, p.total, float64(p.bytes)/(1<<20), rate)
}
