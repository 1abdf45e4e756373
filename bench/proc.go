package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kombo-ops/integration-deleter/internal/testkit"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat: 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// proc is a subprocess under measurement: a daemon replica or a baseline replica.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	httpURL string // the daemon's http://host:port; "" for a baseline
	done    chan struct{}
	err     error // after done
}

// startProc starts argv with env added to the bench's environment, stdout and stderr to logPath.
func startProc(name string, argv, env []string, logPath string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the bench
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool { return testkit.Closed(p.done) }

// stop sends SIGTERM and waits up to grace for the exit, then kills.
func (p *proc) stop(grace time.Duration) error {
	if p.exited() {
		return p.err
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not stop within %s after SIGTERM; killed", p.name, grace)
	}
}

// tail returns the last n lines of the process's log, for error messages.
func (p *proc) tail(n int) string {
	data, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// cpuSeconds returns utime+stime of pid so far, from /proc/<pid>/stat.
func cpuSeconds(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may contain spaces: split after it.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("unreadable /proc/pid/stat")
	}
	f := strings.Fields(string(data[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("short /proc/pid/stat")
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return float64(ut+st) / clockTicks, nil
}

// peakRSS returns VmHWM of pid (the peak resident set size) in bytes.
func peakRSS(pid int) (uint64, error) { return statusBytes(pid, "VmHWM:") }

// currentRSS returns VmRSS of pid (its resident set size now) in bytes.
func currentRSS(pid int) (uint64, error) { return statusBytes(pid, "VmRSS:") }

// statusBytes returns the field of /proc/<pid>/status named by key (in kB there) in bytes.
func statusBytes(pid int, key string) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no %s in /proc/pid/status", key)
}

// waitReady polls the daemon's /readyz until it answers 200 (or, for a baseline, readyFile
// until it exists), the process exits, or timeout passes.
func (p *proc) waitReady(ctx context.Context, readyFile string, timeout time.Duration) error {
	gone := func() error {
		if p.exited() {
			return fmt.Errorf("%s exited before it was ready: %v", p.name, p.err)
		}
		return nil
	}
	var err error
	if p.httpURL != "" {
		err = testkit.WaitReady(ctx, p.httpURL+"/readyz", timeout, gone)
	} else {
		err = testkit.Poll(ctx, 20*time.Millisecond, timeout, func() (bool, string, error) {
			_, statErr := os.Stat(readyFile)
			return statErr == nil, fmt.Sprint(statErr), gone()
		})
	}
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", p.name, err, p.tail(20))
	}
	return nil
}

// machineTicks returns the busy and total CPU time of the whole machine so far, in seconds
// summed over CPUs, from /proc/stat.
func machineTicks() (busy, total float64, err error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, errors.New("unreadable /proc/stat")
	}
	for i, v := range f[1:] {
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, 0, err
		}
		if i >= 8 { // guest time is counted in user already
			break
		}
		total += x / clockTicks
		if i != 3 && i != 4 { // idle, iowait
			busy += x / clockTicks
		}
	}
	return busy, total, nil
}

// cpuBusy returns how many CPUs' worth of time the whole machine spent busy over d.
func cpuBusy(d time.Duration) (float64, error) {
	b0, _, err := machineTicks()
	if err != nil {
		return 0, err
	}
	time.Sleep(d)
	b1, _, err := machineTicks()
	if err != nil {
		return 0, err
	}
	return (b1 - b0) / d.Seconds(), nil
}

// waitQuiet waits, up to max, until the machine is nearly idle (other work using less than
// half a CPU), so that runs do not measure someone else's load. It returns the load seen last,
// in CPUs.
func waitQuiet(ctx context.Context, max time.Duration) float64 {
	deadline := time.Now().Add(max)
	for {
		busy, err := cpuBusy(time.Second)
		if err != nil || busy < 0.5 || time.Now().After(deadline) || ctx.Err() != nil {
			return busy
		}
	}
}
