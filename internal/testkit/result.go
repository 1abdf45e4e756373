package testkit

// Result is a result event (on integration.delete.deleted or .failed) as the contract
// describes it, for tests and tools that read what the daemon stored.
type Result struct {
	RequestID     string       `json:"request_id"`
	IntegrationID string       `json:"integration_id"`
	Status        string       `json:"status"` // "deleted" or "failed"
	NotFound      *bool        `json:"not_found"`
	Attempts      int          `json:"attempts"`
	Error         *ResultError `json:"error"`
	RequestedBy   string       `json:"requested_by"`
	Reason        string       `json:"reason"`
	CompletedAt   string       `json:"completed_at"`
}

// ResultError is a failed result's error.
type ResultError struct {
	Code       string `json:"code"`
	Title      string `json:"title"`
	Message    string `json:"message"`
	LogURL     string `json:"log_url"`
	HTTPStatus int    `json:"http_status"`
}

// Code is the error's code; "" for a result without an error.
func (r Result) Code() string {
	if r.Error == nil {
		return ""
	}
	return r.Error.Code
}

// WasNotFound reports whether the result says the integration did not exist (not_found true).
func (r Result) WasNotFound() bool { return r.NotFound != nil && *r.NotFound }
