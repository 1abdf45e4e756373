package ledger_test

import (
	"errors"
	"testing"
	"time"

	"github.com/kombo-ops/integration-deleter/internal/ledger"
)

// The bucket's leader can go away after storing a write and before answering it. A claim's
// writes try again; these tests lose the reply on purpose and check what the handler is
// left believing.

func TestClaimStoredWithoutReplyIsTheClaimersOwn(t *testing.T) {
	l, _ := newLedger(t)
	const id = "req-lost-reply"
	ledger.UnansweredWrites(l, 1, true, nil)
	c := mustClaim(t, l, id, "A", t0, true) // not "busy" with its own claim
	checkEntry(t, l, id, claimedEntry(id, "A", at(lease), 1, 0))
	mustCount(t, c, 1, 1, at(time.Second)) // its revision is the stored one
	checkEntry(t, l, id, claimedEntry(id, "A", at(time.Second+lease), 1, 1))
}

func TestClaimNotStoredIsTriedAgain(t *testing.T) {
	l, _ := newLedger(t)
	const id = "req-no-reply"
	ledger.UnansweredWrites(l, 2, false, nil)
	c := mustClaim(t, l, id, "A", t0, true)
	checkEntry(t, l, id, claimedEntry(id, "A", at(lease), 1, 0))
	ledger.UnansweredWrites(l, 1, true, nil)
	mustCount(t, c, 2, 1, at(time.Second)) // stored, its reply lost: still A's claim
	checkEntry(t, l, id, claimedEntry(id, "A", at(time.Second+lease), 2, 1))
}

// A write whose reply was lost, and which another handler wrote over meanwhile, is not
// taken as the handler's: it learns that it lost the claim.
func TestLostReplyOverwrittenMeanwhileIsLost(t *testing.T) {
	l, _ := newLedger(t)
	const id = "req-lost-reply-taken"
	a := mustClaim(t, l, id, "A", t0, true)
	ledger.UnansweredWrites(l, 1, true, func() {
		mustClaim(t, l, id, "B", at(2*time.Second+lease), true) // A's renewed claim expired
	})
	err := a.Renew(t.Context(), at(time.Second))
	if !errors.Is(err, ledger.ErrLost) {
		t.Fatalf("Renew after B took the claim over: %v, want ErrLost", err)
	}
	checkEntry(t, l, id, claimedEntry(id, "B", at(2*time.Second+2*lease), 2, 0))
}
