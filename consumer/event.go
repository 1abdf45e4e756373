package consumer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Limits of a request event.
const (
	// MaxPayload is the largest request payload accepted, in bytes (exactly 64 KiB is valid).
	MaxPayload = 64 << 10
	// MaxIDLength is the longest integration_id or request_id accepted, in bytes.
	MaxIDLength = 256
)

// Codes this daemon puts into failed results for reasons of its own.
const (
	CodeEventInvalid     = "EVENT.INVALID"
	CodeRetriesExhausted = "DELETER.RETRIES_EXHAUSTED"
	CodeInternal         = "DELETER.INTERNAL"
	CodeMaxDeliveries    = "DELETER.MAX_DELIVERIES"
)

// Result statuses.
const (
	StatusDeleted = "deleted"
	StatusFailed  = "failed"
)

// Request is a delete request as read from the request subject.
type Request struct {
	IntegrationID string
	RequestID     string
	RequestedBy   string
	Reason        string
	// Traceparent and Tracestate are the W3C trace headers of the message, if any.
	Traceparent, Tracestate string
}

// Result is the event published on the deleted or failed subject.
type Result struct {
	RequestID     string       `json:"request_id"`
	IntegrationID string       `json:"integration_id"`
	Status        string       `json:"status"`
	NotFound      *bool        `json:"not_found,omitempty"`
	Attempts      int          `json:"attempts"`
	Error         *ResultError `json:"error,omitempty"`
	RequestedBy   string       `json:"requested_by"`
	Reason        string       `json:"reason"`
	CompletedAt   string       `json:"completed_at"`
}

// ResultError says why a request failed.
type ResultError struct {
	Code       string `json:"code"`
	Title      string `json:"title"`
	Message    string `json:"message"`
	LogURL     string `json:"log_url"`
	HTTPStatus int    `json:"http_status"`
}

// InvalidEventError says what is wrong with a request event.
type InvalidEventError struct{ Reason string }

func (e *InvalidEventError) Error() string { return "consumer: invalid event: " + e.Reason }

// DecodeRequest reads a request event. It returns the request with every field it could
// read even when the event is invalid, together with an *InvalidEventError in that case.
// The request id is, in this order: the JSON request_id, the Nats-Msg-Id header,
// "<stream>-<stream sequence>".
func DecodeRequest(data []byte, hdr nats.Header, stream string, seq uint64) (Request, error) {
	req := Request{RequestID: hdr.Get(jetstream.MsgIDHeader)}
	req.Traceparent, req.Tracestate = traceHeaders(hdr)
	if validID(req.RequestID) != "" {
		req.RequestID = ""
	}
	if req.RequestID == "" {
		req.RequestID = stream + "-" + strconv.FormatUint(seq, 10)
	}
	if len(data) > MaxPayload {
		return req, &InvalidEventError{fmt.Sprintf("payload is %d bytes, over the limit of %d", len(data), MaxPayload)}
	}
	if !utf8.Valid(data) {
		return req, &InvalidEventError{"payload is not valid UTF-8"}
	}
	fields, dups, err := objectFields(data)
	if err != nil {
		return req, &InvalidEventError{"payload is not a JSON object: " + err.Error()}
	}
	var problems []string
	for _, k := range dups {
		// Two readers of one event must never see different ids: refuse, don't pick.
		problems = append(problems, k+" appears more than once")
	}
	str := func(name string) (string, bool) {
		raw, ok := fields[name]
		if !ok || string(raw) == "null" {
			return "", false
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			problems = append(problems, name+" is not a string")
			return "", false
		}
		return s, true
	}
	if id, ok := str("request_id"); ok && id != "" {
		if why := validID(id); why != "" {
			problems = append(problems, "request_id "+why)
		} else {
			req.RequestID = id
		}
	}
	req.RequestedBy, _ = str("requested_by")
	req.Reason, _ = str("reason")
	switch raw, present := fields["integration_id"]; {
	case !present:
		problems = append(problems, "integration_id is missing")
	case string(raw) == "null":
		problems = append(problems, "integration_id is null")
	default:
		var id string
		if err := json.Unmarshal(raw, &id); err != nil {
			problems = append(problems, "integration_id is not a string")
			break
		}
		req.IntegrationID = id
		if id == "" {
			problems = append(problems, "integration_id is empty")
		} else if why := validID(id); why != "" {
			problems = append(problems, "integration_id "+why)
		}
	}
	if len(problems) > 0 {
		msg := problems[0]
		for _, p := range problems[1:] {
			msg += "; " + p
		}
		return req, &InvalidEventError{msg}
	}
	return req, nil
}

// knownFields are the request fields the daemon reads.
var knownFields = map[string]bool{"integration_id": true, "request_id": true, "requested_by": true, "reason": true}

// objectFields reads a JSON object's top-level fields, and which known fields appear more
// than once (encoding/json would silently keep the last one).
func objectFields(data []byte) (map[string]json.RawMessage, []string, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, fmt.Errorf("it is %s", jsonKind(tok))
	}
	fields := map[string]json.RawMessage{}
	var dups []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, err
		}
		if _, seen := fields[key]; seen && knownFields[key] && !slices.Contains(dups, key) {
			dups = append(dups, key)
		}
		fields[key] = raw
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, errors.New("data after the object")
	}
	return fields, dups, nil
}

func jsonKind(tok json.Token) string {
	switch tok.(type) {
	case json.Delim:
		return "an array"
	case string:
		return "a string"
	case float64:
		return "a number"
	case bool:
		return "a boolean"
	default:
		return "null"
	}
}

// traceHeaders returns the W3C trace headers, whatever the case of their names (HTTP
// header carriers write Traceparent; NATS headers are case-sensitive).
func traceHeaders(hdr nats.Header) (parent, state string) {
	for k, v := range hdr {
		if len(v) == 0 {
			continue
		}
		switch {
		case strings.EqualFold(k, "traceparent"):
			parent = v[0]
		case strings.EqualFold(k, "tracestate"):
			state = v[0]
		}
	}
	return parent, state
}

// validID returns why id is not acceptable as an id, or "".
func validID(id string) string {
	if len(id) > MaxIDLength {
		return fmt.Sprintf("is %d bytes, over the limit of %d", len(id), MaxIDLength)
	}
	if !utf8.ValidString(id) {
		return "is not valid UTF-8"
	}
	for i, r := range id {
		if unicode.IsControl(r) {
			return fmt.Sprintf("has a control character (%U) at byte %d", r, i)
		}
	}
	return ""
}

// timeFormat is RFC 3339 in UTC with millisecond precision and a Z.
const timeFormat = "2006-01-02T15:04:05.000Z"

func completedAt(t time.Time) string { return t.UTC().Format(timeFormat) }
