package daemon

import (
	"io"
	"log/slog"
	"time"

	"github.com/lmittmann/tint"

	"github.com/kombo-ops/integration-deleter/config"
)

// NewLogger returns the logger LOG_FORMAT and LOG_LEVEL ask for: JSON lines, or colored
// text for humans (tint).
func NewLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	if cfg.LogFormat == "text" {
		return slog.New(tint.NewTextHandler(w, &tint.Options{Level: cfg.SlogLevel(), TimeFormat: time.TimeOnly}))
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: cfg.SlogLevel()}))
}
