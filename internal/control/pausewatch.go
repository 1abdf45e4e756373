package control

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// pauseRecheck is how often WatchPause re-reads the pause without a sign of change: it
// catches advisories missed across reconnects.
const pauseRecheck = time.Second

// WatchPause calls fn with the consumer's pause state at start and after every change,
// until ctx ends; it returns nil then, or an error at once when it cannot start.
//
// A change is seen within milliseconds of Pause or Resume returning in any process, and of a
// pause ending by itself: WatchPause listens to the server's pause advisory for the consumer
// and watches the note's key, re-reading the state on each; it also re-reads every second.
// fn is called only when the state differs from the one it was last given, on WatchPause's
// goroutine.
//
// With the connection down, returning takes up to the JetStream API timeout (5 s): nats.go
// deletes the note watch's consumer first.
//
// A failed read keeps the last state and is retried at the next sign or second; onErr (nil:
// ignored) is called with each such error. The pause itself does not depend on the watcher:
// the server enforces it.
func WatchPause(ctx context.Context, js jetstream.JetStream, bucket, stream, consumer string, fn func(PauseState), onErr func(error)) error {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return fmt.Errorf("control: pause note bucket %q: %w", bucket, err)
	}
	adv := make(chan *nats.Msg, 16) // a full channel drops advisories: the re-read covers them
	sub, err := js.Conn().ChanSubscribe("$JS.EVENT.ADVISORY.CONSUMER.PAUSE."+stream+"."+consumer, adv)
	if err != nil {
		return fmt.Errorf("control: watch pause of %s > %s: %w", stream, consumer, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := js.Conn().Flush(); err != nil { // subscribed on the server before the first read
		return fmt.Errorf("control: watch pause of %s > %s: %w", stream, consumer, err)
	}
	kw, err := kv.Watch(ctx, pauseKey(consumer), jetstream.UpdatesOnly())
	if err != nil {
		return fmt.Errorf("control: watch pause note of %s: %w", consumer, err)
	}
	defer func() { _ = kw.Stop() }()
	tick := time.NewTicker(pauseRecheck)
	defer tick.Stop()

	notes := kw.Updates()
	var last PauseState
	known := false
	for {
		st, err := readPause(ctx, js, kv, stream, consumer)
		switch {
		case err != nil && ctx.Err() == nil && onErr != nil:
			onErr(err)
		case err == nil && (!known || !st.equal(last)):
			known, last = true, st
			fn(st)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-adv:
		case _, ok := <-notes:
			if !ok {
				notes = nil // the watcher ended; advisories and the re-read remain
			}
		case <-tick.C:
		}
	}
}
