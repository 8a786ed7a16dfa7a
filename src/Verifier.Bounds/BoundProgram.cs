using System.Diagnostics;
using System.Text.Json.Nodes;
using Verifier.Core;

namespace Verifier.Bounds;

/// <summary>What a bound is about: a model, optionally a crosscoder, and a dataset, each with its hash.</summary>
public sealed record BoundInputs(ModelWeights Model, string ModelDir, TokenDataset Data, string DataPath,
    CrosscoderWeights? Crosscoder = null, string? CrosscoderDir = null)
{
    /// <summary>Set by <see cref="Sharded"/>: the bound is about this shard of the whole dataset.</summary>
    public (ShardSpec Spec, TokenDataset Whole)? Shard { get; private init; }

    /// <summary>The same inputs restricted to shard <paramref name="spec"/> of the dataset (spec/shards.md).</summary>
    public BoundInputs Sharded(ShardSpec spec) => this with { Data = spec.Of(Data, DataPath), Shard = (spec, Data) };

    public IEnumerable<TranscriptArtefact> Artefacts()
    {
        yield return new("model_weights", Hashing.Sha256File(Path.Combine(ModelDir, ModelWeights.WeightsFileName)), Path.Combine(ModelDir, ModelWeights.WeightsFileName));
        yield return new("model_config", Hashing.Sha256File(Path.Combine(ModelDir, ModelConfig.FileName)), Path.Combine(ModelDir, ModelConfig.FileName));
        yield return Shard is { } sh
            ? new("dataset", sh.Whole.ContentHash(), DataPath, sh.Spec.ToJson(sh.Whole.Count))
            : new("dataset", Data.ContentHash(), DataPath);
        if (Crosscoder is not null && CrosscoderDir is not null)
        {
            yield return new("crosscoder_weights", Hashing.Sha256File(Path.Combine(CrosscoderDir, CrosscoderWeights.WeightsFileName)), Path.Combine(CrosscoderDir, CrosscoderWeights.WeightsFileName));
            yield return new("crosscoder_config", Hashing.Sha256File(Path.Combine(CrosscoderDir, CrosscoderConfig.FileName)), Path.Combine(CrosscoderDir, CrosscoderConfig.FileName));
        }
    }

    public long Positions => Data.LabelledPositions;
}

/// <summary>A finished run. <paramref name="AccuracyLb"/>: the certified lower bound on accuracy (the compact
/// strategies); <paramref name="Details"/>: informational diagnostics (where the slack is), not claims.</summary>
public sealed record BoundResult(string Strategy, double B0, double? TrueLoss, TranscriptCost Cost, double WallSeconds, string Transcript, int Steps,
    double? AccuracyLb = null, JsonObject? Details = null);

public static class Strategies
{
    public const string BruteForce = "brute-force";
    public const string CrosscoderExhaustive = "crosscoder-exhaustive";
    public const string CrosscoderTables = "crosscoder-tables";
    public const string Trivial = "trivial";
    public const string Clustered = "clustered";
    /// <summary>One self-contained CC step per sequence (proofs/CC-compact-sequence.md); one-layer models.</summary>
    public const string CrosscoderCompact = "crosscoder-compact";
    /// <summary>crosscoder-compact with brute force on the loosest sequences within a FLOP budget.</summary>
    public const string Mixed = "mixed";
    public static readonly IReadOnlyList<string> All = [BruteForce, CrosscoderExhaustive, CrosscoderTables, Clustered, Trivial];
    /// <summary>The strategies that cover only one-layer models (they refuse others by name).</summary>
    public static readonly IReadOnlyList<string> OneLayer = [CrosscoderCompact, Mixed];
    public static bool NeedsCrosscoder(string s) => s is CrosscoderExhaustive or CrosscoderTables or Clustered or CrosscoderCompact or Mixed;
}

public static class BoundProgram
{
    /// <summary>Runs <paramref name="strategy"/> and writes its transcript to <paramref name="transcriptPath"/>.
    /// The true loss (float64, plain C#) is reported beside b₀ when <paramref name="computeTrueLoss"/>; it is not a claim.</summary>
    public static BoundResult Run(string strategy, BoundInputs inputs, string transcriptPath, bool computeTrueLoss = true,
        IProgress<(int Done, int Total)>? progress = null, CancellationToken ct = default, int clusters = 1, ulong seed = 0, bool overwrite = false,
        int block = BruteForceStrategy.DefaultBlock, double budget = 0.1)
    {
        // brute-force, trivial and clustered cover every architecture (proofs/R3G-generator-enclosures.md); crosscoder-tables
        // normalisations and every activation (proofs/T3-normalised-tables.md); the others refuse by name.
        if (strategy == Strategies.CrosscoderTables)
            inputs.Model.Config.RequireTablesCover($"bound --strategy {strategy}");
        else if (strategy is not (Strategies.BruteForce or Strategies.Trivial or Strategies.Clustered) && (Strategies.All.Contains(strategy) || Strategies.OneLayer.Contains(strategy)))
            inputs.Model.Config.RequireBasic($"bound --strategy {strategy}");
        if (Strategies.NeedsCrosscoder(strategy) && inputs.Crosscoder is null)
            throw new UsageException($"the strategy '{strategy}' needs --crosscoder");
        var sw = Stopwatch.StartNew();
        if (strategy is Strategies.CrosscoderCompact or Strategies.Mixed && !(budget >= 0 && budget <= 1))
            throw new UsageException($"--budget must be a fraction of brute force's FLOPs in [0, 1], got {budget}");
        string final = Path.GetFullPath(transcriptPath);
        try
        {
            // The strategy writes a private temporary; it is published only when everything, the true loss included,
            // succeeded, and without overwrite unless asked (an output that appeared meanwhile is not replaced).
            return AtomicOutput.Publishing(final, overwrite, tmp =>
            {
                (double B0, TranscriptCost Cost, int Steps, double Accuracy, JsonObject? Details) r;
                if (strategy is Strategies.CrosscoderCompact or Strategies.Mixed)
                {
                    var (b0, acc, cost, steps, details) = CompactStrategy.Run(inputs, tmp, strategy == Strategies.Mixed ? budget : null, progress, ct);
                    r = (b0, cost, steps, acc, details);
                }
                else
                {
                    var (b0, cost, steps, errors) = strategy switch
                    {
                        Strategies.BruteForce => BruteForceStrategy.Run(inputs, tmp, progress, ct, block),
                        Strategies.Trivial => TrivialStrategy.Run(inputs, tmp, progress, ct),
                        Strategies.CrosscoderExhaustive => CrosscoderStrategy.Run(inputs, tmp, tables: false, progress, ct),
                        Strategies.CrosscoderTables => CrosscoderStrategy.Run(inputs, tmp, tables: true, progress, ct),
                        Strategies.Clustered => ClusteredStrategy.Run(inputs, tmp, clusters, seed, progress, ct),
                        _ => throw new UsageException($"unknown strategy '{strategy}'; expected one of {string.Join(", ", Strategies.All)}"),
                    };
                    r = (b0, cost, steps, Accuracy.Lower(errors, inputs.Positions), null);
                }
                double seconds = sw.Elapsed.TotalSeconds;
                double? trueLoss = computeTrueLoss ? ReferenceForward.Evaluate(inputs.Model, inputs.Data).Loss : null;
                return new BoundResult(strategy, r.B0, trueLoss, r.Cost, seconds, final, r.Steps, r.Accuracy, r.Details);
            });
        }
        catch (IntervalOverflowException e)
        {
            throw new NumericException(inputs.Model.Source, "interval forward pass",
                $"{e.What} is not finite: the weights are finite but their products overflow float64, so no finite bound exists; nothing was written");
        }
        catch (NonFiniteClaimException e)
        {
            throw new NumericException(inputs.Model.Source, "bound", $"{e.Message}");
        }
    }

    internal static JsonObject Scope(params (string Key, JsonNode? Value)[] items)
    {
        var o = new JsonObject();
        foreach (var (k, v) in items) o[k] = v;
        return o;
    }

    internal static JsonArray Array(IEnumerable<double> xs) => new(xs.Select(x => (JsonNode)JsonValue.Create(x)).ToArray());

    /// <summary>The last step of every strategy (lemma MEAN): b₀ ≥ (Σ of per-sequence loss-sum bounds) / |P|.
    /// With <paramref name="errors"/> (every input claims errors), MEAN also claims the number of labelled positions not
    /// certified correctly classified: the accuracy over X is at least 1 − errors/|P| (proofs/ACC-accuracy.md).</summary>
    internal static (double B0, int Step) Mean(TranscriptWriter w, IReadOnlyList<int> sequenceSteps, IReadOnlyList<double> lossSums, long positions,
        double? errors = null)
    {
        double sum = 0;
        foreach (var s in lossSums) sum = Up.Add(sum, s);
        double b0 = Claim.Slack(Up.Div(sum, positions));
        int id = w.Add(new TranscriptStep("MEAN", sequenceSteps, Scope(("positions", positions)),
            errors is { } e ? new JsonObject { ["b0"] = b0, ["errors"] = e } : new JsonObject { ["b0"] = b0 },
            lossSums.Count + 1, DatasetDependent: true));
        return (b0, id);
    }

}
