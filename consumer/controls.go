package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/kombo-ops/integration-deleter/internal/admission"
	"github.com/kombo-ops/integration-deleter/internal/control"
	"github.com/kombo-ops/integration-deleter/kombo"
)

// The operator's levers (internal/control), as the request path meets them:
//
//	pause    the durable consumer paused on the server (by `pause` or the fuse): no call
//	         starts on any replica (admission.Operator), nothing is pulled; calls in
//	         flight finish and held messages wait, kept alive
//	protect  a protected integration id fails DELETER.PROTECTED, with no call; while the
//	         protect list cannot be read, no call starts (blocked)
//	fuse     each DELETE takes a token first; the call that would exceed DELETE_FUSE is
//	         not made, and the consumer is paused with a "fuse: " reason
//	expect   a request with "expect" calls GET /integrations/{id} first and fails
//	         DELETER.MISMATCH, with no DELETE, when a field differs

// openControls opens the protect list and the fuse, retrying what may get better; a
// missing bucket or stream with provisioning off fails at once (control.ErrMissing).
func (c *Consumer) openControls(ctx context.Context) error {
	o, s := c.o.Controls, c.o.Stream
	open := func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		var protect *control.Protect
		var fuse *control.Fuse
		var err error
		if o.ProtectBucket != "" {
			protect, err = control.OpenProtect(ctx, c.js, o.ProtectBucket, s.Replicas, s.Provision)
		}
		if err == nil && o.FuseCalls > 0 {
			fuse, err = control.OpenFuse(ctx, c.js, o.FuseStream, o.FuseCalls, o.FuseWindow, s.Replicas, s.Provision)
		}
		if err != nil {
			return err
		}
		c.mu.Lock() // Ready reads protect meanwhile; the request path only once the intake runs
		c.protect, c.fuse, c.bindErr = protect, fuse, nil
		c.mu.Unlock()
		return nil
	}
	return c.retryAtStart(ctx, "cannot open the protect list or the fuse yet; retrying", open,
		func(err error) bool { return errors.Is(err, control.ErrMissing) })
}

// startPaused reads the consumer's pause at start, so that a daemon restarted while
// paused starts no call before its watcher has run.
func (c *Consumer) startPaused(ctx context.Context) {
	st, err := control.ReadPause(ctx, c.js, c.o.Ledger.Bucket, c.o.Stream.Name, c.o.Stream.Consumer)
	if err != nil {
		c.log.Warn("cannot read whether the consumer is paused; the watcher will tell", "err", err)
		return
	}
	c.pauseChanged(st)
}

// watchPause follows the consumer's pause on the server until ctx ends, starting the
// watch again when it cannot start or ends.
func (c *Consumer) watchPause(ctx context.Context) {
	onErr := func(err error) {
		c.log.Warn("cannot read whether the consumer is paused; keeping the last state", "err", err)
	}
	keepRunning(ctx, c.log, "the pause watch", func(ctx context.Context) error {
		return control.WatchPause(ctx, c.js, c.o.Ledger.Bucket, c.o.Stream.Name, c.o.Stream.Consumer, c.pauseChanged, onErr)
	})
}

// watchProtect keeps the protect list fresh until ctx ends, starting its watch again when
// it fails (no call starts meanwhile: the list is not ready).
func (c *Consumer) watchProtect(ctx context.Context) {
	keepRunning(ctx, c.log, "the protect list's watch", c.protect.Watch)
}

// keepRunning runs f until ctx ends, again a second after each time it returns early.
func keepRunning(ctx context.Context, log *slog.Logger, what string, f func(context.Context) error) {
	for {
		err := f(ctx)
		if ctx.Err() != nil {
			return
		}
		log.Error(what+" stopped; starting it again in 1s", "err", err)
		if sleep(ctx, time.Second) != nil {
			return
		}
	}
}

// pauseChanged applies the pause state read from the server.
func (c *Consumer) pauseChanged(st control.PauseState) {
	c.mu.Lock()
	was := c.pause
	c.pause = st
	c.mu.Unlock()
	c.m.setPause(st)
	switch {
	case st.Paused && c.adm.Pause(admission.Operator, st.Reason):
		c.log.Warn("paused: no DELETE starts until resumed", "reason", st.Reason, "by", st.By, "until", untilText(st.Until))
	case st.Paused:
		c.adm.Pause(admission.Operator, st.Reason) // a new reason
	case c.adm.Resume(admission.Operator) || was.Paused:
		c.log.Info("resumed")
		c.wakePull()
	}
}

// PauseState returns the consumer's pause as last read from the server.
func (c *Consumer) PauseState() control.PauseState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pause
}

func untilText(t time.Time) string {
	if t.IsZero() {
		return "resume"
	}
	return t.UTC().Format(time.RFC3339)
}

// guard applies protect and the fuse to the call about to start in the turn of t (a
// DELETE, or a GET when get). It reports whether the call may start; when not, it has
// given the turn back and settled or handed back the message.
func (c *Consumer) guard(j *job, t admission.Ticket, get bool) bool {
	if p, ok := c.protected(j.req.IntegrationID); ok {
		c.adm.Done(t, admission.Answer{})
		msg := fmt.Sprintf("integration %q is protected by pattern %q (%s; added by %s at %s): no call made; "+
			"`integration-deleter protect rm` it and retry the request to delete it",
			j.req.IntegrationID, p.Pattern, p.Reason, p.By, p.AddedAt.UTC().Format(time.RFC3339))
		c.finish(j, c.failed(j.req, j.prev+j.calls, &ResultError{Code: codeProtected, Title: "Protected", Message: msg}),
			j.prevCounted+j.counted, false, "protected")
		return false
	}
	if get || c.fuse == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(j.cutoff, 5*time.Second)
	ok, err := c.fuse.Take(ctx)
	cancel()
	if ok && err == nil {
		return true
	}
	c.adm.Done(t, admission.Answer{})
	if err != nil {
		j.log(c.log).Error("cannot take a token of the fuse; no call made, the request is handed back", "err", err)
		c.release(j, storageWait)
		return false
	}
	c.tripFuse()
	c.release(j, handBackDelay) // back on the paused consumer: delivered again after resume
	return false
}

// protected returns the protection of id, if any.
func (c *Consumer) protected(id string) (control.Protection, bool) {
	if c.protect == nil {
		return control.Protection{}, false
	}
	return c.protect.Match(id)
}

// tripFuse pauses the consumer for every replica: the fuse refused a token.
func (c *Consumer) tripFuse() {
	n, window := c.fuse.Limit()
	reason := fmt.Sprintf("%s%d DELETE calls within %s (DELETE_FUSE); `integration-deleter resume` re-arms it",
		control.FusePrefix, n, window)
	if !c.adm.Pause(admission.Operator, reason) { // this replica at once; the others through the server
		return // paused already (by another refused call, or an operator): nothing starts
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	host, _ := os.Hostname()
	st, err := control.Pause(ctx, c.js, c.o.Ledger.Bucket, c.o.Stream.Name, c.o.Stream.Consumer, reason,
		"integration-deleter fuse on "+host, time.Time{})
	if err != nil {
		// Not paused locally either: nothing would end it. The fuse keeps refusing tokens,
		// so no call beyond it starts, and the next refusal tries the pause again.
		c.adm.Resume(admission.Operator)
		c.log.Error("the fuse tripped but the consumer could not be paused on the server; no call beyond the fuse "+
			"starts, and the pause is tried again at the next refused token", "reason", reason, "err", err)
		return
	}
	c.log.Error("the fuse tripped: the consumer is paused", "reason", reason)
	c.pauseChanged(st)
}

// mismatch returns what differs between what the request expects and what Kombo shows of
// the integration, or "".
func (e *expectation) mismatch(in kombo.Integration) string {
	var diffs []string
	if e.OriginID != nil && *e.OriginID != in.EndUser.OriginID {
		diffs = append(diffs, fmt.Sprintf("origin_id: expected %q, Kombo shows %q", *e.OriginID, in.EndUser.OriginID))
	}
	if e.Tool != nil && *e.Tool != in.Tool {
		diffs = append(diffs, fmt.Sprintf("tool: expected %q, Kombo shows %q", *e.Tool, in.Tool))
	}
	return strings.Join(diffs, "; ")
}
