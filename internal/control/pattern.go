package control

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// Match reports whether the integration id matches pattern: every character of pattern
// stands for itself except '*', which matches any run of characters, none included. There is
// no '?', no class and no escape: ids hold ':', '/' and any UTF-8, and an operator protecting
// one must not have to quote it.
func Match(pattern, id string) bool {
	if !strings.Contains(pattern, "*") {
		return pattern == id
	}
	parts := strings.Split(pattern, "*")
	first, last := parts[0], parts[len(parts)-1]
	if len(id) < len(first)+len(last) || !strings.HasPrefix(id, first) || !strings.HasSuffix(id, last) {
		return false
	}
	// The middle parts, in order, each at its leftmost place in what is left: taking the
	// leftmost leaves the most room for the others.
	rest := id[len(first) : len(id)-len(last)]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(rest, p)
		if i < 0 {
			return false
		}
		rest = rest[i+len(p):]
	}
	return true
}

// CheckPattern says why pattern cannot be a protection, or nil. A pattern of '*' only
// protects every integration, which stops all deletes: it is refused unless all says that is
// meant.
func CheckPattern(p string, all bool) error {
	switch {
	case p == "":
		return errors.New("control: empty pattern: it protects no integration (use '*' with --all to protect all)")
	case !utf8.ValidString(p):
		return errors.New("control: pattern is not valid UTF-8: no integration id could match it")
	case strings.Trim(p, "*") == "" && !all:
		return errors.New("control: pattern " + p + " protects every integration and so stops all deletes; pass --all if that is meant")
	}
	return nil
}
