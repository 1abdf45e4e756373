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
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/kelseyhightower/envconfig"

	"github.com/nats-io/nats-server/v2/server"
)

// Config is the daemon's configuration, one field per environment variable.
// Load fills it from the environment, Default from the defaults alone.
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
	// KomboMaxAttempts is how many DELETE calls one request may use before it
	// fails. Zero is an error.
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
	var c Config
	v := reflect.ValueOf(&c).Elem()
	for _, ev := range envVars() {
		if ev.def == "" {
			continue
		}
		if err := setValue(v.Field(ev.index), ev.def); err != nil {
			panic(fmt.Sprintf("config: default of %s: %v", ev.name, err))
		}
	}
	return &c
}

// Load reads the configuration through lookupEnv (os.LookupEnv in the daemon), reads
// KOMBO_API_KEY_FILE when set, normalizes (trims the key, strips a trailing
// slash from KOMBO_BASE_URL, trims STREAM_SUBJECTS entries, lowercases
// LOG_LEVEL and LOG_FORMAT) and validates. A variable that is set, even to
// "", overrides its default. The error joins every problem found, each
// starting with its variable's name; it never contains a secret.
func Load(lookupEnv func(string) (string, bool)) (*Config, error) {
	c, errs := read(lookupEnv)
	c.KomboAPIKey = Secret(strings.TrimSpace(c.KomboAPIKey.Reveal()))
	keyKnown := true
	switch {
	case c.KomboAPIKeyFile != "" && c.KomboAPIKey != "":
		errs = append(errs, varErrorf("KOMBO_API_KEY_FILE", "must not be set together with KOMBO_API_KEY"))
		keyKnown = false
	case c.KomboAPIKeyFile != "":
		key, err := readKeyFile(c.KomboAPIKeyFile)
		if err != nil {
			errs = append(errs, varErrorf("KOMBO_API_KEY_FILE", "%w", err))
			keyKnown = false
			break
		}
		c.KomboAPIKey = key
	}
	c.normalize()
	errs = append(errs, c.problems(keyKnown)...)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate returns every problem of c at once (errors.Join), each error
// starting with the name of the variable at fault, or nil. It checks that
// the files named by the *_FILE variables can be read; KOMBO_API_KEY_FILE
// itself is Load's to read (Validate checks the key Load read from it).
func (c *Config) Validate() error {
	return errors.Join(c.problems(true)...)
}

// SlogLevel returns LogLevel as a slog.Level (debug, info, warn or error, in
// any case). A level Validate would refuse gives slog.LevelInfo.
func (c *Config) SlogLevel() slog.Level {
	l, _ := parseLevel(c.LogLevel)
	return l
}

// LogValue returns the configuration as a group keyed by variable name, with
// durations as text (30s), secrets as "[redacted]" and the user info of URLs
// replaced, so that it can be logged whole (slog.LogValuer).
func (c Config) LogValue() slog.Value {
	v := reflect.ValueOf(c)
	vars := envVars()
	attrs := make([]slog.Attr, 0, len(vars))
	for _, ev := range vars {
		var val slog.Value
		switch x := v.Field(ev.index).Interface().(type) {
		case Secret:
			val = x.LogValue()
		case time.Duration:
			val = slog.StringValue(x.String())
		case []string:
			val = slog.StringValue(strings.Join(x, ","))
		case string:
			if ev.name == "NATS_URL" || ev.name == "KOMBO_BASE_URL" {
				x = redactURLs(x)
			}
			val = slog.StringValue(x)
		default:
			val = slog.AnyValue(x)
		}
		attrs = append(attrs, slog.Attr{Key: ev.name, Value: val})
	}
	return slog.GroupValue(attrs...)
}

// envVar is one field of Config as envconfig sees it.
type envVar struct {
	name  string // the environment variable
	def   string // the default tag; "" = none
	index int    // the field's index in Config
}

// envVars lists the fields of Config in order.
func envVars() []envVar {
	t := reflect.TypeFor[Config]()
	vars := make([]envVar, 0, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		vars = append(vars, envVar{name: f.Tag.Get("envconfig"), def: f.Tag.Get("default"), index: i})
	}
	return vars
}

// setValue parses s into v the way envconfig v1.4 does for the kinds Config
// uses: strconv.ParseBool, strconv.ParseInt with base 0, time.ParseDuration,
// and comma separated slices.
func setValue(v reflect.Value, s string) error {
	if d, ok := v.Addr().Interface().(envconfig.Decoder); ok {
		return d.Decode(s)
	}
	if v.Type() == reflect.TypeFor[time.Duration]() {
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 0, v.Type().Bits())
		if err != nil {
			return err
		}
		v.SetInt(n)
	case reflect.Slice:
		if strings.TrimSpace(s) == "" {
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
			return nil
		}
		parts := strings.Split(s, ",")
		sl := reflect.MakeSlice(v.Type(), len(parts), len(parts))
		for i, p := range parts {
			if err := setValue(sl.Index(i), p); err != nil {
				return err
			}
		}
		v.Set(sl)
	default:
		return fmt.Errorf("unsupported type %s", v.Type())
	}
	return nil
}

// read fills a Config from lookupEnv: a variable that is set, even to "",
// overrides its default; every value that does not parse is reported, and its
// default kept.
func read(lookupEnv func(string) (string, bool)) (Config, []error) {
	c := *Default()
	v := reflect.ValueOf(&c).Elem()
	var errs []error
	for _, ev := range envVars() {
		s, ok := lookupEnv(ev.name)
		if !ok {
			continue
		}
		f := v.Field(ev.index)
		val := reflect.New(f.Type()).Elem()
		if err := setValue(val, s); err != nil {
			errs = append(errs, invalidValue(ev.name, f.Type(), s, err))
			continue
		}
		f.Set(val)
	}
	return c, errs
}

// invalidValue describes a value that does not parse as type t.
func invalidValue(name string, t reflect.Type, s string, err error) error {
	want := err.Error()
	switch {
	case t == reflect.TypeFor[time.Duration]():
		want = "want a duration such as 30s, 5m or 1h30m"
	case t.Kind() == reflect.Bool:
		want = "want true or false"
	case t.Kind() == reflect.Int:
		want = "want an integer"
		if errors.Is(err, strconv.ErrRange) {
			want = "out of range"
		}
	}
	return varErrorf(name, "invalid value %q: %s", s, want)
}

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

// varError is a problem with one environment variable.
type varError struct {
	name string // the variable
	err  error
}

func (e *varError) Error() string { return e.name + ": " + e.err.Error() }
func (e *varError) Unwrap() error { return e.err }

// varErrorf returns a problem with the variable name, described by
// fmt.Errorf(format, args...).
func varErrorf(name, format string, args ...any) error {
	return &varError{name: name, err: fmt.Errorf(format, args...)}
}

// named is a value with the variable it came from.
type named struct{ name, value string }

// problems collects the problems of a Config.
type problems []error

func (p *problems) add(name, format string, args ...any) {
	*p = append(*p, varErrorf(name, format, args...))
}

// problems returns every problem of c; checkKey false skips the key, whose
// source Load already found at fault.
func (c *Config) problems(checkKey bool) []error {
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
	c.checkHTTP(&p)
	c.checkLogs(&p)
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

func (c *Config) checkBaseURL(p *problems) {
	const name = "KOMBO_BASE_URL"
	u, err := url.Parse(c.KomboBaseURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if strings.Contains(c.KomboBaseURL, "@") { // the parser's message can quote a password
			p.add(name, "not a URL (the message is not shown: the URL has user info, which it must not)")
			return
		}
		p.add(name, "not a URL: %v", err)
		return
	}
	if u.Scheme == "" || u.Host == "" || u.Hostname() == "" {
		p.add(name, "must be an absolute URL such as https://api.kombo.dev/v1, got %q", redactURLs(c.KomboBaseURL))
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
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
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
	if c.JetStreamProvision && c.DuplicateWindow > 0 && c.KomboRetryMaxElapsed > 0 && c.AckWait > 0 {
		if least := c.KomboRetryMaxElapsed + 2*c.AckWait; c.DuplicateWindow <= least {
			p.add("DUPLICATE_WINDOW", "must exceed KOMBO_RETRY_MAX_ELAPSED + 2×ACK_WAIT = %s + 2×%s = %s, so that a result re-published after a crash is still deduplicated; got %s",
				c.KomboRetryMaxElapsed, c.AckWait, least, c.DuplicateWindow)
		}
	}
}

func (c *Config) checkCounts(p *problems) {
	switch {
	case c.KomboMaxConcurrency < 1:
		p.add("KOMBO_MAX_CONCURRENCY", "must be at least 1, got %d", c.KomboMaxConcurrency)
	case c.KomboMaxConcurrency > maxConcurrency:
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

func (c *Config) checkSubjects(p *problems) {
	literals := []named{
		{"REQUEST_SUBJECT", c.RequestSubject},
		{"DELETED_SUBJECT", c.DeletedSubject},
		{"FAILED_SUBJECT", c.FailedSubject},
	}
	var valid []named
	for _, l := range literals {
		switch {
		case l.value == "":
			p.add(l.name, "must not be empty")
		case !server.IsValidPublishSubject(l.value):
			p.add(l.name, "must be a NATS subject without wildcards (non-empty tokens separated by '.', no whitespace, no '*' or '>' token), got %q", l.value)
		default:
			valid = append(valid, l)
		}
	}
	for _, l := range literals[1:] {
		if l.value != "" && l.value == c.RequestSubject {
			p.add(l.name, "must differ from REQUEST_SUBJECT, or the daemon would consume its own results, got %q", l.value)
		}
	}

	if len(c.StreamSubjects) == 0 {
		p.add("STREAM_SUBJECTS", "must not be empty")
		return
	}
	for _, s := range c.StreamSubjects {
		if !server.IsValidSubject(s) {
			p.add("STREAM_SUBJECTS", "%q is not a NATS subject (non-empty tokens separated by '.', no whitespace, '>' only last)", s)
		}
	}
	for _, l := range valid {
		covered := false
		for _, s := range c.StreamSubjects {
			if server.SubjectMatchesFilter(l.value, s) {
				covered = true
				break
			}
		}
		if !covered {
			p.add("STREAM_SUBJECTS", "must cover %s %q, got %q", l.name, l.value, strings.Join(c.StreamSubjects, ","))
		}
	}
}

func (c *Config) checkNames(p *problems) {
	switch {
	case c.LedgerBucket == "":
		p.add("LEDGER_BUCKET", "must not be empty")
	case strings.TrimLeft(c.LedgerBucket, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != "":
		p.add("LEDGER_BUCKET", "must hold only letters, digits, '-' and '_' (a KV bucket name), got %q", c.LedgerBucket)
	}
	for _, n := range []named{
		{"STREAM_NAME", c.StreamName},
		{"CONSUMER_NAME", c.ConsumerName},
	} {
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
	c.checkNATSURL(p)

	if c.NATSUser != "" && c.NATSPassword == "" {
		p.add("NATS_USER", "needs NATS_PASSWORD")
	}
	if c.NATSPassword != "" && c.NATSUser == "" {
		p.add("NATS_PASSWORD", "needs NATS_USER")
	}
	var methods []string
	for _, m := range []struct {
		name string
		set  bool
	}{
		{"NATS_CREDS_FILE", c.NATSCredsFile != ""},
		{"NATS_NKEY_FILE", c.NATSNKeyFile != ""},
		{"NATS_USER", c.NATSUser != "" || c.NATSPassword != ""},
		{"NATS_TOKEN", c.NATSToken != ""},
	} {
		if m.set {
			methods = append(methods, m.name)
		}
	}
	if len(methods) > 1 {
		for _, m := range methods[1:] {
			p.add(m, "must not be set together with %s: choose one way to authenticate to NATS", methods[0])
		}
	}

	if c.NATSTLSCertFile != "" && c.NATSTLSKeyFile == "" {
		p.add("NATS_TLS_CERT_FILE", "needs NATS_TLS_KEY_FILE")
	}
	if c.NATSTLSKeyFile != "" && c.NATSTLSCertFile == "" {
		p.add("NATS_TLS_KEY_FILE", "needs NATS_TLS_CERT_FILE")
	}
	for _, f := range []named{
		{"NATS_CREDS_FILE", c.NATSCredsFile},
		{"NATS_NKEY_FILE", c.NATSNKeyFile},
		{"NATS_TLS_CA_FILE", c.NATSTLSCAFile},
		{"NATS_TLS_CERT_FILE", c.NATSTLSCertFile},
		{"NATS_TLS_KEY_FILE", c.NATSTLSKeyFile},
	} {
		if f.value != "" {
			if err := readable(f.value); err != nil {
				p.add(f.name, "%w", err)
			}
		}
	}
	if c.NATSEmbeddedDir != "" {
		if fi, err := os.Stat(c.NATSEmbeddedDir); err == nil && !fi.IsDir() {
			p.add("NATS_EMBEDDED_DIR", "%s is not a directory", c.NATSEmbeddedDir)
		}
	}
}

// checkNATSURL checks NATS_URL as nats.go reads it: comma separated, each
// entry trimmed, empty entries skipped, no scheme meaning nats://, no mix of
// websocket and plain URLs.
func (c *Config) checkNATSURL(p *problems) {
	const name = "NATS_URL"
	var n, websocket int
	for entry := range strings.SplitSeq(c.NATSURL, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		n++
		raw := entry
		if !strings.Contains(raw, "://") {
			raw = "nats://" + raw
		}
		u, err := url.Parse(raw)
		if err != nil {
			p.add(name, "%s is not a URL", redactURLs(entry))
			continue
		}
		switch u.Scheme {
		case "nats", "tls":
		case "ws", "wss":
			websocket++
		default:
			p.add(name, "%s: scheme must be nats, tls, ws or wss, got %q", redactURLs(entry), u.Scheme)
			continue
		}
		if u.Hostname() == "" {
			p.add(name, "%s has no host", redactURLs(entry))
		}
		if port := u.Port(); port != "" {
			// Port 0 lets an embedded server pick a free port.
			if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 || (n == 0 && !c.NATSEmbedded) {
				if strings.Contains(entry, "@") { // a misread password can look like a port: never print it
					port = "(not shown: the URL has user info)"
				} else {
					port = strconv.Quote(port)
				}
				p.add(name, "%s: port must be 1 to 65535 (0 only with NATS_EMBEDDED=true), got %s", redactURLs(entry), port)
			}
		}
	}
	switch {
	case n == 0:
		p.add(name, "must name at least one server, such as nats://127.0.0.1:4222")
	case websocket > 0 && websocket < n:
		p.add(name, "must not mix websocket (ws, wss) and nats or tls URLs")
	}
}

// readable returns an error unless path is a file that can be opened.
func readable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("%s is a directory", path)
	}
	return nil
}

func (c *Config) checkHTTP(p *problems) {
	const name = "HTTP_ADDR"
	_, port, err := net.SplitHostPort(c.HTTPAddr)
	switch {
	case err != nil || port == "":
		p.add(name, `must be host:port such as ":8080" or "127.0.0.1:8080", got %q`, c.HTTPAddr)
	default:
		if _, err := net.LookupPort("tcp", port); err != nil {
			p.add(name, "port must be a number from 0 (any free port) to 65535, got %q", port)
		}
	}
}

func (c *Config) checkLogs(p *problems) {
	if _, ok := parseLevel(c.LogLevel); !ok {
		p.add("LOG_LEVEL", "must be debug, info, warn or error, got %q", c.LogLevel)
	}
	switch strings.ToLower(c.LogFormat) {
	case "json", "text":
	default:
		p.add("LOG_FORMAT", "must be json or text, got %q", c.LogFormat)
	}
}

// parseLevel parses debug, info, warn or error, in any case.
func parseLevel(s string) (slog.Level, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, true
	case "info":
		return slog.LevelInfo, true
	case "warn":
		return slog.LevelWarn, true
	case "error":
		return slog.LevelError, true
	}
	return slog.LevelInfo, false
}

// redactURLs returns s, a URL or a comma separated list of them, with the
// user info of each replaced by "xxxxx": NATS takes a token or a password
// there. The user info runs from the scheme's "//" (or the start of an
// entry without one) to the entry's last "@", wherever that is: a password
// may hold "/", "?", "#" or "@", which end the authority of a parsed URL
// early (or make it unparsable), so the entry is never cut there first.
func redactURLs(s string) string {
	entries := strings.Split(s, ",")
	for i, e := range entries {
		entries[i] = redactUserinfo(e, "xxxxx")
	}
	return strings.Join(entries, ",")
}

// redactUserinfo replaces everything between the start of e's authority
// (see authorityStart) and e's last "@" by mask; e without "@" is returned
// as it is.
func redactUserinfo(e, mask string) string {
	at := strings.LastIndex(e, "@")
	if at < 0 {
		return e
	}
	start := min(authorityStart(e), at)
	return e[:start] + mask + e[at:]
}

// authorityStart returns where the authority of the URL e begins: after
// "scheme://" or "//" at its start (after leading blanks), else where e's
// text begins. A "//" further on may be part of a password, so only a
// scheme made of scheme characters (RFC 3986) counts.
func authorityStart(e string) int {
	lead := len(e) - len(strings.TrimLeft(e, " \t\r\n"))
	rest := e[lead:]
	if strings.HasPrefix(rest, "//") {
		return lead + len("//")
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		case i > 0 && strings.HasPrefix(rest[i:], "://"):
			return lead + i + len("://")
		default:
			return lead
		}
	}
	return lead
}

// Names lists every environment variable the configuration reads, in field order.
func Names() []string {
	vars := envVars()
	names := make([]string, len(vars))
	for i, ev := range vars {
		names[i] = ev.name
	}
	return names
}

// LoadClient reads the configuration for the commands that only talk to NATS (request,
// healthcheck): like Load, but the Kombo key is neither read nor required.
func LoadClient(lookupEnv func(string) (string, bool)) (*Config, error) {
	c, errs := read(lookupEnv)
	c.KomboAPIKey, c.KomboAPIKeyFile = "", ""
	c.normalize()
	if err := errors.Join(append(errs, c.problems(false)...)...); err != nil {
		return nil, err
	}
	return &c, nil
}
