package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/wsrelay"
)

// cliRelay is a real relay (store, engine, WebSocket server) on a loopback
// port, for the subcommands to talk to.
type cliRelay struct {
	t    *testing.T
	dir  string
	url  string
	r    *wsrelay.Relay
	http *httptest.Server
}

func startCLIRelay(t *testing.T, dir string) *cliRelay {
	t.Helper()
	r, err := wsrelay.OpenRelay(wsrelay.RelayConfig{
		Dir:       dir,
		Isolation: wsrelay.IsolationNone,
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	require.NoError(t, err)
	srv := httptest.NewServer(r.Handler())
	c := &cliRelay{t: t, dir: dir, url: "ws" + strings.TrimPrefix(srv.URL, "http"), r: r, http: srv}
	t.Cleanup(c.stop)
	return c
}

// stop shuts the relay down and releases its directory.
func (c *cliRelay) stop() {
	if c.http == nil {
		return
	}
	c.http.CloseClientConnections()
	c.http.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(c.t, c.r.Shutdown(ctx))
	c.http = nil
}

// cliResult is what one run of the command printed.
type cliResult struct {
	code           int
	stdout, stderr string
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
}

// cli runs "relay args..." in-process.
func cli(t testing.TB, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, &stdout, &stderr)
	return cliResult{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// cliOK runs the command, requires exit status 0, and returns stdout.
func cliOK(t testing.TB, args ...string) string {
	t.Helper()
	res := cli(t, args...)
	require.Equal(t, 0, res.code, "%v: %s", args, res)
	return res.stdout
}

// docJSON runs a command that prints one document and decodes it.
func docJSON(t *testing.T, args ...string) map[string]any {
	t.Helper()
	out := cliOK(t, args...)
	require.Equal(t, 1, strings.Count(out, "\n"), "one line: %q", out)
	var v map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &v), out)
	return v
}

func createURL(t *testing.T, args ...string) string {
	t.Helper()
	out := cliOK(t, append([]string{"doc", "create"}, args...)...)
	url := strings.TrimSuffix(out, "\n")
	require.True(t, strings.HasPrefix(url, "automerge:"), out)
	require.NotContains(t, url, "\n")
	return url
}

func TestCLIDocCreateGetSet(t *testing.T) {
	r := startCLIRelay(t, t.TempDir())
	start := time.Now()
	url := createURL(t, "-server", r.url, `{"title":"groceries","items":[{"name":"milk","done":false}],"n":1,"ratio":0.5,"tags":["a"]}`)
	t.Logf("create: %v", time.Since(start))

	// Each get is a fresh in-memory peer: it sees what the relay holds.
	start = time.Now()
	out := cliOK(t, "doc", "get", "-server", r.url, url)
	t.Logf("get: %v", time.Since(start))
	assert.Equal(t, `{"items":[{"done":false,"name":"milk"}],"n":1,"ratio":0.5,"tags":["a"],"title":"groceries"}`+"\n", out,
		"one line, keys sorted, integers stay integers")

	start = time.Now()
	cliOK(t, "doc", "set", "-server", r.url, url,
		"items.0.done=true",                    // list index, then map key
		`items.1={"name":"eggs","done":false}`, // index == length appends
		`meta.owner.name="ann"`,                // missing map keys are created
		`title="shopping"`,
		"tags.0=null", // null sets null
		"n=2")
	t.Logf("set: %v", time.Since(start))
	assert.Equal(t, map[string]any{
		"items": []any{
			map[string]any{"name": "milk", "done": true},
			map[string]any{"name": "eggs", "done": false},
		},
		"meta":  map[string]any{"owner": map[string]any{"name": "ann"}},
		"n":     float64(2),
		"ratio": 0.5,
		"tags":  []any{nil},
		"title": "shopping",
	}, docJSON(t, "doc", "get", "-server", r.url, url))

	// A bare document id works too; flags may follow the arguments.
	id := strings.TrimPrefix(url, "automerge:")
	assert.Equal(t, "shopping", docJSON(t, "doc", "get", id, "-server", r.url)["title"])

	// Errors that depend on the document exit 1 with one line.
	for _, set := range []string{"items.5=1", "items.x=1", "title.sub=1", "n.0=1"} {
		res := cli(t, "doc", "set", "-server", r.url, url, set)
		assert.Equal(t, 1, res.code, "%s: %s", set, res)
		assert.Equal(t, 1, strings.Count(res.stderr, "\n"), "one line: %q", res.stderr)
	}
	// None of them changed anything.
	assert.Equal(t, float64(2), docJSON(t, "doc", "get", "-server", r.url, url)["n"])
}

func TestCLIDocWatch(t *testing.T) {
	r := startCLIRelay(t, t.TempDir())
	url := createURL(t, "-server", r.url, `{"n":0}`)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"doc", "watch", "-server", r.url, url}, out, &stderr) }()

	waitLines := func(n int) []string {
		t.Helper()
		deadline := time.NewTimer(20 * time.Second)
		defer deadline.Stop()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			lines := out.lines()
			if len(lines) >= n {
				return lines
			}
			select {
			case code := <-done:
				t.Fatalf("watch exited with %d: %s", code, stderr.String())
			case <-deadline.C:
				t.Fatalf("watch printed %q, want %d lines", lines, n)
			case <-tick.C:
			}
		}
	}
	assert.Equal(t, []string{`{"n":0}`}, waitLines(1))
	cliOK(t, "doc", "set", "-server", r.url, url, "n=1")
	lines := waitLines(2)
	assert.Equal(t, `{"n":1}`, lines[len(lines)-1])
	cliOK(t, "doc", "set", "-server", r.url, url, `who="b"`)
	lines = waitLines(3)
	assert.Equal(t, `{"n":1,"who":"b"}`, lines[len(lines)-1])

	cancel() // what SIGINT and SIGTERM do
	select {
	case code := <-done:
		assert.Equal(t, 0, code, stderr.String())
	case <-time.After(20 * time.Second):
		t.Fatal("watch did not stop when interrupted")
	}
}

func TestCLIOfflineCreateThenSync(t *testing.T) {
	r := startCLIRelay(t, t.TempDir())
	data := t.TempDir()
	url := createURL(t, "-offline", "-data", data, `{"written":"offline"}`)
	cliOK(t, "doc", "set", "-offline", "-data", data, url, "count=1")
	assert.Equal(t, map[string]any{"written": "offline", "count": float64(1)},
		docJSON(t, "doc", "get", "-offline", "-data", data, url))

	// The relay has not seen it.
	res := cli(t, "doc", "get", "-server", r.url, url)
	assert.Equal(t, 1, res.code, res.String())
	assert.Contains(t, res.stderr, "not found")

	start := time.Now()
	assert.Equal(t, "synced 1 documents\n", cliOK(t, "doc", "sync", "-server", r.url, "-data", data))
	t.Logf("sync (push): %v", time.Since(start))
	assert.Equal(t, map[string]any{"written": "offline", "count": float64(1)},
		docJSON(t, "doc", "get", "-server", r.url, url), "a fresh peer gets it from the relay")

	// Pull: a change made elsewhere reaches the local store with sync.
	cliOK(t, "doc", "set", "-server", r.url, url, `from="elsewhere"`)
	other := createURL(t, "-offline", "-data", data, `{"second":true}`)
	start = time.Now()
	assert.Equal(t, "synced 2 documents\n", cliOK(t, "doc", "sync", "-server", r.url, "-data", data))
	t.Logf("sync (push and pull): %v", time.Since(start))
	assert.Equal(t, "elsewhere", docJSON(t, "doc", "get", "-offline", "-data", data, url)["from"])
	assert.Equal(t, true, docJSON(t, "doc", "get", "-server", r.url, other)["second"])

	// Online get with a local store brings the local copy level first.
	cliOK(t, "doc", "set", "-server", r.url, url, "count=5")
	assert.Equal(t, float64(5), docJSON(t, "doc", "get", "-server", r.url, "-data", data, url)["count"])
	assert.Equal(t, float64(5), docJSON(t, "doc", "get", "-offline", "-data", data, url)["count"])

	// An online set with a local store is acknowledged by the relay.
	cliOK(t, "doc", "set", "-server", r.url, "-data", data, url, "count=6")
	assert.Equal(t, float64(6), docJSON(t, "doc", "get", "-server", r.url, url)["count"])
}

// inspectRows lists a store with inspect -json.
func inspectRows(t *testing.T, dir string) map[string]inspectRow {
	t.Helper()
	rows := map[string]inspectRow{}
	for line := range strings.SplitSeq(strings.TrimSpace(cliOK(t, "inspect", "-json", "-data", dir)), "\n") {
		var row inspectRow
		require.NoError(t, json.Unmarshal([]byte(line), &row), line)
		rows[row.Doc] = row
	}
	return rows
}

func TestCLIExportImport(t *testing.T) {
	relayDir := t.TempDir()
	r := startCLIRelay(t, relayDir)
	var urls []string
	for i := range 20 {
		u := createURL(t, "-server", r.url, fmt.Sprintf(`{"i":%d,"title":"doc"}`, i))
		urls = append(urls, u)
	}
	for i := range 5 {
		cliOK(t, "doc", "set", "-server", r.url, urls[i], "edited=true", `title="edited"`)
	}
	backup := filepath.Join(t.TempDir(), "backup.jsonl.gz")

	// A running relay's directory is locked: a clear error, exit 1.
	res := cli(t, "export", "-data", relayDir, "-o", backup)
	assert.Equal(t, 1, res.code, res.String())
	assert.Contains(t, res.stderr, "in use by another process")
	assert.Contains(t, res.stderr, "stop it first")
	_, err := os.Stat(backup)
	assert.True(t, os.IsNotExist(err), "no partial backup")
	r.stop()

	// The table lists every document.
	table := cliOK(t, "inspect", "-data", relayDir)
	assert.True(t, strings.HasPrefix(table, "DOCUMENT"), table)
	assert.Contains(t, table, "20 documents")
	for _, u := range urls {
		assert.Contains(t, table, strings.TrimPrefix(u, "automerge:"))
	}

	start := time.Now()
	out := cliOK(t, "export", "-data", relayDir, "-o", backup)
	t.Logf("export of 20 documents: %v: %s", time.Since(start), out)
	assert.Contains(t, out, "exported 20 documents")
	checkBackupFormat(t, backup, 20)

	fresh := filepath.Join(t.TempDir(), "fresh") // created by import
	start = time.Now()
	out = cliOK(t, "import", "-data", fresh, backup)
	t.Logf("import of 20 documents: %v: %s", time.Since(start), out)
	assert.Contains(t, out, "imported 20 documents: 20 new, 0 merged, 0 unchanged; 20 verified")

	before, after := inspectRows(t, relayDir), inspectRows(t, fresh)
	require.Len(t, after, 20)
	for id, row := range before {
		assert.Equal(t, row.Heads, after[id].Heads, "heads of %s", id)
		assert.Equal(t, 1, after[id].Chunks, "one compacted snapshot for %s", id)
		u := "automerge:" + id
		assert.Equal(t, cliOK(t, "inspect", "-data", relayDir, u), cliOK(t, "inspect", "-data", fresh, u))
	}

	// Importing again changes nothing.
	assert.Contains(t, cliOK(t, "import", "-data", fresh, backup), "0 new, 0 merged, 20 unchanged")

	// Divergent edits merge: the relay's copy and the imported copy each
	// gain a change, and a second import into the imported store has both.
	r = startCLIRelay(t, relayDir)
	cliOK(t, "doc", "set", "-server", r.url, urls[0], `onRelay="yes"`)
	r.stop()
	cliOK(t, "doc", "set", "-offline", "-data", fresh, urls[0], `onCopy="yes"`)
	cliOK(t, "export", "-data", relayDir, "-o", backup)
	assert.Contains(t, cliOK(t, "import", "-data", fresh, backup), "0 new, 1 merged, 19 unchanged")
	merged := docJSON(t, "inspect", "-data", fresh, urls[0])
	assert.Equal(t, "yes", merged["onRelay"])
	assert.Equal(t, "yes", merged["onCopy"])
	assert.Equal(t, "edited", merged["title"])
	// The merged document is one snapshot whose heads include both sides.
	row := inspectRows(t, fresh)[strings.TrimPrefix(urls[0], "automerge:")]
	assert.Equal(t, 1, row.Chunks)
	assert.Len(t, row.Heads, 2, "a change from each side")

	// doc sync pushes documents that are not pending (imported, never
	// changed through this store) to a relay that lacks them.
	empty := startCLIRelay(t, t.TempDir())
	assert.Equal(t, "synced 20 documents\n", cliOK(t, "doc", "sync", "-server", empty.url, "-data", fresh))
	assert.Equal(t, merged, docJSON(t, "doc", "get", "-server", empty.url, urls[0]))
	empty.stop()

	// A fresh relay on the imported directory serves the documents.
	r2 := startCLIRelay(t, fresh)
	assert.Equal(t, merged, docJSON(t, "doc", "get", "-server", r2.url, urls[0]))
	assert.Equal(t, "doc", docJSON(t, "doc", "get", "-server", r2.url, urls[19])["title"])

	// A running relay's directory refuses an import.
	res = cli(t, "import", "-data", fresh, backup)
	assert.Equal(t, 1, res.code, res.String())
	assert.Contains(t, res.stderr, "in use by another process")
}

// checkBackupFormat reads the backup as docs/cli.md describes it.
func checkBackupFormat(t *testing.T, name string, docs int) {
	t.Helper()
	f, err := os.Open(name)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	sc := bufio.NewScanner(zr)
	sc.Buffer(nil, 64<<20)
	var lines []map[string]any
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m))
		lines = append(lines, m)
	}
	require.NoError(t, sc.Err())
	require.Len(t, lines, docs+2)
	assert.Equal(t, "amsync-backup", lines[0]["format"])
	assert.Equal(t, float64(1), lines[0]["version"])
	assert.Equal(t, map[string]any{"end": true, "documents": float64(docs)}, lines[len(lines)-1])
	for _, l := range lines[1 : docs+1] {
		assert.NotEmpty(t, l["doc"])
		assert.NotEmpty(t, l["heads"])
		chunks := l["chunks"].([]any)
		require.Len(t, chunks, 1)
		assert.Equal(t, "snapshot", chunks[0].(map[string]any)["kind"])
	}
}

func TestCLIImportRejectsDamagedBackups(t *testing.T) {
	r := startCLIRelay(t, t.TempDir())
	createURL(t, "-server", r.url, `{"a":1}`)
	createURL(t, "-server", r.url, `{"b":2}`)
	r.stop()
	backup := filepath.Join(t.TempDir(), "b.gz")
	cliOK(t, "export", "-data", r.dir, "-o", backup)
	raw := gunzip(t, backup)
	lines := strings.SplitAfter(strings.TrimSuffix(raw, "\n"), "\n")
	require.Len(t, lines, 4)

	cases := map[string]string{
		"truncated":       strings.Join(lines[:3], ""),
		"count mismatch":  lines[0] + lines[1] + lines[3],
		"wrong version":   strings.Replace(lines[0], `"version":1`, `"version":2`, 1) + strings.Join(lines[1:], ""),
		"wrong heads":     lines[0] + strings.Replace(lines[1], `"heads":["`, `"heads":["00`, 1) + lines[2] + lines[3],
		"trailing data":   raw + "{}\n",
		"not a doc id":    lines[0] + strings.Replace(lines[1], `"doc":"`, `"doc":"x`, 1) + lines[2] + lines[3],
		"no chunks":       lines[0] + `{"doc":"` + docIDOf(t, lines[1]) + `","heads":["` + strings.Repeat("ab", 32) + `"],"chunks":[]}` + "\n" + lines[2] + lines[3],
		"foreign heads":   lines[0] + strings.Replace(lines[1], `"heads":["`, `"heads":["`+strings.Repeat("ab", 32)+`","`, 1) + lines[2] + lines[3],
		"unknown kind":    lines[0] + strings.Replace(lines[1], `"kind":"snapshot"`, `"kind":"sync-state"`, 1) + lines[2] + lines[3],
		"not json at all": "hello\n",
	}
	for name, body := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "b.gz")
			writeGzip(t, file, body)
			res := cli(t, "import", "-data", filepath.Join(dir, "store"), file)
			assert.Equal(t, 1, res.code, res.String())
			assert.Equal(t, 1, strings.Count(res.stderr, "\n"), "one line: %q", res.stderr)
		})
	}
	res := cli(t, "import", "-data", filepath.Join(t.TempDir(), "s"), "/nonexistent/backup.gz")
	assert.Equal(t, 1, res.code, res.String())

	// A document on two lines is merged in order (the second line finds
	// the first one's write, even within one batch).
	dir := t.TempDir()
	file := filepath.Join(dir, "dup.gz")
	writeGzip(t, file, lines[0]+lines[1]+lines[1]+`{"end":true,"documents":2}`+"\n")
	assert.Contains(t, cliOK(t, "import", "-data", filepath.Join(dir, "store"), file),
		"imported 2 documents: 1 new, 0 merged, 1 unchanged; 1 verified")
}

func docIDOf(t *testing.T, line string) string {
	var d backupDoc
	require.NoError(t, json.Unmarshal([]byte(line), &d))
	return d.Doc
}

func gunzip(t *testing.T, name string) string {
	f, err := os.Open(name)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	b, err := io.ReadAll(zr)
	require.NoError(t, err)
	return string(b)
}

func writeGzip(t *testing.T, name, body string) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write([]byte(body))
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	require.NoError(t, os.WriteFile(name, buf.Bytes(), 0o600))
}

func TestCLIBadArguments(t *testing.T) {
	const url = "automerge:2aGhKwP7pDLMRriTz8Km8fGMTtP7"
	data := t.TempDir()
	for _, args := range [][]string{
		{"doc"},
		{"doc", "nope"},
		{"doc", "create"},
		{"doc", "create", "-server", "ws://127.0.0.1:1", "[1]"},
		{"doc", "create", "-server", "ws://127.0.0.1:1", "{bad"},
		{"doc", "create", "-server", "ws://127.0.0.1:1", "{}"},
		{"doc", "create", "-server", "ws://127.0.0.1:1", `{"a":1} x`},
		{"doc", "create", "-offline", `{"a":1}`},
		{"doc", "create", `{"a":1}`},
		{"doc", "create", "-server", "http://127.0.0.1:1", `{"a":1}`},
		{"doc", "create", "-server", "ws://127.0.0.1:1", "-timeout", "0s", `{"a":1}`},
		{"doc", "get", "-server", "ws://127.0.0.1:1"},
		{"doc", "get", "-server", "ws://127.0.0.1:1", "not-a-url"},
		{"doc", "get", "-server", "ws://127.0.0.1:1", url + "#abc"},
		{"doc", "get", "-server", "ws://127.0.0.1:1", url, url},
		{"doc", "set", "-server", "ws://127.0.0.1:1", url},
		{"doc", "set", "-server", "ws://127.0.0.1:1", url, "noequals"},
		{"doc", "set", "-server", "ws://127.0.0.1:1", url, "a..b=1"},
		{"doc", "set", "-server", "ws://127.0.0.1:1", url, "a=hello"},
		{"doc", "watch", "-server", "ws://127.0.0.1:1"},
		{"doc", "sync", "-server", "ws://127.0.0.1:1"},
		{"doc", "sync", "-server", "ws://127.0.0.1:1", "-data", data, "extra"},
		{"doc", "get", "-no-such-flag", url},
		{"inspect"},
		{"inspect", "-data", data, url, url},
		{"export", "-data", data},
		{"export", "-data", data, "-o", "x", "extra"},
		{"import", "-data", data},
		{"import", "file"},
	} {
		res := cli(t, args...)
		assert.Equal(t, 2, res.code, "%q: %s", args, res)
		assert.Contains(t, res.stderr, "usage: relay", "%q", args)
	}
	// Help is not an error, and the main usage lists the subcommands.
	for _, args := range [][]string{{"-h"}, {"doc", "-h"}, {"doc", "set", "-h"}, {"inspect", "-h"}} {
		res := cli(t, args...)
		assert.Equal(t, 0, res.code, "%q: %s", args, res)
	}
	help := cli(t, "-h").stderr
	for _, sub := range []string{"doc create", "doc get", "doc set", "doc watch", "doc sync", "inspect", "export", "import", "-addr"} {
		assert.Contains(t, help, sub)
	}
}

func TestCLIUnreachableServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	server := "ws://" + ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now

	data := t.TempDir()
	url := createURL(t, "-offline", "-data", data, `{"a":1}`)
	for _, args := range [][]string{
		{"doc", "create", "-server", server, "-timeout", "500ms", `{"a":1}`},
		{"doc", "get", "-server", server, "-timeout", "500ms", url},
		{"doc", "set", "-server", server, "-timeout", "500ms", url, "a=2"},
		{"doc", "watch", "-server", server, "-timeout", "500ms", url},
		{"doc", "sync", "-server", server, "-timeout", "500ms", "-data", data},
	} {
		done := make(chan cliResult, 1)
		start := time.Now()
		go func() {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), args, &stdout, &stderr)
			done <- cliResult{code: code, stdout: stdout.String(), stderr: stderr.String()}
		}()
		select {
		case res := <-done:
			t.Logf("%s %s: exit %d after %v", args[0], args[1], res.code, time.Since(start))
			assert.Equal(t, 1, res.code, "%q: %s", args, res)
			assert.Contains(t, res.stderr, "cannot reach "+server, "%q", args)
			assert.Equal(t, 1, strings.Count(res.stderr, "\n"), "one line: %q", res.stderr)
			assert.Empty(t, res.stdout)
		case <-time.After(30 * time.Second):
			t.Fatalf("%q hangs", args)
		}
	}
	// The offline changes are still there for a later sync.
	assert.Equal(t, float64(1), docJSON(t, "doc", "get", "-offline", "-data", data, url)["a"])
}

// syncBuffer is a bytes.Buffer that a command writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// lines returns the complete lines written so far.
func (s *syncBuffer) lines() []string {
	text := s.String()
	if i := strings.LastIndexByte(text, '\n'); i >= 0 {
		return strings.Split(text[:i], "\n")
	}
	return nil
}
