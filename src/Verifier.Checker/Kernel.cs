using System.Runtime.CompilerServices;
using System.Numerics;
using System.Runtime.InteropServices;
using Verifier.Core;

namespace Verifier.Checker;

/// <summary>The checker's own midpoint–radius kernel (proofs/R2-midpoint-radius.md), written from the lemma:
///
///   R2. mx, rx, my, ry ∈ Fⁿ, r ≥ 0, b ∈ F; reals x, y with |x − mx| ≤ rx, |y − my| ≤ ry. N = n + 1, c ≥ γ_{2N},
///   η = 2⁻¹⁰⁷⁴. ŝ = Σ mxᵢ·myᵢ + b in float64, any order; Ŝ = Σ aᵢ|myᵢ| + a′ᵢ·ryᵢ + β in float64, any order, with
///   aᵢ ≥ c|mxᵢ| + rxᵢ, a′ᵢ ≥ |mxᵢ| + rxᵢ, β ≥ c|b|. If ŝ, Ŝ are finite: |Σ xᵢyᵢ + b − ŝ| ≤ Ŝ(1 + 2c) + 5Nη.
///
/// A vector is a pair (M, Rad). Every float64 result that must bound a real from above is stepped up one ulp.</summary>
public static class Kernel
{
    const double Unit = 1.0 / 9007199254740992.0;          // u = 2⁻⁵³

    static double Up(double x) => Math.BitIncrement(x);

    /// <summary>c ≥ γ_{2N}, 1 + 2c and 5Nη for sums of n products and a bias.</summary>
    public static (double C, double K, double E) Gamma(int n)
    {
        double twoNu = 2.0 * (n + 1) * Unit;
        if (twoNu > 0.2) throw new CheckFailure("arithmetic", $"R2 needs 2Nu ≤ 1/5 (n = {n})");
        double c = Up(twoNu / Math.BitDecrement(1 - twoNu));
        return (c, Up(1 + 2 * c), 5.0 * (n + 1) * double.Epsilon);
    }

    static double Rho((double C, double K, double E) g, double mid, double sHat)
    {
        if (!double.IsFinite(mid) || !double.IsFinite(sHat)) throw new CheckFailure("arithmetic", "a product is not finite (the weights overflow float64)");
        return Up(Up(sHat * g.K) + g.E);
    }

    /// <summary>Y = X·W + b for rows of X given as midpoints and radii [rows, n]; W [n, k] exact (its |W| passed in: <see cref="Rows"/>), or
    /// itself midpoint–radius when <paramref name="wRad"/> is given (then aᵢ′ = |mxᵢ| + rxᵢ multiplies it). Each row is
    /// an independent R2 product (<see cref="Row"/>).</summary>
    public static void Product(double[] xm, double[] xr, int rows, int n, double[] w, double[] absW, int wOff, int k, double[]? b, int bOff,
        double[] ym, double[] yr, double[]? wRad = null)
    {
        var g = Gamma(n);
        if (wRad is null)
        {
            Rows(g, xm.AsSpan(0, rows * n), xr.AsSpan(0, rows * n), rows, n, w.AsSpan(wOff, n * k), absW.AsSpan(wOff, n * k), k,
                b is null ? default : b.AsSpan(bOff, k), ym.AsSpan(0, rows * k), yr.AsSpan(0, rows * k));
            return;
        }
        for (int row = 0; row < rows; row++)
            Row(g, xm.AsSpan(row * n, n), xr.AsSpan(row * n, n), w.AsSpan(wOff, n * k), absW.AsSpan(wOff, n * k),
                wRad.AsSpan(wOff, n * k), k, b is null ? default : b.AsSpan(bOff, k), ym.AsSpan(row * k, k), yr.AsSpan(row * k, k));
    }

    /// <summary>One R2 product y = x·W + b (x midpoint–radius [n], W [n, k] row-major with |W|, and its radii when
    /// <paramref name="wRad"/> is not empty; b empty for none) with <paramref name="g"/> = Gamma(n). ŝ and Ŝ are summed
    /// with fused multiply-adds, four vectors of output columns at a time held in registers: R2 allows any order and FMA
    /// (one rounding where a multiply and an add have two). An exactly zero input (0 ± 0) contributes an exact zero term
    /// and is skipped.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loops: optimised from the first call
    public static void Row((double C, double K, double E) g, ReadOnlySpan<double> xm, ReadOnlySpan<double> xr, ReadOnlySpan<double> w,
        ReadOnlySpan<double> absW, ReadOnlySpan<double> wRad, int k, ReadOnlySpan<double> b, Span<double> ym, Span<double> yr)
        => Row(g, xm, xr, w, absW, wRad, k, b, default, ym, yr);

    /// <summary>The same with β = <see cref="Beta"/>(g, b) computed once by the caller (empty: computed here).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loops: optimised from the first call
    public static void Row((double C, double K, double E) g, ReadOnlySpan<double> xm, ReadOnlySpan<double> xr, ReadOnlySpan<double> w,
        ReadOnlySpan<double> absW, ReadOnlySpan<double> wRad, int k, ReadOnlySpan<double> b, ReadOnlySpan<double> beta, Span<double> ym, Span<double> yr)
    {
        int n = xm.Length;
        if (!beta.IsEmpty && (b.IsEmpty || beta.Length != k)) throw new ArgumentException("Kernel.Row: β without b, or of the wrong length");
        if (xr.Length != n || w.Length != n * k || absW.Length != n * k || (!wRad.IsEmpty && wRad.Length != n * k)
            || (!b.IsEmpty && b.Length != k) || ym.Length != k || yr.Length != k)
            throw new ArgumentException("Kernel.Row: the shapes do not match");
        bool rad = !wRad.IsEmpty;
        Span<int> at = n <= 1024 ? stackalloc int[n] : new int[n];          // the rows of W with a non-zero input
        Span<double> xs = n <= 1024 ? stackalloc double[n] : new double[n];  // mxᵢ
        Span<double> a = n <= 1024 ? stackalloc double[n] : new double[n];   // aᵢ ≥ c|mxᵢ| + rxᵢ
        Span<double> a2 = n <= 1024 ? stackalloc double[n] : new double[n];  // a′ᵢ ≥ |mxᵢ| + rxᵢ
        int used = 0;
        for (int i = 0; i < n; i++)
        {
            double mi = xm[i], ri = xr[i];
            if (mi == 0 && ri == 0) continue;
            at[used] = i; xs[used] = mi; a[used] = Up(Up(g.C * Math.Abs(mi)) + ri);
            if (rad) a2[used] = Up(Math.Abs(mi) + ri);
            used++;
        }
        if (!beta.IsEmpty) { b.CopyTo(ym); beta.CopyTo(yr); }
        else for (int j = 0; j < k; j++) { double bj = b.IsEmpty ? 0 : b[j]; ym[j] = bj; yr[j] = Up(g.C * Math.Abs(bj)); }
        // The loads below are unchecked; the shapes were checked above (every at[c] < n, so a row's columns lie in W).
        ref double W0 = ref MemoryMarshal.GetReference(w), A0 = ref MemoryMarshal.GetReference(absW), R0 = ref MemoryMarshal.GetReference(wRad);
        ref double Y0 = ref MemoryMarshal.GetReference(ym), S0 = ref MemoryMarshal.GetReference(yr);
        int col = 0;
        nuint v = (nuint)Vector<double>.Count;
        for (; col + 4 * (int)v <= k; col += 4 * (int)v)
        {
            nuint o0 = (nuint)col;
            var m0 = Vector.LoadUnsafe(ref Y0, o0); var m1 = Vector.LoadUnsafe(ref Y0, o0 + v);
            var m2 = Vector.LoadUnsafe(ref Y0, o0 + 2 * v); var m3 = Vector.LoadUnsafe(ref Y0, o0 + 3 * v);
            var s0 = Vector.LoadUnsafe(ref S0, o0); var s1 = Vector.LoadUnsafe(ref S0, o0 + v);
            var s2 = Vector.LoadUnsafe(ref S0, o0 + 2 * v); var s3 = Vector.LoadUnsafe(ref S0, o0 + 3 * v);
            for (int c = 0; c < used; c++)
            {
                nuint o = (nuint)at[c] * (nuint)k + o0;
                var x = new Vector<double>(xs[c]); var ac = new Vector<double>(a[c]);
                m0 = Vector.FusedMultiplyAdd(x, Vector.LoadUnsafe(ref W0, o), m0);
                m1 = Vector.FusedMultiplyAdd(x, Vector.LoadUnsafe(ref W0, o + v), m1);
                m2 = Vector.FusedMultiplyAdd(x, Vector.LoadUnsafe(ref W0, o + 2 * v), m2);
                m3 = Vector.FusedMultiplyAdd(x, Vector.LoadUnsafe(ref W0, o + 3 * v), m3);
                s0 = Vector.FusedMultiplyAdd(ac, Vector.LoadUnsafe(ref A0, o), s0);
                s1 = Vector.FusedMultiplyAdd(ac, Vector.LoadUnsafe(ref A0, o + v), s1);
                s2 = Vector.FusedMultiplyAdd(ac, Vector.LoadUnsafe(ref A0, o + 2 * v), s2);
                s3 = Vector.FusedMultiplyAdd(ac, Vector.LoadUnsafe(ref A0, o + 3 * v), s3);
                if (!rad) continue;
                var a2c = new Vector<double>(a2[c]);
                s0 = Vector.FusedMultiplyAdd(a2c, Vector.LoadUnsafe(ref R0, o), s0);
                s1 = Vector.FusedMultiplyAdd(a2c, Vector.LoadUnsafe(ref R0, o + v), s1);
                s2 = Vector.FusedMultiplyAdd(a2c, Vector.LoadUnsafe(ref R0, o + 2 * v), s2);
                s3 = Vector.FusedMultiplyAdd(a2c, Vector.LoadUnsafe(ref R0, o + 3 * v), s3);
            }
            m0.StoreUnsafe(ref Y0, o0); m1.StoreUnsafe(ref Y0, o0 + v); m2.StoreUnsafe(ref Y0, o0 + 2 * v); m3.StoreUnsafe(ref Y0, o0 + 3 * v);
            s0.StoreUnsafe(ref S0, o0); s1.StoreUnsafe(ref S0, o0 + v); s2.StoreUnsafe(ref S0, o0 + 2 * v); s3.StoreUnsafe(ref S0, o0 + 3 * v);
        }
        for (; col < k; col++)
        {
            double m = ym[col], sh = yr[col];
            for (int c = 0; c < used; c++)
            {
                int o = at[c] * k + col;
                m = Math.FusedMultiplyAdd(xs[c], w[o], m);
                sh = Math.FusedMultiplyAdd(a[c], absW[o], sh);
                if (rad) sh = Math.FusedMultiplyAdd(a2[c], wRad[o], sh);
            }
            ym[col] = m; yr[col] = sh;
        }
        for (int j = 0; j < k; j++) yr[j] = Rho(g, ym[j], yr[j]);
    }

    /// <summary>β_j = succ(c·|b_j|) ≥ c·|b_j| for every column (R2's bias term).</summary>
    public static double[] Beta((double C, double K, double E) g, double[] b) => b.Select(x => Up(g.C * Math.Abs(x))).ToArray();

    /// <summary>R2 products for <paramref name="rows"/> rows of X ([rows, n], midpoint–radius) with the same exact W [n, k]:
    /// rows two at a time (<see cref="RowPair"/>, each loaded column of W serving both), a last odd row by <see cref="Row"/>.</summary>
    public static void Rows((double C, double K, double E) g, ReadOnlySpan<double> xm, ReadOnlySpan<double> xr, int rows, int n, ReadOnlySpan<double> w,
        ReadOnlySpan<double> absW, int k, ReadOnlySpan<double> b, Span<double> ym, Span<double> yr)
    {
        if (!b.IsEmpty && b.Length != k) throw new ArgumentException("Kernel.Rows: b has the wrong length");
        int row = 0;
        for (; row + 2 <= rows; row += 2)
            RowPair(g, xm.Slice(row * n, 2 * n), xr.Slice(row * n, 2 * n), n, w, absW, k, b, ym.Slice(row * k, 2 * k), yr.Slice(row * k, 2 * k));
        if (row < rows) Row(g, xm.Slice(row * n, n), xr.Slice(row * n, n), w, absW, default, k, b, ym.Slice(row * k, k), yr.Slice(row * k, k));
    }

    /// <summary>Two independent R2 products x₀·W + b and x₁·W + b (x [2, n], y [2, k]) in one pass over W: for each block of
    /// two vectors of columns, four accumulators per row (ŝ and Ŝ of each row), fused multiply-adds. Each row's sums
    /// are plain R2 sums in one order (Row's statement); an input that is 0 ± 0 gets aᵢ = succ(0) ≥ c·0 + 0, still an
    /// admissible coefficient, and its midpoint term is an exact zero.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loops: optimised from the first call
    static void RowPair((double C, double K, double E) g, ReadOnlySpan<double> xm, ReadOnlySpan<double> xr, int n, ReadOnlySpan<double> w,
        ReadOnlySpan<double> absW, int k, ReadOnlySpan<double> b, Span<double> ym, Span<double> yr)
    {
        if (xm.Length != 2 * n || xr.Length != 2 * n || w.Length != n * k || absW.Length != n * k || (!b.IsEmpty && b.Length != k)
            || ym.Length != 2 * k || yr.Length != 2 * k)
            throw new ArgumentException("Kernel.RowPair: the shapes do not match");
        Span<double> a = n <= 512 ? stackalloc double[2 * n] : new double[2 * n];   // aᵢ ≥ c|mxᵢ| + rxᵢ of both rows
        for (int i = 0; i < 2 * n; i++) a[i] = Up(Up(g.C * Math.Abs(xm[i])) + xr[i]);
        for (int j = 0; j < k; j++)
        {
            double bj = b.IsEmpty ? 0 : b[j], beta = Up(g.C * Math.Abs(bj));
            ym[j] = bj; ym[k + j] = bj; yr[j] = beta; yr[k + j] = beta;
        }
        // Unchecked loads; the shapes were checked above.
        ref double W0 = ref MemoryMarshal.GetReference(w), A0 = ref MemoryMarshal.GetReference(absW);
        ref double Y0 = ref MemoryMarshal.GetReference(ym), S0 = ref MemoryMarshal.GetReference(yr);
        nuint v = (nuint)Vector<double>.Count, nk = (nuint)k;
        int col = 0;
        for (; col + 2 * (int)v <= k; col += 2 * (int)v)
        {
            nuint o0 = (nuint)col;
            var p0 = Vector.LoadUnsafe(ref Y0, o0); var p1 = Vector.LoadUnsafe(ref Y0, o0 + v);
            var q0 = Vector.LoadUnsafe(ref Y0, nk + o0); var q1 = Vector.LoadUnsafe(ref Y0, nk + o0 + v);
            var s0 = Vector.LoadUnsafe(ref S0, o0); var s1 = Vector.LoadUnsafe(ref S0, o0 + v);
            var t0 = Vector.LoadUnsafe(ref S0, nk + o0); var t1 = Vector.LoadUnsafe(ref S0, nk + o0 + v);
            for (int i = 0; i < n; i++)
            {
                nuint o = (nuint)i * nk + o0;
                var w0 = Vector.LoadUnsafe(ref W0, o); var w1 = Vector.LoadUnsafe(ref W0, o + v);
                var x = new Vector<double>(xm[i]); var y = new Vector<double>(xm[n + i]);
                p0 = Vector.FusedMultiplyAdd(x, w0, p0); p1 = Vector.FusedMultiplyAdd(x, w1, p1);
                q0 = Vector.FusedMultiplyAdd(y, w0, q0); q1 = Vector.FusedMultiplyAdd(y, w1, q1);
                var a0 = Vector.LoadUnsafe(ref A0, o); var a1 = Vector.LoadUnsafe(ref A0, o + v);
                var ax = new Vector<double>(a[i]); var ay = new Vector<double>(a[n + i]);
                s0 = Vector.FusedMultiplyAdd(ax, a0, s0); s1 = Vector.FusedMultiplyAdd(ax, a1, s1);
                t0 = Vector.FusedMultiplyAdd(ay, a0, t0); t1 = Vector.FusedMultiplyAdd(ay, a1, t1);
            }
            p0.StoreUnsafe(ref Y0, o0); p1.StoreUnsafe(ref Y0, o0 + v); q0.StoreUnsafe(ref Y0, nk + o0); q1.StoreUnsafe(ref Y0, nk + o0 + v);
            s0.StoreUnsafe(ref S0, o0); s1.StoreUnsafe(ref S0, o0 + v); t0.StoreUnsafe(ref S0, nk + o0); t1.StoreUnsafe(ref S0, nk + o0 + v);
        }
        for (; col < k; col++)
            for (int r = 0; r < 2; r++)
            {
                double m = ym[r * k + col], sh = yr[r * k + col];
                for (int i = 0; i < n; i++)
                {
                    m = Math.FusedMultiplyAdd(xm[r * n + i], w[i * k + col], m);
                    sh = Math.FusedMultiplyAdd(a[r * n + i], absW[i * k + col], sh);
                }
                ym[r * k + col] = m; yr[r * k + col] = sh;
            }
        for (int j = 0; j < 2 * k; j++) yr[j] = Rho(g, ym[j], yr[j]);
    }

    /// <summary>Σ_i xᵢ·yᵢ for two midpoint–radius vectors (attention scores, p·v): (ŝ, ρ).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loops: optimised from the first call
    public static (double M, double R) Dot(ReadOnlySpan<double> xm, ReadOnlySpan<double> xr, ReadOnlySpan<double> ym, ReadOnlySpan<double> yr) =>
        Dot(Gamma(xm.Length), xm, xr, ym, yr);

    /// <summary>The same with <paramref name="g"/> = Gamma(n) computed once by the caller.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loops: optimised from the first call
    public static (double M, double R) Dot((double C, double K, double E) g, ReadOnlySpan<double> xm, ReadOnlySpan<double> xr, ReadOnlySpan<double> ym, ReadOnlySpan<double> yr)
    {
        if (xr.Length != xm.Length || ym.Length != xm.Length || yr.Length != xm.Length) throw new ArgumentException("Kernel.Dot: the lengths differ");
        double m = 0, s = 0;
        for (int i = 0; i < xm.Length; i++)
        {
            m += xm[i] * ym[i];
            s += Up(Up(g.C * Math.Abs(xm[i])) + xr[i]) * Math.Abs(ym[i]) + Up(Math.Abs(xm[i]) + xr[i]) * yr[i];
        }
        return (m, Rho(g, m, s));
    }

    /// <summary>[m − r, m + r] outward.</summary>
    public static R Interval(double m, double r) => new(Math.BitDecrement(m - r), Up(m + r));

    /// <summary>A midpoint and radius whose interval holds [x.Lo, x.Hi].</summary>
    public static (double M, double R) MidRad(R x)
    {
        double m = x.Lo / 2 + x.Hi / 2;
        return (m, Math.Max(Up(Math.Abs(m - x.Lo)), Up(Math.Abs(x.Hi - m))));
    }

    /// <summary>h ← h + a for spans of equal length: the float64 sum is within u·|fl(h + a)| of the exact one (exact when it
    /// underflows).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loops: optimised from the first call
    public static void Add(Span<double> hm, Span<double> hr, ReadOnlySpan<double> am, ReadOnlySpan<double> ar)
    {
        for (int i = 0; i < hm.Length; i++)
        {
            double m = hm[i] + am[i];
            hr[i] = Up(Up(hr[i] + ar[i]) + Up(Unit * Math.Abs(m)));
            hm[i] = m;
        }
    }
}

/// <summary>Brute force over a block of sequences in the checker's kernel (lemma BFB): the forward pass of BOUNDS.md §1
/// per sequence, weight products by <see cref="Kernel.Row"/>, scores by <see cref="Kernel.Dot"/>, softmax and
/// cross-entropy in the checker's interval arithmetic (<see cref="R"/>, the formulas of <see cref="Forward"/>). The last
/// layer is evaluated only where the loss reads it: k and v at every position (attention at t reads every s ≤ t), q,
/// attention, W_O, the MLP and the unembedding at the labelled positions only (proofs/BF-brute-force.md, "Only labelled
/// positions in the last layer").</summary>
public sealed class BlockForward
{
    readonly ModelConfig C;
    readonly R _scale;
    readonly double[] _we, _wp, _wu, _bu, _absWu;

    /// <summary>Test only: evaluate the last layer at every position (the same bound; see the class summary).</summary>
    internal bool AllPositions { get; init; }

    /// <summary>One layer's weights and their absolute values. WQ [d_model, heads·d_head] (column head·d_head + e) and
    /// WKV [d_model, 2·heads·d_head] (W_K of every head, then W_V: column (which·heads + head)·d_head + e).</summary>
    sealed record Layer(double[] WQ, double[] BQ, double[] AQ, double[] WKV, double[] BKV, double[] AKV, double[] WO, double[] BO, double[] AO,
        double[]? WIn, double[]? BIn, double[]? AIn, double[]? WOut, double[]? BOut, double[]? AOut);
    readonly Layer[] _layers;
    /// <summary>Gamma(n) for the sums the forward pass takes: n = d_model, heads·d_head, d_mlp, d_head, and 1..n_ctx (p·V).</summary>
    readonly (double C, double K, double E) _gd, _ghd, _gmlp, _gdh;
    readonly (double C, double K, double E)[] _gt;
    /// <summary>R2's bias terms β = succ(c·|b|) of each product, computed once (<see cref="Kernel.Beta"/>).</summary>
    readonly double[][] _betaQ, _betaO, _betaIn, _betaOut;
    readonly double[] _betaU;

    public BlockForward(ModelWeights w)
    {
        C = w.Config;
        _gd = Kernel.Gamma(C.DModel); _ghd = Kernel.Gamma(C.NHeads * C.DHead); _gmlp = Kernel.Gamma(Math.Max(C.DMlp, 1)); _gdh = Kernel.Gamma(C.DHead);
        _gt = Enumerable.Range(0, C.NCtx + 1).Select(Kernel.Gamma).ToArray();
        double[] P(string name) => w[name].Data;
        double[] A(string name) => w[name].Data.Select(Math.Abs).ToArray();
        _we = P("embed.W_E"); _wp = P("pos_embed.W_pos"); _wu = P("unembed.W_U"); _bu = P("unembed.b_U"); _absWu = A("unembed.W_U");
        _layers = Enumerable.Range(0, C.NLayers).Select(l =>
        {
            string a = $"blocks.{l}.attn.", m = $"blocks.{l}.mlp.";
            bool mlp = !C.AttnOnly;
            int d = C.DModel, H = C.NHeads, dh = C.DHead;
            // W_Q, W_K, W_V are [heads, d_model, d_head]; side by side per which, head.
            (double[] W, double[] B) Pack(params string[] names)
            {
                int k = names.Length * H * dh;
                var wp = new double[d * k]; var bp = new double[k];
                for (int which = 0; which < names.Length; which++)
                {
                    double[] W = P(a + "W_" + names[which]), B = P(a + "b_" + names[which]);
                    for (int h = 0; h < H; h++)
                        for (int e = 0; e < dh; e++)
                        {
                            int col = (which * H + h) * dh + e;
                            bp[col] = B[h * dh + e];
                            for (int i = 0; i < d; i++) wp[i * k + col] = W[h * d * dh + i * dh + e];
                        }
                }
                return (wp, bp);
            }
            var (wq, bq) = Pack("Q"); var (wkv, bkv) = Pack("K", "V");
            return new Layer(wq, bq, wq.Select(Math.Abs).ToArray(), wkv, bkv, wkv.Select(Math.Abs).ToArray(), P(a + "W_O"), P(a + "b_O"), A(a + "W_O"),
                mlp ? P(m + "W_in") : null, mlp ? P(m + "b_in") : null, mlp ? A(m + "W_in") : null,
                mlp ? P(m + "W_out") : null, mlp ? P(m + "b_out") : null, mlp ? A(m + "W_out") : null);
        }).ToArray();
        _scale = R.One / R.Sqrt(R.Of(C.DHead));
        _betaQ = _layers.Select(L => Kernel.Beta(_gd, L.BQ)).ToArray();
        _betaO = _layers.Select(L => Kernel.Beta(_ghd, L.BO)).ToArray();
        _betaIn = _layers.Select(L => L.BIn is null ? [] : Kernel.Beta(_gd, L.BIn)).ToArray();
        _betaOut = _layers.Select(L => L.BOut is null ? [] : Kernel.Beta(_gmlp, L.BOut)).ToArray();
        _betaU = Kernel.Beta(_gd, _bu);
    }

    /// <summary>One worker's buffers, sized for n_ctx: a sequence allocates nothing.</summary>
    public sealed class Work(ModelConfig c)
    {
        internal readonly double[] Hm = new double[c.NCtx * c.DModel], Hr = new double[c.NCtx * c.DModel];              // [t, d_model]
        internal readonly double[] Qm = new double[c.NCtx * c.NHeads * c.DHead], Qr = new double[c.NCtx * c.NHeads * c.DHead];
        internal readonly double[] KVm = new double[c.NCtx * 2 * c.NHeads * c.DHead], KVr = new double[c.NCtx * 2 * c.NHeads * c.DHead];
        internal readonly double[] Vm = new double[c.NCtx * c.DHead], Vr = new double[c.NCtx * c.DHead], Va = new double[c.NCtx * c.DHead];   // one head's v [s, e]
        internal readonly double[] Pm = new double[c.NCtx], Pr = new double[c.NCtx];
        internal readonly double[] Zm = new double[c.NHeads * c.DHead], Zr = new double[c.NHeads * c.DHead];
        internal readonly double[] Om = new double[c.DModel], Or = new double[c.DModel];
        internal readonly double[] Um = new double[Math.Max(c.DMlp, 1)], Ur = new double[Math.Max(c.DMlp, 1)];
        internal readonly double[] Lm = new double[c.DVocabOut], Lr = new double[c.DVocabOut];
        internal readonly R[] Sigma = new R[c.NCtx];
        internal readonly int[] Rows = new int[c.NCtx];
    }

    /// <summary>(upper bound on the sequence's CE sum, labelled positions not certified correct).</summary>
    public (double Loss, int Errors) Sequence(Sequence seq) => Sequence(seq, new Work(C));

    /// <summary>The same with the worker's buffers.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loops: optimised from the first call
    public (double Loss, int Errors) Sequence(Sequence seq, Work w)
    {
        int T = seq.Tokens.Length, d = C.DModel, H = C.NHeads, dh = C.DHead, hd = H * dh, kv = 2 * hd;
        if (T > C.NCtx) throw new CheckFailure("data", $"a sequence of {T} tokens is longer than n_ctx = {C.NCtx}");
        for (int t = 0; t < T; t++)
            for (int i = 0; i < d; i++)
            {
                double m = _we[seq.Tokens[t] * d + i] + _wp[t * d + i];
                w.Hm[t * d + i] = m; w.Hr[t * d + i] = Math.BitIncrement(Math.Abs(m) / 9007199254740992.0);
            }
        int labelled = 0;
        for (int t = 0; t < T; t++) if (AllPositions || seq.Labels[t] >= 0) w.Rows[labelled++] = t;
        var gd = _gd; var ghd = _ghd;
        for (int l = 0; l < _layers.Length; l++)
        {
            var L = _layers[l];
            bool last = l == _layers.Length - 1;
            int rows = last ? labelled : T;
            Kernel.Rows(gd, w.Hm.AsSpan(0, T * d), w.Hr.AsSpan(0, T * d), T, d, L.WKV, L.AKV, kv, L.BKV, w.KVm.AsSpan(0, T * kv), w.KVr.AsSpan(0, T * kv));
            for (int i = 0; i < rows; i++)
            {
                int t = last ? w.Rows[i] : i;
                Kernel.Row(gd, w.Hm.AsSpan(t * d, d), w.Hr.AsSpan(t * d, d), L.WQ, L.AQ, default, hd, L.BQ, _betaQ[l], w.Qm.AsSpan(t * hd, hd), w.Qr.AsSpan(t * hd, hd));
            }
            // Every row's attention reads q_t and the k, v computed above (before any update), its MLP only h_t: each row's
            // residual stream is updated in place.
            for (int i = 0; i < rows; i++)
            {
                int t = last ? w.Rows[i] : i;
                for (int h = 0; h < H; h++) Head(w, h, t);
                Kernel.Row(ghd, w.Zm, w.Zr, L.WO, L.AO, default, d, L.BO, _betaO[l], w.Om, w.Or);
                var hm = w.Hm.AsSpan(t * d, d); var hr = w.Hr.AsSpan(t * d, d);
                Kernel.Add(hm, hr, w.Om, w.Or);
                if (L.WIn is null) continue;
                Kernel.Row(gd, hm, hr, L.WIn, L.AIn!, default, C.DMlp, L.BIn, _betaIn[l], w.Um, w.Ur);
                // ReLU on [m − r, m + r]: unchanged where the interval is ≥ 0 (ReLU is the identity there), exactly 0 where it
                // is ≤ 0, else R.Relu of the outward interval, back to midpoint–radius.
                for (int j = 0; j < C.DMlp; j++)
                {
                    var x = Kernel.Interval(w.Um[j], w.Ur[j]);
                    if (x.Lo >= 0) continue;
                    (w.Um[j], w.Ur[j]) = x.Hi <= 0 ? (0, 0) : Kernel.MidRad(R.Relu(x));
                }
                Kernel.Row(_gmlp, w.Um, w.Ur, L.WOut!, L.AOut!, default, d, L.BOut, _betaOut[l], w.Om, w.Or);
                Kernel.Add(hm, hr, w.Om, w.Or);
            }
        }
        double loss = 0; int errors = 0;
        for (int t = 0; t < T; t++)
        {
            int y = seq.Labels[t];
            if (y < 0) continue;
            Kernel.Row(gd, w.Hm.AsSpan(t * d, d), w.Hr.AsSpan(t * d, d), _wu, _absWu, default, C.DVocabOut, _bu, _betaU, w.Lm, w.Lr);
            var (ce, certain) = CeUpper(w.Lm, w.Lr, y);
            loss = U.Add(loss, ce);
            if (!certain) errors++;
        }
        return (loss, errors);
    }

    /// <summary>Head h at row t: σ_s = (q_t·k_s)·(1/√d_head) for s ≤ t (R2 dot, then R1), p = softmax(σ) (R1, as
    /// <see cref="Forward.Softmax"/>), z = p·V[0..t] (R2 with midpoint–radius weights v), into Zm/Zr at h·d_head.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loops: optimised from the first call
    void Head(Work w, int h, int t)
    {
        int H = C.NHeads, dh = C.DHead, hd = H * dh, kv = 2 * hd;
        var q = w.Qm.AsSpan(t * hd + h * dh, dh); var qr = w.Qr.AsSpan(t * hd + h * dh, dh);
        for (int s = 0; s <= t; s++)
        {
            var (m, r) = Kernel.Dot(_gdh, q, qr, w.KVm.AsSpan(s * kv + h * dh, dh), w.KVr.AsSpan(s * kv + h * dh, dh));
            w.Sigma[s] = Kernel.Interval(m, r) * _scale;
        }
        for (int s = 0; s <= t; s++)
        {
            var z = R.Zero;
            for (int u = 0; u <= t; u++) z = z + (u == s ? R.One : R.Exp(w.Sigma[u] - w.Sigma[s]));
            var p = R.One / z;
            (w.Pm[s], w.Pr[s]) = Kernel.MidRad(new R(Math.Max(0, p.Lo), Math.Min(1, p.Hi)));
            for (int e = 0; e < dh; e++)
            {
                double vm = w.KVm[s * kv + hd + h * dh + e];
                w.Vm[s * dh + e] = vm; w.Vr[s * dh + e] = w.KVr[s * kv + hd + h * dh + e]; w.Va[s * dh + e] = Math.Abs(vm);
            }
        }
        int n = t + 1;
        Kernel.Row(_gt[n], w.Pm.AsSpan(0, n), w.Pr.AsSpan(0, n), w.Vm.AsSpan(0, n * dh), w.Va.AsSpan(0, n * dh), w.Vr.AsSpan(0, n * dh), dh,
            default, w.Zm.AsSpan(h * dh, dh), w.Zr.AsSpan(h * dh, dh));
    }

    /// <summary>The upper end of <see cref="Forward.Ce"/> on the logits [m_i − r_i, m_i + r_i] (outward), without interval
    /// arrays: δ_i = succ(hi_i − lo_y) is the upper end of z_i − z_y (R1), CE ≤ M + log(e^{−M} + Σ_{i≠y} e^{δ_i − M}) with
    /// M = max(0, max δ_i), exp and log 4 ulps up, every add and subtraction one ulp up; and whether every δ_i &lt; 0
    /// (ACC: y is then the arg-max).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loops: optimised from the first call
    internal static (double Ce, bool Certain) CeUpper(ReadOnlySpan<double> lm, ReadOnlySpan<double> lr, int y)
    {
        double loY = Math.BitDecrement(lm[y] - lr[y]), M = 0, top = double.NegativeInfinity;
        for (int i = 0; i < lm.Length; i++)
        {
            if (i == y) continue;
            double di = Math.BitIncrement(Math.BitIncrement(lm[i] + lr[i]) - loY);
            if (!double.IsFinite(di)) throw new CheckFailure("arithmetic", "a logit difference is not finite");
            M = Math.Max(M, di); top = Math.Max(top, di);
        }
        double sum = U.Exp(-M);
        for (int i = 0; i < lm.Length; i++)
            if (i != y) sum = U.Add(sum, U.Exp(Math.BitIncrement(Math.BitIncrement(Math.BitIncrement(lm[i] + lr[i]) - loY) - M)));
        double log = Math.Log(sum);
        for (int k = 0; k < 4; k++) log = Math.BitIncrement(log);
        return (Math.BitIncrement(M + log), top < 0);
    }
}
