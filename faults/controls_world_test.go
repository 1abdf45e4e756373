package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/internal/control"
	"github.com/kombo-ops/integration-deleter/internal/testkit"
	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

// The operator's controls (issue 12) as a user meets them: the commands run as the binary
// with the daemon's environment, and what they change is read from the daemons' results,
// /readyz and /metrics and from the calls Kombo received.

// cliRun is one run of a command of the binary.
type cliRun struct {
	args           []string
	code           int
	stdout, stderr string
	began, ended   time.Time // when the process was started, and when it had ended
}

// String shows the command, its exit code, its stdout and the last line of its stderr.
func (r cliRun) String() string {
	return fmt.Sprintf("`%s` exit %d\nstdout: %s\nstderr (last line): %s", strings.Join(r.args, " "), r.code, r.stdout, lastLine(r.stderr))
}

// runCLI runs the binary with exactly the environment env and args, and waits up to 30 s.
func runCLI(t *testing.T, env map[string]string, args ...string) cliRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, daemonBin(), args...)
	for _, k := range slices.Sorted(maps.Keys(env)) {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	r := cliRun{args: args, began: time.Now()}
	err := cmd.Run()
	r.ended = time.Now()
	r.stdout, r.stderr = stdout.String(), stderr.String()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("`%s` still ran after 30s", strings.Join(args, " "))
	case err != nil && !errors.As(err, &exit):
		t.Fatalf("run `%s`: %v", strings.Join(args, " "), err)
	}
	r.code = cmd.ProcessState.ExitCode()
	t.Logf("`%s` → exit %d in %dms", strings.Join(args, " "), r.code, r.ended.Sub(r.began).Milliseconds())
	return r
}

// cli runs a command of the binary with the daemons' environment in w (with overrides).
func (w *world) cli(overrides map[string]string, args ...string) cliRun {
	w.t.Helper()
	return runCLI(w.t, w.env(overrides), args...)
}

// mustCLI runs a command that must exit 0.
func (w *world) mustCLI(args ...string) cliRun {
	w.t.Helper()
	r := w.cli(nil, args...)
	if r.code != 0 {
		w.t.Fatalf("%s", r)
	}
	return r
}

// callsOf returns the fake's calls with method (DELETE or GET) of the integration ids,
// in arrival order; no ids: all of them.
func (w *world) callsOf(method string, ids ...string) []kombotest.Call {
	var out []kombotest.Call
	for _, c := range w.fake.Calls() {
		if c.Method == method && c.ID != "" && (len(ids) == 0 || slices.Contains(ids, c.ID)) {
			out = append(out, c)
		}
	}
	return out
}

// startedAfter counts the calls that started after cut.
func startedAfter(calls []kombotest.Call, cut time.Time) int {
	n := 0
	for _, c := range calls {
		if c.Start.After(cut) {
			n++
		}
	}
	return n
}

// lastStart is the latest start of calls (zero for none).
func lastStart(calls []kombotest.Call) time.Time {
	var last time.Time
	for _, c := range calls {
		if c.Start.After(last) {
			last = c.Start
		}
	}
	return last
}

// publishEvent stores one request event with the fields given and Nats-Msg-Id id.
func (w *world) publishEvent(id string, fields map[string]any) {
	w.t.Helper()
	ev := map[string]any{"request_id": id, "requested_by": "faults", "reason": w.t.Name()}
	maps.Copy(ev, fields)
	data, _ := json.Marshal(ev)
	publishRaw(w.t, w.js, data, map[string]string{jetstream.MsgIDHeader: id})
}

// subjectResults reads every message stored on subject (a result subject of a dry run).
func (w *world) subjectResults(subject string) []result {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	want := w.subjectCount(subject)
	if want == 0 {
		return nil
	}
	oc, err := w.js.OrderedConsumer(ctx, testkit.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		w.t.Fatalf("read %s: %v", subject, err)
	}
	var out []result
	for len(out) < want {
		batch, err := oc.Fetch(want-len(out), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			w.t.Fatalf("read %s: %v", subject, err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			var r result
			if err := json.Unmarshal(m.Data(), &r.Result); err != nil {
				w.t.Fatalf("message on %s is not JSON: %v: %q", subject, err, m.Data())
			}
			r.subject, r.raw, r.msgID = m.Subject(), m.Data(), m.Headers().Get(jetstream.MsgIDHeader)
			out = append(out, r)
		}
		if got == 0 && (ctx.Err() != nil || (batch.Error() != nil && !errors.Is(batch.Error(), nats.ErrTimeout))) {
			w.t.Fatalf("read %s: %d of %d messages: %v", subject, len(out), want, batch.Error())
		}
	}
	return out
}

// subjectCount is how many messages the stream holds on subject (-1 when it cannot be read).
func (w *world) subjectCount(subject string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := w.js.Stream(ctx, testkit.StreamName)
	if err != nil {
		return -1
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		return -1
	}
	return int(info.State.Subjects[subject])
}

// pauseState reads the durable consumer's pause as the server has it.
func (w *world) pauseState() control.PauseState {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := control.ReadPause(ctx, w.js, testkit.LedgerBucket, testkit.StreamName, testkit.ConsumerName)
	if err != nil {
		w.t.Fatalf("read the pause: %v", err)
	}
	return st
}

// readyzSays reports whether d answers /readyz 200 with each of parts in the body.
func readyzSays(d *daemon, parts ...string) bool {
	code, body := d.get("/readyz")
	if code != http.StatusOK {
		return false
	}
	for _, p := range parts {
		if !strings.Contains(body, p) {
			return false
		}
	}
	return true
}

// handledBy counts, per daemon, the requests of ids whose outcome it logged.
func handledBy(ids []string, ds ...*daemon) map[string]int {
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	out := map[string]int{}
	for _, d := range ds {
		for _, l := range d.out.logLines("request") {
			if id, _ := l["request_id"].(string); want[id] && l["outcome"] != nil {
				out[d.name]++
			}
		}
	}
	return out
}
