package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/amsync/amsync/engine/store/badgerstore"
	"github.com/amsync/amsync/engine/wire"
)

// Sentinel errors of the subcommands.
var (
	// errLocked is returned when a Badger directory is in use by another
	// process (a running relay or peer).
	errLocked = errors.New("relay: data directory is in use by another process")
	// errNoStore is returned by the offline commands for a directory that
	// holds no Badger database.
	errNoStore = errors.New("relay: no store")
	// errNotFound is returned for a document that is neither in the store
	// nor on the server.
	errNotFound = errors.New("relay: document not found")
	// errUnreachable is returned when the server cannot be reached within
	// -timeout.
	errUnreachable = errors.New("relay: server unreachable")
	// errTimeout is returned when the server did not answer within
	// -timeout.
	errTimeout = errors.New("relay: timed out")
)

// subcommands are the first arguments that select a subcommand instead of
// serving.
var subcommands = []string{"doc", "inspect", "export", "import"}

func isSubcommand(arg string) bool { return slices.Contains(subcommands, arg) }

// usageText is what "relay -h" prints before the serve flags.
const usageText = `usage: relay [flags]                 run the sync server (the default)
       relay doc create -server WSURL [-data DIR] [-offline] JSON
       relay doc get    -server WSURL [-data DIR] [-offline] URL
       relay doc set    -server WSURL [-data DIR] [-offline] URL PATH=JSON...
       relay doc watch  -server WSURL URL
       relay doc sync   -server WSURL -data DIR
       relay inspect    -data DIR [-json] [URL]
       relay export     -data DIR -o FILE
       relay import     -data DIR FILE

Runs the amsync WebSocket sync server, or one of the subcommands above
("relay doc create -h" and so on show their flags; docs/cli.md has them all).
Exit status: 0 success, 1 failure, 2 bad arguments.
`

// cmdFunc runs one subcommand with its positional arguments.
type cmdFunc func(ctx context.Context, env *cliEnv, args []string) error

// cliCommand is one subcommand: its flags and what it does.
type cliCommand struct {
	name  string // "doc create"
	args  string // positional arguments for the usage line
	about string
	flags func(fs *flag.FlagSet, o *cliOptions)
	run   cmdFunc
}

// cliOptions holds every subcommand flag; each subcommand registers the
// ones it takes.
type cliOptions struct {
	server  string
	data    string
	offline bool
	timeout time.Duration
	verbose bool
	out     string
	json    bool
}

// cliEnv is what a subcommand runs with.
type cliEnv struct {
	name   string
	opts   cliOptions
	stdout io.Writer
	stderr io.Writer
	log    *slog.Logger
}

func networkFlags(fs *flag.FlagSet, o *cliOptions) {
	fs.StringVar(&o.server, "server", "", "relay WebSocket URL, ws:// or wss://")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "give up when the server has not answered within this long")
	fs.BoolVar(&o.verbose, "v", false, "log connection and store events to stderr")
}

func docFlags(fs *flag.FlagSet, o *cliOptions) {
	networkFlags(fs, o)
	fs.StringVar(&o.data, "data", "", "local peer store (Badger directory); default: in memory")
	fs.BoolVar(&o.offline, "offline", false, "do not connect: work on the -data store only")
}

func dataFlag(fs *flag.FlagSet, o *cliOptions) {
	fs.StringVar(&o.data, "data", "", "Badger directory of a relay or a peer (required)")
	fs.BoolVar(&o.verbose, "v", false, "log store events to stderr")
}

var cliCommands = []cliCommand{
	{name: "doc create", args: "JSON", about: "Creates a document whose root is the JSON object and prints its automerge URL.", flags: docFlags, run: docCreate},
	{name: "doc get", args: "URL", about: "Prints the document as one line of JSON.", flags: docFlags, run: docGet},
	{name: "doc set", args: "URL PATH=JSON...", about: "Sets fields: PATH is dotted (items.0.done), numeric segments index lists, missing map keys are created.", flags: docFlags, run: docSet},
	{name: "doc watch", args: "URL", about: "Prints the document as one JSON line now and after every change, until interrupted.", flags: func(fs *flag.FlagSet, o *cliOptions) {
		networkFlags(fs, o)
		fs.StringVar(&o.data, "data", "", "local peer store (Badger directory); default: in memory")
	}, run: docWatch},
	{name: "doc sync", args: "", about: "Pushes and pulls every document of the -data store; returns when the server has all of them and they have all of the server's changes.", flags: func(fs *flag.FlagSet, o *cliOptions) {
		networkFlags(fs, o)
		fs.StringVar(&o.data, "data", "", "local peer store (Badger directory, required)")
	}, run: docSync},
	{name: "inspect", args: "[URL]", about: "Lists the documents of a store (id, chunks, bytes, heads), or prints one as JSON. Offline: stop the process that owns the store first.", flags: func(fs *flag.FlagSet, o *cliOptions) {
		dataFlag(fs, o)
		fs.BoolVar(&o.json, "json", false, "list as JSON lines instead of a table")
	}, run: inspectCmd},
	{name: "export", args: "", about: "Writes a portable backup: one compacted snapshot per document (docs/cli.md describes the format). Offline.", flags: func(fs *flag.FlagSet, o *cliOptions) {
		dataFlag(fs, o)
		fs.StringVar(&o.out, "o", "", "backup file to write (\"-\": standard output)")
	}, run: exportCmd},
	{name: "import", args: "FILE", about: "Merges a backup into a store (created when missing) and verifies every document. Offline: stop the relay first.", flags: dataFlag, run: importCmd},
}

// runSubcommand runs the subcommand named by args[0] (and args[1] for doc)
// and returns the exit status.
func runSubcommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	name, rest := args[0], args[1:]
	if name == "doc" {
		if len(rest) == 0 || rest[0] == "-h" || rest[0] == "-help" || rest[0] == "--help" {
			fmt.Fprint(stderr, "usage: relay doc create|get|set|watch|sync [flags] ...\n\n")
			for _, c := range cliCommands {
				if strings.HasPrefix(c.name, "doc ") {
					fmt.Fprintf(stderr, "  relay %s [flags] %s\n      %s\n", c.name, c.args, c.about)
				}
			}
			if len(rest) == 0 {
				return 2
			}
			return 0
		}
		name, rest = "doc "+rest[0], rest[1:]
	}
	i := slices.IndexFunc(cliCommands, func(c cliCommand) bool { return c.name == name })
	if i < 0 {
		fmt.Fprintf(stderr, "relay: unknown command %q\n\n%s", name, usageText)
		return 2
	}
	cmd := cliCommands[i]
	env := &cliEnv{name: "relay " + cmd.name, stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet(env.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cmd.flags(fs, &env.opts)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: relay %s [flags] %s\n\n%s\n\nflags:\n", cmd.name, cmd.args, cmd.about)
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	level := slog.LevelError
	if env.opts.verbose {
		level = slog.LevelDebug
	}
	env.log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if err := cmd.run(ctx, env, pos); err != nil {
		fmt.Fprintf(stderr, "%s: %s\n", env.name, errorLine(err))
		var ue usageError
		if errors.As(err, &ue) {
			fs.Usage()
			return 2
		}
		return 1
	}
	return 0
}

// parseInterspersed parses flags that may come before, between or after
// the positional arguments ("doc set URL a=1 -offline"); everything after
// "--" is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// errorLine is err on one line, without the "relay: " prefix of this
// package's sentinels (the command name printed before it says as much).
func errorLine(err error) string {
	msg := err.Error()
	for _, s := range []error{errLocked, errNoStore, errNotFound, errUnreachable, errTimeout, errBackup} {
		short := strings.TrimPrefix(s.Error(), "relay: ")
		if strings.HasPrefix(msg, s.Error()) {
			msg = short + strings.TrimPrefix(msg, s.Error())
		}
		msg = strings.ReplaceAll(msg, ": "+s.Error(), ": "+short)
	}
	return oneLine(msg)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// usagef returns a usage error (exit status 2).
func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// parseDocArg accepts an automerge URL or a bare document id.
func parseDocArg(s string) (string, error) {
	if _, err := wire.ParseDocumentID(s); err == nil {
		return s, nil
	}
	u, err := wire.ParseURL(s)
	if err != nil {
		return "", usageError{err}
	}
	if u.Heads != nil {
		return "", usagef("%s: URLs with heads are not supported here", s)
	}
	return u.DocumentID, nil
}

// requireServer checks -server for the networked commands.
func (o *cliOptions) requireServer() error {
	if o.server == "" {
		return usagef("-server is required (or -offline with -data)")
	}
	if !strings.HasPrefix(o.server, "ws://") && !strings.HasPrefix(o.server, "wss://") {
		return usagef("-server %q: want a ws:// or wss:// URL", o.server)
	}
	if o.timeout <= 0 {
		return usagef("-timeout must be positive")
	}
	return nil
}

// openStore opens the Badger store of an offline command. With mustExist
// a directory without a database is an error rather than a new, empty
// store; a directory held by a running process is reported as such.
func openStore(dir string, mustExist bool, log *slog.Logger) (*badgerstore.Store, error) {
	if dir == "" {
		return nil, usagef("-data is required")
	}
	if mustExist {
		if _, err := os.Stat(filepath.Join(dir, "MANIFEST")); err != nil {
			return nil, fmt.Errorf("%w at %s: %v", errNoStore, dir, err)
		}
	}
	st, err := badgerstore.Open(badgerstore.Config{Dir: dir, Logger: log})
	if err != nil {
		return nil, storeOpenError(dir, err)
	}
	return st, nil
}

// storeOpenError names the usual cause of a failed open: Badger's
// directory lock, held by a running relay or peer.
func storeOpenError(dir string, err error) error {
	if strings.Contains(err.Error(), "Cannot acquire directory lock") {
		return fmt.Errorf("%s: %w (a running relay or peer holds its lock: stop it first)", dir, errLocked)
	}
	return err
}

// writeJSON writes v as one line of JSON: map keys sorted, no HTML
// escaping, non-finite floats as the strings "NaN", "+Inf" and "-Inf".
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(jsonSafe(v))
}

func jsonSafe(v any) any {
	switch x := v.(type) {
	case float64:
		switch {
		case math.IsNaN(x):
			return "NaN"
		case math.IsInf(x, 1):
			return "+Inf"
		case math.IsInf(x, -1):
			return "-Inf"
		}
	case map[string]any:
		for k, e := range x {
			x[k] = jsonSafe(e)
		}
	case []any:
		for i, e := range x {
			x[i] = jsonSafe(e)
		}
	}
	return v
}

// progress reports the progress of a long operation on stderr, only when
// stderr is a terminal.
type progress struct {
	w     io.Writer
	verb  string
	total int
	last  time.Time
	shown bool
}

func newProgress(stderr io.Writer, verb string, total int) *progress {
	p := &progress{verb: verb, total: total}
	if f, ok := stderr.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.w = f
		}
	}
	return p
}

// step reports that n items are done, at most ten times a second.
func (p *progress) step(n int) {
	if p.w == nil || time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	p.shown = true
	if p.total > 0 {
		fmt.Fprintf(p.w, "\r%s %d/%d documents", p.verb, n, p.total)
	} else {
		fmt.Fprintf(p.w, "\r%s %d documents", p.verb, n)
	}
}

// done clears the progress line.
func (p *progress) done() {
	if p.shown {
		fmt.Fprint(p.w, "\r\033[K")
		p.shown = false
	}
}
