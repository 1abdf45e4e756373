package deploy

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The kubernetes-cluster overlay and the NATS chart's values beside it (nats-values.yaml): the
// daemon at 3 replicas over a 3-server JetStream cluster. The test applies the overlay's patches
// to the base itself (no kustomize needed) and, where kubectl is installed, checks that
// `kubectl kustomize` builds the same.

const clusterDir = "kubernetes-cluster"

// ---------------------------------------------------------------- the overlay, applied

type clusterKustomization struct {
	Resources  []string `yaml:"resources"`
	NamePrefix string   `yaml:"namePrefix"`
	NameSuffix string   `yaml:"nameSuffix"`
	Patches    []struct {
		Path   string `yaml:"path"`
		Patch  string `yaml:"patch"`
		Target *struct {
			Kind string `yaml:"kind"`
			Name string `yaml:"name"`
		} `yaml:"target"`
	} `yaml:"patches"`
}

// jsonOp is one operation of a JSON 6902 patch.
type jsonOp struct {
	Op    string `yaml:"op"`
	Path  string `yaml:"path"`
	Value any    `yaml:"value"`
}

// clusterManifests returns the base's manifests with the overlay's patches applied: merge
// patches of a file (maps merged, anything else replaced; a list in one is refused, since
// kustomize merges lists by key) and JSON 6902 patches (add, replace, remove).
func clusterManifests(t *testing.T) []manifest {
	t.Helper()
	var k clusterKustomization
	if err := yaml.Unmarshal([]byte(readFile(t, filepath.Join(clusterDir, "kustomization.yaml"))), &k); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(k.Resources, []string{"../kubernetes"}) || k.NamePrefix != "" || k.NameSuffix != "" {
		t.Fatalf("%s/kustomization.yaml: resources %v, namePrefix %q, nameSuffix %q; want the base ../kubernetes under its own names (the NACK manifests and the operator's commands name them)",
			clusterDir, k.Resources, k.NamePrefix, k.NameSuffix)
	}
	base := kube(t)
	docs := make([]map[string]any, len(base))
	for i, m := range base {
		m.decode(t, &docs[i])
	}
	index := func(what, kind, name string) int {
		t.Helper()
		for i, m := range base {
			if m.Kind == kind && m.Metadata.Name == name {
				return i
			}
		}
		t.Fatalf("%s: the base has no %s %q", what, kind, name)
		return -1
	}
	if len(k.Patches) == 0 {
		t.Fatalf("%s/kustomization.yaml has no patches", clusterDir)
	}
	for _, p := range k.Patches {
		switch {
		case p.Path != "" && p.Target == nil:
			var doc map[string]any
			if err := yaml.Unmarshal([]byte(readFile(t, filepath.Join(clusterDir, p.Path))), &doc); err != nil {
				t.Fatalf("%s: %v", p.Path, err)
			}
			var h header
			if err := yaml.Unmarshal([]byte(readFile(t, filepath.Join(clusterDir, p.Path))), &h); err != nil {
				t.Fatal(err)
			}
			i := index(p.Path, h.Kind, h.Metadata.Name)
			mergePatch(t, p.Path, docs[i], doc)
		case p.Patch != "" && p.Target != nil:
			var ops []jsonOp
			if err := yaml.Unmarshal([]byte(p.Patch), &ops); err != nil {
				t.Fatalf("patch of %s %s: %v", p.Target.Kind, p.Target.Name, err)
			}
			what := "patch of " + p.Target.Kind + " " + p.Target.Name
			i := index(what, p.Target.Kind, p.Target.Name)
			for _, op := range ops {
				jsonPatch(t, what, docs[i], op)
			}
		default:
			t.Fatalf("%s/kustomization.yaml: a patch this test cannot apply (%+v): teach it", clusterDir, p)
		}
	}
	out := make([]manifest, len(base))
	for i, m := range base {
		var n yaml.Node
		if err := n.Encode(docs[i]); err != nil {
			t.Fatal(err)
		}
		out[i] = manifest{file: clusterDir + " on " + m.file, node: &n}
		out[i].decode(t, &out[i].header)
	}
	return out
}

// mergePatch merges patch into doc: maps key by key, any other value replaced.
func mergePatch(t *testing.T, what string, doc, patch map[string]any) {
	t.Helper()
	for k, v := range patch {
		switch v := v.(type) {
		case map[string]any:
			sub, ok := doc[k].(map[string]any)
			if !ok {
				sub = map[string]any{}
				doc[k] = sub
			}
			mergePatch(t, what, sub, v)
		case []any:
			t.Fatalf("%s: a list at %s; kustomize merges lists by key, which this test does not (use a JSON 6902 patch)", what, k)
		default:
			doc[k] = v
		}
	}
}

// jsonPatch applies one JSON 6902 operation to doc (paths through maps and list indexes).
func jsonPatch(t *testing.T, what string, doc map[string]any, op jsonOp) {
	t.Helper()
	parts := strings.Split(strings.TrimPrefix(op.Path, "/"), "/")
	for i, p := range parts {
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(p, "~1", "/"), "~0", "~")
	}
	var parent any = doc
	for _, p := range parts[:len(parts)-1] {
		switch c := parent.(type) {
		case map[string]any:
			parent = c[p]
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i < 0 || i >= len(c) {
				t.Fatalf("%s: %s: no element %q", what, op.Path, p)
			}
			parent = c[i]
		default:
			t.Fatalf("%s: %s: nothing at %q", what, op.Path, p)
		}
	}
	last := parts[len(parts)-1]
	m, ok := parent.(map[string]any)
	if !ok {
		t.Fatalf("%s: %s %s: only map members are patched here; teach the test lists", what, op.Op, op.Path)
	}
	_, exists := m[last]
	switch op.Op {
	case "add":
		m[last] = op.Value
	case "replace", "remove":
		if !exists {
			t.Fatalf("%s: %s %s: nothing to %s (kustomize refuses it)", what, op.Op, op.Path, op.Op)
		}
		if op.Op == "remove" {
			delete(m, last)
		} else {
			m[last] = op.Value
		}
	default:
		t.Fatalf("%s: op %q: teach the test", what, op.Op)
	}
}

// ---------------------------------------------------------------- the NATS chart's values

// natsValues is what the test reads of nats-values.yaml.
type natsValues struct {
	Config struct {
		Cluster struct {
			Enabled  bool `yaml:"enabled"`
			Replicas int  `yaml:"replicas"`
		} `yaml:"cluster"`
		JetStream struct {
			Enabled   bool `yaml:"enabled"`
			FileStore struct {
				Enabled *bool  `yaml:"enabled"`
				Dir     string `yaml:"dir"`
				PVC     struct {
					Enabled *bool  `yaml:"enabled"`
					Size    string `yaml:"size"`
				} `yaml:"pvc"`
				MaxSize string `yaml:"maxSize"`
			} `yaml:"fileStore"`
			MemoryStore struct {
				Enabled bool `yaml:"enabled"`
			} `yaml:"memoryStore"`
		} `yaml:"jetstream"`
		Nats struct {
			Port int `yaml:"port"`
		} `yaml:"nats"`
	} `yaml:"config"`
	Container struct {
		Env   map[string]any `yaml:"env"`
		Merge struct {
			Resources struct {
				Limits map[string]string `yaml:"limits"`
			} `yaml:"resources"`
		} `yaml:"merge"`
	} `yaml:"container"`
	PodTemplate struct {
		TopologySpreadConstraints map[string]struct {
			MaxSkew           int    `yaml:"maxSkew"`
			WhenUnsatisfiable string `yaml:"whenUnsatisfiable"`
		} `yaml:"topologySpreadConstraints"`
	} `yaml:"podTemplate"`
	PodDisruptionBudget struct {
		Enabled *bool `yaml:"enabled"`
	} `yaml:"podDisruptionBudget"`
}

// chartLeaves are the keys of the nats chart (nats-io/k8s helm/charts/nats, values.yaml of
// chart 1.2.1) that nats-values.yaml may set; chartFree are the chart's free-form maps (merge
// blocks, env, topology constraints by key), whose content is Kubernetes' or NATS' own. Helm
// silently ignores a key the chart does not read: a misspelt one would leave the default.
var (
	chartLeaves = []string{
		"config.cluster.enabled", "config.cluster.replicas", "config.cluster.port",
		"config.jetstream.enabled",
		"config.jetstream.fileStore.enabled", "config.jetstream.fileStore.dir", "config.jetstream.fileStore.maxSize",
		"config.jetstream.fileStore.pvc.enabled", "config.jetstream.fileStore.pvc.size",
		"config.jetstream.fileStore.pvc.storageClassName", "config.jetstream.fileStore.pvc.name",
		"config.jetstream.memoryStore.enabled", "config.jetstream.memoryStore.maxSize",
		"config.nats.port", "config.monitor.enabled", "config.serverNamePrefix",
		"container.image.repository", "container.image.tag", "container.image.pullPolicy", "container.image.registry",
		"podDisruptionBudget.enabled", "podTemplate.configChecksumAnnotation",
		"promExporter.enabled", "natsBox.enabled", "fullnameOverride", "nameOverride", "namespaceOverride",
	}
	chartFree = []string{
		"config.merge", "config.jetstream.merge", "config.cluster.merge", "config.jetstream.fileStore.pvc.merge",
		"container.env", "container.merge", "reloader.merge",
		"podTemplate.topologySpreadConstraints", "podTemplate.merge", "statefulSet.merge",
		"podDisruptionBudget.merge", "service.merge", "global.labels",
	}
)

// chartKeys checks every key of v (at path) against chartLeaves and chartFree.
func chartKeys(t *testing.T, path string, v any) {
	t.Helper()
	if slices.Contains(chartFree, path) {
		return
	}
	if m, ok := v.(map[string]any); ok {
		for k, sub := range m {
			p := k
			if path != "" {
				p = path + "." + k
			}
			chartKeys(t, p, sub)
		}
		return
	}
	if !slices.Contains(chartLeaves, path) {
		t.Errorf("nats-values.yaml: %s is not a key of the nats chart this test knows (Helm would ignore a misspelt one): check the chart's values.yaml and teach the test", path)
	}
}

// natsChart reads nats-values.yaml, and the release and namespace of the helm command its
// comment gives.
func natsChart(t *testing.T) (v natsValues, release, namespace string) {
	t.Helper()
	src := readFile(t, filepath.Join(clusterDir, "nats-values.yaml"))
	var raw map[string]any
	if err := yaml.Unmarshal([]byte(src), &raw); err != nil {
		t.Fatalf("nats-values.yaml: %v", err)
	}
	chartKeys(t, "", raw)
	if err := yaml.Unmarshal([]byte(src), &v); err != nil {
		t.Fatalf("nats-values.yaml: %v", err)
	}
	m := regexp.MustCompile(`helm upgrade --install (\S+) nats/nats --version (\S+) --namespace (\S+) .*-f deploy/kubernetes-cluster/nats-values\.yaml`).FindStringSubmatch(src)
	if m == nil {
		t.Fatal("nats-values.yaml: no `helm upgrade --install RELEASE nats/nats --version V --namespace NS ... -f deploy/kubernetes-cluster/nats-values.yaml` in its comment")
	}
	if !strings.Contains(m[1], "nats") {
		// The chart's fullname is the release name only when that contains the chart's name.
		t.Fatalf("release %q: name it with \"nats\" in it, or the Services are called %s-nats", m[1], m[1])
	}
	return v, m[1], m[3]
}

// bytesOf parses a memory size: a Kubernetes quantity (1Gi, 512Mi) or GOMEMLIMIT's (900MiB).
func bytesOf(t *testing.T, what, s string) int64 {
	t.Helper()
	m := regexp.MustCompile(`^(\d+)(Ki|Mi|Gi|Ti|KiB|MiB|GiB|TiB)$`).FindStringSubmatch(s)
	if m == nil {
		t.Errorf("%s %q: want a number with Ki, Mi, Gi or Ti", what, s)
		return 0
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n << (10 * (1 + strings.Index("KMGT", m[2][:1])))
}

// ---------------------------------------------------------------- tests

// TestNATSChartValues checks nats-values.yaml: a clustered JetStream on file storage, one
// server per node, keys the chart reads.
func TestNATSChartValues(t *testing.T) {
	v, _, _ := natsChart(t)
	c := v.Config
	if !c.Cluster.Enabled || c.Cluster.Replicas != 3 {
		t.Errorf("config.cluster: enabled %v, replicas %d; want a cluster of 3", c.Cluster.Enabled, c.Cluster.Replicas)
	}
	js := c.JetStream
	if !js.Enabled {
		t.Error("config.jetstream.enabled is not true")
	}
	isTrue := func(b *bool) bool { return b != nil && *b }
	if !isTrue(js.FileStore.Enabled) || !isTrue(js.FileStore.PVC.Enabled) {
		t.Errorf("config.jetstream.fileStore: enabled %v, pvc.enabled %v; want file storage on a PersistentVolume (set both, not by default)",
			js.FileStore.Enabled != nil && *js.FileStore.Enabled, js.FileStore.PVC.Enabled != nil && *js.FileStore.PVC.Enabled)
	}
	if bytesOf(t, "config.jetstream.fileStore.pvc.size", js.FileStore.PVC.Size) < 1<<30 {
		t.Errorf("config.jetstream.fileStore.pvc.size %s: want at least 1Gi", js.FileStore.PVC.Size)
	}
	if js.FileStore.MaxSize != "" && bytesOf(t, "maxSize", js.FileStore.MaxSize) > bytesOf(t, "pvc.size", js.FileStore.PVC.Size) {
		t.Errorf("config.jetstream.fileStore.maxSize %s exceeds the volume (%s)", js.FileStore.MaxSize, js.FileStore.PVC.Size)
	}
	if js.MemoryStore.Enabled {
		t.Error("config.jetstream.memoryStore is enabled; the daemon's streams and buckets are file storage")
	}
	tsc, ok := v.PodTemplate.TopologySpreadConstraints["kubernetes.io/hostname"]
	if !ok || tsc.MaxSkew != 1 || tsc.WhenUnsatisfiable != "DoNotSchedule" {
		t.Errorf("podTemplate.topologySpreadConstraints[kubernetes.io/hostname] = %+v (set %v); want maxSkew 1, DoNotSchedule: one server per node", tsc, ok)
	}
	if e := v.PodDisruptionBudget.Enabled; e != nil && !*e {
		t.Error("podDisruptionBudget.enabled is false: a drain could take two servers, and the quorum")
	}
	if gml, ok := v.Container.Env["GOMEMLIMIT"]; ok {
		limit := v.Container.Merge.Resources.Limits["memory"]
		if limit == "" {
			t.Error("container.env.GOMEMLIMIT without container.merge.resources.limits.memory")
		} else if bytesOf(t, "GOMEMLIMIT", fmt.Sprint(gml)) >= bytesOf(t, "limits.memory", limit) {
			t.Errorf("GOMEMLIMIT %v is not below the memory limit %s", gml, limit)
		}
	}
}

// TestClusterOverlay checks the kubernetes-cluster overlay against the code and against the
// NATS chart's values: 3 replicas one per node, a budget that keeps 2, STREAM_REPLICAS = the
// cluster's size on every stream, consumer and bucket, and NATS_URL naming each server.
func TestClusterOverlay(t *testing.T) {
	nv, release, namespace := natsChart(t)
	size := nv.Config.Cluster.Replicas
	ms := clusterManifests(t)

	// The environment: only variables the daemon reads, a configuration it accepts.
	checkConfigMapReadsOnlyConfig(t, ms, configVars(t), "the overlay's ConfigMap")
	env := kubeEnv(t, ms)
	env["KOMBO_API_KEY_FILE"] = keyFile(t)
	cfg, err := loadConfig(t, env)
	if err != nil {
		t.Fatalf("config.Load rejects the overlay's configuration:\n%v", err)
	}
	if cfg.StreamReplicas != size {
		t.Errorf("STREAM_REPLICAS = %d; the NATS cluster (nats-values.yaml) has %d servers", cfg.StreamReplicas, size)
	}
	port := nv.Config.Nats.Port
	if port == 0 {
		port = 4222 // the chart's default
	}
	var want []string
	for i := range size {
		want = append(want, fmt.Sprintf("nats://%s-%d.%s-headless.%s.svc.cluster.local:%d", release, i, release, namespace, port))
	}
	got := strings.Split(cfg.NATSURL, ",")
	for i := range got {
		got[i] = strings.TrimSpace(got[i])
	}
	if !slices.Equal(got, want) {
		t.Errorf("NATS_URL = %s,\nwant each server of the release %s in %s: %s", cfg.NATSURL, release, namespace, strings.Join(want, ","))
	}

	// The Deployment: a replica per server, spread one per node.
	d, _ := daemon(t, ms)
	if d.Spec.Replicas != size {
		t.Errorf("replicas = %d, want %d (as many as NATS servers)", d.Spec.Replicas, size)
	}
	var spread struct {
		Spec struct {
			Template struct {
				Spec struct {
					TopologySpreadConstraints []struct {
						MaxSkew           int    `yaml:"maxSkew"`
						TopologyKey       string `yaml:"topologyKey"`
						WhenUnsatisfiable string `yaml:"whenUnsatisfiable"`
						NodeTaintsPolicy  string `yaml:"nodeTaintsPolicy"`
						LabelSelector     struct {
							MatchLabels map[string]string `yaml:"matchLabels"`
						} `yaml:"labelSelector"`
					} `yaml:"topologySpreadConstraints"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	find(t, ms, "Deployment").decode(t, &spread)
	var byNode bool
	for _, c := range spread.Spec.Template.Spec.TopologySpreadConstraints {
		if !subset(c.LabelSelector.MatchLabels, d.Spec.Template.Metadata.Labels) {
			t.Errorf("topologySpreadConstraint on %s selects %v, not the pods (labels %v)", c.TopologyKey, c.LabelSelector.MatchLabels, d.Spec.Template.Metadata.Labels)
		}
		if c.TopologyKey == "kubernetes.io/hostname" {
			byNode = c.MaxSkew == 1 && c.WhenUnsatisfiable == "DoNotSchedule"
			if c.NodeTaintsPolicy != "Honor" {
				t.Errorf("the spread by node counts cordoned nodes (nodeTaintsPolicy %q, want Honor): on %d nodes a drained replica could not be placed", c.NodeTaintsPolicy, size)
			}
		}
	}
	if !byNode {
		t.Errorf("no topologySpreadConstraint on kubernetes.io/hostname with maxSkew 1 and DoNotSchedule: replicas could share a node (%+v)", spread.Spec.Template.Spec.TopologySpreadConstraints)
	}

	// The budget: keeps 2, lets a drain take one.
	pdb := podDisruptionBudget(t, ms, d.Spec.Template.Metadata.Labels)
	minAvail, ok := pdb.Spec.MinAvailable.(int)
	if !ok || pdb.Spec.MaxUnavailable != nil {
		t.Errorf("PodDisruptionBudget: minAvailable %v, maxUnavailable %v; want minAvailable a number and no maxUnavailable", pdb.Spec.MinAvailable, pdb.Spec.MaxUnavailable)
	}
	if minAvail != 2 || minAvail > d.Spec.Replicas-1 {
		t.Errorf("PodDisruptionBudget minAvailable = %v with %d replicas; want 2, at most replicas-1 so that a drain can go on", pdb.Spec.MinAvailable, d.Spec.Replicas)
	}

	// The NACK resources (applied on their own, from the base) at the cluster's size.
	for _, kind := range []string{"Stream", "Consumer", "KeyValue"} {
		found := findAll(kube(t), kind)
		if len(found) == 0 {
			t.Errorf("no NACK %s in deploy/kubernetes", kind)
		}
		for _, m := range found {
			var s struct {
				Spec struct {
					Replicas int    `yaml:"replicas"`
					Storage  string `yaml:"storage"`
				} `yaml:"spec"`
			}
			m.decode(t, &s)
			spec := s.Spec
			if spec.Replicas != cfg.StreamReplicas || spec.Replicas != size {
				t.Errorf("%s: replicas %d; want STREAM_REPLICAS of the overlay (%d) = the NATS cluster's size (%d)", m, spec.Replicas, cfg.StreamReplicas, size)
			}
			if kind != "Consumer" && spec.Storage != "file" {
				t.Errorf("%s: storage %q, want file", m, spec.Storage)
			}
		}
	}
}

// TestClusterOverlayKustomize checks the test's reading of the overlay against kustomize's own
// (`kubectl kustomize`, offline), where kubectl is installed.
func TestClusterOverlayKustomize(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("no kubectl: the overlay is checked by the test's own reading only")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, kubectl, "kustomize", clusterDir).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("kubectl kustomize %s: %v\n%s", clusterDir, err, ee.Stderr)
		}
		t.Fatal(err)
	}
	built := map[string]map[string]any{}
	dec := yaml.NewDecoder(strings.NewReader(string(out)))
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			break
		}
		var h header
		b, _ := yaml.Marshal(doc)
		if err := yaml.Unmarshal(b, &h); err != nil {
			t.Fatal(err)
		}
		built[h.Kind+"/"+h.Metadata.Name] = doc
	}
	for _, m := range clusterManifests(t) {
		if !slices.Contains([]string{"Deployment", "ConfigMap", "Service", "PodDisruptionBudget"}, m.Kind) {
			continue
		}
		kz, ok := built[m.Kind+"/"+m.Metadata.Name]
		if !ok {
			t.Errorf("kubectl kustomize builds no %s %s", m.Kind, m.Metadata.Name)
			continue
		}
		var ours map[string]any
		m.decode(t, &ours)
		for _, field := range []string{"spec", "data"} {
			if !reflect.DeepEqual(ours[field], kz[field]) {
				a, _ := yaml.Marshal(ours[field])
				b, _ := yaml.Marshal(kz[field])
				t.Errorf("%s %s: %s differs from kustomize's:\nthe test's:\n%s\nkustomize's:\n%s", m.Kind, m.Metadata.Name, field, a, b)
			}
		}
	}
}
