package faults

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/kombo-ops/integration-deleter/internal/testkit"
	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

// noSecrets fails t for each secret found in text (named where).
func noSecrets(t *testing.T, where, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if i := strings.Index(text, s); i >= 0 {
			from, to := max(0, i-120), min(len(text), i+len(s)+40)
			t.Errorf("a secret appears in %s: …%s…", where, text[from:to])
		}
	}
}

// TestSecretsNeverLeak runs the daemon at LOG_LEVEL=debug with a Kombo key and NATS user and
// password, through the paths that log most: errors, retries, timeouts, a rejected key, a
// redirect and an error body that echo the key, a handler panic, and a shutdown. Neither
// secret appears in its output, its metrics or HTTP answers, or the results it stores.
func TestSecretsNeverLeak(t *testing.T) {
	suite(t)
	const natsUser, natsPassword = "deleter", "nats-pw-Xk29sLq7Vb3m"
	w := newWorld(t, kombotest.Options{Latency: 2 * time.Millisecond, FailureRate: 0.3},
		func(o *server.Options) { o.Username, o.Password = natsUser, natsPassword },
		nats.UserInfo(natsUser, natsPassword))
	w.fake.Script("personio:echo-body", kombotest.Raw(http.StatusBadRequest, "text/plain",
		"bad request; you sent Authorization: Bearer "+apiKey))
	w.fake.Script("personio:echo-json", kombotest.Answer{Status: http.StatusUnprocessableEntity, Code: "PLATFORM.INPUT_INVALID",
		Message: "key " + apiKey + " is not allowed here", Title: "Bearer " + apiKey, LogURL: "https://log.example/?k=" + apiKey})
	// A redirect to the fake itself: a client following it would send GET /v1/integrations/followed.
	w.fake.Script("personio:redirect", kombotest.Redirect(w.komboURL+"/integrations/followed?key="+apiKey))
	w.fake.Script("personio:rejected", kombotest.AuthInvalid())
	w.fake.Script("personio:hang", kombotest.Answer{Hang: true})
	d := w.start("daemon", map[string]string{
		"LOG_LEVEL": "debug", "NATS_USER": natsUser, "NATS_PASSWORD": natsPassword,
		"KOMBO_TIMEOUT": "300ms", "AUTH_PROBE_INTERVAL": "200ms",
	})

	reqs := requests("secret", 20)
	for _, id := range []string{"personio:echo-body", "personio:echo-json", "personio:redirect", "personio:rejected",
		"personio:hang", "panic:secret"} {
		reqs = append(reqs, request{ID: "secret-" + id, IntegrationID: id})
	}
	publish(t, w.js, reqs)
	tl := waitDone(t, w.js, ids(reqs), time.Minute)
	checkTally(t, tl, len(reqs))
	for _, id := range []string{"personio:echo-body", "personio:echo-json", "personio:redirect"} {
		if r := tl.byID["secret-"+id]; len(r) != 1 || r[0].Status != "failed" {
			t.Errorf("%s: got %v, want one failed result", id, r)
		}
	}
	for _, rs := range tl.byID {
		for _, r := range rs {
			noSecrets(t, "a stored result", string(r.raw), apiKey, natsPassword)
		}
	}
	for _, c := range w.fake.Calls() {
		if strings.Contains(c.Path, "followed") {
			t.Errorf("the daemon followed a redirect: %s %s", c.Method, c.RawURI)
		}
	}
	for _, path := range []string{"/metrics", "/readyz", "/healthz", "/debug/pprof/", "/debug/pprof/cmdline", "/debug/vars", "/debug"} {
		code, body := d.get(path)
		if strings.HasPrefix(path, "/debug") && code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404 (no debug endpoint is served)", path, code)
		}
		noSecrets(t, "GET "+path, body, apiKey, natsPassword)
	}
	d.signal(syscall.SIGTERM)
	if code := d.wait(15 * time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	out := d.out.String()
	noSecrets(t, "the daemon's output", out, apiKey, natsPassword, "Bearer "+apiKey[:8])
	for _, want := range []string{`"KOMBO_API_KEY":"[redacted]"`, `"NATS_PASSWORD":"[redacted]"`, "panic while handling a request",
		"Kombo rejects the API key", "retrying"} {
		if !strings.Contains(out, want) {
			t.Errorf("the output has no %s: the test did not go through the path it means to", want)
		}
	}
}

// TestSecretsNotInErrors: configuration errors (exit 2) and connection errors (exit 1) name
// what is wrong, never a secret.
func TestSecretsNotInErrors(t *testing.T) {
	suite(t)
	const (
		key      = "ks_live_cfgErr5Hq8Zt1"
		password = "nats-pw-cfgErr7Yt2Lp"
		token    = "nats-token-cfgErr3Rw9"
		urlPass  = "url-pw-cfgErr4Mn6"
	)
	closed := testkit.FreePort(t)
	secrets := []string{key, password, token, urlPass}
	for _, tc := range []struct {
		name     string
		env      map[string]string
		wantCode int
		wantOut  []string
	}{
		{"bad values beside secrets", map[string]string{
			"KOMBO_API_KEY": key, "NATS_USER": "u", "NATS_PASSWORD": password, "KOMBO_TIMEOUT": "banana",
			"KOMBO_MAX_CONCURRENCY": "0", "LOG_LEVEL": "debug",
		}, 2, []string{"KOMBO_TIMEOUT", "KOMBO_MAX_CONCURRENCY"}},
		{"two NATS auth methods", map[string]string{
			"KOMBO_API_KEY": key, "NATS_USER": "u", "NATS_PASSWORD": password, "NATS_TOKEN": token, "LOG_LEVEL": "debug",
		}, 2, []string{"NATS_TOKEN"}},
		{"key with whitespace", map[string]string{"KOMBO_API_KEY": key + " " + key, "LOG_LEVEL": "debug"},
			2, []string{"KOMBO_API_KEY"}},
		{"base URL with user info", map[string]string{
			"KOMBO_API_KEY": key, "KOMBO_BASE_URL": "https://admin:" + urlPass + "@api.kombo.dev/v1", "LOG_LEVEL": "debug",
		}, 2, []string{"KOMBO_BASE_URL"}},
		{"insecure base URL with user info", map[string]string{
			"KOMBO_API_KEY": key, "KOMBO_BASE_URL": "http://admin:" + urlPass + "@kombo.example/v1", "LOG_LEVEL": "debug",
		}, 2, []string{"KOMBO_BASE_URL"}},
		{"NATS URL with password, unreachable", map[string]string{
			"KOMBO_API_KEY": key, "NATS_URL": fmt.Sprintf("nats://admin:%s@127.0.0.1:%d", urlPass, closed),
			"HTTP_ADDR": "127.0.0.1:0", "LOG_LEVEL": "debug",
		}, 1, []string{"NATS"}},
		{"NATS token, unreachable", map[string]string{
			"KOMBO_API_KEY": key, "NATS_TOKEN": token, "NATS_URL": fmt.Sprintf("nats://127.0.0.1:%d", closed),
			"HTTP_ADDR": "127.0.0.1:0", "LOG_LEVEL": "debug",
		}, 1, []string{"NATS"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runToExit(t, tc.env, 30*time.Second)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d; output:\n%s", code, tc.wantCode, out)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("the output does not name %s:\n%s", w, out)
				}
			}
			noSecrets(t, "the output", out, secrets...)
		})
	}
}

// TestNATSAuth: against a NATS server that requires user/password or a token, the daemon
// connects and works with the right credentials, and exits 1 with a clear message (and no
// secret) with wrong ones.
func TestNATSAuth(t *testing.T) {
	suite(t)
	const user, password, token = "deleter", "nats-pw-auth8Ge4Wq", "nats-token-auth2Jc7Np"
	for _, tc := range []struct {
		name   string
		server func(*server.Options)
		client nats.Option
		right  map[string]string
		wrong  map[string]string
	}{
		{"user and password", func(o *server.Options) { o.Username, o.Password = user, password }, nats.UserInfo(user, password),
			map[string]string{"NATS_USER": user, "NATS_PASSWORD": password, "LOG_LEVEL": "debug"},
			map[string]string{"NATS_USER": user, "NATS_PASSWORD": password + "-wrong", "LOG_LEVEL": "debug"}},
		{"token", func(o *server.Options) { o.Authorization = token }, nats.Token(token),
			map[string]string{"NATS_TOKEN": token, "LOG_LEVEL": "debug"},
			map[string]string{"NATS_TOKEN": token + "-wrong", "LOG_LEVEL": "debug"}},
		{"no credentials", func(o *server.Options) { o.Username, o.Password = user, password }, nats.UserInfo(user, password),
			map[string]string{"NATS_USER": user, "NATS_PASSWORD": password},
			map[string]string{"LOG_LEVEL": "debug"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, kombotest.Options{}, tc.server, tc.client)
			d := w.start("daemon", tc.right)
			reqs := requests("auth", 5)
			publish(t, w.js, reqs)
			tl := waitDone(t, w.js, ids(reqs), 30*time.Second)
			checkTally(t, tl, len(reqs))
			requireAllDeleted(t, tl)
			_, metrics := d.get("/metrics")
			noSecrets(t, "/metrics", metrics, password, token)
			d.signal(syscall.SIGTERM)
			if code := d.wait(15 * time.Second); code != 0 {
				t.Errorf("exit code %d after SIGTERM, want 0", code)
			}

			code, out := runToExit(t, w.env(tc.wrong), 30*time.Second)
			if code != 1 {
				t.Errorf("with wrong credentials: exit code %d, want 1; output:\n%s", code, out)
			}
			if !strings.Contains(strings.ToLower(out), "authorization") || !strings.Contains(out, "NATS") {
				t.Errorf("with wrong credentials the output does not say NATS refused the authorization:\n%s", out)
			}
			noSecrets(t, "the output", d.out.String()+out, password, token)
		})
	}
}

// TestNATSTLS: against a NATS server that requires TLS and a client certificate, the daemon
// connects with the right CA and certificate, and exits 1 with a clear message when its CA
// does not verify the server or it has no client certificate.
func TestNATSTLS(t *testing.T) {
	suite(t)
	pki := newPKI(t)
	w := newWorld(t, kombotest.Options{}, func(o *server.Options) {
		o.TLS, o.TLSVerify, o.TLSTimeout = true, true, 5
		o.TLSConfig = pki.serverTLS
	}, nats.RootCAs(pki.caFile), nats.ClientCert(pki.clientCert, pki.clientKey))
	right := map[string]string{
		"NATS_TLS_CA_FILE": pki.caFile, "NATS_TLS_CERT_FILE": pki.clientCert, "NATS_TLS_KEY_FILE": pki.clientKey,
	}
	d := w.start("daemon", right)
	reqs := requests("tls", 5)
	publish(t, w.js, reqs)
	tl := waitDone(t, w.js, ids(reqs), 30*time.Second)
	checkTally(t, tl, len(reqs))
	requireAllDeleted(t, tl)
	if !strings.Contains(d.out.String(), "connected to NATS") {
		t.Errorf("the daemon did not log its connection")
	}
	d.signal(syscall.SIGTERM)
	if code := d.wait(15 * time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}

	for _, tc := range []struct {
		name string
		env  map[string]string
		want []string // in the output, lower case
	}{
		{"CA that does not verify the server", map[string]string{
			"NATS_TLS_CA_FILE": pki.otherCAFile, "NATS_TLS_CERT_FILE": pki.clientCert, "NATS_TLS_KEY_FILE": pki.clientKey,
		}, []string{"nats", "certificate"}},
		{"system roots only", map[string]string{
			"NATS_TLS_CERT_FILE": pki.clientCert, "NATS_TLS_KEY_FILE": pki.clientKey,
		}, []string{"nats", "certificate"}},
		{"no client certificate", map[string]string{"NATS_TLS_CA_FILE": pki.caFile}, []string{"nats"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runToExit(t, w.env(tc.env), 30*time.Second)
			if code != 1 {
				t.Errorf("exit code %d, want 1; output:\n%s", code, out)
			}
			for _, s := range tc.want {
				if !strings.Contains(strings.ToLower(out), s) {
					t.Errorf("the output does not mention %q:\n%s", s, out)
				}
			}
			t.Logf("output: %s", lastLine(out))
		})
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// pki is a CA with a server certificate for 127.0.0.1 and a client certificate, and another
// CA that signed neither, all as PEM files.
type pki struct {
	caFile, otherCAFile   string
	clientCert, clientKey string
	serverTLS             *tls.Config
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	ca, caKey := newCA(t, "faults CA")
	other, _ := newCA(t, "some other CA")
	serverDER, serverKey := issue(t, ca, caKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "nats"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	clientDER, clientKey := issue(t, ca, caKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "integration-deleter"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	p := &pki{
		caFile:      writePEM(t, dir, "ca.pem", "CERTIFICATE", ca.Raw),
		otherCAFile: writePEM(t, dir, "other-ca.pem", "CERTIFICATE", other.Raw),
		clientCert:  writePEM(t, dir, "client.pem", "CERTIFICATE", clientDER),
		clientKey:   writePEM(t, dir, "client-key.pem", "EC PRIVATE KEY", marshalKey(t, clientKey)),
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	p.serverTLS = &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{serverDER}, PrivateKey: serverKey}},
		ClientCAs:    pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
	}
	return p
}

func newCA(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

func issue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, tmpl *x509.Certificate) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

func marshalKey(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRedirectNeverFollowed: a 3xx from Kombo (or a proxy in front of it) is never followed,
// whatever its Location, and the request fails at once with HTTP.<status> after one call.
func TestRedirectNeverFollowed(t *testing.T) {
	w := newWorld(t, kombotest.Options{}, nil)
	cases := map[string]kombotest.Answer{
		"personio:302-to-self":       kombotest.Redirect(w.komboURL + "/integrations/followed"),
		"personio:307-to-us":         {Status: http.StatusTemporaryRedirect, Header: http.Header{"Location": {"https://api.us.kombo.dev/v1/integrations/x"}}},
		"personio:308-bad-location":  {Status: http.StatusPermanentRedirect, Header: http.Header{"Location": {"%zz"}}},
		"personio:301-no-location":   {Status: http.StatusMovedPermanently},
		"personio:303-relative-path": {Status: http.StatusSeeOther, Header: http.Header{"Location": {"../../check-api-key"}}},
	}
	var reqs []request
	for id, a := range cases {
		w.fake.Script(id, a)
		reqs = append(reqs, request{ID: "redirect-" + id, IntegrationID: id})
	}
	w.start("daemon", map[string]string{"KOMBO_MAX_ATTEMPTS": "3"})
	publish(t, w.js, reqs)
	tl := waitDone(t, w.js, ids(reqs), time.Minute)
	checkTally(t, tl, len(reqs))
	for _, q := range reqs {
		rs := tl.byID[q.ID]
		if len(rs) != 1 {
			continue
		}
		want := fmt.Sprintf("HTTP.%d", cases[q.IntegrationID].Status)
		if r := rs[0]; r.Status != "failed" || r.Code() != want || r.Attempts != 1 {
			t.Errorf("%s: got %s, want failed %s after 1 attempt", q.IntegrationID, r.raw, want)
		}
		if n := len(w.fake.CallsFor(q.IntegrationID)); n != 1 {
			t.Errorf("%s: Kombo got %d DELETEs, want 1", q.IntegrationID, n)
		}
	}
	keyChecks := 0
	for _, c := range w.fake.Calls() {
		switch {
		case c.Method == http.MethodDelete:
		case c.Method == http.MethodGet && c.Path == "/v1/check-api-key":
			keyChecks++
		default:
			t.Errorf("a redirect was followed: %s %s", c.Method, c.RawURI)
		}
	}
	if keyChecks != 1 {
		t.Errorf("%d GET /check-api-key, want 1 (the check at start): a redirect to it was followed", keyChecks)
	}
}
