package config

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Fuse is DELETE_FUSE: at most Calls DELETE calls within any window of length
// Window. Calls 0 is "off".
type Fuse struct {
	Calls  int
	Window time.Duration
}

// Off reports whether the fuse is disabled.
func (f Fuse) Off() bool { return f.Calls == 0 }

// Decode parses "N/DURATION" (1000/1h) or "off" (envconfig.Decoder).
func (f *Fuse) Decode(s string) error {
	if strings.EqualFold(strings.TrimSpace(s), "off") {
		*f = Fuse{}
		return nil
	}
	errWant := errors.New("want N/DURATION such as 1000/1h (at most N DELETE calls within any hour), or off")
	n, w, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return errWant
	}
	calls, err := strconv.Atoi(n)
	if err != nil {
		return errWant
	}
	window, err := time.ParseDuration(w)
	if err != nil {
		return errWant
	}
	switch {
	case calls < 1:
		return fmt.Errorf("want at least 1 call (or off), got %d", calls)
	case window < time.Second:
		return fmt.Errorf("want a window of at least 1s, got %s", window)
	}
	*f = Fuse{Calls: calls, Window: window}
	return nil
}

// String returns the fuse as DELETE_FUSE takes it.
func (f Fuse) String() string {
	if f.Off() {
		return "off"
	}
	return strconv.Itoa(f.Calls) + "/" + f.Window.String()
}

// LogValue logs the fuse as DELETE_FUSE takes it.
func (f Fuse) LogValue() slog.Value { return slog.StringValue(f.String()) }
