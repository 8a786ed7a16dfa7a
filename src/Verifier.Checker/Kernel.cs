using System.Runtime.CompilerServices;
using System.Numerics;
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

    /// <summary>Y = X·W + b for rows of X given as midpoints and radii [rows, n]; W [n, k] exact (its |W| passed in), or
    /// itself midpoint–radius when <paramref name="wRad"/> is given (then aᵢ′ = |mxᵢ| + rxᵢ multiplies it). Each row is
    /// an independent R2 product; an exactly zero input (0 ± 0) contributes an exact zero term and is skipped.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loops: optimised from the first call
    public static void Product(double[] xm, double[] xr, int rows, int n, double[] w, double[] absW, int wOff, int k, double[]? b, int bOff,
        double[] ym, double[] yr, double[]? wRad = null)
    {
        var g = Gamma(n);
        for (int row = 0; row < rows; row++)
        {
            var m = ym.AsSpan(row * k, k); var s = yr.AsSpan(row * k, k);
            for (int j = 0; j < k; j++) { double bj = b is null ? 0 : b[bOff + j]; m[j] = bj; s[j] = Up(g.C * Math.Abs(bj)); }
            for (int i = 0; i < n; i++)
            {
                double mi = xm[row * n + i], ri = xr[row * n + i];
                if (mi == 0 && ri == 0) continue;
                MulAdd(mi, w.AsSpan(wOff + i * k, k), m);
                MulAdd(Up(Up(g.C * Math.Abs(mi)) + ri), absW.AsSpan(wOff + i * k, k), s);
                if (wRad is not null) MulAdd(Up(Math.Abs(mi) + ri), wRad.AsSpan(wOff + i * k, k), s);
            }
            for (int j = 0; j < k; j++) s[j] = Rho(g, m[j], s[j]);
        }
    }

    /// <summary>Σ_i xᵢ·yᵢ for two midpoint–radius vectors (attention scores, p·v): (ŝ, ρ).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loops: optimised from the first call
    public static (double M, double R) Dot(ReadOnlySpan<double> xm, ReadOnlySpan<double> xr, ReadOnlySpan<double> ym, ReadOnlySpan<double> yr)
    {
        var g = Gamma(xm.Length);
        double m = 0, s = 0;
        for (int i = 0; i < xm.Length; i++)
        {
            m += xm[i] * ym[i];
            s += Up(Up(g.C * Math.Abs(xm[i])) + xr[i]) * Math.Abs(ym[i]) + Up(Math.Abs(xm[i]) + xr[i]) * yr[i];
        }
        return (m, Rho(g, m, s));
    }

    /// <summary>y += a·x with System.Numerics vectors.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loops: optimised from the first call
    static void MulAdd(double a, ReadOnlySpan<double> x, Span<double> y)
    {
        int i = 0, w = Vector<double>.Count;
        var va = new Vector<double>(a);
        for (; i + w <= y.Length; i += w) (new Vector<double>(y[i..]) + va * new Vector<double>(x[i..])).CopyTo(y[i..]);
        for (; i < y.Length; i++) y[i] += a * x[i];
    }

    /// <summary>[m − r, m + r] outward.</summary>
    public static R Interval(double m, double r) => new(Math.BitDecrement(m - r), Up(m + r));

    /// <summary>A midpoint and radius whose interval holds [x.Lo, x.Hi].</summary>
    public static (double M, double R) MidRad(R x)
    {
        double m = x.Lo / 2 + x.Hi / 2;
        return (m, Math.Max(Up(Math.Abs(m - x.Lo)), Up(Math.Abs(x.Hi - m))));
    }

    /// <summary>h ← h + a: the float64 sum is within u·|fl(h + a)| of the exact one (exact when it underflows).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loops: optimised from the first call
    public static void Add(double[] hm, double[] hr, double[] am, double[] ar, int count)
    {
        for (int i = 0; i < count; i++)
        {
            double m = hm[i] + am[i];
            hr[i] = Up(Up(hr[i] + ar[i]) + Up(Unit * Math.Abs(m)));
            hm[i] = m;
        }
    }
}

/// <summary>Brute force over a block of sequences in the checker's kernel (lemma BFB): the forward pass of BOUNDS.md §1
/// per sequence, weight products by <see cref="Kernel.Product"/>, scores by <see cref="Kernel.Dot"/>, softmax and
/// cross-entropy by the checker's interval code (<see cref="Forward"/>).</summary>
public sealed class BlockForward
{
    readonly ModelConfig C;
    readonly R _scale;
    readonly double[] _we, _wp, _wu, _bu, _absWu;

    /// <summary>One layer's weights and their absolute values. WQKV [d_model, 3·heads·d_head] holds W_Q, W_K, W_V of every
    /// head side by side (column (which·heads + head)·d_head + e), so q, k, v of a position are one product.</summary>
    sealed record Layer(double[] WQKV, double[] BQKV, double[] AQKV, double[] WO, double[] BO, double[] AO,
        double[]? WIn, double[]? BIn, double[]? AIn, double[]? WOut, double[]? BOut, double[]? AOut);
    readonly Layer[] _layers;

    public BlockForward(ModelWeights w)
    {
        C = w.Config;
        double[] P(string name) => w[name].Data;
        double[] A(string name) => w[name].Data.Select(Math.Abs).ToArray();
        _we = P("embed.W_E"); _wp = P("pos_embed.W_pos"); _wu = P("unembed.W_U"); _bu = P("unembed.b_U"); _absWu = A("unembed.W_U");
        _layers = Enumerable.Range(0, C.NLayers).Select(l =>
        {
            string a = $"blocks.{l}.attn.", m = $"blocks.{l}.mlp.";
            bool mlp = !C.AttnOnly;
            int d = C.DModel, H = C.NHeads, dh = C.DHead, k = 3 * H * dh;
            double[][] W = [P(a + "W_Q"), P(a + "W_K"), P(a + "W_V")], B = [P(a + "b_Q"), P(a + "b_K"), P(a + "b_V")];
            var wqkv = new double[d * k]; var bqkv = new double[k];
            for (int which = 0; which < 3; which++)
                for (int h = 0; h < H; h++)
                    for (int e = 0; e < dh; e++)
                    {
                        int col = (which * H + h) * dh + e;
                        bqkv[col] = B[which][h * dh + e];
                        for (int i = 0; i < d; i++) wqkv[i * k + col] = W[which][h * d * dh + i * dh + e];
                    }
            return new Layer(wqkv, bqkv, wqkv.Select(Math.Abs).ToArray(), P(a + "W_O"), P(a + "b_O"), A(a + "W_O"),
                mlp ? P(m + "W_in") : null, mlp ? P(m + "b_in") : null, mlp ? A(m + "W_in") : null,
                mlp ? P(m + "W_out") : null, mlp ? P(m + "b_out") : null, mlp ? A(m + "W_out") : null);
        }).ToArray();
        _scale = R.One / R.Sqrt(R.Of(C.DHead));
    }

    /// <summary>(upper bound on the sequence's CE sum, labelled positions not certified correct).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]   // hot loops: optimised from the first call
    public (double Loss, int Errors) Sequence(Sequence seq)
    {
        int T = seq.Tokens.Length, d = C.DModel, H = C.NHeads, dh = C.DHead;
        var hm = new double[T * d]; var hr = new double[T * d];
        for (int t = 0; t < T; t++)
            for (int i = 0; i < d; i++)
            {
                double m = _we[seq.Tokens[t] * d + i] + _wp[t * d + i];
                hm[t * d + i] = m; hr[t * d + i] = Math.BitIncrement(Math.Abs(m) / 9007199254740992.0);
            }
        int k3 = 3 * H * dh;
        double[] qkvm = new double[T * k3], qkvr = new double[T * k3];
        double[] vm = new double[T * dh], vr = new double[T * dh], va = new double[T * dh];
        double[] pm = new double[T], pr = new double[T], one = new double[dh], oneR = new double[dh];
        double[] om = new double[T * d], or = new double[T * d];
        foreach (var L in _layers)
        {
            var zm = new double[T * H * dh]; var zr = new double[T * H * dh];   // [t, head, e]
            Kernel.Product(hm, hr, T, d, L.WQKV, L.AQKV, 0, k3, L.BQKV, 0, qkvm, qkvr);
            for (int h = 0; h < H; h++)
            {
                int q = h * dh, kk = (H + h) * dh, v = (2 * H + h) * dh;
                for (int t = 0; t < T; t++)
                    for (int e = 0; e < dh; e++)
                    {
                        vm[t * dh + e] = qkvm[t * k3 + v + e]; vr[t * dh + e] = qkvr[t * k3 + v + e]; va[t * dh + e] = Math.Abs(vm[t * dh + e]);
                    }
                for (int t = 0; t < T; t++)
                {
                    var sigma = new R[t + 1];
                    for (int s = 0; s <= t; s++)
                    {
                        var (m, r) = Kernel.Dot(qkvm.AsSpan(t * k3 + q, dh), qkvr.AsSpan(t * k3 + q, dh), qkvm.AsSpan(s * k3 + kk, dh), qkvr.AsSpan(s * k3 + kk, dh));
                        sigma[s] = Kernel.Interval(m, r) * _scale;
                    }
                    var p = Forward.Softmax(sigma);
                    for (int s = 0; s <= t; s++) (pm[s], pr[s]) = Kernel.MidRad(p[s]);
                    // z_t = p · V[0..t]: an R2 product whose "weights" v are midpoint–radius too.
                    Kernel.Product(pm, pr, 1, t + 1, vm, va, 0, dh, null, 0, one, oneR, vr);
                    one.CopyTo(zm, (t * H + h) * dh); oneR.CopyTo(zr, (t * H + h) * dh);
                }
            }
            Kernel.Product(zm, zr, T, H * dh, L.WO, L.AO, 0, d, L.BO, 0, om, or);
            Kernel.Add(hm, hr, om, or, T * d);
            if (L.WIn is null) continue;
            var um = new double[T * C.DMlp]; var ur = new double[T * C.DMlp];
            Kernel.Product(hm, hr, T, d, L.WIn, L.AIn!, 0, C.DMlp, L.BIn, 0, um, ur);
            for (int i = 0; i < um.Length; i++) (um[i], ur[i]) = Kernel.MidRad(R.Relu(Kernel.Interval(um[i], ur[i])));
            Kernel.Product(um, ur, T, C.DMlp, L.WOut!, L.AOut!, 0, d, L.BOut, 0, om, or);
            Kernel.Add(hm, hr, om, or, T * d);
        }
        double loss = 0; int errors = 0;
        int V = C.DVocabOut;
        var lm = new double[V]; var lr = new double[V];
        for (int t = 0; t < T; t++)
        {
            int y = seq.Labels[t];
            if (y < 0) continue;
            Kernel.Product(hm[(t * d)..((t + 1) * d)], hr[(t * d)..((t + 1) * d)], 1, d, _wu, _absWu, 0, V, _bu, 0, lm, lr);
            var z = new R[V];
            for (int i = 0; i < V; i++) z[i] = Kernel.Interval(lm[i], lr[i]);
            loss = U.Add(loss, Forward.Ce(z, y).Hi);
            for (int i = 0; i < V; i++)
                if (i != y && !((z[i] - z[y]).Hi < 0)) { errors++; break; }
        }
        return (loss, errors);
    }
}
