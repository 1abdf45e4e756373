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
