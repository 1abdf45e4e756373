package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/daemon"
	"github.com/kombo-ops/integration-deleter/internal/cli"
	"github.com/kombo-ops/integration-deleter/internal/control"
)

// pauseFlags are the flags of the pause command.
type pauseFlags struct {
	reason, by string
	forD       time.Duration // 0: not given
	until      time.Time     // zero: not given
	json       bool
}

func (f *pauseFlags) define(fs *flag.FlagSet) {
	fs.StringVar(&f.reason, "reason", "", "why (required); shown by the daemon's /readyz and by pause and resume")
	fs.StringVar(&f.by, "by", "", "who pauses (default $USER@hostname)")
	fs.Func("for", "pause for this long (e.g. 30m), then resume by itself", func(s string) error {
		d, err := time.ParseDuration(s)
		if err == nil && d <= 0 {
			err = errors.New("must be positive")
		}
		f.forD = d
		return err
	})
	fs.Func("until", "pause until this time (RFC 3339, e.g. 2030-01-02T15:04:05Z), then resume by itself", func(s string) error {
		t, err := time.Parse(time.RFC3339, s)
		f.until = t
		return err
	})
	fs.BoolVar(&f.json, "json", false, `print {"paused","until","reason"} as one JSON line`)
}

// check finds what is wrong with the flags before anything connects, and returns when the
// pause ends (zero: at resume).
func (f *pauseFlags) check(args []string, now time.Time) (time.Time, error) {
	switch {
	case len(args) > 0:
		return time.Time{}, fmt.Errorf("pause takes no arguments, got %q", args)
	case f.reason == "":
		return time.Time{}, errors.New("pause: --reason is required: say why, for whoever finds the daemon paused")
	case f.forD != 0 && !f.until.IsZero():
		return time.Time{}, errors.New("pause: give --for or --until, not both")
	case f.forD != 0:
		return now.Add(f.forD), nil
	case !f.until.IsZero() && !f.until.After(now):
		return time.Time{}, fmt.Errorf("pause: --until %s is not in the future", f.until.Format(time.RFC3339))
	}
	return f.until, nil
}

func runPause(ctx context.Context, args []string, lookupEnv lookupFunc, stdout, stderr io.Writer) error {
	var f pauseFlags
	args, err := parseFlags("pause --reason TEXT [--for DURATION | --until RFC3339] [--by NAME]", `Pause the daemon's durable consumer on the NATS server (every replica): within a second no
replica starts a new DELETE; calls in flight finish; nothing is lost; the pause outlives
restarts. Without --for or --until it lasts until 'integration-deleter resume'.`,
		args, stdout, stderr, f.define)
	if err != nil {
		return helpOK(err)
	}
	until, err := f.check(args, time.Now())
	if err != nil {
		return cli.UsageError{Err: err}
	}
	if f.by == "" {
		f.by = operator(lookupEnv)
	}
	return withClient(ctx, "pause", lookupEnv, stderr, func(ctx context.Context, c *client) error {
		cfg := c.cfg
		// The consumer first: a pause of a missing one would leave a stray note.
		if _, err := c.js.Consumer(ctx, cfg.StreamName, cfg.ConsumerName); err != nil {
			return fmt.Errorf("pause: consumer %s > %s: %w", cfg.StreamName, cfg.ConsumerName, hintMissing(err))
		}
		st, err := control.Pause(ctx, c.js, cfg.LedgerBucket, cfg.StreamName, cfg.ConsumerName, f.reason, f.by, until)
		if err != nil {
			return fmt.Errorf("pause: %w", hintMissing(err))
		}
		printPause(stdout, st, f.json)
		return nil
	})
}

func runResume(ctx context.Context, args []string, lookupEnv lookupFunc, stdout, stderr io.Writer) error {
	var asJSON bool
	args, err := parseFlags("resume", `End the pause of the daemon's durable consumer (whoever made it: an operator or the fuse);
a pause the fuse made re-arms the fuse (DELETE_FUSE) with a fresh window.`, args, stdout, stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, `print {"paused","until","reason"} as one JSON line`)
	})
	if err != nil {
		return helpOK(err)
	}
	if len(args) > 0 {
		return cli.UsageError{Err: fmt.Errorf("resume takes no arguments, got %q", args)}
	}
	return withClient(ctx, "resume", lookupEnv, stderr, func(ctx context.Context, c *client) error {
		cfg := c.cfg
		// Only a tripped fuse is re-armed: the pause is the fuse's, or the fuse is full (an
		// operator paused over it). A fresh window after any pause would let pausing and
		// resuming get around DELETE_FUSE. It is re-armed before the consumer resumes: the
		// other way round, a replica resumed could be refused a token and trip it again.
		st, err := control.ReadPause(ctx, c.js, cfg.LedgerBucket, cfg.StreamName, cfg.ConsumerName)
		if err != nil {
			return fmt.Errorf("resume: %w", hintMissing(err))
		}
		if err := rearmTrippedFuse(ctx, c.js, daemon.FuseStream(cfg.StreamName), st.Fuse()); err != nil {
			return fmt.Errorf("resume: %w", err)
		}
		st, err = control.Resume(ctx, c.js, cfg.LedgerBucket, cfg.StreamName, cfg.ConsumerName)
		if err != nil {
			return fmt.Errorf("resume: %w", hintMissing(err))
		}
		printPause(stdout, st, asJSON)
		return nil
	})
}

// rearmTrippedFuse empties the fuse's stream when it tripped (the pause is the fuse's) or
// is full; no fuse stream is no fuse.
func rearmTrippedFuse(ctx context.Context, js jetstream.JetStream, name string, tripped bool) error {
	stream, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("fuse stream %s: %w", name, err)
	}
	info := stream.CachedInfo()
	full := info.Config.MaxMsgs > 0 && info.State.Msgs >= uint64(info.Config.MaxMsgs)
	if !tripped && !full {
		return nil
	}
	return control.ResetFuse(ctx, js, name)
}

// pauseJSON is the --json line of pause and resume.
type pauseJSON struct {
	Paused bool    `json:"paused"`
	Until  *string `json:"until"` // null: until resume, or not paused
	Reason string  `json:"reason"`
}

// printPause prints what is true of the pause now.
func printPause(w io.Writer, st control.PauseState, asJSON bool) {
	switch {
	case asJSON:
		printJSON(w, pauseJSON{Paused: st.Paused, Until: rfc3339(st.Until), Reason: st.Reason})
	case !st.Paused:
		fmt.Fprintln(w, "resumed")
	default:
		until := "resume"
		if !st.Until.IsZero() {
			until = st.Until.UTC().Format(time.RFC3339)
		}
		by := ""
		if st.By != "" {
			by = " (by " + st.By + ")"
		}
		fmt.Fprintf(w, "paused until %s: %s%s\n", until, st.Reason, by)
	}
}
