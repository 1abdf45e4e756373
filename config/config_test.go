package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// lookup returns a lookupEnv for Load that sees exactly env, so that tests
// need not touch the process's environment and can run in parallel.
func lookup(env map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
}

// errVars returns the variables named by the errors joined in err, sorted,
// each once.
func errVars(err error) []string {
	var vars []string
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		name, _, ok := strings.Cut(err.Error(), ": ")
		if !ok {
			name = "no variable in " + err.Error()
		}
		vars = append(vars, name)
	}
	if err != nil {
		walk(err)
	}
	slices.Sort(vars)
	return slices.Compact(vars)
}

// writeFile writes content to a new file in a temporary directory.
func writeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDefaultEqualsLoadWithoutEnvironment(t *testing.T) {
	t.Parallel()
	got, err := Load(lookup(map[string]string{"KOMBO_API_KEY": "k"}))
	if err != nil {
		t.Fatalf("Load() error: %v", err)
	}
	want := Default()
	want.KomboAPIKey = "k"
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Load() under an empty environment differs from Default() (-got +want):\n%s", diff)
	}
	if err := want.Validate(); err != nil {
		t.Errorf("Default() with a key: Validate() = %v, want nil", err)
	}
}

func TestDefaultValues(t *testing.T) {
	t.Parallel()
	// The contract's defaults, pinned.
	got := Default()
	want := &Config{
		KomboBaseURL:         "https://api.kombo.dev/v1",
		KomboTimeout:         30 * time.Second,
		KomboMaxConcurrency:  8,
		KomboMaxAttempts:     10,
		KomboRetryMaxElapsed: 15 * time.Minute,
		KomboBackoffInitial:  time.Second,
		KomboBackoffMax:      time.Minute,
		AuthProbeInterval:    30 * time.Second,
		NATSURL:              "nats://127.0.0.1:4222",
		JetStreamProvision:   true,
		RequestSubject:       "integration.delete.requested",
		DeletedSubject:       "integration.delete.deleted",
		FailedSubject:        "integration.delete.failed",
		StreamName:           "INTEGRATION_DELETE",
		StreamSubjects:       []string{"integration.delete.>"},
		ConsumerName:         "integration-deleter",
		StreamReplicas:       1,
		StreamMaxAge:         168 * time.Hour,
		AckWait:              30 * time.Second,
		MaxDeliver:           -1,
		DuplicateWindow:      20 * time.Minute,
		MaxAckPending:        256,
		LedgerBucket:         "INTEGRATION_DELETE_LEDGER",
		LedgerMaxAge:         2160 * time.Hour,
		DeleteFuse:           Fuse{Calls: 1000, Window: time.Hour},
		ProtectBucket:        "INTEGRATION_DELETE_PROTECTED",
		DryRunSubject:        "integration.delete.dry_run",
		HTTPAddr:             ":8080",
		ShutdownTimeout:      25 * time.Second,
		LogLevel:             "info",
		LogFormat:            "json",
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Default() (-got +want):\n%s", diff)
	}
	if err := got.Validate(); !slices.Equal(errVars(err), []string{"KOMBO_API_KEY"}) {
		t.Errorf("Default().Validate() = %v, want only KOMBO_API_KEY required", err)
	}
}

func TestLoadValues(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"KOMBO_API_KEY":         "  key\n",
		"KOMBO_BASE_URL":        "https://api.us.kombo.dev/v1/",
		"KOMBO_TIMEOUT":         "5s",
		"KOMBO_MAX_CONCURRENCY": "16",
		"STREAM_SUBJECTS":       " a.requested , a.done.*,",
		"REQUEST_SUBJECT":       "a.requested",
		"DELETED_SUBJECT":       "a.done.deleted",
		"FAILED_SUBJECT":        "a.done.failed",
		"JETSTREAM_PROVISION":   "false",
		"STREAM_MAX_AGE":        "0",
		"MAX_DELIVER":           "5",
		"LOG_LEVEL":             "DEBUG",
		"LOG_FORMAT":            "Text",
		"DELETE_FUSE":           "20/1m",
		"DRY_RUN":               "true",
		"CONSUMER_NAME":         "dry-run",
		"DRY_RUN_SUBJECT":       "a.done.dry",
	}
	got, err := Load(lookup(env))
	if err != nil {
		t.Fatalf("Load() error: %v", err)
	}
	want := Default()
	want.KomboAPIKey = "key"
	want.KomboBaseURL = "https://api.us.kombo.dev/v1"
	want.KomboTimeout = 5 * time.Second
	want.KomboMaxConcurrency = 16
	want.StreamSubjects = []string{"a.requested", "a.done.*"}
	want.RequestSubject = "a.requested"
	want.DeletedSubject = "a.done.deleted"
	want.FailedSubject = "a.done.failed"
	want.JetStreamProvision = false
	want.StreamMaxAge = 0
	want.MaxDeliver = 5
	want.LogLevel = "debug"
	want.LogFormat = "text"
	want.DeleteFuse = Fuse{Calls: 20, Window: time.Minute}
	want.DryRun = true
	want.ConsumerName = "dry-run"
	want.DryRunSubject = "a.done.dry"
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Load() (-got +want):\n%s", diff)
	}
}

func TestLoadBadValues(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	file := writeFile(t, "x")
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{"no key", map[string]string{"KOMBO_API_KEY": ""}, []string{"KOMBO_API_KEY"}},
		{"blank key", map[string]string{"KOMBO_API_KEY": " \n"}, []string{"KOMBO_API_KEY"}},
		{"key with space", map[string]string{"KOMBO_API_KEY": "a b"}, []string{"KOMBO_API_KEY"}},
		{"base url empty", map[string]string{"KOMBO_BASE_URL": ""}, []string{"KOMBO_BASE_URL"}},
		{"base url relative", map[string]string{"KOMBO_BASE_URL": "/v1"}, []string{"KOMBO_BASE_URL"}},
		{"base url bad", map[string]string{"KOMBO_BASE_URL": "https://a:b:c/"}, []string{"KOMBO_BASE_URL"}},
		{"timeout syntax", map[string]string{"KOMBO_TIMEOUT": "abc"}, []string{"KOMBO_TIMEOUT"}},
		{"timeout zero", map[string]string{"KOMBO_TIMEOUT": "0s"}, []string{"KOMBO_TIMEOUT"}},
		{"insecure syntax", map[string]string{"KOMBO_ALLOW_INSECURE": "maybe"}, []string{"KOMBO_ALLOW_INSECURE"}},
		{"concurrency zero", map[string]string{"KOMBO_MAX_CONCURRENCY": "0"}, []string{"KOMBO_MAX_CONCURRENCY"}},
		{"concurrency huge", map[string]string{"KOMBO_MAX_CONCURRENCY": "100000"}, []string{"KOMBO_MAX_CONCURRENCY"}},
		{"concurrency syntax", map[string]string{"KOMBO_MAX_CONCURRENCY": "eight"}, []string{"KOMBO_MAX_CONCURRENCY"}},
		{"concurrency set empty", map[string]string{"KOMBO_MAX_CONCURRENCY": ""}, []string{"KOMBO_MAX_CONCURRENCY"}},
		{"attempts zero", map[string]string{"KOMBO_MAX_ATTEMPTS": "0"}, []string{"KOMBO_MAX_ATTEMPTS"}},
		{"elapsed negative", map[string]string{"KOMBO_RETRY_MAX_ELAPSED": "-1m"}, []string{"KOMBO_RETRY_MAX_ELAPSED"}},
		{"backoff initial zero", map[string]string{"KOMBO_BACKOFF_INITIAL": "0"}, []string{"KOMBO_BACKOFF_INITIAL"}},
		{"backoff max zero", map[string]string{"KOMBO_BACKOFF_MAX": "0"}, []string{"KOMBO_BACKOFF_MAX"}},
		{"backoff initial above max", map[string]string{"KOMBO_BACKOFF_INITIAL": "2m"}, []string{"KOMBO_BACKOFF_INITIAL"}},
		{"probe zero", map[string]string{"AUTH_PROBE_INTERVAL": "0"}, []string{"AUTH_PROBE_INTERVAL"}},
		{"nats url empty", map[string]string{"NATS_URL": " , "}, []string{"NATS_URL"}},
		{"nats url scheme", map[string]string{"NATS_URL": "http://127.0.0.1:4222"}, []string{"NATS_URL"}},
		{"nats url port", map[string]string{"NATS_URL": "nats://a:4222,b:99999"}, []string{"NATS_URL"}},
		{"nats url no host", map[string]string{"NATS_URL": "nats://:4222"}, []string{"NATS_URL"}},
		{"nats url mixed", map[string]string{"NATS_URL": "nats://a,wss://b"}, []string{"NATS_URL"}},
		{"nats creds missing", map[string]string{"NATS_CREDS_FILE": missing}, []string{"NATS_CREDS_FILE"}},
		{"nats nkey missing", map[string]string{"NATS_NKEY_FILE": missing}, []string{"NATS_NKEY_FILE"}},
		{"nats user alone", map[string]string{"NATS_USER": "u"}, []string{"NATS_USER"}},
		{"nats password alone", map[string]string{"NATS_PASSWORD": "p"}, []string{"NATS_PASSWORD"}},
		{"nats two auth methods", map[string]string{"NATS_CREDS_FILE": file, "NATS_TOKEN": "t"}, []string{"NATS_TOKEN"}},
		{"nats ca is a directory", map[string]string{"NATS_TLS_CA_FILE": dir}, []string{"NATS_TLS_CA_FILE"}},
		{"nats cert alone", map[string]string{"NATS_TLS_CERT_FILE": file}, []string{"NATS_TLS_CERT_FILE"}},
		{"nats key alone", map[string]string{"NATS_TLS_KEY_FILE": file}, []string{"NATS_TLS_KEY_FILE"}},
		{"nats cert missing", map[string]string{"NATS_TLS_CERT_FILE": missing, "NATS_TLS_KEY_FILE": file}, []string{"NATS_TLS_CERT_FILE"}},
		{"embedded syntax", map[string]string{"NATS_EMBEDDED": "yes please"}, []string{"NATS_EMBEDDED"}},
		{"embedded dir is a file", map[string]string{"NATS_EMBEDDED_DIR": file}, []string{"NATS_EMBEDDED_DIR"}},
		{"provision syntax", map[string]string{"JETSTREAM_PROVISION": "2"}, []string{"JETSTREAM_PROVISION"}},
		{"request subject empty", map[string]string{"REQUEST_SUBJECT": ""}, []string{"REQUEST_SUBJECT"}},
		{"request subject wildcard", map[string]string{"REQUEST_SUBJECT": "integration.delete.*"}, []string{"REQUEST_SUBJECT"}},
		{"request subject space", map[string]string{"REQUEST_SUBJECT": "integration.delete. x"}, []string{"REQUEST_SUBJECT"}},
		{"deleted subject empty token", map[string]string{"DELETED_SUBJECT": "integration..deleted"}, []string{"DELETED_SUBJECT"}},
		{"failed subject is the request subject", map[string]string{"FAILED_SUBJECT": "integration.delete.requested"}, []string{"FAILED_SUBJECT"}},
		{"stream name with dot", map[string]string{"STREAM_NAME": "A.B"}, []string{"STREAM_NAME"}},
		{"stream name too long", map[string]string{"STREAM_NAME": strings.Repeat("A", 256)}, []string{"STREAM_NAME"}},
		{"stream subjects empty", map[string]string{"STREAM_SUBJECTS": ""}, []string{"STREAM_SUBJECTS"}},
		{"stream subjects invalid", map[string]string{"STREAM_SUBJECTS": "integration.delete.>,a.>.b"}, []string{"STREAM_SUBJECTS"}},
		{"consumer name with star", map[string]string{"CONSUMER_NAME": "a*"}, []string{"CONSUMER_NAME"}},
		{"consumer name empty", map[string]string{"CONSUMER_NAME": ""}, []string{"CONSUMER_NAME"}},
		{"replicas zero", map[string]string{"STREAM_REPLICAS": "0"}, []string{"STREAM_REPLICAS"}},
		{"replicas six", map[string]string{"STREAM_REPLICAS": "6"}, []string{"STREAM_REPLICAS"}},
		{"max age negative", map[string]string{"STREAM_MAX_AGE": "-1h"}, []string{"STREAM_MAX_AGE"}},
		{"max age below duplicate window", map[string]string{"STREAM_MAX_AGE": "10m"}, []string{"STREAM_MAX_AGE"}},
		{"ack wait below 1s", map[string]string{"ACK_WAIT": "500ms"}, []string{"ACK_WAIT"}},
		{"max deliver zero", map[string]string{"MAX_DELIVER": "0"}, []string{"MAX_DELIVER"}},
		{"max deliver -2", map[string]string{"MAX_DELIVER": "-2"}, []string{"MAX_DELIVER"}},
		{"duplicate window zero", map[string]string{"DUPLICATE_WINDOW": "0"}, []string{"DUPLICATE_WINDOW"}},
		{"duplicate window short", map[string]string{"DUPLICATE_WINDOW": "16m"}, []string{"DUPLICATE_WINDOW"}},
		{"max ack pending zero", map[string]string{"MAX_ACK_PENDING": "0"}, []string{"MAX_ACK_PENDING"}},
		{"http addr no port", map[string]string{"HTTP_ADDR": "localhost"}, []string{"HTTP_ADDR"}},
		{"http addr empty port", map[string]string{"HTTP_ADDR": "localhost:"}, []string{"HTTP_ADDR"}},
		{"http addr port range", map[string]string{"HTTP_ADDR": ":70000"}, []string{"HTTP_ADDR"}},
		{"shutdown zero", map[string]string{"SHUTDOWN_TIMEOUT": "0s"}, []string{"SHUTDOWN_TIMEOUT"}},
		{"log level", map[string]string{"LOG_LEVEL": "verbose"}, []string{"LOG_LEVEL"}},
		{"log format", map[string]string{"LOG_FORMAT": "xml"}, []string{"LOG_FORMAT"}},
		{"fuse syntax", map[string]string{"DELETE_FUSE": "1000"}, []string{"DELETE_FUSE"}},
		{"fuse window", map[string]string{"DELETE_FUSE": "1000/fortnight"}, []string{"DELETE_FUSE"}},
		{"fuse zero calls", map[string]string{"DELETE_FUSE": "0/1h"}, []string{"DELETE_FUSE"}},
		{"fuse short window", map[string]string{"DELETE_FUSE": "10/10ms"}, []string{"DELETE_FUSE"}},
		{"protect bucket empty", map[string]string{"PROTECT_BUCKET": ""}, []string{"PROTECT_BUCKET"}},
		{"protect bucket with dot", map[string]string{"PROTECT_BUCKET": "A.B"}, []string{"PROTECT_BUCKET"}},
		{"protect bucket is the ledger", map[string]string{"PROTECT_BUCKET": "INTEGRATION_DELETE_LEDGER"}, []string{"PROTECT_BUCKET"}},
		{"dry run syntax", map[string]string{"DRY_RUN": "perhaps"}, []string{"DRY_RUN"}},
		{"dry run subject wildcard", map[string]string{"DRY_RUN": "true", "CONSUMER_NAME": "dry", "DRY_RUN_SUBJECT": "integration.delete.*"}, []string{"DRY_RUN_SUBJECT"}},
		{"dry run subject not stored", map[string]string{"DRY_RUN": "true", "CONSUMER_NAME": "dry", "DRY_RUN_SUBJECT": "elsewhere.dry_run"}, []string{"STREAM_SUBJECTS"}},
		{"dry run on the real consumer", map[string]string{"DRY_RUN": "true"}, []string{"CONSUMER_NAME"}},
		{
			"several at once",
			map[string]string{
				"KOMBO_BASE_URL":        "http://example.com",
				"KOMBO_MAX_CONCURRENCY": "0",
				"STREAM_REPLICAS":       "9",
				"LOG_FORMAT":            "xml",
				"NATS_URL":              "",
			},
			[]string{"KOMBO_BASE_URL", "KOMBO_MAX_CONCURRENCY", "LOG_FORMAT", "NATS_URL", "STREAM_REPLICAS"},
		},
		{
			"several unparsable at once",
			map[string]string{"KOMBO_TIMEOUT": "x", "MAX_DELIVER": "1.5", "NATS_EMBEDDED": "nope"},
			[]string{"KOMBO_TIMEOUT", "MAX_DELIVER", "NATS_EMBEDDED"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"KOMBO_API_KEY": "k"}
			for k, v := range tt.env {
				env[k] = v
			}
			got, err := Load(lookup(env))
			if err == nil {
				t.Fatalf("Load() = %+v, nil; want an error naming %v", got, tt.want)
			}
			if got != nil {
				t.Errorf("Load() returned a Config with error %v", err)
			}
			if diff := cmp.Diff(errVars(err), tt.want); diff != "" {
				t.Errorf("Load() error %q names (-got +want):\n%s", err, diff)
			}
		})
	}
}

func TestParseErrorMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, value, want string
	}{
		{"KOMBO_TIMEOUT", "abc", `KOMBO_TIMEOUT: invalid value "abc": want a duration such as 30s, 5m or 1h30m`},
		{"KOMBO_MAX_ATTEMPTS", "ten", `KOMBO_MAX_ATTEMPTS: invalid value "ten": want an integer`},
		{"KOMBO_MAX_ATTEMPTS", "99999999999999999999", `KOMBO_MAX_ATTEMPTS: invalid value "99999999999999999999": out of range`},
		{"KOMBO_ALLOW_INSECURE", "on", `KOMBO_ALLOW_INSECURE: invalid value "on": want true or false`},
	}
	for _, tt := range tests {
		t.Run(tt.name+"="+tt.value, func(t *testing.T) {
			t.Parallel()
			_, err := Load(lookup(map[string]string{"KOMBO_API_KEY": "k", tt.name: tt.value}))
			if err == nil {
				t.Fatal("Load() error = nil")
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("Load() error = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDuplicateWindowMessage(t *testing.T) {
	t.Parallel()
	c := Default()
	c.KomboAPIKey = "k"
	c.StreamMaxAge = 0
	c.DuplicateWindow = 10 * time.Minute
	got := fmt.Sprint(c.Validate())
	want := "DUPLICATE_WINDOW: must exceed KOMBO_RETRY_MAX_ELAPSED + 2×ACK_WAIT = 15m0s + 2×30s = 16m0s, so that a result re-published after a crash is still deduplicated; got 10m0s"
	if got != want {
		t.Errorf("Validate() = %q, want %q", got, want)
	}

	c.JetStreamProvision = false
	if err := c.Validate(); err != nil {
		t.Errorf("without provisioning, Validate() = %v, want nil", err)
	}
}

func TestKeyFile(t *testing.T) {
	t.Parallel()
	const key = "sk-file-0123456789"
	tests := []struct {
		name    string
		content string // "" = do not create the file
		envKey  string
		want    Secret
		wantErr []string
	}{
		{name: "trailing newline trimmed", content: key + "\n", want: key},
		{name: "surrounding whitespace trimmed", content: "\t " + key + " \r\n", want: key},
		{name: "empty", content: "\n", wantErr: []string{"KOMBO_API_KEY_FILE"}},
		{name: "two lines", content: key + "\n" + key + "\n", wantErr: []string{"KOMBO_API_KEY_FILE"}},
		{name: "missing", wantErr: []string{"KOMBO_API_KEY_FILE"}},
		{name: "also KOMBO_API_KEY", content: key, envKey: "other", wantErr: []string{"KOMBO_API_KEY_FILE"}},
		{name: "too large", content: strings.Repeat("k", maxKeyFileSize+1), wantErr: []string{"KOMBO_API_KEY_FILE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "key")
			if tt.content != "" {
				if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			env := map[string]string{"KOMBO_API_KEY_FILE": path}
			if tt.envKey != "" {
				env["KOMBO_API_KEY"] = tt.envKey
			}
			got, err := Load(lookup(env))
			if tt.wantErr != nil {
				if diff := cmp.Diff(errVars(err), tt.wantErr); diff != "" {
					t.Errorf("Load() error %q names (-got +want):\n%s", err, diff)
				}
				if err != nil && (strings.Contains(err.Error(), key) || strings.Contains(err.Error(), "kkkk")) {
					t.Errorf("Load() error %q contains the key", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load() error: %v", err)
			}
			if got.KomboAPIKey != tt.want {
				t.Errorf("KomboAPIKey = %q, want %q", got.KomboAPIKey.Reveal(), tt.want.Reveal())
			}
			if got.KomboAPIKeyFile != path {
				t.Errorf("KomboAPIKeyFile = %q, want %q", got.KomboAPIKeyFile, path)
			}
		})
	}
}

func TestKeyFileDirectory(t *testing.T) {
	t.Parallel()
	_, err := Load(lookup(map[string]string{"KOMBO_API_KEY_FILE": t.TempDir()}))
	if diff := cmp.Diff(errVars(err), []string{"KOMBO_API_KEY_FILE"}); diff != "" {
		t.Errorf("Load() error %q names (-got +want):\n%s", err, diff)
	}
	if !strings.Contains(fmt.Sprint(err), "is a directory") {
		t.Errorf("Load() error = %q, want it to say the file is a directory", err)
	}
}

func TestBaseURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url      string
		insecure string
		want     string // "" = refused
	}{
		{url: "https://api.kombo.dev/v1", want: "https://api.kombo.dev/v1"},
		{url: "https://api.us.kombo.dev/v1/", want: "https://api.us.kombo.dev/v1"},
		{url: "HTTPS://api.kombo.dev/v1", want: "HTTPS://api.kombo.dev/v1"},
		{url: "http://localhost:8080", want: "http://localhost:8080"},
		{url: "http://LOCALHOST:8080/v1/", want: "http://LOCALHOST:8080/v1"},
		{url: "http://127.0.0.1:9/v1", want: "http://127.0.0.1:9/v1"},
		{url: "http://127.1.2.3/v1", want: "http://127.1.2.3/v1"},
		{url: "http://[::1]:8080/v1", want: "http://[::1]:8080/v1"},
		{url: "http://kombo-fake:8080/v1"},
		{url: "http://10.0.0.1/v1"},
		{url: "http://localhost.example.com/v1"},
		{url: "http://kombo-fake:8080/v1", insecure: "true", want: "http://kombo-fake:8080/v1"},
		{url: "ftp://api.kombo.dev/v1"},
		{url: "ftp://api.kombo.dev/v1", insecure: "true"},
		{url: "api.kombo.dev/v1"},
		{url: "https:///v1"},
		{url: "https://api.kombo.dev/v1?region=us"},
		{url: "https://api.kombo.dev/v1?"},
		{url: "https://api.kombo.dev/v1#x"},
		{url: "https://user:pass@api.kombo.dev/v1"},
	}
	for _, tt := range tests {
		t.Run(tt.url+" insecure="+tt.insecure, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"KOMBO_API_KEY": "k", "KOMBO_BASE_URL": tt.url}
			if tt.insecure != "" {
				env["KOMBO_ALLOW_INSECURE"] = tt.insecure
			}
			c, err := Load(lookup(env))
			if tt.want == "" {
				if diff := cmp.Diff(errVars(err), []string{"KOMBO_BASE_URL"}); diff != "" {
					t.Errorf("Load() error %q names (-got +want):\n%s", err, diff)
				}
				if strings.Contains(fmt.Sprint(err), "pass") {
					t.Errorf("Load() error %q shows the URL's password", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load() error: %v", err)
			}
			if got := c.KomboBaseURL; got != tt.want {
				t.Errorf("KomboBaseURL = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestStreamSubjects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		subjects string
		want     []string // variables named by the error
	}{
		{subjects: "integration.delete.>"},
		{subjects: "integration.>"},
		{subjects: ">"},
		{subjects: "integration.delete.*"},
		{subjects: "*.delete.*"},
		{subjects: "integration.delete.requested, integration.delete.deleted ,integration.delete.failed"},
		{subjects: "integration.delete.requested,integration.delete.*"},
		{subjects: "integration.delete.requested,integration.delete.deleted", want: []string{"STREAM_SUBJECTS"}},
		{subjects: "integration.delete.requested", want: []string{"STREAM_SUBJECTS"}},
		{subjects: "integration.*", want: []string{"STREAM_SUBJECTS"}},
		{subjects: "other.>", want: []string{"STREAM_SUBJECTS"}},
		{subjects: "integration.delete.requested.>,integration.delete.deleted,integration.delete.failed", want: []string{"STREAM_SUBJECTS"}},
	}
	for _, tt := range tests {
		t.Run(tt.subjects, func(t *testing.T) {
			t.Parallel()
			_, err := Load(lookup(map[string]string{"KOMBO_API_KEY": "k", "STREAM_SUBJECTS": tt.subjects}))
			if diff := cmp.Diff(errVars(err), tt.want); diff != "" {
				t.Errorf("Load() error %q names (-got +want):\n%s", err, diff)
			}
		})
	}
}

func TestNATSURLAccepted(t *testing.T) {
	t.Parallel()
	for _, u := range []string{
		"nats://127.0.0.1:4222",
		"nats://a:4222, nats://b:4222 ,nats://c:4222,",
		"tls://nats.example.com",
		"nats.example.com:4222",
		"localhost",
		"ws://a:8080,wss://b",
		"nats://user:secret@a:4222",
		"nats://[::1]:4222",
	} {
		t.Run(u, func(t *testing.T) {
			t.Parallel()
			if _, err := Load(lookup(map[string]string{"KOMBO_API_KEY": "k", "NATS_URL": u})); err != nil {
				t.Errorf("Load() error: %v", err)
			}
		})
	}
}

func TestNATSAuthAccepted(t *testing.T) {
	t.Parallel()
	file := writeFile(t, "x")
	tests := []struct {
		name string
		env  map[string]string
	}{
		{"user and password", map[string]string{"NATS_USER": "u", "NATS_PASSWORD": "p"}},
		{"token", map[string]string{"NATS_TOKEN": "t"}},
		{"creds file", map[string]string{"NATS_CREDS_FILE": file}},
		{"nkey file", map[string]string{"NATS_NKEY_FILE": file}},
		{"tls and token", map[string]string{"NATS_TLS_CA_FILE": file, "NATS_TLS_CERT_FILE": file, "NATS_TLS_KEY_FILE": file, "NATS_TOKEN": "t"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.env["KOMBO_API_KEY"] = "k"
			if _, err := Load(lookup(tt.env)); err != nil {
				t.Errorf("Load() error: %v", err)
			}
		})
	}
}

func TestValidateReportsEverything(t *testing.T) {
	t.Parallel()
	c := &Config{} // every field zero
	got := errVars(c.Validate())
	want := []string{
		"ACK_WAIT", "AUTH_PROBE_INTERVAL", "CONSUMER_NAME", "DELETED_SUBJECT", "DUPLICATE_WINDOW",
		"FAILED_SUBJECT", "HTTP_ADDR", "KOMBO_API_KEY", "KOMBO_BACKOFF_INITIAL", "KOMBO_BACKOFF_MAX",
		"KOMBO_BASE_URL", "KOMBO_MAX_ATTEMPTS", "KOMBO_MAX_CONCURRENCY", "KOMBO_RETRY_MAX_ELAPSED",
		"KOMBO_TIMEOUT", "LEDGER_BUCKET", "LOG_FORMAT", "LOG_LEVEL", "MAX_ACK_PENDING", "MAX_DELIVER", "NATS_URL",
		"PROTECT_BUCKET", "REQUEST_SUBJECT", "SHUTDOWN_TIMEOUT", "STREAM_NAME", "STREAM_REPLICAS", "STREAM_SUBJECTS",
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("Validate() of a zero Config names (-got +want):\n%s", diff)
	}
}

func TestSecretsNeverShow(t *testing.T) {
	t.Parallel()
	const (
		key      = "sk-live-KEY-0123456789"
		password = "PASSWORD-0123456789"
		token    = "TOKEN-0123456789"
		urlPass  = "URLPASS-5555555555"
		urlToken = "URLTOK-9876543210"
	)
	secrets := []string{key, password, token}
	urlSecrets := []string{urlPass, urlToken}
	env := map[string]string{
		"KOMBO_API_KEY": key,
		"NATS_USER":     "u",
		"NATS_PASSWORD": password,
		"NATS_URL":      "nats://u:" + urlPass + "@a:4222,nats://" + urlToken + "@b:4222",
	}
	c, err := Load(lookup(env))
	if err != nil {
		t.Fatalf("Load() error: %v", err)
	}
	c.NATSToken = token // not loadable together with NATS_USER

	var outputs []string
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%t", "%10.3s"} {
		outputs = append(outputs, fmt.Sprintf(format, c), fmt.Sprintf(format, *c))
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	outputs = append(outputs, string(b))
	for _, out := range outputs {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("output shows secret %q:\n%s", s, out)
			}
		}
	}

	// Logs and errors hide the user info of URLs too (fmt and JSON show
	// NATS_URL as it is).
	outputs = nil
	secrets = append(secrets, urlSecrets...)
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("start", "config", c, "value", *c)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("start", "config", c, "value", *c)
	outputs = append(outputs, buf.String())
	if !strings.Contains(buf.String(), `"KOMBO_API_KEY":"[redacted]"`) {
		t.Errorf("slog JSON output lacks the redacted key:\n%s", buf.String())
	}

	// Errors about a key, a password and URLs carrying secrets.
	for _, env := range []map[string]string{
		{"KOMBO_API_KEY": key + " " + key},
		{"KOMBO_API_KEY": key + "\x01"},
		{"KOMBO_API_KEY": key, "KOMBO_API_KEY_FILE": writeFile(t, key)},
		{"KOMBO_API_KEY": key, "NATS_PASSWORD": password},
		{"KOMBO_API_KEY": key, "NATS_URL": "nats://u:" + urlPass + "@a:99999,http://" + urlToken + "@b:4222"},
		{"KOMBO_API_KEY": key, "NATS_URL": "nats://u:" + urlPass + "@a:x:y,nats://" + urlToken + "@:4222"},
		{"KOMBO_API_KEY": key, "KOMBO_BASE_URL": "https://" + urlToken + "@kombo.dev/v1"},
		{"KOMBO_API_KEY": key, "KOMBO_BASE_URL": "https://u:" + urlPass + "@kombo.dev:x/v1"},
		{"KOMBO_API_KEY": key, "KOMBO_BASE_URL": "//u:" + urlPass + "@kombo.dev/v1"},
	} {
		_, err := Load(lookup(env))
		if err == nil {
			t.Errorf("Load() with %d variables: error = nil, want one", len(env))
			continue
		}
		outputs = append(outputs, err.Error())
	}

	for _, out := range outputs {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("output shows secret %q:\n%s", s, out)
			}
		}
	}
}

func TestLogValue(t *testing.T) {
	t.Parallel()
	c := Default()
	c.KomboAPIKey = "k"
	c.NATSURL = "nats://user:pw@a:4222,b:4222,tok@c"
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("start", "config", c)
	var got struct {
		Config map[string]any `json:"config"`
	}
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("%v in %s", err, buf.String())
	}
	for _, name := range Names() {
		if _, ok := got.Config[name]; !ok {
			t.Errorf("logged config lacks %s", name)
		}
	}
	for k, want := range map[string]any{
		"KOMBO_API_KEY":   "[redacted]",
		"NATS_PASSWORD":   "",
		"KOMBO_TIMEOUT":   "30s",
		"STREAM_SUBJECTS": "integration.delete.>",
		"NATS_URL":        "nats://xxxxx@a:4222,b:4222,xxxxx@c",
		"MAX_DELIVER":     float64(-1),
		"NATS_EMBEDDED":   false,
	} {
		if diff := cmp.Diff(got.Config[k], want); diff != "" {
			t.Errorf("logged %s (-got +want):\n%s", k, diff)
		}
	}
}

func TestSecret(t *testing.T) {
	t.Parallel()
	tests := []struct {
		s    Secret
		want string
	}{
		{"hunter2", "[redacted]"},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			t.Parallel()
			if got := tt.s.Reveal(); got != string(tt.s) {
				t.Errorf("Reveal() = %q, want %q", got, string(tt.s))
			}
			if got := tt.s.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
			if got, want := fmt.Sprintf("%#v", tt.s), `config.Secret("`+tt.want+`")`; got != want {
				t.Errorf("%%#v = %s, want %s", got, want)
			}
			if got, _ := tt.s.MarshalText(); string(got) != tt.want {
				t.Errorf("MarshalText() = %q, want %q", got, tt.want)
			}
			got, err := json.Marshal(map[string]Secret{"s": tt.s})
			if err != nil {
				t.Fatal(err)
			}
			if want := `{"s":"` + tt.want + `"}`; string(got) != want {
				t.Errorf("json.Marshal = %s, want %s", got, want)
			}
			if got := tt.s.LogValue().String(); got != tt.want {
				t.Errorf("LogValue() = %q, want %q", got, tt.want)
			}
			for format, want := range map[string]string{
				"%v":   tt.want,
				"%s":   tt.want,
				"%12s": fmt.Sprintf("%12s", tt.want),
				"%q":   fmt.Sprintf("%q", tt.want),
				"%x":   fmt.Sprintf("%x", tt.want),
				"%d":   "%!d(config.Secret=" + tt.want + ")",
				"%t":   "%!t(config.Secret=" + tt.want + ")",
			} {
				if got := fmt.Sprintf(format, tt.s); got != want {
					t.Errorf("Sprintf(%q) = %q, want %q", format, got, want)
				}
			}
		})
	}
}

func TestSlogLevel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		level string
		want  slog.Level
	}{
		{"debug", slog.LevelDebug},
		{"INFO", slog.LevelInfo},
		{"Warn", slog.LevelWarn},
		{"error", slog.LevelError},
		{"nonsense", slog.LevelInfo},
	}
	for _, tt := range tests {
		t.Run(tt.level, func(t *testing.T) {
			t.Parallel()
			c := &Config{LogLevel: tt.level}
			if got := c.SlogLevel(); got != tt.want {
				t.Errorf("SlogLevel() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestVarErrorUnwraps(t *testing.T) {
	t.Parallel()
	_, err := Load(lookup(map[string]string{"KOMBO_API_KEY_FILE": filepath.Join(t.TempDir(), "missing")}))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load() error = %v, want one matching os.ErrNotExist", err)
	}
}

func TestLoadClientNeedsNoKey(t *testing.T) {
	t.Parallel()
	env := map[string]string{"KOMBO_API_KEY": "", "NATS_URL": "nats://127.0.0.1:4333"}
	c, err := LoadClient(lookup(env))
	if err != nil {
		t.Fatalf("LoadClient() = %v, want no error without a key", err)
	}
	if got, want := c.NATSURL, "nats://127.0.0.1:4333"; got != want {
		t.Errorf("NATSURL = %q, want %q", got, want)
	}
	env["MAX_ACK_PENDING"] = "0"
	if _, err := LoadClient(lookup(env)); err == nil || !strings.Contains(err.Error(), "MAX_ACK_PENDING") {
		t.Errorf("LoadClient() = %v, want an error naming MAX_ACK_PENDING", err)
	}
}

func TestNamesListsEveryVariable(t *testing.T) {
	t.Parallel()
	names := Names()
	for _, want := range []string{"KOMBO_API_KEY", "NATS_URL", "SHUTDOWN_TIMEOUT", "LOG_FORMAT"} {
		if !slices.Contains(names, want) {
			t.Errorf("Names() lacks %s", want)
		}
	}
}

// TestRedactURLsOddPasswords checks that a password or token in a URL is hidden whatever
// characters it holds: "/", "?", "#" and "@" (raw or escaped) end the authority of a
// parsed URL, so the user info must end at the last "@" of an entry, and no "//" inside a
// password may be taken for the scheme's.
func TestRedactURLsOddPasswords(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"nats://user:pw@a:4222,b:4222,tok@c", "nats://xxxxx@a:4222,b:4222,xxxxx@c"},
		{"nats://a:4222, nats://b:4222", "nats://a:4222, nats://b:4222"},
		{"https://api.kombo.dev/v1", "https://api.kombo.dev/v1"},
		{"", ""},
		{"nats://user:pa/ss@host:4222", "nats://xxxxx@host:4222"},
		{"nats://user:pa%2Fss@host:4222", "nats://xxxxx@host:4222"},
		{"nats://user:pa?ss@host:4222", "nats://xxxxx@host:4222"},
		{"nats://user:pa#ss@host:4222", "nats://xxxxx@host:4222"},
		{"nats://user:p@ss/w?r#d@host:4222", "nats://xxxxx@host:4222"},
		{"nats://tok/en@host", "nats://xxxxx@host"},
		{"user:pa/ss@host:4222", "xxxxx@host:4222"},
		{"user:pa//ss@host:4222", "xxxxx@host:4222"},
		{"a:4222,tls://user:pa/ss@b:4222", "a:4222,tls://xxxxx@b:4222"},
		{"//u:pa/ss@kombo.dev/v1", "//xxxxx@kombo.dev/v1"},
	}
	for _, tt := range tests {
		if got := RedactURL(tt.in); got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}

	// Whatever a password holds, neither of its halves shows, in redactURLs, in the logged
	// configuration, or in Load's errors.
	const left, right = "PWLEFT7", "PWRIGHT7"
	for _, sep := range []string{"", "/", "//", "%2F", "?", "#", "@", ":", "%", "%zz", " ", "/?#@", "://"} {
		secret := left + sep + right
		for _, form := range []string{
			"nats://user:%s@host:4222", "nats://%s@host:4222", "user:%s@host:4222", "%s@host:4222",
			"a:4222,tls://user:%s@b:4222", "nats://user:%s@host:99999", "wss://%s@host",
		} {
			if sep == "://" && strings.HasPrefix(form, "%s") {
				continue // "PWLEFT7://…" is a URL with scheme PWLEFT7, nothing else
			}
			in := fmt.Sprintf(form, secret)
			outputs := []string{RedactURL(in)}
			c, err := Load(lookup(map[string]string{"KOMBO_API_KEY": "k", "NATS_URL": in}))
			if err != nil {
				outputs = append(outputs, err.Error())
			} else {
				var buf bytes.Buffer
				slog.New(slog.NewJSONHandler(&buf, nil)).Info("start", "config", c)
				outputs = append(outputs, buf.String())
			}
			for _, out := range outputs {
				if strings.Contains(out, left) || strings.Contains(out, right) {
					t.Errorf("NATS_URL %q shows its password:\n%s", in, out)
				}
			}
		}
	}
}

// TestEveryVariableDecodes checks that decode knows the type of every field: one it does
// not know panics as soon as its variable is set.
func TestFuseOff(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"off", "OFF", " off "} {
		c, err := Load(lookup(map[string]string{"KOMBO_API_KEY": "k", "DELETE_FUSE": v}))
		if err != nil || !c.DeleteFuse.Off() || c.DeleteFuse.String() != "off" {
			t.Errorf("DELETE_FUSE=%q: fuse %v, error %v; want off", v, c.DeleteFuse, err)
		}
	}
}

func TestEveryVariableDecodes(t *testing.T) {
	t.Parallel()
	for _, name := range Names() {
		for _, value := range []string{"", "x"} {
			_, _ = Load(lookup(map[string]string{name: value}))
		}
	}
}
