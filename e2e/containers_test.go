package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/kombo-ops/integration-deleter/internal/testkit"
	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

// apiKey is the key the fake expects and the daemon sends.
const apiKey = "e2e-key"

// hostNetwork puts a container on the host's network: it listens on the 127.0.0.1 ports the
// test picked (testkit.FreePort), and no Docker network is created.
func hostNetwork(hc *container.HostConfig) { hc.NetworkMode = "host" }

func portSpec(p int) string { return strconv.Itoa(p) + "/tcp" }

// httpReady waits for path on port to answer 200.
func httpReady(path string, port int) wait.Strategy {
	return wait.ForHTTP(path).WithPort(portSpec(port)).
		WithStartupTimeout(30 * time.Second).WithPollInterval(100 * time.Millisecond)
}

// start runs image with host networking and the suite's label. The container is removed when
// the test ends, whatever happened (the cleanup is registered before the error is looked at),
// and its logs are printed when the test failed.
func start(t *testing.T, ctx context.Context, name, image string, opts ...testcontainers.ContainerCustomizer) *testcontainers.DockerContainer {
	t.Helper()
	opts = append([]testcontainers.ContainerCustomizer{
		testcontainers.WithHostConfigModifier(hostNetwork),
		testcontainers.WithLabels(map[string]string{labelKey: t.Name()}),
	}, opts...)
	ctr, err := testcontainers.Run(ctx, image, opts...)
	testcontainers.CleanupContainer(t, ctr, testcontainers.StopTimeout(15*time.Second))
	if ctr != nil {
		t.Cleanup(func() { // runs before the removal above
			if t.Failed() {
				t.Logf("--- logs of %s (%s), last lines:\n%s", name, image, logs(ctr, 80))
			}
		})
	}
	if err != nil {
		t.Fatalf("start %s (%s): %v", name, image, err)
	}
	return ctr
}

// logs returns the last n lines a container wrote.
func logs(ctr *testcontainers.DockerContainer, n int) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rc, err := ctr.Logs(ctx)
	if err != nil {
		return "(no logs: " + err.Error() + ")"
	}
	defer rc.Close()
	var lines []string
	sc := bufio.NewScanner(rc)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ---------------------------------------------------------------- NATS

// natsServer is a nats-server container with JetStream on, its store in the image's /data
// volume (kept across a stop and start of the same container).
type natsServer struct {
	ctr           *testcontainers.DockerContainer
	port, monitor int
}

func startNATS(t *testing.T, ctx context.Context) *natsServer {
	t.Helper()
	n := &natsServer{port: testkit.FreePort(t), monitor: testkit.FreePort(t)}
	n.ctr = start(t, ctx, "nats", natsImage,
		testcontainers.WithCmd("-js", "-a", "127.0.0.1", "-p", strconv.Itoa(n.port),
			"-m", strconv.Itoa(n.monitor), "-sd", "/data"),
		testcontainers.WithWaitStrategy(httpReady("/healthz?js-enabled-only=true", n.monitor)))
	return n
}

func (n *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.port) }

// ---------------------------------------------------------------- fake Kombo

// fakeKombo is a fake-kombo container.
type fakeKombo struct {
	ctr  *testcontainers.DockerContainer
	port int
}

// startFake starts the fake with FAKE_KOMBO_* settings env on top of the suite's key.
func startFake(t *testing.T, ctx context.Context, env map[string]string) *fakeKombo {
	t.Helper()
	f := &fakeKombo{port: testkit.FreePort(t)}
	e := map[string]string{
		"FAKE_KOMBO_ADDR":    fmt.Sprintf("127.0.0.1:%d", f.port),
		"FAKE_KOMBO_API_KEY": apiKey,
	}
	maps.Copy(e, env)
	f.ctr = start(t, ctx, "fake-kombo", fakeImage,
		testcontainers.WithEnv(e),
		testcontainers.WithWaitStrategy(httpReady("/_fake/healthz", f.port)))
	return f
}

func (f *fakeKombo) baseURL() string { return fmt.Sprintf("http://127.0.0.1:%d/v1", f.port) }

// configure changes the fake's options while it serves (POST /_fake/config), e.g.
// {"RejectKey": true}.
func (f *fakeKombo) configure(t *testing.T, patch map[string]any) {
	t.Helper()
	body, err := json.Marshal(patch)
	if err != nil {
		t.Fatal(err)
	}
	status, answer := httpDo(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/_fake/config", f.port), body)
	if status != http.StatusOK {
		t.Fatalf("POST /_fake/config %s: %d %s", body, status, answer)
	}
}

// calls returns the API calls the fake received.
func (f *fakeKombo) calls(t *testing.T) []kombotest.Call {
	t.Helper()
	var calls []kombotest.Call
	f.getJSON(t, "/_fake/calls", &calls)
	return calls
}

func (f *fakeKombo) stats(t *testing.T) kombotest.Stats {
	t.Helper()
	var s kombotest.Stats
	f.getJSON(t, "/_fake/stats", &s)
	return s
}

// deletes counts the DELETEs the fake received, by integration id.
func (f *fakeKombo) deletes(t *testing.T) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, c := range f.calls(t) {
		if c.Method == http.MethodDelete {
			n[c.ID]++
		}
	}
	return n
}

func (f *fakeKombo) getJSON(t *testing.T, path string, v any) {
	t.Helper()
	status, body := httpDo(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", f.port, path), nil)
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, status, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
}

// ---------------------------------------------------------------- the daemon

// deleter is an integration-deleter container.
type deleter struct {
	ctr      *testcontainers.DockerContainer
	httpPort int
}

// deleterEnv is the daemon's configuration against n and f, with short timings so that
// retries, probes and redeliveries happen within a test's time; env overrides it.
func deleterEnv(n *natsServer, f *fakeKombo, env map[string]string) map[string]string {
	e := map[string]string{
		"KOMBO_API_KEY":           apiKey,
		"KOMBO_BASE_URL":          f.baseURL(),
		"NATS_URL":                n.url(),
		"KOMBO_TIMEOUT":           "5s",
		"KOMBO_BACKOFF_INITIAL":   "50ms",
		"KOMBO_BACKOFF_MAX":       "500ms",
		"KOMBO_RETRY_MAX_ELAPSED": "2m",
		"AUTH_PROBE_INTERVAL":     "250ms",
		"ACK_WAIT":                "5s",
		"SHUTDOWN_TIMEOUT":        "10s",
		"LOG_LEVEL":               "debug",
	}
	maps.Copy(e, env)
	return e
}

// startDeleter starts the daemon and waits until /readyz answers 200.
func startDeleter(t *testing.T, ctx context.Context, n *natsServer, f *fakeKombo, env map[string]string) *deleter {
	t.Helper()
	d := &deleter{httpPort: testkit.FreePort(t)}
	e := deleterEnv(n, f, env)
	e["HTTP_ADDR"] = fmt.Sprintf("127.0.0.1:%d", d.httpPort)
	d.ctr = start(t, ctx, "integration-deleter", deleterImage,
		testcontainers.WithEnv(e),
		testcontainers.WithWaitStrategy(httpReady("/readyz", d.httpPort)))
	return d
}

// get answers GET path on the daemon's HTTP port (status 0 when nothing answers).
func (d *deleter) get(t *testing.T, path string) (int, string) {
	t.Helper()
	return httpDo(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", d.httpPort, path), nil)
}

// metric sums the samples of a metric from /metrics whose labels include each of labels
// (`key="value"`), failing the test when there is none.
func (d *deleter) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	m, err := testkit.ScrapeMetrics(t.Context(), fmt.Sprintf("http://127.0.0.1:%d/metrics", d.httpPort))
	if err != nil {
		t.Fatal(err)
	}
	v, ok := m.Sum(name, labels...)
	if !ok {
		t.Fatalf("/metrics has no %s%v", name, labels)
	}
	return v
}

// ---------------------------------------------------------------- helpers

var httpClient = &http.Client{Timeout: 3 * time.Second}

// httpDo makes one HTTP call; status 0 means nothing answered (the string says why).
func httpDo(method, url string, body []byte) (int, string) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return 0, err.Error()
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	return resp.StatusCode, string(b)
}
