using System.Text.Json.Nodes;
using Verifier.Core;

namespace Verifier.Bounds;

/// <summary>Brute force (proofs/BF-brute-force.md): the forward pass of every sequence in interval arithmetic;
/// each step claims the upper end of the enclosure of that sequence's summed cross-entropy.</summary>
public static class BruteForceStrategy
{
    public static (double B0, TranscriptCost Cost, int Steps, long Errors) Run(BoundInputs inputs, string path, IProgress<(int, int)>? progress, CancellationToken ct)
    {
        var model = new IntervalModel(inputs.Model);
        var c = inputs.Model.Config;
        using var w = new TranscriptWriter(path, inputs.Artefacts(), Strategies.BruteForce, new JsonObject());
        var steps = new List<int>(); var sums = new List<double>();
        long errors = 0;
        for (int i = 0; i < inputs.Data.Count; i++)
        {
            ct.ThrowIfCancellationRequested();
            var seq = inputs.Data.Sequences[i];
            var (sum, wrong) = Sequence(model, seq);
            steps.Add(w.Add(Step(c, i, seq, sum, wrong)));
            sums.Add(sum); errors += wrong;
            if (i % 64 == 0 || i == inputs.Data.Count - 1) progress?.Report((i + 1, inputs.Data.Count));
        }
        var (b0, final) = BoundProgram.Mean(w, steps, sums, inputs.Positions, errors);
        var cost = w.Complete([], b0, final, null, adviceBits: 0);
        return (b0, cost, w.StepCount, errors);
    }

    /// <summary>One sequence's BF claim: the upper end of the enclosure of Σ_t CE(logits_t, y_t) over its labelled
    /// positions (with slack), and the positions whose label logit is not certified to beat every other (ACC).</summary>
    public static (double LossSum, int Errors) Sequence(IntervalModel model, Sequence seq)
    {
        var last = model.Sites(seq.Tokens)[^1];
        var sum = Iv.Zero;
        int errors = 0;
        for (int t = 0; t < seq.Tokens.Length; t++)
        {
            int y = seq.Labels[t];
            if (y < 0) continue;
            var d = IntervalModel.Differences(model.Logits(last[t]), y);
            sum += IntervalModel.CrossEntropyFromDifferences(d);
            if (!(IntervalModel.MaxUpper(d) < 0)) errors++;
        }
        return (Claim.Slack(sum.Hi), errors);
    }

    /// <summary>The BF step of sequence <paramref name="q"/> (also mixed's brute-forced sequences).</summary>
    public static TranscriptStep Step(ModelConfig c, int q, Sequence seq, double lossSum, int errors) =>
        new("BF", [], BoundProgram.Scope(("sequence", q)), new JsonObject { ["loss_sum"] = lossSum, ["errors"] = errors },
            Flops.Forward(c, seq.Tokens.Length, seq.LabelledCount), DatasetDependent: true);
}
