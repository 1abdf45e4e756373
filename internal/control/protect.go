package control

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// unreadable is the reason of a protection whose value cannot be decoded: its key still
// names the pattern, and a protection nobody can read must still protect.
const unreadable = "(unreadable entry)"

// Protection is one pattern of integration ids that must not be deleted (see Match).
type Protection struct {
	Pattern string    `json:"pattern"`
	Reason  string    `json:"reason,omitempty"`
	By      string    `json:"by,omitempty"`
	AddedAt time.Time `json:"added_at"`
}

// Protect is the list of protected integration ids, kept in a KV bucket (one key per
// pattern) and, while Watch runs, in memory.
type Protect struct {
	kv     jetstream.KeyValue
	nc     *nats.Conn
	bucket string

	mu    sync.RWMutex
	exact map[string]Protection // patterns without '*', by pattern
	wild  []Protection          // the others, sorted by pattern
	ready error                 // see Ready
	// loadedOn is the connection's reconnect count when the list was loaded: after a
	// reconnect the watch may have missed changes, so the list is stale until reloaded.
	loadedOn uint64
}

var errNotLoaded = errors.New("control: protect list not loaded yet")

// protectKey is the KV key of pattern.
func protectKey(pattern string) string {
	return "p." + base64.RawURLEncoding.EncodeToString([]byte(pattern))
}

// patternOf returns the pattern of a KV key, and false for a key that is not protectKey's.
func patternOf(key string) (string, bool) {
	enc, ok := strings.CutPrefix(key, "p.")
	b, err := base64.RawURLEncoding.DecodeString(enc)
	return string(b), ok && err == nil
}

// OpenProtect opens the protect list in bucket, creating the bucket when missing if provision
// is set.
func OpenProtect(ctx context.Context, js jetstream.JetStream, bucket string, replicas int, provision bool) (*Protect, error) {
	kv, err := js.KeyValue(ctx, bucket)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound) && !provision:
		return nil, fmt.Errorf("control: protect bucket %q %w", bucket, ErrMissing)
	case errors.Is(err, jetstream.ErrBucketNotFound):
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      bucket,
			Description: "integration-deleter: integration id patterns that must not be deleted",
			History:     5, // who protected what, a few changes back
			Storage:     jetstream.FileStorage,
			Replicas:    replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) { // another replica was first
			kv, err = js.KeyValue(ctx, bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("control: protect bucket %q: %w", bucket, err)
	}
	return &Protect{kv: kv, nc: js.Conn(), bucket: bucket, exact: map[string]Protection{}, ready: errNotLoaded}, nil
}

// Ready returns nil once Watch has loaded the list and while it keeps it fresh (Watch runs,
// the connection is up, and it has not reconnected since the list was loaded: Watch then
// loads it again); otherwise why not. Match answers from memory either way: a caller must
// not delete while Ready fails, as a protection could be missing.
func (p *Protect) Ready() error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	switch st := p.nc.Status(); {
	case p.ready != nil:
		return p.ready
	case st != nats.CONNECTED:
		return fmt.Errorf("control: protect bucket %q: not watched (connection %s)", p.bucket, st)
	case p.nc.Stats().Reconnects != p.loadedOn:
		return fmt.Errorf("control: protect bucket %q: loading it again after a reconnect", p.bucket)
	}
	return nil
}

// Match returns the protection that covers the integration id: its exact pattern, else the
// first wildcard pattern (in pattern order) that matches. Safe for concurrent use.
func (p *Protect) Match(id string) (Protection, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if pr, ok := p.exact[id]; ok {
		return pr, true
	}
	for _, pr := range p.wild {
		if Match(pr.Pattern, id) {
			return pr, true
		}
	}
	return Protection{}, false
}
