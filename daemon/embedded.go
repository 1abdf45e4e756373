package daemon

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Embedded is an in-process NATS server with JetStream, for local use and demos.
type Embedded struct {
	srv     *server.Server
	tempDir string
}

// StartEmbedded starts a JetStream server listening on the host and port of the first
// server in natsURL (port -1 or 0: a free one), storing under dir (""; a temporary
// directory removed by Shutdown).
func StartEmbedded(natsURL, dir string, log *slog.Logger) (*Embedded, error) {
	host, port, err := hostPort(natsURL)
	if err != nil {
		return nil, fmt.Errorf("daemon: embedded NATS: NATS_URL: %w", err)
	}
	e := &Embedded{}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "integration-deleter-nats-"); err != nil {
			return nil, fmt.Errorf("daemon: embedded NATS: %w", err)
		}
		e.tempDir = dir
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "integration-deleter-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		e.removeTemp()
		return nil, fmt.Errorf("daemon: embedded NATS: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		e.removeTemp()
		return nil, fmt.Errorf("daemon: embedded NATS on %s:%d did not start (is the port in use?)", host, port)
	}
	e.srv = srv
	log.Info("embedded NATS server started", "url", srv.ClientURL(), "store_dir", dir)
	return e, nil
}

// ClientURL is where clients connect.
func (e *Embedded) ClientURL() string { return e.srv.ClientURL() }

// Shutdown stops the server and removes a temporary store.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	e.removeTemp()
}

func (e *Embedded) removeTemp() {
	if e.tempDir != "" {
		_ = os.RemoveAll(e.tempDir)
	}
}

// hostPort returns the host and port of the first server in a NATS_URL list.
func hostPort(natsURL string) (string, int, error) {
	first := strings.TrimSpace(strings.Split(natsURL, ",")[0])
	if !strings.Contains(first, "://") {
		first = "nats://" + first
	}
	u, err := url.Parse(first)
	if err != nil {
		return "", 0, redactErr(natsURL, err)
	}
	host, portStr, err := net.SplitHostPort(u.Host)
	if err != nil {
		return u.Hostname(), 4222, nil //nolint:nilerr // no port: the default
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return "", 0, redactErr(natsURL, fmt.Errorf("port %q: %w", portStr, err))
	}
	if port == 0 {
		port = -1
	}
	return host, port, nil
}

// redactURL hides passwords and tokens in a list of NATS URLs. A password may hold
// "/", "?", "#" or "@", which end the authority of a parsed URL early (or make it
// unparsable), and an entry may have no scheme; so unless url.Parse put the entry's
// every "@" in its user info, everything from the scheme's "//" (or the start of the
// entry) to its last "@" is hidden.
func redactURL(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if !strings.Contains(p, "@") {
			continue // no user info
		}
		if u, err := url.Parse(p); err == nil && u.User != nil &&
			!strings.Contains(u.Opaque+u.Path+u.RawPath+u.RawQuery+u.Fragment+u.RawFragment, "@") {
			u.User = url.User("redacted")
			parts[i] = u.String()
			continue
		}
		at := strings.LastIndex(p, "@")
		parts[i] = p[:min(authorityStart(p), at)] + "redacted" + p[at:]
	}
	return strings.Join(parts, ",")
}

// authorityStart returns where the authority of the URL e begins: after "scheme://" or
// "//" at its start, else 0. A "//" further on may be part of a password, so only a
// scheme made of scheme characters (RFC 3986) counts.
func authorityStart(e string) int {
	if strings.HasPrefix(e, "//") {
		return len("//")
	}
	for i := 0; i < len(e); i++ {
		c := e[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		case i > 0 && strings.HasPrefix(e[i:], "://"):
			return i + len("://")
		default:
			return 0
		}
	}
	return 0
}

// redactedError is an error whose text had the passwords of a URL list taken out.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redactErr returns err with every entry of the URL list (and any password in it) in its
// text replaced by the redacted entry: errors from url.Parse and nats.Connect quote the
// URL whole.
func redactErr(list string, err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for entry := range strings.SplitSeq(list, ",") {
		if entry = strings.TrimSpace(entry); entry == "" {
			continue
		}
		msg = strings.ReplaceAll(msg, entry, redactURL(entry))
		// The user info alone, as a parser may quote a part of the URL.
		rest := entry
		if i := strings.Index(rest, "://"); i >= 0 {
			rest = rest[i+3:]
		}
		if at := strings.LastIndex(rest, "@"); at > 0 {
			msg = strings.ReplaceAll(msg, rest[:at], "xxxxx")
		}
	}
	return &redactedError{msg: msg, err: err}
}
