package e2e

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/sigstore/rekor/pkg/generated/models"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/stellaops/tlog/logserver/config"
)

// TestConcurrentWrites posts distinct entries from many goroutines to a
// fresh log: every write is acknowledged once, indexes are exactly 0..N-1,
// every answer verifies, and the tree the log ends with is the one the
// answers describe.
func TestConcurrentWrites(t *testing.T) {
	const entriesN, workers = 200, 32
	e := newEnv(t)
	treeID := e.logInfo(t).treeID
	s := newSigner(t)

	// Proposals are built (and signed) before the race starts.
	pes := make([]models.ProposedEntry, entriesN)
	for i := range pes {
		if i%4 == 3 {
			pe, err := s.DSSE([]byte(fmt.Sprintf("concurrent artifact %d", i)))
			if err != nil {
				t.Fatal(err)
			}
			pes[i] = pe
		} else {
			pes[i] = hashedRekord(t, s, []byte(fmt.Sprintf("concurrent artifact %d", i)))
		}
	}
	type answer struct {
		r   httpResp
		err error
	}
	answers := make([]answer, entriesN)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				answers[i].r, answers[i].err = e.try(http.MethodPost, "/api/v1/log/entries", pes[i])
			}
		}()
	}
	for i := range entriesN {
		jobs <- i
	}
	close(jobs)
	wg.Wait()

	byIndex := make([]string, entriesN)
	leaves := make([][]byte, entriesN)
	minSize, minSizeRoot := int64(entriesN+1), ""
	for i, a := range answers {
		if a.err != nil {
			t.Fatalf("entry %d: %v", i, a.err)
		}
		if a.r.status != http.StatusCreated {
			t.Fatalf("entry %d: got %s, want 201", i, a.r)
		}
		id, le := decodeLogEntry(t, a.r.body)
		e.checkEntry(t, id, le, treeID)
		idx := *le.LogIndex
		if idx < 0 || idx >= entriesN {
			t.Fatalf("entry %d: logIndex %d outside 0..%d", i, idx, entriesN-1)
		}
		if byIndex[idx] != "" {
			t.Fatalf("logIndex %d given to %s and %s", idx, byIndex[idx], id)
		}
		byIndex[idx] = id
		leaves[idx] = leafHash(entryBody(t, le))
		if ts := *le.Verification.InclusionProof.TreeSize; ts < minSize {
			minSize, minSizeRoot = ts, *le.Verification.InclusionProof.RootHash
		}
	}
	// All indexes 0..N-1 are used (N distinct indexes in range).

	li := e.logInfo(t)
	if *li.TreeSize != entriesN {
		t.Fatalf("final tree size %d, want %d", *li.TreeSize, entriesN)
	}
	if want := hex.EncodeToString(mth(leaves)); *li.RootHash != want {
		t.Fatalf("final root %s, but the answered leaves give %s", *li.RootHash, want)
	}
	// The earliest (signed, verified) tree head an answer carried is
	// consistent with the final one.
	path := fmt.Sprintf("/api/v1/log/proof?firstSize=%d&lastSize=%d", minSize, entriesN)
	r := e.get(t, path)
	wantStatus(t, path, r, 200)
	var cp models.ConsistencyProof
	if err := json.Unmarshal(r.body, &cp); err != nil {
		t.Fatal(err)
	}
	var hashes [][]byte
	for _, h := range cp.Hashes {
		b, _ := hex.DecodeString(h)
		hashes = append(hashes, b)
	}
	oldRoot, _ := hex.DecodeString(minSizeRoot)
	if err := proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(minSize), entriesN, hashes, oldRoot, li.sth.Hash); err != nil {
		t.Fatalf("consistency %d -> %d: %v", minSize, entriesN, err)
	}
	if hex.EncodeToString(mth(leaves[:minSize])) != minSizeRoot {
		t.Fatalf("root at size %d in an answer differs from the final tree's prefix", minSize)
	}
	// Reads agree with the answers.
	for _, idx := range []int{0, entriesN / 2, entriesN - 1} {
		r := e.get(t, fmt.Sprintf("/api/v1/log/entries?logIndex=%d", idx))
		wantStatus(t, "GET by index", r, 200)
		id, le := decodeLogEntry(t, r.body)
		if id != byIndex[idx] {
			t.Fatalf("index %d holds %s, the write answer said %s", idx, id, byIndex[idx])
		}
		e.checkEntry(t, id, le, treeID)
	}
	t.Logf("%d entries by %d writers; smallest tree head in an answer: %d", entriesN, workers, minSize)
}

// TestConcurrentDuplicatesAdmitWorkers races duplicates with several admit
// workers (sequencer.admit_workers, documented as 1..64), so that the same
// leaf can be queued by concurrent Trillian transactions.
func TestConcurrentDuplicatesAdmitWorkers(t *testing.T) {
	e := newEnvWith(t, func(c *config.Config) { c.Sequencer.AdmitWorkers = 4 })
	raceDuplicates(t, e, newSigner(t), e.logInfo(t).treeID, true)
}
