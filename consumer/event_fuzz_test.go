package consumer

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// FuzzDecodeRequest feeds arbitrary payloads and Nats-Msg-Id headers to the request decoder.
// It never panics; an invalid event is an *invalidEventError that says why; a valid one has
// an integration id the contract accepts; and either way the request id can be used as a
// header value of the result (non-empty, valid UTF-8, no control characters, at most 256
// bytes).
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []struct {
		data  string
		msgID string
		seq   uint64
	}{
		{`{"integration_id":"personio:CBNMt7dSNCzBdnRTx87dev4E","request_id":"r-1","requested_by":"svc","reason":"offboarding"}`, "", 1},
		{`{"integration_id":"personio:abc"}`, "msg-1", 2},
		{`{"integration_id":"../x","request_id":""}`, "", 3},
		{`{"integration_id":"a\u0000b"}`, "", 4},
		{`{"integration_id":"a","integration_id":"b"}`, "", 5},
		{`{"integration_id":42}`, "msg\n2", 6},
		{`{"integration_id":"x","request_id":"\u0085"}`, "", 7},
		{`[1,2,3]`, "", 8},
		{`null`, "", 9},
		{"{\"integration_id\":\"\xff\"}", "\xff", 10},
		{`{"integration_id":"` + strings.Repeat("a", 257) + `"}`, strings.Repeat("m", 257), 11},
		{`{"integration_id":"\u202Eevil"}`, "", 12},
	} {
		f.Add([]byte(s.data), s.msgID, s.seq)
	}
	f.Fuzz(func(t *testing.T, data []byte, msgID string, seq uint64) {
		hdr := nats.Header{}
		if msgID != "" {
			hdr.Set(jetstream.MsgIDHeader, msgID)
		}
		req, err := decodeRequest(data, hdr, "INTEGRATION_DELETE", seq)
		if why := usableID(req.RequestID); why != "" {
			t.Fatalf("request id %q %s (err %v)", req.RequestID, why, err)
		}
		if err != nil {
			var inv *invalidEventError
			if !errors.As(err, &inv) {
				t.Fatalf("got %T %v, want an *invalidEventError", err, err)
			}
			if strings.TrimSpace(inv.Reason) == "" {
				t.Fatalf("invalid event without a reason: %q", data)
			}
			return
		}
		if len(data) > maxPayload {
			t.Fatalf("a payload of %d bytes is valid, want invalid over %d", len(data), maxPayload)
		}
		id := req.IntegrationID
		switch {
		case id == "":
			t.Fatalf("valid event with an empty integration id: %q", data)
		case len(id) > maxIDLength:
			t.Fatalf("valid event with an integration id of %d bytes", len(id))
		case !utf8.ValidString(id):
			t.Fatalf("valid event with an integration id that is not UTF-8: %q", id)
		case strings.ContainsFunc(id, unicode.IsControl):
			t.Fatalf("valid event with a control character in the integration id: %q", id)
		}
		// The id is the one any JSON reader finds in the payload.
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("valid event whose payload is not a JSON object: %v: %q", err, data)
		}
		if got, _ := m["integration_id"].(string); got != id {
			t.Fatalf("decoded integration id %q, the payload says %q", id, got)
		}
	})
}

// usableID returns why id cannot be a request id, or "".
func usableID(id string) string {
	switch {
	case id == "":
		return "is empty"
	case len(id) > maxIDLength:
		return "is longer than 256 bytes"
	case !utf8.ValidString(id):
		return "is not valid UTF-8"
	case strings.ContainsFunc(id, unicode.IsControl):
		return "has a control character"
	}
	return ""
}
