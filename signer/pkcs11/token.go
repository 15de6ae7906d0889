package pkcs11

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/miekg/pkcs11"
)

// DefaultModule is where Debian installs the SoftHSM2 module.
const DefaultModule = "/usr/lib/softhsm/libsofthsm2.so"

// Config selects a token and says how to log in to it.
type Config struct {
	// Module is the path of the PKCS#11 library. Default: [DefaultModule].
	Module string `yaml:"module"`
	// TokenLabel is the label of the token (CKA_LABEL of the token, as shown
	// by `softhsm2-util --show-slots`). Slot numbers are not used: SoftHSM2
	// assigns random ones.
	TokenLabel string `yaml:"token_label"`
	// PINFile is a file holding the user PIN (one trailing newline ignored).
	PINFile string `yaml:"pin_file"`
	// PINEnv is the name of an environment variable holding the user PIN.
	// Exactly one of PINFile, PINEnv and PIN must be set.
	PINEnv string `yaml:"pin_env"`
	// PIN is the user PIN for programs that already hold it. It is never
	// read from or written to a configuration file.
	PIN string `yaml:"-" json:"-"`
	// Sessions is the number of sessions lent to signing goroutines; more
	// callers wait. Measured on SoftHSM2, more sessions than cores add
	// throughput only at the cost of a much longer tail. Default:
	// GOMAXPROCS, at most 4.
	Sessions int `yaml:"sessions"`
	// PoolWait bounds how long [Signer.Sign], which has no context, waits for
	// a session. Zero means 30 seconds. Context-taking methods use their
	// context instead.
	PoolWait time.Duration `yaml:"pool_wait"`
	// ObservePoolWait, when set, is called with the time every signing
	// call waited for a session (zero when one was free). For metrics; it
	// must be cheap and safe for concurrent use.
	ObservePoolWait func(time.Duration) `yaml:"-" json:"-"`
}

func (c Config) pin() (string, error) {
	if c.PIN != "" {
		if c.PINFile != "" || c.PINEnv != "" {
			return "", fmt.Errorf("pkcs11: PIN given both directly and by file or environment")
		}
		return c.PIN, nil
	}
	return ReadPIN(c.PINFile, c.PINEnv)
}

// Token is a logged-in PKCS#11 token with a bounded pool of sessions.
// All methods are safe for concurrent use.
type Token struct {
	mod      *module
	label    string
	slot     uint
	pin      string
	poolWait time.Duration

	pool chan *session // sessions not lent out
	size int

	observeWait func(time.Duration)
	done        chan struct{} // closed by Close

	mu     sync.Mutex // guards anchor, gen, owner, every session's h and stale, and recovery
	anchor *session   // never lent; keeps the login alive
	gen    uint64     // incremented whenever cached key handles become stale
	owner  map[pkcs11.SessionHandle]*session

	closeOnce sync.Once
	closeErr  error
}

// session is one PKCS#11 session; h is replaced when the session dies.
type session struct {
	h pkcs11.SessionHandle
	// stale means the token handed h out again, to a session opened after
	// this one died: h must not be used, lest two goroutines share it.
	stale bool
}

// Open loads the module (once per process), finds the token by label, opens
// the session pool and logs in. A wrong PIN gives an error matching
// [ErrPINIncorrect]; an unknown label gives [ErrTokenNotFound].
func Open(ctx context.Context, cfg Config) (*Token, error) {
	if cfg.Module == "" {
		cfg.Module = DefaultModule
	}
	if cfg.TokenLabel == "" {
		return nil, fmt.Errorf("pkcs11: no token label configured")
	}
	pin, err := cfg.pin()
	if err != nil {
		return nil, err
	}
	n := cfg.Sessions
	if n <= 0 {
		n = min(runtime.GOMAXPROCS(0), 4)
	}
	wait := cfg.PoolWait
	if wait <= 0 {
		wait = 30 * time.Second
	}
	mod, err := loadModule(cfg.Module)
	if err != nil {
		return nil, err
	}
	t := &Token{
		mod: mod, label: cfg.TokenLabel, pin: pin, poolWait: wait,
		pool: make(chan *session, n), size: n, done: make(chan struct{}),
		observeWait: cfg.ObservePoolWait,
		anchor:      &session{}, owner: map[pkcs11.SessionHandle]*session{},
	}
	if err := t.open(); err != nil {
		t.closeSessions()
		return nil, errors.Join(err, mod.release())
	}
	slog.DebugContext(ctx, "pkcs11 token open", slog.String("token", t.label), slog.Uint64("slot", uint64(t.slot)), slog.Int("sessions", n))
	return t, nil
}

func (t *Token) open() error {
	slot, err := findSlot(t.mod.ctx, t.label)
	if err != nil {
		return err
	}
	t.slot = slot
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.reopenLocked(t.anchor); err != nil {
		return err
	}
	if err := t.login(t.anchor.h); err != nil {
		return err
	}
	for range t.size {
		s := &session{}
		if err := t.reopenLocked(s); err != nil {
			return err
		}
		t.pool <- s
	}
	return nil
}

// findSlot returns the slot holding the initialised token labelled label.
func findSlot(ctx *pkcs11.Ctx, label string) (uint, error) {
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return 0, wrap("C_GetSlotList", err)
	}
	for _, s := range slots {
		ti, err := ctx.GetTokenInfo(s)
		if err != nil {
			return 0, wrap("C_GetTokenInfo", err)
		}
		if ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0 && strings.TrimSpace(ti.Label) == label {
			return s, nil
		}
	}
	return 0, fmt.Errorf("%w: %q", ErrTokenNotFound, label)
}

// reopenLocked gives s a newly opened session. The caller holds t.mu.
// The old handle, if any, is dead and is not closed.
func (t *Token) reopenLocked(s *session) error {
	h, err := t.mod.ctx.OpenSession(t.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return wrap("C_OpenSession", err)
	}
	t.adoptLocked(s, h)
	return nil
}

// adoptLocked records that s now owns handle h. PKCS#11 allows a token to
// reuse the handle of a closed session: if another of our sessions still
// holds h, that session died unnoticed and is marked stale.
func (t *Token) adoptLocked(s *session, h pkcs11.SessionHandle) {
	if t.owner[s.h] == s {
		delete(t.owner, s.h)
	}
	if other := t.owner[h]; other != nil && other != s {
		other.stale = true
	}
	t.owner[h] = s
	s.h, s.stale = h, false
}

// login logs the user in. Login state belongs to the application and the
// token, not to a session, so "already logged in" is success.
func (t *Token) login(h pkcs11.SessionHandle) error {
	err := t.mod.ctx.Login(h, pkcs11.CKU_USER, t.pin)
	if err != nil && !isCode(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
		return wrap("C_Login", err)
	}
	return nil
}

// Label is the token's label.
func (t *Token) Label() string { return t.label }

// Sessions is the size of the session pool: the number of signatures the
// token computes at once.
func (t *Token) Sessions() int { return t.size }

// Present checks, with C_GetTokenInfo, that the token is still in its slot,
// initialised, and that its user PIN is not locked. It takes no session.
func (t *Token) Present() error {
	select {
	case <-t.done:
		return ErrClosed
	default:
	}
	ti, err := t.mod.ctx.GetTokenInfo(t.slot)
	if err != nil {
		return wrap("C_GetTokenInfo", err)
	}
	switch {
	case strings.TrimSpace(ti.Label) != t.label || ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED == 0:
		return fmt.Errorf("%w: %q is no longer in its slot", ErrTokenNotFound, t.label)
	case ti.Flags&pkcs11.CKF_USER_PIN_LOCKED != 0:
		return &Error{Op: "C_GetTokenInfo", Code: pkcs11.CKR_PIN_LOCKED}
	}
	return nil
}

// acquire lends a session to the caller until release.
func (t *Token) acquire(ctx context.Context) (*session, error) {
	select {
	case <-t.done:
		return nil, ErrClosed
	default:
	}
	if t.observeWait != nil {
		start := time.Now()
		defer func() { t.observeWait(time.Since(start)) }()
	}
	select {
	case s := <-t.pool:
		select {
		case <-t.done:
			t.pool <- s
			return nil, ErrClosed
		default:
			return s, nil
		}
	case <-t.done:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, fmt.Errorf("pkcs11: waiting for a session: %w", context.Cause(ctx))
	}
}

func (t *Token) release(s *session) { t.pool <- s }

func (t *Token) generation() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.gen
}

// prepare returns the handle and generation to use s with, replacing the
// session first if it is stale.
func (t *Token) prepare(s *session) (pkcs11.SessionHandle, uint64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s.stale {
		if err := t.reopenLocked(s); err != nil {
			return 0, 0, err
		}
	}
	return s.h, t.gen, nil
}

// do runs op on a borrowed session. If op fails with a recoverable code, the
// Token recovers (see the package documentation) and runs op once more.
func (t *Token) do(ctx context.Context, op func(h pkcs11.SessionHandle, gen uint64) error) error {
	s, err := t.acquire(ctx)
	if err != nil {
		return err
	}
	defer t.release(s)
	h, gen, err := t.prepare(s)
	if err != nil {
		return err
	}
	err = op(h, gen)
	if !recoverable(err) {
		return err
	}
	slog.WarnContext(ctx, "pkcs11 recovering", slog.String("token", t.label), slog.Any("error", err))
	if rerr := t.recover(s, gen); rerr != nil {
		return errors.Join(err, fmt.Errorf("pkcs11: recovery failed: %w", rerr))
	}
	if h, gen, err = t.prepare(s); err != nil {
		return err
	}
	return op(h, gen)
}

// recover makes s usable again after a failure seen at generation gen:
// it replaces s if the session is gone, and unless another goroutine already
// did so since gen, reopens the anchor session if needed, logs in again and
// invalidates cached key handles.
func (t *Token) recover(s *session, gen uint64) error {
	c := t.mod.ctx
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, err := c.GetSessionInfo(s.h); s.stale || err != nil {
		if err := t.reopenLocked(s); err != nil {
			return err
		}
	}
	if t.gen != gen {
		return nil
	}
	if _, err := c.GetSessionInfo(t.anchor.h); t.anchor.stale || err != nil {
		if err := t.reopenLocked(t.anchor); err != nil {
			return err
		}
	}
	if err := t.login(t.anchor.h); err != nil {
		return err
	}
	t.gen++
	return nil
}

// Close waits for lent sessions to come back, closes all sessions and
// releases the module. It does not log out: login state is shared with any
// other Token on the same token in this process.
func (t *Token) Close() error {
	t.closeOnce.Do(func() {
		close(t.done)
		// Wait for lent sessions without holding mu: their borrowers may
		// need it (to recover) before they give them back.
		sessions := make([]*session, 0, t.size)
		for range t.size {
			sessions = append(sessions, <-t.pool)
		}
		t.mu.Lock()
		defer t.mu.Unlock()
		for _, s := range sessions {
			t.closeErr = errors.Join(t.closeErr, t.closeLocked(s))
		}
		t.closeErr = errors.Join(t.closeErr, t.closeLocked(t.anchor), t.mod.release())
	})
	return t.closeErr
}

// closeLocked closes s unless it is stale (its handle is another's now);
// a session that already died is not an error.
func (t *Token) closeLocked(s *session) error {
	if s.stale {
		return nil
	}
	err := t.mod.ctx.CloseSession(s.h)
	if isCode(err, pkcs11.CKR_SESSION_HANDLE_INVALID) || isCode(err, pkcs11.CKR_SESSION_CLOSED) {
		return nil
	}
	return wrap("C_CloseSession", err)
}

// closeSessions closes whatever a failed open managed to open.
func (t *Token) closeSessions() {
	for {
		select {
		case s := <-t.pool:
			_ = t.mod.ctx.CloseSession(s.h)
		default:
			if t.anchor.h != 0 {
				_ = t.mod.ctx.CloseSession(t.anchor.h)
			}
			return
		}
	}
}
