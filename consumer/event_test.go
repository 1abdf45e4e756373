package consumer

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
)

func TestDecodeRequest(t *testing.T) {
	const (
		stream = "INTEGRATION_DELETE"
		seq    = 42
		seqID  = "INTEGRATION_DELETE-42"
		tp     = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		ts     = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
	)
	msgID := func(id string) nats.Header { return nats.Header{"Nats-Msg-Id": {id}} }
	id256 := strings.Repeat("a", maxIDLength)
	id257 := strings.Repeat("a", maxIDLength+1)

	// pad returns a valid event of exactly n bytes.
	pad := func(n int) string {
		head := `{"integration_id":"personio:pad","request_id":"pad","pad":"`
		return head + strings.Repeat("x", n-len(head)-2) + `"}`
	}

	tests := []struct {
		name   string
		data   string
		hdr    nats.Header
		want   request
		wantIn string // "" = valid; else a part of the invalidEventError's reason
	}{
		// The request id: JSON request_id, else Nats-Msg-Id, else <stream>-<seq>.
		{name: "request_id from JSON wins", data: `{"integration_id":"personio:1","request_id":"json-id"}`, hdr: msgID("hdr-id"),
			want: request{IntegrationID: "personio:1", RequestID: "json-id"}},
		{name: "request_id from Nats-Msg-Id", data: `{"integration_id":"personio:1"}`, hdr: msgID("hdr-id"),
			want: request{IntegrationID: "personio:1", RequestID: "hdr-id"}},
		{name: "request_id from stream and sequence", data: `{"integration_id":"personio:1"}`,
			want: request{IntegrationID: "personio:1", RequestID: seqID}},
		{name: "empty request_id is absent", data: `{"integration_id":"personio:1","request_id":""}`, hdr: msgID("hdr-id"),
			want: request{IntegrationID: "personio:1", RequestID: "hdr-id"}},
		{name: "empty request_id and no header", data: `{"integration_id":"personio:1","request_id":""}`,
			want: request{IntegrationID: "personio:1", RequestID: seqID}},
		{name: "null request_id is absent", data: `{"integration_id":"personio:1","request_id":null}`, hdr: msgID("hdr-id"),
			want: request{IntegrationID: "personio:1", RequestID: "hdr-id"}},
		{name: "empty Nats-Msg-Id is absent", data: `{"integration_id":"personio:1"}`, hdr: msgID(""),
			want: request{IntegrationID: "personio:1", RequestID: seqID}},
		{name: "request_id of exactly 256 bytes", data: `{"integration_id":"personio:1","request_id":"` + id256 + `"}`,
			want: request{IntegrationID: "personio:1", RequestID: id256}},
		{name: "request_id with a control character", data: `{"integration_id":"personio:1","request_id":"r\u0001x"}`, hdr: msgID("hdr-id"),
			want:   request{IntegrationID: "personio:1", RequestID: "hdr-id"},
			wantIn: "request_id has a control character (U+0001) at byte 1"},
		{name: "request_id over 256 bytes", data: `{"integration_id":"personio:1","request_id":"` + id257 + `"}`,
			want:   request{IntegrationID: "personio:1", RequestID: seqID},
			wantIn: "request_id is 257 bytes, over the limit of 256"},
		{name: "request_id not a string", data: `{"integration_id":"personio:1","request_id":7}`, hdr: msgID("hdr-id"),
			want:   request{IntegrationID: "personio:1", RequestID: "hdr-id"},
			wantIn: "request_id is not a string"},
		{name: "Nats-Msg-Id over 256 bytes is not used", data: `{"integration_id":"personio:1"}`, hdr: msgID(id257),
			want: request{IntegrationID: "personio:1", RequestID: seqID}},
		{name: "Nats-Msg-Id with a control character is not used", data: `{"integration_id":"personio:1"}`, hdr: msgID("h\x01"),
			want: request{IntegrationID: "personio:1", RequestID: seqID}},

		// integration_id.
		{name: "integration_id missing", data: `{"request_id":"r"}`,
			want: request{RequestID: "r"}, wantIn: "integration_id is missing"},
		{name: "integration_id null", data: `{"integration_id":null,"request_id":"r"}`,
			want: request{RequestID: "r"}, wantIn: "integration_id is null"},
		{name: "integration_id empty", data: `{"integration_id":"","request_id":"r"}`,
			want: request{RequestID: "r"}, wantIn: "integration_id is empty"},
		{name: "integration_id a number", data: `{"integration_id":42,"request_id":"r"}`,
			want: request{RequestID: "r"}, wantIn: "integration_id is not a string"},
		{name: "integration_id an object", data: `{"integration_id":{"id":"x"},"request_id":"r"}`,
			want: request{RequestID: "r"}, wantIn: "integration_id is not a string"},
		{name: "integration_id of 257 bytes", data: `{"integration_id":"` + id257 + `","request_id":"r"}`,
			want: request{IntegrationID: id257, RequestID: "r"}, wantIn: "integration_id is 257 bytes, over the limit of 256"},
		{name: "integration_id of exactly 256 bytes", data: `{"integration_id":"` + id256 + `","request_id":"r"}`,
			want: request{IntegrationID: id256, RequestID: "r"}},
		{name: "integration_id with C0 control (BEL)", data: `{"integration_id":"a\u0007b","request_id":"r"}`,
			want: request{IntegrationID: "a\ab", RequestID: "r"}, wantIn: "integration_id has a control character (U+0007) at byte 1"},
		{name: "integration_id with C0 control (tab)", data: `{"integration_id":"a\tb","request_id":"r"}`,
			want: request{IntegrationID: "a\tb", RequestID: "r"}, wantIn: "integration_id has a control character (U+0009)"},
		{name: "integration_id with C0 control (NUL)", data: `{"integration_id":"a\u0000","request_id":"r"}`,
			want: request{IntegrationID: "a\x00", RequestID: "r"}, wantIn: "integration_id has a control character (U+0000)"},
		{name: "integration_id with DEL", data: `{"integration_id":"a\u007fb","request_id":"r"}`,
			want: request{IntegrationID: "a\x7fb", RequestID: "r"}, wantIn: "integration_id has a control character (U+007F)"},
		{name: "integration_id with raw DEL byte", data: "{\"integration_id\":\"a\x7fb\",\"request_id\":\"r\"}",
			want: request{IntegrationID: "a\x7fb", RequestID: "r"}, wantIn: "integration_id has a control character (U+007F)"},
		{name: "integration_id with C1 control (NEL)", data: `{"integration_id":"a\u0085b","request_id":"r"}`,
			want: request{IntegrationID: "a\u0085b", RequestID: "r"}, wantIn: "integration_id has a control character (U+0085)"},
		{name: "integration_id with raw C1 control", data: "{\"integration_id\":\"a\u009fb\",\"request_id\":\"r\"}",
			want: request{IntegrationID: "a\u009fb", RequestID: "r"}, wantIn: "integration_id has a control character (U+009F)"},
		// A payload that is not UTF-8 is not read at all: the JSON request_id is lost too,
		// and the header (or stream sequence) names the request.
		{name: "integration_id not UTF-8", data: "{\"integration_id\":\"a\xffb\",\"request_id\":\"r\"}", hdr: msgID("hdr-id"),
			want: request{RequestID: "hdr-id"}, wantIn: "not valid UTF-8"},
		// A lone surrogate escape is valid JSON text; Go decodes it to U+FFFD, which is
		// valid UTF-8 and not a control character.
		{name: "integration_id with a lone surrogate escape", data: `{"integration_id":"a\ud800b","request_id":"r"}`,
			want: request{IntegrationID: "a\ufffdb", RequestID: "r"}},
		{name: "integration_id with RTL mark (Cf, not Cc)", data: "{\"integration_id\":\"personio:\u200fabc\",\"request_id\":\"r\"}",
			want: request{IntegrationID: "personio:\u200fabc", RequestID: "r"}},
		{name: "integration_id with zero width space", data: `{"integration_id":"a\u200bb","request_id":"r"}`,
			want: request{IntegrationID: "a\u200bb", RequestID: "r"}},

		// retry_of and expect.
		{name: "retry_of echoed", data: `{"integration_id":"a","request_id":"o.retry1","retry_of":"o"}`,
			want: request{IntegrationID: "a", RequestID: "o.retry1", RetryOf: "o"}},
		{name: "expect both", data: `{"integration_id":"a","request_id":"r","expect":{"origin_id":"x","tool":"personio"}}`,
			want: request{IntegrationID: "a", RequestID: "r", Expect: &expectation{OriginID: ptr("x"), Tool: ptr("personio")}}},
		{name: "expect null is none", data: `{"integration_id":"a","request_id":"r","expect":null}`,
			want: request{IntegrationID: "a", RequestID: "r"}},
		{name: "expect not an object", data: `{"integration_id":"a","request_id":"r","expect":"personio"}`,
			want: request{IntegrationID: "a", RequestID: "r"}, wantIn: "expect is not an object"},
		{name: "expect empty", data: `{"integration_id":"a","request_id":"r","expect":{}}`,
			want: request{IntegrationID: "a", RequestID: "r"}, wantIn: "expect names neither origin_id nor tool"},
		{name: "expect with a typo", data: `{"integration_id":"a","request_id":"r","expect":{"toll":"x"}}`,
			want: request{IntegrationID: "a", RequestID: "r"}, wantIn: `unknown field "toll"`},
		{name: "expect with a number", data: `{"integration_id":"a","request_id":"r","expect":{"origin_id":7}}`,
			want: request{IntegrationID: "a", RequestID: "r"}, wantIn: "expect is not an object"},

		// The payload.
		{name: "payload of exactly 64 KiB", data: pad(maxPayload),
			want: request{IntegrationID: "personio:pad", RequestID: "pad"}},
		{name: "payload one byte over 64 KiB", data: pad(maxPayload + 1), hdr: msgID("hdr-id"),
			want: request{RequestID: "hdr-id"}, wantIn: "payload is 65537 bytes, over the limit of 65536"},
		{name: "not JSON", data: `{not json`, hdr: msgID("hdr-id"),
			want: request{RequestID: "hdr-id"}, wantIn: "payload is not a JSON object"},
		{name: "empty payload", data: ``,
			want: request{RequestID: seqID}, wantIn: "payload is not a JSON object"},
		{name: "JSON array", data: `[{"integration_id":"personio:1"}]`,
			want: request{RequestID: seqID}, wantIn: "payload is not a JSON object"},
		{name: "JSON string", data: `"personio:1"`,
			want: request{RequestID: seqID}, wantIn: "payload is not a JSON object"},
		{name: "JSON null", data: `null`,
			want: request{RequestID: seqID}, wantIn: "payload is not a JSON object: it is null"},
		{name: "trailing data after the object", data: `{"integration_id":"personio:1"} {}`,
			want: request{RequestID: seqID}, wantIn: "payload is not a JSON object"},
		// Duplicate known keys: refused, so that no two readers can see different ids.
		{name: "duplicate integration_id", data: `{"integration_id":"first","integration_id":"second","request_id":"r"}`,
			want: request{IntegrationID: "second", RequestID: "r"}, wantIn: "integration_id appears more than once"},
		{name: "duplicate integration_id, last null", data: `{"integration_id":"first","integration_id":null,"request_id":"r"}`,
			want: request{RequestID: "r"}, wantIn: "integration_id appears more than once"},
		{name: "duplicate request_id", data: `{"integration_id":"personio:1","request_id":"a","request_id":"b"}`,
			want: request{IntegrationID: "personio:1", RequestID: "b"}, wantIn: "request_id appears more than once"},
		{name: "duplicate unknown key is ignored", data: `{"integration_id":"personio:1","x":1,"x":2}`,
			want: request{IntegrationID: "personio:1", RequestID: seqID}},
		// Keys are matched exactly, not the way Go matches struct fields.
		{name: "keys are case sensitive", data: `{"Integration_ID":"personio:1","request_id":"r"}`,
			want: request{RequestID: "r"}, wantIn: "integration_id is missing"},
		{name: "unknown fields are ignored", data: `{"integration_id":"personio:1","request_id":"r","extra":{"nested":[1,2,{"x":null}]},"n":1.5}`,
			want: request{IntegrationID: "personio:1", RequestID: "r"}},
		{name: "requested_by and reason are read", data: `{"integration_id":"personio:1","request_id":"r","requested_by":"offboarding-service","reason":"customer churned"}`,
			want: request{IntegrationID: "personio:1", RequestID: "r", RequestedBy: "offboarding-service", Reason: "customer churned"}},
		{name: "requested_by and reason are read from an invalid event", data: `{"request_id":"r","requested_by":"svc","reason":"why"}`,
			want: request{RequestID: "r", RequestedBy: "svc", Reason: "why"}, wantIn: "integration_id is missing"},
		{name: "null requested_by and reason", data: `{"integration_id":"personio:1","request_id":"r","requested_by":null,"reason":null}`,
			want: request{IntegrationID: "personio:1", RequestID: "r"}},
		{name: "requested_by not a string", data: `{"integration_id":"personio:1","request_id":"r","requested_by":{"team":"x"}}`,
			want: request{IntegrationID: "personio:1", RequestID: "r"}, wantIn: "requested_by is not a string"},
		{name: "every problem is named", data: `{"request_id":"r\u0000","reason":5}`, hdr: msgID("hdr-id"),
			want: request{RequestID: "hdr-id"}, wantIn: "request_id has a control character (U+0000) at byte 1; reason is not a string; integration_id is missing"},

		// Trace headers.
		{name: "traceparent and tracestate are read", data: `{"integration_id":"personio:1","request_id":"r"}`,
			hdr:  nats.Header{"traceparent": {tp}, "tracestate": {ts}},
			want: request{IntegrationID: "personio:1", RequestID: "r", Traceparent: tp, Tracestate: ts}},
		{name: "trace headers in canonical case", data: `{"integration_id":"personio:1","request_id":"r"}`,
			hdr:  nats.Header{"Traceparent": {tp}, "Tracestate": {ts}},
			want: request{IntegrationID: "personio:1", RequestID: "r", Traceparent: tp, Tracestate: ts}},
		{name: "trace headers of an invalid event", data: `{not json`,
			hdr:  nats.Header{"traceparent": {tp}, "Nats-Msg-Id": {"hdr-id"}},
			want: request{RequestID: "hdr-id", Traceparent: tp}, wantIn: "not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeRequest([]byte(tt.data), tt.hdr, stream, seq)
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("decodeRequest() request mismatch (-got +want):\n%s", diff)
			}
			if tt.wantIn == "" {
				if err != nil {
					t.Fatalf("decodeRequest() error = %v, want none", err)
				}
				return
			}
			var inv *invalidEventError
			if !errors.As(err, &inv) {
				t.Fatalf("decodeRequest() error = %v, want an *invalidEventError", err)
			}
			if !strings.Contains(inv.Reason, tt.wantIn) {
				t.Errorf("reason %q does not say %q", inv.Reason, tt.wantIn)
			}
			if got, want := err.Error(), "consumer: invalid event: "+inv.Reason; got != want {
				t.Errorf("Error() = %q, want %q", got, want)
			}
		})
	}
}

// TestDecodeRequestNilHeader: a message without headers has a nil header.
func TestDecodeRequestNilHeader(t *testing.T) {
	got, err := decodeRequest([]byte(`{"integration_id":"personio:1"}`), nil, "S", 1)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, request{IntegrationID: "personio:1", RequestID: "S-1"}); diff != "" {
		t.Errorf("decodeRequest() mismatch (-got +want):\n%s", diff)
	}
}

func ptr[T any](v T) *T { return &v }

// TestIntegrationIDsAreKeptAsTheyAre: an id that is valid is taken byte for byte, whatever
// it would mean in a URL (the client escapes it as one path segment).
func TestIntegrationIDsAreKeptAsTheyAre(t *testing.T) {
	for _, id := range []string{"personio:äöü-日本-🦀", "a/b", "../x", "..", "a%2Fb?c=d#e", " personio:1 "} {
		data, _ := json.Marshal(map[string]string{"integration_id": id, "request_id": "r"})
		req, err := decodeRequest(data, nil, "S", 1)
		if err != nil || req.IntegrationID != id || req.RequestID != "r" {
			t.Errorf("decodeRequest(%s) = %+v, %v; want integration_id %q kept", data, req, err, id)
		}
	}
}
