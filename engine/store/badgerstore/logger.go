package badgerstore

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// slogAdapter routes Badger's logging to slog. Badger's errors and warnings
// keep their level; its (chatty) info and debug lines go to slog's debug
// level, so with the usual info-level handler only warnings and errors from
// Badger appear.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) log(level slog.Level, format string, args []any) {
	ctx := context.Background()
	if !a.l.Enabled(ctx, level) {
		return
	}
	a.l.Log(ctx, level, strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func (a slogAdapter) Errorf(format string, args ...any)   { a.log(slog.LevelError, format, args) }
func (a slogAdapter) Warningf(format string, args ...any) { a.log(slog.LevelWarn, format, args) }
func (a slogAdapter) Infof(format string, args ...any)    { a.log(slog.LevelDebug, format, args) }
func (a slogAdapter) Debugf(format string, args ...any)   { a.log(slog.LevelDebug, format, args) }
