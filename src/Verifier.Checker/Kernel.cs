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

    /// <summary>Y = X·W + b for rows of X given as midpoints and radii [rows, n]; W [n, k] exact (its |W| passed in).
    /// Each row is an independent R2 product; rows run on every core (results do not depend on scheduling).</summary>
    public static void Product(double[] xm, double[] xr, int rows, int n, double[] w, double[] absW, int wOff, int k, double[]? b, int bOff,
        double[] ym, double[] yr)
    {
        var g = Gamma(n);
        for (int row = 0; row < rows; row++)
        {
            var m = ym.AsSpan(row * k, k); var s = yr.AsSpan(row * k, k);
            for (int j = 0; j < k; j++) { double bj = b is null ? 0 : b[bOff + j]; m[j] = bj; s[j] = Up(g.C * Math.Abs(bj)); }
            for (int i = 0; i < n; i++)
            {
                double mi = xm[row * n + i];
                double a = Up(Up(g.C * Math.Abs(mi)) + xr[row * n + i]);
                MulAdd(mi, w.AsSpan(wOff + i * k, k), m);
                MulAdd(a, absW.AsSpan(wOff + i * k, k), s);
            }
            for (int j = 0; j < k; j++) s[j] = Rho(g, m[j], s[j]);
        }
    }

    /// <summary>Σ_i xᵢ·yᵢ for two midpoint–radius vectors (attention scores, p·v): (ŝ, ρ).</summary>
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
/// per sequence, weight products by <see cref="Kernel.Product"/>, scores and p·v by <see cref="Kernel.Dot"/>, softmax and
/// cross-entropy by the checker's interval code (<see cref="Forward"/>).</summary>
public sealed class BlockForward
{
    readonly ModelConfig C;
    readonly ModelWeights W;
    readonly Dictionary<string, double[]> _abs = new();
    readonly R _scale;

    public BlockForward(ModelWeights w)
    {
        W = w; C = w.Config;
        foreach (var (name, _) in C.ParameterShapes()) if (name.Contains("W_")) _abs[name] = w[name].Data.Select(Math.Abs).ToArray();
        _scale = R.One / R.Sqrt(R.Of(C.DHead));
    }

    double[] P(string name) => W[name].Data;

    /// <summary>(upper bound on the sequence's CE sum, labelled positions not certified correct).</summary>
    public (double Loss, int Errors) Sequence(Sequence seq)
    {
        int T = seq.Tokens.Length, d = C.DModel, H = C.NHeads, dh = C.DHead;
        var hm = new double[T * d]; var hr = new double[T * d];
        for (int t = 0; t < T; t++)
            for (int i = 0; i < d; i++)
            {
                double m = P("embed.W_E")[seq.Tokens[t] * d + i] + P("pos_embed.W_pos")[t * d + i];
                hm[t * d + i] = m; hr[t * d + i] = Math.BitIncrement(Math.Abs(m) / 9007199254740992.0);
            }
        for (int l = 0; l < C.NLayers; l++)
        {
            string a = $"blocks.{l}.attn.";
            var zm = new double[T * H * dh]; var zr = new double[T * H * dh];   // [t, head, e]
            for (int h = 0; h < H; h++)
            {
                double[] qm = new double[T * dh], qr = new double[T * dh], km = new double[T * dh], kr = new double[T * dh], vm = new double[T * dh], vr = new double[T * dh];
                Kernel.Product(hm, hr, T, d, P(a + "W_Q"), _abs[a + "W_Q"], h * d * dh, dh, P(a + "b_Q"), h * dh, qm, qr);
                Kernel.Product(hm, hr, T, d, P(a + "W_K"), _abs[a + "W_K"], h * d * dh, dh, P(a + "b_K"), h * dh, km, kr);
                Kernel.Product(hm, hr, T, d, P(a + "W_V"), _abs[a + "W_V"], h * d * dh, dh, P(a + "b_V"), h * dh, vm, vr);
                for (int t = 0; t < T; t++)
                {
                    var sigma = new R[t + 1];
                    for (int s = 0; s <= t; s++)
                    {
                        var (m, r) = Kernel.Dot(qm.AsSpan(t * dh, dh), qr.AsSpan(t * dh, dh), km.AsSpan(s * dh, dh), kr.AsSpan(s * dh, dh));
                        sigma[s] = Kernel.Interval(m, r) * _scale;
                    }
                    var p = Forward.Softmax(sigma);
                    double[] pm = new double[t + 1], pr = new double[t + 1], cm = new double[t + 1], cr = new double[t + 1];
                    for (int s = 0; s <= t; s++) (pm[s], pr[s]) = Kernel.MidRad(p[s]);
                    for (int e = 0; e < dh; e++)
                    {
                        for (int s = 0; s <= t; s++) { cm[s] = vm[s * dh + e]; cr[s] = vr[s * dh + e]; }
                        (zm[(t * H + h) * dh + e], zr[(t * H + h) * dh + e]) = Kernel.Dot(pm, pr, cm, cr);
                    }
                }
            }
            var om = new double[T * d]; var or = new double[T * d];
            Kernel.Product(zm, zr, T, H * dh, P(a + "W_O"), _abs[a + "W_O"], 0, d, P(a + "b_O"), 0, om, or);
            Kernel.Add(hm, hr, om, or, T * d);
            if (C.AttnOnly) continue;
            string mlp = $"blocks.{l}.mlp.";
            var um = new double[T * C.DMlp]; var ur = new double[T * C.DMlp];
            Kernel.Product(hm, hr, T, d, P(mlp + "W_in"), _abs[mlp + "W_in"], 0, C.DMlp, P(mlp + "b_in"), 0, um, ur);
            for (int i = 0; i < um.Length; i++) (um[i], ur[i]) = Kernel.MidRad(R.Relu(Kernel.Interval(um[i], ur[i])));
            Kernel.Product(um, ur, T, C.DMlp, P(mlp + "W_out"), _abs[mlp + "W_out"], 0, d, P(mlp + "b_out"), 0, om, or);
            Kernel.Add(hm, hr, om, or, T * d);
        }
        double loss = 0; int errors = 0;
        int V = C.DVocabOut;
        var lm = new double[V]; var lr = new double[V];
        for (int t = 0; t < T; t++)
        {
            int y = seq.Labels[t];
            if (y < 0) continue;
            Kernel.Product(hm[(t * d)..((t + 1) * d)], hr[(t * d)..((t + 1) * d)], 1, d, P("unembed.W_U"), _abs["unembed.W_U"], 0, V, P("unembed.b_U"), 0, lm, lr);
            var z = new R[V];
            for (int i = 0; i < V; i++) z[i] = Kernel.Interval(lm[i], lr[i]);
            loss = U.Add(loss, Forward.Ce(z, y).Hi);
            for (int i = 0; i < V; i++)
                if (i != y && !((z[i] - z[y]).Hi < 0)) { errors++; break; }
        }
        return (loss, errors);
    }
}
