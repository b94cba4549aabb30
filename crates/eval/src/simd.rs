//! Vectorised element-wise kernels of the forward pass: softmax, log-sum-exp, SiLU-gating.
//!
//! They are bound by `exp` (the attention of one 2048-token window evaluates ~19 M of them per
//! layer), so `exp` is a polynomial that the compiler vectorises: `eˣ = 2ⁿ·eʳ` with
//! `n = round(x/ln 2)`, `r = x − n·ln 2` (Cody–Waite split, |r| ≤ ln2/2) and the
//! Taylor polynomial of degree 7 of `eʳ` (truncation error < 6e-9 relative; with rounding the
//! result is within 3e-7 relative of libm's, about 2 ulp, tested). Each kernel
//! is compiled three times (generic, AVX2+FMA, AVX-512) and chosen at run time.

#[inline(always)]
fn exp_poly(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest by the 1.5·2²³ trick (vectorises without SSE4.1's roundps).
    let n = (x * LOG2E + 12_582_912.0) - 12_582_912.0;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0 / 5040.0;
    let p = p * r + 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[inline(always)]
fn max_impl(xs: &[f32]) -> f32 {
    // Eight independent lanes so the reduction vectorises.
    let mut m = [f32::NEG_INFINITY; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            m[i] = m[i].max(c[i]);
        }
    }
    let mut out = m.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for &x in rest {
        out = out.max(x);
    }
    out
}

#[inline(always)]
fn exp_sub_sum_impl(xs: &mut [f32], m: f32) -> f32 {
    let mut s = [0.0f32; 8];
    let mut chunks = xs.chunks_exact_mut(8);
    for c in &mut chunks {
        for i in 0..8 {
            c[i] = exp_poly(c[i] - m);
            s[i] += c[i];
        }
    }
    let mut out: f32 = s.iter().sum();
    for x in chunks.into_remainder() {
        *x = exp_poly(*x - m);
        out += *x;
    }
    out
}

#[inline(always)]
fn softmax_prefix_impl(col: &mut [f32], valid: usize) {
    let (head, tail) = col.split_at_mut(valid);
    let m = max_impl(head);
    let s = exp_sub_sum_impl(head, m);
    let inv = 1.0 / s;
    head.iter_mut().for_each(|x| *x *= inv);
    tail.iter_mut().for_each(|x| *x = 0.0);
}

#[inline(always)]
fn log_sum_exp_impl(xs: &[f32]) -> f64 {
    let m = max_impl(xs);
    let mut s = [0.0f32; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    let mut total = 0.0f64;
    // Blocks of 8·256 terms are summed in f32, blocks are summed in f64.
    for (b, c) in chunks.enumerate() {
        for i in 0..8 {
            s[i] += exp_poly(c[i] - m);
        }
        if b % 256 == 255 {
            total += s.iter().map(|&v| v as f64).sum::<f64>();
            s = [0.0; 8];
        }
    }
    total += s.iter().map(|&v| v as f64).sum::<f64>();
    for &x in rest {
        total += exp_poly(x - m) as f64;
    }
    total.ln() + m as f64
}

#[inline(always)]
fn silu_mul_impl(g: &mut [f32], u: &[f32]) {
    for (g, u) in g.iter_mut().zip(u) {
        *g = *g / (1.0 + exp_poly(-*g)) * u;
    }
}

macro_rules! dispatched {
    ($(#[$doc:meta])* pub fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? => $imp:ident) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? { $imp($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? { $imp($($arg),*) }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports AVX-512F (checked just above).
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            $imp($($arg),*)
        }
    };
}

dispatched! {
    /// Causal softmax of one attention column: softmax over `col[..valid]`, zeros after.
    pub fn softmax_prefix(col: &mut [f32], valid: usize) => softmax_prefix_impl
}
dispatched! {
    /// `ln Σ exp(xᵢ)`, stable (max subtracted), summed in f64 per block.
    pub fn log_sum_exp(xs: &[f32]) -> f64 => log_sum_exp_impl
}
dispatched! {
    /// `g ← silu(g) ⊙ u`.
    pub fn silu_mul(g: &mut [f32], u: &[f32]) => silu_mul_impl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_poly_is_within_3e_7_of_libm() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (a, b) = (exp_poly(x), x.exp());
            assert!(((a - b) / b).abs() < 3e-7, "exp({x}) = {a}, libm {b}");
            x += 0.0137;
        }
        assert_eq!(exp_poly(0.0), 1.0);
    }

    #[test]
    fn kernels_match_scalar_definitions() {
        let xs: Vec<f32> = (0..1037)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.21)
            .collect();
        let m = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let want = xs.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln() + m;
        assert!((log_sum_exp(&xs) - want).abs() < 1e-6);

        let mut col = xs.clone();
        softmax_prefix(&mut col, 700);
        let z: f64 = xs[..700].iter().map(|&x| (x as f64 - m).exp()).sum();
        for i in 0..700 {
            let p = (xs[i] as f64 - m).exp() / z;
            assert!((col[i] as f64 - p).abs() < 1e-6 * p.max(1e-3), "{i}");
        }
        assert!(col[700..].iter().all(|&v| v == 0.0));

        let mut g: Vec<f32> = xs.iter().map(|x| x * 0.3).collect();
        let u: Vec<f32> = xs.iter().map(|x| 1.0 - x * 0.01).collect();
        let g0 = g.clone();
        silu_mul(&mut g, &u);
        for i in 0..g.len() {
            let want = g0[i] as f64 / (1.0 + (-(g0[i] as f64)).exp()) * u[i] as f64;
            assert!(
                (g[i] as f64 - want).abs() < 1e-5 * want.abs().max(1.0),
                "{i}"
            );
        }
    }
}
