using System.CommandLine;
using System.Diagnostics;
using Verifier.Bounds;
using Verifier.Checker;
using Verifier.Core;
using Verifier.Model;

namespace Verifier.Cli;

/// <summary><c>verifier bench bound</c>: in one process, the float64 forward (eval) against bound and check for every
/// strategy that needs no crosscoder, on the same N sequences; wall times inside the process (no start-up), ratios
/// bound/eval and check/bound, transcript bytes per sequence, peak memory.</summary>
static class BenchBound
{
    public sealed record Row(string Strategy, double B0, double BoundSeconds, double CheckSeconds, bool Accepted, long TranscriptBytes,
        double BytesPerSequence, int Steps, double BoundOverEval, double CheckOverBound, double? AccuracyLowerBound,
        double BoundCpuSeconds, double CheckCpuSeconds, double BoundOverEvalCpu, double CheckOverBoundCpu);

    public sealed record Report(string Model, int Sequences, long Positions, int Threads, string Build, double EvalSeconds, double EvalLoss,
        double EvalAccuracy, double ReferenceSeconds, IReadOnlyList<Row> Rows, double PeakMemoryMiB, double EvalCpuSeconds, double DataLoadSeconds);

    /// <summary>CPU time of the whole process (every thread, TorchSharp's native ones included): on a shared machine the
    /// wall-clock ratios move with the other load, the CPU-time ratios much less.</summary>
    static double Cpu() { using var p = Process.GetCurrentProcess(); return p.TotalProcessorTime.TotalSeconds; }

    public static Command Build()
    {
        var model = new Option<DirectoryInfo?>("--model") { Description = "Model directory (default: train the demo's max-of-k model, 1 500 steps)" };
        var count = Options.Positive<int>("--sequences", "Sequences N of max-of-k data to bound", 65536);
        var data = new Option<FileInfo?>("--data") { Description = "Use this dataset instead of N fresh max-of-k sequences" };
        var strategies = new Option<string>("--strategies") { Description = "Strategies to bound and check, comma-separated", DefaultValueFactory = _ => "brute-force,trivial" };
        var block = Options.Positive<int>("--block", "brute-force: sequences per BFB step", BruteForceStrategy.DefaultBlock);
        var output = new Option<DirectoryInfo?>("--out") { Description = "Directory for the model, data and transcripts (default: a temporary directory, removed)" };
        var json = Options.Json();
        var cmd = new Command("bound", "Bound and check time against the float64 forward pass on the same data, in one process");
        foreach (var o in new Option[] { model, count, data, strategies, block, output, json }) cmd.Options.Add(o);
        cmd.SetAction((pr, ct) => Task.FromResult(CommandRunner.Run(pr, json, ct, ctx =>
        {
            string dir = pr.GetValue(output)?.FullName ?? Path.Combine(Path.GetTempPath(), $"verifier-bench-{Guid.NewGuid():N}");
            Directory.CreateDirectory(dir);
            try
            {
                string modelDir = pr.GetValue(model)?.FullName ?? TrainDemo(ctx, dir);
                var weights = ModelWeights.Load(modelDir);
                string dataPath = pr.GetValue(data)?.FullName ?? Path.Combine(dir, "bench-data.jsonl");
                if (pr.GetValue(data) is null)
                    new MaxOfKTask(weights.Config.DVocab, weights.Config.NCtx).Generate(pr.GetValue(count), 1, "bench").Save(dataPath, overwrite: true);
                var load = Stopwatch.StartNew();
                var dataset = TokenDataset.Load(dataPath, weights.Config);
                double loadSeconds = load.Elapsed.TotalSeconds;

                Evaluator.Evaluate(weights, dataset.Slice(0, Math.Min(256, dataset.Count)));   // TorchSharp's one-time native start-up, not timed
                // Each of eval, bound and check is timed as its command does its work: reading the model and the data
                // from disk (check also hashes them), then computing; only process start-up is left out of all three.
                double cpu0 = Cpu();
                var sw = Stopwatch.StartNew();
                var ev = Evaluator.Evaluate(ModelWeights.Load(modelDir), TokenDataset.Load(dataPath, weights.Config));
                double evalSeconds = sw.Elapsed.TotalSeconds, evalCpu = Cpu() - cpu0;
                sw.Restart();
                ReferenceForward.Evaluate(weights, dataset);
                double refSeconds = sw.Elapsed.TotalSeconds;

                var rows = new List<Row>();
                foreach (var s in pr.GetValue(strategies)!.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
                {
                    if (Strategies.NeedsCrosscoder(s)) throw new UsageException($"bench bound: '{s}' needs a crosscoder; use brute-force and trivial");
                    string t = Path.Combine(dir, s + ".json");
                    cpu0 = Cpu();
                    sw.Restart();
                    var inputs = BoundCommand.Load(modelDir, null, dataPath, s, allowMismatch: false);
                    var r = ctx.WithProgress($"bound {s}", report => BoundProgram.Run(s, inputs, t, computeTrueLoss: false,
                        progress: new SyncProgress<(int Done, int Total)>(p => report((double)p.Done / p.Total, $"{p.Done}/{p.Total}")), ct: ctx.Cancel,
                        overwrite: true, block: pr.GetValue(block)));
                    double boundSeconds = sw.Elapsed.TotalSeconds, boundCpu = Cpu() - cpu0;
                    cpu0 = Cpu();
                    sw.Restart();
                    var v = ctx.WithProgress($"check {s}", _ => TranscriptChecker.Check(t, modelDir, null, dataPath));
                    double checkSeconds = sw.Elapsed.TotalSeconds, checkCpu = Cpu() - cpu0;
                    long bytes = new FileInfo(t).Length;
                    double? acc = v.Errors is double e && v.Positions is long p ? 1 - e / p : null;
                    rows.Add(new Row(s, r.B0, boundSeconds, checkSeconds, v.Accepted, bytes, (double)bytes / dataset.Count, r.Steps,
                        boundSeconds / evalSeconds, checkSeconds / boundSeconds, acc, boundCpu, checkCpu, boundCpu / evalCpu, checkCpu / boundCpu));
                }
#if DEBUG
                const string build = "Debug";
#else
                const string build = "Release";
#endif
                var rep = new Report(modelDir, dataset.Count, dataset.LabelledPositions, Environment.ProcessorCount, build, evalSeconds, ev.Loss, ev.Accuracy,
                    refSeconds, rows, BenchCommand.PeakMemoryMiB(), evalCpu, loadSeconds);
                if (ctx.Json) ctx.WriteJson(rep);
                else
                {
                    ctx.Say($"{rep.Sequences} sequences, {rep.Positions} labelled positions, {rep.Threads} cores, {build} build; times inside one process");
                    ctx.Say($"data load {loadSeconds:F3} s (inside each of eval, bound and check: every one is timed from reading the model and the data to its result)");
                    ctx.Say($"eval (TorchSharp float64 forward): {evalSeconds:F3} s ({evalCpu:F3} CPU s), loss {ev.Loss:G6}, accuracy {ev.Accuracy:P2}; plain C# float64 forward {refSeconds:F3} s");
                    ctx.Say($"{"strategy",-12} {"b0",12} {"bound s",9} {"check s",9} {"bound/eval",10} {"check/bound",11} {"steps",6} {"bytes/seq",9} {"acc ≥",8} verdict");
                    foreach (var r in rows)
                        ctx.Say($"{r.Strategy,-12} {r.B0,12:G6} {r.BoundSeconds,9:F3} {r.CheckSeconds,9:F3} {r.BoundOverEval,10:F2} {r.CheckOverBound,11:F2} {r.Steps,6} {r.BytesPerSequence,9:F2} {(r.AccuracyLowerBound is double a ? a.ToString("P2") : "-"),8} {(r.Accepted ? "accepted" : "REJECTED")}");
                    ctx.Say("CPU time (all threads):");
                    ctx.Say($"{"strategy",-12} {"bound CPU s",11} {"check CPU s",11} {"bound/eval",10} {"check/bound",11}");
                    foreach (var r in rows)
                        ctx.Say($"{r.Strategy,-12} {r.BoundCpuSeconds,11:F3} {r.CheckCpuSeconds,11:F3} {r.BoundOverEvalCpu,10:F2} {r.CheckOverBoundCpu,11:F2}");
                    ctx.Say($"peak memory {rep.PeakMemoryMiB:F0} MiB");
                }
                return rows.All(r => r.Accepted) ? ExitCodes.Ok : ExitCodes.Rejected;
            }
            finally
            {
                if (pr.GetValue(output) is null) Directory.Delete(dir, true);
            }
        })));
        return cmd;
    }

    /// <summary>The demo's model: max-of-k, d_model 32, 2 heads × 16, d_mlp 64, one layer, 1 500 steps.</summary>
    static string TrainDemo(CommandContext ctx, string dir)
    {
        var task = TaskCatalog.Create("max-of-k", new TaskCatalog.Parameters());
        var config = ModelConfig.Create(32, 2, 16, 64, 1, task.NCtx, task.DVocab, task.DVocabOut, attnOnly: false);
        string modelDir = Path.Combine(dir, "model");
        if (Directory.Exists(modelDir) && File.Exists(Path.Combine(modelDir, ModelWeights.WeightsFileName))) return modelDir;
        Directory.CreateDirectory(modelDir);
        ModelTraining.TrainInto(modelDir, task, config, new TrainOptions(1500, 256, 3e-3, 0.01, WarmupSteps: 100, Seed: 0), ctx);
        return modelDir;
    }
}
