using System.CommandLine;
using System.Diagnostics;
using Verifier.Core;
using Verifier.Model;

namespace Verifier.Cli;

/// <summary>Everything that exists, end to end, on the built-in defaults: train the default max-of-k model,
/// evaluate it in float64 through TorchSharp and through the plain C# reference, and summarise.</summary>
static class DemoCommand
{
    public static Command Build()
    {
        var output = new Option<DirectoryInfo>("--out") { Description = "Directory for everything the demo writes", Required = true };
        var train = new TrainingOptions();
        var force = Options.Force();
        var json = Options.Json();
        var cmd = new Command("demo", "Run the whole pipeline on the built-in defaults (max-of-k) and print a short summary");
        cmd.Options.Add(output); train.AddTo(cmd); cmd.Options.Add(force); cmd.Options.Add(json);
        cmd.SetAction((pr, ct) => Task.FromResult(CommandRunner.Run(pr, json, ct, ctx =>
        {
            var sw = Stopwatch.StartNew();
            var task = TaskCatalog.Create("max-of-k", new TaskCatalog.Parameters());
            var config = ModelConfig.Create(32, 2, 16, 64, 1, task.NCtx, task.DVocab, task.DVocabOut, attnOnly: false);
            var o = train.For(pr);
            string dir = pr.GetValue(output)!.FullName;
            TrainMetrics? m = null;
            double refLoss = double.NaN, refAcc = double.NaN;
            AtomicOutput.WriteDirectory(dir, pr.GetValue(force), tmp =>
            {
                string modelDir = Path.Combine(tmp, "model");
                Directory.CreateDirectory(modelDir);
                m = ModelTraining.TrainInto(modelDir, task, config, o, ctx);
                // The same held-out file, reloaded from disk, through the plain C# float64 forward.
                var weights = ModelWeights.Load(modelDir);
                var test = TokenDataset.Load(Path.Combine(modelDir, ModelTraining.TestFile), weights.Config);
                (refLoss, refAcc, _) = ReferenceForward.Evaluate(weights, test);
            });
            var summary = new
            {
                Out = dir, Model = Path.Combine(dir, "model"), Task = m!.TaskDescription, m.Parameters,
                HeldOutAccuracy = m.HeldOutAccuracy, HeldOutLoss = m.HeldOutLoss, ReferenceLoss = refLoss,
                ReferenceAccuracy = refAcc, TrainSeconds = m.WallSeconds, WallSeconds = Math.Round(sw.Elapsed.TotalSeconds, 2),
                ModelSha256 = m.WeightsSha256,
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
                ctx.Say($"  total     {sw.Elapsed.TotalSeconds:F1} s");
            }
            return ExitCodes.Ok;
        })));
        return cmd;
    }
}
