// Command vulndb builds a local Go vulnerability database, in the v1 layout
// that `govulncheck -db file:///dir` reads, from a flat folder of OSV entries:
// the data/osv folder of the golang.org/x/vulndb module as the Go module proxy
// serves it (see scripts/govulncheck.sh).
//
//	go run ./scripts/vulndb -module golang.org/x/vulndb@VERSION -sum h1:... -out DIR
//	go run ./scripts/vulndb -vulns OSVDIR -out DIR
//
// With -module it runs `go mod download -json` (module cache, checksum
// database), checks the module's hash against -sum when given, and takes the
// database's modified time from the module's commit time. DIR is written
// whole or not at all (built beside it, then renamed); an existing complete
// DIR is left as it is.
//
// Layout written (https://go.dev/security/vuln/database#api):
//
//	OUT/index/db.json       {"modified": T}
//	OUT/index/modules.json  [{"path": M, "vulns": [{"id": ID, "modified": T}]}]
//	OUT/index/vulns.json    [{"id": ID, "modified": T, "aliases": [...]}]
//	OUT/ID/<ID>.json        each OSV entry, byte for byte
//
// The optional "fixed" field of modules.json is left out: it is only a
// shortcut that lets a client skip entries without reading them, and leaving
// it out makes govulncheck read every entry of a module and check its ranges
// itself, so it misses nothing. That keeps this program to the standard
// library (no semver package).
//
// The OSV files in the vulndb repository carry a zero "modified" time (the
// real time is stamped when Google deploys the database), so -modified sets
// the database's time; scripts/govulncheck.sh passes the vulndb module's
// commit time.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// entry is the part of an OSV entry that the indexes need.
type entry struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases,omitempty"`
	Affected []struct {
		Module struct {
			Path string `json:"name"`
		} `json:"package"`
	} `json:"affected"`
}

type dbMeta struct {
	Modified time.Time `json:"modified"`
}

type moduleVuln struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
}

type module struct {
	Path  string       `json:"path"`
	Vulns []moduleVuln `json:"vulns"`
}

type vuln struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases,omitempty"`
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("vulndb: ")
	modPath := flag.String("module", "", "golang.org/x/vulndb@VERSION: download it and index its data/osv")
	sum := flag.String("sum", "", "with -module: the module's expected go.sum hash (h1:...)")
	vulns := flag.String("vulns", "", "instead of -module: a folder of OSV entries, <ID>.json")
	out := flag.String("out", "", "folder to write the database to")
	modified := flag.String("modified", "", "database modified time, RFC 3339 (default: the module's commit time, else the latest entry's)")
	flag.Parse()
	if *out == "" || (*modPath == "") == (*vulns == "") || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	if _, err := os.Stat(filepath.Join(*out, "index", "modules.json")); err == nil {
		fmt.Printf("vulndb: %s already built\n", *out)
		return
	}
	var mod time.Time
	if *modPath != "" {
		dir, t, err := download(*modPath, *sum)
		if err != nil {
			log.Fatal(err)
		}
		*vulns, mod = filepath.Join(dir, "data", "osv"), t
	}
	if *modified != "" {
		t, err := time.Parse(time.RFC3339, *modified)
		if err != nil {
			log.Fatalf("-modified: %v", err)
		}
		mod = t.UTC()
	}

	// Build beside the destination, then rename: an interrupted run
	// leaves no half-built database behind to be taken as complete.
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		log.Fatal(err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(*out), filepath.Base(*out)+".tmp-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	n, err := build(*vulns, filepath.Join(tmp, "db"), mod)
	if err != nil {
		log.Fatal(err)
	}
	if err := os.Rename(filepath.Join(tmp, "db"), *out); err != nil {
		// Another run may have finished first; its database is as good.
		if _, serr := os.Stat(filepath.Join(*out, "index", "modules.json")); serr != nil {
			log.Fatal(err)
		}
	}
	fmt.Printf("vulndb: %d entries indexed into %s\n", n, *out)
}

// download fetches module@version into the module cache with the go command
// and returns its folder and commit time.
func download(modVersion, wantSum string) (string, time.Time, error) {
	if !strings.Contains(modVersion, "@") {
		return "", time.Time{}, fmt.Errorf("-module %q: want path@version", modVersion)
	}
	cmd := exec.Command("go", "mod", "download", "-json", modVersion)
	// Outside any module, so that the download neither reads nor touches
	// this repository's go.mod and go.sum.
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOWORK=off")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var info struct {
		Dir, Info, Sum, Error string
	}
	if err := json.Unmarshal(stdout.Bytes(), &info); err != nil || runErr != nil || info.Error != "" {
		return "", time.Time{}, fmt.Errorf("go mod download %s: %v %s %s", modVersion, runErr, info.Error, stderr.String())
	}
	if wantSum != "" && info.Sum != wantSum {
		return "", time.Time{}, fmt.Errorf("%s: hash %s, want %s", modVersion, info.Sum, wantSum)
	}
	var t time.Time
	if b, err := os.ReadFile(info.Info); err == nil {
		var v struct{ Time time.Time }
		if json.Unmarshal(b, &v) == nil {
			t = v.Time.UTC()
		}
	}
	return info.Dir, t, nil
}

// build writes the database for the entries in vulnsDir into outDir and
// returns how many entries it holds. A zero mod means the latest entry time.
func build(vulnsDir, outDir string, mod time.Time) (int, error) {
	files, err := os.ReadDir(vulnsDir)
	if err != nil {
		return 0, err
	}
	if _, err := os.Stat(outDir); err == nil {
		return 0, fmt.Errorf("%s already exists", outDir)
	}
	idDir := filepath.Join(outDir, "ID")
	indexDir := filepath.Join(outDir, "index")
	for _, d := range []string{idDir, indexDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return 0, err
		}
	}

	modules := map[string]*module{}
	var all []vuln
	latest := time.Time{}
	for _, f := range files {
		name := f.Name()
		if f.IsDir() || !strings.HasSuffix(name, ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(vulnsDir, name))
		if err != nil {
			return 0, err
		}
		var e entry
		if err := json.Unmarshal(b, &e); err != nil {
			return 0, fmt.Errorf("%s: %v", name, err)
		}
		if e.ID == "" || name != e.ID+".json" {
			return 0, fmt.Errorf("%s: holds entry %q; want a file named <ID>.json", name, e.ID)
		}
		if e.Modified.After(latest) {
			latest = e.Modified
		}
		all = append(all, vuln{ID: e.ID, Modified: e.Modified, Aliases: e.Aliases})
		seen := map[string]bool{}
		for _, a := range e.Affected {
			p := a.Module.Path
			if p == "" {
				return 0, fmt.Errorf("%s: an affected package has no name", name)
			}
			if seen[p] {
				continue
			}
			seen[p] = true
			m := modules[p]
			if m == nil {
				m = &module{Path: p}
				modules[p] = m
			}
			m.Vulns = append(m.Vulns, moduleVuln{ID: e.ID, Modified: e.Modified})
		}
		if err := os.WriteFile(filepath.Join(idDir, name), b, 0o644); err != nil {
			return 0, err
		}
	}
	if len(all) == 0 {
		return 0, errors.New("no OSV entries in " + vulnsDir)
	}

	if mod.IsZero() {
		mod = latest
	}
	mods := make([]*module, 0, len(modules))
	for _, m := range modules {
		slices.SortFunc(m.Vulns, func(a, b moduleVuln) int { return strings.Compare(a.ID, b.ID) })
		mods = append(mods, m)
	}
	slices.SortFunc(mods, func(a, b *module) int { return strings.Compare(a.Path, b.Path) })
	slices.SortFunc(all, func(a, b vuln) int { return strings.Compare(a.ID, b.ID) })

	for name, v := range map[string]any{
		"db.json":      dbMeta{Modified: mod},
		"modules.json": mods,
		"vulns.json":   all,
	} {
		b, err := json.Marshal(v)
		if err != nil {
			return 0, err
		}
		if err := os.WriteFile(filepath.Join(indexDir, name), b, 0o644); err != nil {
			return 0, err
		}
	}
	return len(all), nil
}
