// bench/shield/notify.sh: a Go program's file workload (static, no cgo).
package main

import (
	"fmt"
	"os"
	"time"
)

// gobench DIR N: N times create a 4 KiB file, write, fsync, close, rename it; then read
// every file back and list DIR. Prints the elapsed milliseconds.
func main() {
	dir := os.Args[1]
	n := 200
	fmt.Sscan(os.Args[2], &n)
	buf := make([]byte, 4096)
	for i := range buf {
		buf[i] = byte('a' + i%26)
	}
	t := time.Now()
	for i := 0; i < n; i++ {
		tmp := fmt.Sprintf("%s/f%d.tmp", dir, i)
		f, err := os.Create(tmp)
		if err != nil {
			panic(err)
		}
		if _, err := f.Write(buf); err != nil {
			panic(err)
		}
		if err := f.Sync(); err != nil {
			panic(err)
		}
		if err := f.Close(); err != nil {
			panic(err)
		}
		if err := os.Rename(tmp, fmt.Sprintf("%s/f%d", dir, i)); err != nil {
			panic(err)
		}
	}
	for i := 0; i < n; i++ {
		b, err := os.ReadFile(fmt.Sprintf("%s/f%d", dir, i))
		if err != nil || len(b) != 4096 {
			panic(fmt.Sprint("read back: ", err))
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) < n {
		panic(fmt.Sprint("readdir: ", err))
	}
	fmt.Printf("%.1f\n", float64(time.Since(t).Microseconds())/1000)
}
