package kombotest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

const controlPrefix = "/_fake"

// configView is what GET and POST /_fake/config answer: Options with durations as Go
// duration strings and the API key reduced to whether one is set.
type configView struct {
	APIKeySet        bool
	Latency          string
	LatencyJitter    string
	ConcurrencyLimit int
	RateLimit        float64
	RateBurst        int
	RateLimitHeader  string
	FailureRate      float64
	RejectKey        bool
	Seed             int64
	EarlyGrace       string
	MaxCalls         int
}

func viewOf(o Options) configView {
	return configView{
		APIKeySet: o.APIKey != "", Latency: o.Latency.String(), LatencyJitter: o.LatencyJitter.String(),
		ConcurrencyLimit: o.ConcurrencyLimit, RateLimit: o.RateLimit, RateBurst: o.RateBurst,
		RateLimitHeader: o.hint(), FailureRate: o.FailureRate, RejectKey: o.RejectKey, Seed: o.Seed,
		EarlyGrace: o.EarlyGrace.String(), MaxCalls: o.MaxCalls,
	}
}

// configPatch is the body of POST /_fake/config. Its keys are the Options field names, read
// without regard to case, "_" or "-" ("RejectKey", "reject_key", "reject-key").
type configPatch struct {
	APIKey           *string   `json:"apikey"`
	Latency          *duration `json:"latency"`
	LatencyJitter    *duration `json:"latencyjitter"`
	ConcurrencyLimit *int      `json:"concurrencylimit"`
	RateLimit        *float64  `json:"ratelimit"`
	RateBurst        *int      `json:"rateburst"`
	RateLimitHeader  *string   `json:"ratelimitheader"`
	FailureRate      *float64  `json:"failurerate"`
	RejectKey        *bool     `json:"rejectkey"`
	Seed             *int64    `json:"seed"`
	EarlyGrace       *duration `json:"earlygrace"`
	MaxCalls         *int      `json:"maxcalls"`
}

func (p configPatch) apply(o *Options) {
	set(&o.APIKey, p.APIKey)
	setDuration(&o.Latency, p.Latency)
	setDuration(&o.LatencyJitter, p.LatencyJitter)
	set(&o.ConcurrencyLimit, p.ConcurrencyLimit)
	set(&o.RateLimit, p.RateLimit)
	set(&o.RateBurst, p.RateBurst)
	set(&o.RateLimitHeader, p.RateLimitHeader)
	set(&o.FailureRate, p.FailureRate)
	set(&o.RejectKey, p.RejectKey)
	set(&o.Seed, p.Seed)
	setDuration(&o.EarlyGrace, p.EarlyGrace)
	set(&o.MaxCalls, p.MaxCalls)
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

func setDuration(dst *time.Duration, v *duration) {
	if v != nil {
		*dst = time.Duration(*v)
	}
}

// duration reads a Go duration string ("250ms") or a number of nanoseconds.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("want a duration like \"250ms\" or nanoseconds, got %s", b)
	}
	*d = duration(n)
	return nil
}

// scriptRequest is the body of POST /_fake/script: answers for integration Id, or for
// GET /check-api-key when Endpoint is "check-api-key".
type scriptRequest struct {
	ID       string            `json:"id"`
	Endpoint string            `json:"endpoint"`
	Answers  []json.RawMessage `json:"answers"`
}

// answerJSON is one answer of POST /_fake/script, keys read like configPatch's.
type answerJSON struct {
	Status      int                        `json:"status"`
	Code        string                     `json:"code"`
	Title       string                     `json:"title"`
	Message     string                     `json:"message"`
	LogURL      string                     `json:"logurl"`
	Body        *string                    `json:"body"`
	ContentType string                     `json:"contenttype"`
	Header      map[string]json.RawMessage `json:"header"`
	Delay       duration                   `json:"delay"`
	Hang        bool                       `json:"hang"`
}

func (a answerJSON) answer() (Answer, error) {
	out := Answer{Status: a.Status, Code: a.Code, Title: a.Title, Message: a.Message, LogURL: a.LogURL,
		Body: a.Body, ContentType: a.ContentType, Delay: time.Duration(a.Delay), Hang: a.Hang}
	if out.Status != 0 && (out.Status < 100 || out.Status > 999) {
		return Answer{}, fmt.Errorf("status %d is not an HTTP status", out.Status)
	}
	if out.Delay < 0 {
		return Answer{}, fmt.Errorf("delay must not be negative")
	}
	for k, raw := range a.Header {
		if out.Header == nil {
			out.Header = http.Header{}
		}
		var one string
		var many []string
		switch {
		case json.Unmarshal(raw, &one) == nil:
			out.Header.Add(k, one)
		case json.Unmarshal(raw, &many) == nil:
			for _, v := range many {
				out.Header.Add(k, v)
			}
		default:
			return Answer{}, fmt.Errorf("header %q: want a string or an array of strings", k)
		}
	}
	return out, nil
}

type missingRequest struct {
	IDs []string `json:"ids"`
}

func (f *Fake) serveControl(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimPrefix(r.URL.Path, controlPrefix)
	method := map[string]string{
		"/healthz": http.MethodGet, "/calls": http.MethodGet, "/stats": http.MethodGet,
		"/reset": http.MethodPost, "/script": http.MethodPost, "/missing": http.MethodPost,
		"/integration": http.MethodPost,
	}[path]
	if path == "/config" {
		method = r.Method
		if method != http.MethodPost {
			method = http.MethodGet
		}
	}
	switch {
	case method == "":
		controlError(w, http.StatusNotFound, "no control endpoint "+r.URL.Path)
		return
	case r.Method != method:
		allow := method
		if path == "/config" {
			allow = "GET, POST"
		}
		w.Header().Set("Allow", allow)
		controlError(w, http.StatusMethodNotAllowed, r.Method+" is not allowed on "+r.URL.Path)
		return
	}
	switch path {
	case "/healthz":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	case "/calls":
		writeJSON(w, http.StatusOK, filterCalls(f.Calls(), r.URL.Query()))
	case "/stats":
		writeJSON(w, http.StatusOK, f.Stats())
	case "/reset":
		f.Reset()
		w.WriteHeader(http.StatusNoContent)
	case "/config":
		f.serveConfig(w, r)
	case "/script":
		f.serveScript(w, r)
	case "/missing":
		var req missingRequest
		if err := decodeControl(r.Body, &req); err != nil {
			controlError(w, http.StatusBadRequest, err.Error())
			return
		}
		f.MarkMissing(req.IDs...)
		w.WriteHeader(http.StatusNoContent)
	case "/integration":
		f.serveIntegrationControl(w, r)
	}
}

// filterCalls keeps the calls that match the ?id= and ?seq= filters given.
func filterCalls(calls []Call, q url.Values) []Call {
	if !q.Has("id") && !q.Has("seq") {
		return calls
	}
	kept := calls[:0]
	for _, c := range calls {
		if (!q.Has("id") || c.ID == q.Get("id")) && (!q.Has("seq") || strconv.Itoa(c.Seq) == q.Get("seq")) {
			kept = append(kept, c)
		}
	}
	return kept
}

// serveConfig serves GET /_fake/config, and POST with a partial update first.
func (f *Fake) serveConfig(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		var p configPatch
		if err := decodeControl(r.Body, &p); err != nil {
			controlError(w, http.StatusBadRequest, err.Error())
			return
		}
		if err := f.Update(p.apply); err != nil {
			controlError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	writeJSON(w, http.StatusOK, viewOf(f.Options()))
}

// serveScript serves POST /_fake/script: answers for an id's DELETEs, or for the key check.
func (f *Fake) serveScript(w http.ResponseWriter, r *http.Request) {
	var req scriptRequest
	if err := decodeControl(r.Body, &req); err != nil {
		controlError(w, http.StatusBadRequest, err.Error())
		return
	}
	answers := make([]Answer, 0, len(req.Answers))
	for i, raw := range req.Answers {
		var aj answerJSON
		err := decodeControl(bytes.NewReader(raw), &aj)
		var a Answer
		if err == nil {
			a, err = aj.answer()
		}
		if err != nil {
			controlError(w, http.StatusBadRequest, fmt.Sprintf("answers[%d]: %v", i, err))
			return
		}
		answers = append(answers, a)
	}
	switch req.Endpoint {
	case "", "delete":
		if req.ID == "" {
			controlError(w, http.StatusBadRequest, `"id" is required (or "endpoint":"check-api-key")`)
			return
		}
		f.Script(req.ID, answers...)
	case "check-api-key":
		f.ScriptCheckAPIKey(answers...)
	default:
		controlError(w, http.StatusBadRequest, `"endpoint" must be "delete" or "check-api-key"`)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// decodeControl decodes one JSON object into v, whose json tags are lower case without "_"
// or "-"; the object's keys are normalised the same way. Unknown keys are an error.
func decodeControl(r io.Reader, v any) error {
	var raw map[string]json.RawMessage
	if err := json.NewDecoder(io.LimitReader(r, 1<<20)).Decode(&raw); err != nil {
		return fmt.Errorf("body: want a JSON object: %w", err)
	}
	norm := make(map[string]json.RawMessage, len(raw))
	for k, val := range raw {
		n := strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(k))
		if _, dup := norm[n]; dup {
			return fmt.Errorf("body: key %q given twice", k)
		}
		norm[n] = val
	}
	b, err := json.Marshal(norm)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return fmt.Errorf("body: %s: want %s", ute.Field, ute.Type)
		}
		return fmt.Errorf("body: %w", err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		controlError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// controlError answers a control endpoint's error as {"error":"…"}.
func controlError(w http.ResponseWriter, status int, msg string) {
	b, _ := json.Marshal(map[string]string{"error": msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
