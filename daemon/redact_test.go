package daemon

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/kombo-ops/integration-deleter/config"
)

// TestRedactURL checks that the NATS URLs in the daemon's errors hide a password or token
// whatever characters it holds ("/", "?", "#" and "@", raw or escaped, end the authority of
// a parsed URL or make it unparsable), also in entries without a scheme, and that ordinary
// URLs read as before.
func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"nats://user:pw@a:4222", "nats://redacted@a:4222"},
		{"nats://a:4222, nats://tok@b:4222", "nats://a:4222,nats://redacted@b:4222"},
		{"a:4222, b:4222", "a:4222, b:4222"},
		{"", ""},
		{"nats://user:pa/ss@host:4222", "nats://redacted@host:4222"},
		{"nats://user:pa%2Fss@host:4222", "nats://redacted@host:4222"},
		{"nats://user:pa?ss@host:4222", "nats://redacted@host:4222"},
		{"nats://user:pa#ss@host:4222", "nats://redacted@host:4222"},
		{"nats://user:12/ss@host:4222", "nats://redacted@host:4222"},
		{"nats://us@er:12/ss@host:4222", "nats://redacted@host:4222"},
		{"nats://user:pa%zzss@host", "nats://redacted@host"},
		{"nats://tok/en@host", "nats://redacted@host"},
		{"user:pw@host:4222", "redacted@host:4222"},
		{"tok@host:4222", "redacted@host:4222"},
		{"nats://a:4222,user:pa/ss@b:4222", "nats://a:4222,redacted@b:4222"},
	}
	for _, tt := range tests {
		if got := redactURL(tt.in); got != tt.want {
			t.Errorf("redactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}

	const left, right = "PWLEFT7", "PWRIGHT7"
	for _, sep := range []string{"", "/", "//", "%2F", "?", "#", "@", ":", "%", "%zz", " ", "/?#@", "://", "12/"} {
		secret := left + sep + right
		for _, form := range []string{
			"nats://user:%s@host:4222", "nats://%s@host:4222", "user:%s@host:4222", "%s@host:4222",
			"nats://a:4222,tls://user:%s@b:4222", "ws://%s@host", "nats://user:12%s@host:4222",
		} {
			if sep == "://" && strings.HasPrefix(form, "%s") {
				continue // "PWLEFT7://…" is a URL with scheme PWLEFT7, nothing else
			}
			in := fmt.Sprintf(form, secret)
			if out := redactURL(in); strings.Contains(out, left) || strings.Contains(out, right) {
				t.Errorf("redactURL(%q) = %q shows the password", in, out)
			}
		}
	}
}

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
