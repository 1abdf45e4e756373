package e2e

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go"
)

// The images the suite runs. `make images` builds them; the suite never pulls.
var (
	natsImage    = envOr("E2E_NATS_IMAGE", "nats-js:dev")
	fakeImage    = envOr("E2E_FAKE_KOMBO_IMAGE", "fake-kombo:dev")
	deleterImage = envOr("E2E_DELETER_IMAGE", "integration-deleter:dev")
)

// labelKey labels every container the suite starts (the value is the test's name), so that
// scripts/test-containers.sh can remove what a killed run left behind: Ryuk, the reaper that
// would otherwise do it, is an image that cannot be pulled here.
const labelKey = "io.kombo-ops.integration-deleter.e2e"

// hostNetRuntime is the "hostnet" runtime provider of testcontainers-go: containers share the
// host's network and are reached on 127.0.0.1. Without it testcontainers-go creates a bridge
// network ("reaper_default") on an engine that has none, and looks for the VM's gateway.
type hostNetRuntime struct{}

func (hostNetRuntime) Initialize(context.Context) (testcontainers.RuntimeConfig, error) {
	return testcontainers.RuntimeConfig{DefaultBridgeNetwork: "host", PublishedHost: "127.0.0.1"}, nil
}

func TestMain(m *testing.M) {
	// testcontainers-go reads its configuration once per process, so these come first; what
	// the environment says already wins.
	setDefault("TESTCONTAINERS_RYUK_DISABLED", "true") // exactly "true": "1" does not disable it
	setDefault("TESTCONTAINERS_PROVIDER", "hostnet")
	setDefault("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
	err := testcontainers.RegisterProvider("hostnet", func() testcontainers.RuntimeProvider { return hostNetRuntime{} })
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: register the hostnet provider:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

func setDefault(k, v string) {
	if _, ok := os.LookupEnv(k); !ok {
		_ = os.Setenv(k, v)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// engineRequired reports whether a missing Docker engine fails the suite instead of skipping
// it: in CI (CI=true), or with E2E_REQUIRE_DOCKER=1, so a CI run cannot pass by skipping.
func engineRequired() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci || os.Getenv("E2E_REQUIRE_DOCKER") == "1"
}

var engine struct {
	once sync.Once
	err  error
}

// engineError returns why no Docker engine can be used, or nil.
func engineError() (err error) {
	defer func() {
		if r := recover(); r != nil { // testcontainers-go panics on some broken setups
			err = fmt.Errorf("%v", r)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := testcontainers.ProviderDefault.GetProvider()
	if err != nil {
		return err
	}
	defer p.Close()
	return p.Health(ctx)
}

// requireImages skips the test when no Docker engine answers, or fails it where the engine is
// required (engineRequired). It fails the test when one of images is missing: the suite never
// pulls, and says how to build them.
func requireImages(t *testing.T, images ...string) {
	t.Helper()
	engine.once.Do(func() { engine.err = engineError() })
	if engine.err != nil {
		if engineRequired() {
			t.Fatalf("no Docker engine, and CI=true or E2E_REQUIRE_DOCKER=1 requires one: %v\n"+
				"start one with scripts/docker-engine.sh (as root), then run make images", engine.err)
		}
		t.Skipf("no Docker engine, skipping the container suite (start one with scripts/docker-engine.sh, then make images): %v", engine.err)
	}
	ctx, cli := docker(t)
	for _, img := range images {
		if _, err := cli.ImageInspect(ctx, img); err != nil {
			t.Fatalf("image %s is missing: build it with `make images` (the container suite never pulls): %v", img, err)
		}
	}
}

// begin runs t in parallel with the others, when the images are at hand (see requireImages),
// and returns a context that ends after within.
func begin(t *testing.T, within time.Duration, images ...string) context.Context {
	t.Helper()
	t.Parallel()
	requireImages(t, images...)
	ctx, cancel := context.WithTimeout(context.Background(), within)
	t.Cleanup(cancel)
	return ctx
}

// docker returns a client of the Docker engine, closed when t ends, and a context for the
// calls that ends after 20 s.
func docker(t *testing.T) (context.Context, *testcontainers.DockerClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		t.Fatalf("docker client: %v", err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return ctx, cli
}

// imageLabel returns a label of a local image.
func imageLabel(t *testing.T, image, key string) string {
	t.Helper()
	ctx, cli := docker(t)
	res, err := cli.ImageInspect(ctx, image)
	if err != nil {
		t.Fatalf("inspect %s: %v", image, err)
	}
	if res.Config == nil {
		return ""
	}
	return res.Config.Labels[key]
}
