/* Fused pointwise updates of the gated-cell family (float32, row-major, contiguous).
 *
 * Called once per time step by the loops of sequence.c (which includes this file); the math is
 * that of memory_agents/cells/kernels.py's TorchPointwise, which the parity tests compare to
 * the step-by-step cells. Plain C, no PyTorch headers.
 *
 * Layout: rows of G*H gate values. LSTM blocks [f, aux?, i?, o, u]; GRU blocks [f, aux?, s, n].
 * aux: 0 none, 1 refine (g = f + (2r-1) f(1-f)), 2 master (g = f - (1-m) f(1-f)).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define INLINE static inline __attribute__((always_inline))

/* exp with Cephes' expf polynomial (relative error ~2e-7): unlike libm's expf it is inlined and
 * vectorised by the compiler, which is what makes the fused step faster than PyTorch's own
 * (SIMD) ops. Inputs are clamped to the float range, so no inf/NaN is produced. */
static inline float exp_approx(float x) {
    x = x < -87.0f ? -87.0f : x; /* comparisons, not fminf: they vectorise and keep NaN */
    x = x > 88.0f ? 88.0f : x;
    float nf = rintf(x * 1.44269504088896341f);
    int32_t n = (int32_t)nf;
    float r = x - nf * 0.693359375f + nf * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = (n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float sigm(float x) { return 1.0f / (1.0f + exp_approx(-x)); }

/* tanh(x) = 2 sigmoid(2x) - 1: branch-free, so it vectorises (absolute error ~1e-7). */
static inline float tanh_approx(float x) { return 2.0f / (1.0f + exp_approx(-2.0f * x)) - 1.0f; }

/* softmax weight of unit k, recovered from the cumulative sum f. */
static inline float unit_weight(const float *f, long k) { return k ? f[k] - f[k - 1] : f[0]; }

INLINE float effective_gate(float f, float a, int aux) {
    if (aux == 1) return f + (2.0f * a - 1.0f) * f * (1.0f - f);
    if (aux == 2) return f - (1.0f - a) * f * (1.0f - f);
    return f;
}

/* cumax(z) = cumsum(softmax(z)) over one row of H units; in place allowed. */
static void cumax_row(const float *z, float *out, long H) {
    float m = z[0];
    for (long k = 1; k < H; ++k) m = z[k] > m ? z[k] : m;
    float total = 0.0f;
    for (long k = 0; k < H; ++k) { out[k] = exp_approx(z[k] - m); total += out[k]; }
    float inv = 1.0f / total, acc = 0.0f;
    for (long k = 0; k < H; ++k) { acc += out[k] * inv; out[k] = acc; }
}

/* Every row loop takes restrict pointers, one per gate block: without them GCC cannot prove the
 * blocks of one row apart and leaves the loops scalar (3-5x slower). */
#define R restrict

INLINE void sigmoid_row(const float *R z, float *R out, long n) {
    for (long j = 0; j < n; ++j) out[j] = sigm(z[j]);
}

INLINE void sigmoid_sum_row(const float *R x, const float *R y, float *R out, long n) {
    for (long j = 0; j < n; ++j) out[j] = sigm(x[j] + y[j]);
}

INLINE void tanh_row(const float *R z, float *R out, long n) {
    for (long j = 0; j < n; ++j) out[j] = tanh_approx(z[j]);
}

/* Given dL/dg in dz_f (and f, aux), write d(pre-activation) of f and aux. */
INLINE void gate_backward_row(const float *R f, const float *R a, float *R dz_f, float *R dz_a,
                              long H, const int aux) {
    for (long k = 0; k < H; ++k) {
        float fk = f[k], dg = dz_f[k], ff = fk * (1.0f - fk), df = dg;
        if (aux == 1) {
            float ak = a[k];
            df = dg * (1.0f + (2.0f * ak - 1.0f) * (1.0f - 2.0f * fk));
            dz_a[k] = dg * 2.0f * ff * ak * (1.0f - ak);
        } else if (aux == 2) {
            float ak = a[k];
            df = dg * (1.0f - (1.0f - ak) * (1.0f - 2.0f * fk));
            dz_a[k] = dg * ff * ak * (1.0f - ak);
        }
        dz_f[k] = df * ff;
    }
}

/* Same with a cumax main gate: f = cumsum(s), s = softmax(z); ds_k = sum_{j>=k} df_j and
 * dz = s (ds - <ds, s>). Scalar (a prefix sum), used only by the o-/om- variants. */
static void gate_backward_row_cumax(const float *f, const float *a, float *dz_f, float *dz_a,
                                    long H, int aux) {
    for (long k = 0; k < H; ++k) {
        float fk = f[k], dg = dz_f[k], ff = fk * (1.0f - fk), df = dg;
        if (aux) {
            float ak = a[k], slope = aux == 1 ? 2.0f * ak - 1.0f : ak - 1.0f;
            df = dg * (1.0f + slope * (1.0f - 2.0f * fk));
            dz_a[k] = dg * (aux == 1 ? 2.0f : 1.0f) * ff * ak * (1.0f - ak);
        }
        dz_f[k] = df;
    }
    float acc = 0.0f, dot = 0.0f;
    for (long k = H - 1; k >= 0; --k) {
        acc += dz_f[k];
        dz_f[k] = acc;
        dot += acc * unit_weight(f, k);
    }
    for (long k = 0; k < H; ++k) dz_f[k] = unit_weight(f, k) * (dz_f[k] - dot);
}

INLINE void lstm_forward_row(const float *R f, const float *R a, const float *R in, const float *R o,
                             const float *R u, const float *R cp, float *R c_out, float *R h_out,
                             long H, const int aux, const int coupled) {
    for (long k = 0; k < H; ++k) {
        float g = effective_gate(f[k], a[k], aux);
        float i = coupled ? 1.0f - g : in[k];
        float c = g * cp[k] + i * u[k];
        c_out[k] = c;
        h_out[k] = o[k] * tanh_approx(c);
    }
}

INLINE void lstm_backward_row(const float *R f, const float *R a, const float *R in, const float *R o,
                              const float *R u, const float *R c, const float *R cp, const float *R dh,
                              const float *R dc, float *R dz_f, float *R dz_i, float *R dz_o,
                              float *R dz_u, float *R dc_prev, long H, const int aux, const int coupled) {
    for (long k = 0; k < H; ++k) {
        float ok = o[k], uk = u[k], tc = tanh_approx(c[k]), d_h = dh[k];
        dz_o[k] = d_h * tc * ok * (1.0f - ok);
        float dct = dc[k] + d_h * ok * (1.0f - tc * tc);
        float g = effective_gate(f[k], a[k], aux);
        float dg, du;
        if (coupled) {
            dg = dct * (cp[k] - uk);
            du = dct * (1.0f - g);
        } else {
            float ik = in[k];
            dg = dct * cp[k];
            du = dct * ik;
            dz_i[k] = dct * uk * ik * (1.0f - ik);
        }
        dz_u[k] = du * (1.0f - uk * uk);
        dz_f[k] = dg; /* dL/dg, turned into dL/dz_f by gate_backward_row */
        dc_prev[k] = dct * g;
    }
}

INLINE void lstm_forward_body(const float *z, float *act, const float *c_prev, float *c_out, float *h_out,
                              long B, long H, long G, int cumax, const int aux, const int coupled) {
    const long GH = G * H, start = cumax ? H : 0;
    for (long b = 0; b < B; ++b) {
        const float *zr = z + b * GH;
        float *ar = act + b * GH;
        sigmoid_row(zr + start, ar + start, (G - 1) * H - start);
        if (cumax) cumax_row(zr, ar, H);
        tanh_row(zr + (G - 1) * H, ar + (G - 1) * H, H);
        lstm_forward_row(ar, ar + H, ar + (G - 3) * H, ar + (G - 2) * H, ar + (G - 1) * H,
                         c_prev + b * H, c_out + b * H, h_out + b * H, H, aux, coupled);
    }
}

INLINE void lstm_backward_body(const float *act, const float *c, const float *c_prev, const float *dh,
                               const float *dc, float *dz, float *dc_prev,
                               long B, long H, long G, int cumax, const int aux, const int coupled) {
    const long GH = G * H;
    for (long b = 0; b < B; ++b) {
        const float *ar = act + b * GH;
        float *dzr = dz + b * GH;
        lstm_backward_row(ar, ar + H, ar + (G - 3) * H, ar + (G - 2) * H, ar + (G - 1) * H,
                          c + b * H, c_prev + b * H, dh + b * H, dc + b * H,
                          dzr, dzr + (G - 3) * H, dzr + (G - 2) * H, dzr + (G - 1) * H,
                          dc_prev + b * H, H, aux, coupled);
        if (cumax) gate_backward_row_cumax(ar, ar + H, dzr, dzr + H, H, aux);
        else gate_backward_row(ar, ar + H, dzr, dzr + H, H, aux);
    }
}

INLINE void gru_forward_row(const float *R f, const float *R a, const float *R s, const float *R xn,
                            const float *R an, const float *R hp, float *R n_out, float *R h_out,
                            long H, const int aux) {
    for (long k = 0; k < H; ++k) {
        float n = tanh_approx(xn[k] + s[k] * an[k]);
        n_out[k] = n;
        float g = effective_gate(f[k], a[k], aux);
        h_out[k] = n + g * (hp[k] - n);
    }
}

INLINE void gru_forward_body(const float *xw, const float *a, const float *h_prev, float *act, float *h_out,
                             long B, long H, long G, int cumax, const int aux) {
    const long GH = G * H, start = cumax ? H : 0;
    for (long b = 0; b < B; ++b) {
        const float *xr = xw + b * GH, *arow = a + b * GH;
        float *ar = act + b * GH;
        sigmoid_sum_row(xr + start, arow + start, ar + start, (G - 1) * H - start);
        if (cumax) {
            for (long k = 0; k < H; ++k) ar[k] = xr[k] + arow[k];
            cumax_row(ar, ar, H);
        }
        gru_forward_row(ar, ar + H, ar + (G - 2) * H, xr + (G - 1) * H, arow + (G - 1) * H,
                        h_prev + b * H, ar + (G - 1) * H, h_out + b * H, H, aux);
    }
}

INLINE void gru_backward_row(const float *R f, const float *R a, const float *R s, const float *R n,
                             const float *R an, const float *R hp, const float *R dh, float *R da_f,
                             float *R da_s, float *R da_n, float *R dxn, float *R dh_direct,
                             long H, const int aux) {
    for (long k = 0; k < H; ++k) {
        float nk = n[k], sk = s[k], d_h = dh[k];
        float g = effective_gate(f[k], a[k], aux);
        float dzn = d_h * (1.0f - g) * (1.0f - nk * nk);
        dxn[k] = dzn;
        da_n[k] = dzn * sk;
        da_s[k] = dzn * an[k] * sk * (1.0f - sk);
        da_f[k] = d_h * (hp[k] - nk);
        dh_direct[k] = d_h * g;
    }
}

INLINE void gru_backward_body(const float *act, const float *a_n, const float *h_prev, const float *dh,
                              float *da, float *dxn, float *dh_direct, long B, long H, long G,
                              int cumax, const int aux) {
    const long GH = G * H;
    for (long b = 0; b < B; ++b) {
        const float *ar = act + b * GH;
        float *dar = da + b * GH;
        gru_backward_row(ar, ar + H, ar + (G - 2) * H, ar + (G - 1) * H, a_n + b * H, h_prev + b * H,
                         dh + b * H, dar, dar + (G - 2) * H, dar + (G - 1) * H, dxn + b * H,
                         dh_direct + b * H, H, aux);
        if (cumax) gate_backward_row_cumax(ar, ar + H, dar, dar + H, H, aux);
        else gate_backward_row(ar, ar + H, dar, dar + H, H, aux);
    }
}

#define DISPATCH_AUX(call_with) \
    switch (aux) { case 1: call_with(1); break; case 2: call_with(2); break; default: call_with(0); }

void lstm_forward(const float *z, float *act, const float *c_prev, float *c_out, float *h_out,
                  long B, long H, long G, int cumax, int aux, int coupled) {
#define CALL(A) (coupled ? lstm_forward_body(z, act, c_prev, c_out, h_out, B, H, G, cumax, A, 1) \
                         : lstm_forward_body(z, act, c_prev, c_out, h_out, B, H, G, cumax, A, 0))
    DISPATCH_AUX(CALL)
#undef CALL
}

void lstm_backward(const float *act, const float *c, const float *c_prev, const float *dh,
                   const float *dc, float *dz, float *dc_prev,
                   long B, long H, long G, int cumax, int aux, int coupled) {
#define CALL(A) (coupled ? lstm_backward_body(act, c, c_prev, dh, dc, dz, dc_prev, B, H, G, cumax, A, 1) \
                         : lstm_backward_body(act, c, c_prev, dh, dc, dz, dc_prev, B, H, G, cumax, A, 0))
    DISPATCH_AUX(CALL)
#undef CALL
}

void gru_forward(const float *xw, const float *a, const float *h_prev, float *act, float *h_out,
                 long B, long H, long G, int cumax, int aux) {
#define CALL(A) gru_forward_body(xw, a, h_prev, act, h_out, B, H, G, cumax, A)
    DISPATCH_AUX(CALL)
#undef CALL
}

void gru_backward(const float *act, const float *a_n, const float *h_prev, const float *dh,
                  float *da, float *dxn, float *dh_direct, long B, long H, long G, int cumax, int aux) {
#define CALL(A) gru_backward_body(act, a_n, h_prev, dh, da, dxn, dh_direct, B, H, G, cumax, A)
    DISPATCH_AUX(CALL)
#undef CALL
}
