//go:build !unix

package discovery

import "os"

// openNoFollow opens a file for reading; scanFile checks afterwards that it
// is a regular file.
func openNoFollow(name string) (*os.File, error) { return os.Open(name) }
