using Verifier.Core;

namespace Verifier.Bounds;

/// <summary>A normalisation N(x) = w ⊙ Px / σ(x) + b read through the crosscoder's decoder at one site
/// (proofs/T3-normalised-tables.md): the enclosed centred decoder rows P W_dec^s[i] and P b_dec^s, the inputs
/// (P W_dec^s[i]) ⊙ w of the products that follow, and μ = max |w_i|. Per token it gives ι = 1/σ(a'_t) and ρ ≤ ‖Pa'_t‖,
/// and NL's bound ε̃ on ‖N(h_t) − N(a'_t)‖ for ‖h_t − a'_t‖ ≤ ε_t.</summary>
public sealed class NormTables
{
    public required NormKind Kind { get; init; }
    public required Iv[][] P { get; init; }        // [feature][d_model]: P W_dec^s[i]
    public required Iv[] P0 { get; init; }         // P b_dec^s
    public required Iv[][] In { get; init; }       // [feature][d_model]: (P W_dec^s[i]) ⊙ w
    public required Iv[] In0 { get; init; }        // (P b_dec^s) ⊙ w
    public required double[]? B { get; init; }    // b (LN only)
    public required double Mu { get; init; }
    public required double Eps { get; init; }

    /// <summary>The tables of <paramref name="kind"/> over the decoder rows and bias of one site; null for no normalisation.</summary>
    public static NormTables? Build(NormKind kind, double eps, double[]? w, double[]? b, Iv[][] rows, Iv[] bias)
    {
        if (kind == NormKind.None) return null;
        bool centre = kind is NormKind.LN or NormKind.LNPre;
        Iv[] Centre(Iv[] r)
        {
            if (!centre) return r;
            var sum = Iv.Zero;
            foreach (var x in r) sum += x;
            var mean = sum / Iv.Point(r.Length);
            return r.Select(x => x - mean).ToArray();
        }
        Iv[] Scale(Iv[] r) => w is null ? r : r.Select((x, j) => w[j] * x).ToArray();
        var p = rows.Select(Centre).ToArray(); var p0 = Centre(bias);
        return new NormTables
        {
            Kind = kind, P = p, P0 = p0, In = p.Select(Scale).ToArray(), In0 = Scale(p0), B = b, Eps = eps,
            Mu = w is null ? 1 : w.Max(Math.Abs),
        };
    }

    /// <summary>The tables of the normalisation named by <paramref name="prefix"/> (blocks.l.ln1., blocks.l.ln2., ln_final.).</summary>
    public static NormTables? Build(ModelWeights w, string prefix, NormKind kind, Iv[][] rows, Iv[] bias) =>
        Build(kind, w.Config.Eps, kind is NormKind.LN or NormKind.RMS ? w[prefix + "w"].Data : null, kind == NormKind.LN ? w[prefix + "b"].Data : null, rows, bias);

    /// <summary>ι_t = 1/√(‖Pa'_t‖²/d + eps) enclosed, and ρ_t ≤ ‖Pa'_t‖, for one token's features.</summary>
    public (Iv Iota, double Rho) Scale((int Index, double Value)[] f)
    {
        var x = Tables.Combine(f, P, P0);
        var sq = Iv.Zero;
        foreach (var v in x) sq += Iv.Sq(v);
        if (!sq.IsFinite) throw new IntervalOverflowException($"the squared norm of a normalisation input {sq}");
        double rho = Math.Max(0, Math.BitDecrement(Math.BitDecrement(Math.Sqrt(sq.Lo))));
        var sigma = Iv.Sqrt(sq / Iv.Point(x.Length) + Iv.Point(Eps));
        if (!(sigma.Lo > 0))
            throw new NonFiniteClaimException("a normalisation of the nominal activations divides by an enclosure of σ that reaches 0 (eps = 0 and a'_t centred to 0); no table bound exists for it");
        return (Iv.Point(1) / sigma, rho);
    }

    /// <summary>NL: ε̃ = min(μ·ε·√d / √(max(0, ρ − ε)² + d·eps), 2μ√d), rounded up (the denominator down).</summary>
    public double Tilde(double eps, double rho) => Tilde(Mu, P0.Length, Eps, eps, rho);

    public static double Tilde(double mu, int d, double normEps, double eps, double rho)
    {
        static double Dn(double x) => Math.BitDecrement(x);
        double sd = Up.Sqrt(d);
        double cap = Up.Mul(Up.Mul(2, mu), sd);
        double gap = Math.Max(0, Dn(rho - eps));
        double den2 = Math.Max(0, Dn(Dn(gap * gap) + Dn(d * normEps)));
        double den = Math.Max(0, Dn(Dn(Math.Sqrt(den2))));
        if (!(den > 0)) return cap;
        return Math.Min(cap, Up.Div(Up.Mul(Up.Mul(mu, eps), sd), den));
    }

    /// <summary>ι·(Σ_i f_i T_i + T₀) + T_b, or Σ_i f_i T_i + T₀ without a normalisation (<paramref name="tb"/> null, ι = 1).</summary>
    public static Iv[] Apply((int Index, double Value)[] f, Iv[][] table, Iv[] t0, Iv iota, Iv[]? tb)
    {
        var r = Tables.Combine(f, table, t0);
        if (tb is null) return r;
        for (int j = 0; j < r.Length; j++) r[j] = iota * r[j] + tb[j];
        return r;
    }
}

/// <summary>The FLOPs T3 adds to crosscoder-tables on a model with normalisations or another activation (spec/costs.md);
/// all zero for the basic model.</summary>
public static class T3Flops
{
    static bool Normed(ModelConfig c) => c.Normalization != NormKind.None;

    /// <summary>Per normalisation read through the decoder: (n + 1)·3d (mean, centre, scale by w); the bias parts
    /// Q_b, K_b, V_b, OV_b per layer, U_b, C = U₀ + U_b and M₀ per MLP, UU_b for the unembedding.</summary>
    public static long Tables(ModelConfig c, long n)
    {
        if (!Normed(c)) return 0;
        long d = c.DModel, H = c.NHeads, dh = c.DHead, m = c.DMlp, V = c.DVocabOut, L = c.NLayers;
        long norms = L + (c.AttnOnly ? 0 : L) + 1;
        long f = norms * (n + 1) * 3 * d + L * H * (3 * (2 * d * dh + dh) + 2 * dh * d) + 2 * d * V + V;
        if (!c.AttnOnly) f += L * (2 * d * m + m + m + 2 * m * d);
        return f;
    }

    /// <summary>One token's normalisation scale: Pa'_t (2·nnz_t·d), its squared norm (2d), σ, ι, ρ and NL's ε̃ (15).</summary>
    public static long Scale(ModelConfig c, long nnz) => Normed(c) ? 2 * nnz * c.DModel + 2L * c.DModel + 15 : 0;

    /// <summary>The attention step's extra per token: the scale and ι·(…) + bias part for q', k', v' and the value rows.</summary>
    public static long Attention(ModelConfig c, (int Index, double Value)[][] f) =>
        Normed(c) ? f.Sum(ft => Scale(c, ft.Length) + c.NHeads * (6L * c.DHead + 2L * c.DModel)) : 0;

    /// <summary>The MLP step's extra per token: the scale, ι·(…) + U_b (2m), ι·Σ f_i M_i and (ι − 1)M₀ (2·nnz_t·d + 3d + 1);
    /// for an activation other than ReLU the per-neuron perturbation (8m) and the slope form L·K_mlp·ε̃ with the minimum (3).</summary>
    public static long Mlp(ModelConfig c, (int Index, double Value)[][] f) =>
        f.Sum(ft => (Normed(c) ? Scale(c, ft.Length) + 2L * c.DMlp + 2L * ft.Length * c.DModel + 3L * c.DModel + 1 : 0)
                    + (c.Act == ActKind.Relu ? 0 : 8L * c.DMlp + 3));

    /// <summary>The loss step's extra per labelled position: the scale and ι·(…) + UU_b (2V).</summary>
    public static long Loss(ModelConfig c, (int Index, double Value)[][] f, int[] labels) =>
        Normed(c) ? f.Where((_, t) => labels[t] >= 0).Sum(ft => Scale(c, ft.Length) + 2L * c.DVocabOut) : 0;
}
