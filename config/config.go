// Package config reads the daemon's configuration from the environment.
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/kelseyhightower/envconfig"
	"github.com/nats-io/nats-server/v2/server"
)

// Config is the daemon's configuration, one field per environment variable
// (envconfig's tags: the variable and its default). Load fills it from the
// environment, Default from the defaults alone.
// Its LogValue names each field by its variable and hides secrets, so the
// whole Config can be logged at start.
type Config struct {
	// KomboAPIKey is the bearer key for Kombo. Load trims surrounding
	// whitespace and, with KOMBO_API_KEY_FILE, reads it from that file.
	// Required: empty is an error.
	KomboAPIKey Secret `envconfig:"KOMBO_API_KEY"`
	// KomboAPIKeyFile is a file holding the Kombo key (a mounted secret),
	// read once by Load. Empty means the key comes from KOMBO_API_KEY; setting
	// both is an error.
	KomboAPIKeyFile string `envconfig:"KOMBO_API_KEY_FILE"`
	// KomboBaseURL is Kombo's API root, without a trailing slash (Load strips
	// it): https://api.kombo.dev/v1 (EU), https://api.us.kombo.dev/v1 (US) or a
	// fake. Empty is an error.
	KomboBaseURL string `envconfig:"KOMBO_BASE_URL" default:"https://api.kombo.dev/v1"`
	// KomboAllowInsecure allows an http:// KomboBaseURL on a host other than
	// loopback. False (the default) allows http only for localhost,
	// 127.0.0.0/8 and ::1.
	KomboAllowInsecure bool `envconfig:"KOMBO_ALLOW_INSECURE"`
	// KomboTimeout bounds one HTTP call to Kombo. Zero is an error.
	KomboTimeout time.Duration `envconfig:"KOMBO_TIMEOUT" default:"30s"`
	// KomboMaxConcurrency is the upper bound of Kombo calls in flight; the
	// adaptive cap stays at or below it. Must be 1 to 1024; zero is an error.
	KomboMaxConcurrency int `envconfig:"KOMBO_MAX_CONCURRENCY" default:"8"`
	// KomboMaxAttempts is how many DELETE calls whose answers were the
	// request's fault (5xx, timeouts, network errors) one request may use,
	// over all its deliveries, before it fails; rate limits, concurrency
	// limits and rejected keys use none. Zero is an error.
	KomboMaxAttempts int `envconfig:"KOMBO_MAX_ATTEMPTS" default:"10"`
	// KomboRetryMaxElapsed is how long one request may keep retrying before it
	// fails. Zero is an error.
	KomboRetryMaxElapsed time.Duration `envconfig:"KOMBO_RETRY_MAX_ELAPSED" default:"15m"`
	// KomboBackoffInitial is the first retry delay of the exponential backoff
	// (with jitter). Zero is an error; it must not exceed KomboBackoffMax.
	KomboBackoffInitial time.Duration `envconfig:"KOMBO_BACKOFF_INITIAL" default:"1s"`
	// KomboBackoffMax caps the retry delay of the backoff. Zero is an error.
	KomboBackoffMax time.Duration `envconfig:"KOMBO_BACKOFF_MAX" default:"60s"`
	// AuthProbeInterval is how often a daemon paused by a rejected key checks
	// the key again. Zero is an error.
	AuthProbeInterval time.Duration `envconfig:"AUTH_PROBE_INTERVAL" default:"30s"`

	// NATSURL lists the NATS servers, comma separated, each nats://, tls://,
	// ws:// or wss:// (or host[:port], taken as nats://). Ignored when
	// NATSEmbedded is true. Empty is an error.
	NATSURL string `envconfig:"NATS_URL" default:"nats://127.0.0.1:4222"`
	// NATSCredsFile is a NATS credentials file (JWT and NKey seed). Empty
	// means none.
	NATSCredsFile string `envconfig:"NATS_CREDS_FILE"`
	// NATSNKeyFile is a file holding a NATS NKey seed. Empty means none.
	NATSNKeyFile string `envconfig:"NATS_NKEY_FILE"`
	// NATSUser is the NATS user name, used with NATSPassword. Empty means no
	// user/password authentication.
	NATSUser string `envconfig:"NATS_USER"`
	// NATSPassword is the password of NATSUser. Empty means none; it must be
	// set exactly when NATSUser is.
	NATSPassword Secret `envconfig:"NATS_PASSWORD"`
	// NATSToken is a NATS authentication token. Empty means none.
	NATSToken Secret `envconfig:"NATS_TOKEN"`
	// NATSTLSCAFile is a PEM file of CAs that verify the NATS server. Empty
	// means the system roots.
	NATSTLSCAFile string `envconfig:"NATS_TLS_CA_FILE"`
	// NATSTLSCertFile is the PEM client certificate for NATS, used with
	// NATSTLSKeyFile. Empty means no client certificate.
	NATSTLSCertFile string `envconfig:"NATS_TLS_CERT_FILE"`
	// NATSTLSKeyFile is the PEM key of NATSTLSCertFile. Empty means none; it
	// must be set exactly when NATSTLSCertFile is.
	NATSTLSKeyFile string `envconfig:"NATS_TLS_KEY_FILE"`
	// NATSEmbedded runs an embedded JetStream server in-process (local use,
	// demos) instead of connecting to NATSURL. False (the default) connects.
	NATSEmbedded bool `envconfig:"NATS_EMBEDDED"`
	// NATSEmbeddedDir is where the embedded server stores its data. Empty
	// means a temporary directory, removed at exit.
	NATSEmbeddedDir string `envconfig:"NATS_EMBEDDED_DIR"`

	// JetStreamProvision creates the stream and the consumer when they are
	// missing (existing ones are left alone). False only binds to what
	// exists.
	JetStreamProvision bool `envconfig:"JETSTREAM_PROVISION" default:"true"`
	// RequestSubject is where delete requests are published and consumed from.
	// A literal subject; empty is an error.
	RequestSubject string `envconfig:"REQUEST_SUBJECT" default:"integration.delete.requested"`
	// DeletedSubject receives the "deleted" results. A literal subject other
	// than RequestSubject; empty is an error.
	DeletedSubject string `envconfig:"DELETED_SUBJECT" default:"integration.delete.deleted"`
	// FailedSubject receives the "failed" results. A literal subject other
	// than RequestSubject; empty is an error.
	FailedSubject string `envconfig:"FAILED_SUBJECT" default:"integration.delete.failed"`
	// StreamName is the JetStream stream holding requests and results. Empty
	// is an error.
	StreamName string `envconfig:"STREAM_NAME" default:"INTEGRATION_DELETE"`
	// StreamSubjects are the stream's subjects when provisioning (comma
	// separated; Load trims each and drops empty ones). They must cover the
	// three subjects above; empty is an error.
	StreamSubjects []string `envconfig:"STREAM_SUBJECTS" default:"integration.delete.>"`
	// ConsumerName is the durable pull consumer that all replicas of the
	// daemon share. Empty is an error.
	ConsumerName string `envconfig:"CONSUMER_NAME" default:"integration-deleter"`
	// StreamReplicas is the stream's and consumer's replica count when
	// provisioning, 1 to 5. Zero is an error.
	StreamReplicas int `envconfig:"STREAM_REPLICAS" default:"1"`
	// StreamMaxAge is how long the stream keeps requests and results when
	// provisioning. Zero keeps them forever; otherwise it must be at least
	// DuplicateWindow.
	StreamMaxAge time.Duration `envconfig:"STREAM_MAX_AGE" default:"168h"`
	// AckWait is the consumer's AckWait when provisioning, at least 1s. Zero
	// is an error.
	AckWait time.Duration `envconfig:"ACK_WAIT" default:"30s"`
	// MaxDeliver is the consumer's MaxDeliver when provisioning: -1 for no
	// limit, or at least 1. Zero is an error.
	MaxDeliver int `envconfig:"MAX_DELIVER" default:"-1"`
	// DuplicateWindow is the stream's duplicate window when provisioning; it
	// must then exceed KomboRetryMaxElapsed + 2×AckWait. Zero is an error.
	DuplicateWindow time.Duration `envconfig:"DUPLICATE_WINDOW" default:"20m"`
	// MaxAckPending is how many messages the consumer holds unacknowledged at
	// once. Zero is an error.
	MaxAckPending int `envconfig:"MAX_ACK_PENDING" default:"256"`
	// LedgerBucket is the KV bucket recording each request's outcome (letters,
	// digits, '-' and '_'); created when missing while provisioning. Empty is an
	// error.
	LedgerBucket string `envconfig:"LEDGER_BUCKET" default:"INTEGRATION_DELETE_LEDGER"`
	// LedgerMaxAge is how long an outcome is kept: 0 forever, otherwise at least
	// StreamMaxAge when that is not 0 (an outcome must outlive the request it
	// answers).
	LedgerMaxAge time.Duration `envconfig:"LEDGER_MAX_AGE" default:"2160h"`

	// HTTPAddr is the host:port serving /healthz, /readyz and /metrics; port
	// 0 picks a free port. Empty is an error.
	HTTPAddr string `envconfig:"HTTP_ADDR" default:":8080"`
	// ShutdownTimeout bounds how long calls in flight may finish after
	// SIGTERM or SIGINT. Zero is an error.
	ShutdownTimeout time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"25s"`
	// LogLevel is debug, info, warn or error (Load lowercases it; see
	// SlogLevel). Empty is an error.
	LogLevel string `envconfig:"LOG_LEVEL" default:"info"`
	// LogFormat is json or text (colored, for humans); Load lowercases it.
	// Empty is an error.
	LogFormat string `envconfig:"LOG_FORMAT" default:"json"`
}

// Bounds that are not the contract's but keep a typo from doing harm.
const (
	maxConcurrency = 1024
	maxReplicas    = 5
	minAckWait     = time.Second
	maxKeyFileSize = 64 << 10
)

// Default returns the configuration with every default from the struct tags
// and nothing from the environment; KomboAPIKey is empty, so it does not
// validate until a key is set. For tests and the demo.
func Default() *Config {
	c, errs := read(func(string) (string, bool) { return "", false })
	if len(errs) > 0 {
		panic(fmt.Sprintf("config: a default does not parse: %v", errors.Join(errs...)))
	}
	return c
}

// Load reads the configuration through lookupEnv (os.LookupEnv in the daemon),
// reads KOMBO_API_KEY_FILE when set, normalizes (trims the key, strips a
// trailing slash from KOMBO_BASE_URL, trims STREAM_SUBJECTS entries,
// lowercases LOG_LEVEL and LOG_FORMAT) and validates. A variable that is set,
// even to "", overrides its default. The error joins every problem found, each
// starting with its variable's name; it never contains a secret.
func Load(lookupEnv func(string) (string, bool)) (*Config, error) {
	return load(lookupEnv, true)
}

// LoadClient reads the configuration for the commands that only talk to NATS
// (request, healthcheck): like Load, but the Kombo key is neither read nor
// required.
func LoadClient(lookupEnv func(string) (string, bool)) (*Config, error) {
	return load(lookupEnv, false)
}

func load(lookupEnv func(string) (string, bool), withKey bool) (*Config, error) {
	c, errs := read(lookupEnv)
	c.KomboAPIKey = Secret(strings.TrimSpace(c.KomboAPIKey.Reveal()))
	switch {
	case !withKey:
		c.KomboAPIKey, c.KomboAPIKeyFile = "", ""
	case c.KomboAPIKeyFile != "" && c.KomboAPIKey != "":
		errs = append(errs, varErrorf("KOMBO_API_KEY_FILE", "must not be set together with KOMBO_API_KEY"))
		withKey = false // that is the key's problem: checkKey would repeat it
	case c.KomboAPIKeyFile != "":
		var err error
		if c.KomboAPIKey, err = readKeyFile(c.KomboAPIKeyFile); err != nil {
			errs = append(errs, varErrorf("KOMBO_API_KEY_FILE", "%w", err))
			withKey = false
		}
	}
	c.normalize()
	if err := errors.Join(append(errs, c.problems(withKey)...)...); err != nil {
		return nil, err
	}
	return c, nil
}

// field is one variable of Config: its name and default (the envconfig and
// default tags) and the field itself, settable.
type field struct {
	name, def string
	v         reflect.Value
}

// fields lists the variables of c in field order, for read, LogValue and Names.
func fields(c *Config) []field {
	v := reflect.ValueOf(c).Elem()
	fs := make([]field, v.NumField())
	for i := range fs {
		tag := v.Type().Field(i).Tag
		fs[i] = field{tag.Get("envconfig"), tag.Get("default"), v.Field(i)}
	}
	return fs
}

// read fills a Config field by field from lookupEnv, with envconfig v1.4's
// semantics: a variable that is set, even to "", overrides its default, and
// a value decodes as envconfig decodes it (see decode). It is not
// envconfig.Process because Process reads only the process's environment
// (syscall.Getenv), and the lookup is injected here; and Process stops at the
// first bad value, where read reports every one, naming its variable, and
// keeps the default there.
func read(lookupEnv func(string) (string, bool)) (*Config, []error) {
	var c Config
	var errs []error
	for _, f := range fields(&c) {
		s, ok := lookupEnv(f.name)
		if !ok {
			if s = f.def; s == "" {
				continue
			}
		}
		if err := decode(f.v, s); err != nil {
			errs = append(errs, varErrorf(f.name, "invalid value %q: %w", s, err))
			_ = decode(f.v, f.def)
		}
	}
	return &c, errs
}

// decode sets v, a field of Config, from s as envconfig does for the types
// Config has: envconfig.Decoder first, then strconv.ParseBool,
// strconv.ParseInt with base 0, time.ParseDuration, and a comma split (an
// empty slice for blank s). Its error says what a value must look like; v
// may be set even then.
func decode(v reflect.Value, s string) (err error) {
	switch p := v.Addr().Interface().(type) {
	case envconfig.Decoder:
		return p.Decode(s)
	case *string:
		*p = s
	case *Secret:
		*p = Secret(s)
	case *[]string:
		*p = []string{}
		if strings.TrimSpace(s) != "" {
			*p = strings.Split(s, ",")
		}
	case *bool:
		if *p, err = strconv.ParseBool(s); err != nil {
			return errors.New("want true or false")
		}
	case *time.Duration:
		if *p, err = time.ParseDuration(s); err != nil {
			return errors.New("want a duration such as 30s, 5m or 1h30m")
		}
	case *int:
		var n int64
		n, err = strconv.ParseInt(s, 0, 0)
		*p = int(n)
		if errors.Is(err, strconv.ErrRange) {
			return errors.New("out of range")
		} else if err != nil {
			return errors.New("want an integer")
		}
	default:
		panic(fmt.Sprintf("config: field of type %s: add it to decode", v.Type()))
	}
	return nil
}

// Names lists every environment variable the configuration reads, in field order.
func Names() []string {
	var names []string
	for _, f := range fields(&Config{}) {
		names = append(names, f.name)
	}
	return names
}

// LogValue returns the configuration as a group keyed by variable name, with
// durations as text (30s), secrets as "[redacted]" and the user info of URLs
// replaced (RedactURL), so that it can be logged whole (slog.LogValuer).
func (c Config) LogValue() slog.Value {
	var attrs []slog.Attr
	for _, f := range fields(&c) {
		val := slog.AnyValue(f.v.Interface())
		switch x := f.v.Interface().(type) {
		case Secret:
			val = x.LogValue()
		case time.Duration:
			val = slog.StringValue(x.String())
		case []string:
			val = slog.StringValue(strings.Join(x, ","))
		case string:
			if f.name == "NATS_URL" || f.name == "KOMBO_BASE_URL" {
				val = slog.StringValue(RedactURL(x))
			}
		}
		attrs = append(attrs, slog.Attr{Key: f.name, Value: val})
	}
	return slog.GroupValue(attrs...)
}

// SlogLevel returns LogLevel as a slog.Level (debug, info, warn or error, in
// any case). A level Validate would refuse gives slog.LevelInfo.
func (c *Config) SlogLevel() slog.Level {
	return levels[strings.ToLower(strings.TrimSpace(c.LogLevel))]
}

// levels are LOG_LEVEL's values.
var levels = map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}

// readKeyFile returns the key in the file at path, trimmed.
func readKeyFile(path string) (Secret, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxKeyFileSize {
		return "", fmt.Errorf("%s is larger than %d bytes: not a key", path, maxKeyFileSize)
	}
	return Secret(strings.TrimSpace(string(b))), nil
}

// normalize puts values in the form the rest of the daemon relies on.
func (c *Config) normalize() {
	c.KomboBaseURL = strings.TrimRight(c.KomboBaseURL, "/")
	subjects := c.StreamSubjects[:0]
	for _, s := range c.StreamSubjects {
		if s = strings.TrimSpace(s); s != "" {
			subjects = append(subjects, s)
		}
	}
	c.StreamSubjects = subjects
	c.LogLevel = strings.ToLower(strings.TrimSpace(c.LogLevel))
	c.LogFormat = strings.ToLower(strings.TrimSpace(c.LogFormat))
}

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
	if c.LedgerBucket == "" {
		p.add("LEDGER_BUCKET", "must not be empty")
	} else if strings.TrimLeft(c.LedgerBucket, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != "" {
		p.add("LEDGER_BUCKET", "must hold only letters, digits, '-' and '_' (a KV bucket name), got %q", c.LedgerBucket)
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

// RedactURL returns s, a URL or a comma separated list of them, with the user
// info of each replaced by "xxxxx": NATS takes a token or a password there.
// The user info runs from the start of the authority to the entry's last "@":
// a password may hold "/", "?", "#" or "@", which end the authority of a
// parsed URL early (or make it unparsable), so the entry is never cut there.
func RedactURL(s string) string {
	entries := strings.Split(s, ",")
	for i, e := range entries {
		if at := strings.LastIndex(e, "@"); at >= 0 {
			entries[i] = e[:min(len(authorityStart.FindString(e)), at)] + "xxxxx" + e[at:]
		}
	}
	return strings.Join(entries, ",")
}

// authorityStart matches up to where the authority of a URL begins: after
// "scheme://" or "//" at its start (after blanks), else where its text
// begins. A "//" further on may be a password's, so only a scheme made of
// scheme characters (RFC 3986) counts.
var authorityStart = regexp.MustCompile(`^[ \t\r\n]*(([A-Za-z][A-Za-z0-9+.-]*:)?//)?`)
