package config

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
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
