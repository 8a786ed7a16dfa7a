using System.Text;
using System.Text.Json;

namespace Verifier.Core;

/// <summary>One sequence: token ids and, per position, the label to score there or −1 for none.</summary>
public sealed record Sequence(int[] Tokens, int[] Labels)
{
    public int LabelledCount => Labels.Count(l => l >= 0);
}

/// <summary>A token dataset in the JSON Lines format of spec/dataset.md: one object per line,
/// <c>{"tokens":[…],"labels":[…]}</c>, the two arrays of equal length, label −1 where a position is not scored; or the
/// whole input space of an enumerable task (<see cref="EnumeratedSpace"/>), whose sequences are computed from their
/// index when read and never held in memory.</summary>
public sealed class TokenDataset
{
    public TokenDataset(IReadOnlyList<Sequence> sequences) { Sequences = sequences; }

    TokenDataset(EnumeratedSpace space, int first, int end)
    {
        Space = space; Sequences = new EnumeratedSpace.View(space.Task, first, end - first);
    }

    /// <summary>The whole input space <paramref name="space"/> as a dataset.</summary>
    public static TokenDataset Enumerated(EnumeratedSpace space) => new(space, 0, space.Count);

    public IReadOnlyList<Sequence> Sequences { get; }
    /// <summary>Set when the sequences are (a contiguous part of) an enumerated input space.</summary>
    public EnumeratedSpace? Space { get; }
    /// <summary>The dataset is a whole enumerated space (not a slice of one): its content hash is the descriptor's.</summary>
    public bool IsWholeSpace => Space is not null && Sequences.Count == Space.Count;
    public int Count => Sequences.Count;

    long _labelled = -1;
    /// <summary>Labelled positions over all sequences (arithmetic for an enumerated space; summed once otherwise).</summary>
    public long LabelledPositions
    {
        get
        {
            if (_labelled >= 0) return _labelled;
            return _labelled = Space is { } sp ? (long)Count * sp.Task.LabelledPerSequence : Sequences.Sum(s => (long)s.LabelledCount);
        }
    }

    /// <summary>The sequences [first, end), in order (a view computing each sequence from its index for an enumerated space).</summary>
    public TokenDataset Slice(int first, int end)
    {
        if (first < 0 || end < first || end > Count) throw new ArgumentOutOfRangeException(nameof(end), $"[{first}, {end}) is not a range of {Count} sequences");
        if (Space is { } sp) return new TokenDataset(sp, ((EnumeratedSpace.View)Sequences).First + first, ((EnumeratedSpace.View)Sequences).First + end);
        return new(Sequences.Skip(first).Take(end - first).ToArray());
    }

    /// <summary>The longest line a dataset may hold, in bytes (without the line break): 64 KiB plus 32 bytes per
    /// position of the model's context (a position needs at most 11 bytes for its token and 12 for its label);
    /// without a model, n_ctx is taken as 65 536 (2 MiB + 64 KiB).</summary>
    public static int MaxLineBytes(int? nCtx) => 65536 + 32 * Math.Min(nCtx ?? 65536, 1 << 24);

    /// <summary>Reads a dataset; with <paramref name="config"/>, also checks every token, label and length
    /// against that model, naming the line that is wrong. A line longer than <see cref="MaxLineBytes"/> is
    /// refused as soon as the limit is passed, without reading the rest of it.</summary>
    public static TokenDataset Load(string path, ModelConfig? config = null)
    {
        if (!File.Exists(path)) throw new InvalidInputException(path, "file", "does not exist");
        if (ReadDescriptor(path) is { } bytes) return Enumerated(EnumeratedSpace.Parse(path, bytes, config));
        var list = new List<Sequence>();
        int max = MaxLineBytes(config?.NCtx);
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        foreach (var (lineNo, line) in Lines(path, fs, max))
        {
            if (line.Span.TrimStart(" \t\r"u8).IsEmpty) continue;
            var seq = ParseLine(path, lineNo, line, config);
            if (config is not null) Check(path, lineNo, seq, config);
            list.Add(seq);
        }
        if (list.Count == 0) throw new InvalidInputException(path, "file", "holds no sequences");
        if (list.All(s => s.LabelledCount == 0)) throw new InvalidInputException(path, "labels", "no position is labelled (every label is −1)");
        return new TokenDataset(list);
    }

    /// <summary>The file's bytes when it is an enumerated-space descriptor (a JSON object whose first key is "format";
    /// spec/dataset.md), else null. A descriptor longer than <see cref="EnumeratedSpace.MaxDescriptorBytes"/> is refused.</summary>
    static byte[]? ReadDescriptor(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        var head = new byte[EnumeratedSpace.MaxDescriptorBytes + 1];
        int n = 0, r;
        while (n < head.Length && (r = fs.Read(head, n, head.Length - n)) > 0) n += r;
        if (!EnumeratedSpace.LooksLikeDescriptor(head.AsSpan(0, n))) return null;
        if (n > EnumeratedSpace.MaxDescriptorBytes)
            throw new InvalidInputException(path, "descriptor", $"longer than {EnumeratedSpace.MaxDescriptorBytes} bytes, the limit for an enumerated-space descriptor (spec/dataset.md)");
        return head[..n];
    }

    /// <summary>The lines of <paramref name="s"/> (split at \n, a trailing \r dropped, a leading UTF-8 BOM skipped),
    /// each at most <paramref name="max"/> bytes; a longer one is refused before more than max + 64 KiB is buffered.</summary>
    static IEnumerable<(int LineNo, ReadOnlyMemory<byte> Line)> Lines(string path, Stream s, int max)
    {
        var buf = new byte[1 << 16];
        var line = new MemoryStream();
        int lineNo = 1;
        bool first = true;
        int n;
        while ((n = s.Read(buf, 0, buf.Length)) > 0)
        {
            int start = 0;
            if (first && n >= 3 && buf[0] == 0xEF && buf[1] == 0xBB && buf[2] == 0xBF) start = 3;
            first = false;
            while (start < n)
            {
                int nl = Array.IndexOf(buf, (byte)'\n', start, n - start);
                int end = nl < 0 ? n : nl;
                if (line.Length + (end - start) > max + 1)
                    throw new InvalidInputException(path, $"line {lineNo}", $"longer than {max} bytes, the limit for a line of this dataset (spec/dataset.md)");
                line.Write(buf, start, end - start);
                if (nl < 0) break;
                yield return (lineNo, Trim(line));
                line = new MemoryStream();
                lineNo++;
                start = nl + 1;
            }
        }
        if (line.Length > 0) yield return (lineNo, Trim(line));
        static ReadOnlyMemory<byte> Trim(MemoryStream m)
        {
            var mem = m.GetBuffer().AsMemory(0, (int)m.Length);
            return mem.Length > 0 && mem.Span[^1] == '\r' ? mem[..^1] : mem;
        }
    }

    static Sequence ParseLine(string path, int lineNo, ReadOnlyMemory<byte> line, ModelConfig? config)
    {
        string where = $"line {lineNo}";
        using var doc = StrictJson.ParseDocument(path, line, lineNo);
        if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new InvalidInputException(path, where, "expected a JSON object {\"tokens\":[…],\"labels\":[…]}");
        int[]? tokens = null, labels = null;
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            switch (p.Name)
            {
                case "tokens": tokens = Ints(path, where, "tokens", p.Value, config is null ? "[0, d_vocab)" : $"[0, {config.DVocab}) (d_vocab)"); break;
                case "labels": labels = Ints(path, where, "labels", p.Value, config is null ? "−1 or [0, d_vocab_out)" : $"−1 or [0, {config.DVocabOut}) (d_vocab_out)"); break;
                default: throw new InvalidInputException(path, where, $"unknown field '{Display.Escape(p.Name)}' (expected only tokens and labels)");
            }
        }
        if (tokens is null) throw new InvalidInputException(path, where, "missing field 'tokens'");
        if (labels is null) throw new InvalidInputException(path, where, "missing field 'labels'");
        if (tokens.Length == 0) throw new InvalidInputException(path, where, "'tokens' is empty");
        if (tokens.Length != labels.Length)
            throw new InvalidInputException(path, where, $"'tokens' has {tokens.Length} entries but 'labels' has {labels.Length}; they must match");
        return new Sequence(tokens, labels);
    }

    static int[] Ints(string path, string where, string field, JsonElement e, string range)
    {
        if (e.ValueKind != JsonValueKind.Array) throw new InvalidInputException(path, where, $"'{field}' must be an array of integers");
        var r = new int[e.GetArrayLength()];
        int i = 0;
        foreach (var x in e.EnumerateArray())
        {
            if (x.ValueKind != JsonValueKind.Number || !x.TryGetInt32(out r[i]))
            {
                string raw = x.GetRawText();
                string shown = Display.Escape(raw.Length > 40 ? raw[..40] + "…" : raw);
                // A JSON number without fraction or exponent is an integer, only too large for any vocabulary.
                if (x.ValueKind == JsonValueKind.Number && raw.AsSpan().IndexOfAny(".eE") < 0)
                    throw new InvalidInputException(path, where, $"'{field}'[{i}] = {shown} is out of range (must be in {range})");
                throw new InvalidInputException(path, where, $"'{field}'[{i}] must be an integer, found {shown}");
            }
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
        if (Space is { } sp) { sp.CheckAgainst(config, source); return; }
        for (int i = 0; i < Count; i++) Check(source, i + 1, Sequences[i], config);
    }

    public string ToJsonLines()
    {
        var sb = new StringBuilder();
        foreach (var s in Sequences) AppendLine(sb, s);
        return sb.ToString();
    }

    static void AppendLine(StringBuilder sb, Sequence s) =>
        sb.Append("{\"tokens\":[").AppendJoin(',', s.Tokens).Append("],\"labels\":[").AppendJoin(',', s.Labels).Append("]}\n");

    /// <summary>Writes the dataset: the descriptor (its canonical bytes and a line break) for a whole enumerated space,
    /// JSON Lines otherwise.</summary>
    public void Save(string path, bool overwrite = false) =>
        AtomicOutput.WriteAllText(path, IsWholeSpace ? Space!.CanonicalJson() + "\n" : ToJsonLines(), overwrite);

    /// <summary>SHA-256 of the canonical JSON Lines text (independent of how the file was formatted), streamed; for a
    /// whole enumerated space, SHA-256 of the descriptor's canonical bytes (<see cref="EnumeratedSpace.CanonicalJson"/>).</summary>
    public string ContentHash()
    {
        if (IsWholeSpace) return Space!.ContentHash();
        using var h = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        var sb = new StringBuilder();
        var buf = new byte[1 << 16];
        foreach (var s in Sequences)
        {
            AppendLine(sb, s);
            if (sb.Length < 16384) continue;
            Flush();
        }
        Flush();
        return Convert.ToHexStringLower(h.GetHashAndReset());

        void Flush()
        {
            foreach (var chunk in sb.GetChunks())
            {
                var span = chunk.Span;
                while (!span.IsEmpty)
                {
                    int take = Math.Min(span.Length, buf.Length / 3);
                    int bytes = Encoding.UTF8.GetBytes(span[..take], buf);
                    h.AppendData(buf, 0, bytes);
                    span = span[take..];
                }
            }
            sb.Clear();
        }
    }
}
