package pkcs11

import (
	"errors"
	"fmt"
	"sync"

	"github.com/miekg/pkcs11"
)

// module is one loaded and initialised PKCS#11 library, shared by every
// Token opened on the same path in this process.
type module struct {
	path  string
	ctx   *pkcs11.Ctx
	refs  int  // guarded by modules
	owned bool // we called C_Initialize, so we call C_Finalize

	// op is held shared by every PKCS#11 call made through the module and
	// exclusively by reinit: C_Finalize must not overlap any other call.
	// Lock order: op before any Token's mu, and never op twice.
	op      sync.RWMutex
	epoch   uint64 // guarded by op; +1 per reinit: every handle of an earlier epoch is dead
	initErr error  // guarded by op; the last C_Initialize's failure, nil when initialised
}

var modules = struct {
	sync.Mutex
	byPath map[string]*module
}{byPath: map[string]*module{}}

// errNotOwned: the module was initialised by someone else in the process,
// so it is not ours to finalise.
var errNotOwned = errors.New("pkcs11: the module was initialised by another part of the process; it cannot be re-initialised")

// loadModule returns the process-wide module for path, loading and
// initialising it on first use. Each call must be paired with release.
func loadModule(path string) (*module, error) {
	modules.Lock()
	defer modules.Unlock()
	if m := modules.byPath[path]; m != nil {
		m.op.RLock()
		failed, epoch := m.initErr != nil, m.epoch
		m.op.RUnlock()
		if failed { // a re-initialisation failed (token gone); try again
			if err := m.reinit(epoch); err != nil {
				return nil, err
			}
		}
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

// reinit finalises and initialises the module again, unless that already
// happened since epoch seen (another Token did it). Some modules, SoftHSM2
// among them, read their tokens only in C_Initialize: a token that was
// removed and comes back is seen only after this. Every session of every
// Token on the module dies; Tokens notice the new epoch and reconnect.
// While C_Initialize keeps failing (SoftHSM2 fails it while its token
// directory is missing), every call gets CKR_CRYPTOKI_NOT_INITIALIZED and
// the next reinit tries again.
func (m *module) reinit(seen uint64) error {
	if !m.owned {
		return errNotOwned
	}
	m.op.Lock()
	defer m.op.Unlock()
	if m.epoch != seen && m.initErr == nil {
		return nil
	}
	if m.initErr == nil {
		_ = m.ctx.Finalize() // the sessions it closes are dead already
	}
	m.epoch++
	err := m.ctx.Initialize()
	if isCode(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		err = nil
	}
	m.initErr = wrap("C_Initialize", err)
	return m.initErr
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
	m.op.Lock()
	defer m.op.Unlock()
	var err error
	if m.owned && m.initErr == nil {
		err = wrap("C_Finalize", m.ctx.Finalize())
	}
	m.ctx.Destroy()
	return err
}
