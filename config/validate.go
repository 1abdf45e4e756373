package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/nats-io/nats-server/v2/server"
)

// Validate returns every problem of c at once (errors.Join), each error
// starting with the name of the variable at fault, or nil. It checks that
// the files named by the *_FILE variables can be read; KOMBO_API_KEY_FILE
// itself is Load's to read (Validate checks the key Load read from it).
func (c *Config) Validate() error {
	return errors.Join(c.problems(true)...)
}

// varErrorf returns a problem of variable name: "NAME: " and the message.
func varErrorf(name, format string, args ...any) error {
	return fmt.Errorf("%s: %w", name, fmt.Errorf(format, args...))
}

// problems collects the problems of a Config.
type problems []error

func (p *problems) add(name, format string, args ...any) {
	*p = append(*p, varErrorf(name, format, args...))
}

// named is a value with the variable it came from.
type named struct{ name, value string }

// problems returns every problem of c; checkKey false skips the key (not
// wanted, or its source already at fault).
func (c *Config) problems(checkKey bool) problems {
	var p problems
	if checkKey {
		c.checkKey(&p)
	}
	c.checkBaseURL(&p)
	c.checkDurations(&p)
	c.checkCounts(&p)
	c.checkSubjects(&p)
	c.checkNames(&p)
	c.checkNATS(&p)
	c.checkNATSURL(&p)
	if _, port, err := net.SplitHostPort(c.HTTPAddr); err != nil || port == "" {
		p.add("HTTP_ADDR", `must be host:port such as ":8080" or "127.0.0.1:8080", got %q`, c.HTTPAddr)
	} else if _, err := net.LookupPort("tcp", port); err != nil {
		p.add("HTTP_ADDR", "port must be a number from 0 (any free port) to 65535, got %q", port)
	}
	if _, ok := levels[strings.ToLower(strings.TrimSpace(c.LogLevel))]; !ok {
		p.add("LOG_LEVEL", "must be debug, info, warn or error, got %q", c.LogLevel)
	}
	if f := strings.ToLower(c.LogFormat); f != "json" && f != "text" {
		p.add("LOG_FORMAT", "must be json or text, got %q", c.LogFormat)
	}
	return p
}

func (c *Config) checkKey(p *problems) {
	name := "KOMBO_API_KEY"
	if c.KomboAPIKeyFile != "" {
		name = "KOMBO_API_KEY_FILE"
	}
	key := c.KomboAPIKey.Reveal()
	switch {
	case strings.TrimSpace(key) == "" && c.KomboAPIKeyFile != "":
		p.add(name, "%s holds no key", c.KomboAPIKeyFile)
	case strings.TrimSpace(key) == "":
		p.add(name, "required: set KOMBO_API_KEY or KOMBO_API_KEY_FILE")
	case strings.ContainsFunc(key, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
		p.add(name, "the key must not contain whitespace or control characters")
	}
}

// checkBaseURL checks KOMBO_BASE_URL as the daemon's policy wants it (https,
// or http on loopback); kombo.New checks it again for its other callers.
func (c *Config) checkBaseURL(p *problems) {
	const name = "KOMBO_BASE_URL"
	u, err := url.Parse(c.KomboBaseURL)
	switch {
	case err != nil && strings.Contains(c.KomboBaseURL, "@"): // the parser's message can quote a password
		p.add(name, "not a URL (the message is not shown: the URL has user info, which it must not)")
		return
	case err != nil:
		p.add(name, "not a URL: %v", errors.Unwrap(err)) // without url.Error's quote of the URL
		return
	case u.Scheme == "" || u.Hostname() == "":
		p.add(name, "must be an absolute URL such as https://api.kombo.dev/v1, got %q", RedactURL(c.KomboBaseURL))
		return
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !c.KomboAllowInsecure && !isLoopback(u.Hostname()) {
			p.add(name, "http is allowed only for loopback hosts (localhost, 127.0.0.0/8, ::1) unless KOMBO_ALLOW_INSECURE=true; use https")
		}
	default:
		p.add(name, "scheme must be https, got %q", u.Scheme)
	}
	if u.User != nil {
		p.add(name, "must not contain user info")
	}
	if u.RawQuery != "" || u.ForceQuery {
		p.add(name, "must not have a query")
	}
	if strings.Contains(c.KomboBaseURL, "#") {
		p.add(name, "must not have a fragment")
	}
}

// isLoopback reports whether host is localhost or a loopback address.
func isLoopback(host string) bool {
	ip, err := netip.ParseAddr(host)
	return strings.EqualFold(host, "localhost") || err == nil && ip.IsLoopback()
}

func (c *Config) checkDurations(p *problems) {
	for _, d := range []struct {
		name string
		d    time.Duration
	}{
		{"KOMBO_TIMEOUT", c.KomboTimeout},
		{"KOMBO_RETRY_MAX_ELAPSED", c.KomboRetryMaxElapsed},
		{"KOMBO_BACKOFF_INITIAL", c.KomboBackoffInitial},
		{"KOMBO_BACKOFF_MAX", c.KomboBackoffMax},
		{"AUTH_PROBE_INTERVAL", c.AuthProbeInterval},
		{"DUPLICATE_WINDOW", c.DuplicateWindow},
		{"SHUTDOWN_TIMEOUT", c.ShutdownTimeout},
	} {
		if d.d <= 0 {
			p.add(d.name, "must be positive, got %s", d.d)
		}
	}
	if c.KomboBackoffInitial > 0 && c.KomboBackoffMax > 0 && c.KomboBackoffInitial > c.KomboBackoffMax {
		p.add("KOMBO_BACKOFF_INITIAL", "must not exceed KOMBO_BACKOFF_MAX (%s), got %s", c.KomboBackoffMax, c.KomboBackoffInitial)
	}
	if c.AckWait < minAckWait {
		p.add("ACK_WAIT", "must be at least %s, got %s", minAckWait, c.AckWait)
	}
	switch {
	case c.StreamMaxAge < 0:
		p.add("STREAM_MAX_AGE", "must not be negative (0 keeps messages forever), got %s", c.StreamMaxAge)
	case c.StreamMaxAge > 0 && c.DuplicateWindow > 0 && c.StreamMaxAge < c.DuplicateWindow:
		p.add("STREAM_MAX_AGE", "must be 0 (forever) or at least DUPLICATE_WINDOW (%s), got %s", c.DuplicateWindow, c.StreamMaxAge)
	}
	switch {
	case c.LedgerMaxAge < 0:
		p.add("LEDGER_MAX_AGE", "must not be negative (0 keeps outcomes forever), got %s", c.LedgerMaxAge)
	case c.LedgerMaxAge > 0 && c.LedgerMaxAge < c.StreamMaxAge:
		p.add("LEDGER_MAX_AGE", "must be 0 (forever) or at least STREAM_MAX_AGE (%s): an outcome must outlive the request it answers; got %s", c.StreamMaxAge, c.LedgerMaxAge)
	}
	if least := c.KomboRetryMaxElapsed + 2*c.AckWait; c.JetStreamProvision && c.DuplicateWindow > 0 && c.KomboRetryMaxElapsed > 0 && c.AckWait > 0 && c.DuplicateWindow <= least {
		p.add("DUPLICATE_WINDOW", "must exceed KOMBO_RETRY_MAX_ELAPSED + 2×ACK_WAIT = %s + 2×%s = %s, so that a result re-published after a crash is still deduplicated; got %s",
			c.KomboRetryMaxElapsed, c.AckWait, least, c.DuplicateWindow)
	}
}

func (c *Config) checkCounts(p *problems) {
	if c.KomboMaxConcurrency < 1 {
		p.add("KOMBO_MAX_CONCURRENCY", "must be at least 1, got %d", c.KomboMaxConcurrency)
	} else if c.KomboMaxConcurrency > maxConcurrency {
		p.add("KOMBO_MAX_CONCURRENCY", "must be at most %d, got %d", maxConcurrency, c.KomboMaxConcurrency)
	}
	if c.KomboMaxAttempts < 1 {
		p.add("KOMBO_MAX_ATTEMPTS", "must be at least 1, got %d", c.KomboMaxAttempts)
	}
	if c.MaxAckPending < 1 {
		p.add("MAX_ACK_PENDING", "must be at least 1, got %d", c.MaxAckPending)
	}
	if c.StreamReplicas < 1 || c.StreamReplicas > maxReplicas {
		p.add("STREAM_REPLICAS", "must be 1 to %d, got %d", maxReplicas, c.StreamReplicas)
	}
	if c.MaxDeliver != -1 && c.MaxDeliver < 1 {
		p.add("MAX_DELIVER", "must be -1 (no limit) or at least 1, got %d", c.MaxDeliver)
	}
}

// checkSubjects checks the subjects with nats-server's own rules (nats.go
// has no exported check, and the daemon links nats-server for its embedded
// server anyway).
func (c *Config) checkSubjects(p *problems) {
	literals := []named{{"REQUEST_SUBJECT", c.RequestSubject}, {"DELETED_SUBJECT", c.DeletedSubject}, {"FAILED_SUBJECT", c.FailedSubject}}
	if c.DryRun {
		literals = append(literals, named{"DRY_RUN_SUBJECT", c.DryRunSubject})
	}
	for i, l := range literals {
		switch {
		case l.value == "":
			p.add(l.name, "must not be empty")
		case !server.IsValidPublishSubject(l.value):
			p.add(l.name, "must be a NATS subject without wildcards (non-empty tokens separated by '.', no whitespace, no '*' or '>' token), got %q", l.value)
		case i > 0 && l.value == c.RequestSubject:
			p.add(l.name, "must differ from REQUEST_SUBJECT, or the daemon would consume its own results, got %q", l.value)
			fallthrough
		default:
			covered := len(c.StreamSubjects) == 0 // reported below
			for _, s := range c.StreamSubjects {
				covered = covered || server.SubjectMatchesFilter(l.value, s)
			}
			if !covered {
				p.add("STREAM_SUBJECTS", "must cover %s %q, got %q", l.name, l.value, strings.Join(c.StreamSubjects, ","))
			}
		}
	}
	if len(c.StreamSubjects) == 0 {
		p.add("STREAM_SUBJECTS", "must not be empty")
	}
	for _, s := range c.StreamSubjects {
		if !server.IsValidSubject(s) {
			p.add("STREAM_SUBJECTS", "%q is not a NATS subject (non-empty tokens separated by '.', no whitespace, '>' only last)", s)
		}
	}
}

func (c *Config) checkNames(p *problems) {
	for _, n := range []named{{"LEDGER_BUCKET", c.LedgerBucket}, {"PROTECT_BUCKET", c.ProtectBucket}} {
		if n.value == "" {
			p.add(n.name, "must not be empty")
		} else if strings.TrimLeft(n.value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != "" {
			p.add(n.name, "must hold only letters, digits, '-' and '_' (a KV bucket name), got %q", n.value)
		}
	}
	if c.DryRun && c.ConsumerName == defaultConsumer {
		p.add("CONSUMER_NAME", "must name a consumer of its own with DRY_RUN=true, not %q (the real daemon's): a dry "+
			"run on it would take real requests and answer them with would_delete only", c.ConsumerName)
	}
	if c.LedgerBucket != "" && c.ProtectBucket == c.LedgerBucket {
		p.add("PROTECT_BUCKET", "must differ from LEDGER_BUCKET, got %q", c.ProtectBucket)
	}
	for _, n := range []named{{"STREAM_NAME", c.StreamName}, {"CONSUMER_NAME", c.ConsumerName}} {
		switch {
		case n.value == "":
			p.add(n.name, "must not be empty")
		case strings.ContainsAny(n.value, " \t\r\n\f.*>/\\"):
			p.add(n.name, `must not contain whitespace, '.', '*', '>', '/' or '\', got %q`, n.value)
		case len(n.value) > server.JSMaxNameLen:
			p.add(n.name, "must be at most %d bytes, got %d", server.JSMaxNameLen, len(n.value))
		}
	}
}

func (c *Config) checkNATS(p *problems) {
	needs := func(name, value, other, otherValue string) {
		if value != "" && otherValue == "" {
			p.add(name, "needs %s", other)
		}
	}
	needs("NATS_USER", c.NATSUser, "NATS_PASSWORD", c.NATSPassword.Reveal())
	needs("NATS_PASSWORD", c.NATSPassword.Reveal(), "NATS_USER", c.NATSUser)
	needs("NATS_TLS_CERT_FILE", c.NATSTLSCertFile, "NATS_TLS_KEY_FILE", c.NATSTLSKeyFile)
	needs("NATS_TLS_KEY_FILE", c.NATSTLSKeyFile, "NATS_TLS_CERT_FILE", c.NATSTLSCertFile)
	var first string // the first way to authenticate
	for _, m := range []named{{"NATS_CREDS_FILE", c.NATSCredsFile}, {"NATS_NKEY_FILE", c.NATSNKeyFile},
		{"NATS_USER", c.NATSUser + c.NATSPassword.Reveal()}, {"NATS_TOKEN", c.NATSToken.Reveal()}} {
		switch {
		case m.value == "":
		case first == "":
			first = m.name
		default:
			p.add(m.name, "must not be set together with %s: choose one way to authenticate to NATS", first)
		}
	}
	for _, f := range []named{{"NATS_CREDS_FILE", c.NATSCredsFile}, {"NATS_NKEY_FILE", c.NATSNKeyFile},
		{"NATS_TLS_CA_FILE", c.NATSTLSCAFile}, {"NATS_TLS_CERT_FILE", c.NATSTLSCertFile}, {"NATS_TLS_KEY_FILE", c.NATSTLSKeyFile}} {
		if f.value == "" {
			continue
		}
		if fi, err := os.Stat(f.value); err == nil && fi.IsDir() {
			p.add(f.name, "%s is a directory", f.value)
		} else if r, err := os.Open(f.value); err != nil {
			p.add(f.name, "%w", err)
		} else {
			r.Close()
		}
	}
	if fi, err := os.Stat(c.NATSEmbeddedDir); c.NATSEmbeddedDir != "" && err == nil && !fi.IsDir() {
		p.add("NATS_EMBEDDED_DIR", "%s is not a directory", c.NATSEmbeddedDir)
	}
}

// checkNATSURL checks NATS_URL as nats.go reads it: comma separated, each
// entry trimmed, empty entries skipped, no scheme meaning nats://, no mix of
// websocket and plain URLs. Entries show redacted (RedactURL).
func (c *Config) checkNATSURL(p *problems) {
	const name = "NATS_URL"
	var n, websocket int
	for entry := range strings.SplitSeq(c.NATSURL, ",") {
		if entry = strings.TrimSpace(entry); entry == "" {
			continue
		}
		n++
		raw := entry
		if !strings.Contains(raw, "://") {
			raw = "nats://" + raw
		}
		u, err := url.Parse(raw)
		switch {
		case err != nil:
			p.add(name, "%s is not a URL", RedactURL(entry))
			continue
		case u.Scheme == "ws" || u.Scheme == "wss":
			websocket++
		case u.Scheme != "nats" && u.Scheme != "tls":
			p.add(name, "%s: scheme must be nats, tls, ws or wss, got %q", RedactURL(entry), u.Scheme)
			continue
		}
		if u.Hostname() == "" {
			p.add(name, "%s has no host", RedactURL(entry))
		}
		// Port 0 lets an embedded server pick a free port.
		if port, err := strconv.Atoi(u.Port()); u.Port() != "" && (err != nil || port < 0 || port > 65535 || port == 0 && !c.NATSEmbedded) {
			shown := strconv.Quote(u.Port())
			if strings.Contains(entry, "@") { // a misread password can look like a port: never print it
				shown = "(not shown: the URL has user info)"
			}
			p.add(name, "%s: port must be 1 to 65535 (0 only with NATS_EMBEDDED=true), got %s", RedactURL(entry), shown)
		}
	}
	if n == 0 {
		p.add(name, "must name at least one server, such as nats://127.0.0.1:4222")
	} else if websocket > 0 && websocket < n {
		p.add(name, "must not mix websocket (ws, wss) and nats or tls URLs")
	}
}
