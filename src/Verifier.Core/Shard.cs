using System.Text.Json.Nodes;

namespace Verifier.Core;

/// <summary>Shard i of n of a dataset of N sequences: the contiguous sequence indices [⌊iN/n⌋, ⌊(i+1)N/n⌋), so any
/// shard can be recomputed alone from (i, n, N) and the n shards partition the dataset (spec/shards.md).</summary>
public sealed record ShardSpec(int Index, int Count)
{
    public static ShardSpec Parse(string text)
    {
        var parts = text.Split('/');
        if (parts.Length != 2 || !int.TryParse(parts[0], out int i) || !int.TryParse(parts[1], out int n))
            throw new UsageException($"--shard '{text}': expected i/n, e.g. 0/4");
        if (n < 1 || i < 0 || i >= n) throw new UsageException($"--shard '{text}': need 0 ≤ i < n and n ≥ 1");
        return new ShardSpec(i, n);
    }

    public (int First, int End) Range(int sequences) =>
        ((int)((long)Index * sequences / Count), (int)((long)(Index + 1) * sequences / Count));

    /// <summary>The shard of <paramref name="data"/>; refused when it is empty or has no labelled position (its mean
    /// would not be defined).</summary>
    public TokenDataset Of(TokenDataset data, string dataPath)
    {
        if (Count > data.Count) throw new UsageException($"--shard {this}: {Count} shards of {data.Count} sequences would leave some empty; use at most {data.Count}");
        var (first, end) = Range(data.Count);
        var part = data.Slice(first, end);
        if (part.LabelledPositions == 0) throw new InvalidInputException(dataPath, "labels", $"shard {this} (sequences {first}–{end - 1}) has no labelled position; use fewer shards");
        return part;
    }

    /// <summary>How a transcript's dataset artefact names its part of X.</summary>
    public JsonObject ToJson(int sequences)
    {
        var (first, end) = Range(sequences);
        return new JsonObject { ["index"] = Index, ["count"] = Count, ["first"] = first, ["end"] = end, ["of"] = sequences };
    }

    public override string ToString() => $"{Index}/{Count}";
}
