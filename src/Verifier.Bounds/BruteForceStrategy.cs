using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Verifier.Core;

namespace Verifier.Bounds;

/// <summary>Brute force (proofs/BF-brute-force.md): the forward pass of every sequence in sound arithmetic. The
/// transcript holds one <c>BFB</c> step per block of <see cref="DefaultBlock"/> consecutive sequences, claiming the
/// block's summed cross-entropy (the midpoint–radius kernel of R2, <see cref="FastForward"/>) and the number of its
/// labelled positions not certified correctly classified; then MEAN. The data and the transcript are streamed: memory
/// holds one block's per-sequence results, whatever |X|.</summary>
public static class BruteForceStrategy
{
    public const int DefaultBlock = 4096;

    public static (double B0, TranscriptCost Cost, int Steps, long Errors) Run(BoundInputs inputs, string path, IProgress<(int, int)>? progress, CancellationToken ct,
        int block = DefaultBlock)
    {
        if (block < 1) throw new UsageException($"--block must be at least 1 (got {block})");
        var c = inputs.Model.Config;
        using var w = new TranscriptWriter(path, inputs.Artefacts(), Strategies.BruteForce, new JsonObject { ["block"] = block });
        var steps = new List<int>(); var sums = new List<double>();
        long errors = 0;
        int n = inputs.Data.Count;
        var loss = new double[Math.Min(block, n)]; var wrong = new int[loss.Length];
        // The basic model through the midpoint–radius kernel (R2); every other architecture through the scalar R1 + R3
        // forward (ArchBruteForce). Claims carry ArchIv.Slack: Claim.Slack for the basic model, 2⁻²⁴ relative otherwise.
        Func<int, int, (double Sum, int Errors, long Flops)> run;
        if (c.IsBasic)
        {
            var fast = new FastForward(inputs.Model);
            run = (first, end) => Block(fast, c, inputs.Data.Sequences, first, end, loss, wrong, ct);
        }
        else
        {
            var arch = new ArchForward(inputs.Model);
            run = (first, end) => ArchBruteForce.Block(arch, c, inputs.Data.Sequences, first, end, loss, wrong, ct);
        }
        for (int first = 0; first < n; first += block)
        {
            ct.ThrowIfCancellationRequested();
            int end = (int)Math.Min((long)first + block, n);
            var (sum, err, flops) = run(first, end);
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

    /// <summary>Sequences [first, end) on every core (the midpoint–radius kernel, per-thread scratch).</summary>
    static (double Sum, int Errors, long Flops) Block(FastForward fast, ModelConfig c, IReadOnlyList<Sequence> data, int first, int end,
        double[] loss, int[] wrong, CancellationToken ct) =>
        Block(c, data, first, end, loss, wrong, minChunk: 16, () => new FastForward.Scratch(c), fast.Sequence, ct);

    /// <summary>Sequences [first, end) on every core, each bounded by <paramref name="sequence"/> with a per-thread
    /// <paramref name="state"/>; the per-sequence bounds are summed in sequence order, so the result does not depend on
    /// scheduling. Returns the summed upper ends, the uncertified positions and the FLOPs of the block.</summary>
    internal static (double Sum, int Errors, long Flops) Block<TState>(ModelConfig c, IReadOnlyList<Sequence> data, int first, int end,
        double[] loss, int[] wrong, int minChunk, Func<TState> state, Func<Sequence, TState, (double LossSum, int Errors)> sequence, CancellationToken ct)
    {
        var opts = new ParallelOptions { CancellationToken = ct };
        try
        {
            Parallel.ForEach(Partitioner.Create(first, end, Math.Max(minChunk, (end - first) / (4 * Environment.ProcessorCount))), opts,
                state,
                (range, _, s) =>
                {
                    for (int i = range.Item1; i < range.Item2; i++) (loss[i - first], wrong[i - first]) = sequence(data[i], s);
                    return s;
                }, _ => { });
        }
        catch (AggregateException e) when (e.InnerExceptions.FirstOrDefault(x => x is IntervalOverflowException) is { } overflow)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(overflow);
        }
        double sum = 0; int errors = 0; long flops = 0;
        for (int i = first; i < end; i++)
        {
            sum = Up.Add(sum, loss[i - first]); errors += wrong[i - first];
            flops += Flops.BruteForce(c, data[i].Labels);
        }
        return (sum, errors, flops);
    }

    /// <summary>One sequence's BF claim in scalar R1 arithmetic: the upper end of the enclosure of Σ_t CE(logits_t, y_t)
    /// over its labelled positions (with slack), and the positions whose label logit is not certified to beat every other (ACC).</summary>
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

    /// <summary>The per-sequence BF step (mixed's brute-forced sequences).</summary>
    public static TranscriptStep Step(ModelConfig c, int q, Sequence seq, double lossSum, int errors) =>
        new("BF", [], BoundProgram.Scope(("sequence", q)), new JsonObject { ["loss_sum"] = lossSum, ["errors"] = errors },
            Flops.BruteForce(c, seq.Labels), DatasetDependent: true);
}
