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
        } else { /* B = W^T: read each W row contiguously, write with stride NR */
            for (long j = 0; j < width; ++j) {
                const float *column = src + (p * NR + j) * sn;
                for (long k = 0; k < K; ++k) out[k * NR + j] = column[k * sk];
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
            memcpy(&acc[i][0], cin + i * ldci, sizeof(vf));
            memcpy(&acc[i][1], cin + i * ldci + VW, sizeof(vf));
        } else {
            float tmp[NR] = {0};
            memcpy(tmp, cin + i * ldci, sizeof(float) * width);
            memcpy(&acc[i][0], tmp, sizeof(vf));
            memcpy(&acc[i][1], tmp + VW, sizeof(vf));
        }
    }
    for (long k = 0; k < K; ++k) {
        vf b0, b1;
        memcpy(&b0, panel + k * NR, sizeof(vf));
        memcpy(&b1, panel + k * NR + VW, sizeof(vf));
#pragma GCC unroll 16
        for (int i = 0; i < mr; ++i) {
            vf a = (vf){0} + A[i * lda + k];
            acc[i][0] += a * b0;
            acc[i][1] += a * b1;
        }
    }
    for (int i = 0; i < mr; ++i) {
        if (width == NR) {
            memcpy(C + i * ldc, &acc[i][0], sizeof(vf));
            memcpy(C + i * ldc + VW, &acc[i][1], sizeof(vf));
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

/* ---------------------------------------------------------------------------------- LSTM */
/* z_t = xw_t + h_{t-1} W_hh^T, then the fused cell update. xw: (T, B, GH) with steps
 * `xw_step` floats apart; or, when x is given, xw_t = bias + x_t W_ih^T computed here too
 * (x_t row b at x + t * x_step + b * x_row, wih_packed from W_ih^T, bias may be NULL).
 * acts: T slots of (B, GH) when save, else one reused slot. cs: c_slots slots of (B, H)
 * (T when saving, 2 for inference: only c_{t-1} is needed). z: (B, GH) scratch; scratch 2 (B, H). */
void lstm_sequence(const float *xw, long xw_step, const float *x, long x_step, long x_row, long input_size,
                   const float *wih_packed, const float *bias, const float *h0, const float *c0,
                   const float *keep, const float *whh_packed, float *z, float *acts, int save, float *ys,
                   float *cs, long c_slots, float *scratch, long T, long B, long H, long G, int cumax, int aux,
                   int coupled) {
    const long GH = G * H;
    for (long t = 0; t < T; ++t) {
        const float *keep_t = keep ? keep + t * B : NULL;
        const float *hp = masked(t ? ys + (t - 1) * B * H : h0, keep_t, B, H, scratch);
        const float *cp = masked(t ? cs + ((t - 1) % c_slots) * B * H : c0, keep_t, B, H, scratch + B * H);
        if (x) {
            gemm(x + t * x_step, x_row, wih_packed, B, GH, input_size, bias, 0, z, GH);
            gemm(hp, H, whh_packed, B, GH, H, z, GH, z, GH);
        } else {
            gemm(hp, H, whh_packed, B, GH, H, xw + t * xw_step, GH, z, GH);
        }
        lstm_forward(z, acts + (save ? t * B * GH : 0), cp, cs + (t % c_slots) * B * H, ys + t * B * H,
                     B, H, G, cumax, aux, coupled);
    }
}

/* BPTT. dz_all (T, B, GH) out; dh (B, H): in zeros, out dL/dh_0; dc (B, H): in dL/dc_T, out
 * dL/dc_0. whh_packed packs W_hh itself (K = GH, N = H). scratch: 2 (B, H). */
void lstm_sequence_backward(const float *acts, const float *cs, const float *c0, const float *keep,
                            const float *dys, const float *whh_packed, float *dz_all, float *dh, float *dc,
                            float *scratch, long T, long B, long H, long G, int cumax, int aux, int coupled) {
    const long GH = G * H;
    float *dc_cur = dc, *dc_next = scratch + B * H;
    for (long t = T - 1; t >= 0; --t) {
        const float *keep_t = keep ? keep + t * B : NULL;
        if (dys)
            for (long j = 0; j < B * H; ++j) dh[j] += dys[t * B * H + j];
        const float *cp = masked(t ? cs + (t - 1) * B * H : c0, keep_t, B, H, scratch);
        float *dz = dz_all + t * B * GH;
        lstm_backward(acts + t * B * GH, cs + t * B * H, cp, dh, dc_cur, dz, dc_next, B, H, G, cumax, aux, coupled);
        gemm(dz, GH, whh_packed, B, H, GH, NULL, 0, dh, H);
        mask_rows(dh, keep_t, B, H);
        mask_rows(dc_next, keep_t, B, H);
        float *swap = dc_cur;
        dc_cur = dc_next;
        dc_next = swap;
    }
    if (dc_cur != dc) memcpy(dc, dc_cur, sizeof(float) * B * H);
}

/* ----------------------------------------------------------------------------------- GRU */
/* a_t = b_hh + h_{t-1} W_hh^T (hidden_bias (GH) may be NULL), then the fused update. The
 * input side as in lstm_sequence. a_ns (T, B, H) receives a_t's candidate block when not NULL
 * (the backward pass needs it). acts as in lstm_sequence; a: (B, GH) scratch; xw_buf: (B, GH)
 * scratch used when x is given; scratch: (B, H). */
void gru_sequence(const float *xw, long xw_step, const float *x, long x_step, long x_row, long input_size,
                  const float *wih_packed, const float *bias, const float *h0, const float *keep,
                  const float *whh_packed, const float *hidden_bias, float *a, float *xw_buf, float *acts, int save,
                  float *a_ns, float *ys, float *scratch, long T, long B, long H, long G, int cumax, int aux) {
    const long GH = G * H;
    for (long t = 0; t < T; ++t) {
        const float *keep_t = keep ? keep + t * B : NULL;
        const float *hp = masked(t ? ys + (t - 1) * B * H : h0, keep_t, B, H, scratch);
        const float *xw_t = xw + t * xw_step;
        if (x) {
            gemm(x + t * x_step, x_row, wih_packed, B, GH, input_size, bias, 0, xw_buf, GH);
            xw_t = xw_buf;
        }
        gemm(hp, H, whh_packed, B, GH, H, hidden_bias, 0, a, GH);
        gru_forward(xw_t, a, hp, acts + (save ? t * B * GH : 0), ys + t * B * H, B, H, G, cumax, aux);
        if (a_ns)
            for (long b = 0; b < B; ++b) memcpy(a_ns + (t * B + b) * H, a + b * GH + (G - 1) * H, sizeof(float) * H);
    }
}

/* BPTT. da_all (T, B, GH) and dxn_all (T, B, H) out; dh (B, H): in zeros, out dL/dh_0.
 * scratch: 2 (B, H). */
void gru_sequence_backward(const float *acts, const float *a_ns, const float *ys, const float *h0,
                           const float *keep, const float *dys, const float *whh_packed, float *da_all,
                           float *dxn_all, float *dh, float *scratch, long T, long B, long H, long G, int cumax,
                           int aux) {
    const long GH = G * H;
    float *direct = scratch + B * H;
    for (long t = T - 1; t >= 0; --t) {
        const float *keep_t = keep ? keep + t * B : NULL;
        if (dys)
            for (long j = 0; j < B * H; ++j) dh[j] += dys[t * B * H + j];
        const float *hp = masked(t ? ys + (t - 1) * B * H : h0, keep_t, B, H, scratch);
        float *da = da_all + t * B * GH;
        gru_backward(acts + t * B * GH, a_ns + t * B * H, hp, dh, da, dxn_all + t * B * H, direct, B, H, G,
                     cumax, aux);
        gemm(da, GH, whh_packed, B, H, GH, direct, H, dh, H);
        mask_rows(dh, keep_t, B, H);
    }
}
