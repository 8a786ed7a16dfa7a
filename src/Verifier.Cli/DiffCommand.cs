using System.CommandLine;
using System.Text.Json;
using ScottPlot;
using Verifier.Bounds.Analysis;
using Verifier.Core;
using Verifier.Crosscoders;
using Verifier.Model;
using Verifier.Store;

namespace Verifier.Cli;

/// <summary>Model diffing with one crosscoder across both models' sites, ranking tokens by the change in ReLU interaction.</summary>
static class DiffCommand
{
    public static Command Build()
    {
        var modelA = new Option<DirectoryInfo>("--model-a") { Description = "First model directory", Required = true };
        var modelB = new Option<DirectoryInfo>("--model-b") { Description = "Second model directory (same shapes)", Required = true };
        var data = new Option<FileInfo>("--data") { Description = "Dataset both models are run on (training and scoring)", Required = true };
        var width = Options.Positive<int>("--width", "Crosscoder width", 256);
        var k = Options.Positive<int>("--k", "Top-k", 8);
        var steps = Options.Positive<int>("--steps", "Adam steps", 1500);
        var seed = Options.Seed("training");
        var trigger = new Option<int?>("--trigger") { Description = "A token to report the rank of (e.g. a planted backdoor)" };
        var output = new Option<DirectoryInfo>("--out") { Description = "Directory for the joint crosscoder, diff.json and diff.png", Required = true };
        var force = Options.Force();
        var db = StoreOptions.Db();
        var noRecord = new Option<bool>("--no-record") { Description = "Do not record the analysis in the store" };
        var json = Options.Json();
        var cmd = new Command("diff-models", "Train one crosscoder across two models' residual sites and rank tokens by how much their ReLU interaction differs between the models");
        foreach (var o in new Option[] { modelA, modelB, data, width, k, steps, seed, trigger, output, force, db, noRecord, json }) cmd.Options.Add(o);
        cmd.SetAction((pr, ct) => Task.FromResult(CommandRunner.Run(pr, json, ct, ctx =>
        {
            string dirA = pr.GetValue(modelA)!.FullName, dirB = pr.GetValue(modelB)!.FullName, dataPath = pr.GetValue(data)!.FullName;
            var a = ModelWeights.Load(dirA); var b = ModelWeights.Load(dirB);
            if (a.Config != b.Config) throw new MismatchException($"{dirA} and {dirB} have different configurations; diffing needs the same shapes");
            var dataset = TokenDataset.Load(dataPath, a.Config);
            string dir = pr.GetValue(output)!.FullName;
            var names = a.Config.SiteNames();
            (IReadOnlyList<TokenDiff> Tokens, IReadOnlyList<NeuronDiff> Neurons) result = ([], []);
            AtomicOutput.WriteDirectory(dir, pr.GetValue(force), tmp =>
            {
                using var ma = new Transformer(a); using var mb = new Transformer(b);
                var all = Enumerable.Range(0, names.Count).ToArray();
                var o = new CrosscoderOptions(pr.GetValue(width), CrosscoderModes.TopK, pr.GetValue(k), Steps: pr.GetValue(steps), Seed: pr.GetValue(seed));
                var (cc, _) = ctx.WithProgress("training the joint crosscoder", report => CrosscoderTrainer.Train([(ma, all), (mb, all)], dataset.Sequences, o,
                    new SyncProgress<CrosscoderProgress>(p => report((double)p.Step / p.TotalSteps, $"step {p.Step}/{p.TotalSteps}  mse {p.Mse:F4}")), ctx.Cancel));
                CrosscoderWeights weights;
                using (cc)
                    weights = cc.ToWeights(new CrosscoderConfig(o.Width, a.Config.DModel, names.Select(s => "a/" + s).Concat(names.Select(s => "b/" + s)).ToList(),
                        o.Mode, o.K, null, cc.Scales, Hashing.Sha256File(Path.Combine(dirA, ModelWeights.WeightsFileName)), dataset.ContentHash(), o.Seed));
                weights.SaveInto(tmp);
                result = ModelDiff.Run(a, b, weights, dataset);
                File.WriteAllText(Path.Combine(tmp, "diff.json"), JsonSerializer.Serialize(new { result.Tokens, Neurons = result.Neurons.Take(50) }, CommandContext.JsonOptions));
                var plt = new Plot();
                var top = result.Tokens.Take(20).ToList();
                var bars = plt.Add.Bars(top.Select(t => t.Difference).ToArray());
                plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(top.Select((t, i) => new Tick(i, t.Token.ToString())).ToArray());
                plt.Title("Tokens ranked by change in ReLU interaction score (model B − model A)");
                plt.XLabel("token"); plt.YLabel("Δ mean interaction score");
                plt.SavePng(Path.Combine(tmp, "diff.png"), 900, 500);
            });
            int? trig = pr.GetValue(trigger);
            int? rank = trig is int tt ? result.Tokens.Select((t, i) => (t, i)).FirstOrDefault(x => x.t.Token == tt).i + 1 : null;
            if (!pr.GetValue(noRecord))
            {
                using var store = new VerifierStore(pr.GetValue(db)!.FullName);
                store.RecordAnalysis("model-diff", Hashing.Sha256File(Path.Combine(dirA, ModelWeights.WeightsFileName)),
                    Hashing.Sha256File(Path.Combine(dir, CrosscoderWeights.WeightsFileName)), dataset.ContentHash(),
                    JsonSerializer.Serialize(new { ModelB = Hashing.Sha256File(Path.Combine(dirB, ModelWeights.WeightsFileName)), Top = result.Tokens.Take(10), TriggerRank = rank }, CommandContext.JsonOptions));
            }
            if (ctx.Json) { ctx.WriteJson(new { Out = dir, Tokens = result.Tokens, Neurons = result.Neurons.Take(20), TriggerRank = rank }); return ExitCodes.Ok; }
            ctx.Say($"{"rank",4} {"token",6} {"score A",10} {"score B",10} {"Δ",10} {"count",7}");
            foreach (var (t, i) in result.Tokens.Take(10).Select((t, i) => (t, i)))
                ctx.Say($"{i + 1,4} {t.Token,6} {t.ScoreA,10:G4} {t.ScoreB,10:G4} {t.Difference,10:G4} {t.Occurrences,7}");
            if (rank is not null) ctx.Say($"token {trig} ranks {rank} of {result.Tokens.Count}");
            ctx.Say($"neurons whose interaction mass changed most: {string.Join(", ", result.Neurons.Take(5).Select(x => $"L{x.Layer}N{x.Neuron} Δ{x.Difference:G3}"))}");
            return ExitCodes.Ok;
        })));
        return cmd;
    }
}
