/* bench/memsafe/ru.c - run a program at nice 5 and write its own CPU time, peak RSS and minor
 * faults, from wait4, to a file: "cpu_us maxrss_kb minflt wait_status".
 *
 *   ru OUTFILE PROGRAM ARGS...
 *
 * Why not /usr/bin/time: its CPU times have 10 ms steps (speedtest1 --size 20 takes 0.5 s). Why
 * not wait4 from Python: a child forked from a large process starts with that process's resident
 * memory as its peak (ru_maxrss survives exec), so the peak of a 7 MB program read 14 MB. This
 * launcher is small, and the program is its child. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: ru OUTFILE PROGRAM ARGS...\n");
        return 2;
    }
    pid_t p = fork();
    if (p < 0)
        return 1;
    if (p == 0) {
        if (nice(5) == -1)
            perror("nice");
        execv(argv[2], argv + 2);
        _exit(127);
    }
    int st;
    struct rusage ru;
    if (wait4(p, &st, 0, &ru) != p)
        return 1;
    FILE *f = fopen(argv[1], "w");
    if (!f)
        return 1;
    long us = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000L + ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
    fprintf(f, "%ld %ld %ld %d\n", us, ru.ru_maxrss, ru.ru_minflt, st);
    return fclose(f) == 0 ? 0 : 1;
}
