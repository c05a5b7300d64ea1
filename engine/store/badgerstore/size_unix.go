//go:build unix

package badgerstore

import (
	"io/fs"
	"syscall"
)

// diskBytes is the space a file occupies on disk. Badger preallocates its
// value log and write-ahead log files sparsely, so their apparent size
// overstates their use.
func diskBytes(info fs.FileInfo) int64 {
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return info.Size()
}
