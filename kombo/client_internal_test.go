package kombo

import (
	"net/http"
	"testing"
	"time"
)

func TestNewDefaults(t *testing.T) {
	c, err := New(Options{APIKey: "ks_test_key"})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.base.String(); got != DefaultBaseURL {
		t.Errorf("base URL = %q, want %q", got, DefaultBaseURL)
	}
	if c.timeout != DefaultTimeout {
		t.Errorf("timeout = %v, want %v", c.timeout, DefaultTimeout)
	}
	if c.userAgent != DefaultUserAgent {
		t.Errorf("user agent = %q, want %q", c.userAgent, DefaultUserAgent)
	}
	tr, ok := c.transport.(*http.Transport)
	if !ok {
		t.Fatalf("transport is %T, want *http.Transport", c.transport)
	}
	if tr == http.DefaultTransport {
		t.Error("transport is http.DefaultTransport itself, want a clone")
	}
	if tr.DisableKeepAlives || tr.MaxIdleConnsPerHost < 64 || (tr.MaxIdleConns != 0 && tr.MaxIdleConns < tr.MaxIdleConnsPerHost) {
		t.Errorf("transport keep-alive off %v, MaxIdleConnsPerHost %d, MaxIdleConns %d; want on, ≥ 64, ≥ per host",
			tr.DisableKeepAlives, tr.MaxIdleConnsPerHost, tr.MaxIdleConns)
	}
	if tr.Proxy == nil {
		t.Error("transport ignores proxy settings from the environment")
	}
}

func TestNewKeepsTransport(t *testing.T) {
	rt := &http.Transport{}
	c, err := New(Options{APIKey: "ks_test_key", Transport: rt, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if c.transport != rt {
		t.Errorf("transport = %v, want the one given", c.transport)
	}
	if c.timeout != time.Second {
		t.Errorf("timeout = %v, want 1s", c.timeout)
	}
}

func TestExcerpt(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"", 5, ""},
		{"abc", 5, "abc"},
		{"abcdef", 5, "abcde…"},
		{"abcde", 5, "abcde"},
		{"abcde   ", 5, "abcde"},
		{"  a \t\r\n b  ", 5, "a b"},
		{"a\x00b\x1b[31mc", 10, "ab[31mc"},
		{"ü\xffñ", 5, "üñ"},
	}
	for _, tt := range tests {
		if got := excerpt([]byte(tt.in), tt.n); got != tt.want {
			t.Errorf("excerpt(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}
