package config

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
)

// redacted is what a non-empty Secret prints as.
const redacted = "[redacted]"

// Secret is a string that never prints: String, GoString, Format (every fmt
// verb), MarshalText, MarshalJSON and LogValue give "[redacted]", so a Config holding secrets can
// be printed, logged or encoded whole. An empty Secret prints as "" so that a
// dump still shows whether the secret is set. Reveal returns the value.
type Secret string

// Reveal returns the secret's value. Call it only where the value is used.
func (s Secret) Reveal() string { return string(s) }

// String returns "[redacted]", or "" when s is empty.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString returns `config.Secret("[redacted]")` (for %#v), with "" when s is
// empty.
func (s Secret) GoString() string { return `config.Secret("` + s.String() + `")` }

// Format writes "[redacted]" (or "") for every verb, GoString for %#v: the
// value never reaches fmt, not even through a wrong verb such as %d.
func (s Secret) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'v' && f.Flag('#'):
		io.WriteString(f, s.GoString())
	case strings.ContainsRune("vsqxX", verb):
		fmt.Fprintf(f, fmt.FormatString(f, verb), s.String())
	default:
		fmt.Fprintf(f, "%%!%c(config.Secret=%s)", verb, s.String())
	}
}

// MarshalText returns "[redacted]", or "" when s is empty.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// MarshalJSON returns the JSON string "[redacted]", or "" when s is empty.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// LogValue returns "[redacted]", or "" when s is empty (slog.LogValuer).
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

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
