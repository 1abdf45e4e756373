package faults

// The cases of issue 12 on the commands that look back and retry, and bad input to every
// operator command.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kombo-ops/integration-deleter/internal/control"
	"github.com/kombo-ops/integration-deleter/internal/testkit"
	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

// Case C5: looking back and retrying. A batch where a third of the integrations fail at
// once (Kombo answers 400 to their first DELETE); `failed --since 1h --json` lists exactly
// those; `retry --failed --json` re-requests each as <id>.retry1 with retry_of, and Kombo
// now deletes them; `status --json` shows the originals failed and the retries deleted.
func TestControlsFailedRetry(t *testing.T) {
	suite(t)
	const n = 30
	w := newWorld(t, kombotest.Options{Latency: 5 * time.Millisecond}, nil)
	reqs := requests("look", n)
	failing := map[string]request{}
	for i, q := range reqs {
		if i%3 == 0 {
			w.fake.Script(q.IntegrationID, kombotest.InputInvalid()) // the first call only; later ones succeed
			failing[q.ID] = q
		}
	}
	w.start("daemon", nil)

	began := time.Now()
	publish(t, w.js, reqs)
	tl := waitDone(t, w.js, ids(reqs), time.Minute)
	for id := range failing {
		if rs := tl.byID[id]; len(rs) != 1 || rs[0].Status != "failed" {
			t.Fatalf("request %s: got %v, want one failed result", id, tl.byID[id])
		}
	}

	failed := w.mustCLI("failed", "--since", "1h", "--json")
	listed := map[string]bool{}
	for _, l := range jsonLines(t, failed) {
		id, _ := l["request_id"].(string)
		if _, ok := failing[id]; !ok || l["status"] != "failed" || listed[id] {
			t.Errorf("`failed` lists %v: not one of the %d failed requests, or twice", l, len(failing))
		}
		listed[id] = true
	}
	if len(listed) != len(failing) {
		t.Errorf("`failed --since 1h` lists %d requests, want the %d that failed\n%s", len(listed), len(failing), failed)
	}

	retry := w.mustCLI("retry", "--failed", "--json")
	var retries []string
	for _, l := range jsonLines(t, retry) {
		id, _ := l["request_id"].(string)
		of, _ := l["retry_of"].(string)
		if _, ok := failing[of]; !ok || id != of+".retry1" {
			t.Errorf("`retry --failed` printed %v, want {request_id: <failed id>.retry1, retry_of: <failed id>}", l)
		}
		retries = append(retries, id)
	}
	if len(retries) != len(failing) {
		t.Fatalf("`retry --failed` re-requested %d, want %d\n%s", len(retries), len(failing), retry)
	}
	all := append(ids(reqs), retries...)
	tl = waitDone(t, w.js, all, time.Minute)
	for _, id := range retries {
		rs := tl.byID[id]
		of := strings.TrimSuffix(id, ".retry1")
		if len(rs) == 1 && (rs[0].Status != "deleted" || rs[0].IntegrationID != failing[of].IntegrationID ||
			!strings.Contains(string(rs[0].raw), fmt.Sprintf(`"retry_of":%q`, of))) {
			t.Errorf("retry %s: got %s, want deleted %s with retry_of %q", id, rs[0].raw, failing[of].IntegrationID, of)
		}
		if c := len(w.callsOf(http.MethodDelete, failing[of].IntegrationID)); c != 2 {
			t.Errorf("integration %s: %d DELETE calls, want 2 (the failed one and the retry's)", failing[of].IntegrationID, c)
		}
	}

	var asked []string
	for id := range failing {
		asked = append(asked, id)
	}
	asked = append(asked, retries...)
	status := w.mustCLI(append([]string{"status", "--json"}, asked...)...)
	shown := map[string]string{}
	for _, l := range jsonLines(t, status) {
		id, _ := l["request_id"].(string)
		st, _ := l["status"].(string)
		shown[id] = st
	}
	for _, id := range asked {
		want := "failed"
		if strings.HasSuffix(id, ".retry1") {
			want = "deleted"
		}
		if shown[id] != want {
			t.Errorf("`status` of %s: %q, want %q\n%s", id, shown[id], want, status)
		}
	}
	took := time.Since(began)
	checkTally(t, tl, len(all))
	report(t, row{Case: "C5 failed → retry --failed → status", In: tl.in, Stored: tl.stored, Lost: tl.lost, Dup: tl.dup,
		CallsPerReq: deletesPerRequest(w.fake, n), Took: took,
		Notes: fmt.Sprintf("%d of %d failed (400 on the first call); `failed --since 1h` listed %d (%dms); `retry --failed` published %d "+
			"<id>.retry1 (%dms), all deleted with retry_of; `status` of %d ids (%dms): originals failed, retries deleted; %s",
			len(failing), n, len(listed), failed.ended.Sub(failed.began).Milliseconds(), len(retries),
			retry.ended.Sub(retry.began).Milliseconds(), len(asked), status.ended.Sub(status.began).Milliseconds(), formatCounts(outcomes(tl)))})
}

// Case C6: bad input to each operator command, run as the binary: a usage error exits 2
// (also with NATS unreachable: it is found before anything connects) and changes nothing on
// the server; a command that cannot reach NATS exits 1 with a message, and does not hang.
func TestControlsBadInput(t *testing.T) {
	suite(t)
	w := newWorld(t, kombotest.Options{}, nil)
	w.start("daemon", nil) // creates the consumer and the buckets the commands act on
	// Something for the commands to change: a protection, and requests with their results.
	w.mustCLI("protect", "add", "personio:kept", "--reason", "faults: already there")
	done := requests("done", 3)
	publish(t, w.js, done)
	tl := waitDone(t, w.js, ids(done), 30*time.Second)
	before := w.serverState()
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	// Each usage error and a part of what stderr must say (the flag or value it refuses).
	usage := []struct {
		args []string
		says string
	}{
		{[]string{"pause", "--reason", "x", "--bogus"}, "bogus"},
		{[]string{"pause"}, "reason"},
		{[]string{"pause", "--reason", "x", "--for", "soon"}, "soon"},
		{[]string{"pause", "--reason", "x", "--for", "1h", "--until", future}, "until"},
		{[]string{"pause", "--reason", "x", "--until", "2001-02-03T04:05:06Z"}, "2001-02-03"},
		{[]string{"pause", "--reason", "x", "--until", "tomorrow"}, "tomorrow"},
		{[]string{"resume", "--bogus"}, "bogus"},
		{[]string{"protect", "add", "*"}, "--all"},
		{[]string{"protect", "add", "**", "--reason", "x"}, "--all"},
		{[]string{"protect", "add", "personio:ok", "*", "--reason", "x"}, "--all"}, // one bad pattern: none written
		{[]string{"protect", "add", ""}, "empty"},
		{[]string{"protect", "add"}, "pattern"},
		{[]string{"protect", "rm"}, "pattern"},
		{[]string{"protect", "frob", "x"}, "frob"},
		{[]string{"protect", "ls", "--bogus"}, "bogus"},
		{[]string{"status"}, "request"},
		{[]string{"status", "--bogus", "x"}, "bogus"},
		{[]string{"failed", "--since", "yesterday"}, "yesterday"},
		{[]string{"failed", "--bogus"}, "bogus"},
		{[]string{"retry"}, "--failed"},
		{[]string{"retry", "--failed", "--since", "1x"}, "1x"},
		{[]string{"retry", "--bogus", "x"}, "bogus"},
		{[]string{"check"}, "id"},
		{[]string{"check", "--bogus", "x"}, "bogus"},
	}
	began := time.Now()
	var bad []string
	for _, u := range usage {
		if r := w.cli(nil, u.args...); r.code != 2 || !strings.Contains(strings.ToLower(r.stderr), strings.ToLower(u.says)) {
			bad = append(bad, fmt.Sprintf("%s\nwant exit 2 with a message on stderr naming %q", r, u.says))
		}
	}
	unreachable := map[string]string{"NATS_URL": fmt.Sprintf("nats://127.0.0.1:%d", testkit.FreePort(t))}
	if r := w.cli(unreachable, "protect", "add", "*"); r.code != 2 {
		bad = append(bad, fmt.Sprintf("%s\nwant exit 2 before connecting to NATS", r))
	}
	runtime := [][]string{
		{"pause", "--reason", "x"}, {"resume"}, {"protect", "add", "personio:x"}, {"protect", "rm", "personio:x"},
		{"protect", "ls"}, {"status", "x"}, {"failed"}, {"retry", "x"},
	}
	var slowest time.Duration
	for _, args := range runtime {
		r := w.cli(unreachable, args...)
		slowest = max(slowest, r.ended.Sub(r.began))
		if r.code != 1 || !strings.Contains(strings.ToLower(r.stderr), "nats") {
			bad = append(bad, fmt.Sprintf("%s\nwant exit 1 with a message naming NATS", r))
		}
	}
	for _, b := range bad {
		t.Error(b)
	}
	after := w.serverState()
	if after != before {
		t.Errorf("the server changed:\nbefore %s\nafter  %s", before, after)
	}
	report(t, row{Case: "C6 bad input to the operator's commands", In: tl.in, Stored: tl.stored, Took: time.Since(began),
		Notes: fmt.Sprintf("%d usage errors → exit 2 (one with NATS unreachable), %d commands with NATS unreachable → exit 1 (slowest %.1fs); "+
			"%d wrong; server unchanged: %v (%s)", len(usage), len(runtime), slowest.Seconds(), len(bad), after == before, after)})
}

// serverState is what the operator's commands could change on the server, as one string:
// the pause, the protect list and the stream's messages.
func (w *world) serverState() string {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := control.OpenProtect(ctx, w.js, protectBucket, 1, false)
	if err != nil {
		w.t.Fatalf("open the protect list: %v", err)
	}
	list, err := p.List(ctx)
	if err != nil {
		w.t.Fatalf("list the protect list: %v", err)
	}
	s, err := w.js.Stream(ctx, testkit.StreamName)
	if err != nil {
		w.t.Fatalf("read the stream: %v", err)
	}
	st := w.pauseState()
	return fmt.Sprintf("paused %v %q; %d protected; stream: %d messages, last seq %d",
		st.Paused, st.Reason, len(list), s.CachedInfo().State.Msgs, s.CachedInfo().State.LastSeq)
}

// jsonLines decodes stdout as one JSON object per line.
func jsonLines(t *testing.T, r cliRun) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(r.stdout) {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%s\na line is not JSON: %v", r, err)
		}
		out = append(out, m)
	}
	return out
}
