using Verifier.Core;

namespace Verifier.Checker;

/// <summary>The checker's own reading of a normalisation through the crosscoder's decoder (proofs/T3-normalised-tables.md):
/// centred rows P W_dec^s[i], P b_dec^s, the product inputs (P·) ⊙ w, μ = max |w_i|; per token ι = 1/σ(a'_t), ρ ≤ ‖Pa'_t‖
/// and NL's ε̃. Written from the lemma, not from the bound program.</summary>
sealed class NormTab
{
    public required R[][] P, In;
    public required R[] P0, In0;
    public required double[]? B;
    public required double Mu, Eps;

    static double Dn(double x) => Math.BitDecrement(x);

    /// <summary>Null for no normalisation; otherwise the tables of kind <paramref name="kind"/> with the tensors of
    /// <paramref name="prefix"/> (w for LN and RMS, b for LN).</summary>
    public static NormTab? Of(ModelWeights w, string prefix, NormKind kind, R[][] rows, R[] bias)
    {
        if (kind == NormKind.None) return null;
        var wt = kind is NormKind.LN or NormKind.RMS ? w[prefix + "w"].Data : null;
        var b = kind == NormKind.LN ? w[prefix + "b"].Data : null;
        bool centre = kind is NormKind.LN or NormKind.LNPre;
        R[] Centre(R[] r)
        {
            if (!centre) return r;
            var sum = R.Zero;
            for (int j = 0; j < r.Length; j++) sum = sum + r[j];
            var mean = sum / R.Of(r.Length);
            return r.Select(x => x - mean).ToArray();
        }
        R[] Weigh(R[] r) => wt is null ? r : r.Select((x, j) => wt[j] * x).ToArray();
        var p = rows.Select(Centre).ToArray(); var p0 = Centre(bias);
        double mu = 1;
        if (wt is not null) { mu = 0; foreach (var x in wt) mu = Math.Max(mu, Math.Abs(x)); }
        return new NormTab { P = p, P0 = p0, In = p.Select(Weigh).ToArray(), In0 = Weigh(p0), B = b, Mu = mu, Eps = w.Config.Eps };
    }

    /// <summary>b·W + β over columns [off, off + cols) (β alone without b).</summary>
    public R[] BiasPart(double[] wt, int off, int rows, int cols, double[] beta, int boff) =>
        B is null ? Enumerable.Range(0, cols).Select(j => R.Of(beta[boff + j])).ToArray()
                  : Forward.Lin(B.Select(R.Of).ToArray(), wt, off, rows, cols, beta, boff);

    static R Sq(R a)
    {
        double l = a.Lo * a.Lo, h = a.Hi * a.Hi;
        double lo = a.Lo <= 0 && a.Hi >= 0 ? 0 : Dn(Math.Min(l, h));
        return new R(lo, Math.BitIncrement(Math.Max(l, h)));
    }

    /// <summary>ι_t and ρ_t for one token's features.</summary>
    public (R Iota, double Rho) Scale((int Index, double Value)[] f)
    {
        var x = TranscriptChecker.Combine(f, P, P0);
        var sq = R.Zero;
        foreach (var v in x) sq = sq + Sq(v);
        if (!double.IsFinite(sq.Hi)) throw new CheckFailure("arithmetic", "the squared norm of a normalisation input is not finite");
        double rho = Math.Max(0, Dn(Dn(Math.Sqrt(sq.Lo))));
        var sigma = R.Sqrt(sq / R.Of(x.Length) + R.Of(Eps));
        return (R.One / sigma, rho);   // the division refuses σ's lower end 0
    }

    /// <summary>NL: min(μ·ε·√d / √(max(0, ρ − ε)² + d·eps), 2μ√d), the denominator rounded down, the rest up.</summary>
    public double Tilde(double eps, double rho)
    {
        int d = P0.Length;
        double sd = U.Sqrt(d), cap = U.Mul(U.Mul(2, Mu), sd);
        double gap = Math.Max(0, Dn(rho - eps));
        double den = Math.Max(0, Dn(Dn(Math.Sqrt(Math.Max(0, Dn(Dn(gap * gap) + Dn(d * Eps)))))));
        return den > 0 ? Math.Min(cap, U.Div(U.Mul(U.Mul(Mu, eps), sd), den)) : cap;
    }

    /// <summary>ι·x + b per coordinate; x itself when <paramref name="b"/> is null (no normalisation, ι = 1).</summary>
    public static R[] Scaled(R[] x, R iota, R[]? b)
    {
        if (b is null) return x;
        var r = new R[x.Length];
        for (int j = 0; j < r.Length; j++) r[j] = iota * x[j] + b[j];
        return r;
    }
}

/// <summary>The FLOPs T3 adds to crosscoder-tables (spec/costs.md), from the shapes; zero for the basic model.</summary>
public static class T3Costs
{
    static bool Normed(ModelConfig c) => c.Normalization != NormKind.None;

    public static long Tables(ModelConfig c, long n)
    {
        if (!Normed(c)) return 0;
        long d = c.DModel, H = c.NHeads, dh = c.DHead, m = c.DMlp, V = c.DVocabOut, L = c.NLayers;
        long norms = L + (c.AttnOnly ? 0 : L) + 1;
        long f = norms * (n + 1) * 3 * d + L * H * (3 * (2 * d * dh + dh) + 2 * dh * d) + 2 * d * V + V;
        if (!c.AttnOnly) f += L * (2 * d * m + 2 * m + 2 * m * d);
        return f;
    }

    public static long Scale(ModelConfig c, long nnz) => Normed(c) ? 2 * nnz * c.DModel + 2L * c.DModel + 15 : 0;

    public static long Attention(ModelConfig c, (int Index, double Value)[][] f)
    {
        long s = 0;
        if (Normed(c)) foreach (var ft in f) s += Scale(c, ft.Length) + c.NHeads * (6L * c.DHead + 2L * c.DModel);
        return s;
    }

    public static long Mlp(ModelConfig c, (int Index, double Value)[][] f)
    {
        long s = 0;
        foreach (var ft in f)
        {
            if (Normed(c)) s += Scale(c, ft.Length) + 2L * c.DMlp + 2L * ft.Length * c.DModel + 3L * c.DModel + 1;
            if (c.Act != ActKind.Relu) s += 8L * c.DMlp + 3;
        }
        return s;
    }

    public static long Loss(ModelConfig c, (int Index, double Value)[][] f, int[] labels)
    {
        long s = 0;
        if (Normed(c)) for (int t = 0; t < f.Length; t++) if (labels[t] >= 0) s += Scale(c, f[t].Length) + 2L * c.DVocabOut;
        return s;
    }
}
