package control

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Watch loads the protect list into memory and keeps it fresh, within milliseconds of a
// change on any connection, until ctx ends; it returns nil then. After the connection
// reconnects it loads the list again (a watch may miss changes made meanwhile, and the
// bucket may have been created anew), and Ready fails until it has. It returns an error
// when the watch cannot start or the server ends it; Ready fails from then on, until Watch
// is called again. One Watch at a time. With the connection down, returning takes up to
// the JetStream API timeout (5 s): nats.go deletes the watch's consumer on the server first.
func (p *Protect) Watch(ctx context.Context) error {
	reconnected := p.nc.StatusChanged(nats.CONNECTED)
	defer p.nc.RemoveStatusListener(reconnected)
	for {
		err := p.watchOnce(ctx, reconnected)
		if err != nil || ctx.Err() != nil {
			return err
		}
	}
}

// watchOnce loads the list and follows it until ctx ends (nil), the connection reconnects
// (nil, with ctx alive: load again) or the watch fails (its error).
func (p *Protect) watchOnce(ctx context.Context, reconnected <-chan nats.Status) error {
	p.reset()
	on := p.nc.Stats().Reconnects // before the watch: a reconnect from here on makes it stale
	w, err := p.startWatch(ctx)
	if err != nil {
		err = fmt.Errorf("control: watch protect bucket %q: %w", p.bucket, err)
		p.setReady(err)
		return err
	}
	for {
		select {
		case <-ctx.Done():
			p.setReady(fmt.Errorf("control: protect bucket %q: not watched (shut down)", p.bucket))
			_ = w.Stop()
			return nil
		case <-reconnected:
			stopWatch(w) // not waited for: the watch that replaces it starts at once
			return nil
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				err := fmt.Errorf("control: the watch of protect bucket %q ended", p.bucket)
				p.setReady(err)
				_ = w.Stop()
				return err
			case e == nil: // every value present at the start was delivered
				p.loaded(on)
			default:
				p.apply(e)
			}
		}
	}
}

// startWatch starts a watch of every key's latest value and what follows, half a second at
// a time: right after a reconnect the request may have gone to a server that is going
// away, which never answers it.
func (p *Protect) startWatch(ctx context.Context) (jetstream.KeyWatcher, error) {
	for {
		wctx, cancel := context.WithCancel(ctx) // ends the watch: kept until it is stopped
		late := time.AfterFunc(watchTry, cancel)
		w, err := p.kv.WatchAll(wctx)
		timedOut := !late.Stop()
		if !timedOut && err == nil {
			return stoppable{w, cancel}, nil
		}
		cancel()
		if err == nil {
			stopWatch(w) // started just too late: its context is cancelled
		}
		if ctx.Err() != nil || !timedOut { // shut down, or an answer that is an error
			return nil, cmp.Or(err, ctx.Err())
		}
	}
}

// watchTry bounds one try to start a watch.
const watchTry = 500 * time.Millisecond

// stoppable is a watch that also ends its context when stopped.
type stoppable struct {
	jetstream.KeyWatcher
	cancel context.CancelFunc
}

func (s stoppable) Stop() error {
	defer s.cancel()
	return s.KeyWatcher.Stop()
}

// stopWatch stops w without waiting for it: nats.go first deletes the watch's consumer on
// the server, which can take the whole API timeout (5 s) when that server went away. Its
// updates are drained meanwhile, so that its delivery never blocks. The goroutine ends
// with that request, or with the connection.
func stopWatch(w jetstream.KeyWatcher) {
	go func() {
		go func() {
			for range w.Updates() {
			}
		}()
		_ = w.Stop()
	}()
}

// loaded marks the list loaded on the connection as it was after on reconnects.
func (p *Protect) loaded(on uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ready, p.loadedOn = nil, on
}

// reset empties the in-memory list before a watch loads it again.
func (p *Protect) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.exact, p.wild, p.ready = map[string]Protection{}, nil, errNotLoaded
}

func (p *Protect) setReady(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ready = err
}

// apply brings the in-memory list in line with one KV entry.
func (p *Protect) apply(e jetstream.KeyValueEntry) {
	pattern, ok := patternOf(e.Key())
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.exact, pattern)
	p.wild = slices.DeleteFunc(p.wild, func(pr Protection) bool { return pr.Pattern == pattern })
	pr, ok := decodeProtection(e)
	switch {
	case !ok:
	case !strings.Contains(pattern, "*"):
		p.exact[pattern] = pr
	default:
		i, _ := slices.BinarySearchFunc(p.wild, pattern, func(pr Protection, pat string) int { return strings.Compare(pr.Pattern, pat) })
		p.wild = slices.Insert(p.wild, i, pr)
	}
}

// decodeProtection returns the protection an entry holds, and false for a delete or a key
// that is not protectKey's. The key names the pattern; a value that cannot be decoded still
// protects it.
func decodeProtection(e jetstream.KeyValueEntry) (Protection, bool) {
	pattern, ok := patternOf(e.Key())
	if !ok || e.Operation() != jetstream.KeyValuePut {
		return Protection{}, false
	}
	var pr Protection
	if json.Unmarshal(e.Value(), &pr) != nil {
		pr = Protection{Reason: unreadable}
	}
	pr.Pattern = pattern
	return pr, true
}
