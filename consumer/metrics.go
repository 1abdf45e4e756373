package consumer

import (
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

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
	rateLimitHolds  prometheus.Counter
	authProbes      *prometheus.CounterVec
	publishFailures prometheus.Counter
	// paceGauge reads the pace of the consumer that uses these metrics, when scraped.
	paceGauge prometheus.GaugeFunc

	pace atomic.Pointer[func() float64] // set by the consumer
}

// NewMetrics creates the consumer's metrics and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns = "integration_deleter"
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "requests_total",
			Help: "Request messages finished, by outcome: deleted, not_found, failed, invalid, already_recorded (the request id had an outcome: no call, no second result).",
		}, []string{"outcome"}),
		komboCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "kombo_calls_total",
			Help: "DELETE calls to Kombo, by HTTP status (0: no answer) and error code.",
		}, []string{"status", "code"}),
		komboLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "kombo_call_duration_seconds",
			Help:    "Duration of DELETE calls to Kombo.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "kombo_calls_in_flight",
			Help: "DELETE calls to Kombo in flight.",
		}),
		concurrencyCap: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "concurrency_cap",
			Help: "Current adaptive cap on DELETE calls in flight.",
		}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "retries_total",
			Help: "Retries scheduled, by reason: transient, rate_limit, concurrency_limit.",
		}, []string{"reason"}),
		redeliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "redeliveries_total",
			Help: "Request messages received that had been delivered before.",
		}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "messages_held",
			Help: "Request messages this process holds (in a call, waiting for a slot or in backoff).",
		}),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: ns, Name: "paused",
			Help: "1 while intake is paused because Kombo rejects the API key.",
		}),
		rateLimitHolds: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "rate_limit_holds_total",
			Help: "Times a rate-limit answer held every worker off.",
		}),
		authProbes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "auth_probes_total",
			Help: "API key checks (GET /check-api-key), by result: accepted, rejected, error.",
		}, []string{"result"}),
		publishFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "result_publish_failures_total",
			Help: "Failed attempts to publish a result to JetStream.",
		}),
	}
	m.paceGauge = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: ns, Name: "rate_pace_per_second",
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
		reg.MustRegister(m.requests, m.komboCalls, m.komboLatency, m.inFlight, m.concurrencyCap,
			m.retries, m.redeliveries, m.held, m.paused, m.rateLimitHolds, m.authProbes, m.publishFailures, m.paceGauge)
	}
	return m
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
	case "", codeEventInvalid, codeRetriesExhausted, codeInternal, codeMaxDeliveries:
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
