// tests/shield/static.sh: a static Go program on a protected volume.
package main

import (
	"fmt"
	"os"
)

// Creates, writes, fsyncs and renames files in DIR; prints what it did and exits 1 on the
// first error (the shield must make each step work or fail, never lose data silently).
func main() {
	dir := os.Args[1]
	for i := 0; i < 3; i++ {
		tmp := fmt.Sprintf("%s/go%d.tmp", dir, i)
		f, err := os.Create(tmp)
		if err != nil {
			fmt.Println("create:", err)
			os.Exit(1)
		}
		if _, err := fmt.Fprintf(f, "SCPGO_marker_%d\n", i); err != nil {
			fmt.Println("write:", err)
			os.Exit(1)
		}
		if err := f.Sync(); err != nil {
			fmt.Println("fsync:", err)
			os.Exit(1)
		}
		if err := f.Close(); err != nil {
			fmt.Println("close:", err)
			os.Exit(1)
		}
		if err := os.Rename(tmp, fmt.Sprintf("%s/go%d.txt", dir, i)); err != nil {
			fmt.Println("rename:", err)
			os.Exit(1)
		}
	}
	fmt.Println("ok")
}
