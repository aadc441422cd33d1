/* Whole-sequence recurrences in C: a small register-blocked GEMM for h @ W_hh plus the fused
 * pointwise updates of pointwise.c, looped over time without returning to Python.
 *
 * Why our own GEMM: the recurrent product is skinny (M = batch, 8-64 rows; K = H; N = G*H) and
 * MKL reaches only 55-92 GFLOP/s on it on this AMD CPU, where this kernel reaches ~110 (measured,
 * AVX-512, B 8-64, H 256). The weights are packed once per call into column panels, so each
 * step streams one contiguous panel per tile; the time loop in C also removes ~20 us of Python
 * per step. The math is that of kernels.py's TorchPointwise (parity-tested against the
 * step-by-step cells).
 */
#include <pthread.h>
#include <stdlib.h>
#include "pointwise.c"

/* Register tile: MR rows x (2 vectors of VW floats). Sized to the ISA's register file:
 * AVX-512 32 zmm (16 accumulators), AVX2 16 ymm (12), SSE/NEON baseline (8). */
#if defined(__AVX512F__)
#define VW 16
#define MR 8
#elif defined(__AVX__)
#define VW 8
#define MR 6
#else
#define VW 4
#define MR 4
#endif
#define NR (2 * VW)

typedef float vf __attribute__((vector_size(VW * 4), aligned(4)));

/* Vector loads and stores through vf pointers (vf is 4-byte aligned, so these are unaligned
 * moves; GCC lets a float vector alias float). Not memcpy: GCC 12 with -mavx2 turned each 32-byte
 * memcpy into two 16-byte halves through the stack and kept the accumulators in memory, so every
 * k step stalled on store forwarding: the AVX2 GEMM ran at ~10 GFLOP/s instead of ~85. */
#define LOAD(p) (*(const vf *)(p))
#define STORE(p, v) (*(vf *)(p) = (v))

long panel_width(void) { return NR; }

/* Pack B (K x N; element (k, n) at src[k * sk + n * sn]) into ceil(N / NR) panels of K x NR,
 * zero-padded on the right: dst[(p * K + k) * NR + j] = B(k, p * NR + j). */
void pack_panels(const float *src, long sk, long sn, long K, long N, float *dst) {
    const long panels = (N + NR - 1) / NR;
    for (long p = 0; p < panels; ++p) {
        float *out = dst + p * K * NR;
        const long width = N - p * NR < NR ? N - p * NR : NR;
        if (width < NR) memset(out, 0, sizeof(float) * K * NR);
        if (sn == 1) { /* rows of B are contiguous: copy runs */
            for (long k = 0; k < K; ++k) memcpy(out + k * NR, src + k * sk + p * NR, sizeof(float) * width);
        } else { /* B = W^T: a blocked transpose, 16 k at a time, so reads and writes stay in L1 */
            for (long k0 = 0; k0 < K; k0 += 16) {
                const long kn = K - k0 < 16 ? K - k0 : 16;
                for (long j = 0; j < width; ++j) {
                    const float *column = src + (p * NR + j) * sn + k0 * sk;
                    for (long k = 0; k < kn; ++k) out[(k0 + k) * NR + j] = column[k * sk];
                }
            }
        }
    }
}

/* C[0:mr, panel] = Cin + A[0:mr, :] @ panel, for `width` <= NR valid columns. Cin may be NULL
 * (zero) or have row stride 0 (a bias row broadcast over the batch). */
INLINE void gemm_tile(const int mr, const float *A, long lda, const float *panel, long K, const float *cin,
                      long ldci, float *C, long ldc, long width) {
    vf acc[MR][2];
    for (int i = 0; i < mr; ++i) {
        if (!cin) {
            acc[i][0] = (vf){0};
            acc[i][1] = (vf){0};
        } else if (width == NR) {
            acc[i][0] = LOAD(cin + i * ldci);
            acc[i][1] = LOAD(cin + i * ldci + VW);
        } else {
            float tmp[NR] = {0};
            memcpy(tmp, cin + i * ldci, sizeof(float) * width);
            memcpy(&acc[i][0], tmp, sizeof(vf));
            memcpy(&acc[i][1], tmp + VW, sizeof(vf));
        }
    }
    for (long k = 0; k < K; ++k) {
        const vf b0 = LOAD(panel + k * NR), b1 = LOAD(panel + k * NR + VW);
#pragma GCC unroll 16
        for (int i = 0; i < mr; ++i) {
            vf a = (vf){0} + A[i * lda + k];
            acc[i][0] += a * b0;
            acc[i][1] += a * b1;
        }
    }
    for (int i = 0; i < mr; ++i) {
        if (width == NR) {
            STORE(C + i * ldc, acc[i][0]);
            STORE(C + i * ldc + VW, acc[i][1]);
        } else {
            float tmp[NR];
            memcpy(tmp, &acc[i][0], sizeof(vf));
            memcpy(tmp + VW, &acc[i][1], sizeof(vf));
            memcpy(C + i * ldc, tmp, sizeof(float) * width);
        }
    }
}

/* C (M x N, row stride ldc) = Cin + A (M x K, row stride lda) @ B, B packed by pack_panels.
 * Cin may alias C (accumulate in place). Panels [p0, p1) only (a thread's share). */
static void gemm_panels(const float *A, long lda, const float *packed, long M, long N, long K, const float *cin,
                        long ldci, float *C, long ldc, long p0, long p1) {
    for (long p = p0; p < p1; ++p) {
        const float *panel = packed + p * K * NR;
        const long col = p * NR, width = N - col < NR ? N - col : NR;
        for (long i0 = 0; i0 < M; i0 += MR) {
            const float *a = A + i0 * lda, *ci = cin ? cin + i0 * ldci + col : NULL;
            float *c = C + i0 * ldc + col;
            switch (M - i0 < MR ? M - i0 : MR) { /* constant row counts: fully unrolled tiles */
#define TILE(n) case n: gemm_tile(n, a, lda, panel, K, ci, ldci, c, ldc, width); break;
                TILE(1) TILE(2) TILE(3) TILE(4)
#if MR >= 6
                TILE(5) TILE(6)
#endif
#if MR >= 8
                TILE(7) TILE(8)
#endif
#undef TILE
            }
        }
    }
}

void gemm(const float *A, long lda, const float *packed, long M, long N, long K, const float *cin, long ldci,
          float *C, long ldc) {
    gemm_panels(A, lda, packed, M, N, K, cin, ldci, C, ldc, 0, (N + NR - 1) / NR);
}

/* ------------------------------------------------------------------ unpacked (dot) product */
/* C = Cin + A W^T with W in its own row-major (N x K) layout: no packing, for calls too short to
 * repay it (one env-runner step). Vectorised along k: a DM x DN tile keeps VW accumulators
 * (DM * DN == VW), reduced to one vector of VW sums by a shuffle tree at the end. */
#if VW == 16
#define DM 4
#define DN 4
#elif VW == 8
#define DM 4
#define DN 2
#else
#define DM 2
#define DN 2
#endif

/* The reduction tree: at each level, lane l of the result takes lanes (l / g) * 2g + l % g (and the
 * same + g) of the concatenation [a, b], for a group size g halving from VW / 2 to 1, so VW vectors
 * of partial sums become one vector of VW sums. The lane indices must be compile-time constants
 * for __builtin_shufflevector (clang, GCC >= 12); GCC's __builtin_shuffle is not in clang. */
#if VW == 16
#define G8_LO 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23
#define G8_HI 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31
#define G4_LO 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27
#define G4_HI 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31
#define G2_LO 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29
#define G2_HI 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31
#define G1_LO 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30
#define G1_HI 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31
#elif VW == 8
#define G4_LO 0, 1, 2, 3, 8, 9, 10, 11
#define G4_HI 4, 5, 6, 7, 12, 13, 14, 15
#define G2_LO 0, 1, 4, 5, 8, 9, 12, 13
#define G2_HI 2, 3, 6, 7, 10, 11, 14, 15
#define G1_LO 0, 2, 4, 6, 8, 10, 12, 14
#define G1_HI 1, 3, 5, 7, 9, 11, 13, 15
#else
#define G2_LO 0, 1, 4, 5
#define G2_HI 2, 3, 6, 7
#define G1_LO 0, 2, 4, 6
#define G1_HI 1, 3, 5, 7
#endif

#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define HAVE_SHUFFLEVECTOR 1
#endif
#endif

#ifdef HAVE_SHUFFLEVECTOR
/* One level of the tree over the first n vectors of acc. */
#define REDUCE_LEVEL(n, LO, HI)                                                                       \
    for (int m = 0; m < (n) / 2; ++m)                                                                 \
        acc[m] = __builtin_shufflevector(acc[2 * m], acc[2 * m + 1], LO) +                            \
                 __builtin_shufflevector(acc[2 * m], acc[2 * m + 1], HI);

INLINE vf reduce_tile(vf *acc) {
#if VW == 16
    REDUCE_LEVEL(16, G8_LO, G8_HI)
#endif
#if VW >= 8
    REDUCE_LEVEL(8, G4_LO, G4_HI)
#endif
    REDUCE_LEVEL(4, G2_LO, G2_HI)
    REDUCE_LEVEL(2, G1_LO, G1_HI)
    return acc[0];
}
#else
/* Compilers without the builtin: lane sums one vector at a time (same sums, other order). */
INLINE vf reduce_tile(vf *acc) {
    float sums[VW];
    for (int s = 0; s < VW; ++s) {
        float lanes[VW], total = 0.0f;
        memcpy(lanes, &acc[s], sizeof(vf));
        for (int l = 0; l < VW; ++l) total += lanes[l];
        sums[s] = total;
    }
    vf out;
    memcpy(&out, sums, sizeof(vf));
    return out;
}
#endif

/* acc += A[rows] . W[rows] over k in [0, K), for a DM x DN tile (rows given as pointers). */
INLINE void dot_tile(vf *acc, const float *const *a, const float *const *w, long K) {
    const long k_main = K / VW * VW;
    for (long k = 0; k < k_main; k += VW) {
        vf av[DM], wv[DN];
        for (int i = 0; i < DM; ++i) av[i] = LOAD(a[i] + k);
        for (int j = 0; j < DN; ++j) wv[j] = LOAD(w[j] + k);
        for (int i = 0; i < DM; ++i)
            for (int j = 0; j < DN; ++j) acc[i * DN + j] += av[i] * wv[j];
    }
    if (k_main < K) { /* the last K % VW columns, zero-padded */
        vf av[DM], wv[DN];
        for (int i = 0; i < DM; ++i) {
            float tmp[VW] = {0};
            memcpy(tmp, a[i] + k_main, sizeof(float) * (K - k_main));
            memcpy(&av[i], tmp, sizeof(vf));
        }
        for (int j = 0; j < DN; ++j) {
            float tmp[VW] = {0};
            memcpy(tmp, w[j] + k_main, sizeof(float) * (K - k_main));
            memcpy(&wv[j], tmp, sizeof(vf));
        }
        for (int i = 0; i < DM; ++i)
            for (int j = 0; j < DN; ++j) acc[i * DN + j] += av[i] * wv[j];
    }
}

/* C = Cin + A1 W1^T + A2 W2^T (A2 may be NULL): two products share one reduction, which is what
 * makes a single step ([x, h] against [W_ih, W_hh]) efficient without concatenating anything. */
void gemm_dot2(const float *A1, long lda1, const float *W1, long ldw1, long K1, const float *A2, long lda2,
               const float *W2, long ldw2, long K2, long M, long N, const float *cin, long ldci, float *C, long ldc) {
    for (long j0 = 0; j0 < N; j0 += DN) {
        const float *w1[DN], *w2[DN];
        for (int j = 0; j < DN; ++j) { /* tails repeat the last row; its results are not stored */
            const long n = j0 + j < N ? j0 + j : N - 1;
            w1[j] = W1 + n * ldw1;
            w2[j] = A2 ? W2 + n * ldw2 : NULL;
        }
        for (long i0 = 0; i0 < M; i0 += DM) {
            const float *a1[DM], *a2[DM];
            for (int i = 0; i < DM; ++i) {
                const long m = i0 + i < M ? i0 + i : M - 1;
                a1[i] = A1 + m * lda1;
                a2[i] = A2 ? A2 + m * lda2 : NULL;
            }
            vf acc[VW];
            for (int s = 0; s < VW; ++s) acc[s] = (vf){0};
            dot_tile(acc, a1, w1, K1);
            if (A2) dot_tile(acc, a2, w2, K2);
            const vf sums = reduce_tile(acc);
            for (int i = 0; i < DM && i0 + i < M; ++i)
                for (int j = 0; j < DN && j0 + j < N; ++j) {
                    const float base = cin ? cin[(i0 + i) * ldci + j0 + j] : 0.0f;
                    C[(i0 + i) * ldc + j0 + j] = base + sums[i * DN + j];
                }
        }
    }
}

void gemm_dot(const float *A, long lda, const float *W, long ldw, long M, long N, long K, const float *cin,
              long ldci, float *C, long ldc) {
    gemm_dot2(A, lda, W, ldw, K, NULL, 0, NULL, 0, 0, M, N, cin, ldci, C, ldc);
}

/* The state entering step t, with the rows that reset before t zeroed (keep[t, b] == 0).
 * Returns src itself when no row resets (most steps), else a masked copy in scratch. */
static const float *masked(const float *src, const float *keep_t, long B, long H, float *scratch) {
    if (!keep_t) return src;
    long b = 0;
    while (b < B && keep_t[b] != 0.0f) ++b;
    if (b == B) return src;
    for (b = 0; b < B; ++b) {
        const float k = keep_t[b];
        for (long j = 0; j < H; ++j) scratch[b * H + j] = src[b * H + j] * k;
    }
    return scratch;
}

static void mask_rows(float *x, const float *keep_t, long B, long H) {
    if (!keep_t) return;
    for (long b = 0; b < B; ++b)
        if (keep_t[b] != 1.0f)
            for (long j = 0; j < H; ++j) x[b * H + j] *= keep_t[b];
}

/* ------------------------------------------------------------------------------ threads */
/* Batch rows are independent through the whole recurrence (forward and BPTT), so threads split
 * the batch and run the full time loop on their rows: no synchronisation per step, and each
 * core streams W_hh from its own L2.
 *
 * The threads are OpenMP's when built with -fopenmp: the library then binds to the libgomp that
 * torch already loaded, so this work runs on torch's own (already awake) pool. Separate pthreads
 * were measured to lose ~40% at 2 threads right after a torch op, competing with its pool's
 * spin-waiting worker for the second core. Without OpenMP, plain pthreads. */
typedef void (*rows_fn)(const void *args, long b0, long b1);

#define MAX_THREADS 64

#ifndef _OPENMP
typedef struct {
    rows_fn fn;
    const void *args;
    long b0, b1;
} rows_job;

static void *rows_thread(void *p) {
    const rows_job *job = p;
    job->fn(job->args, job->b0, job->b1);
    return NULL;
}
#endif

int uses_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

static void parallel_rows(rows_fn fn, const void *args, long B, long threads) {
    if (threads > B / MR) threads = B / MR; /* at least one full register tile of rows each */
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads < 2) {
        fn(args, 0, B);
        return;
    }
    const long per = (B / threads + MR - 1) / MR * MR; /* whole tiles per thread */
    const long n = (B + per - 1) / per;
#ifdef _OPENMP
#pragma omp parallel for num_threads(n) schedule(static, 1)
    for (long i = 0; i < n; ++i) fn(args, i * per, i == n - 1 ? B : (i + 1) * per);
#else
    rows_job jobs[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (long i = 0; i < n; ++i) jobs[i] = (rows_job){fn, args, i * per, i == n - 1 ? B : (i + 1) * per};
    for (long i = 1; i < n; ++i) started[i] = pthread_create(&ids[i], NULL, rows_thread, &jobs[i]) == 0;
    rows_thread(&jobs[0]);
    for (long i = 1; i < n; ++i) {
        if (started[i]) pthread_join(ids[i], NULL);
        else rows_thread(&jobs[i]); /* could not start a thread: do its rows here */
    }
#endif
}

/* dst[0:n] += src[0:n] when src is given (the output gradient of a step may be absent). */
static inline void add_into(float *dst, const float *src, long n) {
    if (src)
        for (long j = 0; j < n; ++j) dst[j] += src[j];
}

/* The input side of a step for rows [b0, b0 + M): out = bias + x_t W_ih^T. x_t row b is at
 * x + t * x_step + b * x_row; wih_packed packs W_ih^T; bias (GH) may be NULL. Projecting here,
 * per step, rather than all T steps in one GEMM beforehand measured 1.3-1.7x faster (the
 * (T, B, GH) buffer costs more in page faults and cache misses than the GEMM saves). */
typedef struct {
    const float *x;
    long x_step, x_row, input_size;
    const float *wih_packed, *bias;
} input_side;

static inline void project_inputs(const input_side *in, long t, long b0, long M, long GH, float *out) {
    gemm(in->x + t * in->x_step + b0 * in->x_row, in->x_row, in->wih_packed, M, GH, in->input_size, in->bias, 0,
         out, GH);
}

/* ---------------------------------------------------------------------------------- LSTM */
typedef struct {
    input_side in;
    const float *h0, *c0, *keep, *whh_packed;
    float *z, *acts;
    int save;
    float *ys, *cs, *scratch;
    long T, B, H, G;
    int cumax, aux, coupled;
} lstm_args;

static void lstm_rows(const void *p, long b0, long b1) {
    const lstm_args *a = p;
    const long B = a->B, H = a->H, G = a->G, GH = G * H, M = b1 - b0, BH = B * H;
    const long c_slots = a->save ? a->T : 2; /* without a backward pass only c_{t-1} is needed */
    float *z = a->z + b0 * GH;
    for (long t = 0; t < a->T; ++t) {
        const float *keep_t = a->keep ? a->keep + t * B + b0 : NULL;
        const float *hp = masked((t ? a->ys + (t - 1) * BH : a->h0) + b0 * H, keep_t, M, H, a->scratch + b0 * H);
        const float *cp = masked((t ? a->cs + ((t - 1) % c_slots) * BH : a->c0) + b0 * H, keep_t, M, H,
                                 a->scratch + BH + b0 * H);
        project_inputs(&a->in, t, b0, M, GH, z);
        gemm(hp, H, a->whh_packed, M, GH, H, z, GH, z, GH);
        lstm_forward(z, a->acts + (a->save ? t * B * GH : 0) + b0 * GH, cp, a->cs + (t % c_slots) * BH + b0 * H,
                     a->ys + t * BH + b0 * H, M, H, G, a->cumax, a->aux, a->coupled);
    }
}

/* z_t = bias + x_t W_ih^T + h_{t-1} W_hh^T (see input_side), then the fused cell update.
 * With save: acts and cs hold all T steps (T slots of (B, GH) and (B, H)) for the backward;
 * without: one reused acts slot and min(T, 2) c slots, c_t in slot t % 2.
 * z: (B, GH) scratch; scratch: 2 (B, H). */
void lstm_sequence(const float *x, long x_step, long x_row, long input_size, const float *wih_packed,
                   const float *bias, const float *h0, const float *c0, const float *keep, const float *whh_packed,
                   float *z, float *acts, int save, float *ys, float *cs, float *scratch, long T, long B, long H,
                   long G, int cumax, int aux, int coupled, long threads) {
    const lstm_args args = {{x, x_step, x_row, input_size, wih_packed, bias}, h0, c0, keep, whh_packed, z, acts,
                            save, ys, cs, scratch, T, B, H, G, cumax, aux, coupled};
    parallel_rows(lstm_rows, &args, B, threads);
}

typedef struct {
    const float *acts, *cs, *c0, *keep, *dys, *whh_packed;
    float *dz_all, *dh, *dc, *scratch;
    long T, B, H, G;
    int cumax, aux, coupled;
} lstm_backward_args;

static void lstm_backward_rows(const void *p, long b0, long b1) {
    const lstm_backward_args *a = p;
    const long B = a->B, H = a->H, G = a->G, GH = G * H, M = b1 - b0, BH = B * H;
    float *dh = a->dh + b0 * H, *dc_cur = a->dc + b0 * H, *dc_next = a->scratch + BH + b0 * H;
    for (long t = a->T - 1; t >= 0; --t) {
        const float *keep_t = a->keep ? a->keep + t * B + b0 : NULL;
        add_into(dh, a->dys ? a->dys + t * BH + b0 * H : NULL, M * H);
        const float *cp = masked((t ? a->cs + (t - 1) * BH : a->c0) + b0 * H, keep_t, M, H, a->scratch + b0 * H);
        float *dz = a->dz_all + t * B * GH + b0 * GH;
        lstm_backward(a->acts + t * B * GH + b0 * GH, a->cs + t * BH + b0 * H, cp, dh, dc_cur, dz, dc_next, M, H, G,
                      a->cumax, a->aux, a->coupled);
        gemm(dz, GH, a->whh_packed, M, H, GH, NULL, 0, dh, H);
        mask_rows(dh, keep_t, M, H);
        mask_rows(dc_next, keep_t, M, H);
        float *swap = dc_cur;
        dc_cur = dc_next;
        dc_next = swap;
    }
    if (dc_cur != a->dc + b0 * H) memcpy(a->dc + b0 * H, dc_cur, sizeof(float) * M * H);
}

/* BPTT. dz_all (T, B, GH) out; dh (B, H): in zeros, out dL/dh_0; dc (B, H): in dL/dc_T, out
 * dL/dc_0. whh_packed packs W_hh itself (K = GH, N = H). scratch: 2 (B, H). */
void lstm_sequence_backward(const float *acts, const float *cs, const float *c0, const float *keep,
                            const float *dys, const float *whh_packed, float *dz_all, float *dh, float *dc,
                            float *scratch, long T, long B, long H, long G, int cumax, int aux, int coupled,
                            long threads) {
    const lstm_backward_args args = {acts, cs, c0, keep, dys, whh_packed, dz_all, dh, dc, scratch,
                                     T, B, H, G, cumax, aux, coupled};
    parallel_rows(lstm_backward_rows, &args, B, threads);
}

/* ----------------------------------------------------------------------------------- GRU */
typedef struct {
    input_side in;
    const float *h0, *keep, *whh_packed, *hidden_bias;
    float *a, *xw, *acts;
    int save;
    float *a_ns, *ys, *scratch;
    long T, B, H, G;
    int cumax, aux;
} gru_args;

static void gru_rows(const void *p, long b0, long b1) {
    const gru_args *g = p;
    const long B = g->B, H = g->H, G = g->G, GH = G * H, M = b1 - b0, BH = B * H;
    float *a = g->a + b0 * GH, *xw = g->xw + b0 * GH;
    for (long t = 0; t < g->T; ++t) {
        const float *keep_t = g->keep ? g->keep + t * B + b0 : NULL;
        const float *hp = masked((t ? g->ys + (t - 1) * BH : g->h0) + b0 * H, keep_t, M, H, g->scratch + b0 * H);
        project_inputs(&g->in, t, b0, M, GH, xw);
        gemm(hp, H, g->whh_packed, M, GH, H, g->hidden_bias, 0, a, GH);
        gru_forward(xw, a, hp, g->acts + (g->save ? t * B * GH : 0) + b0 * GH, g->ys + t * BH + b0 * H, M, H, G,
                    g->cumax, g->aux);
        if (g->save) /* the backward needs the candidate's hidden half a_n */
            for (long b = 0; b < M; ++b)
                memcpy(g->a_ns + t * BH + (b0 + b) * H, a + b * GH + (G - 1) * H, sizeof(float) * H);
    }
}

/* xw_t = bias + x_t W_ih^T (see input_side), a_t = b_hh + h_{t-1} W_hh^T (hidden_bias (GH) may
 * be NULL), then the fused update. With save, acts (T slots of (B, GH)) and a_ns (T, B, H) keep
 * what the backward needs; without, one reused acts slot and a_ns unused.
 * a, xw: (B, GH) scratch; scratch: (B, H). */
void gru_sequence(const float *x, long x_step, long x_row, long input_size, const float *wih_packed,
                  const float *bias, const float *h0, const float *keep, const float *whh_packed,
                  const float *hidden_bias, float *a, float *xw, float *acts, int save, float *a_ns, float *ys,
                  float *scratch, long T, long B, long H, long G, int cumax, int aux, long threads) {
    const gru_args args = {{x, x_step, x_row, input_size, wih_packed, bias}, h0, keep, whh_packed, hidden_bias,
                           a, xw, acts, save, a_ns, ys, scratch, T, B, H, G, cumax, aux};
    parallel_rows(gru_rows, &args, B, threads);
}

typedef struct {
    const float *acts, *a_ns, *ys, *h0, *keep, *dys, *whh_packed;
    float *da_all, *dxn_all, *dh, *scratch;
    long T, B, H, G;
    int cumax, aux;
} gru_backward_args;

static void gru_backward_rows(const void *p, long b0, long b1) {
    const gru_backward_args *g = p;
    const long B = g->B, H = g->H, G = g->G, GH = G * H, M = b1 - b0, BH = B * H;
    float *dh = g->dh + b0 * H, *direct = g->scratch + BH + b0 * H;
    for (long t = g->T - 1; t >= 0; --t) {
        const float *keep_t = g->keep ? g->keep + t * B + b0 : NULL;
        add_into(dh, g->dys ? g->dys + t * BH + b0 * H : NULL, M * H);
        const float *hp = masked((t ? g->ys + (t - 1) * BH : g->h0) + b0 * H, keep_t, M, H, g->scratch + b0 * H);
        float *da = g->da_all + t * B * GH + b0 * GH;
        gru_backward(g->acts + t * B * GH + b0 * GH, g->a_ns + t * BH + b0 * H, hp, dh, da,
                     g->dxn_all + t * BH + b0 * H, direct, M, H, G, g->cumax, g->aux);
        gemm(da, GH, g->whh_packed, M, H, GH, direct, H, dh, H);
        mask_rows(dh, keep_t, M, H);
    }
}

/* BPTT. da_all (T, B, GH) and dxn_all (T, B, H) out; dh (B, H): in zeros, out dL/dh_0.
 * scratch: 2 (B, H). */
void gru_sequence_backward(const float *acts, const float *a_ns, const float *ys, const float *h0,
                           const float *keep, const float *dys, const float *whh_packed, float *da_all,
                           float *dxn_all, float *dh, float *scratch, long T, long B, long H, long G, int cumax,
                           int aux, long threads) {
    const gru_backward_args args = {acts, a_ns, ys, h0, keep, dys, whh_packed, da_all, dxn_all, dh, scratch,
                                    T, B, H, G, cumax, aux};
    parallel_rows(gru_backward_rows, &args, B, threads);
}

/* ----------------------------------------------------------------------- one inference step */
/* T = 1 without autograd (an env runner's call): the weights are used in place (packing them
 * would cost more than the step), and x W_ih^T + h W_hh^T share one reduction.
 * The bias is the raw parameter; tie_r >= 0 applies the refine tie b_r - b_f (block indices).
 * scratch: GH + 2 B GH floats. */
static const float *tied_bias(const float *bias, long tie_r, long tie_f, long H, long GH, float *out) {
    if (!bias || tie_r < 0) return bias;
    memcpy(out, bias, sizeof(float) * GH);
    for (long j = 0; j < H; ++j) out[tie_r * H + j] -= bias[tie_f * H + j];
    return out;
}

void lstm_step(const float *x, long x_row, long input_size, const float *wih, const float *bias, long tie_r,
               long tie_f, const float *h0, const float *c0, const float *whh, float *scratch, float *h_out,
               float *c_out, long B, long H, long G, int cumax, int aux, int coupled) {
    const long GH = G * H;
    float *z = scratch + GH, *act = z + B * GH;
    const float *b = tied_bias(bias, tie_r, tie_f, H, GH, scratch);
    gemm_dot2(x, x_row, wih, input_size, input_size, h0, H, whh, H, H, B, GH, b, 0, z, GH);
    lstm_forward(z, act, c0, c_out, h_out, B, H, G, cumax, aux, coupled);
}

/* The candidate's two halves stay apart (n = tanh(xw_n + s * a_n)); the other gates sum them.
 * scratch: GH + 3 B GH floats. */
void gru_step(const float *x, long x_row, long input_size, const float *wih, const float *bias, long tie_r,
              long tie_f, const float *h0, const float *whh, const float *bias_hn, float *scratch, float *h_out,
              long B, long H, long G, int cumax, int aux) {
    const long GH = G * H, n0 = (G - 1) * H;
    float *xw = scratch + GH, *a = xw + B * GH, *act = a + B * GH;
    const float *b = tied_bias(bias, tie_r, tie_f, H, GH, scratch);
    gemm_dot2(x, x_row, wih, input_size, input_size, h0, H, whh, H, H, B, n0, b, 0, xw, GH);
    gemm_dot(x, x_row, wih + n0 * input_size, input_size, B, H, input_size, b ? b + n0 : NULL, 0, xw + n0, GH);
    gemm_dot(h0, H, whh + n0 * H, H, B, H, H, bias_hn, 0, a + n0, GH);
    for (long r = 0; r < B; ++r) memset(a + r * GH, 0, sizeof(float) * n0); /* already summed into xw */
    gru_forward(xw, a, h0, act, h_out, B, H, G, cumax, aux);
}
