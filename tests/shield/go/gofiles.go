// tests/shield/static.sh: a static Go program on a protected volume.
package main

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"syscall"
)

func die(what string, err error) {
	fmt.Println(what+":", err)
	os.Exit(1)
}

// gofiles DIR: creates, writes, fsyncs and renames files in DIR, reads them back and lists
// DIR; prints what it saw and exits 1 on the first error (the shield must make each step
// work or fail, never lose data silently).
// gofiles DIR kill: writes and fsyncs DIR/kill.txt, then overwrites it without fsync and
// kills itself with SIGKILL: the volume must keep the fsynced contents.
func main() {
	dir := os.Args[1]
	// gofiles DIR write NAME CONTENT [sync [OVERWRITE]]: create NAME, write CONTENT, then
	// (sync) fsync and (OVERWRITE) write OVERWRITE at offset 0, and close
	if len(os.Args) > 4 && os.Args[2] == "write" {
		f, err := os.Create(dir + "/" + os.Args[3])
		if err != nil {
			die("create", err)
		}
		if _, err := f.WriteString(os.Args[4]); err != nil {
			die("write", err)
		}
		if len(os.Args) > 5 {
			if err := f.Sync(); err != nil {
				die("fsync", err)
			}
		}
		if len(os.Args) > 6 {
			if _, err := f.WriteAt([]byte(os.Args[6]), 0); err != nil {
				die("write", err)
			}
		}
		if err := f.Close(); err != nil {
			die("close", err)
		}
		return
	}
	// gofiles DIR creds: as root, read DIR/secret (0600, root's); then become nobody (65534)
	// by syscall.Setgid/Setuid, which a static program makes by raw system call on every
	// thread, and print what each step gives: the new identity is the one enforced
	if len(os.Args) > 2 && os.Args[2] == "creds" {
		credSteps(dir)
		return
	}
	if len(os.Args) > 2 && os.Args[2] == "kill" {
		f, err := os.Create(dir + "/kill.txt")
		if err != nil {
			die("create", err)
		}
		if _, err := f.WriteString("SCPGO_synced_contents\n"); err != nil {
			die("write", err)
		}
		if err := f.Sync(); err != nil {
			die("fsync", err)
		}
		if _, err := f.WriteAt([]byte("SCPGO_TORN_not_synced"), 0); err != nil {
			die("write", err)
		}
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	for i := 0; i < 3; i++ {
		tmp := fmt.Sprintf("%s/go%d.tmp", dir, i)
		f, err := os.Create(tmp)
		if err != nil {
			die("create", err)
		}
		if _, err := fmt.Fprintf(f, "SCPGO_marker_%d\n", i); err != nil {
			die("write", err)
		}
		if err := f.Sync(); err != nil {
			die("fsync", err)
		}
		if err := f.Close(); err != nil {
			die("close", err)
		}
		if err := os.Rename(tmp, fmt.Sprintf("%s/go%d.txt", dir, i)); err != nil {
			die("rename", err)
		}
	}
	if err := os.Mkdir(dir+"/gosub", 0750); err != nil {
		die("mkdir", err)
	}
	for i := 0; i < 3; i++ {
		b, err := os.ReadFile(fmt.Sprintf("%s/go%d.txt", dir, i))
		if err != nil {
			die("read", err)
		}
		if string(b) != fmt.Sprintf("SCPGO_marker_%d\n", i) {
			die("read back", fmt.Errorf("got %q", b))
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		die("readdir", err)
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() {
			n += "/"
		}
		names = append(names, n)
	}
	sort.Strings(names)
	st, err := os.Stat(dir + "/go1.txt")
	if err != nil {
		die("stat", err)
	}
	fmt.Printf("readdir: %s\n", strings.Join(names, " "))
	fmt.Printf("stat: %d bytes, mode %v\n", st.Size(), st.Mode())
	fmt.Println("ok")
}

// outcome: "ok", or the errno's text of a failed step
func outcome(err error) string {
	if err == nil {
		return "ok"
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return en.Error()
	}
	return err.Error()
}

func credSteps(dir string) {
	step := func(what string, err error) { fmt.Printf("%s: %s\n", what, outcome(err)) }
	readf := func(name string) error { _, err := os.ReadFile(dir + "/" + name); return err }
	step("root reads secret", readf("secret"))
	if err := syscall.Setgroups([]int{}); err != nil {
		die("setgroups", err)
	}
	if err := syscall.Setgid(65534); err != nil {
		die("setgid", err)
	}
	if err := syscall.Setuid(65534); err != nil {
		die("setuid", err)
	}
	step("nobody reads secret", readf("secret"))
	step("nobody reads pub", readf("pub"))
	f, err := os.OpenFile(dir+"/pub", os.O_WRONLY|os.O_APPEND, 0)
	if err == nil {
		f.Close()
	}
	step("nobody appends to pub", err)
	f, err = os.Create(dir + "/rootdir/new")
	if err == nil {
		f.Close()
	}
	step("nobody creates in rootdir", err)
	step("nobody chmods secret", os.Chmod(dir+"/secret", 0666))
	step("nobody removes rootdir/x", os.Remove(dir+"/rootdir/x"))
	step("nobody renames rootdir/x", os.Rename(dir+"/rootdir/x", dir+"/nbdir/x"))
	step("nobody mkdirs in rootdir", os.Mkdir(dir+"/rootdir/d", 0755))
	step("nobody truncates pub", os.Truncate(dir+"/pub", 0))
	step("nobody access(W) pub", syscall.Access(dir+"/pub", 2))
	f, err = os.Create(dir + "/nbdir/mine")
	if err == nil {
		f.WriteString("SCPGO_creds_mine")
		err = f.Close()
	}
	step("nobody creates in nbdir", err)
	if st, err := os.Stat(dir + "/nbdir/mine"); err == nil {
		s := st.Sys().(*syscall.Stat_t)
		fmt.Printf("owner of nbdir/mine: %d %d\n", s.Uid, s.Gid)
	} else {
		step("stat nbdir/mine", err)
	}
}
