package kombotest_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

const testKey = "ks_test_123"

// answer is what a test saw come back over HTTP.
type answer struct {
	Status int
	Header http.Header
	Body   string
}

// code is error.code of a Kombo JSON error body; "" when null or not JSON.
func (a answer) code() string {
	var e struct {
		Error struct {
			Code *string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal([]byte(a.Body), &e) != nil || e.Error.Code == nil {
		return ""
	}
	return *e.Error.Code
}

// client never follows redirects, like the real client.
var client = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       30 * time.Second,
}

// do sends one request; key "" sends no Authorization header.
func do(t testing.TB, ctx context.Context, method, url, key string) (answer, error) {
	t.Helper()
	var body io.Reader
	if method == http.MethodDelete {
		body = strings.NewReader("{}")
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	return answer{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}, nil
}

// mustDo is do for calls that must get an answer.
func mustDo(t testing.TB, method, url, key string) answer {
	t.Helper()
	a, err := do(t, context.Background(), method, url, key)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return a
}

func del(t testing.TB, base, escapedID string) answer {
	t.Helper()
	return mustDo(t, http.MethodDelete, base+"/integrations/"+escapedID, testKey)
}

// outcome is the part of an answer most tests compare.
type outcome struct {
	Status int
	Code   string
}

func outcomeOf(a answer) outcome { return outcome{a.Status, a.code()} }
