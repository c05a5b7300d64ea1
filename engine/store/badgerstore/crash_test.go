package badgerstore

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/engine/store"
)

// The crash test re-executes the test binary as a child process that
// writes until it is killed; TestMain turns the binary into that child when
// these variables are set.
const (
	crashEnvDir   = "BADGERSTORE_CRASH_CHILD_DIR"
	crashEnvRound = "BADGERSTORE_CRASH_CHILD_ROUND"
	crashWriters  = 8
	// crashMaxBatches bounds a child whose parent has gone away.
	crashMaxBatches = 100_000
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashEnvDir); dir != "" {
		os.Exit(crashChild(dir, os.Getenv(crashEnvRound)))
	}
	os.Exit(m.Run())
}

// crashPayload is the value of batch i of writer w in a round; every tenth
// one is large enough to go to the value log.
func crashPayload(round string, w, i int) []byte {
	n := 1000 + i%7*300
	if i%10 == 9 {
		n = 100 << 10
	}
	seed := fmt.Sprintf("%s/%d/%d;", round, w, i)
	return bytes.Repeat([]byte(seed), n/len(seed)+1)[:n]
}

func crashDoc(round string, w int) string { return fmt.Sprintf("r%s-w%d", round, w) }

// crashChild writes batches from crashWriters goroutines and prints
// "ack <writer> <batch>" for each batch after Apply returned nil.
func crashChild(dir, round string) int {
	s, err := Open(Config{Dir: dir, Logger: testLogger()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child open:", err)
		return 2
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	ctx := context.Background()
	for w := range crashWriters {
		wg.Go(func() {
			doc := crashDoc(round, w)
			for i := range crashMaxBatches {
				err := s.Apply(ctx, []store.Op{
					{Key: store.IncrementalKey(doc, fmt.Sprintf("%06d", i)), Data: crashPayload(round, w, i)},
					{Key: store.SyncStateKey(doc, "last"), Data: []byte(strconv.Itoa(i))},
				})
				if err != nil {
					fmt.Fprintln(os.Stderr, "child apply:", err)
					os.Exit(3)
				}
				mu.Lock()
				_, err = fmt.Fprintf(os.Stdout, "ack %d %d\n", w, i)
				mu.Unlock()
				if err != nil {
					os.Exit(4)
				}
			}
		})
	}
	wg.Wait()
	return 0
}

// TestCrashKeepsAcknowledgedBatches kills a writing child process with
// SIGKILL, reopens its directory, and checks that every batch the child
// acknowledged is there, whole. Three rounds run on the same directory, so
// recovery from a crash that interrupted a recovered database is covered.
//
// SIGKILL loses the process, not the kernel's page cache, so this checks
// the write path and recovery, not the fsync itself (which SyncWrites,
// asserted in TestConfigValidate, provides).
func TestCrashKeepsAcknowledgedBatches(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(2024, 11))
	for round := range 3 {
		r := strconv.Itoa(round)
		killAfter := 50 + rng.IntN(250)
		acked, stderr := runCrashChild(t, dir, r, killAfter)
		require.GreaterOrEqual(t, countAcks(acked), killAfter, "child stderr:\n%s", stderr)

		s := openAt(t, dir)
		ctx := context.Background()
		onDisk := 0
		for w := range crashWriters {
			doc := crashDoc(r, w)
			cs, err := s.LoadRange(ctx, store.IncrementalPrefix(doc))
			require.NoError(t, err)
			onDisk += len(cs)
			require.GreaterOrEqual(t, len(cs), acked[w]+1,
				"round %d writer %d: %d acknowledged batches, %d on disk", round, w, acked[w]+1, len(cs))
			// Batches of one writer are sequential, so what survived is a
			// gap-free run from 0, each with its payload.
			for i, c := range cs {
				require.Equal(t, fmt.Sprintf("%06d", i), c.Key[2])
				require.Equal(t, crashPayload(r, w, i), c.Data, "round %d writer %d batch %d", round, w, i)
			}
			// Atomicity: the sync-state written in the same batch as the
			// last surviving chunk names that chunk.
			last, err := s.Load(ctx, store.SyncStateKey(doc, "last"))
			require.NoError(t, err)
			if len(cs) == 0 {
				require.Nil(t, last)
				continue
			}
			require.Equal(t, strconv.Itoa(len(cs)-1), string(last), "round %d writer %d", round, w)
		}
		t.Logf("round %d: killed after %d acks; %d acknowledged, %d batches on disk", round, killAfter, countAcks(acked), onDisk)
		require.NoError(t, s.Close())
	}
}

// runCrashChild runs a child in dir, kills it once it has acknowledged
// killAfter batches, and returns the highest acknowledged batch of every
// writer (-1 for none) and the child's stderr.
func runCrashChild(t *testing.T, dir, round string, killAfter int) ([]int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnvDir+"="+dir, crashEnvRound+"="+round)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())

	acked := make([]int, crashWriters)
	for i := range acked {
		acked[i] = -1
	}
	n := 0
	killed := false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		require.Len(t, f, 3, "child line %q", sc.Text())
		w, err1 := strconv.Atoi(f[1])
		i, err2 := strconv.Atoi(f[2])
		require.NoError(t, err1)
		require.NoError(t, err2)
		require.Equal(t, acked[w]+1, i, "writer %d acknowledged out of order", w)
		acked[w] = i
		n++
		if n == killAfter && !killed {
			require.NoError(t, cmd.Process.Kill())
			killed = true
		}
		// Lines already in the pipe were acknowledged before the kill:
		// keep reading them until EOF.
	}
	require.NoError(t, sc.Err())
	err = cmd.Wait()
	require.True(t, killed, "child exited before it was killed: %v\n%s", err, stderr.String())
	require.Error(t, err, "the child must have died of SIGKILL")
	return acked, stderr.String()
}

func countAcks(acked []int) int {
	n := 0
	for _, a := range acked {
		n += a + 1
	}
	return n
}
