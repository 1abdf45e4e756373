package daemon

import (
	"strings"

	"github.com/kombo-ops/integration-deleter/config"
)

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
		msg = strings.ReplaceAll(msg, entry, config.RedactURL(entry))
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
