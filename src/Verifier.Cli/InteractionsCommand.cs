using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Verifier.Core;

namespace Verifier.Cli;

/// <summary>The ranked nonlinear feature interactions recorded in a transcript (crosscoder-tables).</summary>
static class InteractionsCommand
{
    public static Command Build()
    {
        var transcript = new Argument<FileInfo?>("transcript")
        {
            Description = "A transcript written by 'verifier bound --strategy crosscoder-tables' (or give --model, --crosscoder and --data to measure)",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var model = new Option<DirectoryInfo?>("--model") { Description = "Model directory (measure interactions directly)" };
        var crosscoder = new Option<DirectoryInfo?>("--crosscoder") { Description = "Crosscoder directory" };
        var data = new Option<FileInfo?>("--data") { Description = "Dataset" };
        var screenTop = new Option<int>("--screen-top") { Description = "Keep only the pairs with the largest Hadamard screen before the exact metric (0: all)", DefaultValueFactory = _ => 0 };
        var report = new Option<DirectoryInfo?>("--report") { Description = "Write report.md, heatmap.png/.svg and interactions.json into this directory" };
        var noRemoval = new Option<bool>("--no-bound-removal") { Description = "Skip re-running the crosscoder-tables bound with each pair's interaction removed (the b₀-based validation)" };
        var allow = new Option<bool>("--allow-model-mismatch") { Description = "Use a crosscoder trained on different model weights" };
        var db = StoreOptions.Db();
        var noRecord = new Option<bool>("--no-record") { Description = "Do not record the analysis in the store" };
        var top = Options.Positive<int>("--top", "Rows to show per kind", 20);
        var kind = new Option<string?>("--kind") { Description = "Only relu-neuron, relu-pair or attention-pair" };
        kind.AcceptOnlyFromAmong("relu-neuron", "relu-pair", "attention-pair");
        var json = Options.Json();
        var cmd = new Command("interactions", "Rank the nonlinear feature interactions of a transcript: ReLU neurons by linearisation-error mass, feature pairs at a neuron by ReLU strength, attention feature pairs by departure of B_ij from its row average");
        cmd.Arguments.Add(transcript);
        foreach (var o in new Option[] { model, crosscoder, data, screenTop, report, noRemoval, allow, db, noRecord, top, kind, json }) cmd.Options.Add(o);
        cmd.SetAction((pr, ct) => Task.FromResult(CommandRunner.Run(pr, json, ct, ctx =>
        {
            if (pr.GetValue(transcript) is null)
            {
                if (pr.GetValue(model) is null || pr.GetValue(crosscoder) is null || pr.GetValue(data) is null)
                    throw new UsageException("give a transcript, or --model, --crosscoder and --data to measure the interactions");
                return AnalysisCommands.Interactions(ctx, pr, pr.GetValue(model)!.FullName, pr.GetValue(crosscoder)!.FullName, pr.GetValue(data)!.FullName,
                    pr.GetValue(top), pr.GetValue(screenTop), pr.GetValue(report)?.FullName, !pr.GetValue(noRemoval), pr.GetValue(allow), db, noRecord);
            }
            string path = pr.GetValue(transcript)!.FullName;
            var terms = Read(path);
            int n = pr.GetValue(top);
            string? only = pr.GetValue(kind);
            var groups = terms.GroupBy(t => t["kind"]!.GetValue<string>())
                .Where(g => only is null || g.Key == only)
                .ToDictionary(g => g.Key, g => g.OrderByDescending(t => Score(t)).Take(n).ToList());
            if (ctx.Json)
            {
                ctx.WriteJson(groups.ToDictionary(g => g.Key, g => g.Value));
                return ExitCodes.Ok;
            }
            if (terms.Count == 0) ctx.Say($"{path} records no interaction terms (only crosscoder-tables does).");
            if (groups.TryGetValue("relu-neuron", out var neurons))
            {
                ctx.Say("ReLU neurons by mass of the linearisation error E (where features jointly cross the threshold):");
                ctx.Say($"  {"layer",5} {"neuron",6} {"Σ|E|",12} {"non-zero",9}");
                foreach (var t in neurons) ctx.Say($"  {t["layer"],5} {t["neuron"],6} {D(t, "e_mass"),12:G5} {D(t, "nonzero_fraction"),9:P2}");
            }
            if (groups.TryGetValue("relu-pair", out var pairs))
            {
                ctx.Say("Feature pairs at a ReLU neuron, by strength E[(f_j̃/f_ĩ)·|U_j̃m/U_ĩm|] over tokens where E ≠ 0:");
                ctx.Say($"  {"feature i",9} {"feature j",9} {"layer",5} {"neuron",6} {"strength",10} {"frequency",9}");
                foreach (var t in pairs) ctx.Say($"  {t["feature_i"],9} {t["feature_j"],9} {t["layer"],5} {t["neuron"],6} {D(t, "strength"),10:G4} {D(t, "frequency"),9:P3}");
            }
            if (groups.TryGetValue("attention-pair", out var attn))
            {
                ctx.Say("Attention feature pairs (query i, key j) by |B_ij − mean_j B_i·|:");
                ctx.Say($"  {"feature i",9} {"feature j",9} {"layer",5} {"head",6} {"strength",10} {"frequency",9}");
                foreach (var t in attn) ctx.Say($"  {t["feature_i"],9} {t["feature_j"],9} {t["layer"],5} {t["head"],6} {D(t, "strength"),10:G4} {D(t, "frequency"),9:P3}");
            }
            return ExitCodes.Ok;
        })));
        return cmd;
    }

    static double D(JsonObject t, string k) => t[k]!.GetValue<double>();
    static double Score(JsonObject t) => t["kind"]!.GetValue<string>() == "relu-neuron" ? D(t, "e_mass") : D(t, "strength");

    static List<JsonObject> Read(string path)
    {
        if (!File.Exists(path)) throw new InvalidInputException(path, "file", "does not exist");
        var root = StrictJson.Parse(path, File.ReadAllBytes(path));
        if (root is not JsonObject o || o["schema"]?.GetValue<string>() != TranscriptWriter.Schema)
            throw new InvalidInputException(path, "schema", $"not a transcript (expected \"schema\": \"{TranscriptWriter.Schema}\")");
        if (o["interactions"] is not JsonArray a) throw new InvalidInputException(path, "interactions", "missing or not an array");
        return a.Select((n, i) => n as JsonObject ?? throw new InvalidInputException(path, $"interactions[{i}]", "must be an object")).ToList();
    }
}
