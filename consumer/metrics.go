package consumer

import (
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kombo-ops/integration-deleter/internal/control"
	"github.com/kombo-ops/integration-deleter/kombo"
)

// Metrics are the consumer's Prometheus metrics.
type Metrics struct {
	requests        *prometheus.CounterVec
	komboCalls      *prometheus.CounterVec
	komboLatency    prometheus.Histogram
	inFlight        prometheus.Gauge
	concurrencyCap  prometheus.Gauge
	retries         *prometheus.CounterVec
	redeliveries    prometheus.Counter
	held            prometheus.Gauge
	paused          prometheus.Gauge
	consumerPaused  prometheus.Gauge
	fuseTripped     prometheus.Gauge
	rateLimitHolds  prometheus.Counter
	authProbes      *prometheus.CounterVec
	publishFailures prometheus.Counter
	// paceGauge reads the pace of the consumer that uses these metrics, when scraped.
	paceGauge prometheus.GaugeFunc

	pace atomic.Pointer[func() float64] // set by the consumer
}

// metricsNamespace prefixes every metric's name.
const metricsNamespace = "integration_deleter"

// NewMetrics creates the consumer's metrics and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: newCounterVec("requests_total",
			"Request messages finished, by outcome: deleted, not_found, failed, invalid, protected, mismatch, already_recorded (the request id had an outcome: no call, no second result); in a dry run would_delete, not_found, failed.",
			"outcome"),
		komboCalls: newCounterVec("kombo_calls_total",
			"DELETE calls to Kombo, by HTTP status (0: no answer) and error code.", "status", "code"),
		komboLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "kombo_call_duration_seconds",
			Help:    "Duration of DELETE calls to Kombo.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		inFlight:       newGauge("kombo_calls_in_flight", "DELETE calls to Kombo in flight."),
		concurrencyCap: newGauge("concurrency_cap", "Current adaptive cap on DELETE calls in flight."),
		retries: newCounterVec("retries_total",
			"Retries scheduled, by reason: transient, rate_limit, concurrency_limit.", "reason"),
		redeliveries: newCounter("redeliveries_total", "Request messages received that had been delivered before."),
		held: newGauge("messages_held",
			"Request messages this process holds (in a call, waiting for a slot or in backoff)."),
		paused: newGauge("paused", "1 while intake is paused because Kombo rejects the API key."),
		consumerPaused: newGauge("consumer_paused",
			"1 while the durable consumer is paused on the server (integration-deleter pause, or the fuse): no DELETE starts."),
		fuseTripped:    newGauge("fuse_tripped", "1 while the consumer is paused because DELETE_FUSE tripped, until resume."),
		rateLimitHolds: newCounter("rate_limit_holds_total", "Times a rate-limit answer held every worker off."),
		authProbes: newCounterVec("auth_probes_total",
			"API key checks (GET /check-api-key), by result: accepted, rejected, error.", "result"),
		publishFailures: newCounter("result_publish_failures_total", "Failed attempts to publish a result to JetStream."),
	}
	m.paceGauge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: metricsNamespace, Name: "rate_pace_per_second",
		Help: "Calls per second the pacer allows after Kombo's rate limit showed itself; 0 while calls are not paced.",
	}, func() float64 {
		if f := m.pace.Load(); f != nil {
			return (*f)()
		}
		return 0
	})
	for _, o := range []string{"deleted", "not_found", "failed", "invalid"} {
		m.requests.WithLabelValues(o)
	}
	for _, r := range []string{"transient", "rate_limit", "concurrency_limit"} {
		m.retries.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.komboCalls, m.komboLatency, m.inFlight, m.concurrencyCap, m.retries,
			m.redeliveries, m.held, m.paused, m.consumerPaused, m.fuseTripped, m.rateLimitHolds, m.authProbes,
			m.publishFailures, m.paceGauge)
	}
	return m
}

func newCounter(name, help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Namespace: metricsNamespace, Name: name, Help: help})
}

func newCounterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metricsNamespace, Name: name, Help: help}, labels)
}

func newGauge(name, help string) prometheus.Gauge {
	return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: metricsNamespace, Name: name, Help: help})
}

// setPause shows the consumer's pause on the server.
func (m *Metrics) setPause(st control.PauseState) {
	m.consumerPaused.Set(float64(boolInt(st.Paused)))
	m.fuseTripped.Set(float64(boolInt(st.Fuse())))
}

func (m *Metrics) call(status int, code string, seconds float64) {
	m.komboCalls.WithLabelValues(strconv.Itoa(status), codeLabel(code)).Inc()
	m.komboLatency.Observe(seconds)
}

// otherCode is the code label of calls whose code is none of the bounded ones below.
const otherCode = "other"

// codeLabel bounds the code label of kombo_calls_total. The code comes from the body of
// an answer and can be any string, so only "" (no answer or no code), Kombo's known codes,
// HTTP.<three digits> (EffectiveCode where Kombo gave none) and the daemon's own codes
// pass; any other code is otherCode.
func codeLabel(code string) string {
	switch code {
	case "", codeEventInvalid, codeRetriesExhausted, codeInternal, codeMaxDeliveries, codeProtected, codeMismatch:
		return code
	}
	if kombo.KnownCode(code) || isHTTPCode(code) {
		return code
	}
	return otherCode
}

// isHTTPCode reports whether code is "HTTP." and three digits, such as "HTTP.502".
func isHTTPCode(code string) bool {
	digits, ok := strings.CutPrefix(code, "HTTP.")
	if !ok || len(digits) != 3 {
		return false
	}
	for i := range len(digits) {
		if digits[i] < '0' || digits[i] > '9' {
			return false
		}
	}
	return true
}
