using System.CommandLine;
using System.Diagnostics;
using Verifier.Bounds;
using Verifier.Checker;
using Verifier.Store;
using Verifier.Core;
using Verifier.Crosscoders;
using Verifier.Model;

namespace Verifier.Cli;

/// <summary>Everything that exists, end to end, on the built-in defaults: train the default max-of-k model,
/// evaluate it in float64 through TorchSharp and through the plain C# reference, and summarise.</summary>
static class DemoCommand
{
    /// <summary>Every strategy, clustered once per cluster count, mixed once per budget.</summary>
    static IEnumerable<(string Strategy, int Clusters, double Budget)> Plan(string clusterCounts, string budgets)
    {
        var counts = ClusterCounts(clusterCounts);
        var fractions = budgets.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(x => double.TryParse(x, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double b) && b >= 0 && b <= 1 ? b
                : throw new UsageException($"--budgets: '{x}' is not a fraction in [0, 1]")).ToList();
        yield return (Strategies.BruteForce, 1, 0);
        yield return (Strategies.CrosscoderExhaustive, 1, 0);
        yield return (Strategies.CrosscoderTables, 1, 0);
        yield return (Strategies.CrosscoderCompact, 1, 0);
        foreach (double b in fractions) yield return (Strategies.Mixed, 1, b);
        foreach (int c in counts) yield return (Strategies.Clustered, c, 0);
        yield return (Strategies.Trivial, 1, 0);
    }

    /// <summary>The cluster counts of <c>--clusters</c> (comma-separated positive integers), refused by value otherwise.</summary>
    public static List<int> ClusterCounts(string clusterCounts) =>
        clusterCounts.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(x => int.TryParse(x, out int c) && c > 0 ? c : throw new UsageException($"--clusters: '{x}' is not a positive integer")).ToList();

    /// <summary>Names of the points not dominated in (FLOPs, b₀): no other point is at most as costly and at most as
    /// loose with one of the two strictly smaller.</summary>
    public static HashSet<string> Frontier(IReadOnlyList<(string Name, long Flops, double B0)> points) =>
        points.Where(p => !Verifier.Store.Frontier.Dominated(p.Flops, p.B0, points.Select(q => (q.Flops, q.B0))))
              .Select(p => p.Name).ToHashSet();

    /// <summary>Where <paramref name="path"/>, written inside the temporary directory <paramref name="tmp"/>, will be
    /// once <paramref name="tmp"/> is renamed to <paramref name="dir"/>: what the store must record.</summary>
    public static string FinalPath(string tmp, string dir, string path)
    {
        string rel = Path.GetRelativePath(Path.GetFullPath(tmp), Path.GetFullPath(path));
        return rel == ".." || rel.StartsWith(".." + Path.DirectorySeparatorChar, StringComparison.Ordinal) || Path.IsPathRooted(rel)
            ? Path.GetFullPath(path) : Path.Combine(dir, rel);
    }

    public static Command Build()
    {
        var output = new Option<DirectoryInfo>("--out") { Description = "Directory for everything the demo writes", Required = true };
        var train = new TrainingOptions();
        var width = Options.Positive<int>("--width", "Crosscoder width", 256);
        var k = Options.Positive<int>("--k", "Crosscoder top-k", 8);
        var ccSteps = Options.Positive<int>("--crosscoder-steps", "Crosscoder Adam steps", 1500);
        var sequences = Options.Positive<int>("--sequences", "Sequences whose activations train the crosscoder", 20000);
        var boundSequences = Options.Positive<int>("--bound-sequences", "Sequences in the dataset X the bounds are about", 1024);
        var clusterCounts = new Option<string>("--clusters") { Description = "Cluster counts for the clustered strategy, comma-separated", DefaultValueFactory = _ => "1,8,64,256" };
        var budgets = new Option<string>("--budgets") { Description = "FLOP budgets (fractions of brute force's) for the mixed strategy, comma-separated", DefaultValueFactory = _ => "0.4,0.5,0.6,0.7,0.8,0.9" };
        var force = Options.Force();
        var json = Options.Json();
        var arch = new Option<string>("--arch") { Description = "basic: the max-of-k model (no normalisation, ReLU) and every strategy | gpt2-like: a 2-layer LayerNorm + gelu_new language model on the Shakespeare sample (GPT-2 BPE, 256 most frequent ids), bounded by brute force, clustered and trivial", DefaultValueFactory = _ => "basic" };
        arch.AcceptOnlyFromAmong("basic", "gpt2-like");
        var text = new Option<FileInfo?>("--text") { Description = "gpt2-like: the UTF-8 text to train on (default: the Shakespeare sample built into verifier, data/shakespeare.txt)" };
        var cmd = new Command("demo", "Run the whole pipeline on built-in defaults (max-of-k, or --arch gpt2-like: a small language model) and print a short summary");
        cmd.Options.Add(output); train.AddTo(cmd);
        foreach (var o in new Option[] { width, k, ccSteps, sequences, boundSequences, clusterCounts, budgets, arch, text, force, json }) cmd.Options.Add(o);
        cmd.SetAction((pr, ct) => Task.FromResult(CommandRunner.Run(pr, json, ct, ctx =>
        {
            if (pr.GetValue(arch) == "gpt2-like") return LanguageModel(pr, ctx, output, train, width, k, ccSteps, sequences, boundSequences, clusterCounts, budgets, text, force);
            if (pr.GetValue(text) is not null) throw new UsageException("--text applies to --arch gpt2-like only (the basic demo is max-of-k)");
            var sw = Stopwatch.StartNew();
            var task = TaskCatalog.Create("max-of-k", new TaskCatalog.Parameters());
            var config = ModelConfig.Create(32, 2, 16, 64, 1, task.NCtx, task.DVocab, task.DVocabOut, attnOnly: false);
            var o = train.For(pr);
            string dir = pr.GetValue(output)!.FullName;
            OutputGuard.Check("--out", dir, directory: true, []);
            TrainMetrics? m = null;
            CrosscoderMetrics? cm = null;
            var bounds = new List<(string Name, BoundResult Result)>();
            var verdicts = new Dictionary<string, Verdict>();
            bool auditIntact = false;
            string? storeHead = null;
            double refLoss = double.NaN, refAcc = double.NaN;
            var cco = new CrosscoderOptions(Width: pr.GetValue(width), Mode: CrosscoderModes.TopK, K: pr.GetValue(k),
                Steps: pr.GetValue(ccSteps), Seed: pr.GetValue(train.Seed));
            AtomicOutput.WriteDirectory(dir, pr.GetValue(force), tmp =>
            {
                string modelDir = Path.Combine(tmp, "model");
                Directory.CreateDirectory(modelDir);
                m = ModelTraining.TrainInto(modelDir, task, config, o, ctx);
                // The same held-out file, reloaded from disk, through the plain C# float64 forward.
                var weights = ModelWeights.Load(modelDir);
                var test = TokenDataset.Load(Path.Combine(modelDir, ModelTraining.TestFile), weights.Config);
                (refLoss, refAcc, _) = ReferenceForward.Evaluate(weights, test);

                // Activations for the crosscoder: a fresh max-of-k sample, saved beside the model.
                string dataPath = Path.Combine(tmp, "activations-data.jsonl");
                var data = task.Generate(pr.GetValue(sequences), pr.GetValue(train.Seed), "crosscoder-data");
                data.Save(dataPath);
                string ccDir = Path.Combine(tmp, "crosscoder");
                Directory.CreateDirectory(ccDir);
                cm = CrosscoderTraining.TrainInto(ccDir, modelDir, weights, dataPath, data, null, null, weights.Config.SiteNames(), cco, ctx);

                // Bounds: every strategy on a fresh sample X, each writing a transcript.
                string boundPath = Path.Combine(tmp, "bound-data.jsonl");
                task.Generate(pr.GetValue(boundSequences), pr.GetValue(train.Seed), "bound").Save(boundPath);
                string tdir = Path.Combine(tmp, "transcripts");
                Directory.CreateDirectory(tdir);
                foreach (var (strategy, clusters, budget) in Plan(pr.GetValue(clusterCounts)!, pr.GetValue(budgets)!))
                {
                    var inputs = BoundCommand.Load(modelDir, ccDir, boundPath, strategy, allowMismatch: false);
                    string name = strategy == Strategies.Clustered ? $"clustered-{clusters}"
                        : strategy == Strategies.Mixed ? $"mixed-{budget.ToString(System.Globalization.CultureInfo.InvariantCulture)}" : strategy;
                    var r = BoundCommand.Run(ctx, strategy, inputs, Path.Combine(tdir, name + ".json"), trueLoss: true, clusters, pr.GetValue(train.Seed), budget: budget);
                    bounds.Add((name, r));
                }

                // The independent checker replays every transcript; runs and verdicts go to the store; the frontier is plotted.
                (auditIntact, storeHead) = CheckRecordPlot(ctx, tmp, dir, modelDir, ccDir, boundPath, bounds, verdicts, config.DVocabOut);
            });
            var frontier = Frontier(bounds.Select(b => (b.Name, b.Result.Cost.Flops, b.Result.B0)).ToList());
            var e = cm!.Evaluation;
            var summary = new
            {
                Out = dir, Model = Path.Combine(dir, "model"), Task = m!.TaskDescription, m.Parameters,
                HeldOutAccuracy = m.HeldOutAccuracy, HeldOutLoss = m.HeldOutLoss, ReferenceLoss = refLoss,
                ReferenceAccuracy = refAcc, TrainSeconds = m.WallSeconds, WallSeconds = Math.Round(sw.Elapsed.TotalSeconds, 2),
                ModelSha256 = m.WeightsSha256,
                Crosscoder = new
                {
                    Path = Path.Combine(dir, "crosscoder"), cco.Width, cco.Mode, cco.K, e.MeanFvu, e.MeanL0,
                    DeadFraction = cm.Training.DeadFraction, e.NeverFiredFraction, MinLossRecovered = e.Sites.Min(s => s.LossRecovered),
                    TrainSeconds = cm.TrainSeconds, e.Sites,
                },
                Bounds = bounds.Select(b => new
                {
                    Strategy = b.Name, b.Result.B0, b.Result.AccuracyLb, b.Result.TrueLoss, b.Result.Cost.Flops, b.Result.Cost.Bits, b.Result.WallSeconds,
                    NonDominated = frontier.Contains(b.Name), Transcript = Path.Combine(dir, "transcripts", Path.GetFileName(b.Result.Transcript)),
                    Verdict = verdicts[b.Name].Accepted ? "accepted" : "rejected", CheckerSeconds = verdicts[b.Name].Seconds,
                    CheckerOverGenerator = verdicts[b.Name].Seconds / Math.Max(1e-9, b.Result.WallSeconds),
                }),
                Plot = Path.Combine(dir, "frontier.png"), Store = Path.Combine(dir, VerifierStore.DefaultFileName), AuditIntact = auditIntact, StoreHead = storeHead,
            };
            if (ctx.Json) ctx.WriteJson(summary);
            else
            {
                ctx.Say($"Verifier demo → {dir}");
                ctx.Say($"  task      {m.TaskDescription}");
                ctx.Say($"  model     {config.NLayers} layer, d_model {config.DModel}, {config.NHeads} heads × {config.DHead}, d_mlp {config.DMlp}; {m.Parameters} parameters");
                ctx.Say($"  training  {m.Steps} steps AdamW, seed {m.Seed}, {m.WallSeconds:F1} s");
                ctx.Say($"  held out  accuracy {m.HeldOutAccuracy:P2}, loss {m.HeldOutLoss:F5} (float64 TorchSharp, {m.HeldOutPositions} positions)");
                ctx.Say($"  check     plain C# float64 forward: loss {refLoss:F5}, |Δ| {Math.Abs(refLoss - m.HeldOutLoss):E1}");
                ctx.Say($"  crosscoder width {cco.Width}, top-{cco.K}, {e.Sites.Count} sites, {cco.Steps} steps, {cm.TrainSeconds:F1} s:");
                ctx.Say($"            mean FVU {e.MeanFvu:F4}, mean L0 {e.MeanL0:F2}, dead {cm.Training.DeadFraction:P1} (no activation in the last {cco.DeadTokens} training tokens)");
                ctx.Say($"            spliced-in loss recovered: {string.Join(", ", e.Sites.Select(s => $"{s.Site} {s.LossRecovered:P2}"))}");
                ctx.Say($"  bounds    on {pr.GetValue(boundSequences)} fresh sequences (true loss {bounds[0].Result.TrueLoss:G6}); * = non-dominated in (FLOPs, b₀):");
                SayBounds(ctx, bounds, verdicts, frontier);
                ctx.Say($"            uniform guess: ln d_vocab_out = {Math.Log(config.DVocabOut):F4}");
                ctx.Say($"  store     {Path.Combine(dir, VerifierStore.DefaultFileName)} (audit chain {(auditIntact ? "intact" : "BROKEN")}, head {storeHead}); plot {Path.Combine(dir, "frontier.png")}");
                ctx.Say($"  total     {sw.Elapsed.TotalSeconds:F1} s");
            }
            return verdicts.Values.All(v => v.Accepted) && auditIntact ? ExitCodes.Ok : ExitCodes.Rejected;
        })));
        return cmd;
    }

    /// <summary>The independent checker replays every transcript; runs and verdicts go to the store in <paramref name="tmp"/>
    /// (with the paths they will have under <paramref name="dir"/>); the frontier is plotted. Returns the audit check and head.</summary>
    public static (bool Intact, string? Head) CheckRecordPlot(CommandContext ctx, string tmp, string dir, string modelDir, string ccDir, string boundPath,
        List<(string Name, BoundResult Result)> bounds, Dictionary<string, Verdict> verdicts, int dVocabOut)
    {
        using var store = new VerifierStore(Path.Combine(tmp, VerifierStore.DefaultFileName));
        foreach (var (name, r) in bounds)
        {
            var inputs = BoundCommand.Load(modelDir, ccDir, boundPath, r.Strategy, allowMismatch: false);
            BoundCommand.Record(store, inputs, r, r.Strategy == Strategies.Clustered ? int.Parse(name.Split('-')[^1]) : null,
                p => FinalPath(tmp, dir, p),
                r.Strategy == Strategies.Mixed ? double.Parse(name.Split('-')[^1], System.Globalization.CultureInfo.InvariantCulture) : null);
            var v = ctx.WithProgress($"checking {name}", _ => TranscriptChecker.Check(r.Transcript, modelDir, ccDir, boundPath));
            CheckCommand.Record(store, v, r.Transcript);
            verdicts[name] = v;
        }
        var modelSha = Hashing.Sha256File(Path.Combine(modelDir, ModelWeights.WeightsFileName));
        var points = Verifier.Store.Frontier.Compute(store.Runs(modelSha, TokenDataset.Load(boundPath).ContentHash()));
        FrontierPlot.Write(points, Path.Combine(tmp, "frontier.png"), Math.Log(dVocabOut));
        FrontierPlot.Write(points, Path.Combine(tmp, "frontier.svg"), Math.Log(dVocabOut));
        return (store.VerifyAudit().Intact, store.LastWrite?.ToString());
    }

    /// <summary>The bounds table both demos print: * marks the non-dominated points.</summary>
    static void SayBounds(CommandContext ctx, List<(string Name, BoundResult Result)> bounds, Dictionary<string, Verdict> verdicts, HashSet<string> frontier)
    {
        ctx.Say($"            {"strategy",-24} {"b₀",14} {"FLOPs",16} {"bound s",8} {"check",9} {"check s",8} {"acc ≥",8}");
        foreach (var (name, r) in bounds)
            ctx.Say($"          {(frontier.Contains(name) ? "*" : " ")} {name,-24} {r.B0,14:G6} {r.Cost.Flops,16:N0} {r.WallSeconds,8:F2} {(verdicts[name].Accepted ? "accepted" : "REJECTED"),9} {verdicts[name].Seconds,8:F2} {(r.AccuracyLb is { } a ? $"{Math.Floor(a * 1e3) / 10:F1} %" : ""),8}");
    }

    static bool Given(ParseResult pr, Option o) => pr.GetResult(o) is { Implicit: false };

    /// <summary>demo --arch gpt2-like (DemoLanguageModel), with its own defaults for every option not given.</summary>
    static int LanguageModel(ParseResult pr, CommandContext ctx, Option<DirectoryInfo> output, TrainingOptions train, Option<int> width, Option<int> k,
        Option<int> ccSteps, Option<int> sequences, Option<int> boundSequences, Option<string> clusterCounts, Option<string> budgets, Option<FileInfo?> text, Option<bool> force)
    {
        if (Given(pr, budgets)) throw new UsageException("--budgets does not apply to --arch gpt2-like (the mixed strategy needs crosscoder-compact, which supports only the basic architecture)");
        var sw = Stopwatch.StartNew();
        var d = new DemoLanguageModel.Sizes();
        var z = d with
        {
            BoundSequences = Given(pr, boundSequences) ? pr.GetValue(boundSequences) : d.BoundSequences,
            Clusters = Given(pr, clusterCounts) ? pr.GetValue(clusterCounts)! : d.Clusters,
        };
        var t = train.For(pr);
        int steps = Given(pr, train.Steps) ? t.Steps : z.Steps;
        var o = t with
        {
            Steps = steps, BatchSize = Given(pr, train.BatchSize) ? t.BatchSize : z.BatchSize, WarmupSteps = Math.Min(100, steps / 10),
        };
        var cco = new CrosscoderOptions(Width: Given(pr, width) ? pr.GetValue(width) : 128, Mode: CrosscoderModes.TopK, K: pr.GetValue(k),
            Steps: Given(pr, ccSteps) ? pr.GetValue(ccSteps) : 500, Seed: pr.GetValue(train.Seed));
        int ccSeqs = Given(pr, sequences) ? pr.GetValue(sequences) : int.MaxValue;
        string dir = pr.GetValue(output)!.FullName;
        string? textFile = pr.GetValue(text)?.FullName;
        if (textFile is not null && !File.Exists(textFile)) throw new InvalidInputException(textFile, "file", "does not exist");
        OutputGuard.Check("--out", dir, directory: true, [textFile]);
        DemoLanguageModel.Outcome? r = null;
        AtomicOutput.WriteDirectory(dir, pr.GetValue(force), tmp => r = DemoLanguageModel.Run(ctx, tmp, dir, textFile, z, o, cco, ccSeqs));
        var frontier = Frontier(r!.Bounds.Select(b => (b.Name, b.Result.Cost.Flops, b.Result.B0)).ToList());
        var e = r.Crosscoder.Evaluation; var m = r.Model; var c = r.Config;
        if (ctx.Json)
            ctx.WriteJson(new
            {
                Out = dir, Architecture = c.Features(), Task = m.TaskDescription, m.Parameters, m.HeldOutAccuracy, m.HeldOutLoss, r.ReferenceLoss,
                TrainSeconds = m.WallSeconds, WallSeconds = Math.Round(sw.Elapsed.TotalSeconds, 2), ModelSha256 = m.WeightsSha256,
                Text = new { r.Text.Windows, r.Text.StreamTokens, r.Text.DVocab, r.Text.ContentHash },
                Crosscoder = new { cco.Width, cco.K, e.MeanFvu, e.MeanL0, MinLossRecovered = e.Sites.Min(s => s.LossRecovered), r.Crosscoder.TrainSeconds, e.Sites },
                Bounds = r.Bounds.Select(b => new
                {
                    Strategy = b.Name, b.Result.B0, b.Result.AccuracyLb, b.Result.TrueLoss, b.Result.Cost.Flops, b.Result.WallSeconds, NonDominated = frontier.Contains(b.Name),
                    Verdict = r.Verdicts[b.Name].Accepted ? "accepted" : "rejected", CheckerSeconds = r.Verdicts[b.Name].Seconds,
                }),
                NotRun = "crosscoder-exhaustive, crosscoder-compact, mixed: their lemmas support only the basic architecture",
                Plot = Path.Combine(dir, "frontier.png"), Store = Path.Combine(dir, VerifierStore.DefaultFileName), r.AuditIntact, r.StoreHead,
            });
        else
        {
            ctx.Say($"Verifier demo (gpt2-like language model) → {dir}");
            ctx.Say($"  text      {(textFile ?? "the built-in Shakespeare sample")}: {r.Text.StreamTokens:N0} GPT-2 tokens, {r.Text.Windows:N0} windows of {r.Text.NCtx} (BOS first), ids mapped to the {r.Text.DVocab - 1} most frequent + <unk>");
            ctx.Say($"  model     {c.NLayers} layers, d_model {c.DModel}, {c.NHeads} heads × {c.DHead}, d_mlp {c.DMlp}; {string.Join(", ", c.Features())}; {m.Parameters} parameters");
            ctx.Say($"  training  {m.Steps} steps AdamW, seed {m.Seed}, {m.WallSeconds:F1} s");
            ctx.Say($"  held out  accuracy {m.HeldOutAccuracy:P2}, loss {m.HeldOutLoss:F4} (float64 TorchSharp, {m.HeldOutPositions} positions); plain C# float64 |Δ| {Math.Abs(r.ReferenceLoss - m.HeldOutLoss):E1}");
            ctx.Say($"  crosscoder width {cco.Width}, top-{cco.K}, {e.Sites.Count} sites, {cco.Steps} steps, {r.Crosscoder.TrainSeconds:F1} s: mean FVU {e.MeanFvu:F4}, mean L0 {e.MeanL0:F2}");
            ctx.Say($"            spliced-in loss recovered: {string.Join(", ", e.Sites.Select(s => $"{s.Site} {s.LossRecovered:P1}"))}");
            ctx.Say($"  bounds    on {r.BoundSequences} held-out windows (true loss {r.Bounds[0].Result.TrueLoss:G6}); * = non-dominated in (FLOPs, b₀):");
            SayBounds(ctx, r.Bounds, r.Verdicts, frontier);
            ctx.Say($"            uniform guess: ln d_vocab_out = {Math.Log(c.DVocabOut):F4}; not run: crosscoder-exhaustive, crosscoder-compact and mixed (their lemmas support only the basic architecture)");
            ctx.Say($"  store     {Path.Combine(dir, VerifierStore.DefaultFileName)} (audit chain {(r.AuditIntact ? "intact" : "BROKEN")}, head {r.StoreHead}); plot {Path.Combine(dir, "frontier.png")}");
            ctx.Say($"  total     {sw.Elapsed.TotalSeconds:F1} s");
        }
        return r.Verdicts.Values.All(v => v.Accepted) && r.AuditIntact ? ExitCodes.Ok : ExitCodes.Rejected;
    }
}
