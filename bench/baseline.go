package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/internal/testkit"
)

// The baseline is the consumer written the plain way, the yardstick of every figure: nats.go
// jetstream Consume, a fixed semaphore of C handlers, a DELETE per message with a per-worker
// exponential backoff (with jitter) on anything but a final answer, then publish the result
// (waiting for the PubAck) and ack. It knows nothing of rate-limit hints, concurrency-limit
// answers or shared holds. The bench runs it as a subprocess (`bench baseline …`), so that its
// RSS and CPU are measured exactly as the daemon's are.

type baselineConfig struct {
	natsURL, stream, consumer     string
	deletedSubject, failedSubject string
	komboURL, apiKey              string
	concurrency, maxAttempts      int
	backoffInitial, backoffMax    time.Duration
	callTimeout                   time.Duration
	readyFile                     string
	pullMaxMessages               int
	maxElapsed                    time.Duration
}

// runBaseline is `bench baseline`: it consumes until SIGTERM or SIGINT and returns the exit code.
func runBaseline(args []string) int {
	var c baselineConfig
	fs := flag.NewFlagSet("baseline", flag.ContinueOnError)
	fs.StringVar(&c.natsURL, "nats", nats.DefaultURL, "NATS URL")
	fs.StringVar(&c.stream, "stream", "", "stream")
	fs.StringVar(&c.consumer, "consumer", "", "durable consumer (must exist)")
	fs.StringVar(&c.deletedSubject, "deleted", "", "subject of deleted results")
	fs.StringVar(&c.failedSubject, "failed", "", "subject of failed results")
	fs.StringVar(&c.komboURL, "kombo", "", "Kombo base URL (…/v1)")
	fs.StringVar(&c.apiKey, "key", "bench", "Kombo API key")
	fs.IntVar(&c.concurrency, "c", 8, "fixed semaphore: messages handled at once")
	fs.IntVar(&c.maxAttempts, "max-attempts", 10, "DELETE calls per request before it fails")
	fs.DurationVar(&c.backoffInitial, "backoff-initial", 100*time.Millisecond, "first backoff (×2 per retry, ±50 % jitter)")
	fs.DurationVar(&c.backoffMax, "backoff-max", 5*time.Second, "longest backoff")
	fs.DurationVar(&c.maxElapsed, "max-elapsed", 15*time.Minute, "time per request before it fails")
	fs.DurationVar(&c.callTimeout, "timeout", 30*time.Second, "one HTTP call")
	fs.IntVar(&c.pullMaxMessages, "pull-max-messages", 0, "Consume's PullMaxMessages; 0 = nats.go's default")
	fs.StringVar(&c.readyFile, "ready-file", "", "file created once consuming")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if base := os.Getenv("BENCH_PROFILE"); base != "" {
		defer startProfiles(base)()
	}
	if err := c.run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "baseline:", err)
		return 1
	}
	return 0
}

type baselineRequest struct {
	IntegrationID string `json:"integration_id"`
	RequestID     string `json:"request_id"`
	RequestedBy   string `json:"requested_by"`
	Reason        string `json:"reason"`
}

type baselineResult struct {
	RequestID     string          `json:"request_id"`
	IntegrationID string          `json:"integration_id"`
	Status        string          `json:"status"`
	NotFound      bool            `json:"not_found,omitempty"`
	Attempts      int             `json:"attempts"`
	Error         json.RawMessage `json:"error,omitempty"`
	RequestedBy   string          `json:"requested_by"`
	Reason        string          `json:"reason"`
	CompletedAt   string          `json:"completed_at"`
}

func (c baselineConfig) run(ctx context.Context) error {
	nc, js, err := testkit.ConnectJetStream(c.natsURL, nats.Name("bench-baseline"))
	if err != nil {
		return err
	}
	defer nc.Close()
	cons, err := js.Consumer(ctx, c.stream, c.consumer)
	if err != nil {
		return err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = c.concurrency
	hc := &http.Client{Transport: tr, Timeout: c.callTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	sem := make(chan struct{}, c.concurrency)
	var wg sync.WaitGroup
	var opts []jetstream.PullConsumeOpt
	if c.pullMaxMessages > 0 {
		opts = append(opts, jetstream.PullMaxMessages(c.pullMaxMessages))
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c.handle(ctx, js, hc, msg)
		})
	}, opts...)
	if err != nil {
		return err
	}
	if c.readyFile != "" {
		if err := os.WriteFile(c.readyFile, []byte("ready\n"), 0o644); err != nil {
			return err
		}
	}
	<-ctx.Done()
	cc.Drain()
	<-cc.Closed()
	wg.Wait()
	return nc.Drain()
}

func (c baselineConfig) handle(ctx context.Context, js jetstream.JetStream, hc *http.Client, msg jetstream.Msg) {
	var req baselineRequest
	res := baselineResult{Status: "failed"}
	if err := json.Unmarshal(msg.Data(), &req); err != nil || req.IntegrationID == "" {
		res.Error = json.RawMessage(`{"code":"EVENT.INVALID","message":"invalid request event"}`)
	} else {
		res = c.delete(ctx, hc, req)
	}
	res.RequestID, res.IntegrationID = req.RequestID, req.IntegrationID
	res.RequestedBy, res.Reason = req.RequestedBy, req.Reason
	res.CompletedAt = time.Now().UTC().Format("2006-01-02T15:04:05.000Z07:00")
	data, _ := json.Marshal(res)
	subject := c.deletedSubject
	if res.Status == "failed" {
		subject = c.failedSubject
	}
	out := nats.NewMsg(subject)
	out.Data = data
	out.Header.Set(jetstream.MsgIDHeader, "result-"+req.RequestID)
	for {
		if _, err := js.PublishMsg(ctx, out); err == nil {
			break
		} else if ctx.Err() != nil {
			return // not acked: redelivered
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = msg.Ack()
}

// delete calls Kombo until a final answer or the attempts or time run out, backing off after
// every other answer.
func (c baselineConfig) delete(ctx context.Context, hc *http.Client, req baselineRequest) baselineResult {
	url := c.komboURL + "/integrations/" + req.IntegrationID
	wait := c.backoffInitial
	start := time.Now()
	var lastErr []byte
	for attempt := 1; ; attempt++ {
		status, body, err := c.call(ctx, hc, url)
		switch {
		case err == nil && status == http.StatusOK:
			return baselineResult{Status: "deleted", Attempts: attempt}
		case err == nil && status == http.StatusNotFound:
			return baselineResult{Status: "deleted", NotFound: true, Attempts: attempt}
		case err == nil && status >= 400 && status < 500 && status != http.StatusTooManyRequests && status != http.StatusRequestTimeout:
			return baselineResult{Status: "failed", Attempts: attempt, Error: errorOf(body)}
		}
		if err == nil {
			lastErr = body
		}
		if attempt >= c.maxAttempts || time.Since(start)+wait > c.maxElapsed || ctx.Err() != nil {
			return baselineResult{Status: "failed", Attempts: attempt, Error: errorOf(lastErr)}
		}
		d := time.Duration(float64(wait) * (0.5 + rand.Float64()))
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
		wait = min(2*wait, c.backoffMax)
	}
}

func (c baselineConfig) call(ctx context.Context, hc *http.Client, url string) (int, []byte, error) {
	r, err := http.NewRequestWithContext(ctx, http.MethodDelete, url, bytes.NewReader([]byte("{}")))
	if err != nil {
		return 0, nil, err
	}
	r.Header.Set("Authorization", "Bearer "+c.apiKey)
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Accept", "application/json")
	r.Header.Set("User-Agent", "bench-baseline/1")
	resp, err := hc.Do(r)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, body, err
}

// errorOf returns the error object of a Kombo error body, or a generic one.
func errorOf(body []byte) json.RawMessage {
	var e struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && len(e.Error) > 0 && !bytes.Equal(e.Error, []byte("null")) {
		return e.Error
	}
	return json.RawMessage(`{"code":"BASELINE.NO_ANSWER","message":"no usable answer"}`)
}
