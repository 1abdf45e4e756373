package faults

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// skipMessage is what every test says when the suite is not switched on.
const skipMessage = "the fault suite runs only with FAULTS=1 (make test-faults): it builds the daemon and takes a minute or two"

var (
	binDir   string // where the binaries are built; removed by TestMain
	binPath  string // the daemon binary: FAULTS_BIN, or built into binDir
	build    sync.Once
	buildErr error
	seed     uint64 // of the randomness of the cases; FAULTS_SEED or the clock
)

func TestMain(m *testing.M) {
	if os.Getenv("FAULTS") != "1" {
		fmt.Println("faults:", skipMessage)
	}
	seed = uint64(time.Now().UnixNano())
	if s := os.Getenv("FAULTS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			fmt.Fprintln(os.Stderr, "faults: FAULTS_SEED:", err)
			os.Exit(2)
		}
		seed = v
	}
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// suite skips t unless FAULTS=1, and builds the daemon binary (with -tags faultinject) once;
// FAULTS_BIN names one built so already to use instead (a tree other than the working one).
func suite(t *testing.T) {
	t.Helper()
	if os.Getenv("FAULTS") != "1" {
		t.Skip(skipMessage)
	}
	build.Do(func() {
		if binPath = os.Getenv("FAULTS_BIN"); binPath != "" {
			return
		}
		binDir, buildErr = os.MkdirTemp("", "faults-bin-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "integration-deleter")
		cmd := exec.Command("go", "build", "-tags", "faultinject", "-o", daemonBin(),
			"github.com/kombo-ops/integration-deleter/cmd/integration-deleter")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build -tags faultinject ./cmd/integration-deleter: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

func daemonBin() string { return binPath }

// rng returns the randomness of one test, seeded from the suite's seed and the test's name
// so that FAULTS_SEED repeats a run.
func rng(t *testing.T) *rand.Rand {
	h := uint64(14695981039346656037)
	for _, c := range []byte(t.Name()) {
		h = (h ^ uint64(c)) * 1099511628211
	}
	t.Logf("seed %d (FAULTS_SEED=%d repeats this run)", seed, seed)
	return rand.New(rand.NewPCG(seed, h))
}

// row is one line of the figures table.
type row struct {
	Case        string
	In          int // requests stored in the stream
	Stored      int // results stored
	Lost        int // requests without a stored result
	Dup         int // requests with more than one stored result
	CallsPerReq float64
	Took        time.Duration
	Notes       string
}

const (
	tableHeader = "| case | requests in | results stored | lost | dup | DELETE calls/request | time | notes |"
	tableRule   = "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
)

var reportMu sync.Mutex

// report logs r as a table row and appends it to the file FAULTS_REPORT names (with the
// table's header when the file is new or empty).
func report(t *testing.T, r row) {
	t.Helper()
	line := fmt.Sprintf("| %s | %d | %d | %d | %d | %.2f | %.1fs | %s |",
		r.Case, r.In, r.Stored, r.Lost, r.Dup, r.CallsPerReq, r.Took.Seconds(), strings.ReplaceAll(r.Notes, "|", "/"))
	t.Log("figures:\n" + tableHeader + "\n" + line)
	path := os.Getenv("FAULTS_REPORT")
	if path == "" {
		return
	}
	reportMu.Lock()
	defer reportMu.Unlock()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("FAULTS_REPORT: %v", err)
		return
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() == 0 {
		fmt.Fprintln(f, tableHeader)
		fmt.Fprintln(f, tableRule)
	}
	fmt.Fprintln(f, line)
}
