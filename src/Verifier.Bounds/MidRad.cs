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

    /// <summary>ŷ = fl(m·W + b) into <paramref name="ym"/>, ρ into <paramref name="yr"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loops: optimised from the first call
    public void Apply(ReadOnlySpan<double> m, ReadOnlySpan<double> r, Span<double> ym, Span<double> yr)
    {
        _b.CopyTo(ym); _beta.CopyTo(yr);
        for (int i = 0; i < In; i++)
        {
            if (m[i] == 0 && r[i] == 0) continue;                         // an exact zero term
            MidRad.Axpy(m[i], _w.AsSpan(i * Out, Out), ym);
            MidRad.Axpy(MidRad.Coefficient(_k.C, m[i], r[i]), _absW.AsSpan(i * Out, Out), yr);
        }
        for (int j = 0; j < Out; j++) yr[j] = _k.Radius(ym[j], yr[j]);
    }
}
