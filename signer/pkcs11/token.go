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
	// PINFile is a file holding the user PIN (surrounding whitespace
	// ignored; keep it mode 0600).
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
	// RetryInterval is the least time between two attempts of signing
	// calls to reconnect a lost token (see the package documentation);
	// meanwhile they fail at once with ErrTokenUnavailable. [Token.Check]
	// (the signer's readiness pass) tries regardless. Default 1 s.
	RetryInterval time.Duration `yaml:"retry_interval"`
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
	pin      string
	poolWait time.Duration
	retry    time.Duration

	pool chan *session // sessions not lent out
	size int

	observeWait func(time.Duration)
	done        chan struct{} // closed by Close

	mu       sync.Mutex // guards everything below, and every session's h, conn and stale
	slot     uint
	anchor   *session // never lent; keeps the login alive
	gen      uint64   // incremented whenever cached key handles become stale
	conn     uint64   // incremented by every reconnection: sessions of an older one are dead
	modEpoch uint64   // the module epoch the current connection was made in
	owner    map[pkcs11.SessionHandle]*session
	lost     error     // why the token is unavailable; nil while it works
	nextTry  time.Time // when a signing call may next try to reconnect

	reconnecting sync.Mutex // one reconnection attempt at a time

	closeOnce sync.Once
	closeErr  error
}

// session is one PKCS#11 session; h is replaced when the session dies.
type session struct {
	h    pkcs11.SessionHandle
	conn uint64 // the Token connection h was opened in
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
	retry := cfg.RetryInterval
	if retry <= 0 {
		retry = time.Second
	}
	mod, err := loadModule(cfg.Module)
	if err != nil {
		return nil, err
	}
	t := &Token{
		mod: mod, label: cfg.TokenLabel, pin: pin, poolWait: wait, retry: retry,
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
	t.mod.op.RLock()
	defer t.mod.op.RUnlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.modEpoch = t.mod.epoch
	slot, err := findSlot(t.mod.ctx, t.label)
	if err != nil {
		return err
	}
	t.slot = slot
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
// Slots whose token does not answer are skipped.
func findSlot(ctx *pkcs11.Ctx, label string) (uint, error) {
	slots, err := ctx.GetSlotList(true)
	if err != nil {
		return 0, wrap("C_GetSlotList", err)
	}
	failed := 0
	var first error
	for _, s := range slots {
		ti, err := ctx.GetTokenInfo(s)
		if err != nil {
			if failed++; first == nil {
				first = wrap("C_GetTokenInfo", err)
			}
			continue
		}
		if ti.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0 && strings.TrimSpace(ti.Label) == label {
			return s, nil
		}
	}
	if failed > 0 {
		return 0, fmt.Errorf("%w: %q (%d of %d slots do not answer: %v)", ErrTokenNotFound, label, failed, len(slots), first)
	}
	return 0, fmt.Errorf("%w: %q", ErrTokenNotFound, label)
}

// reopenLocked gives s a newly opened session. The caller holds t.mu and
// the module's op lock.
// The old handle, if any, is dead and is not closed.
func (t *Token) reopenLocked(s *session) error {
	h, err := t.mod.ctx.OpenSession(t.slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return wrap("C_OpenSession", err)
	}
	t.adoptLocked(s, h)
	s.conn = t.conn
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
// While the token is lost it fails with [ErrTokenUnavailable].
func (t *Token) Present() error {
	select {
	case <-t.done:
		return ErrClosed
	default:
	}
	t.mod.op.RLock()
	defer t.mod.op.RUnlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.lost != nil {
		return fmt.Errorf("%w: %w", ErrTokenUnavailable, t.lost)
	}
	return t.presentLocked()
}

// presentLocked is Present's probe; the caller holds the op lock and t.mu.
func (t *Token) presentLocked() error {
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

// Lost returns why the token is lost (wrapping [ErrTokenUnavailable]),
// or nil while it works. It makes no PKCS#11 call.
func (t *Token) Lost() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.lost == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrTokenUnavailable, t.lost)
}

// Check is the readiness probe: it reconnects a lost token (see the
// package documentation; at most one attempt at a time), then checks that
// the token is present. A token found missing is marked lost, so that
// signing calls fail fast with [ErrTokenUnavailable] until it is back.
func (t *Token) Check(ctx context.Context) error {
	select {
	case <-t.done:
		return ErrClosed
	default:
	}
	t.mu.Lock()
	lost := t.lost
	t.mu.Unlock()
	if lost != nil {
		if !t.reconnecting.TryLock() {
			return fmt.Errorf("%w: %w (reconnecting)", ErrTokenUnavailable, lost)
		}
		err := t.reconnect(ctx)
		t.reconnecting.Unlock()
		if err != nil {
			return fmt.Errorf("%w: %w", ErrTokenUnavailable, err)
		}
		return nil
	}
	return t.lose(ctx, nil)
}

// lose probes the token after cause (nil: a plain check). If the token is
// missing it is marked lost and the result wraps [ErrTokenUnavailable];
// otherwise lose returns cause unchanged.
func (t *Token) lose(ctx context.Context, cause error) error {
	t.mod.op.RLock()
	defer t.mod.op.RUnlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.lost != nil {
		return fmt.Errorf("%w: %w", ErrTokenUnavailable, t.lost)
	}
	if t.mod.epoch != t.modEpoch {
		// The module was re-initialised by another Token: nothing is
		// wrong with this token, its sessions just need reopening.
		if err := t.reconnectLocked(); err == nil {
			return cause
		}
	}
	perr := t.presentLocked()
	if !gone(cause) && (perr == nil || errors.Is(perr, ErrPINLocked)) {
		// There, or there but locked: reconnecting would not help.
		if cause == nil {
			return perr
		}
		return cause
	}
	if cause == nil {
		cause = perr
	}
	t.lost, t.nextTry = cause, time.Now().Add(t.retry)
	slog.WarnContext(ctx, "pkcs11 token lost; signing is unavailable until it is back", slog.String("token", t.label),
		slog.Any("error", cause), slog.Any("probe", perr))
	return fmt.Errorf("%w: %w", ErrTokenUnavailable, cause)
}

// reconnect gets a lost token back: first in place (the token is found by
// its label again: new sessions, login), else by re-initialising the
// module and trying once more. The caller holds t.reconnecting.
func (t *Token) reconnect(ctx context.Context) error {
	t.mod.op.RLock()
	t.mu.Lock()
	epoch := t.mod.epoch // the epoch in which the token is (still) missing, if this fails
	err := t.reconnectLocked()
	if err == nil {
		t.lost = nil
	} else {
		t.nextTry = time.Now().Add(t.retry)
	}
	t.mu.Unlock()
	t.mod.op.RUnlock()
	if err == nil {
		slog.InfoContext(ctx, "pkcs11 token back", slog.String("token", t.label))
		return nil
	}
	if !errors.Is(err, ErrTokenNotFound) && !gone(err) {
		return err // found but refusing (a wrong or locked PIN): re-initialising would not help
	}
	if rerr := t.mod.reinit(epoch); rerr != nil {
		return errors.Join(err, rerr)
	}
	t.mod.op.RLock()
	defer t.mod.op.RUnlock()
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.reconnectLocked(); err != nil {
		t.lost, t.nextTry = err, time.Now().Add(t.retry)
		return err
	}
	t.lost = nil
	slog.InfoContext(ctx, "pkcs11 token back after re-initialising the module", slog.String("token", t.label), slog.Uint64("slot", uint64(t.slot)))
	return nil
}

// reconnectLocked starts a new connection to the token: finds its slot by
// label, opens a new anchor session and logs in. Every session of the old
// connection is dead (it is never closed, its handle may belong to someone
// else by now) and is reopened before its next use; cached key handles
// are invalidated. The caller holds the op lock and t.mu.
func (t *Token) reconnectLocked() error {
	slot, err := findSlot(t.mod.ctx, t.label)
	if err != nil {
		return err
	}
	t.slot, t.modEpoch = slot, t.mod.epoch
	t.conn++
	t.gen++
	t.owner = map[pkcs11.SessionHandle]*session{}
	t.anchor = &session{}
	if err := t.reopenLocked(t.anchor); err != nil {
		return err
	}
	return t.login(t.anchor.h)
}

// usable fails fast with ErrTokenUnavailable while the token is lost,
// except that once per retry interval one caller tries to reconnect.
func (t *Token) usable(ctx context.Context) error {
	t.mu.Lock()
	lost, due := t.lost, !time.Now().Before(t.nextTry)
	t.mu.Unlock()
	if lost == nil {
		return nil
	}
	if !due || !t.reconnecting.TryLock() {
		return fmt.Errorf("%w: %w", ErrTokenUnavailable, lost)
	}
	defer t.reconnecting.Unlock()
	if err := t.reconnect(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrTokenUnavailable, err)
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
// session first if it is stale or belongs to an older connection, and
// reconnecting first if another Token re-initialised the module. The
// caller holds the op lock.
func (t *Token) prepare(s *session) (pkcs11.SessionHandle, uint64, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.lost != nil {
		return 0, 0, fmt.Errorf("%w: %w", ErrTokenUnavailable, t.lost)
	}
	if t.mod.epoch != t.modEpoch {
		if err := t.reconnectLocked(); err != nil {
			return 0, 0, err
		}
	}
	if s.stale || s.conn != t.conn {
		if err := t.reopenLocked(s); err != nil {
			return 0, 0, err
		}
	}
	return s.h, t.gen, nil
}

// do runs op on a borrowed session. If op fails with a recoverable code, the
// Token recovers (see the package documentation) and runs op once more.
// If it still fails and the token turns out to be missing, the token is
// marked lost and the error wraps [ErrTokenUnavailable].
func (t *Token) do(ctx context.Context, op func(h pkcs11.SessionHandle, gen uint64) error) error {
	if err := t.usable(ctx); err != nil {
		return err
	}
	s, err := t.acquire(ctx)
	if err != nil {
		return err
	}
	defer t.release(s)
	err = t.try(ctx, s, op)
	if err == nil || errors.Is(err, ErrTokenUnavailable) || !tokenTrouble(err) {
		return err
	}
	return t.lose(ctx, err)
}

// try is do's part under the op lock.
func (t *Token) try(ctx context.Context, s *session, op func(h pkcs11.SessionHandle, gen uint64) error) error {
	t.mod.op.RLock()
	defer t.mod.op.RUnlock()
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
// invalidates cached key handles. The caller holds the op lock.
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
		t.mod.op.RLock()
		t.mu.Lock()
		if t.lost == nil && t.mod.epoch == t.modEpoch {
			for _, s := range sessions {
				if s.conn == t.conn {
					t.closeErr = errors.Join(t.closeErr, t.closeLocked(s))
				}
			}
			t.closeErr = errors.Join(t.closeErr, t.closeLocked(t.anchor))
		}
		t.mu.Unlock()
		t.mod.op.RUnlock()
		t.closeErr = errors.Join(t.closeErr, t.mod.release())
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
	t.mod.op.RLock()
	defer t.mod.op.RUnlock()
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
