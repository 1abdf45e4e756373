package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kombo-ops/integration-deleter/kombo"
	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

// ceiling measures what loopback HTTP alone allows on this machine: c goroutines of this
// process call the fake (with the same options) through the daemon's own Kombo client, n
// calls in all, with no NATS, no decoding, no results. It returns the time taken and the
// mean duration of a call as the fake saw it. No consumer can do better than this, so it
// puts the bound ratio of scenario 1 in perspective.
func ceiling(ctx context.Context, n, c int, o kombotest.Options) (time.Duration, time.Duration, error) {
	fake := kombotest.New(withMaxCalls(o))
	var mu sync.Mutex
	var sum time.Duration
	var admitted int
	fake.OnCall(func(call kombotest.Call) {
		if call.Method == http.MethodDelete && call.Code == "" && !call.End.IsZero() {
			mu.Lock()
			sum += call.End.Sub(call.Start)
			admitted++
			mu.Unlock()
		}
	})
	baseURL, stop, err := kombotest.Serve("127.0.0.1:0", fake)
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		fake.Close()
		stop()
	}()
	kc, err := kombo.New(kombo.Options{BaseURL: baseURL, APIKey: "bench"})
	if err != nil {
		return 0, 0, err
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, c)
	start := time.Now()
	for range c {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) || ctx.Err() != nil {
					return
				}
				if _, err := kc.DeleteIntegration(ctx, fmt.Sprintf("personio:ceiling-%06d", i)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return 0, 0, err
	}
	mu.Lock()
	defer mu.Unlock()
	if admitted == 0 {
		return elapsed, 0, nil
	}
	return elapsed, sum / time.Duration(admitted), nil
}
