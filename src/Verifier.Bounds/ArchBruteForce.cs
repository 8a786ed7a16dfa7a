using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Verifier.Core;

namespace Verifier.Bounds;

/// <summary>Brute force for a non-basic model (proofs/BF-brute-force.md with the enclosures of
/// proofs/R3G-generator-enclosures.md): the same transcript as <see cref="BruteForceStrategy"/> (one BFB step per block
/// of consecutive sequences, then MEAN), each sequence's forward pass in scalar R1 arithmetic (<see cref="ArchForward"/>)
/// on every core, the block's sum taken in sequence order; claims carry the 2⁻²⁴ slack of <see cref="ArchIv.Slack"/>.</summary>
public static class ArchBruteForce
{
    public static (double B0, TranscriptCost Cost, int Steps, long Errors) Run(BoundInputs inputs, string path, IProgress<(int, int)>? progress,
        CancellationToken ct, int block)
    {
        if (block < 1) throw new UsageException($"--block must be at least 1 (got {block})");
        var c = inputs.Model.Config;
        var model = new ArchForward(inputs.Model);
        using var w = new TranscriptWriter(path, inputs.Artefacts(), Strategies.BruteForce, new JsonObject { ["block"] = block });
        var steps = new List<int>(); var sums = new List<double>();
        long errors = 0;
        var data = inputs.Data.Sequences;
        int n = data.Count;
        var loss = new double[Math.Min(block, n)]; var wrong = new int[loss.Length];
        var opts = new ParallelOptions { CancellationToken = ct };
        for (int first = 0; first < n; first += block)
        {
            ct.ThrowIfCancellationRequested();
            int end = (int)Math.Min((long)first + block, n);
            try
            {
                Parallel.ForEach(Partitioner.Create(first, end, Math.Max(1, (end - first) / (4 * Environment.ProcessorCount))), opts, range =>
                {
                    for (int i = range.Item1; i < range.Item2; i++) (loss[i - first], wrong[i - first]) = model.Sequence(data[i]);
                });
            }
            catch (AggregateException e) when (e.InnerExceptions.FirstOrDefault(x => x is IntervalOverflowException) is { } overflow)
            {
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(overflow);
            }
            double sum = 0; int err = 0; long flops = 0;
            for (int i = first; i < end; i++)
            {
                sum = Up.Add(sum, loss[i - first]); err += wrong[i - first];
                flops += Flops.BruteForce(c, data[i].Labels);
            }
            double claim = ArchIv.Slack(c, sum);
            steps.Add(w.Add(new TranscriptStep("BFB", [], BoundProgram.Scope(("first", first), ("end", end)),
                new JsonObject { ["loss_sum"] = claim, ["errors"] = err }, flops, DatasetDependent: true)));
            sums.Add(claim); errors += err;
            progress?.Report((end, n));
        }
        var (b0, final) = BoundProgram.Mean(w, steps, sums, inputs.Positions, errors);
        var cost = w.Complete([], b0, final, null, adviceBits: 0);
        return (b0, cost, w.StepCount, errors);
    }
}
