package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMain removes the relay binary built by buildRelay.
func TestMain(m *testing.M) {
	code := m.Run()
	if relayBuild.dir != "" {
		os.RemoveAll(relayBuild.dir)
	}
	os.Exit(code)
}

// relayBuild is the relay binary, compiled once per test binary run.
var relayBuild struct {
	once sync.Once
	dir  string
	bin  string
	out  []byte
	err  error
}

// buildRelay compiles the relay once per test binary run and returns its
// path.
func buildRelay(t *testing.T) string {
	t.Helper()
	relayBuild.once.Do(func() {
		relayBuild.dir, relayBuild.err = os.MkdirTemp("", "amsync-relay-bin-")
		if relayBuild.err != nil {
			return
		}
		relayBuild.bin = filepath.Join(relayBuild.dir, "relay")
		relayBuild.out, relayBuild.err = exec.Command("go", "build", "-o", relayBuild.bin, ".").CombinedOutput()
	})
	require.NoError(t, relayBuild.err, string(relayBuild.out))
	return relayBuild.bin
}

// logBuffer collects the relay's stderr; the reader goroutine writes while
// the test reads.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(line)
	l.b.WriteByte('\n')
}

// String returns everything logged so far.
func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Lines returns the logged lines that contain every one of subs.
func (l *logBuffer) Lines(subs ...string) []string {
	var out []string
	for line := range strings.SplitSeq(l.String(), "\n") {
		ok := line != ""
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// proc is one running relay process.
type proc struct {
	cmd    *exec.Cmd
	addr   string
	stderr *logBuffer
	exited chan error // receives cmd.Wait's result once
	done   chan struct{}
	err    error // valid after done is closed
}

var listenRe = regexp.MustCompile(`msg="relay listening" addr=(\S+)`)

// startRelay starts the relay binary with args and waits for its
// "relay listening" log line. The process is killed when the test ends.
func startRelay(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	require.NoError(t, cmd.Start())
	p := &proc{cmd: cmd, stderr: &logBuffer{}, exited: make(chan error, 1), done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.stderr.add(line)
			if m := listenRe.FindStringSubmatch(line); m != nil {
				select {
				case addr <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, pr)
	}()
	go func() {
		err := cmd.Wait()
		pw.Close()
		p.err = err
		close(p.done)
		p.exited <- err
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
	})
	select {
	case p.addr = <-addr:
	case <-p.done:
		t.Fatalf("relay exited before listening: %v\n%s", p.err, p.stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("relay did not start:\n%s", p.stderr)
	}
	return p
}

// pid is the relay's process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// alive reports whether the relay process is still running and answers
// /healthz with 200; the error says why not.
func (p *proc) alive() error {
	select {
	case <-p.done:
		return fmt.Errorf("relay pid %d exited: %v", p.pid(), p.err)
	default:
	}
	if err := syscall.Kill(p.pid(), 0); err != nil {
		return fmt.Errorf("relay pid %d: %w", p.pid(), err)
	}
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + p.addr + "/healthz")
	if err != nil {
		return fmt.Errorf("relay pid %d /healthz: %w", p.pid(), err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("relay pid %d /healthz: status %d", p.pid(), resp.StatusCode)
	}
	return nil
}

// kill9 sends SIGKILL and waits until the process is gone.
func (p *proc) kill9(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("relay pid %d still running 10 s after SIGKILL", p.pid())
	}
}

// metric returns the value of an unlabelled metric from /metrics.
func (p *proc) metric(t *testing.T, name string) float64 {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + p.addr + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for line := range strings.SplitSeq(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			var v float64
			_, err := fmt.Sscan(rest, &v)
			require.NoError(t, err, line)
			return v
		}
	}
	t.Fatalf("metric %s not found", name)
	return 0
}
