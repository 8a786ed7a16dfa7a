using System.Text;
using System.Text.Json;

namespace Verifier.Core;

/// <summary>One sequence: token ids and, per position, the label to score there or −1 for none.</summary>
public sealed record Sequence(int[] Tokens, int[] Labels)
{
    public int LabelledCount => Labels.Count(l => l >= 0);
}

/// <summary>A token dataset in the JSON Lines format of spec/dataset.md: one object per line,
/// <c>{"tokens":[…],"labels":[…]}</c>, the two arrays of equal length, label −1 where a position is not scored.</summary>
public sealed class TokenDataset(IReadOnlyList<Sequence> sequences)
{
    public IReadOnlyList<Sequence> Sequences { get; } = sequences;
    public int Count => Sequences.Count;
    public long LabelledPositions => Sequences.Sum(s => (long)s.LabelledCount);

    /// <summary>The sequences [first, end), in order.</summary>
    public TokenDataset Slice(int first, int end) => new(Sequences.Skip(first).Take(end - first).ToArray());

    /// <summary>Reads a dataset; with <paramref name="config"/>, also checks every token, label and length
    /// against that model, naming the line that is wrong.</summary>
    public static TokenDataset Load(string path, ModelConfig? config = null)
    {
        if (!File.Exists(path)) throw new InvalidInputException(path, "file", "does not exist");
        var list = new List<Sequence>();
        int lineNo = 0;
        foreach (string line in File.ReadLines(path, Encoding.UTF8))
        {
            lineNo++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            var seq = ParseLine(path, lineNo, line);
            if (config is not null) Check(path, lineNo, seq, config);
            list.Add(seq);
        }
        if (list.Count == 0) throw new InvalidInputException(path, "file", "holds no sequences");
        if (list.All(s => s.LabelledCount == 0)) throw new InvalidInputException(path, "labels", "no position is labelled (every label is −1)");
        return new TokenDataset(list);
    }

    static Sequence ParseLine(string path, int lineNo, string line)
    {
        string where = $"line {lineNo}";
        JsonDocument doc;
        try { doc = JsonDocument.Parse(line); }
        catch (JsonException e) { throw new InvalidInputException(path, where, $"not valid JSON: {e.Message}", e); }
        using var _ = doc;
        if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new InvalidInputException(path, where, "expected a JSON object {\"tokens\":[…],\"labels\":[…]}");
        int[]? tokens = null, labels = null;
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            switch (p.Name)
            {
                case "tokens": tokens = Ints(path, where, "tokens", p.Value); break;
                case "labels": labels = Ints(path, where, "labels", p.Value); break;
                default: throw new InvalidInputException(path, where, $"unknown field '{p.Name}' (expected only tokens and labels)");
            }
        }
        if (tokens is null) throw new InvalidInputException(path, where, "missing field 'tokens'");
        if (labels is null) throw new InvalidInputException(path, where, "missing field 'labels'");
        if (tokens.Length == 0) throw new InvalidInputException(path, where, "'tokens' is empty");
        if (tokens.Length != labels.Length)
            throw new InvalidInputException(path, where, $"'tokens' has {tokens.Length} entries but 'labels' has {labels.Length}; they must match");
        return new Sequence(tokens, labels);
    }

    static int[] Ints(string path, string where, string field, JsonElement e)
    {
        if (e.ValueKind != JsonValueKind.Array) throw new InvalidInputException(path, where, $"'{field}' must be an array of integers");
        var r = new int[e.GetArrayLength()];
        int i = 0;
        foreach (var x in e.EnumerateArray())
        {
            if (x.ValueKind != JsonValueKind.Number || !x.TryGetInt32(out r[i]))
                throw new InvalidInputException(path, where, $"'{field}'[{i}] must be an integer, found {x.GetRawText()}");
            i++;
        }
        return r;
    }

    static void Check(string path, int lineNo, Sequence s, ModelConfig c)
    {
        string where = $"line {lineNo}";
        if (s.Tokens.Length > c.NCtx)
            throw new InvalidInputException(path, where, $"sequence has {s.Tokens.Length} tokens, more than the model's n_ctx = {c.NCtx}");
        for (int i = 0; i < s.Tokens.Length; i++)
            if (s.Tokens[i] < 0 || s.Tokens[i] >= c.DVocab)
                throw new InvalidInputException(path, where, $"tokens[{i}] = {s.Tokens[i]} is outside the model's vocabulary [0, {c.DVocab})");
        for (int i = 0; i < s.Labels.Length; i++)
            if (s.Labels[i] < -1 || s.Labels[i] >= c.DVocabOut)
                throw new InvalidInputException(path, where, $"labels[{i}] = {s.Labels[i]} is outside [0, {c.DVocabOut}) and is not −1 (unscored)");
    }

    /// <summary>Checks an in-memory dataset against a model (the same rules as <see cref="Load"/>).</summary>
    public void CheckAgainst(ModelConfig config, string source)
    {
        for (int i = 0; i < Count; i++) Check(source, i + 1, Sequences[i], config);
    }

    public string ToJsonLines()
    {
        var sb = new StringBuilder();
        foreach (var s in Sequences)
            sb.Append("{\"tokens\":[").AppendJoin(',', s.Tokens).Append("],\"labels\":[").AppendJoin(',', s.Labels).Append("]}\n");
        return sb.ToString();
    }

    public void Save(string path) => AtomicOutput.WriteAllText(path, ToJsonLines());

    /// <summary>SHA-256 of the canonical JSON Lines text (independent of how the file was formatted).</summary>
    public string ContentHash() => Hashing.Sha256(Encoding.UTF8.GetBytes(ToJsonLines()));
}
