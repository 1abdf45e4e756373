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
	// maxPayload is the largest request payload accepted, in bytes (exactly 64 KiB is valid).
	maxPayload = 64 << 10
	// maxIDLength is the longest integration_id or request_id accepted, in bytes.
	maxIDLength = 256
)

// Codes this daemon puts into failed results for reasons of its own.
const (
	codeEventInvalid     = "EVENT.INVALID"
	codeRetriesExhausted = "DELETER.RETRIES_EXHAUSTED"
	codeInternal         = "DELETER.INTERNAL"
	codeMaxDeliveries    = "DELETER.MAX_DELIVERIES"
	codeProtected        = "DELETER.PROTECTED"
	codeMismatch         = "DELETER.MISMATCH"
)

// Result statuses. A dry run's results are would_delete, not_found or failed.
const (
	StatusDeleted     = "deleted"
	StatusFailed      = "failed"
	statusWouldDelete = "would_delete"
	statusNotFound    = "not_found"
)

// request is a delete request as read from the request subject.
type request struct {
	IntegrationID string
	RequestID     string
	RequestedBy   string
	Reason        string
	// RetryOf is the request id this one retries (integration-deleter retry), echoed back.
	RetryOf string
	// Expect, when set, is what GET /integrations/{id} must show before the DELETE.
	Expect *expectation
	// Traceparent and Tracestate are the W3C trace headers of the message, if any.
	Traceparent, Tracestate string
}

// expectation is the request's "expect": each field set must equal what Kombo shows of
// the integration (origin_id: its end user's origin id; tool: its tool id).
type expectation struct {
	OriginID *string `json:"origin_id"`
	Tool     *string `json:"tool"`
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
	RetryOf       string       `json:"retry_of,omitempty"`
	CompletedAt   string       `json:"completed_at"`
	// Integration is, in a dry run's would_delete, what the delete would remove.
	Integration *shownIntegration `json:"integration,omitempty"`
}

// ResultError says why a request failed.
type ResultError struct {
	Code       string `json:"code"`
	Title      string `json:"title"`
	Message    string `json:"message"`
	LogURL     string `json:"log_url"`
	HTTPStatus int    `json:"http_status"`
}

// invalidEventError says what is wrong with a request event.
type invalidEventError struct{ Reason string }

func (e *invalidEventError) Error() string { return "consumer: invalid event: " + e.Reason }

// decodeRequest reads a request event. It returns the request with every field it could
// read even when the event is invalid, together with an *invalidEventError in that case.
// The request id is, in this order: the JSON request_id, the Nats-Msg-Id header,
// "<stream>-<stream sequence>".
func decodeRequest(data []byte, hdr nats.Header, stream string, seq uint64) (request, error) {
	req := request{RequestID: hdr.Get(jetstream.MsgIDHeader)}
	req.Traceparent, req.Tracestate = traceHeaders(hdr)
	if validID(req.RequestID) != "" {
		req.RequestID = ""
	}
	if req.RequestID == "" {
		req.RequestID = stream + "-" + strconv.FormatUint(seq, 10)
	}
	if len(data) > maxPayload {
		return req, &invalidEventError{fmt.Sprintf("payload is %d bytes, over the limit of %d", len(data), maxPayload)}
	}
	if !utf8.Valid(data) {
		return req, &invalidEventError{"payload is not valid UTF-8"}
	}
	known, ok := plainFields(data)
	var problems []string
	if !ok {
		fields, dups, err := objectFields(data)
		if err != nil {
			return req, &invalidEventError{"payload is not a JSON object: " + err.Error()}
		}
		known = knownFromMap(fields)
		for _, k := range dups {
			// Two readers of one event must never see different ids: refuse, don't pick.
			problems = append(problems, k+" appears more than once")
		}
	}
	if problems = known.read(&req, problems); len(problems) > 0 {
		return req, &invalidEventError{strings.Join(problems, "; ")}
	}
	return req, nil
}

// read puts the known fields into req: request_id over the one req has, when it is a
// valid id; requested_by, reason and integration_id as they are. It returns problems with
// what is wrong with them appended.
func (k *knownJSON) read(req *request, problems []string) []string {
	str := func(name string, raw json.RawMessage) (string, bool) {
		if raw == nil || string(raw) == "null" {
			return "", false
		}
		if s, ok := plainString(raw); ok {
			return s, true
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			problems = append(problems, name+" is not a string")
			return "", false
		}
		return s, true
	}
	if id, ok := str("request_id", k.RequestID); ok && id != "" {
		if why := validID(id); why != "" {
			problems = append(problems, "request_id "+why)
		} else {
			req.RequestID = id
		}
	}
	req.RequestedBy, _ = str("requested_by", k.RequestedBy)
	req.Reason, _ = str("reason", k.Reason)
	req.RetryOf, _ = str("retry_of", k.RetryOf)
	req.Expect, problems = readExpect(k.Expect, problems)
	switch raw := k.IntegrationID; {
	case raw == nil:
		problems = append(problems, "integration_id is missing")
	case string(raw) == "null":
		problems = append(problems, "integration_id is null")
	default:
		id, ok := str("integration_id", raw)
		if !ok {
			break
		}
		req.IntegrationID = id
		if id == "" {
			problems = append(problems, "integration_id is empty")
		} else if why := validID(id); why != "" {
			problems = append(problems, "integration_id "+why)
		}
	}
	return problems
}

// readExpect reads the request's "expect": absent or null is none. Anything it cannot
// read exactly — not an object, a value that is not a string, an unknown key (a typo), no
// key at all — makes the event invalid: a check the sender asked for is never skipped.
func readExpect(raw json.RawMessage, problems []string) (*expectation, []string) {
	if raw == nil || string(raw) == "null" {
		return nil, problems
	}
	var e expectation
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	switch err := dec.Decode(&e); {
	case err != nil:
		return nil, append(problems, "expect is not an object of strings origin_id and tool: "+err.Error())
	case e.OriginID == nil && e.Tool == nil:
		return nil, append(problems, "expect names neither origin_id nor tool")
	}
	return &e, problems
}

// knownNames are the request fields the daemon reads (knownJSON's tags too).
var knownNames = [...]string{"integration_id", "request_id", "requested_by", "reason", "retry_of", "expect"}

// knownFields and quotedKnown are knownNames as a set, and in quotes as they appear in a
// payload.
var knownFields, quotedKnown = func() (map[string]bool, [len(knownNames)][]byte) {
	set := map[string]bool{}
	var quoted [len(knownNames)][]byte
	for i, n := range knownNames {
		set[n], quoted[i] = true, []byte(`"`+n+`"`)
	}
	return set, quoted
}()

// knownJSON holds the raw JSON values of the known fields; nil where a field is absent.
type knownJSON struct {
	IntegrationID json.RawMessage `json:"integration_id"`
	RequestID     json.RawMessage `json:"request_id"`
	RequestedBy   json.RawMessage `json:"requested_by"`
	Reason        json.RawMessage `json:"reason"`
	RetryOf       json.RawMessage `json:"retry_of"`
	Expect        json.RawMessage `json:"expect"`
}

func knownFromMap(fields map[string]json.RawMessage) knownJSON {
	return knownJSON{IntegrationID: fields["integration_id"], RequestID: fields["request_id"],
		RequestedBy: fields["requested_by"], Reason: fields["reason"], RetryOf: fields["retry_of"], Expect: fields["expect"]}
}

// plainFields is the fast way to read the known fields of a plain event, as almost every
// event is: ASCII without escapes, in which each known name appears at most once as a
// string, even ignoring case. For such an event, decoding into knownJSON (encoding/json
// matches names ignoring case and keeps the last of duplicates) reads exactly what
// objectFields reads, for about a third of the work. ok is false for any other event, and
// for one that does not decode: objectFields then reads it, and says what is wrong.
func plainFields(data []byte) (k knownJSON, ok bool) {
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return k, false // null would decode into knownJSON without an error
	}
	for _, b := range data {
		if b >= utf8.RuneSelf || b == '\\' {
			return k, false
		}
	}
	// Without escapes every quote opens or closes a string, so each match below is a
	// whole string of the payload (a key, or a value that looks like one).
	for i := 0; i < len(data); {
		q := bytes.IndexByte(data[i:], '"')
		if q < 0 {
			break
		}
		i += q
		for _, name := range quotedKnown {
			if rest := data[i:]; len(rest) >= len(name) && bytes.EqualFold(rest[:len(name)], name) {
				if !bytes.Equal(rest[:len(name)], name) {
					return k, false // a name in other case: encoding/json would read it
				}
				if bytes.Contains(rest[len(name):], name) {
					return k, false // twice: a duplicate, or a value equal to a name
				}
			}
		}
		i++
	}
	if json.Unmarshal(data, &k) != nil {
		return knownJSON{}, false
	}
	return k, true
}

// plainString returns the string a JSON string literal without escapes stands for.
func plainString(raw json.RawMessage) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' || bytes.IndexByte(raw, '\\') >= 0 {
		return "", false
	}
	return string(raw[1 : len(raw)-1]), true
}

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
	if len(id) > maxIDLength {
		return fmt.Sprintf("is %d bytes, over the limit of %d", len(id), maxIDLength)
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
