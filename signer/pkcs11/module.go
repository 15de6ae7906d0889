package pkcs11

import (
	"fmt"
	"sync"

	"github.com/miekg/pkcs11"
)

// module is one loaded and initialised PKCS#11 library, shared by every
// Token opened on the same path in this process.
type module struct {
	path  string
	ctx   *pkcs11.Ctx
	refs  int
	owned bool // we called C_Initialize, so we call C_Finalize
}

var modules = struct {
	sync.Mutex
	byPath map[string]*module
}{byPath: map[string]*module{}}

// loadModule returns the process-wide module for path, loading and
// initialising it on first use. Each call must be paired with release.
func loadModule(path string) (*module, error) {
	modules.Lock()
	defer modules.Unlock()
	if m := modules.byPath[path]; m != nil {
		m.refs++
		return m, nil
	}
	ctx := pkcs11.New(path)
	if ctx == nil {
		return nil, fmt.Errorf("%w %q", ErrModule, path)
	}
	owned := true
	if err := ctx.Initialize(); err != nil {
		if !isCode(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
			ctx.Destroy()
			return nil, wrap("C_Initialize", err)
		}
		// Someone else in this process initialised it; leave C_Finalize to them.
		owned = false
	}
	m := &module{path: path, ctx: ctx, refs: 1, owned: owned}
	modules.byPath[path] = m
	return m, nil
}

// release drops one reference; the last one finalises and unloads the module.
func (m *module) release() error {
	modules.Lock()
	defer modules.Unlock()
	m.refs--
	if m.refs > 0 {
		return nil
	}
	delete(modules.byPath, m.path)
	var err error
	if m.owned {
		err = wrap("C_Finalize", m.ctx.Finalize())
	}
	m.ctx.Destroy()
	return err
}
