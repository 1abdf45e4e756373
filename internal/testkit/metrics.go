package testkit

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Sample is one line of a Prometheus text exposition: a series and its value.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Metrics is what /metrics served.
type Metrics []Sample

// ScrapeMetrics GETs url (e.g. http://127.0.0.1:PORT/metrics) and parses the exposition.
func ScrapeMetrics(ctx context.Context, url string) (Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return ParseMetrics(resp.Body)
}

// ParseMetrics reads a Prometheus text exposition; comments and lines it cannot read are
// passed over.
func ParseMetrics(r io.Reader) (Metrics, error) {
	var out Metrics
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if s, ok := parseSample(sc.Text()); ok {
			out = append(out, s)
		}
	}
	return out, sc.Err()
}

// parseSample reads `name{k="v",…} value [timestamp]`.
func parseSample(line string) (Sample, bool) {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return Sample{}, false
	}
	var s Sample
	rest := line
	if i := strings.IndexAny(line, "{ "); i < 0 {
		return Sample{}, false
	} else if line[i] == '{' {
		s.Name = line[:i]
		end := strings.LastIndexByte(line, '}')
		if end < i {
			return Sample{}, false
		}
		labels, ok := parseLabels(line[i+1 : end])
		if !ok {
			return Sample{}, false
		}
		s.Labels, rest = labels, line[end+1:]
	} else {
		s.Name, rest = line[:i], line[i:]
	}
	f := strings.Fields(rest)
	if len(f) == 0 {
		return Sample{}, false
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return Sample{}, false
	}
	s.Value = v
	return s, true
}

// parseLabels reads `k="v",k2="v2"` (with \" \\ \n escapes in the values).
func parseLabels(s string) (map[string]string, bool) {
	out := map[string]string{}
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(s), ",")) {
		k, rest, ok := strings.Cut(s, "=")
		if !ok || !strings.HasPrefix(strings.TrimSpace(rest), `"`) {
			return nil, false
		}
		v, tail, ok := unquote(strings.TrimSpace(rest)[1:])
		if !ok {
			return nil, false
		}
		out[strings.TrimSpace(k)] = v
		s = tail
	}
	return out, true
}

// unquote reads a label value up to its closing quote and returns it and what follows.
func unquote(s string) (string, string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), s[i+1:], true
		case '\\':
			if i+1 == len(s) {
				return "", "", false
			}
			i++
			if s[i] == 'n' {
				b.WriteByte('\n')
			} else {
				b.WriteByte(s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", "", false
}

// Sum adds up the samples of the metric name whose labels include each of labels, given as
// `key="value"` (as the exposition writes them; none for every series of name). It reports
// whether any sample matched.
func (m Metrics) Sum(name string, labels ...string) (float64, bool) {
	want, ok := parseLabels(strings.Join(labels, ","))
	if !ok {
		return 0, false
	}
	var sum float64
	found := false
	for _, s := range m {
		if s.Name == name && s.has(want) {
			sum += s.Value
			found = true
		}
	}
	return sum, found
}

func (s Sample) has(want map[string]string) bool {
	for k, v := range want {
		if got, ok := s.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
