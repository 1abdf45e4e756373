package kombo_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/kombo-ops/integration-deleter/kombo"
)

func ExampleClient_DeleteIntegration() {
	// A stand-in for Kombo that knows no integration.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"status":"error","error":{"code":"PLATFORM.INTEGRATION_NOT_FOUND",`+
			`"title":"Integration not found","message":"No integration with this ID exists.","log_url":null}}`)
	}))
	defer srv.Close()

	c, err := kombo.New(kombo.Options{
		BaseURL:   srv.URL + "/v1",
		APIKey:    "ks_dev_example",
		UserAgent: "integration-deleter/1.0.0",
		Timeout:   10 * time.Second,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = c.DeleteIntegration(context.Background(), "personio:CBNMt7dSNCzBdnRTx87dev4E")
	var kerr *kombo.Error
	switch {
	case err == nil:
		fmt.Println("deleted")
	case errors.Is(err, kombo.ErrIntegrationNotFound):
		fmt.Println("already gone:", err)
	case errors.As(err, &kerr):
		fmt.Println("Kombo said", kerr.EffectiveCode())
	default:
		fmt.Println("no answer:", err)
	}
	// Output:
	// already gone: kombo: HTTP 404 PLATFORM.INTEGRATION_NOT_FOUND: No integration with this ID exists.
}

func ExampleParseRetryHint() {
	now := time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC)
	h := http.Header{}
	h.Set("Retry-After", "2")
	h.Set("retry-after-ms", "3500")
	h.Set("ratelimit-reset", "1")
	fmt.Println(kombo.ParseRetryHint(h, now))
	// Output: 3.5s
}
