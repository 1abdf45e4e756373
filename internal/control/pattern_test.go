package control_test

import (
	"strings"
	"testing"

	"github.com/kombo-ops/integration-deleter/internal/control"
)

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, id string
		want        bool
	}{
		{"acme:*", "acme:42", true},
		{"acme:*", "acme:", true},
		{"acme:*", "acm:42", false},
		{"acme:*", "xacme:42", false},
		{"*:123", "acme:123", true},
		{"*:123", "acme:1234", false},
		{"a*b*c", "abc", true},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "abcbc", true},
		{"a*b*c", "acb", false},
		{"a*b*c", "ab", false},
		{"ab*ba", "aba", false}, // prefix and suffix must not overlap
		{"*", "", true},
		{"**", "anything", true},
		{"acme:*:eu", "acme::eu", true},
		{"B7yPLNMGcVHmwZTHDd8eV4Zk", "B7yPLNMGcVHmwZTHDd8eV4Zk", true},
		{"B7yPLNMGcVHmwZTHDd8eV4Zk", "B7yPLNMGcVHmwZTHDd8eV4Z", false},
		{"org/acme:42", "org/acme:42", true},
		{"größe:☃", "größe:☃", true},
		{"größe:*", "größe:☃x", true},
		{"?", "a", false}, // '?' is literal
		{"[a]", "a", false},
		{"[a]", "[a]", true},
	} {
		if got := control.Match(tc.pattern, tc.id); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.pattern, tc.id, got, tc.want)
		}
	}
}

func TestCheckPattern(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		all     bool
		want    string // in the error; "" for none
	}{
		{"acme:*", false, ""},
		{"B7yPLNMGcVHmwZTHDd8eV4Zk", false, ""},
		{"*", false, "protects every integration"},
		{"***", false, "protects every integration"},
		{"*", true, ""},
		{"", false, "empty pattern"},
		{"", true, "empty pattern"},
		{"a\xffb", false, "UTF-8"},
	} {
		err := control.CheckPattern(tc.pattern, tc.all)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("CheckPattern(%q, %v) = %v, want nil", tc.pattern, tc.all, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("CheckPattern(%q, %v) = %v, want an error saying %q", tc.pattern, tc.all, err, tc.want)
		}
	}
}
