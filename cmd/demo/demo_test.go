package main

import (
	"bufio"
	"context"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/engine/records"
	"github.com/amsync/amsync/peer"
)

var listenRe = regexp.MustCompile(`msg="relay listening" addr=(\S+)`)

type proc struct {
	cmd    *exec.Cmd
	addr   string
	exited chan error
}

func startDemo(t *testing.T, bin, data, addr string) *proc {
	t.Helper()
	cmd := exec.Command(bin, "-addr", addr, "-data", data)
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	require.NoError(t, cmd.Start())
	p := &proc{cmd: cmd, exited: make(chan error, 1)}
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := listenRe.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
	}()
	go func() { p.exited <- cmd.Wait(); pw.Close() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	select {
	case p.addr = <-found:
	case err := <-p.exited:
		t.Fatalf("demo exited: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("demo did not start")
	}
	return p
}

func (p *proc) stop(t *testing.T) {
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-p.exited:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("demo did not stop")
	}
}

// numbered waits until the todo has its server fields and returns them.
func numbered(t *testing.T, todos *records.Collection, id string) (no int64, createdAt int64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		rec, err := todos.Get(context.Background(), id)
		if err == nil {
			n, ok1 := rec.Fields["no"].(int64)
			c, ok2 := rec.Fields["createdAt"].(int64)
			if ok1 && ok2 {
				return n, c
			}
		}
		require.True(t, time.Now().Before(deadline), "todo %s never got its server fields", id)
		<-tick.C
	}
}

func TestTodosGetSequentialNumbersAcrossRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the demo binary")
	}
	bin := filepath.Join(t.TempDir(), "demo")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	require.NoError(t, err, string(out))
	data := t.TempDir()
	d := startDemo(t, bin, data, "127.0.0.1:0")

	// A todo created offline, then synced.
	peerDir := t.TempDir()
	pr, err := peer.Open(peer.Config{Dir: peerDir, Seed: 1})
	require.NoError(t, err)
	offline := pr.Records().Collection("todos")
	ctx := context.Background()
	id0, err := offline.Put(ctx, map[string]any{"title": "written offline", "done": false})
	require.NoError(t, err)
	require.NoError(t, pr.Close())

	p, err := peer.Open(peer.Config{URL: "ws://" + d.addr, Dir: peerDir, Seed: 2})
	require.NoError(t, err)
	defer p.Close()
	todos := p.Records().Collection("todos")
	id1, err := todos.Put(ctx, map[string]any{"title": "milk"})
	require.NoError(t, err)
	id2, err := todos.Put(ctx, map[string]any{"title": "eggs"})
	require.NoError(t, err)
	got := map[int64]string{}
	for _, id := range []string{id0, id1, id2} {
		n, at := numbered(t, todos, id)
		assert.Greater(t, at, int64(1700000000000))
		require.NotContains(t, got, n, "number reused")
		got[n] = id
	}
	assert.ElementsMatch(t, []int64{1, 2, 3}, keys(got))

	// Restart the server: old todos keep their numbers (the resumed hook
	// does not renumber), new ones continue the sequence.
	d.stop(t)
	d = startDemo(t, bin, data, d.addr)
	id3, err := todos.Put(ctx, map[string]any{"title": "bread"})
	require.NoError(t, err)
	n3, _ := numbered(t, todos, id3)
	assert.Equal(t, int64(4), n3)
	for n, id := range got {
		again, _ := numbered(t, todos, id)
		assert.Equal(t, n, again)
	}
	d.stop(t)
}

func keys(m map[int64]string) []int64 {
	out := make([]int64, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
