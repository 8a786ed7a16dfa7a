using Verifier.Core;

namespace Verifier.Checker;

/// <summary>The model of BOUNDS.md §1 in the checker's interval arithmetic, written from the brief and the lemmas.</summary>
public sealed class Forward(ModelWeights w)
{
    public ModelConfig C { get; } = w.Config;
    public ModelWeights W { get; } = w;
    double[] P(string name) => W[name].Data;

    /// <summary>h⁰_t = W_E[x] (+ W_pos[t] when the model has learned positions; rotary models have none).</summary>
    public R[] Embed(int x, int t)
    {
        int d = C.DModel; var e = P("embed.W_E"); var p = C.HasPosEmbed ? P("pos_embed.W_pos") : null;
        var h = new R[d];
        for (int i = 0; i < d; i++) h[i] = p is null ? R.Of(e[x * d + i]) : R.Of(e[x * d + i]) + R.Of(p[t * d + i]);
        return h;
    }

    /// <summary>x W[off: in×out] (+ b[boff: out]).</summary>
    public static R[] Lin(R[] x, double[] wt, int off, int nin, int nout, double[]? b = null, int boff = 0)
    {
        var y = new R[nout];
        for (int j = 0; j < nout; j++) y[j] = b is null ? R.Zero : R.Of(b[boff + j]);
        for (int i = 0; i < nin; i++)
            for (int j = 0; j < nout; j++) y[j] = y[j] + wt[off + i * nout + j] * x[i];
        return y;
    }

    public static R[] Plus(R[] a, R[] b) { var r = new R[a.Length]; for (int i = 0; i < r.Length; i++) r[i] = a[i] + b[i]; return r; }
    public static R[] Minus(R[] a, R[] b) { var r = new R[a.Length]; for (int i = 0; i < r.Length; i++) r[i] = a[i] - b[i]; return r; }
    public static R Dot(R[] a, R[] b) { var s = R.Zero; for (int i = 0; i < a.Length; i++) s = s + a[i] * b[i]; return s; }

    public static R[] Softmax(R[] sigma)
    {
        var p = new R[sigma.Length];
        for (int s = 0; s < sigma.Length; s++)
        {
            var z = R.Zero;
            for (int u = 0; u < sigma.Length; u++) z = z + (u == s ? R.One : R.Exp(sigma[u] - sigma[s]));
            var q = R.One / z;
            p[s] = new R(Math.Max(0, q.Lo), Math.Min(1, q.Hi));
        }
        return p;
    }

    public sealed record Attn(R[][][] Q, R[][][] K, R[][][] V, R[][][] Pat, R[][] Out);

    public Attn Attention(int l, R[][] h)
    {
        int T = h.Length, H = C.NHeads, d = C.DModel, dh = C.DHead;
        string a = $"blocks.{l}.attn.";
        var scale = R.One / R.Sqrt(R.Of(dh));
        var Q = new R[H][][]; var K = new R[H][][]; var V = new R[H][][]; var Pat = new R[H][][];
        var o = new R[T][];
        for (int t = 0; t < T; t++) o[t] = Enumerable.Range(0, d).Select(i => R.Of(P(a + "b_O")[i])).ToArray();
        for (int hh = 0; hh < H; hh++)
        {
            Q[hh] = h.Select(x => Lin(x, P(a + "W_Q"), hh * d * dh, d, dh, P(a + "b_Q"), hh * dh)).ToArray();
            K[hh] = h.Select(x => Lin(x, P(a + "W_K"), hh * d * dh, d, dh, P(a + "b_K"), hh * dh)).ToArray();
            V[hh] = h.Select(x => Lin(x, P(a + "W_V"), hh * d * dh, d, dh, P(a + "b_V"), hh * dh)).ToArray();
            Pat[hh] = new R[T][];
            for (int t = 0; t < T; t++)
            {
                var sg = new R[t + 1];
                for (int s = 0; s <= t; s++) sg[s] = Dot(Q[hh][t], K[hh][s]) * scale;
                var p = Softmax(sg);
                Pat[hh][t] = p;
                var z = new R[dh];
                for (int e = 0; e < dh; e++) { var acc = R.Zero; for (int s = 0; s <= t; s++) acc = acc + p[s] * V[hh][s][e]; z[e] = acc; }
                o[t] = Plus(o[t], Lin(z, P(a + "W_O"), hh * dh * d, dh, d));
            }
        }
        return new Attn(Q, K, V, Pat, o);
    }

    public R[] PreMlp(int l, R[] h) => Lin(h, P($"blocks.{l}.mlp.W_in"), 0, C.DModel, C.DMlp, P($"blocks.{l}.mlp.b_in"));

    public R[] Mlp(int l, R[] h) =>
        Lin(PreMlp(l, h).Select(R.Relu).ToArray(), P($"blocks.{l}.mlp.W_out"), 0, C.DMlp, C.DModel, P($"blocks.{l}.mlp.b_out"));

    public R[] Logits(R[] h) => Lin(h, P("unembed.W_U"), 0, C.DModel, C.DVocabOut, P("unembed.b_U"));

    /// <summary>CE = M + log(e^{−M} + Σ_i e^{d_i − M}), each end with its own M (the overflow-free identity).</summary>
    public static R CeFromDiffs(R[] d)
    {
        double End(bool hi)
        {
            double m = 0;
            foreach (var x in d) m = Math.Max(m, hi ? x.Hi : x.Lo);
            var mm = R.Of(m);
            var s = R.Exp(-mm);
            foreach (var x in d) s = s + R.Exp(R.Of(hi ? x.Hi : x.Lo) - mm);
            var r = mm + R.Log(s);
            return hi ? r.Hi : r.Lo;
        }
        return new R(Math.Max(0, End(false)), End(true));
    }

    public static R Ce(R[] z, int y) => CeFromDiffs(Diffs(z, y));

    /// <summary>z_v − z_y for every v ≠ y.</summary>
    public static R[] Diffs(R[] z, int y) => Enumerable.Range(0, z.Length).Where(i => i != y).Select(i => z[i] - z[y]).ToArray();

    /// <summary>ACC (proofs/ACC-accuracy.md): every difference z_v − z_y is below 0, so y is the argmax.</summary>
    public static bool Certain(R[] diffs, double margin = 0) => diffs.All(d => U.Add(d.Hi, margin) < 0);

    /// <summary>CE upper bound over a box of final residuals, from z_i − z_y = h·(u_i − u_y) + (b_i − b_y).</summary>
    /// <summary>z_i − z_y = h·(u_i − u_y) + (b_i − b_y) for every i ≠ y, over the box h.</summary>
    public R[] LogitDiffsBox(R[] h, int y)
    {
        int d = C.DModel, V = C.DVocabOut; var wu = P("unembed.W_U"); var bu = P("unembed.b_U");
        var diffs = new List<R>();
        for (int i = 0; i < V; i++)
        {
            if (i == y) continue;
            var acc = R.Of(bu[i]) - R.Of(bu[y]);
            for (int j = 0; j < d; j++) acc = acc + (R.Of(wu[j * V + i]) - R.Of(wu[j * V + y])) * h[j];
            diffs.Add(acc);
        }
        return diffs.ToArray();
    }

    /// <summary>Box propagation (IP, CL): attention per head enclosed by the value hull, intersected with the
    /// interval-softmax combination when <paramref name="scores"/>.</summary>
    public R[][] Boxes(R[][] h, bool scores)
    {
        int T = h.Length, H = C.NHeads, d = C.DModel, dh = C.DHead;
        for (int l = 0; l < C.NLayers; l++)
        {
            string a = $"blocks.{l}.attn.";
            var tr = scores ? Attention(l, h) : null;
            var o = new R[T][];
            for (int t = 0; t < T; t++) o[t] = Enumerable.Range(0, d).Select(i => R.Of(P(a + "b_O")[i])).ToArray();
            for (int hh = 0; hh < H; hh++)
            {
                var v = tr?.V[hh] ?? h.Select(x => Lin(x, P(a + "W_V"), hh * d * dh, d, dh, P(a + "b_V"), hh * dh)).ToArray();
                var hull = (R[])v[0].Clone();
                for (int t = 0; t < T; t++)
                {
                    for (int e = 0; e < dh; e++) hull[e] = R.Hull(hull[e], v[t][e]);
                    var z = (R[])hull.Clone();
                    if (tr is not null)
                        for (int e = 0; e < dh; e++)
                        {
                            var acc = R.Zero;
                            for (int s = 0; s <= t; s++) acc = acc + tr.Pat[hh][t][s] * v[s][e];
                            z[e] = new R(Math.Max(z[e].Lo, acc.Lo), Math.Min(z[e].Hi, acc.Hi));
                        }
                    o[t] = Plus(o[t], Lin(z, P(a + "W_O"), hh * dh * d, dh, d));
                }
            }
            h = Enumerable.Range(0, T).Select(t => Plus(h[t], o[t])).ToArray();
            if (!C.AttnOnly) h = h.Select(x => Plus(x, Mlp(l, x))).ToArray();
        }
        return h;
    }
}
