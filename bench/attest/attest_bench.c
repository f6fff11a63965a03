/* bench/attest/attest_bench.c - CPU time of one SEV-SNP report verification: the report
 * recorded on a Milan machine (tests/attest/data), its VCEK given with the evidence (parsed
 * and its RSA-PSS signature by the ASK checked every time), ARK and ASK from the collateral
 * directory, whose verified pair scp_snp_verify caches after the first report (two stat calls
 * per report check that the files did not change), then the ECDSA P-384 report signature.
 *
 * Then the same for the TDX quote recorded on a Sapphire Rapids machine (scp_dcap_verify).
 *
 * usage: attest_bench DATA_DIR [ROUNDS]   prints the median over 5 batches of ROUNDS. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"
#include "scp/attest_hw.h"

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DATA_DIR [ROUNDS]\n", argv[0]);
        return 2;
    }
    int rounds = argc > 2 ? atoi(argv[2]) : 500;
    if (rounds <= 0) rounds = 500;
    char path[4096], coll[4096];
    uint8_t *rep, *vcek;
    size_t rl, vl;
    scp_err e;
    snprintf(path, sizeof path, "%s/snp/virtee-milan-report.bin", argv[1]);
    if (scp_read_file(AT_FDCWD, path, 4096, &rep, &rl, &e) < 0) return fprintf(stderr, "%s\n", e.msg), 1;
    snprintf(path, sizeof path, "%s/snp/virtee-milan-vcek.der", argv[1]);
    if (scp_read_file(AT_FDCWD, path, 8192, &vcek, &vl, &e) < 0) return fprintf(stderr, "%s\n", e.msg), 1;
    snprintf(coll, sizeof coll, "%s/collateral", argv[1]);
    scp_snp_report r;
    if (scp_snp_report_parse(rep, rl, &r, &e) < 0) return fprintf(stderr, "%s\n", e.msg), 1;
    scp_snp_policy pol = {.report_data = r.report_data, .measurement = r.measurement};
    double per[5];
    for (int b = 0; b < 5; b++) {
        double t0 = cpu_now();
        for (int i = 0; i < rounds; i++)
            if (scp_snp_verify(rep, rl, vcek, vl, coll, &pol, NULL, NULL, &e) < 0)
                return fprintf(stderr, "verification failed: %s\n", e.msg), 1;
        per[b] = (cpu_now() - t0) / rounds;
    }
    qsort(per, 5, sizeof per[0], cmp);
    printf("snp report verify (VCEK+ASK+ARK chain, ECDSA P-384): median %.3f ms CPU per report "
           "(min %.3f, max %.3f; 5 batches of %d)\n",
           per[2] * 1e3, per[0] * 1e3, per[4] * 1e3, rounds);
    free(rep);
    free(vcek);

    /* TDX quote v4 recorded on Sapphire Rapids: PEM chain parsed, 3 links and 2 CRLs checked,
     * QE report and quote signatures (ECDSA P-256), at a time inside the recorded CRLs. */
    uint8_t *q;
    size_t ql;
    snprintf(path, sizeof path, "%s/tdx/gtg-spr-quote-v4.dat", argv[1]);
    if (scp_read_file(AT_FDCWD, path, 65536, &q, &ql, &e) < 0) return fprintf(stderr, "%s\n", e.msg), 1;
    scp_dcap_quote dq;
    if (scp_dcap_quote_parse(q, ql, &dq, &e) < 0) return fprintf(stderr, "%s\n", e.msg), 1;
    scp_dcap_policy dp = {.report_data = dq.report_data, .allow_unevaluated_tcb = 1, .now = 1687219200};
    for (int b = 0; b < 5; b++) {
        double t0 = cpu_now();
        for (int i = 0; i < rounds; i++)
            if (scp_dcap_verify(q, ql, coll, &dp, NULL, &e) < 0)
                return fprintf(stderr, "verification failed: %s\n", e.msg), 1;
        per[b] = (cpu_now() - t0) / rounds;
    }
    qsort(per, 5, sizeof per[0], cmp);
    printf("tdx quote v4 verify (PCK chain + 2 CRLs, QE report, ECDSA P-256): median %.3f ms CPU per quote "
           "(min %.3f, max %.3f; 5 batches of %d)\n",
           per[2] * 1e3, per[0] * 1e3, per[4] * 1e3, rounds);

    /* The same with Intel's TCB info and QE identity evaluated (their signatures and the TCB
     * signing chain checked, JSON parsed, levels matched). This recorded platform's TCB is
     * below the recorded TCB info's levels, so every run ends refused, after all the work. */
    dp.allow_unevaluated_tcb = 0;
    for (int b = 0; b < 5; b++) {
        double t0 = cpu_now();
        for (int i = 0; i < rounds; i++)
            if (scp_dcap_verify(q, ql, coll, &dp, NULL, &e) == 0 || e.code != SCP_E_POLICY)
                return fprintf(stderr, "unexpected verdict: %s\n", e.msg), 1;
        per[b] = (cpu_now() - t0) / rounds;
    }
    qsort(per, 5, sizeof per[0], cmp);
    printf("tdx quote v4 verify + TCB info + QE identity: median %.3f ms CPU per quote "
           "(min %.3f, max %.3f; 5 batches of %d)\n",
           per[2] * 1e3, per[0] * 1e3, per[4] * 1e3, rounds);
    free(q);
    return 0;
}
