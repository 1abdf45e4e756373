package consumer

import (
	"context"
	"errors"
	"time"

	"github.com/kombo-ops/integration-deleter/internal/admission"
	"github.com/kombo-ops/integration-deleter/kombo"
)

// keyRejected reports whether err says Kombo rejects the API key.
func keyRejected(err error) bool {
	var kerr *kombo.Error
	return errors.As(err, &kerr) && classify(kerr.Code, kerr.Status) == actionPause
}

// pauseFor pauses admission (no call starts) because Kombo rejected the key.
func (c *Consumer) pauseFor(err error) {
	reason := "key rejected"
	var kerr *kombo.Error
	if errors.As(err, &kerr) {
		reason = kerr.EffectiveCode()
	}
	if c.adm.Pause(admission.KeyRejected, reason) {
		c.m.paused.Set(1)
		c.log.Error("Kombo rejects the API key: intake paused, messages kept; probing GET /check-api-key",
			"kombo_code", reason, "probe_interval", c.o.AuthProbeInterval, "err", err)
	}
}

// checkKeyAtStart checks the key once: a rejected key starts the daemon paused; any other
// failure is logged and the daemon starts normally.
func (c *Consumer) checkKeyAtStart(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	info, err := c.kombo.CheckAPIKey(cctx)
	switch {
	case err == nil:
		c.m.authProbes.WithLabelValues("accepted").Inc()
		c.log.Info("Kombo accepts the API key", "environment_id", info.EnvironmentID)
	case keyRejected(err):
		c.m.authProbes.WithLabelValues("rejected").Inc()
		c.pauseFor(err)
	default:
		c.m.authProbes.WithLabelValues("error").Inc()
		c.log.Warn("cannot check the API key at start; starting anyway", "err", err)
	}
}

// probeLoop checks the key every AuthProbeInterval while paused and resumes when Kombo
// accepts it again.
func (c *Consumer) probeLoop(ctx context.Context) {
	every(ctx, c.o.AuthProbeInterval, func(ctx context.Context) {
		if paused, _ := c.adm.PausedFor(admission.KeyRejected); paused {
			c.probeKey(ctx)
		}
	})
}

// probeKey checks the key once and resumes when Kombo accepts it.
func (c *Consumer) probeKey(ctx context.Context) {
	info, err := c.kombo.CheckAPIKey(ctx)
	switch {
	case err == nil:
		c.m.authProbes.WithLabelValues("accepted").Inc()
		if c.adm.Resume(admission.KeyRejected) {
			c.m.paused.Set(0)
			c.log.Info("Kombo accepts the API key again: resuming", "environment_id", info.EnvironmentID)
			c.wakePull()
		}
	case keyRejected(err):
		c.m.authProbes.WithLabelValues("rejected").Inc()
		c.log.Warn("Kombo still rejects the API key", "err", err)
	default:
		c.m.authProbes.WithLabelValues("error").Inc()
		c.log.Warn("API key probe failed; still paused", "err", err)
	}
}

// every calls fn every interval, with a context that ends after interval, until ctx ends.
func every(ctx context.Context, interval time.Duration, fn func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fctx, cancel := context.WithTimeout(ctx, interval)
		fn(fctx)
		cancel()
	}
}
