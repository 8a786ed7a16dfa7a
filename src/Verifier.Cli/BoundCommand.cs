using System.CommandLine;
using Verifier.Bounds;
using Verifier.Core;

namespace Verifier.Cli;

static class BoundCommand
{
    public static Command Build()
    {
        var model = new Option<DirectoryInfo>("--model") { Description = "Model directory", Required = true };
        var crosscoder = new Option<DirectoryInfo?>("--crosscoder") { Description = "Crosscoder directory (for the crosscoder strategies)" };
        var data = new Option<FileInfo>("--data") { Description = "Dataset X (spec/dataset.md): the theorem bounds the mean CE over its labelled positions", Required = true };
        var strategy = new Option<string>("--strategy") { Description = "Proof strategy", Required = true };
        strategy.AcceptOnlyFromAmong([.. Strategies.All, .. Strategies.OneLayer]);
        var output = new Option<FileInfo>("--out") { Description = "Transcript to write (spec/transcript.md)", Required = true };
        var allow = new Option<bool>("--allow-model-mismatch") { Description = "Use a crosscoder trained on different model weights" };
        var clusters = Options.Positive<int>("--clusters", "Number of clusters c (strategy clustered)", 1);
        var seed = Options.Seed("the clustering");
        var budget = new Option<double>("--budget") { Description = "Strategy mixed: FLOP budget as a fraction of brute force's (brute force on the loosest sequences of crosscoder-compact while it fits)", DefaultValueFactory = _ => 0.1 };
        var noTrue = new Option<bool>("--no-true-loss") { Description = "Do not compute the true loss for comparison" };
        var block = Options.Positive<int>("--block", "brute-force: sequences per BFB step (each step claims the block's loss sum)", BruteForceStrategy.DefaultBlock);
        var shard = new Option<string?>("--shard") { Description = "Bound only shard i/n of the dataset (sequences ⌊iN/n⌋ … ⌊(i+1)N/n⌋−1; spec/shards.md): the transcript is about that part; `merge` combines the n shards. A shard is never recorded in the store (the merge is)" };
        var db = StoreOptions.Db();
        var noRecord = new Option<bool>("--no-record") { Description = "Do not record the run in the store" };
        var force = Options.Force();
        var json = Options.Json();
        var cmd = new Command("bound", "Prove an upper bound b₀ on the model's mean cross-entropy over a dataset, writing a transcript for the checker");
        foreach (var o in new Option[] { model, crosscoder, data, strategy, clusters, seed, budget, shard, output, allow, noTrue, block, db, noRecord, force, json }) cmd.Options.Add(o);
        cmd.SetAction((pr, ct) => Task.FromResult(CommandRunner.Run(pr, json, ct, ctx =>
        {
            string s = pr.GetValue(strategy)!;
            // An option the chosen strategy would not use is refused by name, never ignored.
            if (pr.GetResult(clusters) is { Implicit: false } && s != Strategies.Clustered) throw new UsageException($"--clusters applies to the strategy clustered, not {s}");
            if (pr.GetResult(budget) is { Implicit: false } && s != Strategies.Mixed) throw new UsageException($"--budget applies to the strategy mixed, not {s}");
            string path = pr.GetValue(output)!.FullName;
            OutputGuard.Check("--out", path, directory: false,
                [pr.GetValue(model)!.FullName, pr.GetValue(crosscoder)?.FullName, pr.GetValue(data)!.FullName], store: pr.GetValue(db)!.FullName);
            if (File.Exists(path) && !pr.GetValue(force)) throw new OutputExistsException(path);
            var inputs = Load(pr.GetValue(model)!.FullName, pr.GetValue(crosscoder)?.FullName, pr.GetValue(data)!.FullName, s, pr.GetValue(allow));
            if (pr.GetValue(shard) is { } sh) inputs = inputs.Sharded(ShardSpec.Parse(sh));
            var r = Run(ctx, s, inputs, path, !pr.GetValue(noTrue), pr.GetValue(clusters), pr.GetValue(seed), pr.GetValue(force), pr.GetValue(block), pr.GetValue(budget));
            Verifier.Store.AuditHead? head = null;
            if (inputs.Shard is { } part) ctx.Say($"  shard {part.Spec} of {part.Whole.Count} sequences: not recorded in the store (merge the shards with `verifier merge`)");
            else if (!pr.GetValue(noRecord))
            {
                using var store = new Verifier.Store.VerifierStore(pr.GetValue(db)!.FullName);
                Record(store, inputs, r, s == Strategies.Clustered ? pr.GetValue(clusters) : null, budget: s == Strategies.Mixed ? pr.GetValue(budget) : null);
                head = StoreOptions.ReportHead(ctx, store);
            }
            if (ctx.Json) ctx.WriteJson(StoreOptions.WithHead(Summary(r), head));
            else Print(ctx, r);
            return ExitCodes.Ok;
        })));
        return cmd;
    }

    public static BoundInputs Load(string modelDir, string? ccDir, string dataPath, string strategy, bool allowMismatch)
    {
        var weights = ModelWeights.Load(modelDir);
        var data = TokenDataset.Load(dataPath, weights.Config);
        CrosscoderWeights? cc = null;
        if (Strategies.NeedsCrosscoder(strategy))
        {
            if (ccDir is null) throw new UsageException($"the strategy '{strategy}' needs --crosscoder DIR");
            string sha = Hashing.Sha256File(Path.Combine(modelDir, ModelWeights.WeightsFileName));
            cc = CrosscoderWeights.Load(ccDir, (weights.Config, sha, modelDir), allowMismatch);
        }
        return new BoundInputs(weights, modelDir, data, dataPath, cc, cc is null ? null : ccDir);
    }

    public static BoundResult Run(CommandContext ctx, string strategy, BoundInputs inputs, string path, bool trueLoss, int clusters = 1, ulong seed = 0, bool overwrite = false,
        int block = BruteForceStrategy.DefaultBlock, double budget = 0.1) =>
        ctx.WithProgress($"bound {strategy}", report => BoundProgram.Run(strategy, inputs, path, trueLoss,
            new SyncProgress<(int Done, int Total)>(p => report((double)p.Done / p.Total, $"{p.Done}/{p.Total} sequences")), ctx.Cancel, clusters, seed, overwrite, block, budget));

    /// <summary>Records a finished run: the artefacts, the run and an audit entry. <paramref name="finalPath"/> maps a
    /// path as written now to where it will be once the output is published (the demo builds in a temporary directory).</summary>
    public static long Record(Verifier.Store.VerifierStore store, BoundInputs inputs, BoundResult r, int? clusters, Func<string, string>? finalPath = null, double? budget = null)
    {
        var map = finalPath ?? (p => p);
        var arts = inputs.Artefacts().Select(a => a with { Path = a.Path is null ? null : map(a.Path) }).ToList();
        string Sha(string role) => arts.First(a => a.Role == role).Sha256;
        var parameters = clusters is { } c ? $"{{\"clusters\":{c}}}" : budget is { } b ? $"{{\"budget\":{b.ToString("R", System.Globalization.CultureInfo.InvariantCulture)}}}" : "{}";
        return store.RecordRun(new Verifier.Store.RunRecord(0, r.Strategy, parameters, Sha("model_weights"), Sha("dataset"),
            arts.FirstOrDefault(a => a.Role == "crosscoder_weights")?.Sha256, r.B0, r.TrueLoss, r.Cost.Flops, r.Cost.Bits, r.WallSeconds,
            Hashing.Sha256File(r.Transcript), map(r.Transcript), ""), arts);
    }

    public static object Summary(BoundResult r) => new
    {
        B0 = r.B0, r.TrueLoss, r.Cost.Flops, r.Cost.Bits, r.Strategy, Transcript = r.Transcript,
        FlopsDatasetDependent = r.Cost.FlopsDatasetDependent, FlopsDatasetIndependent = r.Cost.FlopsDatasetIndependent,
        r.Steps, r.WallSeconds, r.AccuracyLb, Details = r.Details,
    };

    static void Print(CommandContext ctx, BoundResult r)
    {
        ctx.Say($"{r.Strategy}: mean cross-entropy ≤ b₀ = {r.B0:R}");
        if (r.TrueLoss is { } tl) ctx.Say($"  true loss {tl:R} (float64; b₀ − true = {r.B0 - tl:E3})");
        ctx.Say($"  proof cost {r.Cost.Flops:N0} FLOPs ({r.Cost.FlopsDatasetDependent:N0} dataset-dependent, {r.Cost.FlopsDatasetIndependent:N0} independent), {r.Cost.Bits:E3} bits");
        ctx.Say($"  {r.Steps} steps in {r.Transcript} ({r.WallSeconds:F2} s)");
        if (r.AccuracyLb is { } acc) ctx.Say($"  certified accuracy ≥ {Math.Floor(acc * 1e5) / 1e3:F3} % of the labelled positions (rounded down)");
        if (r.Details is { } det) ctx.Say($"  details {det.ToJsonString()}");
    }
}
