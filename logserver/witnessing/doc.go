// Package witnessing is the log side of witness cosigning: the logserver's
// C2SP checkpoint (c2sp.org/tlog-checkpoint, origin = the log's name, one
// Ed25519 signature by the log's note key) and its witness cosignatures.
//
//   - ParsePolicy reads a c2sp.org/tlog-policy file (witnesses, k-of-n
//     groups, quorum) and evaluates a set of verified cosigners against it.
//   - CheckpointSigner builds and signs checkpoints with an Ed25519
//     crypto.Signer (file key today, HSM later) and prints the log's vkey.
//   - Feeder feeds the newest tree head to every witness of the policy with
//     c2sp.org/tlog-witness add-checkpoint, collects and verifies their
//     cosignature/v1 lines, and publishes the cosigned checkpoint once the
//     quorum is met: saved through Store (every version kept), served by
//     Handler at GET /checkpoint.
//
// This checkpoint is separate from the Rekor-API checkpoint (origin
// "<hostname> - <treeID>", exactly one ECDSA signature, which Rekor clients
// need): nothing here touches it. Witnesses sign only the checkpoint text, so
// a cosignature here is valid for the same text wherever it appears.
//
// Files: feeder.go schedules rounds and publishes; witness.go keeps each
// witness's state (size, backoff, pacing, persistence); client.go is the
// tlog-witness client of one witness, on the wire formats of
// internal/c2sp; policy.go parses tlog-policy; checkpoint.go signs the
// log's checkpoints. The Feeder works for any log with a C2SP checkpoint
// (NoteSigner and ProofFunc), not only this logserver's tree.
//
// Contract: Update never blocks; Run (with the requests it starts) signs,
// feeds and publishes, off the log's write path; a witness that is down,
// slow or misbehaving never stops publication when the remaining witnesses
// meet the quorum, and it catches up (from the last size it cosigned, kept
// in the Store across restarts, or the size its 409 reports) when it
// returns. A witness is sent at most one checkpoint per MinInterval. A
// witness reporting a tree larger than the log's is reported (metric, one
// log line per episode) and retried with backoff. Latest never goes back
// to a smaller tree.
package witnessing
