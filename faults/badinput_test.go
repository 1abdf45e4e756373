package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/internal/testkit"
	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

// TestBadInput publishes malformed, oversized and tricky request events to the real daemon.
// Each gets the contract's answer: failed EVENT.INVALID without any call to Kombo, or deleted
// with Kombo receiving the id as exactly one path segment. Nothing is lost.
func TestBadInput(t *testing.T) {
	suite(t)
	// NATS refuses payloads over max_payload (1 MB by default) before the daemon sees them;
	// the 10 MB event must reach the daemon.
	w := newWorld(t, kombotest.Options{}, func(o *server.Options) { o.MaxPayload = 16 << 20 })
	d := w.start("daemon", nil)

	type want int
	const (
		invalid   want = iota // failed EVENT.INVALID, attempts 0, no call
		deleted               // deleted, one call with the id as one path segment
		deletedOr             // deleted, or failed EVENT.INVALID with a message saying why
	)
	obj := func(fields ...string) []byte { // key, value, key, value… values already JSON
		var b strings.Builder
		b.WriteString("{")
		for i := 0; i < len(fields); i += 2 {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, "%q:%s", fields[i], fields[i+1])
		}
		b.WriteString("}")
		return []byte(b.String())
	}
	str := func(s string) string {
		b, _ := json.Marshal(s)
		return string(b)
	}
	// padded returns an event for id padded with an unknown field to exactly size bytes.
	padded := func(id string, size int) []byte {
		base := obj("integration_id", str(id), "pad", `""`)
		pad := strings.Repeat("x", size-len(base))
		return obj("integration_id", str(id), "pad", str(pad))
	}
	nested := func(id string, depth int) []byte {
		return obj("integration_id", str(id), "x", strings.Repeat("[", depth)+strings.Repeat("]", depth))
	}
	long := func(n int) string { p := "personio:"; return p + strings.Repeat("a", n-len(p)) }

	type badCase struct {
		name   string
		data   []byte
		want   want
		id     string // the integration id Kombo must get (deleted), or the one the result echoes (invalid)
		inMsg  string // a part of error.message (invalid)
		header string // Nats-Msg-Id; "" uses "bad-<name>"
	}
	cases := []badCase{
		{name: "invalid-utf8", data: []byte("{\"integration_id\":\"personio:\xff\xfe\"}"), want: invalid, inMsg: "UTF-8"},
		{name: "10MB", data: padded("personio:ten-mb", 10<<20), want: invalid, inMsg: "bytes"},
		{name: "64KiB-exactly", data: padded("personio:exactly-64k", 64<<10), want: deleted, id: "personio:exactly-64k"},
		{name: "64KiB-plus-1", data: padded("personio:over-64k", 64<<10+1), want: invalid, inMsg: "65537"},
		{name: "nested-500", data: nested("personio:nested-500", 500), want: deleted, id: "personio:nested-500"},
		{name: "nested-20000", data: nested("personio:nested-20000", 20000), want: deletedOr, id: "personio:nested-20000"},
		{name: "duplicate-keys", data: []byte(`{"integration_id":"personio:dup-first","integration_id":"personio:dup-second"}`), want: deletedOr},
		{name: "unknown-fields", data: obj("integration_id", str("personio:unknown"), "extra", `{"a":[1,2,{"b":null}]}`, "attempts", "7",
			"base_url", str("http://127.0.0.1:9/evil"), "kombo_base_url", str("http://127.0.0.1:9/evil")), want: deleted, id: "personio:unknown"},
		{name: "id-is-a-url", data: obj("integration_id", str("http://127.0.0.1:9/v1/integrations/x")), want: deleted, id: "http://127.0.0.1:9/v1/integrations/x"},
		{name: "nul", data: obj("integration_id", str("personio:a\x00b")), want: invalid, id: "personio:a\x00b", inMsg: "control"},
		{name: "newline", data: obj("integration_id", str("personio:a\nb")), want: invalid, id: "personio:a\nb", inMsg: "control"},
		{name: "del", data: obj("integration_id", str("personio:a\x7fb")), want: invalid, id: "personio:a\x7fb", inMsg: "control"},
		{name: "c1", data: obj("integration_id", str("personio:a\u0085b")), want: invalid, id: "personio:a\u0085b", inMsg: "control"},
		{name: "id-256-bytes", data: obj("integration_id", str(long(256))), want: deleted, id: long(256)},
		{name: "id-257-bytes", data: obj("integration_id", str(long(257))), want: invalid, id: long(257), inMsg: "257"},
		{name: "id-256-bytes-multibyte", data: obj("integration_id", str(strings.Repeat("é", 128))), want: deleted, id: strings.Repeat("é", 128)},
		{name: "id-257-bytes-multibyte", data: obj("integration_id", str(strings.Repeat("é", 128)+"a")), want: invalid, id: strings.Repeat("é", 128) + "a", inMsg: "257"},
		{name: "id-empty", data: obj("integration_id", `""`), want: invalid, inMsg: "empty"},
		{name: "id-missing", data: obj("requested_by", str("svc")), want: invalid, inMsg: "missing"},
		{name: "id-null", data: obj("integration_id", "null"), want: invalid, inMsg: "null"},
		{name: "id-number", data: obj("integration_id", "42"), want: invalid, inMsg: "string"},
		{name: "not-json", data: []byte("delete personio:abc please"), want: invalid, inMsg: "JSON"},
		{name: "json-array", data: []byte(`["personio:abc"]`), want: invalid, inMsg: "JSON"},
		{name: "empty-payload", data: nil, want: invalid, inMsg: "JSON"},
		{name: "request-id-257-bytes", data: obj("integration_id", str("personio:long-request-id"), "request_id", str(long(257))),
			want: invalid, id: "personio:long-request-id", inMsg: "request_id"},
	}

	// Ids that mean something in a URL or to a reader, deleted byte for byte: the client
	// escapes each as one path segment.
	for _, c := range [][2]string{{"slash", "personio:a/b"}, {"dotdot-slash", "../x"}, {"dotdot", ".."}, {"dot", "."},
		{"percent-2F", "personio:x%2Fy"}, {"percent", "personio:100%"}, {"question", "personio:x?y=1"},
		{"hash", "personio:x#frag"}, {"space", "personio:a b"}, {"rtl-override", "personio:\u202Egnp.exe\u202C"},
		{"rtl-mark", "personio:\u200Fabc"}} {
		cases = append(cases, badCase{name: c[0], data: obj("integration_id", str(c[1])), want: deleted, id: c[1]})
	}

	seen := map[string]bool{}
	expect := map[string]int{} // request id → index in cases
	for i, c := range cases {
		hdr := c.header
		if hdr == "" {
			hdr = "bad-" + c.name
		}
		if seen[hdr] {
			t.Fatalf("two cases with Nats-Msg-Id %s", hdr)
		}
		seen[hdr] = true
		expect[hdr] = i
		publishRaw(t, w.js, c.data, map[string]string{jetstream.MsgIDHeader: hdr})
	}
	// Without request_id and Nats-Msg-Id, the request id is <stream>-<sequence>.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := w.js.Publish(ctx, testkit.RequestSubject, []byte(`{"integration_id":"personio:no-request-id"}`))
	if err != nil {
		t.Fatal(err)
	}
	seqID := fmt.Sprintf("%s-%d", testkit.StreamName, ack.Sequence)
	cases = append(cases, struct {
		name   string
		data   []byte
		want   want
		id     string
		inMsg  string
		header string
	}{name: "no-request-id", want: deleted, id: "personio:no-request-id"})
	expect[seqID] = len(cases) - 1

	all := make([]string, 0, len(expect))
	for id := range expect {
		all = append(all, id)
	}
	began := time.Now()
	tl := waitDone(t, w.js, all, 2*time.Minute)
	took := time.Since(began)
	checkTally(t, tl, len(all))

	calls := w.deleteCalls()
	called := map[string]bool{}
	notes := []string{}
	for reqID, i := range expect {
		c := cases[i]
		rs := tl.byID[reqID]
		if len(rs) != 1 {
			continue // reported by checkTally
		}
		r := rs[0]
		isInvalid := r.Status == "failed" && r.Code() == "EVENT.INVALID"
		switch {
		case c.want == invalid || (c.want == deletedOr && isInvalid):
			if !isInvalid || r.Attempts != 0 || r.Error.Message == "" || !strings.Contains(r.Error.Message, c.inMsg) {
				t.Errorf("%s: got %.300s, want failed EVENT.INVALID, attempts 0, a message with %q", c.name, r.raw, c.inMsg)
			}
			if c.want == invalid && c.id != "" && r.IntegrationID != c.id {
				t.Errorf("%s: result integration_id %q, want %q (what could be read)", c.name, r.IntegrationID, c.id)
			}
			if c.want == deletedOr {
				notes = append(notes, fmt.Sprintf("%s: EVENT.INVALID (%s)", c.name, r.Error.Message))
			}
		default:
			id := c.id
			if id == "" { // duplicate keys: whichever the daemon read, Kombo must get that one
				id = r.IntegrationID
				notes = append(notes, fmt.Sprintf("%s: deleted %s", c.name, id))
			} else if c.want == deletedOr {
				notes = append(notes, c.name+": deleted")
			}
			if r.Status != "deleted" || r.IntegrationID != id {
				t.Errorf("%s: got %.300s, want deleted %q", c.name, r.raw, id)
			}
			cs := calls[id]
			if len(cs) != 1 {
				t.Errorf("%s: Kombo got %d DELETEs of %q, want 1", c.name, len(cs), id)
				continue
			}
			called[id] = true
			seg, ok := strings.CutPrefix(cs[0].RawURI, "/v1/integrations/")
			unescaped, err := url.PathUnescape(seg)
			if !ok || strings.ContainsAny(seg, "/?#") || err != nil || unescaped != id {
				t.Errorf("%s: Kombo got %s %q: want /v1/integrations/ and %q as one escaped segment", c.name, cs[0].Method, cs[0].RawURI, id)
			}
		}
	}
	for id, cs := range calls {
		if !called[id] {
			t.Errorf("Kombo got %d DELETEs of %q, which no valid event asked for", len(cs), id)
		}
	}
	if d.exited() {
		t.Errorf("the daemon exited: %s", d.state)
	}
	if code, _ := d.get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz %d after the bad input", code)
	}
	t.Logf("where the contract leaves a choice: %s", strings.Join(notes, "; "))
	report(t, row{Case: "bad input: malformed, oversized, tricky ids", In: tl.in, Stored: tl.stored, Lost: tl.lost, Dup: tl.dup,
		CallsPerReq: float64(w.fake.Stats().Deletes) / float64(len(all)), Took: took,
		Notes: fmt.Sprintf("%d events; %s; %s", len(all), formatCounts(outcomes(tl)), strings.Join(notes, "; "))})
}
