// Package deployment holds the operations manual's machine-checked parts:
// the configuration reference (CONFIG.md) is generated from the services'
// Config structs and their doc comments, and this test fails when it is
// stale. Regenerate with
//
//	go test ./deployment -run TestConfigReference -update
package deployment

import (
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite CONFIG.md")

// source is one Go package's files, parsed.
type source struct {
	types map[string]*ast.StructType
	docs  map[string]string // type name → doc
}

func parse(t *testing.T, files ...string) *source {
	t.Helper()
	s := &source{types: map[string]*ast.StructType{}, docs: map[string]string{}}
	fset := token.NewFileSet()
	for _, f := range files {
		af, err := parser.ParseFile(fset, filepath.Join("..", f), nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range af.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, sp := range gd.Specs {
				ts := sp.(*ast.TypeSpec)
				if st, ok := ts.Type.(*ast.StructType); ok {
					s.types[ts.Name.Name] = st
					doc := gd.Doc
					if ts.Doc != nil {
						doc = ts.Doc
					}
					s.docs[ts.Name.Name] = doc.Text()
				}
			}
		}
	}
	return s
}

// walk writes one table row per YAML key of struct name, recursing into
// struct-typed fields (found in srcs, by package qualifier: "" for the
// struct's own package).
func walk(b *bytes.Buffer, srcs map[string]*source, pkg, name, prefix string, depth int) {
	st := srcs[pkg].types[name]
	if st == nil || depth > 6 {
		return
	}
	for _, f := range st.Fields.List {
		if f.Tag == nil {
			continue
		}
		tag := reflect.StructTag(strings.Trim(f.Tag.Value, "`")).Get("yaml")
		key, opts, _ := strings.Cut(tag, ",")
		if key == "" && opts == "inline" {
			// An inlined struct's keys are this struct's.
			if _, inner, innerPkg, _ := describe(f.Type, pkg); inner != "" {
				walk(b, srcs, innerPkg, inner, prefix, depth+1)
			}
			continue
		}
		if key == "" || key == "-" || len(f.Names) == 0 {
			continue
		}
		typ, inner, innerPkg, list := describe(f.Type, pkg)
		doc := strings.Join(strings.Fields(f.Doc.Text()), " ")
		if doc == "" {
			doc = "(documented with the field above)"
		}
		path := prefix + key
		fmt.Fprintf(b, "| `%s` | %s | %s |\n", path, typ, strings.ReplaceAll(doc, "|", "\\|"))
		if inner != "" {
			sub := path + "."
			if list {
				sub = path + "[]."
			} else if strings.HasPrefix(typ, "map ") {
				sub = path + ".<name>."
			}
			walk(b, srcs, innerPkg, inner, sub, depth+1)
		}
	}
}

// describe names a field's type for the table and, for struct types we
// have the source of, returns the struct to recurse into.
func describe(e ast.Expr, pkg string) (typ, inner, innerPkg string, list bool) {
	switch x := e.(type) {
	case *ast.StarExpr:
		typ, inner, innerPkg, list = describe(x.X, pkg)
		return typ, inner, innerPkg, list
	case *ast.ArrayType:
		typ, inner, innerPkg, _ = describe(x.Elt, pkg)
		return "list of " + typ, inner, innerPkg, true
	case *ast.MapType:
		key, _, _, _ := describe(x.Key, pkg)
		typ, inner, innerPkg, _ = describe(x.Value, pkg)
		return "map " + key + " → " + typ, inner, innerPkg, false
	case *ast.Ident:
		switch x.Name {
		case "string", "bool", "int", "int64", "float64":
			return x.Name, "", "", false
		}
		return "object", x.Name, pkg, false
	case *ast.SelectorExpr:
		q := x.X.(*ast.Ident).Name + "." + x.Sel.Name
		switch q {
		case "time.Duration":
			return "duration", "", "", false
		case "time.Time":
			return "RFC 3339 time", "", "", false
		}
		return "object", x.Sel.Name, x.X.(*ast.Ident).Name, false
	}
	return "?", "", "", false
}

func generate(t *testing.T) []byte {
	var b bytes.Buffer
	b.WriteString(`# Configuration reference

Generated from the services' Config structs and their doc comments (the
operator manual lives in the code); ` + "`go test ./deployment`" + ` fails when this
file is stale. The compose bootstrap writes these files into each service's
volume; edit the service's Config struct comments, not this file.

Durations are Go duration strings ("20ms", "5s", "2m"); omitted fields take
the defaults written here.
`)
	client, service := parse(t, "signer/client/config.go"), parse(t, "internal/service/service.go")
	for _, svc := range []struct {
		title, file string
		srcs        map[string]*source
	}{
		{"logserver (`logserver.yaml`, `logserver -config FILE`)", "logserver/config/config.go",
			map[string]*source{"": parse(t, "logserver/config/config.go", "logserver/config/upstream.go", "logserver/config/queue.go", "logserver/config/freeze.go", "logserver/config/budget.go"), "retry": parse(t, "internal/retry/retry.go"),
				"signerclient": client, "service": service}},
		{"signer (`signer.yaml`, `signer serve -config FILE`)", "signer/server/config.go",
			map[string]*source{"": parse(t, "signer/server/config.go"), "pkcs11": parse(t, "signer/pkcs11/token.go"), "service": service}},
		{"witness (`witness.yaml`, `witness serve -config FILE`)", "witness/config/config.go",
			map[string]*source{"": parse(t, "witness/config/config.go"), "client": client, "service": service}},
	} {
		fmt.Fprintf(&b, "\n## %s\n\nSource: [`%s`](../%s).\n\n", svc.title, svc.file, svc.file)
		if d := strings.TrimSpace(svc.srcs[""].docs["Config"]); d != "" {
			b.WriteString(strings.Join(strings.Fields(d), " ") + "\n\n")
		}
		b.WriteString("| key | type | meaning |\n|---|---|---|\n")
		walk(&b, svc.srcs, "", "Config", "", 0)
	}
	return b.Bytes()
}

func TestConfigReference(t *testing.T) {
	got := generate(t)
	if *update {
		if err := os.WriteFile("CONFIG.md", got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile("CONFIG.md")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("deployment/CONFIG.md is stale: a Config struct changed; run `go test ./deployment -run TestConfigReference -update`")
	}
}
