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
        var reuse = new Option<DirectoryInfo?>("--crosscoder") { Description = "Score with this joint crosscoder (written by an earlier diff-models) instead of training one" };
        var trigger = new Option<int?>("--trigger") { Description = "A token to report the rank of (e.g. a planted backdoor)" };
        var output = new Option<DirectoryInfo>("--out") { Description = "Directory for the joint crosscoder, diff.json and diff.png", Required = true };
        var force = Options.Force();
        var db = StoreOptions.Db();
        var noRecord = new Option<bool>("--no-record") { Description = "Do not record the analysis in the store" };
        var json = Options.Json();
        var cmd = new Command("diff-models", "Train one crosscoder across two models' residual sites and rank tokens by how much their ReLU interaction differs between the models");
        foreach (var o in new Option[] { modelA, modelB, data, width, k, steps, seed, reuse, trigger, output, force, db, noRecord, json }) cmd.Options.Add(o);
        cmd.SetAction((pr, ct) => Task.FromResult(CommandRunner.Run(pr, json, ct, ctx =>
        {
            string dirA = pr.GetValue(modelA)!.FullName, dirB = pr.GetValue(modelB)!.FullName, dataPath = pr.GetValue(data)!.FullName;
            OutputGuard.Check("--out", pr.GetValue(output)!.FullName, directory: true, [dirA, dirB, dataPath, pr.GetValue(reuse)?.FullName], store: pr.GetValue(db)!.FullName);
            var a = ModelWeights.Load(dirA); var b = ModelWeights.Load(dirB);
            a.Config.RequireBasic("diff-models (ReLU interaction scores)");      // before a joint crosscoder is trained
            if (a.Config != b.Config) throw new MismatchException($"{dirA} and {dirB} have different configurations; diffing needs the same shapes");
            var dataset = TokenDataset.Load(dataPath, a.Config);
            string dir = pr.GetValue(output)!.FullName;
            var names = a.Config.SiteNames();
            (IReadOnlyList<TokenDiff> Tokens, IReadOnlyList<NeuronDiff> Neurons) result = ([], []);
            CrosscoderWeights? reused = null;
            if (pr.GetValue(reuse) is { } ccDir)
            {
                reused = CrosscoderWeights.Load(ccDir.FullName);
                var expected = JointSites(a.Config);
                if (!reused.Config.Sites.SequenceEqual(expected) || reused.Config.DModel != a.Config.DModel)
                    throw new InvalidInputException(Path.Combine(ccDir.FullName, CrosscoderConfig.FileName), "sites",
                        $"a joint crosscoder over {string.Join(", ", expected)} with d_model {a.Config.DModel} (written by diff-models); got {string.Join(", ", reused.Config.Sites)}, d_model {reused.Config.DModel}");
            }
            AtomicOutput.WriteDirectory(dir, pr.GetValue(force), tmp =>
            {
                var weights = reused ?? TrainJoint(ctx, pr, a, b, dirA, dataset, width, k, steps, seed);
                weights.SaveInto(tmp);
                result = ModelDiff.Run(a, b, weights, dataset);
                File.WriteAllText(Path.Combine(tmp, "diff.json"), JsonSerializer.Serialize(new { result.Tokens, Neurons = result.Neurons.Take(50) }, CommandContext.JsonOptions));
                var plt = new Plot();
                var top = result.Tokens.Take(20).ToList();
                var bars = plt.Add.Bars(top.Select(t => double.IsFinite(t.T) ? t.T : 0).ToArray());
                plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(top.Select((t, i) => new Tick(i, t.Token.ToString())).ToArray());
                plt.Title("Tokens ranked by change in ReLU interaction score (model B − model A)");
                plt.XLabel("token"); plt.YLabel("Welch t of Δ (with − without the token)");
                plt.SavePng(Path.Combine(tmp, "diff.png"), 900, 500);
            });
            int? trig = pr.GetValue(trigger);
            int? rank = trig is int tt ? result.Tokens.Select((t, i) => (t, i)).FirstOrDefault(x => x.t.Token == tt).i + 1 : null;
            // Whether each model follows the backdoor on this data: without a learned backdoor there is nothing to find.
            var backdoorA = trig is int ta ? Backdoor.Measure(a, dataset, ta) : null;
            var backdoorB = trig is int tb ? Backdoor.Measure(b, dataset, tb) : null;
            if (!pr.GetValue(noRecord))
            {
                using var store = new VerifierStore(pr.GetValue(db)!.FullName);
                store.RecordAnalysis("model-diff", Hashing.Sha256File(Path.Combine(dirA, ModelWeights.WeightsFileName)),
                    Hashing.Sha256File(Path.Combine(dir, CrosscoderWeights.WeightsFileName)), dataset.ContentHash(),
                    JsonSerializer.Serialize(new { ModelB = Hashing.Sha256File(Path.Combine(dirB, ModelWeights.WeightsFileName)), Top = result.Tokens.Take(10), TriggerRank = rank, BackdoorA = backdoorA, BackdoorB = backdoorB }, CommandContext.JsonOptions));
                StoreOptions.ReportHead(ctx, store);
            }
            if (ctx.Json) { ctx.WriteJson(new { Out = dir, Tokens = result.Tokens, Neurons = result.Neurons.Take(20), TriggerRank = rank, BackdoorA = backdoorA, BackdoorB = backdoorB }); return ExitCodes.Ok; }
            ctx.Say("tokens by Welch t of (score_B − score_A) with the token against without it; Δ is that difference of means");
            ctx.Say($"{"rank",4} {"token",6} {"score A",10} {"score B",10} {"Δ",10} {"t",8} {"count",7}");
            foreach (var (t, i) in result.Tokens.Take(10).Select((t, i) => (t, i)))
                ctx.Say($"{i + 1,4} {t.Token,6} {t.ScoreA,10:G4} {t.ScoreB,10:G4} {t.Difference,10:G4} {t.T,8:F2} {t.Occurrences,7}");
            if (rank is not null) ctx.Say($"token {trig} ranks {rank} of {result.Tokens.Count}" +
                (rank == 1 && result.Tokens.Count > 1 ? $" (|t| {Math.Abs(result.Tokens[0].T):F1} against {Math.Abs(result.Tokens[1].T):F1} for the next token)" : ""));
            foreach (var (name, bd) in new[] { ("A", backdoorA), ("B", backdoorB) })
                if (bd is not null)
                    ctx.Say($"model {name}: accuracy {bd.TriggeredAccuracy:P1} on the {bd.TriggeredSequences} sequences with token {bd.Trigger}, {bd.CleanAccuracy:P2} on the {bd.CleanSequences} without");
            ctx.Say($"neurons whose interaction mass changed most: {string.Join(", ", result.Neurons.Take(5).Select(x => $"L{x.Layer}N{x.Neuron} Δ{x.Difference:G3}"))}");
            return ExitCodes.Ok;
        })));
        return cmd;
    }

    /// <summary>The joint crosscoder's site names: model A's sites as a/…, then model B's as b/….</summary>
    static List<string> JointSites(ModelConfig c) => c.SiteNames().Select(s => "a/" + s).Concat(c.SiteNames().Select(s => "b/" + s)).ToList();

    static CrosscoderWeights TrainJoint(CommandContext ctx, ParseResult pr, ModelWeights a, ModelWeights b, string dirA, TokenDataset dataset,
        Option<int> width, Option<int> k, Option<int> steps, Option<ulong> seed)
    {
        var names = a.Config.SiteNames();
        using var ma = new Transformer(a); using var mb = new Transformer(b);
        var all = Enumerable.Range(0, names.Count).ToArray();
        var o = new CrosscoderOptions(pr.GetValue(width), CrosscoderModes.TopK, pr.GetValue(k), Steps: pr.GetValue(steps), Seed: pr.GetValue(seed));
        var (cc, _) = ctx.WithProgress("training the joint crosscoder", report => CrosscoderTrainer.Train([(ma, all), (mb, all)], dataset.Sequences, o,
            new SyncProgress<CrosscoderProgress>(p => report((double)p.Step / p.TotalSteps, $"step {p.Step}/{p.TotalSteps}  mse {p.Mse:F4}")), ctx.Cancel));
        using (cc)
            return cc.ToWeights(new CrosscoderConfig(o.Width, a.Config.DModel, JointSites(a.Config),
                o.Mode, o.K, null, cc.Scales, Hashing.Sha256File(Path.Combine(dirA, ModelWeights.WeightsFileName)), dataset.ContentHash(), o.Seed));
    }
}
