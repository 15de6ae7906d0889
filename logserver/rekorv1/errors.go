package rekorv1

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"

	oaerrors "github.com/go-openapi/errors"
	"github.com/go-sql-driver/mysql"
	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/sigstore/rekor/pkg/types"

	"github.com/stellaops/tlog/logserver/sequence"
)

// Rekor's client-facing messages (sigstore/rekor pkg/api/error.go).
const (
	msgTrillianCommunication = "unexpected error communicating with transparency log"
	msgValidation            = "error processing entry: %v"
	msgEntryExists           = "an equivalent entry already exists in the transparency log with UUID %v"
	msgFirstSize             = "firstSize(%d) must be less than lastSize(%d)"
	msgLastSizeTooLarge      = "the tree size requested(%d) was greater than what is currently observable(%d)"
	msgMaxSearchQueries      = "more than max allowed %d entries in request"
	msgMalformedPublicKey    = "public key provided could not be parsed"
	msgUnsupportedPKI        = "the PKI format requested is not supported by this server"
	msgClientDisconnected    = "client disconnected during request"
	msgShuttingDown          = "the transparency log is shutting down"
	msgOverloaded            = "the transparency log has too many writes in flight, retry later"
	msgStopped               = "the transparency log has stopped accepting entries (see its /readyz)"
	msgUnavailable           = "the transparency log's database is unavailable; retry later"
)

// retryAfterUnavailable is the Retry-After of a 503 for an unreachable
// database, in seconds.
const retryAfterUnavailable = "5"

// unavailable reports an error of the database connection itself (it is
// down, restarting or unreachable), as opposed to an error of the request:
// the client should retry, nothing was stored.
func unavailable(err error) bool {
	var ne *net.OpError
	var de *net.DNSError
	return errors.As(err, &ne) || errors.As(err, &de) || errors.Is(err, driver.ErrBadConn) || errors.Is(err, mysql.ErrInvalidConn)
}

// statusClientClosedRequest is nginx's code for a client that hung up.
const statusClientClosedRequest = 499

// apiError is an error with the HTTP status and client message to answer.
type apiError struct {
	status   int
	message  string // empty: http.StatusText(status)
	location string // Location header (409)
	retry    bool   // Retry-After header (503 while overloaded)
	err      error  // cause, logged
}

func (e *apiError) Error() string {
	if e.err != nil {
		return e.err.Error()
	}
	return e.message
}

func (e *apiError) Unwrap() error { return e.err }

func badRequest(err error, message string) error {
	return &apiError{status: http.StatusBadRequest, message: message, err: err}
}

// errNotFound answers 404 with an empty body, as Rekor does for entries.
var errNotFound = &apiError{status: http.StatusNotFound}

// writeError is the one place that maps errors to HTTP answers.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var (
		ae  *apiError
		dup *sequence.ErrDuplicate
		big *sequence.TooLargeError
		oa  oaerrors.Error
		ive *types.InputValidationError
	)
	switch {
	case errors.As(err, &ae):
	case errors.As(err, &dup):
		// Only the create handler sees duplicates; it builds the 409 itself.
		ae = &apiError{status: http.StatusConflict, err: err}
	case errors.As(err, &oa):
		// go-swagger's parameter and body validation answers: codes of 600
		// and above are validation failures, served as 422.
		status := int(oa.Code())
		if status >= 600 {
			status = http.StatusUnprocessableEntity
		}
		s.logRequestError(r, status, err)
		oaerrors.ServeError(w, r, err)
		return
	case errors.As(err, &ive):
		ae = &apiError{status: http.StatusBadRequest, message: "validation error: " + ive.Error(), err: err}
	case errors.As(err, &big):
		ae = &apiError{status: http.StatusRequestEntityTooLarge, message: big.Error(), err: err}
	case errors.Is(err, sequence.ErrOverloaded):
		ae = &apiError{status: http.StatusServiceUnavailable, message: msgOverloaded, retry: true, err: err}
	case errors.Is(err, sequence.ErrStopped):
		ae = &apiError{status: http.StatusServiceUnavailable, message: msgStopped, err: err}
	case errors.Is(err, sequence.ErrClosed):
		ae = &apiError{status: http.StatusServiceUnavailable, message: msgShuttingDown, err: err}
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		ae = &apiError{status: statusClientClosedRequest, message: msgClientDisconnected, err: err}
	case errors.Is(err, context.DeadlineExceeded):
		ae = &apiError{status: http.StatusGatewayTimeout, message: http.StatusText(http.StatusGatewayTimeout), err: err}
	case unavailable(err):
		ae = &apiError{status: http.StatusServiceUnavailable, message: msgUnavailable, err: err}
		w.Header().Set("Retry-After", retryAfterUnavailable)
	default:
		ae = &apiError{status: http.StatusInternalServerError, message: msgTrillianCommunication, err: err}
	}
	s.logRequestError(r, ae.status, err)
	if ae.location != "" {
		w.Header().Set("Location", ae.location)
	}
	if ae.retry {
		w.Header().Set("Retry-After", "1")
	}
	if ae == errNotFound {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	msg := ae.message
	if msg == "" {
		msg = http.StatusText(ae.status)
	}
	writeJSON(w, ae.status, &models.Error{Code: int64(ae.status), Message: msg})
}

func (s *Server) logRequestError(r *http.Request, status int, err error) {
	level := slog.LevelWarn
	if status >= 500 && status != statusClientClosedRequest {
		level = slog.LevelError
	}
	if status == http.StatusNotFound || status == http.StatusConflict {
		level = slog.LevelDebug
	}
	s.slog.Log(r.Context(), level, "request failed", "method", r.Method, "path", r.URL.Path, "status", status, "error", err)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
