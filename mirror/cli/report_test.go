package cli

import (
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stellaops/tlog/testing/stack"
)

// chromium returns Debian's chromium, installing it with apt if missing.
func chromium(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := stack.EnsurePackages(ctx, map[string]string{"chromium": "chromium"}); err != nil {
		t.Skipf("chromium is not installed and apt could not install it: %v", err)
	}
	p, err := exec.LookPath("chromium")
	if err != nil {
		t.Skipf("chromium still missing after apt: %v", err)
	}
	return p
}

// headless runs chromium without network on a local file.
func headless(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // hang guard
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--user-data-dir=" + t.TempDir(),
		"--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v", args, err)
	}
	return out
}

// TestReportChromium renders the audit report of a kit in headless
// Chromium (no network: every request goes to a dead proxy) and checks
// the DOM it built and the pixels of the growth chart.
func TestReportChromium(t *testing.T) {
	bin := chromium(t)
	f := newKitFixture(t)
	dir := t.TempDir()
	html := filepath.Join(dir, "report.html")
	if out := mustRun(t, "report", "--kit", f.kitFile, "--out", html); !strings.Contains(out, "verified, 3 snapshots") {
		t.Fatal(out)
	}
	dom := string(headless(t, bin, "--dump-dom", "file://"+html))
	for _, want := range []string{
		"VERIFIED: 3 snapshots", "2026-11-28", "2026-11-29", "2026-11-30", "+600", "673",
		`<rect class="bar"`, "2026-11-30: 673 entries", "quorum both", "witness A",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered report lacks %q", want)
		}
	}
	if n := strings.Count(dom, `<rect class="bar"`); n != 3 {
		t.Errorf("%d chart bars, want 3", n)
	}
	shot := filepath.Join(dir, "report.png")
	headless(t, bin, "--window-size=1000,900", "--screenshot="+shot, "file://"+html)
	fh, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(fh)
	fh.Close()
	if err != nil {
		t.Fatal(err)
	}
	blue := 0
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bb, _ := img.At(x, y).RGBA()
			if r>>8 == 0x2b && g>>8 == 0x6c && bb>>8 == 0xb0 {
				blue++
			}
		}
	}
	if blue < 2000 { // three bars, the tallest ~200 px high
		t.Errorf("the chart's bars cover %d px, want a drawn chart", blue)
	}

	// A tampered kit: the report says so.
	u := f.unpacked(t)
	dropLine(t, filepath.Join(u, "snapshots/2026-11-29/checkpoint"), "— witness.test/w1 ")
	remanifest(t, u)
	mustRun(t, "report", "--kit", u, "--out", html)
	dom = string(headless(t, bin, "--dump-dom", "file://"+html))
	if !strings.Contains(dom, "NOT VERIFIED") || !strings.Contains(dom, "not met") {
		t.Errorf("the tampered kit's report does not show the failure")
	}
}
