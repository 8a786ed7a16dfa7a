using System.Runtime.CompilerServices;
using System.Numerics;
using System.Runtime.InteropServices;

namespace Verifier.Bounds;

/// <summary>Midpoint–radius arithmetic on float64 vectors (proofs/R2-midpoint-radius.md): a vector x is known to lie in
/// [m − r, m + r] entrywise. A product is a plain float64 kernel on the midpoints plus one on the radii, which bounds
/// the rounding error of the first for any summation order (INTLAB's shape; Rump's a-priori bound).
///
/// Lemma R2. Let mx, rx, my, ry ∈ Fⁿ (r ≥ 0), b ∈ F, and reals x, y with |x − mx| ≤ rx, |y − my| ≤ ry. Let N = n + 1,
/// c ≥ γ_{2N} = 2Nu/(1 − 2Nu) (u = 2⁻⁵³, 2Nu ≤ 1/5), η = 2⁻¹⁰⁷⁴. Let ŝ be Σ mxᵢ·myᵢ + b evaluated in float64 by
/// additions, multiplications and fused multiply-adds in any order, and Ŝ the same for the non-negative sum
/// Σ aᵢ·|myᵢ| + a′ᵢ·ryᵢ + β with aᵢ ≥ c|mxᵢ| + rxᵢ, a′ᵢ ≥ |mxᵢ| + rxᵢ, β ≥ c|b|. If ŝ and Ŝ are finite, then
///     |Σ xᵢyᵢ + b − ŝ| ≤ ρ := Ŝ·(1 + 2c) + 5Nη   (ρ evaluated rounding up).
/// A point matrix W (ry = 0) is the case used for every weight product; its a′ terms vanish.</summary>
public static class MidRad
{
    public const double U = 1.0 / (1L << 53);
    const double Eta = double.Epsilon;   // 2⁻¹⁰⁷⁴

    /// <summary>The constants of R2 for sums of n products plus a bias: c ≥ γ_{2N}, k = 1 + 2c rounded up, e = 5Nη.</summary>
    public readonly record struct Constants(double C, double K, double E)
    {
        public static Constants For(int n)
        {
            long N = n + 1;
            double twoNu = 2 * N * U;                                               // exact
            if (!(twoNu <= 0.2)) throw new ArgumentOutOfRangeException(nameof(n), "R2 needs 2Nu ≤ 1/5");
            double c = Math.BitIncrement(twoNu / Math.BitDecrement(1 - twoNu));      // ≥ γ_{2N}
            return new(c, Math.BitIncrement(1 + 2 * c), 5 * N * Eta);               // 5Nη is an exact subnormal
        }

        /// <summary>ρ = Ŝ·(1 + 2c) + 5Nη, rounded up; the midpoint and Ŝ must be finite.</summary>
        public double Radius(double mid, double sHat)
        {
            if (!double.IsFinite(mid) || !double.IsFinite(sHat)) throw new IntervalOverflowException($"a midpoint–radius product ({mid:R} ± {sHat:R})");
            return Math.BitIncrement(Math.BitIncrement(sHat * K) + E);
        }
    }

    /// <summary>aᵢ ≥ c·|m| + r, rounded up.</summary>
    public static double Coefficient(double c, double m, double r) => Math.BitIncrement(Math.BitIncrement(c * Math.Abs(m)) + r);

    /// <summary>y += a·x, vectorised (the order of the adds within y does not matter to R2).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loops: optimised from the first call
    public static void Axpy(double a, ReadOnlySpan<double> x, Span<double> y)
    {
        int i = 0, w = Vector<double>.Count;
        if (Vector.IsHardwareAccelerated && y.Length >= w)
        {
            var va = new Vector<double>(a);
            var xs = MemoryMarshal.Cast<double, Vector<double>>(x[..(y.Length / w * w)]);
            var ys = MemoryMarshal.Cast<double, Vector<double>>(y[..(y.Length / w * w)]);
            for (int k = 0; k < ys.Length; k++) ys[k] += va * xs[k];
            i = ys.Length * w;
        }
        for (; i < y.Length; i++) y[i] += a * x[i];
    }

    /// <summary>The two sums of R2 for one row: ŷ_j = b_j + Σ_c xm_c·W[idx_c, j] and Ŝ_j = β_j + Σ_c a_c·|W|[idx_c, j]
    /// (W, |W| row-major [·, k]), in float64 with fused multiply-adds, several output columns per pass held in
    /// registers. R2 allows any summation order and FMA (one rounding where mul + add has two), so the radius that
    /// the caller derives from Ŝ covers this ŷ.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loops: optimised from the first call
    public static void Product(ReadOnlySpan<int> idx, ReadOnlySpan<double> xm, ReadOnlySpan<double> a, ReadOnlySpan<double> w, ReadOnlySpan<double> absW,
        int k, ReadOnlySpan<double> b, ReadOnlySpan<double> beta, Span<double> ym, Span<double> yr)
    {
        int n = idx.Length;
        if (xm.Length != n || a.Length != n || b.Length != k || beta.Length != k || ym.Length != k || yr.Length != k || absW.Length != w.Length)
            throw new ArgumentException("MidRad.Product: mismatched lengths");
        for (int c = 0; c < n; c++)
            if ((uint)idx[c] >= (uint)(w.Length / k)) throw new ArgumentException("MidRad.Product: row index out of range");
        ref double W0 = ref MemoryMarshal.GetReference(w), A0 = ref MemoryMarshal.GetReference(absW);
        ref double B0 = ref MemoryMarshal.GetReference(b), E0 = ref MemoryMarshal.GetReference(beta);
        ref double Y0 = ref MemoryMarshal.GetReference(ym), S0 = ref MemoryMarshal.GetReference(yr);
        int vw = Vector<double>.Count, j = 0;
        if (Vector.IsHardwareAccelerated)
        {
            for (; j + 4 * vw <= k; j += 4 * vw)
            {
                nuint o = (nuint)j, v = (nuint)vw;
                var m0 = Vector.LoadUnsafe(ref B0, o); var m1 = Vector.LoadUnsafe(ref B0, o + v);
                var m2 = Vector.LoadUnsafe(ref B0, o + 2 * v); var m3 = Vector.LoadUnsafe(ref B0, o + 3 * v);
                var s0 = Vector.LoadUnsafe(ref E0, o); var s1 = Vector.LoadUnsafe(ref E0, o + v);
                var s2 = Vector.LoadUnsafe(ref E0, o + 2 * v); var s3 = Vector.LoadUnsafe(ref E0, o + 3 * v);
                for (int c = 0; c < n; c++)
                {
                    nuint row = (nuint)idx[c] * (nuint)k + o;
                    var x = new Vector<double>(xm[c]); var ac = new Vector<double>(a[c]);
                    m0 = Vector.FusedMultiplyAdd(x, Vector.LoadUnsafe(ref W0, row), m0);
                    m1 = Vector.FusedMultiplyAdd(x, Vector.LoadUnsafe(ref W0, row + v), m1);
                    m2 = Vector.FusedMultiplyAdd(x, Vector.LoadUnsafe(ref W0, row + 2 * v), m2);
                    m3 = Vector.FusedMultiplyAdd(x, Vector.LoadUnsafe(ref W0, row + 3 * v), m3);
                    s0 = Vector.FusedMultiplyAdd(ac, Vector.LoadUnsafe(ref A0, row), s0);
                    s1 = Vector.FusedMultiplyAdd(ac, Vector.LoadUnsafe(ref A0, row + v), s1);
                    s2 = Vector.FusedMultiplyAdd(ac, Vector.LoadUnsafe(ref A0, row + 2 * v), s2);
                    s3 = Vector.FusedMultiplyAdd(ac, Vector.LoadUnsafe(ref A0, row + 3 * v), s3);
                }
                m0.StoreUnsafe(ref Y0, o); m1.StoreUnsafe(ref Y0, o + v); m2.StoreUnsafe(ref Y0, o + 2 * v); m3.StoreUnsafe(ref Y0, o + 3 * v);
                s0.StoreUnsafe(ref S0, o); s1.StoreUnsafe(ref S0, o + v); s2.StoreUnsafe(ref S0, o + 2 * v); s3.StoreUnsafe(ref S0, o + 3 * v);
            }
            for (; j + vw <= k; j += vw)
            {
                nuint o = (nuint)j;
                var m0 = Vector.LoadUnsafe(ref B0, o); var s0 = Vector.LoadUnsafe(ref E0, o);
                for (int c = 0; c < n; c++)
                {
                    nuint row = (nuint)idx[c] * (nuint)k + o;
                    m0 = Vector.FusedMultiplyAdd(new Vector<double>(xm[c]), Vector.LoadUnsafe(ref W0, row), m0);
                    s0 = Vector.FusedMultiplyAdd(new Vector<double>(a[c]), Vector.LoadUnsafe(ref A0, row), s0);
                }
                m0.StoreUnsafe(ref Y0, o); s0.StoreUnsafe(ref S0, o);
            }
        }
        for (; j < k; j++)
        {
            double m = b[j], s = beta[j];
            for (int c = 0; c < n; c++)
            {
                m = Math.FusedMultiplyAdd(xm[c], w[idx[c] * k + j], m);
                s = Math.FusedMultiplyAdd(a[c], absW[idx[c] * k + j], s);
            }
            ym[j] = m; yr[j] = s;
        }
    }

    /// <summary>The interval [m − r, m + r] with outward-rounded ends.</summary>
    public static Iv ToIv(double m, double r) => new(Math.BitDecrement(m - r), Math.BitIncrement(m + r));

    /// <summary>A midpoint–radius pair enclosing [lo, hi].</summary>
    public static (double M, double R) FromIv(Iv x)
    {
        double m = 0.5 * x.Lo + 0.5 * x.Hi;
        return (m, Math.Max(Math.BitIncrement(Math.Abs(m - x.Lo)), Math.BitIncrement(Math.Abs(x.Hi - m))));
    }

    /// <summary>h += a with the rounding of the add: |fl(p + q) − (p + q)| ≤ u·|fl(p + q)| (no error on underflow).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loops: optimised from the first call
    public static void AddInPlace(Span<double> hm, Span<double> hr, ReadOnlySpan<double> am, ReadOnlySpan<double> ar)
    {
        for (int i = 0; i < hm.Length; i++)
        {
            double m = hm[i] + am[i];
            hr[i] = Math.BitIncrement(Math.BitIncrement(hr[i] + ar[i]) + Math.BitIncrement(U * Math.Abs(m)));
            hm[i] = m;
        }
    }

    /// <summary>ReLU on [m − r, m + r]: identity, zero, or the enclosure of [0, m + r].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loops: optimised from the first call
    public static void Relu(Span<double> m, Span<double> r)
    {
        for (int i = 0; i < m.Length; i++)
        {
            var x = ToIv(m[i], r[i]);
            if (x.Lo >= 0) continue;
            if (x.Hi <= 0) { m[i] = 0; r[i] = 0; continue; }
            (m[i], r[i]) = FromIv(new Iv(0, x.Hi));
        }
    }
}

/// <summary>A weight matrix W [n, k] (row-major, exact float64) and bias b [k] prepared for R2: y = x·W + b for every x in
/// [m − r, m + r] lies in [ŷ − ρ, ŷ + ρ].</summary>
public sealed class PointMatrix
{
    public int In { get; }
    public int Out { get; }
    readonly double[] _w, _absW, _b, _beta;
    readonly MidRad.Constants _k;

    public PointMatrix(int n, int k, Func<int, int, double> w, Func<int, double>? b)
    {
        In = n; Out = k;
        _w = new double[n * k]; _absW = new double[n * k]; _b = new double[k]; _beta = new double[k];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < k; j++) { _w[i * k + j] = w(i, j); _absW[i * k + j] = Math.Abs(_w[i * k + j]); }
        _k = MidRad.Constants.For(n);
        for (int j = 0; j < k; j++) { _b[j] = b?.Invoke(j) ?? 0; _beta[j] = Math.BitIncrement(_k.C * Math.Abs(_b[j])); }
    }

    /// <summary>ŷ = fl(m·W + b) into <paramref name="ym"/>, ρ into <paramref name="yr"/>. R2's sums are taken by
    /// <see cref="MidRad.Product"/>: a register-blocked FMA kernel (R2 holds for any order and for FMA); an exactly zero
    /// input (0 ± 0) is an exact zero term and is left out.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loops: optimised from the first call
    public void Apply(ReadOnlySpan<double> m, ReadOnlySpan<double> r, Span<double> ym, Span<double> yr)
    {
        if (m.Length < In || r.Length < In || ym.Length < Out || yr.Length < Out) throw new ArgumentException("PointMatrix.Apply: a vector is shorter than the matrix");
        Span<int> idx = In <= 1024 ? stackalloc int[In] : new int[In];
        Span<double> xm = In <= 1024 ? stackalloc double[In] : new double[In];
        Span<double> a = In <= 1024 ? stackalloc double[In] : new double[In];
        int n = 0;
        for (int i = 0; i < In; i++)
        {
            if (m[i] == 0 && r[i] == 0) continue;                         // an exact zero term
            idx[n] = i; xm[n] = m[i]; a[n] = MidRad.Coefficient(_k.C, m[i], r[i]); n++;
        }
        MidRad.Product(idx[..n], xm[..n], a[..n], _w, _absW, Out, _b, _beta, ym[..Out], yr[..Out]);
        for (int j = 0; j < Out; j++) yr[j] = _k.Radius(ym[j], yr[j]);
    }
}
