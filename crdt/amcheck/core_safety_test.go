//go:build amcheck_core

// The core-safety harness: inputs that amcheck accepts are fed to the real
// automerge core (automerge-go, Rust 0.5.0 built with panic=abort) in a child
// process, and an abort of the child is an escape: an input the validator
// accepts that still kills the core. It is behind a build tag because each
// probe execs a process and loads the core:
//
//	go test -tags amcheck_core -run TestCoreMutations ./crdt/amcheck/
//	go test -tags amcheck_core -run '^$' -fuzz FuzzCoreSafety -fuzztime 3m ./crdt/amcheck/
package amcheck

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/automerge/automerge-go"
	"github.com/stretchr/testify/require"
)

// Input kinds probed against the core.
const (
	kindSync   = "sync"
	kindDoc    = "doc"
	kindChange = "change"
)

const (
	envChild  = "AMCHECK_CORE_CHILD"  // directory of the batch
	envVictim = "AMCHECK_CORE_VICTIM" // saved victim document
)

// defence is the validation a relay runs before the core: the stateless
// parsers plus a Tracker mirroring the victim document.
type defence struct{ tracker *Tracker }

func newDefence(t testing.TB, victim []byte) *defence {
	t.Helper()
	d, err := automerge.Load(victim)
	require.NoError(t, err)
	return &defence{tracker: trackerFor(t, d)}
}

// accepted reports whether the defence accepts b as the given kind. With
// AMCHECK_CORE_NOTRACKER=1 only the stateless parsers run, to measure what
// the Tracker adds.
func (d *defence) accepted(kind string, b []byte) bool {
	tr := cloneTracker(d.tracker)
	noTracker := os.Getenv("AMCHECK_CORE_NOTRACKER") == "1"
	switch kind {
	case kindSync:
		m, err := ParseSyncMessage(b, Limits{})
		return err == nil && (noTracker || tr.Admit(m.Decoded) == nil)
	case kindDoc:
		doc, err := ParseDocument(b, Limits{})
		return err == nil && (noTracker || tr.AdmitDocument(doc) == nil)
	default:
		c, err := ParseChange(b, Limits{})
		return err == nil && (noTracker || tr.Admit([]*Change{c}) == nil)
	}
}

// TestCoreChild is the child side: it is a no-op unless started by
// runBatch. It feeds each input of the batch to the core, recording the
// index of the input it is about to run so the parent can attribute a
// crash.
func TestCoreChild(t *testing.T) {
	dir := os.Getenv(envChild)
	if dir == "" {
		t.Skip("child mode only")
	}
	victim, err := os.ReadFile(os.Getenv(envVictim))
	require.NoError(t, err)
	progress, err := os.OpenFile(filepath.Join(dir, "progress"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	require.NoError(t, err)
	defer progress.Close()
	list, err := os.ReadFile(filepath.Join(dir, "list"))
	require.NoError(t, err)
	sc := bufio.NewScanner(bytes.NewReader(list))
	for i := 0; sc.Scan(); i++ {
		kind, file, _ := strings.Cut(sc.Text(), " ")
		in, err := os.ReadFile(file)
		require.NoError(t, err)
		_, err = fmt.Fprintf(progress, "%d\n", i)
		require.NoError(t, err)
		func() {
			defer func() {
				if r := recover(); r != nil {
					// A Go panic in automerge-go: catchable, not a core abort.
					fmt.Fprintf(os.Stderr, "amcheck-go-panic %d: %v\n", i, r)
				}
			}()
			exercise(kind, in, victim)
		}()
	}
}

// exercise drives the core the way the relay would: receive the input, then
// generate sync messages for peers, save and reload.
func exercise(kind string, in, victim []byte) {
	doc, err := automerge.Load(victim)
	if err != nil {
		panic(err)
	}
	switch kind {
	case kindSync:
		ss := automerge.NewSyncState(doc)
		if _, err := ss.ReceiveMessage(in); err != nil {
			return
		}
		for i := 0; i < 3; i++ {
			ss.GenerateMessage()
		}
	case kindDoc:
		d, err := automerge.Load(in)
		if err == nil {
			afterLoad(d)
		}
		if err := doc.LoadIncremental(in); err != nil {
			return
		}
	default:
		chs, err := automerge.LoadChanges(in)
		if err != nil {
			return
		}
		if err := doc.Apply(chs...); err != nil {
			return
		}
	}
	afterLoad(doc)
}

// afterLoad runs the operations a relay performs on a document it holds.
func afterLoad(d *automerge.Doc) {
	d.Heads()
	if _, err := d.Changes(); err != nil {
		return
	}
	peer := automerge.New()
	sa, sb := automerge.NewSyncState(d), automerge.NewSyncState(peer)
	for round := 0; round < 20; round++ {
		m, ok := sa.GenerateMessage()
		if ok {
			if _, err := sb.ReceiveMessage(m.Bytes()); err != nil {
				break
			}
		}
		m2, ok2 := sb.GenerateMessage()
		if ok2 {
			if _, err := sa.ReceiveMessage(m2.Bytes()); err != nil {
				break
			}
		}
		if !ok && !ok2 {
			break
		}
	}
	saved := d.Save()
	if d2, err := automerge.Load(saved); err == nil {
		d2.Heads()
	}
	d.SaveIncremental()
}

// probe is one input to run in a child.
type probe struct {
	kind string
	data []byte
}

// escape is a probe that killed the child (or panicked in Go).
type escape struct {
	probe
	goPanic bool
	output  string
}

// runBatch runs the probes in one child process, restarting after each
// crash, and returns the escapes.
func runBatch(t testing.TB, victimFile string, probes []probe) []escape {
	t.Helper()
	var escapes []escape
	for start := 0; start < len(probes); {
		dir := t.TempDir()
		var list strings.Builder
		for i, p := range probes[start:] {
			f := filepath.Join(dir, strconv.Itoa(i))
			require.NoError(t, os.WriteFile(f, p.data, 0o644))
			fmt.Fprintf(&list, "%s %s\n", p.kind, f)
		}
		require.NoError(t, os.WriteFile(filepath.Join(dir, "list"), []byte(list.String()), 0o644))
		cmd := exec.Command(os.Args[0], "-test.run=^TestCoreChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), envChild+"="+dir, envVictim+"="+victimFile)
		out, err := cmd.CombinedOutput()
		for _, line := range strings.Split(string(out), "\n") {
			if rest, ok := strings.CutPrefix(line, "amcheck-go-panic "); ok {
				idx, _, _ := strings.Cut(rest, ":")
				if i, err := strconv.Atoi(idx); err == nil {
					escapes = append(escapes, escape{probe: probes[start+i], goPanic: true, output: line})
				}
			}
		}
		if err == nil {
			return escapes
		}
		var ee *exec.ExitError
		require.True(t, errors.As(err, &ee), "child: %v", err)
		prog, _ := os.ReadFile(filepath.Join(dir, "progress"))
		lines := strings.Fields(string(prog))
		require.NotEmpty(t, lines, "child died before the first probe: %s", tail(out))
		last, err := strconv.Atoi(lines[len(lines)-1])
		require.NoError(t, err)
		escapes = append(escapes, escape{probe: probes[start+last], output: tail(out)})
		start += last + 1
	}
	return escapes
}

func tail(b []byte) string {
	s := string(b)
	if i := strings.Index(s, "panicked at"); i >= 0 {
		s = s[i:]
	}
	if len(s) > 600 {
		s = s[:600]
	}
	return s
}

// coreSeeds returns a victim document and seed inputs of each kind: real
// output of unrelated histories, and changes made on top of the victim by
// other actors (so that mutants refer to the victim's objects and actors).
func coreSeeds(t testing.TB) (victimFile string, def *defence, seeds []probe) {
	t.Helper()
	victim := genDoc(t, 4242).docs[1]
	victimFile = filepath.Join(t.TempDir(), "victim.bin")
	require.NoError(t, os.WriteFile(victimFile, victim, 0o644))
	def = newDefence(t, victim)

	c := genCorpus(t, 1000, 10)
	for k := uint64(0); k < 15; k++ {
		rng := rand.New(rand.NewPCG(k, 99))
		f, err := automerge.Load(victim)
		require.NoError(t, err)
		require.NoError(t, f.SetActorID(fmt.Sprintf("%032x", 0xabc0+k)))
		before := f.Heads()
		for r := 1 + rng.IntN(4); r > 0; r-- {
			for e := rng.IntN(5); e >= 0; e-- {
				edit(t, rng, f)
			}
			commit(t, rng, f)
		}
		v, err := automerge.Load(victim)
		require.NoError(t, err)
		c.syncs = append(c.syncs, syncAll(t, f, v)...)
		news, err := f.Changes(before...)
		require.NoError(t, err)
		for _, ch := range news {
			c.changes = append(c.changes, ch.Save())
		}
		c.docs = append(c.docs, automerge.SaveChanges(news))
	}
	for _, b := range c.syncs {
		seeds = append(seeds, probe{kindSync, b})
	}
	for _, b := range c.docs {
		seeds = append(seeds, probe{kindDoc, b})
	}
	for _, b := range c.changes {
		seeds = append(seeds, probe{kindChange, b})
	}
	return victimFile, def, seeds
}

// mutateHeader re-encodes the first change chunk of b (a change chunk, or
// a sync message's first change) with a new seq, start op or deps, keeping
// the message framing valid. hashes is a pool of real change hashes.
func mutateHeader(rng *rand.Rand, kind string, b []byte, hashes []ChangeHash) []byte {
	var lo, hi int
	switch kind {
	case kindSync:
		spans := syncChangeSpans(b)
		if len(spans) == 0 {
			return b
		}
		s := spans[rng.IntN(len(spans))]
		lo, hi = s[0], s[1]
	case kindChange:
		lo, hi = 0, len(b)
	default:
		return b
	}
	chunk := b[lo:hi]
	if len(chunk) < 10 || chunk[8] != byte(ChunkChange) {
		return b
	}
	l, n, err := decodeULEB(chunk[9:], false)
	if err != nil || int(l) != len(chunk)-9-n {
		return b
	}
	body := chunk[9+n:]
	r := newReader(body, 0)
	deps, err := r.hashes("deps")
	if err != nil {
		return b
	}
	depsEnd := r.off
	if _, err := r.lenBytes("actor"); err != nil {
		return b
	}
	actorEnd := r.off
	seq, err := r.uleb("seq")
	if err != nil {
		return b
	}
	start, err := r.uleb("start")
	if err != nil {
		return b
	}
	startEnd := r.off
	switch rng.IntN(3) {
	case 0:
		seq = uint64(int64(seq) + int64(rng.IntN(5)) - 2)
	case 1:
		start = uint64(int64(start) + int64(rng.IntN(9)) - 4)
	default:
		deps = nil
		for i := rng.IntN(3); i > 0 && len(hashes) > 0; i-- {
			deps = append(deps, hashes[rng.IntN(len(hashes))])
		}
	}
	nb := uvarint(nil, uint64(len(deps)))
	for _, d := range deps {
		nb = append(nb, d[:]...)
	}
	nb = append(nb, body[depsEnd:actorEnd]...)
	nb = uvarint(nb, seq)
	nb = uvarint(nb, start)
	nb = append(nb, body[startEnd:]...)
	nc := wrapChunk(ChunkChange, nb)
	if kind == kindChange {
		return nc
	}
	// Re-frame the sync message: rebuild the changes section.
	spans := syncChangeSpans(b)
	var entries [][]byte
	for _, s := range spans {
		if s[0] == lo {
			entries = append(entries, nc)
		} else {
			entries = append(entries, b[s[0]:s[1]])
		}
	}
	first := spans[0][0]
	// Back up over the first entry's length prefix and the count.
	pre := b[:first]
	pre = pre[:len(pre)-len(uvarint(nil, uint64(spans[0][1]-spans[0][0])))]
	pre = pre[:len(pre)-len(uvarint(nil, uint64(len(spans))))]
	out := append([]byte{}, pre...)
	out = uvarint(out, uint64(len(entries)))
	for _, e := range entries {
		out = uvarint(out, uint64(len(e)))
		out = append(out, e...)
	}
	return append(out, b[spans[len(spans)-1][1]:]...)
}

// TestCoreMutations is a seeded mutation campaign: mutate real inputs in
// place, fix their checksums, keep those amcheck accepts and run them
// against the core in batches. AMCHECK_CORE_N sets the number of mutants
// (default 2000).
func TestCoreMutations(t *testing.T) {
	n := 2000
	if s := os.Getenv("AMCHECK_CORE_N"); s != "" {
		var err error
		n, err = strconv.Atoi(s)
		require.NoError(t, err)
	}
	seed := uint64(7)
	if s := os.Getenv("AMCHECK_CORE_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err)
		seed = v
	}
	victimFile, def, seeds := coreSeeds(t)
	var hashes []ChangeHash
	for _, s := range seeds {
		if s.kind == kindChange {
			if c, err := ParseChange(s.data, Limits{}); err == nil {
				hashes = append(hashes, c.Hash)
			}
		}
	}
	rng := rand.New(rand.NewPCG(seed, 11))
	var probes []probe
	tried, headerTried, headerAccepted := 0, 0, 0
	for len(probes) < n && tried < 200*n {
		tried++
		s := seeds[rng.IntN(len(seeds))]
		m := append([]byte(nil), s.data...)
		header := false
		switch {
		case rng.IntN(4) == 0 && s.kind != kindDoc:
			header = true
			headerTried++
			m = mutateHeader(rng, s.kind, m, hashes)
		case s.kind == kindSync:
			mutateSync(rng, m)
		default:
			mutateChunks(rng, m)
		}
		if !bytes.Equal(m, s.data) && def.accepted(s.kind, m) {
			probes = append(probes, probe{s.kind, m})
			if header {
				headerAccepted++
			}
		}
	}
	t.Logf("mutants tried %d, accepted by amcheck %d (header mutants %d tried, %d accepted)",
		tried, len(probes), headerTried, headerAccepted)
	escapes := runBatch(t, victimFile, probes)
	dir := os.Getenv("AMCHECK_CORE_ESCAPES")
	for i, e := range escapes {
		t.Errorf("escape %d (%s, go panic %v, %d bytes): %s", i, e.kind, e.goPanic, len(e.data), e.output)
		if dir != "" {
			_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("escape-%s-%d.bin", e.kind, i)), e.data, 0o644)
		}
	}
}

// FuzzCoreSafety fuzzes sync messages (and, through the kind byte,
// documents and changes): every input amcheck accepts after its chunk
// checksums are recomputed is run against the core in a child process, and
// the child dying is a failure.
func FuzzCoreSafety(f *testing.F) {
	victimFile, def, seeds := coreSeeds(f)
	for _, s := range seeds {
		k := byte(0)
		switch s.kind {
		case kindDoc:
			k = 1
		case kindChange:
			k = 2
		}
		f.Add(k, s.data)
	}
	for _, name := range []string{"min-bloom-div0.bin", "sync-wrapping-loadchanges-oob762.bin"} {
		f.Add(byte(0), readTestdata(f, name))
	}
	f.Add(byte(1), readTestdata(f, "min-load-unknownaction.bin"))
	f.Add(byte(2), readTestdata(f, "min-loadchanges-oob762.bin"))
	f.Fuzz(func(t *testing.T, k byte, data []byte) {
		kind := []string{kindSync, kindDoc, kindChange}[k%3]
		data = append([]byte(nil), data...)
		if kind == kindSync {
			fixSyncChecksums(data)
		} else {
			fixChunkChecksums(data)
		}
		if !def.accepted(kind, data) {
			return
		}
		countProbe()
		for _, e := range runBatch(t, victimFile, []probe{{kind, data}}) {
			t.Fatalf("escape (%s, go panic %v): %s", e.kind, e.goPanic, e.output)
		}
	})
}

// countProbe appends one byte to the file named by AMCHECK_CORE_COUNT, so
// that the number of inputs run against the core can be reported across the
// fuzzer's worker processes.
func countProbe() {
	name := os.Getenv("AMCHECK_CORE_COUNT")
	if name == "" {
		return
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	_, _ = f.Write([]byte{'.'})
	_ = f.Close()
}

// TestCoreDirected runs hand-made inputs that probe core weaknesses which
// need document state (so amcheck alone cannot reject them) and reports
// which ones abort the core.
func TestCoreDirected(t *testing.T) {
	victimFile, def, _ := coreSeeds(t)
	victim, err := os.ReadFile(victimFile)
	require.NoError(t, err)
	for _, p := range directedProbes(t, victim) {
		vf, d := victimFile, def
		if p.victim != nil {
			vf = filepath.Join(t.TempDir(), "victim.bin")
			require.NoError(t, os.WriteFile(vf, p.victim, 0o644))
			d = newDefence(t, p.victim)
		}
		esc := runBatch(t, vf, []probe{p.probe})
		var perr error
		switch p.kind {
		case kindSync:
			_, perr = ParseSyncMessage(p.data, Limits{})
		case kindDoc:
			_, perr = ParseDocument(p.data, Limits{})
		default:
			_, perr = ParseChange(p.data, Limits{})
		}
		ok := d.accepted(p.kind, p.data)
		t.Logf("%-45s parser accepts: %-5v defence accepts: %-5v core aborts: %v %s",
			p.name, perr == nil, ok, len(esc) > 0, firstLine(esc))
		if ok && len(esc) > 0 {
			t.Errorf("%s: the defence accepts an input that aborts the core", p.name)
		}
	}
}

func firstLine(es []escape) string {
	if len(es) == 0 {
		return ""
	}
	s, _, _ := strings.Cut(es[0].output, "\n")
	return s
}

type namedProbe struct {
	name   string
	victim []byte // if set, replaces the shared victim document
	probe
}

// chunkBody returns the data of the single chunk b.
func chunkBody(t testing.TB, b []byte) []byte {
	t.Helper()
	l, n, err := decodeULEB(b[9:], true)
	require.NoError(t, err)
	return b[9+n : 9+n+int(l)]
}

// withSeq re-encodes change chunk b with its seq field set to seq and, if
// deps is not nil, its deps replaced.
func withSeq(t testing.TB, b []byte, seq uint64, deps []ChangeHash) []byte {
	return withSeqStart(t, b, seq, 0, deps)
}

// withSeqStart is withSeq that also sets the start op if startOp > 0.
func withSeqStart(t testing.TB, b []byte, seq, startOp uint64, deps []ChangeHash) []byte {
	t.Helper()
	body := chunkBody(t, b)
	r := newReader(body, 0)
	_, err := r.hashes("deps")
	require.NoError(t, err)
	if deps != nil {
		nb := uvarint(nil, uint64(len(deps)))
		for _, d := range deps {
			nb = append(nb, d[:]...)
		}
		body = append(nb, body[r.off:]...)
		r = newReader(body, 0)
		_, err = r.hashes("deps")
		require.NoError(t, err)
	}
	_, err = r.lenBytes("actor")
	require.NoError(t, err)
	start := r.off
	_, err = r.uleb("seq")
	require.NoError(t, err)
	nb := append([]byte{}, body[:start]...)
	nb = uvarint(nb, seq)
	if startOp > 0 {
		_, err = r.uleb("start op")
		require.NoError(t, err)
		nb = uvarint(nb, startOp)
	}
	nb = append(nb, body[r.off:]...)
	return wrapChunk(ChunkChange, nb)
}

func directedProbes(t testing.TB, victim []byte) []namedProbe {
	t.Helper()
	v, err := automerge.Load(victim)
	require.NoError(t, err)
	var heads []ChangeHash
	for _, h := range v.Heads() {
		heads = append(heads, ChangeHash(h))
	}
	d := automerge.New()
	require.NoError(t, d.SetActorID("0123456789abcdef0123456789abcdef"))
	require.NoError(t, d.RootMap().Set("k", "v"))
	_, err = d.Commit("")
	require.NoError(t, err)
	chs, err := d.Changes()
	require.NoError(t, err)
	first := chs[0].Save()
	// A change by the victim's last author reusing op ids it already used.
	vchs, err := v.Changes()
	require.NoError(t, err)
	last := vchs[len(vchs)-1]
	dupOps := withSeqStart(t, last.Save(), last.ActorSeq()+1, 1, heads)
	gap := withSeq(t, first, 2, nil)
	mkVictim, mkChange := mixedKeyProbe(t)
	gapDeps := withSeq(t, first, 3, heads)
	return []namedProbe{
		{"first change, seq 1 (control)", nil, probe{kindSync, syncMessage(first)}},
		{"first change of an actor with seq 2", nil, probe{kindSync, syncMessage(gap)}},
		{"first change of an actor with seq 2 (change)", nil, probe{kindChange, gap}},
		{"seq 3 on the victim's heads", nil, probe{kindSync, syncMessage(gapDeps)}},
		{"seq 3 on the victim's heads (change)", nil, probe{kindChange, gapDeps}},
		{"next seq reusing op ids from 1", nil, probe{kindSync, syncMessage(dupOps)}},
		{"map key into an existing list", mkVictim, probe{kindSync, syncMessage(mkChange)}},
		{"map key into an existing list (doc)", mkVictim, probe{kindDoc, append(append([]byte{}, mkVictim...), mkChange...)}},
	}
}
