package control

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// untilResume is the deadline of a pause without an end: JetStream pauses need one, and
// 2200 is as good as none. It is one fixed instant, so that two pauses made at once (the
// fuse tripping on several replicas) agree on the deadline their notes record. Reads turn
// any deadline beyond foreverAfter from now back into "until resume".
var untilResume = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)

const foreverAfter = 50 * 365 * 24 * time.Hour

// NoReason is the reason of a consumer paused on the server without a note (by the raw API
// or the nats CLI), or whose note belongs to an earlier pause.
const NoReason = "paused on the server (no reason recorded)"

// FusePrefix starts the reason of a pause made by the fuse.
const FusePrefix = "fuse: "

// PauseState is whether the durable consumer is paused, until when and why.
type PauseState struct {
	Paused bool
	// Until is when the pause ends by itself; zero: it lasts until resumed.
	Until time.Time
	// Reason, By and At come from the note written by Pause: why, who and when.
	Reason, By string
	At         time.Time
}

// Fuse reports whether the fuse made the pause.
func (s PauseState) Fuse() bool { return s.Paused && strings.HasPrefix(s.Reason, FusePrefix) }

// equal compares two states field by field, times by instant.
func (s PauseState) equal(o PauseState) bool {
	return s.Paused == o.Paused && s.Until.Equal(o.Until) && s.Reason == o.Reason && s.By == o.By && s.At.Equal(o.At)
}

// pauseNote is what the KV key of a pause holds. Until is the exact deadline sent to the
// server: a note whose Until differs from the consumer's belongs to another pause.
type pauseNote struct {
	Reason string    `json:"reason"`
	By     string    `json:"by,omitempty"`
	At     time.Time `json:"at"`
	Until  time.Time `json:"until"`
}

// pauseKey is the KV key of the note of consumer's pause.
func pauseKey(consumer string) string {
	return "pause." + base64.RawURLEncoding.EncodeToString([]byte(consumer))
}

// Pause pauses the durable consumer on the server until until (zero: until Resume) and
// records why, who and when in bucket. The note is written first, so that whoever sees the
// consumer paused finds its reason.
func Pause(ctx context.Context, js jetstream.JetStream, bucket, stream, consumer, reason, by string, until time.Time) (PauseState, error) {
	now := time.Now().UTC()
	switch {
	case reason == "":
		return PauseState{}, errors.New("control: pause: a reason is required")
	case !until.IsZero() && !until.After(now):
		return PauseState{}, fmt.Errorf("control: pause until %s: that is not in the future", until.Format(time.RFC3339))
	}
	deadline := until.UTC()
	if until.IsZero() {
		deadline = untilResume
	}
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return PauseState{}, fmt.Errorf("control: pause note bucket %q: %w", bucket, err)
	}
	note, _ := json.Marshal(pauseNote{Reason: reason, By: by, At: now, Until: deadline})
	if _, err := kv.Put(ctx, pauseKey(consumer), note); err != nil {
		return PauseState{}, fmt.Errorf("control: write pause note of %s: %w", consumer, err)
	}
	if _, err := js.PauseConsumer(ctx, stream, consumer, deadline); err != nil {
		return PauseState{}, fmt.Errorf("control: pause consumer %s > %s: %w", stream, consumer, err)
	}
	return readPause(ctx, js, kv, stream, consumer)
}

// Resume ends the consumer's pause on the server, then deletes its note.
func Resume(ctx context.Context, js jetstream.JetStream, bucket, stream, consumer string) (PauseState, error) {
	if _, err := js.ResumeConsumer(ctx, stream, consumer); err != nil {
		return PauseState{}, fmt.Errorf("control: resume consumer %s > %s: %w", stream, consumer, err)
	}
	kv, err := js.KeyValue(ctx, bucket)
	if err == nil {
		err = kv.Delete(ctx, pauseKey(consumer))
	}
	if err != nil {
		return PauseState{}, fmt.Errorf("control: resumed, but cannot delete the pause note of %s: %w", consumer, err)
	}
	return readPause(ctx, js, kv, stream, consumer)
}

// ReadPause reads the pause of the consumer: whether and until when from the server (the
// truth), why from the note. A note without a paused consumer is an ended pause.
func ReadPause(ctx context.Context, js jetstream.JetStream, bucket, stream, consumer string) (PauseState, error) {
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return PauseState{}, fmt.Errorf("control: pause note bucket %q: %w", bucket, err)
	}
	return readPause(ctx, js, kv, stream, consumer)
}

func readPause(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, stream, consumer string) (PauseState, error) {
	c, err := js.Consumer(ctx, stream, consumer)
	if err != nil {
		return PauseState{}, fmt.Errorf("control: consumer %s > %s: %w", stream, consumer, err)
	}
	info := c.CachedInfo()
	if !info.Paused || info.Config.PauseUntil == nil {
		return PauseState{}, nil
	}
	deadline := info.Config.PauseUntil.UTC()
	st := PauseState{Paused: true, Reason: NoReason}
	if time.Until(deadline) < foreverAfter {
		st.Until = deadline
	}
	e, err := kv.Get(ctx, pauseKey(consumer))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return st, nil
	}
	if err != nil {
		return PauseState{}, fmt.Errorf("control: read pause note of %s: %w", consumer, err)
	}
	var n pauseNote
	if json.Unmarshal(e.Value(), &n) == nil && n.Until.Equal(deadline) {
		st.Reason, st.By, st.At = n.Reason, n.By, n.At
	}
	return st, nil
}
