using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Verifier.Core;
using Verifier.Crosscoders;
using Verifier.Model;

namespace Verifier.Cli;

/// <summary>Everything metrics.json of a crosscoder holds.</summary>
public sealed record CrosscoderMetrics(
    string Model, string ModelSha256, string Data, string DataSha256, CrosscoderOptions Options,
    CrosscoderTrainingSummary Training, double TrainSeconds, int TrainSequences, string EvalData, CrosscoderEvaluation Evaluation);

static class CrosscoderTraining
{
    public const string MetricsFile = "metrics.json";

    /// <summary>Splits off an evaluation set (seeded) unless one is given, trains, evaluates, and writes
    /// config.json, crosscoder.safetensors and metrics.json into <paramref name="dir"/> (which must exist).</summary>
    public static CrosscoderMetrics TrainInto(string dir, string modelDir, ModelWeights weights, string dataPath, TokenDataset data,
        TokenDataset? evalData, string? evalPath, IReadOnlyList<string> sites, CrosscoderOptions o, CommandContext ctx)
    {
        string modelSha = Hashing.Sha256File(Path.Combine(modelDir, ModelWeights.WeightsFileName));
        var names = weights.Config.SiteNames().ToList();
        int[] siteIndex = sites.Select(s => names.IndexOf(s)).ToArray();

        IReadOnlyList<Sequence> train = data.Sequences;
        string evalName = evalPath ?? "";
        if (evalData is null)
        {
            var order = Enumerable.Range(0, data.Count).ToArray();
            var rng = Rng.Derive(o.Seed, "crosscoder/eval-split");
            for (int i = order.Length - 1; i > 0; i--) { int j = rng.NextInt(i + 1); (order[i], order[j]) = (order[j], order[i]); }
            int held = data.Count < 2 ? 0 : Math.Clamp(data.Count / 10, 1, 4096);
            evalData = held == 0 ? data : new TokenDataset(order[..held].Select(i => data.Sequences[i]).ToList());
            train = held == 0 ? data.Sequences : order[held..].Select(i => data.Sequences[i]).ToList();
            evalName = held == 0 ? $"{dataPath} (all of it: too small to split)" : $"{held} sequences of {dataPath} held out (seed {o.Seed}), not trained on";
        }
        if (!evalData.Sequences.Any(s => s.LabelledCount > 0))
            throw new InvalidInputException(evalPath ?? dataPath, "labels", "the evaluation sequences have no labelled position, so the spliced-in loss is undefined");

        var sw = Stopwatch.StartNew();
        using var model = new Transformer(weights, TorchSharp.torch.ScalarType.Float32);
        var (cc, summary) = ctx.WithProgress("training crosscoder", report => CrosscoderTrainer.Train(model, train, siteIndex, o,
            new SyncProgress<CrosscoderProgress>(p => report((double)p.Step / p.TotalSteps,
                $"step {p.Step}/{p.TotalSteps}  loss {p.Loss:F4}  mse {p.Mse:F4}  L0 {p.L0:F1}  dead {p.DeadFraction:P0}")), ctx.Cancel));
        double seconds = sw.Elapsed.TotalSeconds;
        CrosscoderWeights saved;
        using (cc)
        {
            var config = new CrosscoderConfig(o.Width, weights.Config.DModel, sites, o.Mode,
                o.Mode == CrosscoderModes.ReluL1 ? null : o.K, o.Mode == CrosscoderModes.ReluL1 ? o.L1Coefficient : null,
                cc.Scales, modelSha, data.ContentHash(), o.Seed);
            saved = cc.ToWeights(config);
        }
        var eval = ctx.WithProgress("evaluating crosscoder", report => CrosscoderEvaluator.Evaluate(weights, saved, evalData,
            new SyncProgress<(int Done, int Total)>(p => report((double)p.Done / p.Total, $"{p.Done}/{p.Total} sequences"))));
        saved.SaveInto(dir);
        var metrics = new CrosscoderMetrics(modelDir, modelSha, dataPath, data.ContentHash(), o, summary, Math.Round(seconds, 2),
            train.Count, evalName, eval);
        AtomicOutput.WriteAllText(Path.Combine(dir, MetricsFile), JsonSerializer.Serialize(metrics, CommandContext.JsonOptions));
        return metrics;
    }

    public static void Print(CommandContext ctx, CrosscoderEvaluation e, CrosscoderTrainingSummary? t = null)
    {
        ctx.Say($"  {"site",-28} {"FVU",8} {"cosine",8} {"spliced CE",11} {"zero-abl CE",11} {"recovered",9}");
        foreach (var s in e.Sites)
            ctx.Say($"  {s.Site,-28} {s.Fvu,8:F4} {s.Cosine,8:F4} {s.SplicedLoss,11:F5} {s.ZeroAblationLoss,11:F4} {s.LossRecovered,9:P2}");
        ctx.Say($"  clean CE {e.CleanLoss:F5}; mean FVU {e.MeanFvu:F4}; mean L0 {e.MeanL0:F2}; never fired on eval {e.NeverFiredFraction:P1}" +
                (t is null ? "" : $"; dead in training {t.DeadFraction:P1}"));
    }
}

static class CrosscoderCommands
{

    public static Command Train()
    {
        var model = new Option<DirectoryInfo>("--model") { Description = "Model directory (config.json + model.safetensors)", Required = true };
        var data = new Option<FileInfo>("--data") { Description = "Token dataset (spec/dataset.md) whose activations train the crosscoder", Required = true };
        var evalData = new Option<FileInfo?>("--eval-data") { Description = "Dataset to evaluate on (default: 10% of --data, up to 4096 sequences, held out)" };
        var width = Options.Positive<int>("--width", "Number of features n", 512);
        var sites = new Option<string?>("--sites") { Description = "Comma-separated residual sites (TransformerLens hook names); default: every site" };
        var mode = new Option<string>("--mode") { Description = "Sparsity: topk | batch-topk | relu-l1", DefaultValueFactory = _ => CrosscoderModes.TopK };
        mode.AcceptOnlyFromAmong([.. CrosscoderModes.All]);
        var k = Options.Positive<int>("--k", "Active features per token for topk and batch-topk", 8);
        var l1 = Options.Positive<double>("--l1", "λ for relu-l1 (warmed up from 0 over the first 5% of steps)", 2.0);
        var steps = Options.Positive<int>("--steps", "Adam steps", 3000);
        var batch = Options.Positive<int>("--batch-tokens", "Tokens per step", 1024);
        var lr = Options.Positive<double>("--lr", "Peak Adam learning rate (5% warm-up, linear decay over the last 20%)", 1e-3);
        var seed = Options.Seed("initialisation, shuffling and the evaluation split");
        var bufferMb = Options.Positive<int>("--buffer-mb", "Largest activation buffer, in MiB (refilled as it is consumed)", 256);
        var penalty = new Option<double>("--interaction-penalty") { Description = "λ: add λ · mean over (layer, token, neuron) of (Σ_i |p_im| − max_i |p_im|), the MLP input mass not carried by the dominant feature", DefaultValueFactory = _ => 0.0 };
        var deadTokens = Options.Positive<long>("--dead-tokens", "A feature that has not fired in this many tokens is dead (AuxK loss revives it)", 100_000);
        var output = new Option<DirectoryInfo>("--out") { Description = "Crosscoder directory to write (config.json, crosscoder.safetensors, metrics.json)", Required = true };
        var force = Options.Force();
        var json = Options.Json();
        var cmd = new Command("train-crosscoder", "Train a sparse crosscoder on a model's residual stream at every site (or --sites)");
        foreach (var opt in new Option[] { model, data, evalData, width, sites, mode, k, l1, steps, batch, lr, seed, bufferMb, deadTokens, penalty, output, force, json })
            cmd.Options.Add(opt);
        cmd.SetAction((pr, ct) => Task.FromResult(CommandRunner.Run(pr, json, ct, ctx =>
        {
            string modelDir = pr.GetValue(model)!.FullName, dataPath = pr.GetValue(data)!.FullName, dir = pr.GetValue(output)!.FullName;
            OutputGuard.Check("--out", dir, directory: true, [modelDir, dataPath, pr.GetValue(evalData)?.FullName]);
            var weights = ModelWeights.Load(modelDir);
            var siteList = ParseSites(pr.GetValue(sites), weights.Config);
            var o = new CrosscoderOptions(pr.GetValue(width), pr.GetValue(mode)!, pr.GetValue(k), pr.GetValue(l1), pr.GetValue(steps),
                pr.GetValue(batch), pr.GetValue(lr), pr.GetValue(seed), (long)pr.GetValue(bufferMb) << 20, pr.GetValue(deadTokens),
                InteractionPenalty: pr.GetValue(penalty) >= 0 ? pr.GetValue(penalty) : throw new UsageException("--interaction-penalty must be ≥ 0"));
            if (o.Mode != CrosscoderModes.ReluL1 && o.K > o.Width) throw new UsageException($"--k {o.K} exceeds --width {o.Width}");
            if (o.InteractionPenalty > 0) CrosscoderTrainer.RequirePenaltyArchitecture(weights.Config);   // before any data is read
            if (AtomicOutput.WouldRefuse(dir, pr.GetValue(force))) throw new OutputExistsException(dir);
            var dataset = TokenDataset.Load(dataPath, weights.Config);
            string? evalPath = pr.GetValue(evalData)?.FullName;
            var evalSet = evalPath is null ? null : TokenDataset.Load(evalPath, weights.Config);
            CrosscoderMetrics? m = null;
            AtomicOutput.WriteDirectory(dir, pr.GetValue(force), tmp => m = CrosscoderTraining.TrainInto(tmp, modelDir, weights, dataPath, dataset, evalSet, evalPath, siteList, o, ctx));
            if (ctx.Json) ctx.WriteJson(new { Out = dir, Metrics = m });
            else
            {
                ctx.Say($"Wrote {dir}: width {o.Width}, {o.Mode}{(o.Mode == CrosscoderModes.ReluL1 ? $" λ {o.L1Coefficient}" : $" k {o.K}")}, {siteList.Count} sites; trained {o.Steps} steps in {m!.TrainSeconds:F1} s");
                CrosscoderTraining.Print(ctx, m.Evaluation, m.Training);
            }
            return ExitCodes.Ok;
        })));
        return cmd;
    }

    public static Command Eval()
    {
        var model = new Option<DirectoryInfo>("--model") { Description = "Model directory", Required = true };
        var crosscoder = new Option<DirectoryInfo>("--crosscoder") { Description = "Crosscoder directory", Required = true };
        var data = new Option<FileInfo>("--data") { Description = "Dataset to evaluate on (spec/dataset.md)", Required = true };
        var allow = new Option<bool>("--allow-model-mismatch") { Description = "Use a crosscoder trained on different model weights (by SHA-256)" };
        var json = Options.Json();
        var cmd = new Command("eval-crosscoder", "Per-site FVU, cosine, spliced-in loss and loss recovered; mean L0 and never-firing features");
        foreach (var opt in new Option[] { model, crosscoder, data, allow, json }) cmd.Options.Add(opt);
        cmd.SetAction((pr, ct) => Task.FromResult(CommandRunner.Run(pr, json, ct, ctx =>
        {
            string modelDir = pr.GetValue(model)!.FullName, ccDir = pr.GetValue(crosscoder)!.FullName, dataPath = pr.GetValue(data)!.FullName;
            var weights = ModelWeights.Load(modelDir);
            string sha = Hashing.Sha256File(Path.Combine(modelDir, ModelWeights.WeightsFileName));
            var cc = CrosscoderWeights.Load(ccDir, (weights.Config, sha, modelDir), pr.GetValue(allow));
            var dataset = TokenDataset.Load(dataPath, weights.Config);
            var e = ctx.WithProgress("evaluating crosscoder", report => CrosscoderEvaluator.Evaluate(weights, cc, dataset,
                new SyncProgress<(int Done, int Total)>(p => report((double)p.Done / p.Total, $"{p.Done}/{p.Total} sequences"))));
            if (ctx.Json) ctx.WriteJson(new { Model = modelDir, Crosscoder = ccDir, Data = dataPath, Evaluation = e });
            else
            {
                ctx.Say($"{ccDir} on {dataPath}:");
                CrosscoderTraining.Print(ctx, e);
            }
            return ExitCodes.Ok;
        })));
        return cmd;
    }

    static IReadOnlyList<string> ParseSites(string? text, ModelConfig config)
    {
        var all = config.SiteNames();
        if (string.IsNullOrWhiteSpace(text) || text.Trim() == "all") return all;
        var list = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).ToList();
        foreach (var s in list)
            if (!all.Contains(s)) throw new UsageException($"--sites: '{s}' is not a residual site of this model; its sites are {string.Join(", ", all)}");
        if (list.Distinct().Count() != list.Count) throw new UsageException("--sites names a site twice");
        return list.OrderBy(s => all.ToList().IndexOf(s)).ToList();
    }
}
