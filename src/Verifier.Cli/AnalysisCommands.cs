using System.CommandLine;
using System.Text;
using System.Text.Json;
using ScottPlot;
using Verifier.Bounds.Analysis;
using Verifier.Core;
using Verifier.Store;

namespace Verifier.Cli;

/// <summary>Feature-interaction analysis over a model, crosscoder and dataset, and interaction suppression.</summary>
static class AnalysisCommands
{
    internal sealed record Inputs(ModelWeights Weights, CrosscoderWeights Crosscoder, TokenDataset Data, string ModelSha, string CcSha, string DataSha);

    internal static Inputs Load(string modelDir, string ccDir, string dataPath, bool allowMismatch)
    {
        var w = ModelWeights.Load(modelDir);
        string sha = Hashing.Sha256File(Path.Combine(modelDir, ModelWeights.WeightsFileName));
        var cc = CrosscoderWeights.Load(ccDir, (w.Config, sha, modelDir), allowMismatch);
        var data = TokenDataset.Load(dataPath, w.Config);
        return new Inputs(w, cc, data, sha, Hashing.Sha256File(Path.Combine(ccDir, CrosscoderWeights.WeightsFileName)), data.ContentHash());
    }

    internal static void Record(CommandContext ctx, ParseResult pr, Option<FileInfo> db, Option<bool> noRecord, string kind, Inputs i, object summary)
    {
        if (pr.GetValue(noRecord)) return;
        using var store = new VerifierStore(pr.GetValue(db)!.FullName);
        store.RecordAnalysis(kind, i.ModelSha, i.CcSha, i.DataSha, JsonSerializer.Serialize(summary, CommandContext.JsonOptions));
        StoreOptions.ReportHead(ctx, store);
    }

    /// <summary>The analysis half of `verifier interactions` (the transcript half lives in InteractionsCommand).</summary>
    public static int Interactions(CommandContext ctx, ParseResult pr, string modelDir, string ccDir, string dataPath, int top, int screenTop,
        string? reportDir, bool boundRemoval, bool allowMismatch, Option<FileInfo> db, Option<bool> noRecord)
    {
        if (reportDir is not null) OutputGuard.Check("--report", reportDir, directory: true, [modelDir, ccDir, dataPath], store: pr.GetValue(db)!.FullName);
        var inputs = Load(modelDir, ccDir, dataPath, allowMismatch);
        if (boundRemoval && BoundSensitivity.Unavailable(inputs.Weights.Config, inputs.Crosscoder.Config) is string why)
        {
            ctx.Say($"b₀-removal validation skipped: {why}");
            boundRemoval = false;
        }
        var r = ctx.WithProgress("measuring interactions", report =>
        {
            report(0, "");
            return InteractionAnalysis.Analyse(inputs.Weights, inputs.Crosscoder, inputs.Data, new InteractionAnalysis.Options(top, screenTop, BoundRemoval: boundRemoval),
                new SyncProgress<(int Done, int Total)>(p => report((double)p.Done / p.Total, $"tables bound without each pair: {p.Done}/{p.Total} sequences")));
        });
        var summary = new
        {
            r.Tokens, r.Pairs, r.DominantShare, r.AttentionDominance, r.Validation, r.BoundRemoval,
            Neurons = r.Neurons, Ranked = r.Ranked, HeatmapFeatures = r.HeatmapFeatures, Report = reportDir,
        };
        if (reportDir is not null) WriteReport(reportDir, r, modelDir, ccDir, dataPath);
        Record(ctx, pr, db, noRecord, "interactions", inputs, new { r.Tokens, r.Pairs, r.DominantShare, r.AttentionDominance, r.Validation, r.BoundRemoval });
        if (ctx.Json) { ctx.WriteJson(summary); return ExitCodes.Ok; }
        ctx.Say($"{r.Tokens} tokens, {r.Pairs} co-occurring feature pairs; dominant share {r.DominantShare:P1}; one query feature dominates {r.AttentionDominance:P1} of (query, key, head) scores");
        foreach (var g in r.Ranked.GroupBy(x => x.Metric))
        {
            ctx.Say($"{g.Key}:");
            ctx.Say($"  {"i",5} {"j",5} {"layer",5} {"unit",5} {"value",12} {"frequency",10}");
            foreach (var x in g.Take(Math.Min(top, 10))) ctx.Say($"  {x.I,5} {x.J,5} {x.Layer,5} {x.Unit,5} {x.Value,12:G5} {x.Frequency,10:P2}");
        }
        foreach (var g in r.Validation.GroupBy(v => v.Target))
        {
            ctx.Say($"validation: Spearman ρ of each metric against {TargetText(g.Key)}:");
            foreach (var v in g.OrderByDescending(v => v.Spearman)) ctx.Say($"  {v.Metric,-26} ρ = {v.Spearman,7:F3}  ({v.Pairs} pairs)");
        }
        if (r.BoundRemoval is { } br) ctx.Say(RemovalText(br));
        if (reportDir is not null) ctx.Say($"report: {Path.Combine(reportDir, "report.md")}");
        return ExitCodes.Ok;
    }

    static string TargetText(string target) => target switch
    {
        "E-measured" => "the measured pairwise linearisation error (I_ij = E({i,j}) − E({i}) − E({j}), |I_ij| summed over tokens and neurons)",
        "b0-removal" => "the drop in the crosscoder-tables b₀ (before the trivial cap) when the pair's interaction I_ij is removed from E",
        "b0-removal-abs" => "the size of that change in b₀, either sign (how much the pair matters to the bound)",
        "b0-removal-moving" => "the same drop in b₀, over only the pairs whose removal moves it",
        _ => target,
    };

    static string RemovalText(BoundRemovalSummary br) =>
        $"crosscoder-tables b₀ {br.B0:G6} (uncapped {br.UncappedB0:G6}); removing one pair moves the uncapped b₀ for {br.PairsMovingUncapped} pairs " +
        $"({br.PairsTightening} down, {br.PairsLoosening} up; largest drop {br.LargestUncapped:G4}) and the capped, certified b₀ for {br.PairsMovingCapped} (largest drop {br.LargestCapped:G4})";

    static void WriteReport(string dir, InteractionReport r, string modelDir, string ccDir, string dataPath)
    {
        AtomicOutput.WriteDirectory(dir, force: true, tmp =>
        {
            var plt = new Plot();
            var hm = plt.Add.Heatmap(r.Heatmap);
            hm.Colormap = new ScottPlot.Colormaps.Viridis();
            plt.Add.ColorBar(hm);
            plt.Title("Measured pairwise linearisation error I_ij (per token) among the top features");
            // ScottPlot draws the first row of the matrix at the top: label the rows from the top down.
            int size = r.HeatmapFeatures.Length;
            plt.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(r.HeatmapFeatures.Select((f, k) => new Tick(k, f.ToString())).ToArray());
            plt.Axes.Left.TickGenerator = new ScottPlot.TickGenerators.NumericManual(r.HeatmapFeatures.Select((f, k) => new Tick(size - 1 - k, f.ToString())).ToArray());
            plt.XLabel("feature j"); plt.YLabel("feature i");
            plt.SavePng(Path.Combine(tmp, "heatmap.png"), 900, 800);
            plt.SaveSvg(Path.Combine(tmp, "heatmap.svg"), 900, 800);
            var jagged = Enumerable.Range(0, r.Heatmap.GetLength(0)).Select(x => Enumerable.Range(0, r.Heatmap.GetLength(1)).Select(y => r.Heatmap[x, y]).ToArray()).ToArray();
            File.WriteAllText(Path.Combine(tmp, "interactions.json"), JsonSerializer.Serialize(new
            {
                r.Tokens, r.Pairs, r.DominantShare, r.AttentionDominance, r.Validation, r.Neurons, r.Ranked, r.HeatmapFeatures, Heatmap = jagged,
            }, CommandContext.JsonOptions));
            var md = new StringBuilder();
            md.AppendLine("# Feature interactions").AppendLine();
            md.AppendLine($"Model `{modelDir}`, crosscoder `{ccDir}`, data `{dataPath}`: {r.Tokens} tokens, {r.Pairs} co-occurring feature pairs.").AppendLine();
            md.AppendLine($"- dominant share (mean over token × neuron of max_i|p_im| / Σ_i|p_im|): **{r.DominantShare:P1}**");
            md.AppendLine($"- one query feature strictly dominates the score in **{r.AttentionDominance:P1}** of (query, key, head) triples").AppendLine();
            if (r.Validation.Count > 0)
            {
                md.AppendLine("## Validation: which metric predicts the bound's looseness?").AppendLine();
                foreach (var g in r.Validation.GroupBy(v => v.Target))
                {
                    md.AppendLine($"Spearman ρ between each metric and {TargetText(g.Key)}.").AppendLine();
                    md.AppendLine("| metric | ρ | pairs |").AppendLine("| --- | ---: | ---: |");
                    foreach (var v in g.OrderByDescending(v => v.Spearman)) md.AppendLine($"| {v.Metric} | {v.Spearman:F3} | {v.Pairs} |");
                    md.AppendLine();
                }
                if (r.BoundRemoval is { } br) md.AppendLine(RemovalText(br)).AppendLine();
            }
            md.AppendLine("## Neurons by linearisation-error mass").AppendLine().AppendLine("| layer | neuron | Σ|E| | non-zero |").AppendLine("| ---: | ---: | ---: | ---: |");
            foreach (var n in r.Neurons.Take(15)) md.AppendLine($"| {n.Layer} | {n.Neuron} | {n.EMass:G5} | {n.NonzeroFraction:P2} |");
            foreach (var g in r.Ranked.GroupBy(x => x.Metric))
            {
                md.AppendLine().AppendLine($"## {g.Key}").AppendLine().AppendLine("| i | j | layer | neuron/head | value | frequency |").AppendLine("| ---: | ---: | ---: | ---: | ---: | ---: |");
                foreach (var x in g.Take(15)) md.AppendLine($"| {x.I} | {x.J} | {x.Layer} | {x.Unit} | {x.Value:G5} | {x.Frequency:P2} |");
            }
            md.AppendLine().AppendLine("![heat map](heatmap.png)");
            File.WriteAllText(Path.Combine(tmp, "report.md"), md.ToString());
        });
    }

    public static Command Suppress()
    {
        var model = new Option<DirectoryInfo>("--model") { Description = "Model directory", Required = true };
        var crosscoder = new Option<DirectoryInfo>("--crosscoder") { Description = "Crosscoder directory (needs each MLP's resid_mid site)", Required = true };
        var data = new Option<FileInfo>("--data") { Description = "Dataset", Required = true };
        var seed = Options.Seed("drop-random");
        var allow = new Option<bool>("--allow-model-mismatch") { Description = "Use a crosscoder trained on different model weights" };
        var db = StoreOptions.Db();
        var noRecord = new Option<bool>("--no-record") { Description = "Do not record the analysis in the store" };
        var json = Options.Json();
        var cmd = new Command("suppress", "Rebuild each MLP neuron's pre-activation from some of the token's features (all, dominant only, all but the dominant, all but the second, all but a random one) and report the fidelity Φ");
        foreach (var o in new Option[] { model, crosscoder, data, seed, allow, db, noRecord, json }) cmd.Options.Add(o);
        cmd.SetAction((pr, ct) => Task.FromResult(CommandRunner.Run(pr, json, ct, ctx =>
        {
            var inputs = Load(pr.GetValue(model)!.FullName, pr.GetValue(crosscoder)!.FullName, pr.GetValue(data)!.FullName, pr.GetValue(allow));
            var (lm, lz, results) = ctx.WithProgress("suppressing", report => { report(0, ""); return Suppression.Run(inputs.Weights, inputs.Crosscoder, inputs.Data, pr.GetValue(seed)); });
            var summary = new { ModelLoss = lm, ZeroLoss = lz, Schemes = results };
            Record(ctx, pr, db, noRecord, "suppression", inputs, summary);
            if (ctx.Json) { ctx.WriteJson(summary); return ExitCodes.Ok; }
            ctx.Say($"L_model {lm:G6}, L_zero (all neurons off) {lz:G6}; Φ = 1 − (L − L_model)/(L_zero − L_model)");
            foreach (var s in results) ctx.Say($"  {s.Scheme,-20} loss {s.Loss,12:G6}   Φ {s.Fidelity,8:F4}");
            return ExitCodes.Ok;
        })));
        return cmd;
    }
}

/// <summary>`verifier adversarial`: inputs that make strongly interacting, rarely co-occurring features fire together.</summary>
static class AdversarialCommand
{
    public static Command Build()
    {
        var task = new TaskOptions();
        var model = new Option<DirectoryInfo>("--model") { Description = "Model directory", Required = true };
        var crosscoder = new Option<DirectoryInfo>("--crosscoder") { Description = "Crosscoder directory", Required = true };
        var data = new Option<FileInfo>("--data") { Description = "Dataset giving the features' co-occurrence", Required = true };
        var pairs = Options.Positive<int>("--pairs", "Feature pairs to attack", 5);
        var budget = Options.Positive<int>("--budget", "Task samples tried per pair (each hill-climbed a few steps)", 400);
        var seed = Options.Seed("the search");
        var db = StoreOptions.Db();
        var noRecord = new Option<bool>("--no-record") { Description = "Do not record the analysis in the store" };
        var json = Options.Json();
        var cmd = new Command("adversarial", "Search inputs that activate strongly interacting feature pairs that rarely co-occur, and compare their loss with inputs where only one is active");
        task.AddTo(cmd);
        foreach (var o in new Option[] { model, crosscoder, data, pairs, budget, seed, db, noRecord, json }) cmd.Options.Add(o);
        cmd.SetAction((pr, ct) => Task.FromResult(CommandRunner.Run(pr, json, ct, ctx =>
        {
            var i = AnalysisCommands.Load(pr.GetValue(model)!.FullName, pr.GetValue(crosscoder)!.FullName, pr.GetValue(data)!.FullName, allowMismatch: false);
            var t = task.Create(pr);
            var results = ctx.WithProgress("searching", report => { report(0, ""); return Adversarial.Run(i.Weights, i.Crosscoder, t, i.Data, pr.GetValue(pairs), pr.GetValue(budget), pr.GetValue(seed), ctx.Cancel); });
            var found = results.Where(r => r.BothFound > 0 && r.AloneFound > 0).ToList();
            double mean = found.Count > 0 ? found.Average(r => r.Increase) : double.NaN;
            AnalysisCommands.Record(ctx, pr, db, noRecord, "adversarial", i, new { Pairs = results, MeanIncrease = mean });
            if (ctx.Json) { ctx.WriteJson(new { Pairs = results, MeanIncrease = mean }); return ExitCodes.Ok; }
            ctx.Say($"{"i",5} {"j",5} {"screen",10} {"co-occur",9} {"both",5} {"alone",6} {"loss both",10} {"loss alone",11} {"increase",10}");
            foreach (var r in results)
                ctx.Say($"{r.I,5} {r.J,5} {r.Screen,10:G4} {r.DataFrequency,9:P3} {r.BothFound,5} {r.AloneFound,6} {r.LossBoth,10:G4} {r.LossAlone,11:G4} {r.Increase,10:G4}");
            ctx.Say($"mean loss increase over pairs where both kinds of input were found: {mean:G4}");
            return ExitCodes.Ok;
        })));
        return cmd;
    }
}

/// <summary>`verifier cluster-features`: features clustered by interaction, against clustering by activation.</summary>
static class ClusterCommand
{
    public static Command Build()
    {
        var model = new Option<DirectoryInfo>("--model") { Description = "Model directory", Required = true };
        var crosscoder = new Option<DirectoryInfo>("--crosscoder") { Description = "Crosscoder directory", Required = true };
        var data = new Option<FileInfo>("--data") { Description = "Dataset", Required = true };
        var seed = Options.Seed("tie-breaking");
        var db = StoreOptions.Db();
        var noRecord = new Option<bool>("--no-record") { Description = "Do not record the analysis in the store" };
        var json = Options.Json();
        var cmd = new Command("cluster-features", "Cluster features by their measured interaction (affinity propagation) and compare with clustering by activation cosine similarity");
        foreach (var o in new Option[] { model, crosscoder, data, seed, db, noRecord, json }) cmd.Options.Add(o);
        cmd.SetAction((pr, ct) => Task.FromResult(CommandRunner.Run(pr, json, ct, ctx =>
        {
            var i = AnalysisCommands.Load(pr.GetValue(model)!.FullName, pr.GetValue(crosscoder)!.FullName, pr.GetValue(data)!.FullName, allowMismatch: false);
            var r = ctx.WithProgress("clustering", report =>
            {
                report(0, "measuring interactions");
                var inter = InteractionAnalysis.Analyse(i.Weights, i.Crosscoder, i.Data, new InteractionAnalysis.Options(Top: 1));
                report(0.5, "affinity propagation");
                return FeatureClusters.Run(i.Weights, i.Crosscoder, i.Data, inter, pr.GetValue(seed));
            });
            AnalysisCommands.Record(ctx, pr, db, noRecord, "feature-clusters", i, new { Clusters = r.ByInteraction.Count, ActivationClusters = r.ByActivation.Count, r.AdjustedRand });
            if (ctx.Json) { ctx.WriteJson(r); return ExitCodes.Ok; }
            ctx.Say($"{r.ByInteraction.Count} clusters by interaction, {r.ByActivation.Count} by activation cosine; adjusted Rand index between them {r.AdjustedRand:F3}");
            foreach (var c in r.ByInteraction.Take(10))
                ctx.Say($"  exemplar {c.Exemplar,4}: {c.Features.Length,3} features; top tokens {string.Join(" ", c.TopTokens)}; positions {string.Join(" ", c.TopPositions)}");
            return ExitCodes.Ok;
        })));
        return cmd;
    }
}
