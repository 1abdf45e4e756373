package ledger

import (
	"context"
	"sync/atomic"
)

// UnansweredWrites makes the next n writes of l end as if no reply came: each is sent to
// the server first when stored is set (a leader that stored it and went away before
// answering), not at all otherwise. between, when set, runs after each such write, before
// it returns: what another handler did meanwhile.
func UnansweredWrites(l *Ledger, n int, stored bool, between func()) {
	var left atomic.Int64
	left.Store(int64(n))
	next := l.write
	l.write = func(ctx context.Context, k string, data []byte, rev uint64) (uint64, error) {
		if left.Add(-1) < 0 {
			return next(ctx, k, data, rev)
		}
		if stored {
			if _, err := next(ctx, k, data, rev); err != nil {
				return 0, err
			}
		}
		if between != nil {
			between()
		}
		return 0, context.DeadlineExceeded
	}
}
