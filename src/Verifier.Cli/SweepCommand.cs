using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using ScottPlot;
using Verifier.Bounds;
using Verifier.Bounds.Analysis;
using Verifier.Core;
using Verifier.Crosscoders;

namespace Verifier.Cli;

/// <summary>The interaction-penalty sweep: one crosscoder per λ, its dominant share and reconstruction, and the
/// feature-table bound it gives.</summary>
static class SweepCommand
{
    public sealed record Row(double Lambda, double DominantShare, double MeanFvu, double MeanL0, double MinLossRecovered, double TablesB0, long TablesFlops, double TrainSeconds)
    {
        /// <summary>The crosscoder strategies' (name, FLOPs, b₀) for this λ: tables and clustered c = 8, 64.</summary>
        public List<SweepPoint> Points { get; init; } = [];
    }

    public sealed record SweepPoint(string Strategy, long Flops, double B0);

    public static Command Build()
    {
        var model = new Option<DirectoryInfo>("--model") { Description = "Model directory", Required = true };
        var data = new Option<FileInfo>("--data") { Description = "Training data for the crosscoders", Required = true };
        var boundData = new Option<FileInfo>("--bound-data") { Description = "Dataset for the crosscoder-tables bound of each λ", Required = true };
        var lambdas = new Option<string>("--lambdas") { Description = "Comma-separated λ values", DefaultValueFactory = _ => "0,0.01,0.1,1" };
        var width = Options.Positive<int>("--width", "Crosscoder width", 256);
        var k = Options.Positive<int>("--k", "Top-k", 8);
        var steps = Options.Positive<int>("--steps", "Adam steps per crosscoder", 1500);
        var seed = Options.Seed("training");
        var output = new Option<DirectoryInfo>("--out") { Description = "Directory for the crosscoders, transcripts, sweep.md, sweep.json and sweep.png", Required = true };
        var force = Options.Force();
        var json = Options.Json();
        var cmd = new Command("sweep-penalty", "Train a crosscoder per interaction-penalty λ and tabulate dominant share, reconstruction and the feature-table bound, with a plot");
        foreach (var o in new Option[] { model, data, boundData, lambdas, width, k, steps, seed, output, force, json }) cmd.Options.Add(o);
        cmd.SetAction((pr, ct) => Task.FromResult(CommandRunner.Run(pr, json, ct, ctx =>
        {
            string modelDir = pr.GetValue(model)!.FullName, dataPath = pr.GetValue(data)!.FullName, boundPath = pr.GetValue(boundData)!.FullName;
            var ls = pr.GetValue(lambdas)!.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(x => double.TryParse(x, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && v >= 0 ? v : throw new UsageException($"--lambdas: '{x}' is not a number ≥ 0")).ToList();
            string dir = pr.GetValue(output)!.FullName;
            OutputGuard.Check("--out", dir, directory: true, [modelDir, dataPath, boundPath]);
            var weights = ModelWeights.Load(modelDir);
            weights.Config.RequireBasic("sweep-penalty (the interaction penalty and the crosscoder-tables bound)");
            var dataset = TokenDataset.Load(dataPath, weights.Config);
            var bound = TokenDataset.Load(boundPath, weights.Config);
            var rows = new List<Row>();
            AtomicOutput.WriteDirectory(dir, pr.GetValue(force), tmp =>
            {
                foreach (double lambda in ls)
                {
                    string ccDir = Path.Combine(tmp, $"lambda-{lambda.ToString(CultureInfo.InvariantCulture)}");
                    Directory.CreateDirectory(ccDir);
                    var o = new CrosscoderOptions(pr.GetValue(width), CrosscoderModes.TopK, pr.GetValue(k), Steps: pr.GetValue(steps), Seed: pr.GetValue(seed), InteractionPenalty: lambda);
                    var m = CrosscoderTraining.TrainInto(ccDir, modelDir, weights, dataPath, dataset, null, null, weights.Config.SiteNames(), o, ctx);
                    var cc = CrosscoderWeights.Load(ccDir);
                    var share = InteractionAnalysis.Analyse(weights, cc, bound, new InteractionAnalysis.Options(Top: 1)).DominantShare;
                    var bi = new BoundInputs(weights, modelDir, bound, boundPath, cc, ccDir);
                    var r = BoundProgram.Run(Strategies.CrosscoderTables, bi, Path.Combine(ccDir, "tables-transcript.json"), computeTrueLoss: false);
                    var points = new List<SweepPoint> { new("tables", r.Cost.Flops, r.B0) };
                    foreach (int clusters in new[] { 8, 64 })
                    {
                        var rc = BoundProgram.Run(Strategies.Clustered, bi, Path.Combine(ccDir, $"clustered-{clusters}-transcript.json"), computeTrueLoss: false, clusters: clusters);
                        points.Add(new($"clustered-{clusters}", rc.Cost.Flops, rc.B0));
                    }
                    rows.Add(new Row(lambda, share, m.Evaluation.MeanFvu, m.Evaluation.MeanL0, m.Evaluation.Sites.Min(s => s.LossRecovered), r.B0, r.Cost.Flops, m.TrainSeconds) { Points = points });
                }
                File.WriteAllText(Path.Combine(tmp, "sweep.json"), JsonSerializer.Serialize(rows, CommandContext.JsonOptions));
                var md = new StringBuilder("| λ | dominant share | mean FVU | mean L0 | min loss recovered | tables b₀ | tables FLOPs |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
                foreach (var x in rows) md.AppendLine($"| {x.Lambda:G4} | {x.DominantShare:F3} | {x.MeanFvu:F4} | {x.MeanL0:F2} | {x.MinLossRecovered:P2} | {x.TablesB0:G6} | {x.TablesFlops:N0} |");
                File.WriteAllText(Path.Combine(tmp, "sweep.md"), md.ToString());
                Plot(rows, Path.Combine(tmp, "sweep.png"));
                Frontiers(rows, Path.Combine(tmp, "sweep-frontiers.png"));
            });
            if (ctx.Json) { ctx.WriteJson(new { Out = dir, Rows = rows }); return ExitCodes.Ok; }
            ctx.Say($"{"λ",8} {"dominant share",15} {"mean FVU",9} {"L0",6} {"min recovered",14} {"tables b₀",12}");
            foreach (var x in rows) ctx.Say($"{x.Lambda,8:G4} {x.DominantShare,15:F3} {x.MeanFvu,9:F4} {x.MeanL0,6:F2} {x.MinLossRecovered,14:P2} {x.TablesB0,12:G6}");
            ctx.Say($"wrote {Path.Combine(dir, "sweep.md")}, sweep.png and sweep-frontiers.png (each λ's crosscoder-strategy frontier in one plot)");
            return ExitCodes.Ok;
        })));
        return cmd;
    }

    /// <summary>Every λ's (FLOPs, b₀) points for the crosscoder strategies, one series per λ, in one plot.</summary>
    static void Frontiers(IReadOnlyList<Row> rows, string path)
    {
        var plt = new Plot();
        MarkerShape[] shapes = [MarkerShape.FilledCircle, MarkerShape.FilledSquare, MarkerShape.FilledTriangleUp, MarkerShape.FilledDiamond, MarkerShape.OpenCircle];
        int k = 0;
        foreach (var row in rows)
        {
            var pts = row.Points.OrderBy(p => p.Flops).ToList();
            var sc = plt.Add.Scatter(pts.Select(p => Math.Log10(p.Flops)).ToArray(), pts.Select(p => Math.Log10(p.B0)).ToArray());
            sc.LegendText = $"λ = {row.Lambda:G3}";
            sc.MarkerShape = shapes[k % shapes.Length];
            sc.MarkerSize = 9;
            sc.Color = Colors.Category10[k % 10];
            k++;
        }
        plt.Title("Crosscoder-strategy frontiers (tables, clustered c = 8, 64) for each interaction penalty λ");
        plt.XLabel("log₁₀ proof FLOPs");
        plt.YLabel("log₁₀ b₀");
        plt.ShowLegend(Alignment.LowerRight);
        plt.SavePng(path, 900, 600);
    }

    static void Plot(IReadOnlyList<Row> rows, string path)
    {
        var plt = new Plot();
        double[] xs = rows.Select(r => Math.Log10(r.Lambda + 1e-3)).ToArray();
        var share = plt.Add.Scatter(xs, rows.Select(r => r.DominantShare).ToArray());
        share.LegendText = "dominant share (left)";
        var fvu = plt.Add.Scatter(xs, rows.Select(r => r.MeanFvu).ToArray());
        fvu.LegendText = "mean FVU (right)";
        fvu.Axes.YAxis = plt.Axes.Right;
        plt.Axes.Right.Label.Text = "mean FVU (reconstruction)";
        plt.YLabel("dominant share  mean(max_i|p_im| / Σ_i|p_im|)");
        plt.XLabel("log₁₀(λ + 0.001)");
        plt.Title("Interaction penalty: dominant share and reconstruction against λ");
        plt.ShowLegend(Alignment.UpperLeft);
        plt.SavePng(path, 900, 600);
    }
}
