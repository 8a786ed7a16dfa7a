using TorchSharp;
using Verifier.Core;
using static TorchSharp.torch;

namespace Verifier.Model;

public sealed record TrainOptions(
    int Steps = 3000, int BatchSize = 256, double LearningRate = 3e-3, double WeightDecay = 0.01,
    int WarmupSteps = 100, ulong Seed = 0, int EvalSequences = 4096, double HeldOutFraction = 0.3);

/// <summary>Loss is a moving average over recent steps; Accuracy is the current batch's.</summary>
public sealed record TrainProgress(int Step, int TotalSteps, double Loss, double Accuracy);

/// <summary>Summary written to metrics.json beside the model.</summary>
public sealed record TrainMetrics(
    string Task, string TaskDescription, ulong Seed, int Steps, int BatchSize, double LearningRate, double WeightDecay,
    long Parameters, double FinalTrainLoss, double HeldOutLoss, double HeldOutAccuracy, long HeldOutPositions,
    long HeldOutSequences, string HeldOut, double WallSeconds, int Threads, string WeightsSha256, string TestSha256,
    Backdoor? Backdoor = null);

/// <summary>A planted backdoor's held-out accuracy: on the sequences containing the trigger (did the model learn the
/// backdoor?) and on the rest (is the clean task intact?).</summary>
public sealed record Backdoor(int Trigger, double TriggeredAccuracy, long TriggeredSequences, double CleanAccuracy, long CleanSequences)
{
    public static Backdoor? Measure(ModelWeights weights, TokenDataset data, int trigger)
    {
        var with = data.Sequences.Where(s => s.Tokens.Contains(trigger)).ToList();
        var without = data.Sequences.Where(s => !s.Tokens.Contains(trigger)).ToList();
        if (with.Count == 0 || without.Count == 0) return null;
        return new Backdoor(trigger, Evaluator.Evaluate(weights, new TokenDataset(with)).Accuracy, with.Count,
            Evaluator.Evaluate(weights, new TokenDataset(without)).Accuracy, without.Count);
    }
}

/// <summary>What the model trains on and what it is judged on.</summary>
public sealed record DataSplit(IReadOnlyList<Sequence>? TrainSet, TokenDataset HeldOut, string Description)
{
    /// <summary>A finite task (every input listable) is split once, by seed: a fraction is held out and never
    /// trained on. Any other task trains on fresh samples and is judged on a separately seeded sample.</summary>
    public static DataSplit For(ITask task, TrainOptions o)
    {
        if (task is IFiniteTask finite)
        {
            var all = finite.All().ToArray();
            var rng = Rng.Derive(o.Seed, task.Name + "/split");
            for (int i = all.Length - 1; i > 0; i--) { int j = rng.NextInt(i + 1); (all[i], all[j]) = (all[j], all[i]); }
            int held = Math.Clamp((int)Math.Round(all.Length * o.HeldOutFraction), 1, all.Length - 1);
            return new DataSplit(all[held..], new TokenDataset(all[..held]),
                $"{held} of the task's {all.Length} inputs ({o.HeldOutFraction:P0}), never trained on");
        }
        return new DataSplit(null, task.Generate(o.EvalSequences, o.Seed, "test"),
            $"{o.EvalSequences} fresh samples from a separately seeded stream (may coincide with training samples only by chance)");
    }
}

public static class Trainer
{
    /// <summary>TransformerLens's default initialisation: weights (W_gate like W_in, _W_K/_W_V like W_K/W_V) normal with
    /// std 0.8/√d_model, biases (b_*, _b_*, normalisation b) zero, normalisation gains w one.</summary>
    public static ModelWeights Initialise(ModelConfig config, ulong seed)
    {
        var random = ModelWeights.Random(config, seed, std: 0.8 / Math.Sqrt(config.DModel));
        var tensors = random.Tensors.Values.ToDictionary(t => t.Name, t => t.Name.Split('.')[^1] switch
        {
            "w" => t with { Data = Enumerable.Repeat(1.0, t.Data.Length).ToArray() },
            "b" => t with { Data = new double[t.Data.Length] },
            var last when last.StartsWith("b_", StringComparison.Ordinal) || last.StartsWith("_b_", StringComparison.Ordinal) => t with { Data = new double[t.Data.Length] },
            _ => t,
        }, StringComparer.Ordinal);
        return new ModelWeights(config, tensors);
    }

    /// <summary>AdamW with linear warm-up then cosine decay to 10%, on fresh batches from the task each step
    /// (seeded). Deterministic for a seed on a given machine and thread count.</summary>
    public static Transformer Train(ITask task, ModelConfig config, TrainOptions o, IReadOnlyList<Sequence>? trainSet = null,
        IProgress<TrainProgress>? progress = null, CancellationToken ct = default, ModelWeights? initial = null)
    {
        if (initial is not null && initial.Config != config) throw new ArgumentException("the initial weights have another configuration");
        if (trainSet is { Count: 0 }) throw new ArgumentException("the training set is empty", nameof(trainSet));
        random.manual_seed((long)o.Seed);
        var model = new Transformer(initial ?? Initialise(config, o.Seed), ScalarType.Float32);
        var optimizer = optim.AdamW(model.Parameters, lr: o.LearningRate, weight_decay: o.WeightDecay);
        var rng = Rng.Derive(o.Seed, task.Name + "/train");
        double ema = double.NaN;
        for (int step = 1; step <= o.Steps; step++)
        {
            ct.ThrowIfCancellationRequested();
            double lr = step <= o.WarmupSteps
                ? o.LearningRate * step / o.WarmupSteps
                : o.LearningRate * (0.1 + 0.9 * 0.5 * (1 + Math.Cos(Math.PI * (step - o.WarmupSteps) / Math.Max(1, o.Steps - o.WarmupSteps))));
            foreach (var g in optimizer.ParamGroups) g.LearningRate = lr;

            var batch = new Sequence[o.BatchSize];
            for (int b = 0; b < batch.Length; b++)
                batch[b] = trainSet is null ? task.Sample(rng) : trainSet[rng.NextInt(trainSet.Count)];
            using var scope = NewDisposeScope();
            var (tokens, labels) = Transformer.Batch(batch);
            var logits = model.Forward(tokens);
            var flat = logits.reshape(-1, config.DVocabOut);
            var target = labels.reshape(-1);
            var loss = nn.functional.cross_entropy(flat, target, ignore_index: -1);
            optimizer.zero_grad();
            loss.backward();
            optimizer.step();

            double l = loss.item<float>();
            ema = double.IsNaN(ema) ? l : 0.95 * ema + 0.05 * l;
            if (step % 25 == 0 || step == o.Steps)
            {
                using var noGrad = no_grad();
                var scored = target.ne(-1);
                double acc = flat.argmax(-1).eq(target).logical_and(scored).sum().item<long>() / (double)scored.sum().item<long>();
                progress?.Report(new TrainProgress(step, o.Steps, ema, acc));
            }
            if (!double.IsFinite(l)) throw new InvalidOperationException($"training diverged at step {step} (loss {l}); lower --lr");
        }
        return model;
    }
}

/// <summary>Mean cross-entropy and accuracy over the labelled positions, computed in float64 through TorchSharp
/// (libtorch, the same kernels as PyTorch); optionally compared, in the same pass, with the plain C# reference forward.</summary>
public static class Evaluator
{
    public sealed record Result(double Loss, double Accuracy, long Positions, long Sequences, ReferenceComparison? Reference = null);

    /// <summary>The plain C# reference forward (<see cref="ReferenceForward.Run"/>) on the same dataset: its loss and accuracy
    /// (exactly <see cref="ReferenceForward.Evaluate(ModelWeights, TokenDataset)"/>'s), and the largest difference between its
    /// logits and TorchSharp's over every position: absolute, and relative to max(1, |logit|).</summary>
    public sealed record ReferenceComparison(double Loss, double Accuracy, double MaxAbs, double MaxRel);

    /// <param name="reference">Also run the reference forward, once per sequence, and compare (<see cref="Result.Reference"/>);
    /// a position where its cross-entropy overflows throws <see cref="ReferenceForward.Overflow"/>'s error, the first in
    /// dataset order, as <see cref="ReferenceForward.Evaluate(ModelWeights, TokenDataset)"/> does.</param>
    public static Result Evaluate(ModelWeights weights, TokenDataset data, int batchSize = 1024, IProgress<(int Done, int Total)>? progress = null,
        bool reference = false)
    {
        using var model = new Transformer(weights, ScalarType.Float64);
        using var noGrad = no_grad();
        int V = weights.Config.DVocabOut;
        double total = 0; long positions = 0, correct = 0;
        int done = 0;
        double abs = 0, rel = 0;
        // Per sequence, the reference's scored positions, or the error at its first overflowing one: summed (or thrown)
        // in dataset order after the batched pass, so the result is bit-identical to ReferenceForward.Evaluate's.
        var refScores = reference ? new List<(double Ce, bool Correct)>?[data.Count] : null;
        var refOverflow = reference ? new NumericException?[data.Count] : null;
        foreach (var group in Enumerable.Range(0, data.Count).GroupBy(q => data.Sequences[q].Tokens.Length))
        {
            var indices = group.ToList();
            for (int start = 0; start < indices.Count; start += batchSize)
            {
                using var scope = NewDisposeScope();
                var chunk = indices.GetRange(start, Math.Min(batchSize, indices.Count - start));
                var seqs = chunk.Select(q => data.Sequences[q]).ToList();
                var (tokens, labels) = Transformer.Batch(seqs);
                var flat = model.Forward(tokens).reshape(-1, V);
                var target = labels.reshape(-1);
                var scored = target.ne(-1);
                total += nn.functional.cross_entropy(flat, target, ignore_index: -1, reduction: nn.Reduction.Sum).item<double>();
                positions += scored.sum().item<long>();
                correct += flat.argmax(-1).eq(target).logical_and(scored).sum().item<long>();
                if (reference)
                {
                    var logits = flat.contiguous().data<double>().ToArray();
                    int T = seqs[0].Tokens.Length;
                    for (int b = 0; b < seqs.Count; b++)
                    {
                        var r = ReferenceForward.Run(weights, seqs[b].Tokens).Logits;
                        for (int t = 0; t < T; t++)
                            for (int v = 0; v < V; v++)
                            {
                                double x = r[t, v], y = logits[(b * T + t) * V + v], diff = Math.Abs(x - y);
                                abs = Math.Max(abs, diff);
                                rel = Math.Max(rel, diff / Math.Max(1.0, Math.Max(Math.Abs(x), Math.Abs(y))));
                            }
                        try { refScores![chunk[b]] = ReferenceForward.Score(weights, chunk[b], seqs[b], r); }
                        catch (NumericException e) { refOverflow![chunk[b]] = e; }
                    }
                }
                done += chunk.Count;
                progress?.Report((done, data.Count));
            }
        }
        ReferenceComparison? comparison = null;
        if (reference)
        {
            double refTotal = 0; long n = 0, hits = 0;
            for (int q = 0; q < data.Count; q++)
            {
                if (refOverflow![q] is { } e) throw e;
                foreach (var (ce, hit) in refScores![q]!)
                {
                    refTotal += ce;
                    n++;
                    if (hit) hits++;
                }
            }
            comparison = new ReferenceComparison(refTotal / n, (double)hits / n, abs, rel);
        }
        return new Result(total / positions, (double)correct / positions, positions, data.Count, comparison);
    }
}
