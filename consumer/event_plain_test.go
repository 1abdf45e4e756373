package consumer

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// slowKnown reads the known fields the general way, as decodeRequest does when plainFields
// declines; ok is false when the payload is not an object or has a duplicate known field.
func slowKnown(data []byte) (knownJSON, bool) {
	fields, dups, err := objectFields(data)
	if err != nil || len(dups) > 0 {
		return knownJSON{}, false
	}
	return knownFromMap(fields), true
}

func TestPlainFields(t *testing.T) {
	tests := []struct {
		name  string
		data  string
		plain bool // read by the fast path
	}{
		{name: "typical event", data: `{"integration_id":"personio:abc","request_id":"r-1","requested_by":"svc","reason":"offboarding"}`, plain: true},
		{name: "whitespace and unknown fields", data: " {\n\t\"integration_id\" : \"a\", \"extra\": [1, {\"x\": null}], \"reason\": null }\r\n", plain: true},
		{name: "non-string values", data: `{"integration_id":42,"request_id":true}`, plain: true},
		{name: "only unknown fields", data: `{"a":"b"}`, plain: true},
		{name: "a duplicate known field", data: `{"integration_id":"a","integration_id":"b"}`},
		{name: "a known name in other case", data: `{"integration_id":"a","Integration_ID":"b"}`},
		{name: "a value equal to a known name", data: `{"integration_id":"a","reason":"reason"}`},
		{name: "an escape", data: `{"integration_id":"a\u0062"}`},
		{name: "an escaped name", data: `{"integration\u005fid":"a"}`},
		{name: "non-ASCII", data: `{"integration_id":"ä"}`},
		{name: "null", data: `null`},
		{name: "an array", data: `[{"integration_id":"a"}]`},
		{name: "data after the object", data: `{"integration_id":"a"} {}`},
		{name: "not JSON", data: `{"integration_id":`},
		{name: "empty", data: ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := plainFields([]byte(tt.data))
			if ok != tt.plain {
				t.Fatalf("plainFields(%q) ok = %v, want %v", tt.data, ok, tt.plain)
			}
			if !ok {
				return
			}
			want, _ := slowKnown([]byte(tt.data))
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("fast and general reads differ (-general +fast):\n%s", diff)
			}
		})
	}
}

// FuzzPlainFields checks that whenever the fast path reads an event, it reads what the
// general path reads, and that plainString agrees with encoding/json.
func FuzzPlainFields(f *testing.F) {
	for _, s := range []string{
		`{"integration_id":"personio:abc","request_id":"r-1","requested_by":"svc","reason":"offboarding"}`,
		`{"integration_id":"a","INTEGRATION_ID":"b"}`,
		`{"reason":"a","reason":"b"}`,
		`{"integration_id":"a","x":{"integration_id":"b"}}`,
		`{"integration_id":["a"],"request_id":null}`,
		`{"Reason":"x"}`,
		`null`,
		`{"integration_id":"a"}x`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, ok := plainFields(data)
		if !ok {
			return
		}
		want, wantOK := slowKnown(data)
		if !wantOK {
			t.Fatalf("fast path read %q, which the general path refuses", data)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("fast and general reads of %q differ (-general +fast):\n%s", data, diff)
		}
		for _, raw := range [][]byte{got.IntegrationID, got.RequestID, got.RequestedBy, got.Reason} {
			if s, ok := plainString(raw); ok {
				if want := jsonString(t, raw); s != want {
					t.Fatalf("plainString(%s) = %q, encoding/json reads %q", raw, s, want)
				}
			}
		}
	})
}

func jsonString(t *testing.T, raw []byte) string {
	t.Helper()
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("plainString accepted %s, which is not a JSON string: %v", raw, err)
	}
	return s
}

var typicalEvent = []byte(`{"integration_id":"personio:CBNMt7dSNCzBdnRTx87dev4E","request_id":"7f1c2a9e-4b1d-4c6e-9a51-2d0b8e4f3c11","requested_by":"offboarding-service","reason":"customer churned"}`)

// BenchmarkDecodeRequest compares the fast path with the general one on a typical event.
func BenchmarkDecodeRequest(b *testing.B) {
	b.Run("typical", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeRequest(typicalEvent, nil, "S", 1); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The same event with one escape takes the general path.
	escaped := bytes.Replace(typicalEvent, []byte("churned"), []byte(`churne\u0064`), 1)
	b.Run("general", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeRequest(escaped, nil, "S", 1); err != nil {
				b.Fatal(err)
			}
		}
	})
}
