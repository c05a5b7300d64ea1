//go:build !unix

package badgerstore

import "io/fs"

// diskBytes is the space a file occupies on disk, approximated by its size.
func diskBytes(info fs.FileInfo) int64 { return info.Size() }
