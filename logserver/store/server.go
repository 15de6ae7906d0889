package store

import (
	"context"
	"errors"
	"fmt"
)

// ServerRequirements are what the logserver needs from the database server.
type ServerRequirements struct {
	// MaxEntryBytes is the largest canonical entry the log accepts: every
	// statement that carries one must fit max_allowed_packet.
	MaxEntryBytes int
	// AllowNonDurable accepts a server that does not flush every commit
	// to disk (acknowledged entries can then be lost in a power cut, and the
	// log restarted on a shorter history than it published).
	AllowNonDurable bool
}

// PacketBytesFor is the max_allowed_packet a canonical entry of n bytes
// needs: with client-side interpolation a binary value can take twice its
// size in a statement, plus the statement itself.
func PacketBytesFor(n int) int64 { return 2*int64(n) + 1<<20 }

// CheckServer checks the database server against r and records its packet
// size for Publish. It reports every problem at once, each with its fix.
func (s *Store) CheckServer(ctx context.Context, r ServerRequirements) error {
	var packet, flush int64
	var logBin, syncBinlog int64
	if err := s.db.QueryRowContext(ctx,
		"SELECT @@global.max_allowed_packet, @@global.innodb_flush_log_at_trx_commit, @@global.log_bin, @@global.sync_binlog").
		Scan(&packet, &flush, &logBin, &syncBinlog); err != nil {
		return fmt.Errorf("database settings: %w", err)
	}
	var errs []error
	if need := PacketBytesFor(r.MaxEntryBytes); packet < need {
		errs = append(errs, fmt.Errorf("database max_allowed_packet is %d bytes; entries of up to %d bytes (sequencer.max_entry_bytes) need at least %d: raise max_allowed_packet on the server or lower the cap",
			packet, r.MaxEntryBytes, need))
	}
	if !r.AllowNonDurable {
		if flush != 1 {
			errs = append(errs, fmt.Errorf("database innodb_flush_log_at_trx_commit is %d: the log needs 1 (every commit on disk before an entry is acknowledged); set it, or set database.allow_non_durable to accept losing acknowledged entries in a power cut", flush))
		}
		if logBin == 1 && syncBinlog != 1 {
			errs = append(errs, fmt.Errorf("database sync_binlog is %d with the binary log on: the log needs 1; set it, or set database.allow_non_durable", syncBinlog))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	s.packet.Store(packet)
	return nil
}
