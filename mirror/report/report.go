// Package report renders a kit's verification as one self-contained HTML
// file: no scripts, fonts, images or links to fetch, so it opens offline in
// any browser. It shows the verdict, the trust policy, the snapshot chain
// with witness quorum and consistency per snapshot, and the tree growth per
// day as an inline SVG chart.
package report

import (
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"

	"github.com/stellaops/tlog/mirror/kit"
)

// Render writes the HTML report of r.
func Render(w io.Writer, r *kit.Report, generated time.Time) error {
	d := data{Report: r, Generated: generated.UTC().Format(time.RFC3339)}
	if r.Trust != nil {
		d.Policy = string(r.Trust.PolicyText)
		for _, l := range r.Trust.Logs {
			d.Logs = append(d.Logs, l.VKey)
		}
		d.Quorum = r.Trust.Policy.QuorumName
	}
	var prev int64
	for i, s := range r.Snapshots {
		row := row{SnapshotResult: s, OK: len(s.Errors) == 0}
		if i > 0 {
			row.Growth = s.Size - prev
		} else {
			row.Growth = s.Size
		}
		prev = s.Size
		d.Rows = append(d.Rows, row)
	}
	d.Chart = chart(r.Snapshots)
	return page.Execute(w, d)
}

type data struct {
	Report    *kit.Report
	Generated string
	Policy    string
	Logs      []string
	Quorum    string
	Rows      []row
	Chart     template.HTML
}

type row struct {
	kit.SnapshotResult
	OK     bool
	Growth int64
}

// chart is an SVG column chart of the tree size per snapshot day.
func chart(ss []kit.SnapshotResult) template.HTML {
	const w, h, left, bottom, top = 720, 260, 70, 40, 20
	if len(ss) == 0 {
		return ""
	}
	var max int64 = 1
	for _, s := range ss {
		if s.Size > max {
			max = s.Size
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg id="growth" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="tree size per day">`, w, h, w, h)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`, left, h-bottom, w-10, h-bottom)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`, left, top, left, h-bottom)
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" text-anchor="end">%d</text>`, left-6, top+4, max)
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" text-anchor="end">0</text>`, left-6, h-bottom+4)
	slot := float64(w-left-20) / float64(len(ss))
	bw := slot * 0.7
	for i, s := range ss {
		bh := float64(h-bottom-top) * float64(s.Size) / float64(max)
		x := float64(left) + 10 + float64(i)*slot
		color := "#2b6cb0"
		if len(s.Errors) > 0 {
			color = "#c53030"
		}
		fmt.Fprintf(&b, `<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %d entries</title></rect>`,
			x, float64(h-bottom)-bh, bw, bh, color, template.HTMLEscapeString(s.Date), s.Size)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="10" text-anchor="middle">%s</text>`, x+bw/2, h-bottom+14, template.HTMLEscapeString(s.Date[5:]))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

var page = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Transparency log audit report</title>
<style>
body{font-family:sans-serif;margin:2em;color:#1a202c}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #cbd5e0;padding:4px 8px;font-size:13px;text-align:left}
th{background:#edf2f7}.ok{color:#276749;font-weight:bold}.fail{color:#c53030;font-weight:bold}
code,pre{font-size:12px;background:#f7fafc}.verdict{font-size:20px;padding:8px;border-radius:4px}
.verdict.ok{background:#c6f6d5}.verdict.fail{background:#fed7d7}
</style></head><body>
<h1>Transparency log audit report</h1>
<p>Kit <code>{{.Report.Kit}}</code>, generated {{.Generated}} with no network access.</p>
{{if .Report.OK}}<p id="verdict" class="verdict ok">VERIFIED: {{len .Report.Snapshots}} snapshots; signatures, witness quorum, chain consistency and tiles</p>
{{else}}<p id="verdict" class="verdict fail">NOT VERIFIED</p>{{end}}
{{if .Report.Manifest}}<p>MANIFEST.sha256 digest <code id="manifest">{{.Report.Manifest}}</code> ({{.Report.Files}} files): compare it with the one you were given.</p>{{end}}
{{if .Report.Errors}}<h2>Failures</h2><ul id="failures">{{range .Report.Errors}}<li class="fail">{{.}}</li>{{end}}</ul>{{end}}
<h2>Tree growth per day</h2>
{{.Chart}}
<h2>Snapshot chain</h2>
<table id="chain"><tr><th>date</th><th>tree size</th><th>growth</th><th>root</th><th>witnesses</th><th>quorum</th><th>log signature</th><th>consistent</th><th>result</th></tr>
{{range .Rows}}<tr><td>{{.Date}}</td><td>{{.Size}}</td><td>+{{.Growth}}</td><td><code>{{.Root}}</code></td><td>{{range .Witnesses}}{{.}} {{end}}</td>
<td>{{if .Quorum}}<span class="ok">met</span>{{else}}<span class="fail">not met</span>{{end}}</td>
<td>{{if .LogSignature}}<span class="ok">valid</span>{{else}}<span class="fail">invalid</span>{{end}}</td>
<td>{{if .Consistent}}<span class="ok">yes</span>{{else}}<span class="fail">no</span>{{end}}</td>
<td>{{if .OK}}<span class="ok">OK</span>{{else}}<span class="fail">FAIL</span><ul>{{range .Errors}}<li>{{.}}</li>{{end}}</ul>{{end}}</td></tr>
{{end}}</table>
<h2>Trust policy</h2>
<p>Quorum: <code>{{.Quorum}}</code></p>
<ul>{{range .Logs}}<li>log key <code>{{.}}</code></li>{{end}}</ul>
<pre id="policy">{{.Policy}}</pre>
</body></html>
`))
