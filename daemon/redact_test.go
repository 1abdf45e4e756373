package daemon

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/kombo-ops/integration-deleter/config"
)

// TestConnectErrorHidesPassword: the error of a failed connection names the URL without
// its password, even where nats.go or url.Parse quote the URL whole.
func TestConnectErrorHidesPassword(t *testing.T) {
	for _, u := range []string{
		"nats://user:pa/ss@127.0.0.1:1",
		"nats://user:s3cr%zzet@127.0.0.1:1",
		"nats://tok:en/with?odd#chars@127.0.0.1:1",
	} {
		_, _, err := Connect(u, &config.Config{}, slog.New(slog.DiscardHandler))
		if err == nil {
			t.Fatalf("Connect(%q) = nil error, want one", u)
		}
		rest := u[len("nats://"):]
		secret := rest[:strings.LastIndex(rest, "@")]
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "pa/ss") {
			t.Errorf("Connect(%q) error %q shows the user info", u, err)
		}
	}
}
