// Package kombo is a typed client for the Kombo API calls integration-deleter makes.
package kombo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

const (
	// DefaultBaseURL is Kombo's EU API, used when Options.BaseURL is empty.
	DefaultBaseURL = "https://api.kombo.dev/v1"
	// USBaseURL is Kombo's US API.
	USBaseURL = "https://api.us.kombo.dev/v1"
	// DefaultTimeout bounds one call when Options.Timeout is zero.
	DefaultTimeout = 30 * time.Second
	// DefaultUserAgent is sent when Options.UserAgent is empty.
	DefaultUserAgent = "integration-deleter"
)

const (
	// maxBodyBytes is the most the client reads of any response body; the
	// rest is left unread and the connection closed.
	maxBodyBytes = 64 << 10
	// maxIdleConnsPerHost lets concurrent calls to Kombo reuse connections.
	maxIdleConnsPerHost = 64
)

// ErrEmptyIntegrationID is returned by DeleteIntegration, without calling
// Kombo, when the integration id is empty.
var ErrEmptyIntegrationID = errors.New("kombo: delete integration: empty integration id")

// Options configure a Client. The zero value of each field is documented
// beside it; only APIKey is required.
type Options struct {
	// BaseURL is the API root, such as DefaultBaseURL or USBaseURL; "" means
	// DefaultBaseURL. It must be an absolute http or https URL without user
	// info, query or fragment; a trailing slash is ignored.
	BaseURL string
	// APIKey is the bearer key. It never appears in an error.
	APIKey string
	// UserAgent is sent as User-Agent, such as "integration-deleter/1.2.3";
	// "" means DefaultUserAgent.
	UserAgent string
	// Timeout bounds each call, response body included; 0 means
	// DefaultTimeout.
	Timeout time.Duration
	// Transport sends the requests; nil means a clone of
	// http.DefaultTransport that keeps up to 64 idle connections per host.
	Transport http.RoundTripper
	// Now tells the time for HTTP-date retry hints; nil means time.Now.
	Now func() time.Time
}

// Client calls Kombo. It never follows redirects and never logs. A Client is
// safe for concurrent use.
type Client struct {
	base      *url.URL
	apiKey    string
	userAgent string
	timeout   time.Duration
	now       func() time.Time
	// authorization and userAgentValue are the header values, made once.
	authorization, userAgentValue []string
	// transport sends each request once: calling it directly (not through an
	// http.Client) means no redirect is ever followed, not even one whose
	// Location cannot be parsed (http.Client fails those before CheckRedirect).
	transport http.RoundTripper
}

// New returns a Client for o, or an error naming the first invalid option.
func New(o Options) (*Client, error) {
	base, err := parseBaseURL(o.BaseURL)
	if err != nil {
		return nil, err
	}
	switch {
	case o.APIKey == "":
		return nil, errors.New("kombo: API key is empty")
	case !validHeaderValue(o.APIKey):
		return nil, errors.New("kombo: API key contains a control character (a trailing newline from a key file?)")
	case strings.TrimSpace(o.APIKey) != o.APIKey:
		return nil, errors.New("kombo: API key has leading or trailing white space")
	case !validHeaderValue(o.UserAgent):
		return nil, errors.New("kombo: user agent contains a control character")
	case o.Timeout < 0:
		return nil, fmt.Errorf("kombo: negative timeout %v", o.Timeout)
	}
	c := &Client{
		base:      base,
		apiKey:    o.APIKey,
		userAgent: o.UserAgent,
		timeout:   o.Timeout,
		now:       o.Now,
		transport: o.Transport,
	}
	if c.userAgent == "" {
		c.userAgent = DefaultUserAgent
	}
	c.authorization, c.userAgentValue = []string{"Bearer " + c.apiKey}, []string{c.userAgent}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.transport == nil {
		c.transport = defaultTransport()
	}
	return c, nil
}

func parseBaseURL(s string) (*url.URL, error) {
	if s == "" {
		s = DefaultBaseURL
	}
	u, err := url.Parse(s)
	if err != nil {
		// url.Parse quotes its input, which could hold a password.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, fmt.Errorf("kombo: invalid base URL: %w", err)
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("kombo: base URL %q: scheme must be http or https", u.Redacted())
	case u.Host == "":
		return nil, fmt.Errorf("kombo: base URL %q has no host", u.Redacted())
	case u.User != nil:
		return nil, fmt.Errorf("kombo: base URL %q must not contain user info", u.Redacted())
	case u.RawQuery != "" || u.ForceQuery || u.Fragment != "":
		return nil, fmt.Errorf("kombo: base URL %q must not have a query or fragment", u.Redacted())
	}
	raw := strings.TrimRight(u.EscapedPath(), "/")
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = raw
	return u, nil
}

func defaultTransport() *http.Transport {
	t, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		// Someone replaced http.DefaultTransport: start from Go's defaults.
		t = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          100,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
	}
	t = t.Clone()
	t.DisableKeepAlives = false
	t.MaxIdleConnsPerHost = max(t.MaxIdleConnsPerHost, maxIdleConnsPerHost)
	if t.MaxIdleConns != 0 {
		t.MaxIdleConns = max(t.MaxIdleConns, t.MaxIdleConnsPerHost)
	}
	return t
}

// DeleteResult is what Kombo answered to a successful delete.
type DeleteResult struct {
	// Limits are the limits the answer states.
	Limits
}

// DeleteIntegration deletes the integration id with
// DELETE {base}/integrations/{id}, the id escaped as one path segment. An
// empty id returns ErrEmptyIntegrationID without a call.
// Kombo's answer other than 200 is returned as an *Error; any other error is
// a transport failure (connection refused or reset, timeout, cancellation),
// wrapped so that errors.Is(err, context.DeadlineExceeded) and the like hold.
func (c *Client) DeleteIntegration(ctx context.Context, id string) (DeleteResult, error) {
	if id == "" {
		return DeleteResult{}, ErrEmptyIntegrationID
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	r, err := c.call(ctx, operation{"delete integration", id}, http.MethodDelete, c.endpoint("integrations", id), []byte("{}"))
	if err != nil {
		return DeleteResult{}, err
	}
	// Any 200 is a success: the body does not matter, nor whether it could
	// be read in full.
	return DeleteResult{Limits: parseLimits(r.header)}, nil
}

// KeyInfo is what Kombo tells about an accepted API key.
type KeyInfo struct {
	// EnvironmentID is the Kombo environment the key belongs to.
	EnvironmentID string
}

// CheckAPIKey checks the API key with GET {base}/check-api-key, which has no
// side effects. A rejected key is an *Error matching ErrAuthenticationInvalid
// (or ErrIPNotWhitelisted); a 200 whose body is not Kombo's success JSON is an
// error that is not an *Error.
func (c *Client) CheckAPIKey(ctx context.Context) (KeyInfo, error) {
	var data struct {
		EnvironmentID string `json:"environment_id"`
	}
	if _, err := c.get(ctx, operation{name: "check API key"}, c.endpoint("check-api-key"), &data); err != nil {
		return KeyInfo{}, err
	}
	return KeyInfo{EnvironmentID: data.EnvironmentID}, nil
}

// Integration is what GET /integrations/{id} tells of an integration: what a
// delete would remove.
type Integration struct {
	ID          string `json:"id"`
	Tool        string `json:"tool"`     // the tool's id, e.g. "personio"
	Category    string `json:"category"` // e.g. "HRIS", "ATS"
	Status      string `json:"status"`   // e.g. "ACTIVE", "INVALID", "INACTIVE"
	SetupStatus string `json:"setup_status"`
	EndUser     struct {
		OrganizationName string `json:"organization_name"`
		CreatorEmail     string `json:"creator_email"`
		OriginID         string `json:"origin_id"`
	} `json:"end_user"`
	CreatedAt     time.Time  `json:"created_at"`
	DataExpiredAt *time.Time `json:"data_expired_at"` // nil: not expired
	// Limits are the limits the answer states.
	Limits `json:"-"`
}

// GetIntegration reads the integration id with GET {base}/integrations/{id},
// which has no side effects. Errors are as DeleteIntegration's; an unknown id
// is an *Error matching ErrIntegrationNotFound.
func (c *Client) GetIntegration(ctx context.Context, id string) (Integration, error) {
	if id == "" {
		return Integration{}, ErrEmptyIntegrationID
	}
	var in Integration
	h, err := c.get(ctx, operation{"get integration", id}, c.endpoint("integrations", id), &in)
	if err != nil {
		return Integration{}, err
	}
	in.Limits = parseLimits(h)
	return in, nil
}

// get calls GET u and decodes the data of Kombo's success JSON into data. It
// returns the answer's header.
func (c *Client) get(ctx context.Context, op operation, u *url.URL, data any) (http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	r, err := c.call(ctx, op, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	if r.bodyErr != nil {
		return nil, fmt.Errorf("kombo: %s: read HTTP 200 response: %w", op, r.bodyErr)
	}
	var body struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil {
		return nil, fmt.Errorf("kombo: %s: decode HTTP 200 response: %w", op, err)
	}
	if len(body.Data) == 0 || string(body.Data) == "null" {
		return nil, fmt.Errorf("kombo: %s: HTTP 200 response has no data", op)
	}
	if err := json.Unmarshal(body.Data, data); err != nil {
		return nil, fmt.Errorf("kombo: %s: decode HTTP 200 response: %w", op, err)
	}
	return r.header, nil
}

type traceKey struct{}

type traceHeaders struct{ parent, state string }

// WithTrace returns a copy of ctx that makes the client send the W3C trace
// headers traceparent and tracestate with its calls. An empty value, or one
// that is not a valid HTTP header value, is not sent; the values are not
// otherwise checked.
func WithTrace(ctx context.Context, traceparent, tracestate string) context.Context {
	return context.WithValue(ctx, traceKey{}, traceHeaders{parent: traceparent, state: tracestate})
}

// endpoint returns the URL of base/segments..., each segment escaped as one
// path segment. Path and RawPath are both set so the escaping is kept.
func (c *Client) endpoint(segments ...string) *url.URL {
	u := *c.base
	for _, s := range segments {
		u.Path += "/" + s
		u.RawPath += "/" + escapeSegment(s)
	}
	return &u
}

// escapeSegment escapes s as one path segment. Segments made only of dots
// are escaped too ("%2E%2E"), so that no one on the way treats them as "."
// or "..".
func escapeSegment(s string) string {
	if s != "" && strings.Trim(s, ".") == "" {
		return strings.Repeat("%2E", len(s))
	}
	return url.PathEscape(s)
}

// reply is a 200 answer.
type reply struct {
	header  http.Header
	body    []byte
	bodyErr error // reading the body failed or it was longer than maxBodyBytes
}

var errBodyTooLarge = fmt.Errorf("body longer than %d bytes", maxBodyBytes)

// call sends one request. It returns a reply for a 200, an *Error for any
// other answer, and a transport error, wrapped with op, otherwise.
func (c *Client) call(ctx context.Context, op operation, method string, u *url.URL, body []byte) (reply, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	// The URL is set as built rather than printed and parsed again (which also keeps
	// RawPath exactly as built); with Request.Host empty, the Host header is u.Host.
	req, err := http.NewRequestWithContext(ctx, method, "", rd)
	if err != nil {
		return reply{}, fmt.Errorf("kombo: %s: %w", op, err)
	}
	req.URL = u
	// Canonical names, values made once per client: no work per call but the map.
	req.Header = make(http.Header, 6)
	req.Header["Authorization"] = c.authorization
	req.Header["Accept"] = acceptJSON
	req.Header["User-Agent"] = c.userAgentValue
	if body != nil {
		req.Header["Content-Type"] = acceptJSON
	}
	if t, ok := ctx.Value(traceKey{}).(traceHeaders); ok {
		if t.parent != "" && validHeaderValue(t.parent) {
			req.Header.Set("traceparent", t.parent)
		}
		if t.state != "" && validHeaderValue(t.state) {
			req.Header.Set("tracestate", t.state)
		}
	}

	resp, err := c.transport.RoundTrip(req)
	if err != nil {
		// *url.Error repeats the method and URL; the op says enough.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return reply{}, fmt.Errorf("kombo: %s: %w", op, err)
	}
	// Closing a body that was not read to the end drops the connection
	// instead of reading an unbounded rest.
	defer resp.Body.Close()
	data, truncated, readErr := readBody(resp.Body)

	if resp.StatusCode == http.StatusOK {
		if readErr == nil && truncated {
			readErr = errBodyTooLarge
		}
		return reply{header: resp.Header, body: data, bodyErr: readErr}, nil
	}
	if readErr != nil {
		// The answer was not received in full: not Kombo's word.
		return reply{}, fmt.Errorf("kombo: %s: read HTTP %d response: %w", op, resp.StatusCode, readErr)
	}
	return reply{}, c.newError(resp, data, truncated)
}

// operation names a call in errors; formatted only when there is an error.
type operation struct{ name, id string }

func (o operation) String() string {
	if o.id == "" {
		return o.name
	}
	return o.name + " " + strconv.Quote(o.id)
}

// acceptJSON is the value of the Accept and Content-Type headers. Header values are
// shared between requests and never changed.
var acceptJSON = []string{"application/json"}

// readBody reads at most maxBodyBytes of r and tells whether there was more.
func readBody(r io.Reader) (data []byte, truncated bool, err error) {
	data, err = io.ReadAll(io.LimitReader(r, maxBodyBytes+1))
	if len(data) > maxBodyBytes {
		return data[:maxBodyBytes], true, err
	}
	return data, false, err
}

// validHeaderValue reports whether s can be sent as an HTTP header value:
// no control characters other than tab.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; (b < ' ' && b != '\t') || b == 0x7f {
			return false
		}
	}
	return true
}
