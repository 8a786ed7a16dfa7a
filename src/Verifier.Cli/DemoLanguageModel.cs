using System.CommandLine;
using System.Diagnostics;
using System.Reflection;
using Verifier.Bounds;
using Verifier.Checker;
using Verifier.Core;
using Verifier.Crosscoders;
using Verifier.Model;
using Verifier.Store;
using Verifier.Text;

namespace Verifier.Cli;

/// <summary><c>demo --arch gpt2-like</c>: a 2-layer LayerNorm + gelu_new language model on the Shakespeare sample the
/// repository ships (GPT-2 BPE, the most frequent ids kept), a crosscoder over its residual sites, every strategy that
/// certifies this architecture (brute force, crosscoder-tables, clustered, trivial), their checks, the store and the frontier.</summary>
static class DemoLanguageModel
{
    /// <summary>The sizes of the demo's model: small enough to bound by brute force on a laptop's cores in about a minute.</summary>
    public sealed record Sizes(int NCtx = 16, int VocabTop = 256, int DModel = 32, int NHeads = 4, int DHead = 8, int DMlp = 128, int NLayers = 2,
        int Steps = 400, int BatchSize = 32, int BoundSequences = 64, string Clusters = "1,8,64");

    /// <summary>The Shakespeare sample (data/shakespeare.txt) embedded in the CLI, so the demo and bench tokenize need no checkout.</summary>
    public static Stream OpenSample() => Assembly.GetExecutingAssembly().GetManifestResourceStream("shakespeare.txt")
        ?? throw new InvalidOperationException("the embedded Shakespeare sample is missing from this build");

    /// <summary>What <see cref="OpenSample"/> reads, as the source of a text in messages and JSON.</summary>
    public const string SampleName = "the Shakespeare sample built into verifier (data/shakespeare.txt)";

    public static void WriteSample(string path)
    {
        using var s = OpenSample();
        using var f = File.Create(path);
        s.CopyTo(f);
    }

    public sealed record Outcome(TrainMetrics Model, CrosscoderMetrics Crosscoder, TextDatasetResult Text, int BoundSequences,
        List<(string Name, BoundResult Result)> Bounds, Dictionary<string, Verdict> Verdicts, bool AuditIntact, string? StoreHead, ModelConfig Config,
        double ReferenceLoss);

    /// <summary>Everything, written inside <paramref name="tmp"/> (renamed to <paramref name="dir"/> by the caller).</summary>
    public static Outcome Run(CommandContext ctx, string tmp, string dir, string? textFile, Sizes z, TrainOptions o, CrosscoderOptions cco, int ccSequences)
    {
        string textPath = Path.Combine(tmp, "text.txt");
        if (textFile is null) WriteSample(textPath); else File.Copy(textFile, textPath);
        string windows = Path.Combine(tmp, "windows.jsonl");
        var text = ctx.WithProgress("tokenizing (GPT-2 BPE)", report => TextDataset.Build(TextSource.Open(textPath, null), TextTokenizer.Open("gpt2"),
            new TextWindowOptions(z.NCtx, VocabTop: z.VocabTop), windows, false, new SyncProgress<(double Fraction, string Status)>(v => report(v.Fraction, v.Status)), ctx.Cancel));
        var data = TokenDataset.Load(windows);
        var task = new DatasetTask(windows, data, text.DVocab);
        var shape = ModelConfig.Create(z.DModel, z.NHeads, z.DHead, z.DMlp, z.NLayers, task.NCtx, task.DVocab, task.DVocabOut, attnOnly: false);
        var config = ArchitectureOptions.Preset("gpt2-like", shape);

        string modelDir = Path.Combine(tmp, "model");
        Directory.CreateDirectory(modelDir);
        var m = ModelTraining.TrainInto(modelDir, task, config, o, ctx);
        var weights = ModelWeights.Load(modelDir);
        var test = TokenDataset.Load(Path.Combine(modelDir, ModelTraining.TestFile), weights.Config);
        var (refLoss, _, _) = ReferenceForward.Evaluate(weights, test);

        // The crosscoder reads the residual sites on (up to ccSequences of) the windows.
        var ccData = new TokenDataset(data.Sequences.Take(ccSequences).ToArray());
        string ccPath = Path.Combine(tmp, "activations-data.jsonl");
        ccData.Save(ccPath);
        string ccDir = Path.Combine(tmp, "crosscoder");
        Directory.CreateDirectory(ccDir);
        var cm = CrosscoderTraining.TrainInto(ccDir, modelDir, weights, ccPath, ccData, null, null, weights.Config.SiteNames(), cco, ctx);

        // Bounds on held-out windows (never trained on).
        string boundPath = Path.Combine(tmp, "bound-data.jsonl");
        int nb = Math.Min(z.BoundSequences, test.Count);
        new TokenDataset(test.Sequences.Take(nb).ToArray()).Save(boundPath);
        var plan = new List<(string, int)> { (Strategies.BruteForce, 1), (Strategies.CrosscoderTables, 1) };
        foreach (int c in DemoCommand.ClusterCounts(z.Clusters)) plan.Add((Strategies.Clustered, c));
        plan.Add((Strategies.Trivial, 1));
        string tdir = Path.Combine(tmp, "transcripts");
        Directory.CreateDirectory(tdir);
        var bounds = new List<(string Name, BoundResult Result)>();
        foreach (var (strategy, clusters) in plan)
        {
            var inputs = BoundCommand.Load(modelDir, ccDir, boundPath, strategy, allowMismatch: false);
            string name = strategy == Strategies.Clustered ? $"clustered-{clusters}" : strategy;
            bounds.Add((name, BoundCommand.Run(ctx, strategy, inputs, Path.Combine(tdir, name + ".json"), trueLoss: true, clusters, o.Seed)));
        }
        var verdicts = new Dictionary<string, Verdict>();
        var (intact, head) = DemoCommand.CheckRecordPlot(ctx, tmp, dir, modelDir, ccDir, boundPath, bounds, verdicts, config.DVocabOut);
        return new Outcome(m, cm, text, nb, bounds, verdicts, intact, head, config, refLoss);
    }
}
