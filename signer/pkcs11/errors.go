package pkcs11

import (
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/pkcs11"
)

// Sentinel errors. Failed PKCS#11 calls are [*Error] values instead; match
// those with errors.Is against the CKR sentinels below or with errors.As.
var (
	ErrModule        = errors.New("pkcs11: cannot load module")
	ErrTokenNotFound = errors.New("pkcs11: no token with that label")
	ErrKeyNotFound   = errors.New("pkcs11: no key with that label")
	ErrKeyExists     = errors.New("pkcs11: an object with that label already exists")
	ErrAmbiguousKey  = errors.New("pkcs11: more than one key with that label")
	ErrUnsupported   = errors.New("unsupported key or signing options")
	ErrClosed        = errors.New("pkcs11: token closed")
	// ErrTokenUnavailable: the token is lost (removed, not found, its
	// module failing) and is being reconnected; retry later.
	ErrTokenUnavailable = errors.New("pkcs11: token unavailable")
	ErrNoPIN            = errors.New("pkcs11: no PIN configured")

	// ErrPINIncorrect matches an [*Error] whose code is CKR_PIN_INCORRECT.
	ErrPINIncorrect error = pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)
	// ErrPINLocked matches an [*Error] whose code is CKR_PIN_LOCKED.
	ErrPINLocked error = pkcs11.Error(pkcs11.CKR_PIN_LOCKED)
)

// Error is a PKCS#11 call that returned something other than CKR_OK.
// It unwraps to the github.com/miekg/pkcs11 Error of the same code.
type Error struct {
	Op   string // the PKCS#11 function, e.g. "C_Sign"
	Code uint   // the CK_RV
}

func (e *Error) Error() string {
	return fmt.Sprintf("pkcs11: %s: %s (0x%X)", e.Op, e.Name(), e.Code)
}

// Name is the CKR_* name of the code, e.g. "CKR_PIN_INCORRECT", or the hex
// value when the name is unknown. It is meant as a metric label.
func (e *Error) Name() string {
	s := pkcs11.Error(e.Code).Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && i+2 < len(s) {
		return s[i+2:]
	}
	return fmt.Sprintf("0x%X", e.Code)
}

// Unwrap returns the github.com/miekg/pkcs11 Error of the same code.
func (e *Error) Unwrap() error { return pkcs11.Error(e.Code) }

// Code returns the CK_RV carried by err, if err is or wraps an [*Error] or a
// github.com/miekg/pkcs11 Error.
func Code(err error) (uint, bool) {
	var e pkcs11.Error
	if errors.As(err, &e) {
		return uint(e), true
	}
	return 0, false
}

// wrap turns an error returned by github.com/miekg/pkcs11 into an [*Error].
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	var e pkcs11.Error
	if errors.As(err, &e) {
		return &Error{Op: op, Code: uint(e)}
	}
	return fmt.Errorf("pkcs11: %s: %w", op, err)
}

func isCode(err error, code uint) bool {
	c, ok := Code(err)
	return ok && c == code
}

// recoverable reports whether err is one of the codes after which the Token
// re-logs in, re-finds its keys and retries once.
func recoverable(err error) bool {
	c, ok := Code(err)
	if !ok {
		return false
	}
	switch c {
	case pkcs11.CKR_USER_NOT_LOGGED_IN,
		pkcs11.CKR_SESSION_HANDLE_INVALID,
		pkcs11.CKR_SESSION_CLOSED,
		pkcs11.CKR_OBJECT_HANDLE_INVALID,
		pkcs11.CKR_KEY_HANDLE_INVALID:
		return true
	}
	return false
}

// tokenTrouble reports whether err, left after an operation's own
// recovery, might mean that the token is gone, so that the Token probes it.
func tokenTrouble(err error) bool {
	if errors.Is(err, ErrKeyNotFound) || errors.Is(err, ErrTokenNotFound) {
		return true
	}
	_, ok := Code(err)
	return ok
}

// gone reports whether err says that the token or its sessions are gone
// even if C_GetTokenInfo still answers: the Token is then marked lost and
// reconnects.
func gone(err error) bool {
	if errors.Is(err, ErrTokenNotFound) {
		return true
	}
	c, ok := Code(err)
	if !ok {
		return false
	}
	switch c {
	case pkcs11.CKR_DEVICE_REMOVED,
		pkcs11.CKR_DEVICE_ERROR,
		pkcs11.CKR_TOKEN_NOT_PRESENT,
		pkcs11.CKR_TOKEN_NOT_RECOGNIZED,
		pkcs11.CKR_SLOT_ID_INVALID,
		pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED,
		pkcs11.CKR_SESSION_HANDLE_INVALID,
		pkcs11.CKR_SESSION_CLOSED:
		return true
	}
	return false
}
