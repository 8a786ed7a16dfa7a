using System.CommandLine;
using System.Text.Json;
using ScottPlot;
using Verifier.Core;
using Verifier.Store;

namespace Verifier.Cli;

static class StoreOptions
{
    public static Option<FileInfo> Db() => new("--db")
    {
        Description = "SQLite store that records runs, checks and the audit chain (spec/store.md)",
        DefaultValueFactory = _ => new FileInfo(VerifierStore.DefaultFileName),
    };

    /// <summary>After a write: the new audit head on stderr, for the user to keep (spec/store.md, "The head anchor").</summary>
    public static AuditHead? ReportHead(CommandContext ctx, VerifierStore store)
    {
        if (store.LastWrite is { } head)
            ctx.Warn($"store: audit head {head} ({store.Path}); keep it: 'verifier audit verify --head {head}' detects later removal or rewriting");
        return store.LastWrite;
    }

    /// <summary>A command's JSON summary with the store's new head added as "store_head" (SEQ:HASH), when it recorded.</summary>
    public static System.Text.Json.Nodes.JsonNode WithHead(object summary, AuditHead? head)
    {
        var node = JsonSerializer.SerializeToNode(summary, CommandContext.JsonOptions)!;
        if (head is not null) node["store_head"] = head.ToString();
        return node;
    }
}

static class StoreCommands
{
    public static Command Runs()
    {
        var db = StoreOptions.Db();
        var json = Options.Json();
        var cmd = new Command("runs", "List the recorded bound runs with the verdict of their latest check");
        cmd.Options.Add(db); cmd.Options.Add(json);
        cmd.SetAction((pr, ct) => Task.FromResult(CommandRunner.Run(pr, json, ct, ctx =>
        {
            using var store = VerifierStore.OpenExisting(pr.GetValue(db)!.FullName);
            var runs = store.Runs();   // verifies the chain and every row first (exit 8 when tampered)
            if (ctx.Json) { ctx.WriteJson(runs); return ExitCodes.Ok; }
            ctx.Say($"{"id",4} {"strategy",-22} {"b₀",14} {"FLOPs",15} {"check",9}  transcript");
            foreach (var r in runs)
                ctx.Say($"{r.Id,4} {r.Strategy + Params(r.Parameters),-22} {r.B0,14:G6} {r.Flops,15:N0} {r.Verdict ?? "unchecked",9}  {r.TranscriptPath}");
            if (runs.Count == 0) ctx.Say($"(no runs recorded in {store.Path})");
            return ExitCodes.Ok;
        })));
        return cmd;
    }

    static string Params(string json)
    {
        using var d = StrictJson.ParseDocument("store: run parameters", System.Text.Encoding.UTF8.GetBytes(json));
        var r = d.RootElement;
        return (r.TryGetProperty("clusters", out var c) ? $" c={c}" : "") + (r.TryGetProperty("budget", out var b) ? $" budget={b}" : "")
            + (r.TryGetProperty("shards", out var n) ? $" ({n} shards)" : "");
    }

    public static Command Audit()
    {
        var db = StoreOptions.Db();
        var json = Options.Json();
        var headOpt = new Option<string?>("--head")
        {
            Description = "SEQ:HASH that 'verifier audit head' (or a command that wrote the store) printed earlier: fail unless the chain holds exactly that entry at that sequence number",
        };
        var verify = new Command("verify", "Recompute the audit hash chain and compare every runs, checks, analyses and artefacts row with the entry that recorded it; " +
            "name the first entry or row that was edited, removed or inserted behind the tool's back (exit 8)");
        verify.Options.Add(db); verify.Options.Add(headOpt); verify.Options.Add(json);
        verify.SetAction((pr, ct) => Task.FromResult(CommandRunner.Run(pr, json, ct, ctx =>
        {
            var noted = pr.GetValue(headOpt) is { } h ? AuditHead.Parse(h) : null;
            using var store = VerifierStore.OpenExisting(pr.GetValue(db)!.FullName);
            var rep = store.VerifyAudit(noted);
            var first = rep.Problems.FirstOrDefault();
            if (ctx.Json)
                ctx.WriteJson(new
                {
                    rep.Intact, rep.Entries, Head = rep.Head.ToString(), NotedHead = noted?.ToString(), FirstBadEntry = first?.Seq, Problem = first?.Message,
                    Problems = rep.Problems, rep.RowsCovered, rep.LegacyEntries, rep.MigrationEntry, Db = store.Path,
                });
            else if (rep.Intact)
            {
                ctx.Say($"audit chain intact: {rep.Entries} entries, {rep.RowsCovered} rows covered, head {rep.Head} in {store.Path}");
                if (noted is not null)
                    ctx.Say(noted.Seq == rep.Head.Seq ? $"the noted head {noted.Seq} is the latest entry"
                        : $"the noted head {noted.Seq} is in the chain; {rep.Head.Seq - noted.Seq} entries were written after it ({noted.Seq + 1}–{rep.Head.Seq}): check they are yours");
                if (rep.LegacyEntries > 0)
                    ctx.Say($"note: entries 1–{rep.LegacyEntries} predate schema {VerifierStore.CoveringVersion} and record only some columns (b₀, FLOPs, strategy, hashes; verdict, reason); " +
                        $"entry {rep.MigrationEntry} recorded every row in full at the upgrade, so columns changed before then are not detected");
            }
            else
            {
                ctx.Say($"audit chain broken{(first!.Seq is { } s ? $" at entry {s}" : "")}: {first.Message}");
                foreach (var p in rep.Problems.Skip(1)) ctx.Say($"  also: {p.Message}");
            }
            if (!rep.Intact) ctx.Warn($"error: {store.Path}: {first!.Message}");   // the message quotes values from the file: escaped
            return rep.Intact ? ExitCodes.Ok : ExitCodes.AuditBroken;
        })));
        var headDb = StoreOptions.Db();
        var headJson = Options.Json();
        var head = new Command("head", "Print the verified head of the audit chain (SEQ:HASH); keep it outside the store and pass it to 'audit verify --head' later");
        head.Options.Add(headDb); head.Options.Add(headJson);
        head.SetAction((pr, ct) => Task.FromResult(CommandRunner.Run(pr, headJson, ct, ctx =>
        {
            using var store = VerifierStore.OpenExisting(pr.GetValue(headDb)!.FullName);
            var h = store.Head();   // exit 8 when the store was tampered with: such a head is not worth keeping
            if (ctx.Json) ctx.WriteJson(new { h.Seq, h.Hash, Head = h.ToString(), Db = store.Path });
            else ctx.Say($"audit head {h} ({store.Path})");
            return ExitCodes.Ok;
        })));
        var cmd = new Command("audit", "The store's append-only, hash-chained audit log");
        cmd.Subcommands.Add(verify);
        cmd.Subcommands.Add(head);
        return cmd;
    }

    public static Command FrontierCommand()
    {
        var model = new Option<DirectoryInfo>("--model") { Description = "Model directory", Required = true };
        var data = new Option<FileInfo>("--data") { Description = "Dataset the bounds are about", Required = true };
        var plot = new Option<FileInfo?>("--plot") { Description = "Write the frontier plot (.png or .svg)" };
        var db = StoreOptions.Db();
        var force = Options.Force();
        var json = Options.Json();
        var cmd = new Command("frontier", "The accepted runs that are Pareto-optimal in (proof FLOPs, b₀), with the brute-force–trivial baseline; optionally a plot");
        foreach (var o in new Option[] { model, data, plot, db, force, json }) cmd.Options.Add(o);
        cmd.SetAction((pr, ct) => Task.FromResult(CommandRunner.Run(pr, json, ct, ctx =>
        {
            string modelDir = pr.GetValue(model)!.FullName;
            string? plotPath = pr.GetValue(plot)?.FullName;
            if (plotPath is not null)
            {
                OutputGuard.Check("--plot", plotPath, directory: false, [modelDir, pr.GetValue(data)!.FullName], store: pr.GetValue(db)!.FullName);
                if (File.Exists(plotPath) && !pr.GetValue(force)) throw new OutputExistsException(plotPath);
            }
            var weights = ModelWeights.Load(modelDir);
            var dataset = TokenDataset.Load(pr.GetValue(data)!.FullName, weights.Config);
            string modelSha = Hashing.Sha256File(Path.Combine(modelDir, ModelWeights.WeightsFileName));
            using var store = VerifierStore.OpenExisting(pr.GetValue(db)!.FullName);
            var points = Frontier.Compute(store.Runs(modelSha, dataset.ContentHash()));   // exit 8 when the store was tampered with
            double uniform = Math.Log(weights.Config.DVocabOut);
            if (plotPath is not null) FrontierPlot.Write(points, plotPath, uniform, pr.GetValue(force));
            bool Informative(FrontierPoint p) => FrontierPlot.Informative(p, uniform);
            if (ctx.Json)
            {
                ctx.WriteJson(new
                {
                    Points = points.Select(p => new { p.RunId, p.Strategy, p.Parameters, p.Flops, p.B0, p.TrueLoss, p.Pareto, p.Baseline, p.TranscriptPath, p.AccuracyLb,
                        BelowUniformAndBaseline = Informative(p) }),
                    UniformGuess = uniform, Plot = plotPath,
                    InformativeParetoPoints = points.Count(p => p.Pareto && Informative(p)),
                });
                return ExitCodes.Ok;
            }
            if (points.Count == 0) ctx.Say("no accepted runs for this model and dataset: run 'verifier bound' and 'verifier check' first");
            ctx.Say($"  {"strategy",-24} {"b₀",14} {"FLOPs",15} {"baseline b₀",14} {"accuracy ≥",11}");
            foreach (var p in points)
                ctx.Say($"{(p.Pareto ? "*" : " ")}{(Informative(p) ? "+" : " ")} {p.Strategy + Params(p.Parameters),-24} {p.B0,14:G6} {p.Flops,15:N0} {(p.Baseline is { } b ? b.ToString("G6") : "-"),14} {(p.AccuracyLb is { } a ? $"{Math.Floor(a * 1e4) / 1e2:F2} %" : "-"),11}");
            ctx.Say($"* = Pareto-optimal; + = below both the uniform guess ln d_vocab_out = {uniform:F4} and the baseline, the line from trivial to brute force in (log FLOPs, b₀)");
            if (plotPath is not null) ctx.Say($"plot: {plotPath}");
            return ExitCodes.Ok;
        })));
        return cmd;
    }
}

/// <summary>Proof length (log₁₀ FLOPs) against the bound (log₁₀ b₀), one marker per strategy, the true loss as a line,
/// the brute-force–trivial baseline dashed, Pareto-optimal points outlined.</summary>
static class FrontierPlot
{
    /// <summary>A point that says something: below the uniform guess and strictly below the baseline (brute force, on it, is not).</summary>
    public static bool Informative(FrontierPoint p, double uniform) => p.Strategy != "brute-force" && p.B0 < uniform && p.Baseline is { } b && p.B0 < b;

    public static void Write(IReadOnlyList<FrontierPoint> points, string path, double uniform, bool overwrite = false)
    {
        var plt = new Plot();
        MarkerShape[] shapes = [MarkerShape.FilledCircle, MarkerShape.FilledSquare, MarkerShape.FilledTriangleUp, MarkerShape.FilledDiamond,
                                MarkerShape.FilledTriangleDown, MarkerShape.Cross, MarkerShape.Asterisk];
        int k = 0;
        foreach (var g in points.GroupBy(p => p.Strategy))
        {
            var sc = plt.Add.ScatterPoints(g.Select(p => Math.Log10(p.Flops)).ToArray(), g.Select(p => Math.Log10(p.B0)).ToArray());
            sc.MarkerShape = shapes[k % shapes.Length];
            sc.MarkerSize = 11;
            sc.LegendText = g.Key;
            sc.Color = Colors.Category10[k % 10];
            k++;
        }
        var pareto = points.Where(p => p.Pareto).OrderBy(p => p.Flops).ToList();
        if (pareto.Count > 1)
        {
            var line = plt.Add.Scatter(pareto.Select(p => Math.Log10(p.Flops)).ToArray(), pareto.Select(p => Math.Log10(p.B0)).ToArray());
            line.ConnectStyle = ConnectStyle.StepHorizontal;
            line.MarkerSize = 0;
            line.LineWidth = 1.5f;
            line.Color = Colors.Black.WithAlpha(0.5);
            line.LegendText = "Pareto frontier";
        }
        var bf = points.FirstOrDefault(p => p.Strategy == "brute-force");
        var tr = points.FirstOrDefault(p => p.Strategy == "trivial");
        if (bf is not null && tr is not null)
        {
            // The baseline is straight in (log FLOPs, b₀); on the log-b₀ axis it is drawn through sampled points.
            var xs = Enumerable.Range(0, 50).Select(i => Math.Log10(tr.Flops) + (Math.Log10(bf.Flops) - Math.Log10(tr.Flops)) * i / 49.0).ToArray();
            var ys = xs.Select(x => Math.Log10(tr.B0 + (bf.B0 - tr.B0) * (x - xs[0]) / (xs[^1] - xs[0]))).ToArray();
            var baseline = plt.Add.Scatter(xs, ys);
            baseline.MarkerSize = 0;
            baseline.LinePattern = LinePattern.Dashed;
            baseline.Color = Colors.Gray;
            baseline.LegendText = "linear baseline";
        }
        if (points.FirstOrDefault(p => p.TrueLoss is > 0)?.TrueLoss is { } tl)
        {
            var h = plt.Add.HorizontalLine(Math.Log10(tl));
            h.LegendText = $"true loss {tl:G3}";
            h.Color = Colors.Green;
            h.LinePattern = LinePattern.Dotted;
        }
        var u = plt.Add.HorizontalLine(Math.Log10(uniform));
        u.LegendText = $"uniform guess ln d_vocab = {uniform:F2}";
        u.Color = Colors.Red.WithAlpha(0.6);
        u.LinePattern = LinePattern.DenselyDashed;
        // Points that say something: below both the uniform guess and the baseline, ringed.
        var informative = points.Where(p => Informative(p, uniform)).ToList();
        if (informative.Count > 0)
        {
            var ring = plt.Add.ScatterPoints(informative.Select(p => Math.Log10(p.Flops)).ToArray(), informative.Select(p => Math.Log10(p.B0)).ToArray());
            ring.MarkerShape = MarkerShape.OpenCircle;
            ring.MarkerSize = 20;
            ring.MarkerLineWidth = 1.5f;
            ring.Color = Colors.Black;
            ring.LegendText = "below uniform guess and baseline";
        }
        plt.Title("Faithfulness vs compute: certified bound b₀ against proof length");
        plt.XLabel("proof length (FLOPs, log scale)");
        plt.YLabel("certified bound b₀ on mean cross-entropy (log scale)");
        plt.Axes.Bottom.TickGenerator = LogTicks();
        plt.Axes.Left.TickGenerator = LogTicks();
        plt.ShowLegend(Alignment.LowerLeft);
        string tmp = $"{path}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}{Path.GetExtension(path)}";
        try
        {
            if (path.EndsWith(".svg", StringComparison.OrdinalIgnoreCase)) plt.SaveSvg(tmp, 1000, 650);
            else if (path.EndsWith(".png", StringComparison.OrdinalIgnoreCase)) plt.SavePng(tmp, 1000, 650);
            else throw new UsageException($"--plot {path}: the file must end in .png or .svg");
            AtomicOutput.Publish(tmp, path, overwrite);
        }
        finally
        {
            if (File.Exists(tmp)) File.Delete(tmp);
        }
    }

    static ScottPlot.TickGenerators.NumericAutomatic LogTicks() => new()
    {
        MinorTickGenerator = new ScottPlot.TickGenerators.LogMinorTickGenerator(),
        IntegerTicksOnly = true,
        LabelFormatter = v => $"1e{v:0}",
    };
}
