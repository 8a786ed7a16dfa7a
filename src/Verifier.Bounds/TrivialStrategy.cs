using System.Text.Json.Nodes;
using Verifier.Core;

namespace Verifier.Bounds;

/// <summary>Trivial (proofs/IP-interval-propagation.md): one interval forward pass per position over the box of
/// all possible inputs (every token at every position, every attention pattern), giving for each position t and
/// label y an upper bound on CE that holds for every input; b₀ is their mean over the dataset's labelled positions.</summary>
public static class TrivialStrategy
{
    public static (double B0, TranscriptCost Cost, int Steps, long Errors) Run(BoundInputs inputs, string path, IProgress<(int, int)>? progress, CancellationToken ct)
    {
        var c = inputs.Model.Config;
        var (table, certain) = TableWithCertainty(inputs.Model, ct);
        using var w = new TranscriptWriter(path, inputs.Artefacts(), Strategies.Trivial, new JsonObject());
        var tableSteps = new int[c.NCtx];
        for (int t = 0; t < c.NCtx; t++)
            tableSteps[t] = w.Add(new TranscriptStep("IP", [], BoundProgram.Scope(("position", t)),
                new JsonObject { ["ce_by_label"] = BoundProgram.Array(table[t]) }, TableFlops(c, t), DatasetDependent: false));
        // One lookup and one addition per labelled position.
        double sum = 0;
        long errors = 0;
        foreach (var s in inputs.Data.Sequences)
            for (int t = 0; t < s.Tokens.Length; t++)
                if (s.Labels[t] >= 0)
                {
                    sum = Up.Add(sum, table[t][s.Labels[t]]);
                    if (!certain[t][s.Labels[t]]) errors++;
                }
        double b0 = Claim.Slack(Up.Div(sum, inputs.Positions));
        int final = w.Add(new TranscriptStep("IPMEAN", tableSteps, BoundProgram.Scope(("positions", inputs.Positions)),
            new JsonObject { ["b0"] = b0, ["errors"] = errors }, inputs.Positions + 1, DatasetDependent: true));
        progress?.Report((1, 1));
        var cost = w.Complete([], b0, final, null, adviceBits: 0);
        return (b0, cost, w.StepCount, errors);
    }

    /// <summary>For each position t and label y, an upper bound on CE(logits_t(x), y) over every input x.</summary>
    public static double[][] Table(ModelWeights weights, CancellationToken ct = default) => TableWithCertainty(weights, ct).Table;

    /// <summary>The table, and for each (t, y) whether every input is certified to be classified y at t (ACC).</summary>
    public static (double[][] Table, bool[][] Certain) TableWithCertainty(ModelWeights weights, CancellationToken ct = default)
    {
        var c = weights.Config;
        var m = new IntervalModel(weights);
        var we = weights["embed.W_E"].Data; var wp = c.HasPosEmbed ? weights["pos_embed.W_pos"].Data : null;   // none with rotary positions
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
                h[t][i] = wp is null ? new Iv(lo, hi) : new Iv(lo, hi) + Iv.Point(wp[t * d + i]);
            }
        }
        h = BoxForward.Run(m, h, useScores: false);
        var table = new double[T][]; var certain = new bool[T][];
        for (int t = 0; t < T; t++)
        {
            ct.ThrowIfCancellationRequested();
            var diffs = Enumerable.Range(0, c.DVocabOut).Select(y => BoxForward.LogitDifferences(weights, h[t], y)).ToArray();
            table[t] = diffs.Select(d => ArchIv.Slack(c, IntervalModel.CrossEntropyFromDifferences(d).Hi)).ToArray();
            certain[t] = diffs.Select(d => IntervalModel.MaxUpper(d) < 0).ToArray();
        }
        return (table, certain);
    }

    /// <summary>The table for position t: the embedding box (vocab·d, + d for W_pos), the interval forward of that position
    /// (ln1; attention without scores: v per key/value head, the hull of the attended positions' values, W_O; ln2 and the
    /// MLP), ln_final, and per label V·(2d + 1) + CE.</summary>
    public static long TableFlops(ModelConfig c, int t)
    {
        long d = c.DModel, H = c.NHeads, G = c.KvHeads, dh = c.DHead, V = c.DVocabOut;
        long norm = Flops.Normalisation(c, c.Normalization);
        long f = (long)c.DVocab * d + (c.HasPosEmbed ? d : 0);
        for (int l = 0; l < c.NLayers; l++)
        {
            f += norm + G * (2 * d * dh + dh + 2 * Flops.Keys(c, l, t) * dh) + H * 2 * dh * d + d + d;
            if (!c.AttnOnly) f += norm + Flops.Mlp(c) + d;
        }
        f += Flops.Normalisation(c, c.FinalNorm);
        f += V * (V * (2 * d + 1) + Flops.CrossEntropy(V));
        return f;
    }
}
