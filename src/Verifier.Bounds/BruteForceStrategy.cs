using System.Text.Json.Nodes;
using Verifier.Core;

namespace Verifier.Bounds;

/// <summary>Brute force (proofs/BF-brute-force.md): the forward pass of every sequence in interval arithmetic;
/// each step claims the upper end of the enclosure of that sequence's summed cross-entropy.</summary>
public static class BruteForceStrategy
{
    public static (double B0, TranscriptCost Cost, int Steps) Run(BoundInputs inputs, string path, IProgress<(int, int)>? progress, CancellationToken ct)
    {
        var model = new IntervalModel(inputs.Model);
        var c = inputs.Model.Config;
        using var w = new TranscriptWriter(path, inputs.Artefacts(), Strategies.BruteForce, new JsonObject());
        var steps = new List<int>(); var sums = new List<double>();
        for (int i = 0; i < inputs.Data.Count; i++)
        {
            ct.ThrowIfCancellationRequested();
            var seq = inputs.Data.Sequences[i];
            double sum = Claim.Slack(LossSumUpper(model, seq));
            steps.Add(w.Add(new TranscriptStep("BF", [], BoundProgram.Scope(("sequence", i)), new JsonObject { ["loss_sum"] = sum },
                Flops.Forward(c, seq.Tokens.Length, seq.LabelledCount), DatasetDependent: true)));
            sums.Add(sum);
            if (i % 64 == 0 || i == inputs.Data.Count - 1) progress?.Report((i + 1, inputs.Data.Count));
        }
        var (b0, final) = BoundProgram.Mean(w, steps, sums, inputs.Positions);
        var cost = w.Complete([], b0, final, null, adviceBits: 0);
        return (b0, cost, w.StepCount);
    }

    /// <summary>Upper end of the interval enclosure of Σ_t CE(logits_t, y_t) over the sequence's labelled positions.</summary>
    public static double LossSumUpper(IntervalModel model, Sequence seq)
    {
        var sites = model.Sites(seq.Tokens);
        var last = sites[^1];
        var sum = Iv.Zero;
        for (int t = 0; t < seq.Tokens.Length; t++)
            if (seq.Labels[t] >= 0) sum += IntervalModel.CrossEntropy(model.Logits(last[t]), seq.Labels[t]);
        return sum.Hi;
    }
}
