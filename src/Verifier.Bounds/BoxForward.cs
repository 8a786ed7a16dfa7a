using Verifier.Core;

namespace Verifier.Bounds;

/// <summary>Interval propagation of per-position input boxes through the model (proofs/IP-interval-propagation.md),
/// shared by the trivial and clustered strategies. Attention output per head is enclosed by the hull of the value
/// boxes (any pattern) and, when <c>useScores</c>, also by the interval-softmax combination; the intersection of
/// two enclosures is an enclosure.</summary>
public static class BoxForward
{
    /// <returns>The boxes the unembedding reads: h^L, through ln_final for a model that has one (a non-basic model is
    /// propagated by <see cref="ArchForward"/>, proofs/R3G-generator-enclosures.md).</returns>
    public static Iv[][] Run(IntervalModel m, Iv[][] h, bool useScores)
    {
        if (!m.C.IsBasic) return m.Arch.Forward(h, scores: useScores, hull: true);
        var c = m.C; int T = h.Length;
        for (int l = 0; l < c.NLayers; l++)
        {
            var attn = Attention(m, l, h, useScores);
            h = Enumerable.Range(0, T).Select(t => IntervalModel.Add(h[t], attn[t])).ToArray();
            if (!c.AttnOnly)
            {
                var hm = h;
                h = Enumerable.Range(0, T).Select(t => IntervalModel.Add(hm[t], m.Mlp(l, hm[t]))).ToArray();
            }
        }
        return h;
    }

    static Iv[][] Attention(IntervalModel m, int l, Iv[][] h, bool useScores)
    {
        var c = m.C; var w = m.Weights;
        int T = h.Length, H = c.NHeads, d = c.DModel, dh = c.DHead;
        string a = $"blocks.{l}.attn.";
        var wo = w[a + "W_O"].Data; var bo = w[a + "b_O"].Data;
        var trace = useScores ? m.Attention(l, h) : null;
        var wv = w[a + "W_V"].Data; var bv = w[a + "b_V"].Data;
        var outp = new Iv[T][];
        for (int t = 0; t < T; t++) { outp[t] = new Iv[d]; for (int i = 0; i < d; i++) outp[t][i] = Iv.Point(bo[i]); }
        for (int hh = 0; hh < H; hh++)
        {
            var v = trace?.V[hh] ?? Enumerable.Range(0, T).Select(t => IntervalModel.Affine(h[t], wv, hh * d * dh, d, dh, bv, hh * dh)).ToArray();
            var hull = (Iv[])v[0].Clone();
            for (int t = 0; t < T; t++)
            {
                for (int e = 0; e < dh; e++) hull[e] = Iv.Hull(hull[e], v[t][e]);
                var z = (Iv[])hull.Clone();
                if (trace is not null)
                    for (int e = 0; e < dh; e++)
                    {
                        var acc = Iv.Zero;
                        for (int s = 0; s <= t; s++) acc += trace.Pattern[hh][t][s] * v[s][e];
                        z[e] = new Iv(Math.Max(z[e].Lo, acc.Lo), Math.Min(z[e].Hi, acc.Hi));
                    }
                var o = IntervalModel.Affine(z, wo, hh * dh * d, dh, d, null, 0);
                for (int i = 0; i < d; i++) outp[t][i] += o[i];
            }
        }
        return outp;
    }

    /// <summary>z_i − z_y = h·(u_i − u_y) + (b_i − b_y) for every i ≠ y, over the box h.</summary>
    public static Iv[] LogitDifferences(ModelWeights w, Iv[] h, int y)
    {
        var c = w.Config; int d = c.DModel, V = c.DVocabOut;
        var wu = w["unembed.W_U"].Data; var bu = w["unembed.b_U"].Data;
        var diffs = new Iv[V - 1];
        for (int i = 0, k = 0; i < V; i++)
        {
            if (i == y) continue;
            var diff = Iv.Point(bu[i]) - Iv.Point(bu[y]);
            for (int j = 0; j < d; j++) diff += (Iv.Point(wu[j * V + i]) - Iv.Point(wu[j * V + y])) * h[j];
            diffs[k++] = diff;
        }
        return diffs;
    }
}
