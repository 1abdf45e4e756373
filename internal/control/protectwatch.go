package control

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Watch loads the protect list into memory and keeps it fresh, within milliseconds of a
// change on any connection, until ctx ends; it returns nil then. After the connection
// reconnects it loads the list again (a watch may miss changes made meanwhile), and Ready
// fails until it has. It returns an error when the watch cannot start or the server ends
// it; Ready fails from then on, until Watch is called again. One Watch at a time. With the
// connection down, returning takes up to the JetStream API timeout (5 s): nats.go deletes
// the watch's consumer on the server first.
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
	w, err := p.kv.WatchAll(ctx)
	if err != nil {
		err = fmt.Errorf("control: watch protect bucket %q: %w", p.bucket, err)
		p.setReady(err)
		return err
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			p.setReady(fmt.Errorf("control: protect bucket %q: not watched (shut down)", p.bucket))
			return nil
		case <-reconnected:
			return nil
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				err := fmt.Errorf("control: the watch of protect bucket %q ended", p.bucket)
				p.setReady(err)
				return err
			case e == nil: // every value present at the start was delivered
				p.loaded(on)
			default:
				p.apply(e)
			}
		}
	}
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
