/* The switch between the kernels' AVX2 and AVX-512 paths (declared in wide.h, read by every kernel with a
   16-lane path: gemm.c's tiles, attention.c, gelu.c, cross_entropy.c). Built by k1model/kernels/build.py. */
#include <stdlib.h>

#include "wide.h"

/* 1: the AVX-512 paths of every kernel in this library run; 0: AVX2 only.
   Chosen once: the CPU and the operating system must both support AVX-512 (gcc's __builtin_cpu_supports checks
   both), and $K1_NATIVE_AVX2 set forces AVX2. */
static int wide = -1;

/* 1 when this CPU (and its operating system) can run the AVX-512 paths, whatever is chosen now. */
int k1_can_wide(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
}

int k1_use_wide(void) {
    if (wide < 0) wide = k1_can_wide() && getenv("K1_NATIVE_AVX2") == NULL;
    return wide;
}

/* Which paths the kernels run: `want` 1 = AVX-512 (where the CPU has it), 0 = AVX2, -1 = leave as is; returns the
   choice now in force (1 or 0). For tests and benchmarks, which compare the two (the same bits). */
int k1_wide(int want) {
    k1_use_wide();
    if (want >= 0) wide = want && k1_can_wide();
    return wide;
}
