package kombotest

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// Integration is what GET /integrations/{id} shows of an integration (Kombo's shape:
// id, tool, category, status, setup_status, end_user{organization_name, creator_email,
// origin_id}, created_at, data_expired_at). The JSON tags are the control endpoint's
// keys (read without regard to case, "_" or "-").
type Integration struct {
	Tool             string     `json:"tool"`
	Category         string     `json:"category"`
	Status           string     `json:"status"`
	SetupStatus      string     `json:"setupstatus"`
	OrganizationName string     `json:"organizationname"`
	CreatorEmail     string     `json:"creatoremail"`
	OriginID         string     `json:"originid"`
	CreatedAt        time.Time  `json:"createdat"`
	DataExpiredAt    *time.Time `json:"dataexpiredat"`
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
		OrganizationName: "Org " + id, CreatorEmail: "admin@example.com", OriginID: "origin-" + id,
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
// rate limits as for a DELETE, then the latency, and the integration as it stands: 404
// PLATFORM.INTEGRATION_NOT_FOUND once deleted, marked missing or of a missing: id.
func (f *Fake) planGetLocked(r *http.Request, c *Call, arrival time.Time) plan {
	f.stats.Gets++
	p, admitted := f.admitLocked(r, c, arrival)
	if !admitted {
		return p
	}
	id := c.ID
	conv := conventions(id)
	p.wait = f.latencyLocked(conv)
	switch {
	case conv.missing || f.missing[id] || f.deleted[id]:
		p.answer = NotFound()
	case conv.invalid:
		p.answer = InputInvalid()
	default:
		in, ok := f.integrations[id]
		if !ok {
			in = DefaultIntegration(id)
		}
		p.answer, p.data = OK(), integrationJSON(id, in)
	}
	return p
}

// integrationJSON is the "data" of Kombo's answer to GET /integrations/{id}.
func integrationJSON(id string, in Integration) string {
	type endUser struct {
		OrganizationName string `json:"organization_name"`
		CreatorEmail     string `json:"creator_email"`
		OriginID         string `json:"origin_id"`
	}
	b, _ := json.Marshal(struct {
		ID            string     `json:"id"`
		Tool          string     `json:"tool"`
		Category      string     `json:"category"`
		Status        string     `json:"status"`
		SetupStatus   string     `json:"setup_status"`
		EndUser       endUser    `json:"end_user"`
		CreatedAt     time.Time  `json:"created_at"`
		DataExpiredAt *time.Time `json:"data_expired_at"`
	}{id, in.Tool, in.Category, in.Status, in.SetupStatus,
		endUser{in.OrganizationName, in.CreatorEmail, in.OriginID}, in.CreatedAt, in.DataExpiredAt})
	return string(b)
}

// integrationRequest is the body of POST /_fake/integration: an id and the fields of
// Integration to show for it; the fields not given keep DefaultIntegration's values.
type integrationRequest struct {
	ID string `json:"id"`
	Integration
}

func (f *Fake) serveIntegrationControl(w http.ResponseWriter, r *http.Request) {
	var req integrationRequest
	if err := decodeControl(r.Body, &req); err != nil {
		controlError(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.ID == "" {
		controlError(w, http.StatusBadRequest, `"id" is required`)
		return
	}
	in := DefaultIntegration(req.ID)
	merge(&in, req.Integration)
	f.SetIntegration(req.ID, in)
	w.WriteHeader(http.StatusNoContent)
}

// merge sets the fields of dst that src gives (non-zero).
func merge(dst *Integration, src Integration) {
	for _, f := range []struct {
		dst *string
		src string
	}{
		{&dst.Tool, src.Tool}, {&dst.Category, src.Category}, {&dst.Status, src.Status},
		{&dst.SetupStatus, src.SetupStatus}, {&dst.OrganizationName, src.OrganizationName},
		{&dst.CreatorEmail, src.CreatorEmail}, {&dst.OriginID, src.OriginID},
	} {
		if f.src != "" {
			*f.dst = f.src
		}
	}
	if !src.CreatedAt.IsZero() {
		dst.CreatedAt = src.CreatedAt
	}
	if src.DataExpiredAt != nil {
		dst.DataExpiredAt = src.DataExpiredAt
	}
}
