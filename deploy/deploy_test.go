package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/kombo-ops/integration-deleter/config"
	"github.com/kombo-ops/integration-deleter/consumer"
	"github.com/kombo-ops/integration-deleter/internal/control"
	"github.com/kombo-ops/integration-deleter/internal/ledger"
	"github.com/kombo-ops/integration-deleter/internal/natstest"
	"github.com/kombo-ops/integration-deleter/internal/testkit"
)

// runtimeVars are environment variables that the manifests may set for the Go runtime rather
// than for config.Config.
var runtimeVars = map[string]bool{"GOMEMLIMIT": true, "GOMAXPROCS": true, "GODEBUG": true}

// secretVars must never be set in plain text in a manifest meant for production.
var secretVars = []string{"KOMBO_API_KEY", "NATS_PASSWORD", "NATS_TOKEN"}

// ---------------------------------------------------------------- the code's side

// configVars returns the daemon's environment variables, read from config.Config's envconfig
// tags, with their defaults.
func configVars(t *testing.T) map[string]string {
	t.Helper()
	vars := map[string]string{}
	typ := reflect.TypeFor[config.Config]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		name := f.Tag.Get("envconfig")
		if name == "" {
			t.Fatalf("config.Config.%s has no envconfig tag", f.Name)
		}
		vars[name] = f.Tag.Get("default")
	}
	if len(vars) < 10 {
		t.Fatalf("config.Config has only %d variables; the reflection is reading the wrong thing", len(vars))
	}
	return vars
}

// loadConfig runs config.Load with exactly env set: every other variable of the daemon is
// unset for the duration of the test.
func loadConfig(t *testing.T, env map[string]string) (*config.Config, error) {
	t.Helper()
	for name := range configVars(t) {
		if v, ok := env[name]; ok {
			t.Setenv(name, v)
			continue
		}
		t.Setenv(name, "") // registers the restore of the old value
		if err := os.Unsetenv(name); err != nil {
			t.Fatal(err)
		}
	}
	return config.Load(os.LookupEnv)
}

// imageTags returns the images `make images` (scripts/images.sh) builds, name to tag.
func imageTags(t *testing.T) map[string]string {
	t.Helper()
	src := readFile(t, "../scripts/images.sh")
	m := regexp.MustCompile(`TAG=\$\{IMAGE_TAG:-([^}]+)\}`).FindStringSubmatch(src)
	if m == nil {
		t.Fatal("scripts/images.sh: no TAG=${IMAGE_TAG:-…} default")
	}
	tags := map[string]string{}
	for _, sm := range regexp.MustCompile(`-t "([a-z0-9._/-]+):\$TAG"`).FindAllStringSubmatch(src, -1) {
		tags[sm[1]] = m[1]
	}
	if len(tags) != 3 {
		t.Fatalf("scripts/images.sh builds %v; want three images", tags)
	}
	return tags
}

// dockerfile is what the tests need from the Dockerfile: the USER of the final stages and the
// ENTRYPOINT of each named stage.
type dockerfile struct {
	users       []string
	entrypoints map[string][]string // stage name -> ENTRYPOINT
	healthcheck map[string][]string // stage name -> HEALTHCHECK CMD
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	df := dockerfile{entrypoints: map[string][]string{}, healthcheck: map[string][]string{}}
	stage := ""
	fromRE := regexp.MustCompile(`(?i)^FROM\s+\S+(?:\s+AS\s+(\S+))?`)
	for line := range strings.SplitSeq(readFile(t, "../Dockerfile"), "\n") {
		line = strings.TrimSpace(line)
		switch {
		case fromRE.MatchString(line):
			stage = fromRE.FindStringSubmatch(line)[1]
		case strings.HasPrefix(line, "USER "):
			df.users = append(df.users, strings.TrimSpace(strings.TrimPrefix(line, "USER ")))
		case strings.HasPrefix(line, "ENTRYPOINT "):
			df.entrypoints[stage] = jsonArgs(t, strings.TrimPrefix(line, "ENTRYPOINT "))
		case strings.HasPrefix(line, "HEALTHCHECK "):
			_, cmd, ok := strings.Cut(line, " CMD ")
			if !ok {
				t.Fatalf("Dockerfile: HEALTHCHECK without CMD: %s", line)
			}
			df.healthcheck[stage] = jsonArgs(t, cmd)
		}
	}
	return df
}

func jsonArgs(t *testing.T, s string) []string {
	t.Helper()
	var args []string
	if err := json.Unmarshal([]byte(s), &args); err != nil {
		t.Fatalf("Dockerfile: %q is not the exec (JSON) form: %v", s, err)
	}
	return args
}

// metricFamilies returns the daemon's metric names with their variable labels, as
// consumer.NewMetrics registers them, and the label values that exist before any request.
func metricFamilies(t *testing.T) (labels map[string][]string, values map[string]map[string][]string) {
	t.Helper()
	reg := &capturingRegistry{Registry: prometheus.NewRegistry()}
	consumer.NewMetrics(reg)
	labels = map[string][]string{}
	descRE := regexp.MustCompile(`^Desc\{fqName: "([^"]+)".*variableLabels: \{([^}]*)\}\}$`)
	for _, c := range reg.collectors {
		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			m := descRE.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("cannot read %s", d)
			}
			var ls []string
			if m[2] != "" {
				ls = strings.Split(m[2], ",")
			}
			labels[m[1]] = ls
		}
	}
	if len(labels) == 0 {
		t.Fatal("consumer.NewMetrics registered no metric")
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	values = map[string]map[string][]string{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if values[mf.GetName()] == nil {
					values[mf.GetName()] = map[string][]string{}
				}
				values[mf.GetName()][lp.GetName()] = append(values[mf.GetName()][lp.GetName()], lp.GetValue())
			}
		}
	}
	return labels, values
}

// capturingRegistry is a registry that remembers the collectors registered with it.
type capturingRegistry struct {
	*prometheus.Registry
	collectors []prometheus.Collector
}

func (r *capturingRegistry) Register(c prometheus.Collector) error {
	r.collectors = append(r.collectors, c)
	return r.Registry.Register(c)
}

func (r *capturingRegistry) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// ---------------------------------------------------------------- the manifests' side

type meta struct {
	Name        string            `yaml:"name"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type header struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   meta   `yaml:"metadata"`
}

// manifest is one YAML document of deploy/kubernetes.
type manifest struct {
	file string
	node *yaml.Node
	header
}

func (m manifest) decode(t *testing.T, v any) {
	t.Helper()
	if err := m.node.Decode(v); err != nil {
		t.Fatalf("%s: %s %s: %v", m.file, m.Kind, m.Metadata.Name, err)
	}
}

func (m manifest) String() string { return m.file + ": " + m.Kind + "/" + m.Metadata.Name }

// kube reads every document of deploy/kubernetes/*.yaml.
func kube(t *testing.T) []manifest {
	t.Helper()
	files, err := filepath.Glob("kubernetes/*.y*ml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in deploy/kubernetes (%v)", err)
	}
	var out []manifest
	for _, f := range files {
		dec := yaml.NewDecoder(bytes.NewReader([]byte(readFile(t, f))))
		for {
			var n yaml.Node
			err := dec.Decode(&n)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(n.Content) == 0 || n.Content[0].Kind == 0 {
				continue // an empty document
			}
			m := manifest{file: f, node: &n}
			m.decode(t, &m.header)
			out = append(out, m)
		}
	}
	return out
}

// find returns the one manifest of kind.
func find(t *testing.T, ms []manifest, kind string) manifest {
	t.Helper()
	found := findAll(ms, kind)
	if len(found) != 1 {
		t.Fatalf("want exactly one %s in deploy/kubernetes, found %d", kind, len(found))
	}
	return found[0]
}

// findAll returns every manifest of kind (the NACK kinds come more than once).
func findAll(ms []manifest, kind string) []manifest {
	var found []manifest
	for _, m := range ms {
		if m.Kind == kind {
			found = append(found, m)
		}
	}
	return found
}

// strictSpec decodes the manifest's spec into v, refusing a field v does not name: a setting
// the test does not know would go unchecked.
func (m manifest) strictSpec(t *testing.T, v any) {
	t.Helper()
	doc := m.node
	if doc.Kind == yaml.DocumentNode {
		doc = doc.Content[0]
	}
	var spec *yaml.Node
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if doc.Content[i].Value == "spec" {
			spec = doc.Content[i+1]
		}
	}
	if spec == nil {
		t.Fatalf("%s: no spec", m)
	}
	b, err := yaml.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: spec: %v (a field this test does not check: teach it the field)", m, err)
	}
}

type deployment struct {
	Spec struct {
		Replicas int `yaml:"replicas"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata meta    `yaml:"metadata"`
			Spec     podSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	TerminationGracePeriodSeconds *int `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               struct {
		RunAsNonRoot *bool  `yaml:"runAsNonRoot"`
		RunAsUser    *int64 `yaml:"runAsUser"`
		RunAsGroup   *int64 `yaml:"runAsGroup"`
	} `yaml:"securityContext"`
	Containers []container `yaml:"containers"`
	Volumes    []struct {
		Name   string `yaml:"name"`
		Secret *struct {
			SecretName string `yaml:"secretName"`
			Items      []struct {
				Key  string `yaml:"key"`
				Path string `yaml:"path"`
			} `yaml:"items"`
		} `yaml:"secret"`
	} `yaml:"volumes"`
}

type container struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	EnvFrom []struct {
		ConfigMapRef *struct {
			Name string `yaml:"name"`
		} `yaml:"configMapRef"`
		SecretRef *struct {
			Name string `yaml:"name"`
		} `yaml:"secretRef"`
	} `yaml:"envFrom"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom any    `yaml:"valueFrom"`
	} `yaml:"env"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
	StartupProbe   *probe `yaml:"startupProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
		RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
		RunAsUser                *int64 `yaml:"runAsUser"`
		Capabilities             struct {
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"` // a number or a port name
	} `yaml:"httpGet"`
}

// port resolves a probe's or a Service's port (a number or the name of a container port).
func (c container) port(t *testing.T, p any) int {
	t.Helper()
	switch p := p.(type) {
	case int:
		return p
	case string:
		for _, cp := range c.Ports {
			if cp.Name == p {
				return cp.ContainerPort
			}
		}
		t.Fatalf("container %s has no port named %q", c.Name, p)
	}
	t.Fatalf("port %v (%T) is neither a number nor a name", p, p)
	return 0
}

type configMap struct {
	Data map[string]string `yaml:"data"`
}

// daemon returns the Deployment and its one container.
func daemon(t *testing.T, ms []manifest) (deployment, container) {
	t.Helper()
	var d deployment
	find(t, ms, "Deployment").decode(t, &d)
	if n := len(d.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("the Deployment has %d containers; want 1", n)
	}
	return d, d.Spec.Template.Spec.Containers[0]
}

// kubeEnv is the environment the Deployment gives the daemon: the ConfigMap it names, then its
// literal env entries. valueFrom entries (the Go runtime's) are left out.
func kubeEnv(t *testing.T, ms []manifest) map[string]string {
	t.Helper()
	cmm := find(t, ms, "ConfigMap")
	var cm configMap
	cmm.decode(t, &cm)
	_, c := daemon(t, ms)
	env := map[string]string{}
	var fromCM bool
	for _, ef := range c.EnvFrom {
		if ef.SecretRef != nil {
			t.Errorf("envFrom secretRef %q: the API key is mounted as a file, not put in the environment", ef.SecretRef.Name)
		}
		if ef.ConfigMapRef != nil {
			if ef.ConfigMapRef.Name != cmm.Metadata.Name {
				t.Errorf("envFrom names ConfigMap %q; the ConfigMap is %q", ef.ConfigMapRef.Name, cmm.Metadata.Name)
			}
			fromCM = true
		}
	}
	if !fromCM {
		t.Errorf("the container takes no envFrom configMapRef")
	}
	for k, v := range cm.Data {
		env[k] = v
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			env[e.Name] = e.Value
		}
	}
	return env
}

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string         `yaml:"image"`
	PullPolicy  string         `yaml:"pull_policy"`
	NetworkMode string         `yaml:"network_mode"`
	Command     []string       `yaml:"command"`
	Environment map[string]any `yaml:"environment"`
	Volumes     []string       `yaml:"volumes"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	DependsOn map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	StopGracePeriod string `yaml:"stop_grace_period"`
}

func (s composeService) env() map[string]string {
	env := map[string]string{}
	for k, v := range s.Environment {
		env[k] = fmt.Sprint(v)
	}
	return env
}

func compose(t *testing.T) composeFile {
	t.Helper()
	var cf composeFile
	dec := yaml.NewDecoder(bytes.NewReader([]byte(readFile(t, "compose.yaml"))))
	if err := dec.Decode(&cf); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	for _, name := range []string{"nats", "fake-kombo", "integration-deleter"} {
		if _, ok := cf.Services[name]; !ok {
			t.Fatalf("compose.yaml has no service %q", name)
		}
	}
	return cf
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// keyFile writes an API key to a temporary file, standing in for the mounted Secret.
func keyFile(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "api-key")
	if err := os.WriteFile(f, []byte("test-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func httpPort(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("HTTP_ADDR %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("HTTP_ADDR %q: %v", addr, err)
	}
	return n
}

func subset(sub, of map[string]string) bool {
	for k, v := range sub {
		if of[k] != v {
			return false
		}
	}
	return len(sub) > 0
}

// ---------------------------------------------------------------- tests

func TestManifestsParse(t *testing.T) {
	ms := kube(t)
	for _, m := range ms {
		if m.APIVersion == "" || m.Kind == "" {
			t.Errorf("%s: apiVersion or kind missing", m)
		}
		if m.Kind != "Kustomization" && m.Metadata.Name == "" {
			t.Errorf("%s: metadata.name missing", m)
		}
	}
	var k struct {
		Resources []string `yaml:"resources"`
		Images    []struct {
			Name    string `yaml:"name"`
			NewName string `yaml:"newName"`
			NewTag  string `yaml:"newTag"`
		} `yaml:"images"`
	}
	find(t, ms, "Kustomization").decode(t, &k)
	for _, r := range k.Resources {
		if _, err := os.Stat(filepath.Join("kubernetes", r)); err != nil {
			t.Errorf("kustomization.yaml: resource %s: %v", r, err)
		}
	}
	for _, want := range []string{"Deployment", "ConfigMap", "Service", "PodDisruptionBudget"} {
		m := find(t, ms, want)
		if !slices.Contains(k.Resources, filepath.Base(m.file)) {
			t.Errorf("kustomization.yaml does not list %s (the %s)", filepath.Base(m.file), want)
		}
	}
	// Applied on their own (see kustomization.yaml): the Secret comes from a secret store, the
	// others need CRDs that `kubectl apply -k` must not depend on.
	kz := readFile(t, "kubernetes/kustomization.yaml")
	for _, want := range []string{"Secret", "ServiceMonitor", "PrometheusRule", "Stream", "Consumer", "KeyValue"} {
		found := findAll(ms, want)
		if len(found) == 0 {
			t.Errorf("no %s in deploy/kubernetes", want)
		}
		for _, m := range found {
			if slices.Contains(k.Resources, filepath.Base(m.file)) {
				t.Errorf("kustomization.yaml lists %s (the %s), which is applied on its own", filepath.Base(m.file), want)
			}
			if base := filepath.Base(m.file); strings.HasPrefix(base, "nack-") && !strings.Contains(kz, base) {
				t.Errorf("kustomization.yaml's comment does not name %s among the optional manifests", base)
			}
		}
	}
	compose(t)
}

func TestKubernetesEnvMatchesConfig(t *testing.T) {
	ms := kube(t)
	vars := configVars(t)
	checkConfigMapReadsOnlyConfig(t, ms, vars, "ConfigMap")
	_, c := daemon(t, ms)
	for _, e := range c.Env {
		if _, ok := vars[e.Name]; !ok && !runtimeVars[e.Name] {
			t.Errorf("Deployment sets env %s, which config.Config does not read", e.Name)
		}
	}
	env := kubeEnv(t, ms)
	for _, s := range secretVars {
		if _, ok := env[s]; ok {
			t.Errorf("%s is set in plain text; mount it from a Secret as a file", s)
		}
	}
	if env["KOMBO_API_KEY_FILE"] == "" {
		t.Fatal("KOMBO_API_KEY_FILE is not set: the daemon would have no key")
	}
	env["KOMBO_API_KEY_FILE"] = keyFile(t) // the mount is checked in TestKubernetesSecretMount
	if _, err := loadConfig(t, env); err != nil {
		t.Errorf("config.Load rejects the Kubernetes configuration:\n%v", err)
	}
}

func TestKubernetesProbesAndPorts(t *testing.T) {
	ms := kube(t)
	d, c := daemon(t, ms)
	env := kubeEnv(t, ms)
	env["KOMBO_API_KEY_FILE"] = keyFile(t)
	cfg, err := loadConfig(t, env)
	if err != nil {
		t.Fatal(err)
	}
	port := httpPort(t, cfg.HTTPAddr)

	for _, p := range []struct {
		name  string
		probe *probe
		path  string
	}{
		{"startupProbe", c.StartupProbe, "/healthz"},
		{"livenessProbe", c.LivenessProbe, "/healthz"},
		{"readinessProbe", c.ReadinessProbe, "/readyz"},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe on %s", p.name, p.path)
			continue
		}
		if got := p.probe.HTTPGet.Path; got != p.path {
			t.Errorf("%s path = %s, want %s", p.name, got, p.path)
		}
		if got := c.port(t, p.probe.HTTPGet.Port); got != port {
			t.Errorf("%s port = %d, want %d (HTTP_ADDR %s)", p.name, got, port, cfg.HTTPAddr)
		}
	}
	if got := c.port(t, "http"); got != port {
		t.Errorf("containerPort http = %d, want %d (HTTP_ADDR %s)", got, port, cfg.HTTPAddr)
	}
	if got := d.Spec.Template.Metadata.Annotations["prometheus.io/port"]; got != strconv.Itoa(port) {
		t.Errorf("prometheus.io/port = %q, want %d", got, port)
	}
	if got := d.Spec.Template.Metadata.Annotations["prometheus.io/path"]; got != "/metrics" {
		t.Errorf("prometheus.io/path = %q, want /metrics", got)
	}

	// The Service and the ServiceMonitor reach the same port.
	svcm := find(t, ms, "Service")
	var svc struct {
		Spec struct {
			Selector map[string]string `yaml:"selector"`
			Ports    []struct {
				Name       string `yaml:"name"`
				Port       int    `yaml:"port"`
				TargetPort any    `yaml:"targetPort"`
			} `yaml:"ports"`
		} `yaml:"spec"`
	}
	svcm.decode(t, &svc)
	if !subset(svc.Spec.Selector, d.Spec.Template.Metadata.Labels) {
		t.Errorf("Service selector %v does not select the pods (labels %v)", svc.Spec.Selector, d.Spec.Template.Metadata.Labels)
	}
	svcPorts := map[string]bool{}
	for _, p := range svc.Spec.Ports {
		svcPorts[p.Name] = true
		if got := c.port(t, p.TargetPort); got != port {
			t.Errorf("Service port %s targets %d, want %d", p.Name, got, port)
		}
	}
	var sm struct {
		Spec struct {
			Selector struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"selector"`
			Endpoints []struct {
				Port string `yaml:"port"`
				Path string `yaml:"path"`
			} `yaml:"endpoints"`
		} `yaml:"spec"`
	}
	find(t, ms, "ServiceMonitor").decode(t, &sm)
	if !subset(sm.Spec.Selector.MatchLabels, svcm.Metadata.Labels) {
		t.Errorf("ServiceMonitor selector %v does not select the Service (labels %v)", sm.Spec.Selector.MatchLabels, svcm.Metadata.Labels)
	}
	if len(sm.Spec.Endpoints) == 0 {
		t.Error("ServiceMonitor has no endpoints")
	}
	for _, e := range sm.Spec.Endpoints {
		if !svcPorts[e.Port] || e.Path != "/metrics" {
			t.Errorf("ServiceMonitor endpoint %s%s; want a Service port name and /metrics", e.Port, e.Path)
		}
	}
}

func TestKubernetesShutdownGrace(t *testing.T) {
	ms := kube(t)
	d, _ := daemon(t, ms)
	env := kubeEnv(t, ms)
	env["KOMBO_API_KEY_FILE"] = keyFile(t)
	cfg, err := loadConfig(t, env)
	if err != nil {
		t.Fatal(err)
	}
	g := d.Spec.Template.Spec.TerminationGracePeriodSeconds
	if g == nil {
		t.Fatal("terminationGracePeriodSeconds is not set (Kubernetes' default is 30s)")
	}
	// After SHUTDOWN_TIMEOUT the daemon still naks what waits and drains NATS: leave it 5s.
	if grace := time.Duration(*g) * time.Second; grace < cfg.ShutdownTimeout+5*time.Second {
		t.Errorf("terminationGracePeriodSeconds = %s, want at least SHUTDOWN_TIMEOUT (%s) + 5s", grace, cfg.ShutdownTimeout)
	}
}

func TestKubernetesPodSecurity(t *testing.T) {
	ms := kube(t)
	d, c := daemon(t, ms)
	if d.Spec.Replicas != 2 {
		t.Errorf("replicas = %d, want 2", d.Spec.Replicas)
	}
	if !subset(d.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels) {
		t.Errorf("Deployment selector %v does not match its pod labels %v", d.Spec.Selector.MatchLabels, d.Spec.Template.Metadata.Labels)
	}
	pdb := podDisruptionBudget(t, ms, d.Spec.Template.Metadata.Labels)
	if pdb.Spec.MinAvailable == nil && pdb.Spec.MaxUnavailable == nil {
		t.Error("PodDisruptionBudget sets neither minAvailable nor maxUnavailable")
	}

	ps := d.Spec.Template.Spec.SecurityContext
	sc := c.SecurityContext
	isTrue := func(b *bool) bool { return b != nil && *b }
	if !isTrue(ps.RunAsNonRoot) && !isTrue(sc.RunAsNonRoot) {
		t.Error("runAsNonRoot is not set")
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		t.Error("readOnlyRootFilesystem is not true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation is not false")
	}
	if !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Error("capabilities do not drop ALL")
	}
	// The user is the image's own (numeric, so runAsNonRoot can check it).
	df := readDockerfile(t)
	if len(df.users) == 0 {
		t.Fatal("Dockerfile sets no USER")
	}
	for _, u := range []*int64{ps.RunAsUser, sc.RunAsUser} {
		if u == nil {
			continue
		}
		for _, du := range df.users {
			if uid, _, _ := strings.Cut(du, ":"); uid != strconv.FormatInt(*u, 10) {
				t.Errorf("runAsUser %d differs from the Dockerfile's USER %s", *u, du)
			}
		}
	}
	for _, r := range []string{"cpu", "memory"} {
		if c.Resources.Requests[r] == "" {
			t.Errorf("no resources.requests.%s", r)
		}
	}
	if c.Resources.Limits["memory"] == "" {
		t.Error("no resources.limits.memory")
	}
	if len(c.Args) > 0 && c.Args[0] != "run" {
		t.Errorf("args = %v; want the daemon (run)", c.Args)
	}
}

func TestKubernetesSecretMount(t *testing.T) {
	ms := kube(t)
	d, c := daemon(t, ms)
	keyPath := kubeEnv(t, ms)["KOMBO_API_KEY_FILE"]
	var secret struct {
		StringData map[string]string `yaml:"stringData"`
		Data       map[string]string `yaml:"data"`
	}
	sm := find(t, ms, "Secret")
	sm.decode(t, &secret)

	var mounted bool
	for _, vm := range c.VolumeMounts {
		if path.Dir(keyPath) != path.Clean(vm.MountPath) {
			continue
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name != vm.Name || v.Secret == nil {
				continue
			}
			if v.Secret.SecretName != sm.Metadata.Name {
				t.Errorf("volume %s mounts Secret %q; the Secret is %q", v.Name, v.Secret.SecretName, sm.Metadata.Name)
			}
			if !vm.ReadOnly {
				t.Errorf("the Secret is mounted read-write at %s", vm.MountPath)
			}
			file := path.Base(keyPath)
			for _, it := range v.Secret.Items {
				if it.Path != file {
					continue
				}
				mounted = true
				_, inStringData := secret.StringData[it.Key]
				_, inData := secret.Data[it.Key]
				if !inStringData && !inData {
					t.Errorf("Secret %s has no key %q", sm.Metadata.Name, it.Key)
				}
			}
			if len(v.Secret.Items) == 0 {
				mounted = true
				_, inStringData := secret.StringData[file]
				_, inData := secret.Data[file]
				if !inStringData && !inData {
					t.Errorf("Secret %s has no key %q", sm.Metadata.Name, file)
				}
			}
		}
	}
	if !mounted {
		t.Errorf("KOMBO_API_KEY_FILE=%s is not a file of a mounted Secret", keyPath)
	}
}

// nackStream is the spec of a NACK Stream, as far as the manifests use it (strictSpec refuses
// any other field).
type nackStream struct {
	Name              string   `yaml:"name"`
	Description       string   `yaml:"description"`
	Subjects          []string `yaml:"subjects"`
	Storage           string   `yaml:"storage"`
	Retention         string   `yaml:"retention"`
	Discard           string   `yaml:"discard"`
	Replicas          int      `yaml:"replicas"`
	MaxAge            string   `yaml:"maxAge"`
	MaxMsgs           *int64   `yaml:"maxMsgs"`
	MaxBytes          *int64   `yaml:"maxBytes"`
	MaxMsgsPerSubject *int64   `yaml:"maxMsgsPerSubject"`
	DuplicateWindow   string   `yaml:"duplicateWindow"`
}

// nackKeyValue is the spec of a NACK KeyValue, as far as the manifests use it.
type nackKeyValue struct {
	Bucket      string `yaml:"bucket"`
	Description string `yaml:"description"`
	History     int    `yaml:"history"`
	Storage     string `yaml:"storage"`
	Replicas    int    `yaml:"replicas"`
	TTL         string `yaml:"ttl"`
}

// nackConsumer is the spec of a NACK Consumer, as far as the manifests use it.
type nackConsumer struct {
	StreamName    string `yaml:"streamName"`
	DurableName   string `yaml:"durableName"`
	FilterSubject string `yaml:"filterSubject"`
	DeliverPolicy string `yaml:"deliverPolicy"`
	AckPolicy     string `yaml:"ackPolicy"`
	AckWait       string `yaml:"ackWait"`
	MaxDeliver    int    `yaml:"maxDeliver"`
	MaxAckPending int    `yaml:"maxAckPending"`
	Replicas      int    `yaml:"replicas"`
}

// nackDuration parses a NACK duration field ("" is 0, as NACK reads it).
func nackDuration(t *testing.T, field, s string) time.Duration {
	t.Helper()
	if s == "" {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Errorf("%s %q: %v", field, s, err)
	}
	return d
}

// nackStorage reads storage, which must be set: NACK's default is memory, the daemon's file.
func nackStorage(t *testing.T, what, s string) jetstream.StorageType {
	t.Helper()
	switch s {
	case "file":
		return jetstream.FileStorage
	case "memory":
		return jetstream.MemoryStorage
	}
	t.Errorf("%s: storage %q; set file or memory (NACK's default is memory)", what, s)
	return jetstream.FileStorage
}

// config is the stream NACK would create for s (with one replica, for a single test server),
// with NACK's defaults where s sets nothing; storage, retention and discard must be set.
func (s nackStream) config(t *testing.T) jetstream.StreamConfig {
	t.Helper()
	what := "Stream " + s.Name
	c := jetstream.StreamConfig{
		Name: s.Name, Description: s.Description, Subjects: s.Subjects, Replicas: 1,
		Storage:    nackStorage(t, what, s.Storage),
		MaxAge:     nackDuration(t, what+" maxAge", s.MaxAge),
		Duplicates: nackDuration(t, what+" duplicateWindow", s.DuplicateWindow),
		MaxMsgs:    -1, MaxBytes: -1, MaxConsumers: -1, MaxMsgSize: -1,
	}
	switch s.Retention {
	case "limits":
		c.Retention = jetstream.LimitsPolicy
	case "interest":
		c.Retention = jetstream.InterestPolicy
	case "workqueue":
		c.Retention = jetstream.WorkQueuePolicy
	default:
		t.Errorf("%s: retention %q; set limits, interest or workqueue", what, s.Retention)
	}
	switch s.Discard {
	case "old":
		c.Discard = jetstream.DiscardOld
	case "new":
		c.Discard = jetstream.DiscardNew
	default:
		t.Errorf("%s: discard %q; set old or new", what, s.Discard)
	}
	for _, f := range []struct {
		v   *int64
		dst *int64
	}{{s.MaxMsgs, &c.MaxMsgs}, {s.MaxBytes, &c.MaxBytes}, {s.MaxMsgsPerSubject, &c.MaxMsgsPerSubject}} {
		if f.v != nil {
			*f.dst = *f.v
		}
	}
	return c
}

// config is the bucket NACK would create for kv (with one replica).
func (kv nackKeyValue) config(t *testing.T) jetstream.KeyValueConfig {
	t.Helper()
	what := "KeyValue " + kv.Bucket
	if kv.History < 1 || kv.History > 64 {
		t.Errorf("%s: history %d; set 1 to 64", what, kv.History)
	}
	return jetstream.KeyValueConfig{
		Bucket: kv.Bucket, Description: kv.Description, History: uint8(min(max(kv.History, 1), 64)),
		TTL: nackDuration(t, what+" ttl", kv.TTL), Storage: nackStorage(t, what, kv.Storage), Replicas: 1,
	}
}

// onServer runs create, which must make the stream name, and returns the configuration the
// server holds for it, then deletes it so that the next create starts afresh. Comparing what
// the server holds compares the settings after the server's own defaults.
func onServer(t *testing.T, js jetstream.JetStream, name string, create func(context.Context) error) jetstream.StreamConfig {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := create(ctx); err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	s, err := js.Stream(ctx, name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(ctx, name); err != nil {
		t.Fatal(err)
	}
	return info.Config
}

// configDiff lists the fields in which got differs from want.
func configDiff(got, want jetstream.StreamConfig) []string {
	var diff []string
	g, w := reflect.ValueOf(got), reflect.ValueOf(want)
	for i := range g.NumField() {
		if !reflect.DeepEqual(g.Field(i).Interface(), w.Field(i).Interface()) {
			diff = append(diff, fmt.Sprintf("%s = %v, want %v", g.Type().Field(i).Name, g.Field(i).Interface(), w.Field(i).Interface()))
		}
	}
	return diff
}

// TestNACKMatchesProvisioning checks every NACK resource against what the daemon would create
// with the ConfigMap's settings, so that a team with JETSTREAM_PROVISION: "false" gets exactly
// the daemon's streams, consumer and buckets. The fuse stream and the two buckets are created
// on a real server, once by the daemon's own code and once as NACK would from the manifest,
// and the server's configurations compared; the requests stream and the consumer, which the
// daemon creates inside the consumer package, are compared with config.Config.
func TestNACKMatchesProvisioning(t *testing.T) {
	ms := kube(t)
	env := kubeEnv(t, ms)
	env["KOMBO_API_KEY_FILE"] = keyFile(t)
	env["JETSTREAM_PROVISION"] = "false" // how the NACK manifests are meant to be used
	cfg, err := loadConfig(t, env)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if strings.HasPrefix(m.APIVersion, "jetstream.nats.io/") && !slices.Contains([]string{"Stream", "Consumer", "KeyValue"}, m.Kind) {
			t.Errorf("%s: the daemon creates no %s", m, m.Kind)
		}
	}
	_, js := testkit.JetStream(t, natstest.Start(t).ClientURL())
	testkit.KeepStreamsDir(t, js)        // onServer deletes each stream and creates the next at once
	fuseName := cfg.StreamName + "_FUSE" // daemon.FuseStream

	// Which resource is which, and none missing or extra.
	streams := map[string]nackStream{}
	for _, m := range findAll(ms, "Stream") {
		var s nackStream
		m.strictSpec(t, &s)
		if _, dup := streams[s.Name]; dup {
			t.Errorf("%s: a second Stream %s", m, s.Name)
		}
		streams[s.Name] = s
		if s.Name != cfg.StreamName && s.Name != fuseName {
			t.Errorf("%s: the daemon creates no stream %q (only %s and %s)", m, s.Name, cfg.StreamName, fuseName)
		}
		if s.Replicas != cfg.StreamReplicas {
			t.Errorf("Stream %s replicas = %d, want STREAM_REPLICAS = %d", s.Name, s.Replicas, cfg.StreamReplicas)
		}
	}
	buckets := map[string]nackKeyValue{}
	for _, m := range findAll(ms, "KeyValue") {
		var kv nackKeyValue
		m.strictSpec(t, &kv)
		if _, dup := buckets[kv.Bucket]; dup {
			t.Errorf("%s: a second KeyValue %s", m, kv.Bucket)
		}
		buckets[kv.Bucket] = kv
		if kv.Bucket != cfg.LedgerBucket && kv.Bucket != cfg.ProtectBucket {
			t.Errorf("%s: the daemon creates no bucket %q (only %s and %s)", m, kv.Bucket, cfg.LedgerBucket, cfg.ProtectBucket)
		}
		if kv.Replicas != cfg.StreamReplicas {
			t.Errorf("KeyValue %s replicas = %d, want STREAM_REPLICAS = %d", kv.Bucket, kv.Replicas, cfg.StreamReplicas)
		}
	}
	want := []string{"Stream " + cfg.StreamName, "KeyValue " + cfg.LedgerBucket, "KeyValue " + cfg.ProtectBucket}
	if !cfg.DeleteFuse.Off() {
		want = append(want, "Stream "+fuseName)
	}
	for _, w := range want {
		kind, name, _ := strings.Cut(w, " ")
		_, okS := streams[name]
		_, okKV := buckets[name]
		if (kind == "Stream" && !okS) || (kind == "KeyValue" && !okKV) {
			t.Errorf("no NACK %s: the daemon refuses to start without it when JETSTREAM_PROVISION is false", w)
		}
	}

	// The fuse stream and the buckets: the daemon's code against NACK's reading, on a server.
	compare := func(what, name string, daemon, nack func(context.Context) error) {
		t.Helper()
		d := onServer(t, js, name, daemon)
		n := onServer(t, js, name, nack)
		for _, diff := range configDiff(n, d) {
			t.Errorf("%s: %s (what the daemon provisions)", what, diff)
		}
	}
	if s, ok := streams[fuseName]; ok && !cfg.DeleteFuse.Off() {
		compare("Stream "+fuseName, fuseName, func(ctx context.Context) error {
			_, err := control.OpenFuse(ctx, js, fuseName, cfg.DeleteFuse.Calls, cfg.DeleteFuse.Window, 1, true)
			return err
		}, func(ctx context.Context) error {
			_, err := js.CreateStream(ctx, s.config(t))
			return err
		})
		if want := []string{control.FuseSubject(fuseName)}; !slices.Equal(s.Subjects, want) {
			t.Errorf("Stream %s subjects = %v, want %v", fuseName, s.Subjects, want)
		}
	}
	if kv, ok := buckets[cfg.LedgerBucket]; ok {
		compare("KeyValue "+cfg.LedgerBucket, "KV_"+cfg.LedgerBucket, func(ctx context.Context) error {
			_, _, err := ledger.Open(ctx, js, ledger.Options{Bucket: cfg.LedgerBucket, Provision: true, Replicas: 1,
				MaxAge: cfg.LedgerMaxAge, MinMaxAge: cfg.StreamMaxAge})
			return err
		}, func(ctx context.Context) error {
			_, err := js.CreateKeyValue(ctx, kv.config(t))
			return err
		})
		// An outcome must outlive the request it answers: the daemon refuses a bucket that
		// forgets sooner than the stream (a ttl of 0 keeps outcomes forever).
		if ttl := nackDuration(t, "ttl", kv.TTL); ttl != 0 && ttl < cfg.StreamMaxAge {
			t.Errorf("KeyValue %s ttl %s is shorter than the stream's maxAge %s", kv.Bucket, kv.TTL, cfg.StreamMaxAge)
		}
	}
	if kv, ok := buckets[cfg.ProtectBucket]; ok {
		compare("KeyValue "+cfg.ProtectBucket, "KV_"+cfg.ProtectBucket, func(ctx context.Context) error {
			_, err := control.OpenProtect(ctx, js, cfg.ProtectBucket, 1, true)
			return err
		}, func(ctx context.Context) error {
			_, err := js.CreateKeyValue(ctx, kv.config(t))
			return err
		})
	}

	// The requests stream and the consumer.
	s := streams[cfg.StreamName]
	var c nackConsumer
	find(t, ms, "Consumer").strictSpec(t, &c)
	for _, check := range []struct {
		field     string
		got, want any
	}{
		{"Stream subjects", s.Subjects, cfg.StreamSubjects},
		{"Stream storage", s.Storage, "file"},
		{"Stream retention", s.Retention, "limits"},
		{"Stream discard", s.Discard, "old"},
		{"Stream maxAge", nackDuration(t, "maxAge", s.MaxAge), cfg.StreamMaxAge},
		{"Stream duplicateWindow", nackDuration(t, "duplicateWindow", s.DuplicateWindow), cfg.DuplicateWindow},
		{"Stream limits (maxMsgs, maxBytes, maxMsgsPerSubject)", s.MaxMsgs == nil && s.MaxBytes == nil && s.MaxMsgsPerSubject == nil, true},
		{"Consumer streamName", c.StreamName, cfg.StreamName},
		{"Consumer durableName", c.DurableName, cfg.ConsumerName},
		{"Consumer filterSubject", c.FilterSubject, cfg.RequestSubject},
		{"Consumer deliverPolicy", c.DeliverPolicy, "all"},
		{"Consumer ackPolicy", c.AckPolicy, "explicit"},
		{"Consumer ackWait", nackDuration(t, "ackWait", c.AckWait), cfg.AckWait},
		{"Consumer maxDeliver", c.MaxDeliver, cfg.MaxDeliver},
		{"Consumer maxAckPending", c.MaxAckPending, cfg.MaxAckPending},
		{"Consumer replicas", c.Replicas, cfg.StreamReplicas},
	} {
		if !reflect.DeepEqual(check.got, check.want) {
			t.Errorf("%s = %v, want %v (what the daemon provisions)", check.field, check.got, check.want)
		}
	}
	if least := cfg.KomboRetryMaxElapsed + 2*cfg.AckWait; nackDuration(t, "duplicateWindow", s.DuplicateWindow) <= least {
		t.Errorf("Stream duplicateWindow %s must exceed KOMBO_RETRY_MAX_ELAPSED + 2×ACK_WAIT = %s", s.DuplicateWindow, least)
	}
}

func TestPrometheusRuleMetricsExist(t *testing.T) {
	var rule struct {
		Spec struct {
			Groups []struct {
				Rules []struct {
					Alert string `yaml:"alert"`
					Expr  string `yaml:"expr"`
				} `yaml:"rules"`
			} `yaml:"groups"`
		} `yaml:"spec"`
	}
	find(t, kube(t), "PrometheusRule").decode(t, &rule)
	labels, values := metricFamilies(t)
	family := func(name string) (string, bool) {
		for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
			base := strings.TrimSuffix(name, suffix)
			if _, ok := labels[base]; ok && (suffix == "" || base != name) {
				return base, true
			}
		}
		return "", false
	}
	selectorRE := regexp.MustCompile(`\b(integration_deleter_\w+)(\{[^}]*\})?`)
	matcherRE := regexp.MustCompile(`(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
	var n int
	for _, g := range rule.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" {
				t.Errorf("rule %q: want alert and expr", r.Alert)
			}
			for _, sel := range selectorRE.FindAllStringSubmatch(r.Expr, -1) {
				n++
				fam, ok := family(sel[1])
				if !ok {
					t.Errorf("alert %s: metric %s does not exist (consumer.NewMetrics registers %v)", r.Alert, sel[1], slices.Sorted(maps.Keys(labels)))
					continue
				}
				for _, m := range matcherRE.FindAllStringSubmatch(sel[2], -1) {
					label, op, val := m[1], m[2], m[3]
					if !slices.Contains(labels[fam], label) {
						t.Errorf("alert %s: %s has no label %q (labels %v)", r.Alert, fam, label, labels[fam])
						continue
					}
					known := values[fam][label]
					if len(known) == 0 || (op != "=" && op != "=~") {
						continue
					}
					for _, alt := range strings.Split(val, "|") {
						if regexp.MustCompile(`^\w+$`).MatchString(alt) && !slices.Contains(known, alt) {
							t.Errorf("alert %s: %s{%s} is never %q (values %v)", r.Alert, fam, label, alt, known)
						}
					}
				}
			}
		}
	}
	if n == 0 {
		t.Error("the PrometheusRule uses none of the daemon's metrics")
	}
}

func TestImagesMatchMakeImages(t *testing.T) {
	tags := imageTags(t)
	for _, want := range []string{"integration-deleter", "fake-kombo", "nats-js"} {
		if _, ok := tags[want]; !ok {
			t.Errorf("scripts/images.sh does not build %s (builds %v)", want, tags)
		}
	}
	ms := kube(t)
	_, c := daemon(t, ms)
	if want := "integration-deleter:" + tags["integration-deleter"]; c.Image != want {
		t.Errorf("Deployment image = %s, want %s", c.Image, want)
	}
	var k struct {
		Images []struct {
			Name   string `yaml:"name"`
			NewTag string `yaml:"newTag"`
		} `yaml:"images"`
	}
	find(t, ms, "Kustomization").decode(t, &k)
	for _, img := range k.Images {
		if tag, ok := tags[img.Name]; !ok || (img.NewTag != "" && img.NewTag != tag) {
			t.Errorf("kustomization.yaml image %s:%s is not one make images builds (%v)", img.Name, img.NewTag, tags)
		}
	}
	for name, s := range compose(t).Services {
		repo, tag, _ := strings.Cut(s.Image, ":")
		if want, ok := tags[repo]; !ok || tag != want {
			t.Errorf("compose service %s: image %s is not one make images builds (%v)", name, s.Image, tags)
		}
		if s.PullPolicy != "never" {
			t.Errorf("compose service %s: pull_policy = %q, want never (the images are local)", name, s.PullPolicy)
		}
	}
}

func TestComposeMatchesCode(t *testing.T) {
	cf := compose(t)
	vars := configVars(t)
	df := readDockerfile(t)
	d := cf.Services["integration-deleter"]
	fake := cf.Services["fake-kombo"]
	nats := cf.Services["nats"]

	env := d.env()
	for name := range env {
		if _, ok := vars[name]; !ok {
			t.Errorf("compose: integration-deleter sets %s, which config.Config does not read", name)
		}
	}
	cfg, err := loadConfig(t, env)
	if err != nil {
		t.Fatalf("config.Load rejects compose.yaml's configuration:\n%v", err)
	}

	for name, s := range cf.Services {
		if s.NetworkMode != "host" {
			t.Errorf("compose service %s: network_mode = %q, want host (loopback ports, no bridge)", name, s.NetworkMode)
		}
	}

	// The daemon talks to the fake and to NATS where they listen.
	fenv := fake.env()
	u, err := url.Parse(cfg.KomboBaseURL)
	if err != nil {
		t.Fatal(err)
	}
	if u.Host != fenv["FAKE_KOMBO_ADDR"] || u.Path != "/v1" {
		t.Errorf("KOMBO_BASE_URL = %s, want http://%s/v1 (FAKE_KOMBO_ADDR)", cfg.KomboBaseURL, fenv["FAKE_KOMBO_ADDR"])
	}
	if fenv["FAKE_KOMBO_API_KEY"] != cfg.KomboAPIKey.Reveal() {
		t.Error("KOMBO_API_KEY differs from FAKE_KOMBO_API_KEY: every call would be rejected")
	}
	natsPort := ""
	for i, a := range nats.Command {
		if a == "-p" && i+1 < len(nats.Command) {
			natsPort = nats.Command[i+1]
		}
	}
	nu, err := url.Parse(cfg.NATSURL)
	if err != nil || nu.Port() != natsPort || !slices.Contains(nats.Command, "-js") {
		t.Errorf("NATS_URL = %s; nats runs %v (want JetStream on the same port)", cfg.NATSURL, nats.Command)
	}
	for _, s := range []composeService{nats, fake, d} {
		if ip := net.ParseIP(addrHost(s.Command, s.env())); ip != nil && !ip.IsLoopback() {
			t.Errorf("compose: %s listens on %s, not loopback", s.Image, ip)
		}
	}
	if h, _, _ := net.SplitHostPort(cfg.HTTPAddr); !net.ParseIP(h).IsLoopback() {
		t.Errorf("HTTP_ADDR = %s; want a loopback address with host networking", cfg.HTTPAddr)
	}

	// Health checks use the binaries' healthcheck subcommand, as the Dockerfile does.
	for stage, s := range map[string]composeService{"integration-deleter": d, "fake-kombo": fake} {
		want := append(append([]string{"CMD"}, df.entrypoints[stage]...), "healthcheck")
		if len(df.entrypoints[stage]) == 0 {
			t.Errorf("Dockerfile: stage %s has no ENTRYPOINT", stage)
		}
		if got := df.healthcheck[stage]; !slices.Equal(got, want[1:]) {
			t.Errorf("Dockerfile: stage %s HEALTHCHECK = %v, want %v", stage, got, want[1:])
		}
		if s.Healthcheck == nil || !slices.Equal(s.Healthcheck.Test, want) {
			t.Errorf("compose: %s healthcheck = %+v, want test %v", stage, s.Healthcheck, want)
		}
	}
	if d.DependsOn["nats"].Condition == "" || d.DependsOn["fake-kombo"].Condition != "service_healthy" {
		t.Errorf("compose: integration-deleter depends_on = %+v; want nats and a healthy fake-kombo", d.DependsOn)
	}

	grace, err := time.ParseDuration(d.StopGracePeriod)
	if err != nil {
		t.Fatalf("compose: stop_grace_period %q: %v", d.StopGracePeriod, err)
	}
	if grace <= cfg.ShutdownTimeout {
		t.Errorf("compose: stop_grace_period %s must exceed SHUTDOWN_TIMEOUT %s", grace, cfg.ShutdownTimeout)
	}

	// The fake's variables are the ones cmd/fake-kombo reads.
	files, _ := filepath.Glob("../cmd/fake-kombo/*.go")
	var src strings.Builder
	for _, f := range files {
		src.WriteString(readFile(t, f))
	}
	for name := range fenv {
		if !strings.Contains(src.String(), strconv.Quote(name)) {
			t.Errorf("compose: fake-kombo sets %s, which cmd/fake-kombo does not read", name)
		}
	}

	// NATS keeps its data in a named volume at the store directory.
	sd := ""
	for i, a := range nats.Command {
		if a == "-sd" && i+1 < len(nats.Command) {
			sd = nats.Command[i+1]
		}
	}
	var hasVolume bool
	for _, v := range nats.Volumes {
		name, target, _ := strings.Cut(v, ":")
		if _, ok := cf.Volumes[name]; ok && strings.TrimSuffix(target, ":rw") == sd {
			hasVolume = true
		}
	}
	if sd == "" || !hasVolume {
		t.Errorf("compose: nats stores in %q without a named volume there (%v)", sd, nats.Volumes)
	}
}

// addrHost returns the address a compose service listens on, from -a or an *_ADDR variable.
func addrHost(cmd []string, env map[string]string) string {
	for i, a := range cmd {
		if a == "-a" && i+1 < len(cmd) {
			return cmd[i+1]
		}
	}
	for k, v := range env {
		if strings.HasSuffix(k, "_ADDR") {
			h, _, _ := net.SplitHostPort(v)
			return h
		}
	}
	return ""
}

// TestOperatorControlsAtDefaults checks that the ConfigMap and compose.yaml show the operator's
// levers (CONTRACT.md, "Stopping an irreversible job") at the daemon's defaults.
func TestOperatorControlsAtDefaults(t *testing.T) {
	vars := configVars(t)
	var cm configMap
	find(t, kube(t), "ConfigMap").decode(t, &cm)
	cenv := compose(t).Services["integration-deleter"].env()
	for _, name := range []string{"DELETE_FUSE", "PROTECT_BUCKET", "DRY_RUN", "DRY_RUN_SUBJECT"} {
		def, ok := vars[name]
		if !ok {
			t.Errorf("config.Config does not read %s", name)
			continue
		}
		if def == "" {
			def = "false" // DRY_RUN: a bool without a default tag
		}
		for where, env := range map[string]map[string]string{"ConfigMap": cm.Data, "compose.yaml": cenv} {
			if got, ok := env[name]; !ok || got != def {
				t.Errorf("%s: %s = %q (set: %v), want the default %q", where, name, got, ok, def)
			}
		}
	}
}

// TestDryRunOverlay checks the shadow dry run of kubernetes-dry-run: an overlay of the base
// whose daemon runs with DRY_RUN under its own consumer, and whose pods the base's Service and
// PodDisruptionBudget do not select.
func TestDryRunOverlay(t *testing.T) {
	var k struct {
		Resources  []string `yaml:"resources"`
		NameSuffix string   `yaml:"nameSuffix"`
		Labels     []struct {
			Pairs            map[string]string `yaml:"pairs"`
			IncludeSelectors bool              `yaml:"includeSelectors"`
			IncludeTemplates bool              `yaml:"includeTemplates"`
		} `yaml:"labels"`
		Patches []struct {
			Path string `yaml:"path"`
		} `yaml:"patches"`
	}
	if err := yaml.Unmarshal([]byte(readFile(t, "kubernetes-dry-run/kustomization.yaml")), &k); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(k.Resources, []string{"../kubernetes"}) || k.NameSuffix == "" {
		t.Errorf("resources %v, nameSuffix %q; want the base ../kubernetes under names of its own", k.Resources, k.NameSuffix)
	}
	ms := kube(t)
	d, _ := daemon(t, ms)
	var separate bool
	for _, l := range k.Labels {
		for key, v := range l.Pairs {
			if base, ok := d.Spec.Selector.MatchLabels[key]; ok && base != v && l.IncludeSelectors && l.IncludeTemplates {
				separate = true
			}
		}
	}
	if !separate {
		t.Errorf("labels %+v do not change a label of the base's selector %v (selectors and templates included): the base's Service and PodDisruptionBudget would select the shadow", k.Labels, d.Spec.Selector.MatchLabels)
	}

	// The shadow's environment: the base ConfigMap with the overlay's ConfigMap patch.
	env := kubeEnv(t, ms)
	env["KOMBO_API_KEY_FILE"] = keyFile(t)
	base, err := loadConfig(t, env)
	if err != nil {
		t.Fatal(err)
	}
	var patched bool
	for _, p := range k.Patches {
		if p.Path == "" {
			continue
		}
		var cm struct {
			header `yaml:",inline"`
			Data   map[string]string `yaml:"data"`
		}
		if err := yaml.Unmarshal([]byte(readFile(t, filepath.Join("kubernetes-dry-run", p.Path))), &cm); err != nil {
			t.Fatal(err)
		}
		if cm.Kind != "ConfigMap" {
			continue
		}
		if cm.Metadata.Name != find(t, ms, "ConfigMap").Metadata.Name {
			t.Errorf("%s patches ConfigMap %q, not the base's", p.Path, cm.Metadata.Name)
		}
		maps.Copy(env, cm.Data)
		patched = true
	}
	if !patched {
		t.Fatal("no patch of the ConfigMap")
	}
	shadow, err := loadConfig(t, env)
	if err != nil {
		t.Fatalf("config.Load rejects the shadow's configuration:\n%v", err)
	}
	if base.DryRun || !shadow.DryRun {
		t.Errorf("DRY_RUN: base %v, shadow %v; want false and true", base.DryRun, shadow.DryRun)
	}
	if shadow.ConsumerName == base.ConsumerName {
		t.Errorf("the shadow shares CONSUMER_NAME %q with the real daemon: it would take their requests", shadow.ConsumerName)
	}
}

// pdbSpec is what the tests read of the PodDisruptionBudget.
type pdbSpec struct {
	Spec struct {
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		MinAvailable   any `yaml:"minAvailable"`
		MaxUnavailable any `yaml:"maxUnavailable"`
	} `yaml:"spec"`
}

// podDisruptionBudget reads the PodDisruptionBudget of ms and checks that it selects the
// pods labelled podLabels.
func podDisruptionBudget(t *testing.T, ms []manifest, podLabels map[string]string) pdbSpec {
	t.Helper()
	var pdb pdbSpec
	find(t, ms, "PodDisruptionBudget").decode(t, &pdb)
	if !subset(pdb.Spec.Selector.MatchLabels, podLabels) {
		t.Errorf("PodDisruptionBudget selector %v does not select the pods", pdb.Spec.Selector.MatchLabels)
	}
	return pdb
}

// checkConfigMapReadsOnlyConfig fails for each variable the ConfigMap of ms (named what in
// messages) sets that config.Config does not read.
func checkConfigMapReadsOnlyConfig(t *testing.T, ms []manifest, vars map[string]string, what string) {
	t.Helper()
	var cm configMap
	find(t, ms, "ConfigMap").decode(t, &cm)
	for name := range cm.Data {
		if _, ok := vars[name]; !ok {
			t.Errorf("%s sets %s, which config.Config does not read", what, name)
		}
	}
}
