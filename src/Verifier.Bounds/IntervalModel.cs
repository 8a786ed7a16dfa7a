using Verifier.Core;

namespace Verifier.Bounds;

/// <summary>The model of BOUNDS.md §1 evaluated in outward-rounded interval arithmetic (proofs/R1-rounding.md):
/// every output encloses the exact real value of the model (M₀, the function of the stored weights) on any
/// inputs inside the input intervals. Shapes follow TransformerLens; weights are exact float64 values.</summary>
public sealed class IntervalModel(ModelWeights w)
{
    public ModelWeights Weights { get; } = w;
    public ModelConfig C { get; } = w.Config;
    readonly double InvSqrtDHead = 1.0 / Math.Sqrt(w.Config.DHead);

    /// <summary>The forward of a non-basic model (R3G), built once per model: its rotary table and divisors do not change.</summary>
    public ArchForward Arch => _arch ??= new ArchForward(Weights);
    ArchForward? _arch;

    double[] W(string name) => Weights[name].Data;

    /// <summary>h⁰_t = W_E[x_t] + W_pos[t] (W_E[x_t] alone for a model without learned positions: rotary).</summary>
    public Iv[] Embed(int token, int t)
    {
        var we = W("embed.W_E"); var wp = C.HasPosEmbed ? W("pos_embed.W_pos") : null; int d = C.DModel;
        var h = new Iv[d];
        for (int i = 0; i < d; i++) h[i] = wp is null ? Iv.Point(we[token * d + i]) : Iv.Point(we[token * d + i]) + Iv.Point(wp[t * d + i]);
        return h;
    }

    /// <summary>x·W[off…] + b[bOff…] with W row-major [inDim, outDim].</summary>
    public static Iv[] Affine(Iv[] x, double[] w, int off, int inDim, int outDim, double[]? b, int bOff)
    {
        var r = new Iv[outDim];
        for (int j = 0; j < outDim; j++) r[j] = b is null ? Iv.Zero : Iv.Point(b[bOff + j]);
        for (int i = 0; i < inDim; i++)
        {
            var xi = x[i];
            int row = off + i * outDim;
            for (int j = 0; j < outDim; j++) r[j] += w[row + j] * xi;
        }
        return r;
    }

    public static Iv[] Add(Iv[] a, Iv[] b)
    {
        var r = new Iv[a.Length];
        for (int i = 0; i < a.Length; i++) r[i] = a[i] + b[i];
        return r;
    }

    public static Iv[] Sub(Iv[] a, Iv[] b)
    {
        var r = new Iv[a.Length];
        for (int i = 0; i < a.Length; i++) r[i] = a[i] - b[i];
        return r;
    }

    public static Iv Dot(Iv[] a, Iv[] b)
    {
        var s = Iv.Zero;
        for (int i = 0; i < a.Length; i++) s += a[i] * b[i];
        return s;
    }

    /// <summary>An upper bound on ‖x‖₂ for every x in the box.</summary>
    public static double NormUpper(Iv[] x)
    {
        double s = 0;
        foreach (var v in x) s = Up.Add(s, Up.Mul(v.Mag, v.Mag));
        return Up.Sqrt(s);
    }

    /// <summary>Per-head nominal quantities of an attention sub-block, kept for the perturbation lemma (L5).</summary>
    public sealed record AttentionTrace(Iv[][][] Q, Iv[][][] K, Iv[][][] V, Iv[][][] Pattern, Iv[][] Output);

    /// <summary>attn_t = Σ_heads (Σ_{s≤t} softmax_s(q_t·k_s/√d_head) v_s) W_O + b_O for every position t.</summary>
    public AttentionTrace Attention(int l, Iv[][] h)
    {
        int T = h.Length, H = C.NHeads, d = C.DModel, dh = C.DHead;
        string a = $"blocks.{l}.attn.";
        double[] wq = W(a + "W_Q"), wk = W(a + "W_K"), wv = W(a + "W_V"), wo = W(a + "W_O");
        double[] bq = W(a + "b_Q"), bk = W(a + "b_K"), bv = W(a + "b_V"), bo = W(a + "b_O");
        var Q = new Iv[H][][]; var K = new Iv[H][][]; var V = new Iv[H][][]; var P = new Iv[H][][];
        var outp = new Iv[T][];
        for (int t = 0; t < T; t++) { outp[t] = new Iv[d]; for (int i = 0; i < d; i++) outp[t][i] = Iv.Point(bo[i]); }
        var scale = Iv.Point(1) / Iv.Sqrt(Iv.Point(dh));
        for (int hh = 0; hh < H; hh++)
        {
            Q[hh] = new Iv[T][]; K[hh] = new Iv[T][]; V[hh] = new Iv[T][]; P[hh] = new Iv[T][];
            for (int t = 0; t < T; t++)
            {
                Q[hh][t] = Affine(h[t], wq, hh * d * dh, d, dh, bq, hh * dh);
                K[hh][t] = Affine(h[t], wk, hh * d * dh, d, dh, bk, hh * dh);
                V[hh][t] = Affine(h[t], wv, hh * d * dh, d, dh, bv, hh * dh);
            }
            for (int t = 0; t < T; t++)
            {
                var sigma = new Iv[t + 1];
                for (int s = 0; s <= t; s++) sigma[s] = Dot(Q[hh][t], K[hh][s]) * scale;
                var p = Softmax(sigma);
                P[hh][t] = p;
                var z = new Iv[dh];
                for (int e = 0; e < dh; e++) { var acc = Iv.Zero; for (int s = 0; s <= t; s++) acc += p[s] * V[hh][s][e]; z[e] = acc; }
                var o = Affine(z, wo, hh * dh * d, dh, d, null, 0);
                for (int i = 0; i < d; i++) outp[t][i] += o[i];
            }
        }
        return new AttentionTrace(Q, K, V, P, outp);
    }

    /// <summary>p_s = 1 / Σ_u exp(σ_u − σ_s): each enclosure is in (0, 1].</summary>
    public static Iv[] Softmax(Iv[] sigma)
    {
        // In extended arithmetic where a term overflows: 1/[m, +∞] = [0, 1/m] (a sum's lower end stays finite, as
        // Iv's addition rounds +∞ down to double.MaxValue), so a score gap beyond exp's range leaves the losing keys in
        // [0, tiny] instead of refusing the bound.
        foreach (var x in sigma) if (!x.IsFinite) throw new IntervalOverflowException($"the interval of an attention score {x}");
        var p = new Iv[sigma.Length];
        for (int s = 0; s < sigma.Length; s++)
        {
            var sum = Iv.Zero;
            for (int u = 0; u < sigma.Length; u++) sum += u == s ? Iv.Point(1) : Iv.Exp(sigma[u] - sigma[s]);
            double lo = double.IsFinite(sum.Hi) ? Math.BitDecrement(1 / sum.Hi) : 0, hi = Math.BitIncrement(1 / sum.Lo);
            p[s] = new Iv(Math.Max(0, lo), Math.Min(1, hi));
        }
        return p;
    }

    /// <summary>ReLU(h W_in + b_in) W_out + b_out.</summary>
    public Iv[] Mlp(int l, Iv[] h)
    {
        string m = $"blocks.{l}.mlp.";
        var pre = Affine(h, W(m + "W_in"), 0, C.DModel, C.DMlp, W(m + "b_in"), 0);
        for (int i = 0; i < pre.Length; i++) pre[i] = Iv.Relu(pre[i]);
        return Affine(pre, W(m + "W_out"), 0, C.DMlp, C.DModel, W(m + "b_out"), 0);
    }

    public Iv[] Logits(Iv[] h) => Affine(h, W("unembed.W_U"), 0, C.DModel, C.DVocabOut, W("unembed.b_U"), 0);

    /// <summary>CE(z, y) = log Σ_i exp(z_i − z_y), from the differences z_i − z_y.</summary>
    /// <summary>z_v − z_y for every v ≠ y, in order.</summary>
    public static Iv[] Differences(Iv[] z, int y)
    {
        for (int i = 0; i < z.Length; i++)
            if (!z[i].IsFinite) throw new IntervalOverflowException($"the interval of logit {i} {z[i]}");
        var diffs = new Iv[z.Length - 1];
        for (int i = 0, k = 0; i < z.Length; i++) if (i != y) diffs[k++] = z[i] - z[y];
        return diffs;
    }

    /// <summary>The largest upper end among logit differences z_v − z_y (−∞ when there is no other label): below 0, the
    /// label's logit provably beats every other and the position is classified correctly (proofs/ACC-accuracy.md).</summary>
    public static double MaxUpper(Iv[] diffs) => diffs.Length == 0 ? double.NegativeInfinity : diffs.Max(d => d.Hi);

    public static Iv CrossEntropy(Iv[] z, int y)
    {
        for (int i = 0; i < z.Length; i++)
            if (!z[i].IsFinite) throw new IntervalOverflowException($"the interval of logit {i} {z[i]}");
        var diffs = new Iv[z.Length - 1];
        for (int i = 0, k = 0; i < z.Length; i++) if (i != y) diffs[k++] = z[i] - z[y];
        return CrossEntropyFromDifferences(diffs);
    }

    /// <summary>log(1 + Σ_i exp(d_i)) in the overflow-free form M + log(e^{−M} + Σ_i e^{d_i − M}), M = max(0, max d_i),
    /// each end with its own M (proofs/R1-rounding.md: the identity is exact, the evaluation outward-rounded).</summary>
    public static Iv CrossEntropyFromDifferences(Iv[] d)
    {
        for (int i = 0; i < d.Length; i++)
            if (!d[i].IsFinite) throw new IntervalOverflowException($"the interval of a logit difference {d[i]}");
        double End(bool upper)
        {
            double m = 0;
            foreach (var x in d) m = Math.Max(m, upper ? x.Hi : x.Lo);
            var mi = Iv.Point(m);
            var sum = Iv.Exp(-mi);
            foreach (var x in d) sum += Iv.Exp(Iv.Point(upper ? x.Hi : x.Lo) - mi);
            var r = mi + Iv.Log(sum);
            return upper ? r.Hi : r.Lo;
        }
        return new Iv(Math.Max(0, End(false)), End(true));
    }

    /// <summary>Residual stream at every site (ModelConfig.SiteNames order) for one sequence.</summary>
    public List<Iv[][]> Sites(int[] tokens)
    {
        int T = tokens.Length;
        var h = new Iv[T][];
        for (int t = 0; t < T; t++) h[t] = Embed(tokens[t], t);
        var sites = new List<Iv[][]> { h };
        for (int l = 0; l < C.NLayers; l++)
        {
            var attn = Attention(l, h).Output;
            h = Enumerable.Range(0, T).Select(t => Add(h[t], attn[t])).ToArray();
            if (!C.AttnOnly)
            {
                sites.Add(h);
                var hm = h;
                h = Enumerable.Range(0, T).Select(t => Add(hm[t], Mlp(l, hm[t]))).ToArray();
            }
            sites.Add(h);
        }
        return sites;
    }
}
