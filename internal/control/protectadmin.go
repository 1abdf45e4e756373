package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Add stores pr, replacing any protection with the same pattern; AddedAt zero means now.
// The pattern must pass CheckPattern with all set: refusing '*' alone is the caller's call.
func (p *Protect) Add(ctx context.Context, pr Protection) error {
	if err := CheckPattern(pr.Pattern, true); err != nil {
		return err
	}
	if pr.AddedAt.IsZero() {
		pr.AddedAt = time.Now().UTC()
	}
	b, _ := json.Marshal(pr)
	if _, err := p.kv.Put(ctx, protectKey(pr.Pattern), b); err != nil {
		return fmt.Errorf("control: protect %q: %w", pr.Pattern, err)
	}
	return nil
}

// Remove deletes the protection of pattern (exactly that pattern, not the ids it matches);
// removed is false when there was none.
func (p *Protect) Remove(ctx context.Context, pattern string) (removed bool, err error) {
	key := protectKey(pattern)
	_, err = p.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err == nil {
		err = p.kv.Delete(ctx, key)
	}
	if err != nil {
		return false, fmt.Errorf("control: unprotect %q: %w", pattern, err)
	}
	return true, nil
}

// List reads every protection from the bucket (not from memory), sorted by pattern.
func (p *Protect) List(ctx context.Context) ([]Protection, error) {
	w, err := p.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("control: list protect bucket %q: %w", p.bucket, err)
	}
	defer func() { _ = w.Stop() }()
	var list []Protection
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("control: list protect bucket %q: %w", p.bucket, ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("control: list protect bucket %q: the server ended the read", p.bucket)
			}
			if e == nil {
				slices.SortFunc(list, func(a, b Protection) int { return strings.Compare(a.Pattern, b.Pattern) })
				return list, nil
			}
			if pr, ok := decodeProtection(e); ok {
				list = append(list, pr)
			}
		}
	}
}
