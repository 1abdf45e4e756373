package control

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrMissing is returned, wrapped with the name, when a stream or bucket of a control does
// not exist and the caller did not ask to create it.
var ErrMissing = errors.New("does not exist and provisioning is off")

// errStoreFailed matches the server's refusal to store a message because of a stream limit
// (JSStreamStoreFailedF, err_code 10077). For a DiscardNew stream with MaxMsgs and no other
// limit, it means the stream holds MaxMsgs messages.
var errStoreFailed = &jetstream.APIError{ErrorCode: 10077}

// Fuse caps the DELETE calls of all replicas: at most N within any window of a given length.
// Each call takes a token first; a token is a message in a stream the daemon owns that keeps
// at most N messages, each for the window, and refuses new ones when full (DiscardNew). The
// stream's leader decides, so the cap holds across replicas; the messages expiring return
// the tokens.
type Fuse struct {
	js      jetstream.JetStream
	name    string
	subject string
	n       int
	window  time.Duration
}

// FuseSubject is the only subject of the fuse stream name.
func FuseSubject(name string) string { return "_deleter.fuse." + name }

// OpenFuse opens the fuse stream name, creating it when missing if provision is set. An
// existing stream with other limits (DELETE_FUSE changed) is updated to n and window; its
// replicas are left as they are.
func OpenFuse(ctx context.Context, js jetstream.JetStream, name string, n int, window time.Duration, replicas int, provision bool) (*Fuse, error) {
	if n < 1 || window <= 0 {
		return nil, fmt.Errorf("control: fuse %q: %d calls per %s: both must be positive", name, n, window)
	}
	f := &Fuse{js: js, name: name, subject: FuseSubject(name), n: n, window: window}
	s, err := js.Stream(ctx, name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound) && !provision:
		return nil, fmt.Errorf("control: fuse stream %q %w", name, ErrMissing)
	case errors.Is(err, jetstream.ErrStreamNotFound):
		_, err = js.CreateStream(ctx, f.config(jetstream.StreamConfig{Replicas: replicas}))
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) { // another replica was first
			s, err = js.Stream(ctx, name)
			if err == nil {
				err = f.update(ctx, s)
			}
		}
	case err == nil:
		err = f.update(ctx, s)
	}
	if err != nil {
		return nil, fmt.Errorf("control: fuse stream %q: %w", name, err)
	}
	return f, nil
}

// config returns c with the fuse's name, subject and limits set.
func (f *Fuse) config(c jetstream.StreamConfig) jetstream.StreamConfig {
	c.Name = f.name
	c.Description = "integration-deleter: one message per DELETE call, kept for the fuse's window"
	c.Subjects = []string{f.subject}
	c.Retention = jetstream.LimitsPolicy
	c.Discard = jetstream.DiscardNew
	c.MaxMsgs = int64(f.n)
	c.MaxAge = f.window
	c.MaxBytes, c.MaxMsgsPerSubject = -1, -1 // no other limit, so that a refusal means full
	c.Storage = jetstream.FileStorage
	c.Duplicates = min(c.Duplicates, f.window) // no message ids are used; the server refuses a longer one
	return c
}

// update sets the fuse's limits on the existing stream s when they differ.
func (f *Fuse) update(ctx context.Context, s jetstream.Stream) error {
	have := s.CachedInfo().Config
	want := f.config(have)
	if have.MaxMsgs == want.MaxMsgs && have.MaxAge == want.MaxAge && have.Discard == want.Discard && have.MaxBytes == -1 &&
		have.MaxMsgsPerSubject == -1 && have.Duplicates == want.Duplicates && slices.Equal(have.Subjects, want.Subjects) {
		return nil
	}
	_, err := f.js.UpdateStream(ctx, want)
	return err
}

// Take takes a token for one DELETE call. ok is false when the fuse is full: N calls were
// made within the window, and this one must not be. An error means the server's answer is
// unknown (a token may or may not be taken): the call must not be made either.
func (f *Fuse) Take(ctx context.Context) (ok bool, err error) {
	_, err = f.js.Publish(ctx, f.subject, nil, jetstream.WithExpectStream(f.name))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, errStoreFailed):
		return false, nil
	default:
		return false, fmt.Errorf("control: take a fuse token from %q: %w", f.name, err)
	}
}

// Reset returns every token: the fuse starts a fresh window (resume re-arms a tripped fuse).
func (f *Fuse) Reset(ctx context.Context) error { return ResetFuse(ctx, f.js, f.name) }

// ResetFuse purges the fuse stream name, returning every token.
func ResetFuse(ctx context.Context, js jetstream.JetStream, name string) error {
	s, err := js.Stream(ctx, name)
	if err == nil {
		err = s.Purge(ctx)
	}
	if err != nil {
		return fmt.Errorf("control: reset fuse %q: %w", name, err)
	}
	return nil
}

// Limit returns the fuse's cap: n calls within any window of that length.
func (f *Fuse) Limit() (n int, window time.Duration) { return f.n, f.window }
