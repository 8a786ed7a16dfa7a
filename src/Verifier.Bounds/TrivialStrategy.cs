using System.Text.Json.Nodes;
using Verifier.Core;

namespace Verifier.Bounds;

/// <summary>Trivial (proofs/IP-interval-propagation.md): one interval forward pass per position over the box of
/// all possible inputs (every token at every position, every attention pattern), giving for each position t and
/// label y an upper bound on CE that holds for every input; b₀ is their mean over the dataset's labelled positions.</summary>
public static class TrivialStrategy
{
    public static (double B0, TranscriptCost Cost, int Steps) Run(BoundInputs inputs, string path, IProgress<(int, int)>? progress, CancellationToken ct)
    {
        var c = inputs.Model.Config;
        var table = Table(inputs.Model, ct);
        using var w = new TranscriptWriter(path, inputs.Artefacts(), Strategies.Trivial, new JsonObject());
        var tableSteps = new int[c.NCtx];
        for (int t = 0; t < c.NCtx; t++)
            tableSteps[t] = w.Add(new TranscriptStep("IP", [], BoundProgram.Scope(("position", t)),
                new JsonObject { ["ce_by_label"] = BoundProgram.Array(table[t]) }, TableFlops(c, t), DatasetDependent: false));
        // One lookup and one addition per labelled position.
        double sum = 0;
        foreach (var s in inputs.Data.Sequences)
            for (int t = 0; t < s.Tokens.Length; t++)
                if (s.Labels[t] >= 0) sum = Up.Add(sum, table[t][s.Labels[t]]);
        double b0 = Up.Div(sum, inputs.Positions);
        int final = w.Add(new TranscriptStep("IPMEAN", tableSteps, BoundProgram.Scope(("positions", inputs.Positions)),
            new JsonObject { ["b0"] = b0 }, inputs.Positions + 1, DatasetDependent: true));
        progress?.Report((1, 1));
        var cost = w.Complete([], b0, final, null, adviceBits: 0);
        return (b0, cost, w.StepCount);
    }

    /// <summary>For each position t and label y, an upper bound on CE(logits_t(x), y) over every input x.</summary>
    public static double[][] Table(ModelWeights weights, CancellationToken ct = default)
    {
        var c = weights.Config;
        var m = new IntervalModel(weights);
        var we = weights["embed.W_E"].Data; var wp = weights["pos_embed.W_pos"].Data;
        int d = c.DModel, T = c.NCtx;
        // h⁰ box per position: any token.
        var h = new Iv[T][];
        for (int t = 0; t < T; t++)
        {
            h[t] = new Iv[d];
            for (int i = 0; i < d; i++)
            {
                double lo = double.PositiveInfinity, hi = double.NegativeInfinity;
                for (int x = 0; x < c.DVocab; x++) { lo = Math.Min(lo, we[x * d + i]); hi = Math.Max(hi, we[x * d + i]); }
                h[t][i] = new Iv(lo, hi) + Iv.Point(wp[t * d + i]);
            }
        }
        for (int l = 0; l < c.NLayers; l++)
        {
            ct.ThrowIfCancellationRequested();
            var attn = AnyPatternAttention(m, l, h);
            h = Enumerable.Range(0, T).Select(t => IntervalModel.Add(h[t], attn[t])).ToArray();
            if (!c.AttnOnly)
            {
                var hm = h;
                h = Enumerable.Range(0, T).Select(t => IntervalModel.Add(hm[t], m.Mlp(l, hm[t]))).ToArray();
            }
        }
        var wu = weights["unembed.W_U"].Data; var bu = weights["unembed.b_U"].Data;
        int V = c.DVocabOut;
        var table = new double[T][];
        for (int t = 0; t < T; t++)
        {
            table[t] = new double[V];
            for (int y = 0; y < V; y++)
            {
                // z_i − z_y = h·(u_i − u_y) + (b_i − b_y), with the difference columns as intervals.
                var diffs = new Iv[V - 1];
                for (int i = 0, k = 0; i < V; i++)
                {
                    if (i == y) continue;
                    var diff = Iv.Point(bu[i]) - Iv.Point(bu[y]);
                    for (int j = 0; j < d; j++) diff += (Iv.Point(wu[j * V + i]) - Iv.Point(wu[j * V + y])) * h[t][j];
                    diffs[k++] = diff;
                }
                table[t][y] = IntervalModel.CrossEntropyFromDifferences(diffs).Hi;
            }
        }
        return table;
    }

    /// <summary>Whatever the pattern, z_t is a convex combination of v_s (s ≤ t), so it lies in the hull of their boxes.</summary>
    static Iv[][] AnyPatternAttention(IntervalModel m, int l, Iv[][] h)
    {
        var c = m.C; var w = m.Weights;
        int T = h.Length, H = c.NHeads, d = c.DModel, dh = c.DHead;
        string a = $"blocks.{l}.attn.";
        var wv = w[a + "W_V"].Data; var bv = w[a + "b_V"].Data; var wo = w[a + "W_O"].Data; var bo = w[a + "b_O"].Data;
        var outp = new Iv[T][];
        for (int t = 0; t < T; t++) { outp[t] = new Iv[d]; for (int i = 0; i < d; i++) outp[t][i] = Iv.Point(bo[i]); }
        for (int hh = 0; hh < H; hh++)
        {
            var v = Enumerable.Range(0, T).Select(t => IntervalModel.Affine(h[t], wv, hh * d * dh, d, dh, bv, hh * dh)).ToArray();
            var hull = (Iv[])v[0].Clone();
            for (int t = 0; t < T; t++)
            {
                for (int e = 0; e < dh; e++) hull[e] = Iv.Hull(hull[e], v[t][e]);
                var o = IntervalModel.Affine(hull, wo, hh * dh * d, dh, d, null, 0);
                for (int i = 0; i < d; i++) outp[t][i] += o[i];
            }
        }
        return outp;
    }

    /// <summary>The table for position t: the embedding box (vocab·d), the interval forward of that position
    /// (attention without scores: v, hull, W_O), the MLP, and per label V·(2d + 1) + CE.</summary>
    public static long TableFlops(ModelConfig c, int t)
    {
        long d = c.DModel, H = c.NHeads, dh = c.DHead, V = c.DVocabOut;
        long f = (long)c.DVocab * d + d;
        for (int l = 0; l < c.NLayers; l++)
        {
            f += H * (2 * d * dh + dh + 2 * (t + 1) * dh + 2 * dh * d) + d + d;
            if (!c.AttnOnly) f += Flops.Mlp(c) + d;
        }
        f += V * (V * (2 * d + 1) + Flops.CrossEntropy(V));
        return f;
    }
}
