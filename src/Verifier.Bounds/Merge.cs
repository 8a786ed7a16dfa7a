using System.Text.Json;
using System.Text.Json.Nodes;
using Verifier.Core;

namespace Verifier.Bounds;

/// <summary>Merges the transcripts of the n shards of one bound (spec/shards.md) into one transcript about the whole
/// dataset: one SHARD step per shard (its transcript by SHA-256 and its loss sum), then MEAN over the shards.</summary>
public static class Merge
{
    public sealed record Shard(string Path, string Sha256, string Strategy, ShardSpec Spec, int Of, Dictionary<string, TranscriptArtefact> Artefacts,
        double LossSum, long Positions, long Flops, double AdviceBits, double B0, double? Errors);

    /// <summary>Reads what the merge needs of a shard's transcript. The loss sum is the Σ of the loss sums its final MEAN
    /// step adds (in its order, rounded up, as the checker adds them); for IPMEAN, b₀ · positions rounded up.</summary>
    public static Shard Read(string path)
    {
        InvalidInputException Bad(string where, string problem) => new(path, where, problem);
        if (!File.Exists(path)) throw Bad("file", "does not exist");
        using var stream = File.OpenRead(path);
        JsonDocument doc;
        try { doc = JsonDocument.Parse(stream); }
        catch (JsonException e) { throw Bad("JSON", e.Message); }
        using (doc)
        {
            try
            {
                var root = doc.RootElement;
                var arts = new Dictionary<string, TranscriptArtefact>();
                JsonElement? part = null;
                foreach (var a in root.GetProperty("artefacts").EnumerateObject())
                {
                    arts[a.Name] = new TranscriptArtefact(a.Name, a.Value.GetProperty("sha256").GetString()!,
                        a.Value.TryGetProperty("path", out var p) ? p.GetString() : null);
                    if (a.Name == "dataset" && a.Value.TryGetProperty("part", out var pt)) part = pt.Clone();
                }
                if (part is not { } pj) throw Bad("artefacts.dataset.part", "missing: this is not the transcript of a shard (bound --shard i/n)");
                var spec = new ShardSpec(pj.GetProperty("index").GetInt32(), pj.GetProperty("count").GetInt32());
                int of = pj.GetProperty("of").GetInt32();
                string strategy = root.GetProperty("strategy").GetProperty("name").GetString()!;
                var steps = root.GetProperty("steps");
                int final = root.GetProperty("result").GetProperty("final_step").GetInt32();
                double b0 = root.GetProperty("result").GetProperty("b0").GetDouble();
                var last = steps[final];
                long positions = last.GetProperty("scope").GetProperty("positions").GetInt64();
                double sum = 0;
                if (last.GetProperty("lemma").GetString() == "MEAN")
                    foreach (var i in last.GetProperty("inputs").EnumerateArray())
                        sum = Up.Add(sum, steps[i.GetInt32()].GetProperty("claim").GetProperty("loss_sum").GetDouble());
                else sum = Up.Mul(b0, positions);
                double? errors = last.GetProperty("claim").TryGetProperty("errors", out var ev) ? ev.GetDouble() : null;
                var cost = root.GetProperty("cost");
                return new Shard(Path.GetFullPath(path), Hashing.Sha256File(path), strategy, spec, of, arts, sum, positions,
                    cost.GetProperty("flops").GetInt64(), cost.GetProperty("advice_bits").GetDouble(), b0, errors);
            }
            catch (Exception e) when (e is KeyNotFoundException or InvalidOperationException or IndexOutOfRangeException or FormatException)
            {
                throw Bad("transcript", $"not a complete transcript ({e.Message})");
            }
        }
    }

    /// <summary>Checks that <paramref name="shards"/> are the n shards of one bound, each once, and writes the merged
    /// transcript. Returns b₀ and the cost.</summary>
    public static (double B0, TranscriptCost Cost, int Steps, string Strategy, int Count) Run(IReadOnlyList<Shard> shards, string outPath, bool overwrite = false)
    {
        if (shards.Count == 0) throw new UsageException("merge needs the shard transcripts");
        var first = shards[0];
        foreach (var s in shards)
        {
            if (s.Strategy != first.Strategy) throw new MismatchException($"{s.Path}: strategy '{s.Strategy}' differs from {first.Path}'s '{first.Strategy}'");
            foreach (var role in first.Artefacts.Keys.Union(s.Artefacts.Keys))
                if (!first.Artefacts.TryGetValue(role, out var a) || !s.Artefacts.TryGetValue(role, out var b) || a.Sha256 != b.Sha256)
                    throw new MismatchException($"{s.Path}: its {role} differs from {first.Path}'s (shards of different models, data or crosscoders)");
            if (s.Spec.Count != first.Spec.Count || s.Of != first.Of)
                throw new MismatchException($"{s.Path}: shard {s.Spec} of {s.Of} sequences does not partition the data like {first.Path} (shard {first.Spec} of {first.Of}): overlapping parts");
        }
        int n = first.Spec.Count;
        var byIndex = new Shard?[n];
        foreach (var s in shards)
        {
            if (byIndex[s.Spec.Index] is { } other) throw new UsageException($"shard {s.Spec} is given twice: {other.Path} and {s.Path}");
            byIndex[s.Spec.Index] = s;
        }
        var missing = Enumerable.Range(0, n).Where(i => byIndex[i] is null).ToList();
        if (missing.Count > 0) throw new UsageException($"the shards do not cover the data: shard{(missing.Count > 1 ? "s" : "")} {string.Join(", ", missing.Select(i => $"{i}/{n}"))} missing");

        string outFull = Path.GetFullPath(outPath);
        string outDir = Path.GetDirectoryName(outFull)!;
        var arts = first.Artefacts.Values.ToList();
        // Written to a private temporary, published only when complete, without overwrite unless asked.
        return AtomicOutput.Publishing(outFull, overwrite, tmp =>
        {
            using var tw = new TranscriptWriter(tmp, arts, "merge", new JsonObject { ["strategy"] = first.Strategy, ["shards"] = n });
            var ids = new List<int>(); var sums = new List<double>();
            double advice = 0;
            foreach (var s in byIndex)
            {
                ids.Add(tw.Add(new TranscriptStep("SHARD", [], BoundProgram.Scope(("shard", s!.Spec.Index), ("count", n)),
                    s.Errors is { } e ? new JsonObject { ["loss_sum"] = s.LossSum, ["errors"] = e } : new JsonObject { ["loss_sum"] = s.LossSum }, s.Flops, DatasetDependent: true,
                    new JsonObject { ["transcript"] = new JsonObject { ["sha256"] = s.Sha256, ["path"] = Path.GetRelativePath(outDir, s.Path) } })));
                sums.Add(s.LossSum);
                advice += s.AdviceBits;
            }
            double? errors = byIndex.All(s => s!.Errors is not null) ? byIndex.Sum(s => s!.Errors!.Value) : null;
            var (b0, final) = BoundProgram.Mean(tw, ids, sums, byIndex.Sum(s => s!.Positions), errors);
            var cost = tw.Complete([], b0, final, null, advice);
            return (b0, cost, tw.StepCount, first.Strategy, n);
        });
    }
}
