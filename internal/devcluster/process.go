package devcluster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// markerEnv is set in the environment of every process a cluster starts, to
// the absolute cluster directory; it is how a pid is proven to be ours before
// it is signalled, and how strays of a crashed run are found.
const markerEnv = "MESHREV_LOCAL_CLUSTER"

// process is a component started by this package.
type process struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited (children only)
	err    error         // exit status, valid after exited is closed
}

// startProcess starts bin with args, logging to the component's log file and
// writing its pid file. With detach the process gets its own session and
// outlives the caller; otherwise it is killed when the caller dies.
func startProcess(l Layout, name, bin string, args, extraEnv []string, detach bool) (*process, error) {
	logFile, err := os.OpenFile(l.LogFile(name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening log for %s: %w", name, err)
	}
	defer logFile.Close()
	fmt.Fprintf(logFile, "# %s started %s\n# %s %s\n", name, time.Now().Format(time.RFC3339), bin, strings.Join(args, " "))

	cmd := exec.Command(bin, args...)
	cmd.Dir = l.StateDir()
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = append(append(os.Environ(), markerEnv+"="+l.Root), extraEnv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if !detach {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
		// Pdeathsig fires when the starting thread exits; keep it put.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s (%s): %w", name, bin, err)
	}
	p := &process{name: name, cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	if err := os.WriteFile(l.PIDFile(name), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("writing pid file of %s: %w", name, err)
	}
	return p, nil
}

// exitError reports whether the process has exited, and how.
func (p *process) exitError() error {
	select {
	case <-p.exited:
		if p.err == nil {
			return fmt.Errorf("%s exited", p.name)
		}
		return fmt.Errorf("%s exited: %w", p.name, p.err)
	default:
		return nil
	}
}

// readPID reads a pid file; 0 when absent or unreadable.
func readPID(path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// isOurs reports whether pid is a live (non-zombie) process carrying the
// marker of cluster directory root.
func isOurs(pid int, root string) bool {
	if pid <= 0 || !alive(pid) {
		return false
	}
	env, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "environ"))
	if err != nil {
		return false
	}
	want := []byte(markerEnv + "=" + root)
	for _, kv := range bytes.Split(env, []byte{0}) {
		if bytes.Equal(kv, want) {
			return true
		}
	}
	return false
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return false
	}
	state := stat[i+2]
	return state != 'Z' && state != 'X'
}

// strays lists processes carrying the marker of root (e.g. left by a crashed run).
func strays(root string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if isOurs(pid, root) {
			pids = append(pids, pid)
		}
	}
	sort.Ints(pids)
	return pids
}

// terminate sends SIGTERM to pid (only if it is ours), waits up to grace, then SIGKILLs it.
func terminate(pid int, root string, grace time.Duration) error {
	if !isOurs(pid, root) {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signalling pid %d: %w", pid, err)
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !isOurs(pid, root) {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("killing pid %d: %w", pid, err)
	}
	for i := 0; i < 100 && alive(pid); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if alive(pid) {
		return fmt.Errorf("pid %d did not exit after SIGKILL", pid)
	}
	return nil
}

// componentOrder is the start order; stopping goes in reverse.
var componentOrder = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}

// stopAll stops every process of the cluster in root: those named by pid files
// first (in reverse start order), then any stray carrying the marker. It
// returns the number of processes stopped.
func stopAll(l Layout) (int, error) {
	var errs []error
	stopped := 0
	for i := len(componentOrder) - 1; i >= 0; i-- {
		name := componentOrder[i]
		pidFile := l.PIDFile(name)
		pid := readPID(pidFile)
		if pid != 0 && isOurs(pid, l.Root) {
			grace := 10 * time.Second
			if name == "kwok" || name == "kube-scheduler" || name == "kube-controller-manager" {
				grace = 5 * time.Second
			}
			if err := terminate(pid, l.Root, grace); err != nil {
				errs = append(errs, fmt.Errorf("stopping %s: %w", name, err))
				continue
			}
			stopped++
		}
		if err := os.Remove(pidFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing %s: %w", pidFile, err))
		}
	}
	for _, pid := range strays(l.Root) {
		if err := terminate(pid, l.Root, 5*time.Second); err != nil {
			errs = append(errs, fmt.Errorf("stopping stray pid %d: %w", pid, err))
			continue
		}
		stopped++
	}
	return stopped, errors.Join(errs...)
}
