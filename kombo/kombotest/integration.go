package kombotest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"
)

// Integration is what GET /integrations/{id} shows of an integration, in Kombo's shape
// (the id aside).
type Integration struct {
	Tool          string     `json:"tool"`
	Category      string     `json:"category"`
	Status        string     `json:"status"`
	SetupStatus   string     `json:"setup_status"`
	EndUser       EndUser    `json:"end_user"`
	CreatedAt     time.Time  `json:"created_at"`
	DataExpiredAt *time.Time `json:"data_expired_at"`
}

// EndUser is the customer an integration belongs to.
type EndUser struct {
	OrganizationName string `json:"organization_name"`
	CreatorEmail     string `json:"creator_email"`
	OriginID         string `json:"origin_id"`
}

// integrationCreated is the created_at of an integration not set with SetIntegration.
var integrationCreated = time.Date(2025, 1, 15, 9, 30, 0, 0, time.UTC)

// DefaultIntegration is what the fake shows of id unless SetIntegration said otherwise:
// the tool is the part of id before its first ':' ("personio" for "personio:abc", or
// "personio" without one), the origin id "origin-" + id, the organization "Org " + id.
func DefaultIntegration(id string) Integration {
	tool, _, ok := strings.Cut(id, ":")
	if !ok || tool == "" {
		tool = "personio"
	}
	return Integration{Tool: tool, Category: "HRIS", Status: "ACTIVE", SetupStatus: "COMPLETED",
		EndUser:   EndUser{OrganizationName: "Org " + id, CreatorEmail: "admin@example.com", OriginID: "origin-" + id},
		CreatedAt: integrationCreated}
}

// SetIntegration sets what GET /integrations/{id} shows of id. It does not bring back a
// deleted or missing id.
func (f *Fake) SetIntegration(id string, in Integration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.integrations[id] = in
}

// planGetLocked runs the steps of a GET /integrations/{id}: the key, the concurrency and
// rate limits and the latency as for a DELETE, then the integration as it stands: 404
// PLATFORM.INTEGRATION_NOT_FOUND once deleted, marked missing or of a missing: id.
func (f *Fake) planGetLocked(r *http.Request, c *Call, arrival time.Time) plan {
	p, conv, admitted := f.planCallLocked(r, c, arrival, &f.stats.Gets)
	switch id := c.ID; {
	case !admitted:
	case conv.missing || f.missing[id] || f.deleted[id]:
		p.answer = NotFound()
	case conv.invalid:
		p.answer = InputInvalid()
	default:
		in, ok := f.integrations[id]
		if !ok {
			in = DefaultIntegration(id)
		}
		b, _ := json.Marshal(struct {
			ID string `json:"id"`
			Integration
		}{id, in})
		p.answer, p.data = OK(), string(b)
	}
	return p
}

// serveIntegrationControl serves POST /_fake/integration: {"id":"…"} and the fields of
// Integration to show for it, in Kombo's shape ({"tool":"…","end_user":{"origin_id":"…"}});
// the fields not given keep DefaultIntegration's values.
func (f *Fake) serveIntegrationControl(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var head struct {
		ID string `json:"id"`
	}
	if err == nil {
		err = json.Unmarshal(body, &head)
	}
	if err == nil && head.ID == "" {
		controlError(w, http.StatusBadRequest, `"id" is required`)
		return
	}
	in := DefaultIntegration(head.ID)
	if err == nil {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		err = dec.Decode(&struct {
			ID string `json:"id"`
			*Integration
		}{Integration: &in})
	}
	if err != nil {
		controlError(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	f.SetIntegration(head.ID, in)
	w.WriteHeader(http.StatusNoContent)
}
