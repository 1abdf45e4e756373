package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestBuild(t *testing.T) {
	src := t.TempDir()
	entries := map[string]string{
		// Two affected blocks for one module: indexed once.
		"GO-2026-0002.json": `{"id":"GO-2026-0002","modified":"0001-01-01T00:00:00Z","aliases":["CVE-2026-2"],
			"affected":[{"package":{"name":"stdlib"}},{"package":{"name":"stdlib"}},{"package":{"name":"golang.org/x/net"}}]}`,
		"GO-2026-0001.json": `{"id":"GO-2026-0001","modified":"2026-01-02T03:04:05Z",
			"affected":[{"package":{"name":"golang.org/x/net"}}]}`,
		"README.md": "not an entry",
	}
	for name, body := range entries {
		if err := os.WriteFile(filepath.Join(src, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "db")
	n, err := build(src, out, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("build indexed %d entries, want 2", n)
	}

	read := func(rel string) string {
		b, err := os.ReadFile(filepath.Join(out, rel))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	var db dbMeta
	if err := json.Unmarshal([]byte(read("index/db.json")), &db); err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC); !db.Modified.Equal(want) {
		t.Errorf("db modified %v, want the latest entry's %v", db.Modified, want)
	}
	var mods []module
	if err := json.Unmarshal([]byte(read("index/modules.json")), &mods); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range mods {
		for _, v := range m.Vulns {
			got = append(got, m.Path+" "+v.ID)
		}
	}
	want := []string{"golang.org/x/net GO-2026-0001", "golang.org/x/net GO-2026-0002", "stdlib GO-2026-0002"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("modules.json (-want +got):\n%s", d)
	}
	if got, want := read("ID/GO-2026-0001.json"), entries["GO-2026-0001.json"]; got != want {
		t.Errorf("ID/GO-2026-0001.json is not the entry byte for byte:\n%s", got)
	}
	if _, err := os.Stat(filepath.Join(out, "ID", "README.md")); err == nil {
		t.Error("a non-JSON file was copied into ID/")
	}
}

func TestBuildRejectsMisnamedEntry(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "GO-2026-0009.json"), []byte(`{"id":"GO-2026-0001"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := build(src, filepath.Join(t.TempDir(), "db"), time.Time{}); err == nil {
		t.Error("build accepted GO-2026-0009.json holding GO-2026-0001")
	}
}
