package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var summary = regexp.MustCompile(`^seeds=(\d+) failed=(\d+) converged=(\d+) lost=(\d+) max_steps_to_converge=(\d+)$`)

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func TestRangeEndsWithOneSummaryLine(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run([]string{"-seeds", "3", "-start", "40", "-parallel", "2"}, &out, &errOut)
	m := summary.FindStringSubmatch(lastLine(out.String()))
	require.NotNil(t, m, out.String())
	assert.Equal(t, "3", m[1])
	failed, _ := strconv.Atoi(m[2])
	assert.Equal(t, failed > 0, code != 0, "the exit status follows the failures")
	assert.Equal(t, failed, strings.Count(out.String(), "replay: go run ./simulations/cmd/simulate -seed "))
	assert.Empty(t, errOut.String())
}

func TestReplayPrintsTheTrace(t *testing.T) {
	var out, errOut bytes.Buffer
	run([]string{"-seed", "42", "-v"}, &out, &errOut)
	s := out.String()
	assert.Contains(t, s, "r1 start gen=0")
	assert.Contains(t, s, "# params")
	assert.Regexp(t, `(?m)^\s+\d+\s+\d+\.\d{3}s c\d+>r\d+ deliver join`, s)
	m := summary.FindStringSubmatch(lastLine(s))
	require.NotNil(t, m)
	assert.Equal(t, "1", m[1])
}

func TestBadFlag(t *testing.T) {
	var out, errOut bytes.Buffer
	assert.Equal(t, 2, run([]string{"-nope"}, &out, &errOut))
}

func TestPlotWritesSVG(t *testing.T) {
	path := filepath.Join(t.TempDir(), "plot.svg")
	var out, errOut bytes.Buffer
	run([]string{"-plot", path, "-seeds", "4", "-start", "40"}, &out, &errOut)
	b, err := os.ReadFile(path)
	require.NoError(t, err, out.String()+errOut.String())
	assert.True(t, bytes.HasPrefix(b, []byte("<svg ")))
	assert.Contains(t, string(b), "Steps to converge")
	assert.Contains(t, out.String(), "wrote "+path)
}
