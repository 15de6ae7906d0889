// Package c2sp is the project's one implementation of the C2SP wire formats
// that travel between a log and its witnesses:
//
//   - signed notes (c2sp.org/signed-note): Open verifies every signature
//     line whose key name and key ID match a trusted key, not only the
//     first one of each (name, ID);
//   - checkpoints (c2sp.org/tlog-checkpoint): ParseCheckpoint, FormatCheckpoint;
//   - cosignature/v1 lines (c2sp.org/tlog-cosignature): ParseSignatureLine,
//     CosignatureTime;
//   - the add-checkpoint exchange of c2sp.org/tlog-witness: the request
//     body (ParseAddCheckpoint, AddCheckpoint.Marshal) and the 409 body
//     (ParseSizeBody, FormatSizeBody).
//
// The witness server (witness/tlogwitness) and the log's feeder
// (logserver/witnessing) both use it. Key names, key IDs, vkeys and the
// cosignature/v1 message are in package notekey. Every parse error wraps
// ErrMalformed.
package c2sp

import "errors"

// ErrMalformed wraps every parse error of this package.
var ErrMalformed = errors.New("malformed request")
