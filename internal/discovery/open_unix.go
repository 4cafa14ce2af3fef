//go:build unix

package discovery

import (
	"os"
	"syscall"
)

// openNoFollow opens a file for reading without following a symlink that
// replaced it after the walk saw a regular file, and without blocking on a
// FIFO that did the same.
func openNoFollow(name string) (*os.File, error) {
	return os.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
}
