package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/kombo-ops/integration-deleter/internal/cli"
	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

// config is what the flags and environment say.
type config struct {
	addr    string
	opts    kombotest.Options
	verbose bool
}

// setting is one flag and its environment variable; the flag wins.
type setting struct {
	flag, env, def, arg, usage string
	isBool                     bool
	apply                      func(c *config, v string) error
}

const defaultAddr = "127.0.0.1:8090"

var settings = []setting{
	{flag: "addr", env: "FAKE_KOMBO_ADDR", def: defaultAddr, arg: "HOST:PORT",
		usage: "listen address; port 0 picks a free port",
		apply: func(c *config, v string) error {
			if v == "" {
				return errors.New("must not be empty")
			}
			c.addr = v
			return nil
		}},
	{flag: "api-key", env: "FAKE_KOMBO_API_KEY", arg: "KEY",
		usage: `bearer key to expect; "" accepts any non-empty key`,
		apply: func(c *config, v string) error { c.opts.APIKey = v; return nil }},
	{flag: "latency", env: "FAKE_KOMBO_LATENCY", def: "0s", arg: "DURATION",
		usage: "added to every DELETE, counted from its arrival (exact on average)",
		apply: func(c *config, v string) error { return parseDuration(v, &c.opts.Latency) }},
	{flag: "latency-jitter", env: "FAKE_KOMBO_LATENCY_JITTER", def: "0s", arg: "DURATION",
		usage: "random extra latency, uniform between 0 and this",
		apply: func(c *config, v string) error { return parseDuration(v, &c.opts.LatencyJitter) }},
	{flag: "concurrency-limit", env: "FAKE_KOMBO_CONCURRENCY_LIMIT", def: "0", arg: "N",
		usage: "DELETEs in flight beyond N get 429 CONCURRENCY_LIMIT_EXCEEDED; 0 = none",
		apply: func(c *config, v string) error { return parseCount(v, &c.opts.ConcurrencyLimit) }},
	{flag: "rate-limit", env: "FAKE_KOMBO_RATE_LIMIT", def: "0", arg: "PER_SECOND",
		usage: "DELETEs per second (token bucket), more get 429 RATE_LIMIT_EXCEEDED; 0 = none",
		apply: func(c *config, v string) error { return parseFloat(v, 0, 1e9, "a number >= 0", &c.opts.RateLimit) }},
	{flag: "rate-burst", env: "FAKE_KOMBO_RATE_BURST", def: "1", arg: "N",
		usage: "token bucket size",
		apply: func(c *config, v string) error { return parseCount(v, &c.opts.RateBurst) }},
	{flag: "rate-limit-header", env: "FAKE_KOMBO_RATE_LIMIT_HEADER", def: kombotest.HintRateLimitReset, arg: "HINT",
		usage: "hint of a rate-limited answer: ratelimit-reset, retry-after,\n" +
			"retry-after-ms, retry-after-date or none",
		apply: func(c *config, v string) error {
			switch v {
			case kombotest.HintRateLimitReset, kombotest.HintRetryAfter, kombotest.HintRetryAfterMS,
				kombotest.HintRetryAfterDate, kombotest.HintNone:
				c.opts.RateLimitHeader = v
				return nil
			}
			return fmt.Errorf("want ratelimit-reset, retry-after, retry-after-ms, retry-after-date or none, got %q", v)
		}},
	{flag: "failure-rate", env: "FAKE_KOMBO_FAILURE_RATE", def: "0", arg: "SHARE",
		usage: "share (0..1) of DELETEs that fail: 500 JSON, 502 text, 503 HTML, empty 500",
		apply: func(c *config, v string) error {
			return parseFloat(v, 0, 1, "a number between 0 and 1", &c.opts.FailureRate)
		}},
	{flag: "reject-key", env: "FAKE_KOMBO_REJECT_KEY", def: "false", isBool: true,
		usage: "answer every call with 401 PLATFORM.AUTHENTICATION_INVALID",
		apply: func(c *config, v string) error { return parseBool(v, &c.opts.RejectKey) }},
	{flag: "seed", env: "FAKE_KOMBO_SEED", def: "0", arg: "N",
		usage: "seed for failures and jitter; 0 = from the clock",
		apply: func(c *config, v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return fmt.Errorf("want an integer, got %q", v)
			}
			c.opts.Seed = n
			return nil
		}},
	{flag: "early-grace", env: "FAKE_KOMBO_EARLY_GRACE", def: "0s", arg: "DURATION",
		usage: "DELETEs this soon after a 429 are not counted early for its hint",
		apply: func(c *config, v string) error { return parseDuration(v, &c.opts.EarlyGrace) }},
	{flag: "max-calls", env: "FAKE_KOMBO_MAX_CALLS", def: "0", arg: "N",
		usage: "keep only the latest N calls for /_fake/calls; 0 = all",
		apply: func(c *config, v string) error { return parseCount(v, &c.opts.MaxCalls) }},
	{flag: "verbose", env: "FAKE_KOMBO_VERBOSE", def: "false", isBool: true,
		usage: "log every call",
		apply: func(c *config, v string) error { return parseBool(v, &c.verbose) }},
}

func parseDuration(v string, dst *time.Duration) error {
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return fmt.Errorf("want a duration >= 0 like 250ms, got %q", v)
	}
	*dst = d
	return nil
}

func parseCount(v string, dst *int) error {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return fmt.Errorf("want an integer >= 0, got %q", v)
	}
	*dst = n
	return nil
}

// parseFloat reads a number between lo and hi; want says what is wanted, for the error.
func parseFloat(v string, lo, hi float64, want string, dst *float64) error {
	r, err := strconv.ParseFloat(v, 64)
	if err != nil || !(r >= lo && r <= hi) {
		return fmt.Errorf("want %s, got %q", want, v)
	}
	*dst = r
	return nil
}

func parseBool(v string, dst *bool) error {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("want true or false, got %q", v)
	}
	*dst = b
	return nil
}

// flagValue remembers a flag's text; settings parse it, so that its error names the flag.
type flagValue struct {
	val    string
	set    bool
	isBool bool
}

func (v *flagValue) String() string   { return v.val }
func (v *flagValue) IsBoolFlag() bool { return v.isBool }
func (v *flagValue) Set(s string) error {
	v.val, v.set = s, true
	return nil
}

// usageError is a bad command line or environment (exit code 2); its message points at
// --help.
func usageError(err error) error {
	return cli.UsageError{Err: fmt.Errorf("%w (see fake-kombo --help)", err)}
}

// errHelp reports that --help printed the usage.
var errHelp = errors.New("help requested")

// parseConfig reads the serve command's flags and environment. Every bad value is reported,
// each naming its flag or variable.
func parseConfig(args []string, getenv func(string) string) (config, error) {
	fs := flag.NewFlagSet("fake-kombo", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	values := make([]*flagValue, len(settings))
	for i, s := range settings {
		values[i] = &flagValue{isBool: s.isBool}
		fs.Var(values[i], s.flag, s.usage)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return config{}, errHelp
		}
		return config{}, usageError(err)
	}
	if fs.NArg() > 0 {
		return config{}, usageError(fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	var c config
	var errs []error
	for i, s := range settings {
		v, source := s.def, ""
		if e := getenv(s.env); e != "" {
			v, source = e, s.env
		}
		if values[i].set {
			v, source = values[i].val, "--"+s.flag
		}
		if err := s.apply(&c, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", source, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return config{}, usageError(err)
	}
	if err := c.opts.Validate(); err != nil {
		return config{}, usageError(err)
	}
	return c, nil
}

func printUsage(w io.Writer) {
	var b strings.Builder
	b.WriteString(`Usage:
  fake-kombo [flags]                 serve a fake Kombo API
  fake-kombo healthcheck [--addr A]  exit 0 if the fake at A answers /_fake/healthz, else 1

Serves DELETE and GET /v1/integrations/{id} and GET /v1/check-api-key in Kombo's wire
format (also without /v1), and control endpoints: GET /_fake/healthz, /_fake/calls,
/_fake/stats, /_fake/config; POST /_fake/reset, /_fake/config, /_fake/script,
/_fake/missing, /_fake/integration (what a GET shows of an id). Ids starting with missing:
answer 404, invalid: 400, flaky: fail twice with 500, slow: take a second longer.

Flags (each also read from its environment variable; the flag wins):
`)
	for _, s := range settings {
		name := "--" + s.flag
		if s.arg != "" {
			name += " " + s.arg
		}
		usage := strings.ReplaceAll(s.usage, "\n", "\n  "+strings.Repeat(" ", 32))
		fmt.Fprintf(&b, "  %-31s %s\n  %-31s [%s", name, usage, "", s.env)
		if s.def != "" {
			fmt.Fprintf(&b, ", default %s", s.def)
		}
		b.WriteString("]\n")
	}
	b.WriteString("  --help                          show this help\n")
	_, _ = io.WriteString(w, b.String())
}
