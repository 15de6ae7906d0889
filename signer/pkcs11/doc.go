// Package pkcs11 signs with ECDSA P-256 and Ed25519 keys held in a PKCS#11
// token (SoftHSM2 in development and tests, a hardware module in production).
//
// A [Token] is one logged-in token, found by its label. It owns a fixed pool
// of sessions opened at [Open]; every PKCS#11 operation borrows one session
// and gives it back, so a session is never used by two goroutines at once
// (SoftHSM2 crashes when that happens). Callers that find the pool empty wait
// until a session is returned or their context ends. One more session, never
// lent, keeps the login alive. Keys are found by CKA_LABEL; a [Signer] is a
// [crypto.Signer] over one private key and is safe for concurrent use.
//
// The module (the .so) is loaded and C_Initialize'd once per process and
// path, shared by every Token on it, and C_Finalize'd when the last Token
// on it is closed. Nothing else in the process may call C_Finalize on it;
// if something else initialised it first, this package never finalises it.
//
// Recovery: when a call fails with CKR_USER_NOT_LOGGED_IN,
// CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED, CKR_OBJECT_HANDLE_INVALID
// or CKR_KEY_HANDLE_INVALID, the Token replaces a dead session, logs in
// again, forgets every cached key handle (handles do not survive a logout),
// finds the key again by label and retries the operation exactly once. Any
// other failure is returned at once. A private key that cannot be found
// while the session is not logged in counts as CKR_USER_NOT_LOGGED_IN (the
// object is hidden, not missing). Dead sessions are replaced, never closed;
// should the token reuse a dead session's handle for a new session, the old
// pool entry is marked stale and reopened before its next use, so a handle
// is never lent twice. Failed PKCS#11 calls are reported as
// [*Error], which carries the CK_RV so that callers can label metrics by it.
//
// Lost token: when an operation still fails after that, the Token asks
// C_GetTokenInfo whether the token is there. If it is not (or the failure
// was CKR_DEVICE_REMOVED, CKR_DEVICE_ERROR, CKR_TOKEN_NOT_PRESENT,
// CKR_TOKEN_NOT_RECOGNIZED, CKR_SLOT_ID_INVALID,
// CKR_CRYPTOKI_NOT_INITIALIZED, CKR_SESSION_HANDLE_INVALID or
// CKR_SESSION_CLOSED, or the token is not found by its label), the Token
// is lost: every operation fails at once with an error matching
// [ErrTokenUnavailable], without waiting for a session, until it is back.
// Getting it back ("reconnecting"), one attempt at a time: find the token
// by label again (its slot may have changed), open a new anchor session,
// log in, forget cached key handles; pool sessions of the old connection
// are reopened before their next use (never closed: their handles may
// belong to new sessions). If that fails and this package initialised the
// module, the module is re-initialised (C_Finalize, C_Initialize) and the
// attempt repeated: SoftHSM2, for one, reads its token directory only in
// C_Initialize, so a token that went away and came back is invisible until
// then (and C_Initialize fails while the directory is missing; the next
// attempt tries again). C_Finalize never overlaps another call: every
// PKCS#11 call holds the module's lock shared, re-initialisation holds it
// exclusively. It ends every session of every Token on the module; the
// other Tokens notice the new module epoch on their next call and
// reconnect in place, transparently. Attempts are made by
// [Token.Check] (the signer's readiness pass, every second while not
// ready) and by operations, at most once per Config.RetryInterval. A
// module initialised by someone else in the process is never finalised:
// then only in-place reconnection is tried.
//
// The PIN is read from a file or an environment variable ([ReadPIN]); it is
// never logged and never part of an error.
package pkcs11
