package faults

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kombo-ops/integration-deleter/internal/testkit"
	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

// TestBadConfig runs the binary with one bad variable at a time: it exits 2 before anything
// connects (NATS_URL points at a closed port, so a start that went on would exit 1 instead),
// and its message names the variable.
func TestBadConfig(t *testing.T) {
	suite(t)
	dir := t.TempDir()
	unreadable := filepath.Join(dir, "unreadable-key")
	if err := os.WriteFile(unreadable, []byte(apiKey), 0o000); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty-key")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	closed := "nats://127.0.0.1:" + strconv.Itoa(testkit.FreePort(t))
	base := map[string]string{"KOMBO_API_KEY": apiKey, "NATS_URL": closed, "HTTP_ADDR": "127.0.0.1:0"}

	for _, tc := range []struct {
		name, value string
		also        map[string]string // set beside it
		names       string            // the variable the message must name, when not name
	}{
		{"KOMBO_API_KEY", "", nil, ""},
		{"KOMBO_API_KEY_FILE", filepath.Join(dir, "missing"), map[string]string{"KOMBO_API_KEY": ""}, ""},
		{"KOMBO_API_KEY_FILE", dir, map[string]string{"KOMBO_API_KEY": ""}, ""},
		{"KOMBO_API_KEY_FILE", empty, map[string]string{"KOMBO_API_KEY": ""}, ""},
		{"KOMBO_API_KEY_FILE", empty, nil, ""}, // together with KOMBO_API_KEY
		{"KOMBO_BASE_URL", "http://kombo.example/v1", nil, ""},
		{"KOMBO_BASE_URL", "ftp://api.kombo.dev/v1", nil, ""},
		{"KOMBO_BASE_URL", "api.kombo.dev/v1", nil, ""},
		{"KOMBO_BASE_URL", "https://api.kombo.dev/v1?region=eu", nil, ""},
		{"KOMBO_ALLOW_INSECURE", "sometimes", nil, ""},
		{"KOMBO_TIMEOUT", "0s", nil, ""},
		{"KOMBO_TIMEOUT", "30", nil, ""},
		{"KOMBO_MAX_CONCURRENCY", "0", nil, ""},
		{"KOMBO_MAX_CONCURRENCY", "100000", nil, ""},
		{"KOMBO_MAX_CONCURRENCY", "eight", nil, ""},
		{"KOMBO_MAX_ATTEMPTS", "0", nil, ""},
		{"KOMBO_RETRY_MAX_ELAPSED", "-1m", nil, ""},
		{"KOMBO_BACKOFF_INITIAL", "0s", nil, ""},
		{"KOMBO_BACKOFF_INITIAL", "2m", nil, ""},
		{"KOMBO_BACKOFF_MAX", "soon", nil, ""},
		{"AUTH_PROBE_INTERVAL", "0s", nil, ""},
		{"NATS_URL", "", nil, ""},
		{"NATS_URL", "http://127.0.0.1:4222", nil, ""},
		{"NATS_URL", "nats://127.0.0.1:99999", nil, ""},
		{"NATS_CREDS_FILE", filepath.Join(dir, "missing.creds"), nil, ""},
		{"NATS_NKEY_FILE", filepath.Join(dir, "missing.nk"), nil, ""},
		{"NATS_USER", "deleter", nil, ""},
		{"NATS_PASSWORD", "secret-without-user", nil, ""},
		{"NATS_TOKEN", "tok", map[string]string{"NATS_USER": "u", "NATS_PASSWORD": "p"}, ""},
		{"NATS_TLS_CA_FILE", filepath.Join(dir, "missing-ca.pem"), nil, ""},
		{"NATS_TLS_CERT_FILE", filepath.Join(dir, "missing.pem"), nil, ""},
		{"NATS_TLS_KEY_FILE", filepath.Join(dir, "missing-key.pem"), nil, ""},
		{"NATS_EMBEDDED", "maybe", nil, ""},
		{"NATS_EMBEDDED_DIR", empty, map[string]string{"NATS_EMBEDDED": "true"}, ""},
		{"JETSTREAM_PROVISION", "perhaps", nil, ""},
		{"REQUEST_SUBJECT", "integration.delete.*", nil, ""},
		{"REQUEST_SUBJECT", "", nil, ""},
		{"DELETED_SUBJECT", "integration.delete.requested", nil, ""},
		{"FAILED_SUBJECT", "integration delete failed", nil, ""},
		{"STREAM_NAME", "INTEGRATION.DELETE", nil, ""},
		{"STREAM_SUBJECTS", "other.>", nil, ""},
		{"STREAM_SUBJECTS", "", nil, ""},
		{"CONSUMER_NAME", "integration deleter", nil, ""},
		{"STREAM_REPLICAS", "0", nil, ""},
		{"STREAM_REPLICAS", "7", nil, ""},
		{"STREAM_MAX_AGE", "-1h", nil, ""},
		{"STREAM_MAX_AGE", "1m", nil, ""},
		{"ACK_WAIT", "100ms", nil, ""},
		{"MAX_DELIVER", "0", nil, ""},
		{"DUPLICATE_WINDOW", "1m", nil, ""},
		{"DUPLICATE_WINDOW", "0s", nil, ""},
		{"MAX_ACK_PENDING", "0", nil, ""},
		{"HTTP_ADDR", "8080", nil, ""},
		{"HTTP_ADDR", ":http-alt-x", nil, ""},
		{"SHUTDOWN_TIMEOUT", "0s", nil, ""},
		{"LOG_LEVEL", "verbose", nil, ""},
		{"LOG_FORMAT", "xml", nil, ""},
	} {
		t.Run(tc.name+"="+tc.value, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			for k, v := range tc.also {
				env[k] = v
			}
			env[tc.name] = tc.value
			code, out := runToExit(t, env, 30*time.Second)
			if code != 2 {
				t.Errorf("exit code %d, want 2; output:\n%s", code, out)
			}
			names := tc.names
			if names == "" {
				names = tc.name
			}
			if !strings.Contains(out, names) {
				t.Errorf("the message does not name %s:\n%s", names, out)
			}
		})
	}

	t.Run("KOMBO_API_KEY_FILE unreadable", func(t *testing.T) {
		path := unreadable
		if os.Geteuid() == 0 {
			path = t.TempDir() // root reads any file, but no one reads a directory as one
		}
		env := map[string]string{"KOMBO_API_KEY_FILE": path, "NATS_URL": closed, "HTTP_ADDR": "127.0.0.1:0"}
		code, out := runToExit(t, env, 30*time.Second)
		if code != 2 || !strings.Contains(out, "KOMBO_API_KEY_FILE") {
			t.Errorf("exit code %d, want 2 naming KOMBO_API_KEY_FILE; output:\n%s", code, out)
		}
	})
}

// TestConfigAccepted: a key file with a trailing newline is trimmed (Kombo accepts the key),
// and an http:// base URL outside loopback is accepted with KOMBO_ALLOW_INSECURE=true.
func TestConfigAccepted(t *testing.T) {
	w := newWorld(t, kombotest.Options{}, nil)
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte(apiKey+"\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := w.start("daemon", map[string]string{"KOMBO_API_KEY": "", "KOMBO_API_KEY_FILE": keyFile})
	reqs := requests("keyfile", 3)
	publish(t, w.js, reqs)
	tl := waitDone(t, w.js, ids(reqs), 30*time.Second)
	checkTally(t, tl, len(reqs))
	requireAllDeleted(t, tl)
	for _, c := range w.fake.Calls() {
		if c.Status == http.StatusUnauthorized {
			t.Errorf("Kombo rejected the key read from a file with a trailing newline: %s %s", c.Method, c.Path)
		}
	}
	d.kill()

	// 192.0.2.1 (TEST-NET-1) is not loopback; nothing needs to answer there for the start.
	insecure := w.env(map[string]string{"KOMBO_BASE_URL": "http://192.0.2.1:9/v1", "KOMBO_ALLOW_INSECURE": "true",
		"KOMBO_TIMEOUT": "200ms"})
	d = startDaemon(t, "insecure", insecure)
	d.waitReady(30 * time.Second)
}
