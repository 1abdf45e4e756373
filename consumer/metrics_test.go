package consumer

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kombo-ops/integration-deleter/kombo"
)

// TestKomboCallsCodeLabelIsBounded checks what a scrape shows of kombo_calls_total: its
// code label only takes Kombo's known codes, HTTP.<status>, "" and the daemon's own codes;
// any other code an answer's body carries is counted as "other", so a body cannot add
// series.
func TestKomboCallsCodeLabelIsBounded(t *testing.T) {
	weird := "SOMETHING.WEIRD." + strconv.FormatInt(time.Now().UnixNano(), 10)
	calls := []struct {
		status int
		code   string
	}{
		{404, kombo.CodeIntegrationNotFound},
		{429, kombo.CodeRateLimitExceeded},
		{502, "HTTP.502"},
		{0, ""},
		{500, codeInternal},
		{400, weird},
		{400, "PLATFORM.SOMETHING_NEW"},
		{503, "HTTP.5030"},
		{503, "HTTP.abc"},
		{500, strings.Repeat("x", 300)},
		{500, "platform.unknown_error"},
	}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	for _, c := range calls {
		m.call(c.status, c.code, 0.01)
	}

	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{} // "status code" -> count
	for _, f := range families {
		if f.GetName() != "integration_deleter_kombo_calls_total" {
			continue
		}
		for _, s := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			got[labels["status"]+" "+labels["code"]] += s.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"0 ":                                 1,
		"500 DELETER.INTERNAL":               1,
		"502 HTTP.502":                       1,
		"404 PLATFORM.INTEGRATION_NOT_FOUND": 1,
		"429 PLATFORM.RATE_LIMIT_EXCEEDED":   1,
		"400 other":                          2,
		"500 other":                          2,
		"503 other":                          2,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("scraped integration_deleter_kombo_calls_total by \"status code\" (-want +got):\n%s", diff)
	}
}
