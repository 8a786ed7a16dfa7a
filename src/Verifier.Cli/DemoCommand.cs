using System.CommandLine;
using System.Diagnostics;
using Verifier.Core;
using Verifier.Crosscoders;
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
        var width = Options.Positive<int>("--width", "Crosscoder width", 256);
        var k = Options.Positive<int>("--k", "Crosscoder top-k", 8);
        var ccSteps = Options.Positive<int>("--crosscoder-steps", "Crosscoder Adam steps", 1500);
        var sequences = Options.Positive<int>("--sequences", "Sequences whose activations train the crosscoder", 20000);
        var force = Options.Force();
        var json = Options.Json();
        var cmd = new Command("demo", "Run the whole pipeline on the built-in defaults (max-of-k) and print a short summary");
        cmd.Options.Add(output); train.AddTo(cmd);
        foreach (var o in new Option[] { width, k, ccSteps, sequences, force, json }) cmd.Options.Add(o);
        cmd.SetAction((pr, ct) => Task.FromResult(CommandRunner.Run(pr, json, ct, ctx =>
        {
            var sw = Stopwatch.StartNew();
            var task = TaskCatalog.Create("max-of-k", new TaskCatalog.Parameters());
            var config = ModelConfig.Create(32, 2, 16, 64, 1, task.NCtx, task.DVocab, task.DVocabOut, attnOnly: false);
            var o = train.For(pr);
            string dir = pr.GetValue(output)!.FullName;
            TrainMetrics? m = null;
            CrosscoderMetrics? cm = null;
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
            });
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
                ctx.Say($"  total     {sw.Elapsed.TotalSeconds:F1} s");
            }
            return ExitCodes.Ok;
        })));
        return cmd;
    }
}
