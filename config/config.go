// Package config reads the daemon's configuration from the environment.
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
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

	// DeleteFuse is at most N DELETE calls within any window of that length,
	// across all replicas ("1000/1h"); the call that would exceed it is not
	// made and the consumer is paused. "off" (Calls 0) disables it.
	DeleteFuse Fuse `envconfig:"DELETE_FUSE" default:"1000/1h"`
	// ProtectBucket is the KV bucket of protected integration ids (letters,
	// digits, '-' and '_'); created when missing while provisioning. Empty is
	// an error.
	ProtectBucket string `envconfig:"PROTECT_BUCKET" default:"INTEGRATION_DELETE_PROTECTED"`
	// DryRun calls GET /integrations/{id} instead of DELETE and publishes
	// what a delete would do to DryRunSubject; never a DELETE.
	DryRun bool `envconfig:"DRY_RUN"`
	// DryRunSubject receives the dry-run results. A literal subject other than
	// RequestSubject, checked when DryRun is set.
	DryRunSubject string `envconfig:"DRY_RUN_SUBJECT" default:"integration.delete.dry_run"`

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

// defaultConsumer is CONSUMER_NAME's default: the real daemon's durable consumer.
const defaultConsumer = "integration-deleter"

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
