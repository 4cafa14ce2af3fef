// Command disksync measures this machine's floor for a durable audit
// append: the latency of writing what one SQLite WAL commit writes (frames
// of a 24-byte header and a 4 KiB page) and syncing it, on the disk that
// holds the data directory. Every governed call waits for one such commit
// before anything is forwarded (docs/audit.md), so no front can add less
// than this at the same percentile.
//
//	go run ./bench/disksync [-dir DIR] [-frames 6] [-n 2000]
//
// It reports p50/p90/p99 back to back (a busy log) and with 1 ms between
// commits (about 1,000 calls/s), for fsync, which SQLite calls, and
// fdatasync for comparison.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"warden/bench/internal/latency"
)

func main() {
	dir := flag.String("dir", os.TempDir(), "directory on the disk to measure (the data directory's disk)")
	frames := flag.Int("frames", 6, "WAL frames per commit (a one-event audit commit writes about 6)")
	n := flag.Int("n", 2000, "commits per measurement")
	flag.Parse()
	f, err := os.CreateTemp(*dir, "disksync-*")
	if err != nil {
		log.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	// Like a WAL that has started over: the blocks exist, commits overwrite them.
	const size = 8 << 20
	if _, err := f.Write(make([]byte, size)); err != nil {
		log.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("# disksync: %s, %d frames (%d bytes) per commit, %d commits each\n\n", filepath.Dir(f.Name()), *frames, *frames*(24+4096), *n)
	fmt.Println("| sync | spacing | p50 | p90 | p99 |")
	fmt.Println("|---|---|---|---|---|")
	page := make([]byte, 4096)
	syncs := []struct {
		name string
		fn   func() error
	}{
		{"fsync", f.Sync},
		{"fdatasync", func() error { return syscall.Fdatasync(int(f.Fd())) }},
	}
	var off int64
	for _, gap := range []time.Duration{0, time.Millisecond} {
		for _, s := range syncs {
			lat := make([]time.Duration, 0, *n)
			for i := 0; i < *n; i++ {
				if gap > 0 {
					time.Sleep(gap)
				}
				t := time.Now()
				for k := 0; k < *frames; k++ {
					if _, err := f.WriteAt(page[:24], off); err != nil {
						log.Fatal(err)
					}
					if _, err := f.WriteAt(page, off+24); err != nil {
						log.Fatal(err)
					}
					off = (off + 24 + 4096) % (size - 8192)
				}
				if err := s.fn(); err != nil {
					log.Fatal(err)
				}
				lat = append(lat, time.Since(t))
			}
			fmt.Printf("| %s | %v | %s | %s | %s |\n", s.name, gap,
				latency.US(latency.Pct(lat, .5)), latency.US(latency.Pct(lat, .9)), latency.US(latency.Pct(lat, .99)))
		}
	}
}
